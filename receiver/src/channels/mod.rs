//! The three channels of the guide's `NotificationService`. Each send
//! either succeeds, fails for now (retried, honouring `Retry-After`), or
//! fails for good (a 4xx other than 408/429: the message itself is wrong).

pub mod email;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use crate::config::{Channel, ChannelsConfig};
use crate::payload::Notice;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
    #[error("channel {0} is not configured")]
    NotConfigured(&'static str),
}

/// Classifies an HTTP answer from Slack or a webhook target.
pub(crate) fn http_outcome(resp: &reqwest::Response) -> Result<(), SendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let reason = format!("HTTP {status}");
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(SendError::Retry { reason, after })
    } else {
        Err(SendError::Permanent(reason))
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 allows both).
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub(crate) fn transport_error(e: reqwest::Error) -> SendError {
    SendError::Retry {
        // without_url: the URL may carry a token (Slack's does).
        reason: e.without_url().to_string(),
        after: None,
    }
}

/// The names of the channels that have a configuration, or `none`.
pub fn configured_names(c: &ChannelsConfig) -> Vec<&'static str> {
    let names: Vec<&'static str> = [
        (c.email.is_some(), "email"),
        (c.slack.is_some(), "slack"),
        (c.webhook.is_some(), "webhook"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if names.is_empty() {
        vec!["none"]
    } else {
        names
    }
}

pub struct Senders {
    http: reqwest::Client,
    email: Option<email::Email>,
    config: ChannelsConfig,
}

impl Senders {
    pub fn new(config: &ChannelsConfig, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("llmchat-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let email = config
            .email
            .as_ref()
            .map(|c| email::Email::new(c, timeout))
            .transpose()?;
        Ok(Senders {
            http,
            email,
            config: config.clone(),
        })
    }

    /// Whether a channel is configured and wants this notice (resolved
    /// notices only where `send_resolved`).
    pub fn wants(&self, channel: Channel, notice: &Notice) -> bool {
        let resolved = notice.status == crate::payload::Status::Resolved;
        match channel {
            Channel::Email => self
                .config
                .email
                .as_ref()
                .is_some_and(|c| !resolved || c.send_resolved),
            Channel::Slack => self
                .config
                .slack
                .as_ref()
                .is_some_and(|c| !resolved || c.send_resolved),
            Channel::Webhook => self
                .config
                .webhook
                .as_ref()
                .is_some_and(|c| !resolved || c.send_resolved),
        }
    }

    /// The channels that have a configuration.
    pub fn configured(&self) -> Vec<Channel> {
        let c = &self.config;
        [
            (c.email.is_some(), Channel::Email),
            (c.slack.is_some(), Channel::Slack),
            (c.webhook.is_some(), Channel::Webhook),
        ]
        .into_iter()
        .filter_map(|(on, ch)| on.then_some(ch))
        .collect()
    }

    pub async fn send(&self, channel: Channel, notice: &Notice) -> Result<(), SendError> {
        match channel {
            Channel::Email => match &self.email {
                Some(e) => e.send(notice).await,
                None => Err(SendError::NotConfigured("email")),
            },
            Channel::Slack => match &self.config.slack {
                Some(c) => slack::send(&self.http, c, notice).await,
                None => Err(SendError::NotConfigured("slack")),
            },
            Channel::Webhook => match &self.config.webhook {
                Some(c) => webhook::send(&self.http, c, notice).await,
                None => Err(SendError::NotConfigured("webhook")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&soon).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}

#[cfg(test)]
mod tls_tests {
    /// Slack's webhooks are https: a client without TLS support would
    /// refuse the URL itself instead of trying to connect.
    #[tokio::test]
    async fn https_targets_are_supported() {
        let client = reqwest::Client::new();
        let err = client
            .post("https://127.0.0.1:9/services/T/B/X")
            .send()
            .await
            .unwrap_err();
        assert!(!err.is_builder(), "{err:?}");
        assert!(err.is_connect(), "{err:?}");
    }
}
