//! Slack incoming webhook: one attachment per alert, coloured by severity
//! (green when resolved), with summary, description, labels as fields and
//! a link to the alert's source; Slack's 50-field limit is respected.

use serde_json::json;

use super::{http_outcome, transport_error, SendError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{Channel, ChannelError, ChannelKind, ChannelsConfig, Shared};
use crate::payload::{Notice, Status};

/// Slack shows at most this many fields per attachment.
const MAX_FIELDS: usize = 50;

pub fn message(notice: &Notice) -> serde_json::Value {
    let color = match (notice.status, notice.severity.as_str()) {
        (Status::Resolved, _) => "#2eb886",
        (_, "critical") => "#d00000",
        (_, "warning") => "#f2a900",
        _ => "#439fe0",
    };
    let mut fields: Vec<serde_json::Value> = notice
        .labels
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": true}))
        .collect();
    let extra = fields.len().saturating_sub(MAX_FIELDS);
    fields.truncate(MAX_FIELDS);
    let mut text = notice.description.clone();
    if extra > 0 {
        text.push_str(&format!("\n({extra} more labels not shown)"));
    }
    if notice.truncated_alerts > 0 {
        text.push_str(&format!(
            "\nAlertmanager truncated {} alerts of this group.",
            notice.truncated_alerts
        ));
    }
    json!({
        "text": notice.subject(),
        "attachments": [{
            "color": color,
            "title": format!("{}: {}", notice.alertname, notice.summary),
            "title_link": notice.generator_url,
            "text": text,
            "fields": fields,
            "footer": "llmchat-receiver",
        }]
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub webhook_url: String,
    #[serde(default = "crate::config::yes")]
    pub send_resolved: bool,
}

/// The channel's line in [`super::ALL`].
pub fn build(
    config: &ChannelsConfig,
    shared: &Shared,
) -> Result<Option<Box<dyn Channel>>, ChannelError> {
    Ok(config.slack.as_ref().map(|c| {
        Box::new(Slack {
            http: shared.http.clone(),
            config: c.clone(),
            pace: shared.slack_interval,
        }) as Box<dyn Channel>
    }))
}

pub struct Slack {
    http: reqwest::Client,
    config: SlackConfig,
    pace: Duration,
}

impl Channel for Slack {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn render(&self, notice: &Notice) -> Result<String, SendError> {
        Ok(message(notice).to_string())
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(send(&self.http, &self.config, notice))
    }

    fn pace(&self) -> Duration {
        self.pace
    }
}

pub async fn send(
    http: &reqwest::Client,
    c: &SlackConfig,
    notice: &Notice,
) -> Result<(), SendError> {
    let resp = http
        .post(&c.webhook_url)
        .json(&message(notice))
        .send()
        .await
        .map_err(transport_error)?;
    http_outcome(&resp)
}
