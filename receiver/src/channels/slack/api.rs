//! Slack's Web API: `chat.postMessage` and `chat.update` with a bot
//! token, answers classified by their error code, and the update-in-place
//! flow of a resolve.
//!
//! Slack answers most failures with HTTP 200 and `{"ok": false, "error":
//! code}`. A code that no retry can fix (a wrong token, a channel the bot
//! is not in) dead-letters the notification at once; `ratelimited` (or an
//! HTTP 429) waits for `Retry-After`; anything else is retried with the
//! usual backoff, bounded by `delivery.max_age`.

use std::time::Duration;

use serde_json::{json, Value};

use super::{SendError, Slack};
use crate::channels::{retry_after, transport_error, ChannelKind};
use crate::payload::{Delivery, Notice, NoticeKind, Status};
use crate::store::{Store, Thread};

/// Error codes no retry can fix.
const PERMANENT: &[&str] = &[
    "channel_not_found",
    "invalid_auth",
    "not_in_channel",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "is_archived",
    "channel_is_archived",
    "restricted_action",
    "invalid_blocks",
    "invalid_attachments",
    "invalid_arguments",
    "msg_too_long",
    "no_text",
    "too_many_attachments",
    "ekm_access_denied",
];

/// `chat.update` codes that mean the message cannot be updated: post a
/// new one instead.
const GONE: &[&str] = &[
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
];

/// How long a resolve waits for its firing message to be posted first.
const WAIT_FOR_FIRING: Duration = Duration::from_secs(2);

/// A failed call: Slack's error code when it gave one.
struct CallError {
    code: Option<String>,
    error: SendError,
}

impl From<SendError> for CallError {
    fn from(error: SendError) -> Self {
        CallError { code: None, error }
    }
}

pub(super) struct Api<'a> {
    slack: &'a Slack,
    token: &'a str,
    channel: &'a str,
}

/// Where an alert's message is remembered: one per firing of an alert.
fn thread_key(n: &Notice) -> String {
    format!("slack|{}|{}", n.fingerprint, n.starts_at)
}

fn store_error(e: crate::store::StoreError) -> SendError {
    SendError::Retry {
        reason: format!("the store failed: {e}"),
        after: None,
    }
}

impl<'a> Api<'a> {
    pub(super) fn new(slack: &'a Slack) -> Self {
        Api {
            slack,
            token: slack.config.bot_token.as_deref().unwrap_or_default(),
            channel: slack.config.channel.as_deref().unwrap_or_default(),
        }
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!(
            "{}/{method}",
            self.slack.config.api_url.trim_end_matches('/')
        );
        let resp = self
            .slack
            .http
            .post(url)
            .bearer_auth(self.token)
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        if status.as_u16() == 429 {
            return Err(CallError {
                code: Some("ratelimited".into()),
                error: SendError::Retry {
                    reason: format!("Slack {method}: HTTP 429 (rate limited)"),
                    after: Some(after.unwrap_or(Duration::from_secs(1))),
                },
            });
        }
        if status.is_redirection() {
            return Err(SendError::Retry {
                reason: format!(
                    "Slack {method}: {}",
                    crate::channels::redirected(status, resp.headers())
                ),
                after,
            }
            .into());
        }
        if !status.is_success() {
            let reason = format!("Slack {method}: HTTP {status}");
            return Err(if status.is_server_error() || status.as_u16() == 408 {
                SendError::Retry { reason, after }
            } else {
                SendError::Permanent(reason)
            }
            .into());
        }
        let answer: Value = resp.json().await.map_err(|e| SendError::Retry {
            reason: format!(
                "Slack {method}: unreadable answer: {}",
                llmchat_common::error_chain(&e.without_url())
            ),
            after: None,
        })?;
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer);
        }
        // The code is Slack's, but echoed into our logs and the outbox:
        // keep it short and printable.
        let code: String = answer["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let reason = format!("Slack {method}: {code}");
        let error = if code == "ratelimited" {
            SendError::Retry {
                reason,
                after: Some(after.unwrap_or(Duration::from_secs(1))),
            }
        } else if PERMANENT.contains(&code.as_str()) {
            SendError::Permanent(reason)
        } else {
            SendError::Retry { reason, after }
        };
        Err(CallError {
            code: Some(code),
            error,
        })
    }

    /// Posts a message (into a thread when given); its channel id and ts.
    async fn post(&self, mut message: Value, thread: Option<&Thread>) -> Result<Thread, SendError> {
        match thread {
            Some(t) => {
                message["channel"] = json!(t.target);
                message["thread_ts"] = json!(t.message_ref);
            }
            None => message["channel"] = json!(self.channel),
        }
        let answer = self
            .call("chat.postMessage", &message)
            .await
            .map_err(|e| e.error)?;
        Ok(Thread {
            target: answer["channel"]
                .as_str()
                .unwrap_or(self.channel)
                .to_string(),
            message_ref: answer["ts"].as_str().unwrap_or_default().to_string(),
        })
    }

    pub(super) async fn send(&self, d: &Delivery, store: &Store) -> Result<(), SendError> {
        let n = d.first();
        let message = self.slack.message(d);
        if n.kind == NoticeKind::RecoveryOutcome {
            // A recovery outcome: a reply under the alert that caused it.
            let thread = match n.labels.get("trigger_fingerprint") {
                Some(fp) => store
                    .latest_thread(&format!("slack|{fp}|"))
                    .await
                    .map_err(store_error)?,
                None => None,
            };
            return self.post(message, thread.as_ref()).await.map(|_| ());
        }
        let key = thread_key(n);
        match n.status {
            Status::Firing => {
                let posted = self.post(message, None).await?;
                // Posted: a failure to remember it must not post it again
                // on a retry; the resolve will then be a new message.
                if let Err(e) = store.put_thread(&key, &posted).await {
                    tracing::warn!(error = %e, "cannot remember the Slack message; its resolve will be a new message");
                }
                Ok(())
            }
            Status::Resolved => match store.thread(&key).await.map_err(store_error)? {
                Some(thread) => self.resolve_in_place(d, message, &thread).await,
                None => {
                    let firing = n.dedup_key(Status::Firing, ChannelKind::Slack.as_str());
                    if store.is_pending(&firing).await.map_err(store_error)? {
                        return Err(SendError::Retry {
                            reason: "waiting for the firing message to be posted".into(),
                            after: Some(WAIT_FOR_FIRING),
                        });
                    }
                    self.post(message, None).await.map(|_| ())
                }
            },
        }
    }

    /// `chat.update` of the firing message, then a reply in its thread.
    async fn resolve_in_place(
        &self,
        d: &Delivery,
        mut message: Value,
        thread: &Thread,
    ) -> Result<(), SendError> {
        message["channel"] = json!(thread.target);
        message["ts"] = json!(thread.message_ref);
        match self.call("chat.update", &message).await {
            Ok(_) => {}
            Err(CallError {
                code: Some(code), ..
            }) if GONE.contains(&code.as_str()) => {
                // Deleted or too old to edit: say it in a new message.
                let _ = message.as_object_mut().map(|m| {
                    m.remove("ts");
                });
                return self.post(message, None).await.map(|_| ());
            }
            Err(e) => return Err(e.error),
        }
        let reply = json!({"text": self.slack.reply(d), "mrkdwn": false});
        self.post(reply, Some(thread)).await.map(|_| ())
    }
}
