//! Slack: Block Kit messages in a coloured attachment (red, amber or blue
//! by severity, green when resolved), the links as buttons.
//!
//! Two ways in:
//! - an incoming webhook (`webhook_url`): each notification is a new
//!   message, as Slack allows nothing else there;
//! - the Web API with a bot token (`bot_token`, `channel`):
//!   `chat.postMessage`, then on resolve `chat.update` of that message
//!   (green, "resolved after 12 min") and a one-line reply in its thread;
//!   recovery outcomes are replies in the thread of the alert that
//!   triggered them. The message's channel and `ts` are kept in the store
//!   ([`crate::store::Thread`]) so any replica can update it.

mod api;
pub mod limits;

use llmchat_common::settings::Settings;
use std::time::Duration;

use futures_util::future::BoxFuture;
use llmchat_common::{invalid, ConfigError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{http_outcome, transport_error, SendError};
use super::{Channel, ChannelError, ChannelKind, ChannelSpec, RecoveryOutcomes, Shared};
use crate::payload::Delivery;
use crate::store::Store;
use crate::templates::{Language, MessageContext, OutputError, TemplateSpec, Templates};
use std::sync::Arc;

pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// `[channels.slack]`: an incoming webhook, or a bot token and a channel.
#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// An incoming webhook's URL (a secret: the path is the credential).
    /// The variable alone configures Slack (or overrides the file's).
    #[setting(env = "LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// A bot token (`xoxb-…`) for the Web API; with `channel`.
    #[setting(env = "LLMCHAT_RECEIVER_SLACK_BOT_TOKEN")]
    pub bot_token: Option<String>,
    /// The channel the bot posts to (`#alerts` or an id).
    pub channel: Option<String>,
    /// The Web API's base URL.
    #[setting(default = DEFAULT_API_URL)]
    pub api_url: String,
    #[setting(default = true)]
    pub send_resolved: bool,
}

impl SlackConfig {
    pub fn with_webhook(url: String) -> Self {
        SlackConfig {
            webhook_url: Some(url),
            ..SlackConfig::default()
        }
    }

    /// Exactly one way in, and what it needs; the key that is wrong (its
    /// value never shown: URLs and tokens are secrets).
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(invalid(key, "(not shown)", reason));
        match (&self.webhook_url, &self.bot_token) {
            (Some(_), Some(_)) => bad(
                "channels.slack.bot_token",
                "set either webhook_url or bot_token (with channel), not both",
            ),
            (None, None) => bad(
                "channels.slack.webhook_url",
                "set webhook_url, or bot_token and channel",
            ),
            (Some(url), None) if !is_http(url) => {
                bad("channels.slack.webhook_url", "expected an http(s) URL")
            }
            (None, Some(_)) if self.channel.as_deref().is_none_or(str::is_empty) => bad(
                "channels.slack.channel",
                "the Web API needs the channel to post to",
            ),
            (None, Some(_)) if !is_http(&self.api_url) => {
                bad("channels.slack.api_url", "expected an http(s) URL")
            }
            _ => Ok(()),
        }
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// The channel's line in [`super::ALL`].
/// Slack's templates: the message (Slack- then JSON-escaped) and the
/// thread reply (Slack-escaped).
pub const MESSAGE: TemplateSpec = TemplateSpec {
    name: "slack",
    suffix: "slack.json",
    builtin: &[
        (
            Language::En,
            include_str!("../../../templates/en/slack.json"),
        ),
        (
            Language::Zh,
            include_str!("../../../templates/zh/slack.json"),
        ),
    ],
};
pub const REPLY: TemplateSpec = TemplateSpec {
    name: "slack_reply",
    suffix: "slack",
    builtin: &[
        (
            Language::En,
            include_str!("../../../templates/en/slack_reply.txt"),
        ),
        (
            Language::Zh,
            include_str!("../../../templates/zh/slack_reply.txt"),
        ),
    ],
};

/// Slack's line in the `channels!` table.
pub struct SlackSpec;

impl ChannelSpec for SlackSpec {
    type Config = SlackConfig;
    const TEMPLATES: &'static [&'static TemplateSpec] = &[&MESSAGE, &REPLY];
    /// A recovery outcome is a reply in the thread of the alert that
    /// caused it, so only where that alert went.
    const RECOVERY_OUTCOMES: RecoveryOutcomes = RecoveryOutcomes::WhereTheAlertWent;
    /// The webhook URL's variable alone configures Slack; a bot token
    /// needs `[channels.slack]`, which names the channel.
    fn section_from_env(
        key: &str,
        var: &'static str,
        value: String,
    ) -> Result<SlackConfig, ConfigError> {
        match key {
            "webhook_url" => Ok(SlackConfig::with_webhook(value)),
            _ => Err(invalid(
                "channels.slack",
                var,
                "a Slack bot token is set but [channels.slack] (with its channel) is not",
            )),
        }
    }

    fn validate(config: &SlackConfig) -> Result<(), ConfigError> {
        config.check()
    }

    fn placeholder() -> SlackConfig {
        SlackConfig::with_webhook("http://localhost/".into())
    }

    fn build(config: &SlackConfig, shared: &Shared) -> Result<Box<dyn Channel>, ChannelError> {
        Ok(Box::new(Slack {
            http: shared.http.clone(),
            config: config.clone(),
            pace: shared.slack_interval,
            templates: shared.templates.clone(),
        }))
    }
}

pub struct Slack {
    http: reqwest::Client,
    config: SlackConfig,
    pace: Duration,
    templates: Arc<Templates>,
}

/// The message when even the built-in template failed: the subject line.
fn minimal(ctx: &MessageContext) -> Value {
    let a = ctx.alerts.first();
    json!({
        "text": crate::templates::context::slack_escape(&format!(
            "[LLMChat][{}] {}",
            ctx.status.to_uppercase(),
            a.map(|a| a.alertname.as_str()).unwrap_or("alert")
        )),
        "mrkdwn": false,
    })
}

fn is_json(s: &str) -> Result<(), OutputError> {
    serde_json::from_str::<Value>(s)
        .map(|_| ())
        .map_err(|e| OutputError {
            channel: "Slack",
            expected: "JSON",
            source: Box::new(e),
        })
}

impl Slack {
    /// The message for a delivery (always one alert), within Slack's limits.
    pub fn message(&self, d: &Delivery) -> Value {
        let ctx = self.templates.context(&d.notices, d.route);
        let mut message = self
            .templates
            .render(&MESSAGE, d.route, "slack", &ctx, is_json)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| minimal(&ctx));
        limits::enforce(&mut message);
        message
    }

    /// The one-line thread reply to a resolved alert's message.
    fn reply(&self, d: &Delivery) -> String {
        let ctx = self.templates.context(&d.notices, d.route);
        let text = self
            .templates
            .render(&REPLY, d.route, "slack", &ctx, |_| Ok(()))
            .unwrap_or_default();
        crate::templates::context::cut(text.trim(), limits::MAX_TEXT)
    }

    async fn send(&self, d: &Delivery, store: &Store) -> Result<(), SendError> {
        match &self.config.webhook_url {
            Some(url) => {
                let resp = self
                    .http
                    .post(url)
                    .json(&self.message(d))
                    .send()
                    .await
                    .map_err(transport_error)?;
                http_outcome(&resp)
            }
            None => api::Api::new(self).send(d, store).await,
        }
    }
}

impl Channel for Slack {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn render(&self, d: &Delivery) -> Result<String, SendError> {
        serde_json::to_string_pretty(&self.message(d))
            .map_err(|e| SendError::Permanent(e.to_string()))
    }

    fn send<'a>(
        &'a self,
        d: &'a Delivery,
        store: &'a Store,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(Slack::send(self, d, store))
    }

    fn pace(&self) -> Duration {
        self.pace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_way_in_and_what_it_needs() {
        let hook = SlackConfig::with_webhook("https://hooks.slack.com/services/T/B/X".into());
        assert!(hook.check().is_ok());
        let both = SlackConfig {
            bot_token: Some("xoxb-1".into()),
            ..hook.clone()
        };
        assert_eq!(
            both.check().unwrap_err().key(),
            Some("channels.slack.bot_token")
        );
        let bot = SlackConfig {
            webhook_url: None,
            bot_token: Some("xoxb-1".into()),
            ..hook.clone()
        };
        assert_eq!(
            bot.check().unwrap_err().key(),
            Some("channels.slack.channel")
        );
        let bot = SlackConfig {
            channel: Some("#alerts".into()),
            ..bot
        };
        assert!(bot.check().is_ok());
        let neither = SlackConfig {
            webhook_url: None,
            ..hook.clone()
        };
        assert_eq!(
            neither.check().unwrap_err().key(),
            Some("channels.slack.webhook_url")
        );
        let not_http = SlackConfig::with_webhook("file:///etc/passwd".into());
        assert_eq!(
            not_http.check().unwrap_err().key(),
            Some("channels.slack.webhook_url")
        );
    }
}
