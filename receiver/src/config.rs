//! Configuration, in the exporter's style: defaults < TOML file
//! (`--config.file`) < `LLMCHAT_RECEIVER_*` environment < flags. Secrets
//! (tokens, passwords, webhook URLs, HMAC keys) are never printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

pub const DEFAULT_PORT: u16 = 9843;

use llmchat_common::invalid;
pub use llmchat_common::ConfigError;

pub use llmchat_common::duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub web: WebConfig,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub routing: RoutingConfig,
    pub channels: ChannelsConfig,
    pub recovery: crate::recovery::config::RecoveryConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub listen_address: String,
    /// Bearer token Alertmanager sends (`http_config.authorization`).
    pub bearer_token: Option<String>,
    /// Or read from this file (a Docker or systemd credential); trailing
    /// whitespace is ignored.
    pub bearer_token_file: Option<PathBuf>,
    /// Or basic auth (`http_config.basic_auth`).
    pub basic_username: Option<String>,
    pub basic_password: Option<String>,
    /// Accept unauthenticated posts; only for a trusted local network.
    pub auth_disabled: bool,
    pub body_limit_bytes: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: format!(":{DEFAULT_PORT}"),
            bearer_token: None,
            bearer_token_file: None,
            basic_username: None,
            basic_password: None,
            auth_disabled: false,
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` (default, no server needed) or `postgres://...`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://llmchat-receiver.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one send.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// A notification still failing this long after it arrived is dead.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Minimum spacing of messages to one Slack webhook URL.
    #[serde(with = "duration")]
    pub slack_interval: Duration,
    /// How long deduplication keys are kept.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    /// How often the outbox is polled when nothing wakes the worker.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            slack_interval: Duration::from_secs(1),
            dedup_window: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A route: alerts whose labels match all `matchers` go to `channels`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub matchers: BTreeMap<String, String>,
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "slack" => Some(Channel::Slack),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Severity of alerts without a known `severity` label.
    pub default_severity: String,
    /// Tried in order; the first match wins. Defaults to the guide's
    /// getNotificationChannels by severity.
    pub routes: Vec<Route>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let by = |sev: &str, channels: &[Channel]| Route {
            matchers: BTreeMap::from([("severity".to_string(), sev.to_string())]),
            channels: channels.to_vec(),
        };
        Self {
            default_severity: "warning".into(),
            routes: vec![
                by(
                    "critical",
                    &[Channel::Email, Channel::Slack, Channel::Webhook],
                ),
                by("warning", &[Channel::Slack, Channel::Webhook]),
                by("info", &[Channel::Webhook]),
            ],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub email: Option<EmailConfig>,
    pub slack: Option<SlackConfig>,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on the submission port.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS, for a local relay.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM certificates to trust for the relay, besides the public roots
    /// (an internal relay with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    pub from: String,
    /// Recipients per severity (the guide's getAlertEmails).
    pub to: BTreeMap<String, Vec<String>>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub webhook_url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Shared secret for the `X-LLMChat-Signature: sha256=<hex>` header.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "llmchat-receiver",
    version,
    about = "Alertmanager webhook receiver for LLMChat: email, Slack and webhooks, durably"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(
        long = "config.file",
        env = "LLMCHAT_RECEIVER_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Address to listen on [default: :9843].
    #[arg(
        long = "web.listen-address",
        env = "LLMCHAT_RECEIVER_WEB_LISTEN_ADDRESS",
        value_name = "ADDR"
    )]
    pub web_listen_address: Option<String>,
    /// Bearer token Alertmanager must send.
    #[arg(
        long = "web.bearer-token",
        env = "LLMCHAT_RECEIVER_WEB_BEARER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub web_bearer_token: Option<String>,
    /// File holding the bearer token (instead of --web.bearer-token).
    #[arg(
        long = "web.bearer-token-file",
        env = "LLMCHAT_RECEIVER_WEB_BEARER_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub web_bearer_token_file: Option<PathBuf>,
    /// Accept posts without credentials (trusted networks only).
    #[arg(long = "web.auth-disabled", env = "LLMCHAT_RECEIVER_WEB_AUTH_DISABLED")]
    pub web_auth_disabled: bool,
    /// Outbox store: sqlite://PATH or postgres://... [default: sqlite://llmchat-receiver.db].
    #[arg(
        long = "store.url",
        env = "LLMCHAT_RECEIVER_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store_url: Option<String>,
    /// Redis that shares recovery cooldowns between receiver replicas (SET NX PX);
    /// without it they are kept in the store.
    #[arg(
        long = "redis.url",
        env = "LLMCHAT_RECEIVER_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Record recovery decisions without running any action.
    #[arg(long = "recovery.dry-run", env = "LLMCHAT_RECEIVER_RECOVERY_DRY_RUN")]
    pub recovery_dry_run: bool,
    /// Log filter [default: info].
    #[arg(
        long = "log.level",
        env = "LLMCHAT_RECEIVER_LOG_LEVEL",
        value_name = "FILTER"
    )]
    pub log_level: Option<String>,
    /// Log format, text or json [default: text].
    #[arg(
        long = "log.format",
        env = "LLMCHAT_RECEIVER_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
}

impl Cli {
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut c = match &self.config_file {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        if let Some(v) = self.web_listen_address {
            c.web.listen_address = v;
        }
        if self.web_bearer_token.is_some() {
            c.web.bearer_token = self.web_bearer_token;
        }
        if self.web_bearer_token_file.is_some() {
            c.web.bearer_token_file = self.web_bearer_token_file;
        }
        if self.web_auth_disabled {
            c.web.auth_disabled = true;
        }
        if let Some(v) = self.store_url {
            c.store.url = v;
        }
        if self.redis_url.is_some() {
            c.recovery.redis_url = self.redis_url;
        }
        if self.recovery_dry_run {
            c.recovery.dry_run = true;
        }
        if let Some(v) = self.log_level {
            c.log.level = v;
        }
        c.apply_secret_env(|k| std::env::var(k).ok())?;
        if let Some(path) = &c.web.bearer_token_file {
            if c.web.bearer_token.is_some() {
                return Err(invalid(
                    "web.bearer_token_file",
                    path.display(),
                    "set either web.bearer_token or web.bearer_token_file, not both",
                ));
            }
            let token = std::fs::read_to_string(path)
                .map_err(|e| invalid("web.bearer_token_file", path.display(), e))?;
            c.web.bearer_token = Some(token.trim_end().to_string());
        }
        if let Some(v) = self.log_format {
            c.log.format = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Environment variables that carry channel secrets, so that a deployment
/// (docker compose's `.env`, a systemd credential) keeps them out of the
/// TOML file. Empty values count as unset.
pub const SECRET_ENV: [&str; 5] = [
    "LLMCHAT_RECEIVER_SMTP_USERNAME",
    "LLMCHAT_RECEIVER_SMTP_PASSWORD",
    "LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL",
    "LLMCHAT_RECEIVER_WEBHOOK_URL",
    "LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET",
];

impl Config {
    /// Applies [`SECRET_ENV`]: SMTP credentials into `[channels.email]`
    /// (which must exist), a Slack or webhook URL creating or overriding
    /// its channel, the HMAC secret into the webhook channel.
    pub fn apply_secret_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        for (var, is_password) in [
            ("LLMCHAT_RECEIVER_SMTP_USERNAME", false),
            ("LLMCHAT_RECEIVER_SMTP_PASSWORD", true),
        ] {
            if let Some(v) = get(var) {
                let Some(email) = self.channels.email.as_mut() else {
                    return Err(invalid(
                        "channels.email",
                        var,
                        "SMTP credentials are set but [channels.email] is not",
                    ));
                };
                if is_password {
                    email.password = Some(v);
                } else {
                    email.username = Some(v);
                }
            }
        }
        if let Some(url) = get("LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL") {
            match self.channels.slack.as_mut() {
                Some(s) => s.webhook_url = url,
                None => {
                    self.channels.slack = Some(SlackConfig {
                        webhook_url: url,
                        send_resolved: true,
                    })
                }
            }
        }
        if let Some(url) = get("LLMCHAT_RECEIVER_WEBHOOK_URL") {
            match self.channels.webhook.as_mut() {
                Some(w) => w.url = url,
                None => {
                    self.channels.webhook = Some(WebhookConfig {
                        url,
                        headers: BTreeMap::new(),
                        hmac_secret: None,
                        send_resolved: true,
                    })
                }
            }
        }
        if let Some(secret) = get("LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET") {
            let Some(w) = self.channels.webhook.as_mut() else {
                return Err(invalid(
                    "channels.webhook",
                    "LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET",
                    "an HMAC secret is set but no webhook URL",
                ));
            };
            w.hmac_secret = Some(secret);
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        llmchat_common::from_toml(&text).map_err(|(key, message)| ConfigError::File {
            path: path.to_owned(),
            key,
            message,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        listen_address(&self.web.listen_address)?;
        let has_basic = self.web.basic_username.is_some() || self.web.basic_password.is_some();
        if !self.web.auth_disabled && self.web.bearer_token.is_none() && !has_basic {
            return Err(invalid(
                "web.bearer_token",
                "(unset)",
                "credentials are required: set web.bearer_token or web.basic_username/basic_password (or web.auth_disabled = true)",
            ));
        }
        if has_basic && (self.web.basic_username.is_none() || self.web.basic_password.is_none()) {
            return Err(invalid(
                "web.basic_password",
                "(not shown)",
                "basic auth needs both a username and a password",
            ));
        }
        if self
            .web
            .bearer_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(invalid(
                "web.bearer_token",
                "(not shown)",
                "must be at least 16 characters",
            ));
        }
        if self.web.body_limit_bytes < 1024 {
            return Err(invalid(
                "web.body_limit_bytes",
                self.web.body_limit_bytes,
                "must be at least 1024",
            ));
        }
        let url = &self.store.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store.url",
                "(not shown)",
                "expected sqlite://PATH or postgres://...",
            ));
        }
        if !matches!(
            self.routing.default_severity.as_str(),
            "critical" | "warning" | "info"
        ) {
            return Err(invalid(
                "routing.default_severity",
                &self.routing.default_severity,
                "expected critical, warning or info",
            ));
        }
        for (key, url) in [
            (
                "channels.slack.webhook_url",
                self.channels.slack.as_ref().map(|s| &s.webhook_url),
            ),
            (
                "channels.webhook.url",
                self.channels.webhook.as_ref().map(|w| &w.url),
            ),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(invalid(key, "(not shown)", "expected an http(s) URL"));
                }
            }
        }
        if self.delivery.initial_backoff.is_zero()
            || self.delivery.max_backoff < self.delivery.initial_backoff
        {
            return Err(invalid(
                "delivery.max_backoff",
                humantime::format_duration(self.delivery.max_backoff),
                "must be at least delivery.initial_backoff, which must be above zero",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                &self.log.format,
                "expected text or json",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", &self.log.level, e));
        }
        self.recovery.validate()
    }
}

pub fn listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    llmchat_common::listen_address(value)
        .map_err(|reason| invalid("web.listen-address", value, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_secrets_come_from_the_environment() {
        let env = BTreeMap::from([
            (
                "LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/secret",
            ),
            ("LLMCHAT_RECEIVER_WEBHOOK_URL", ""),
            ("LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET", ""),
        ]);
        let mut c = Config::default();
        c.apply_secret_env(|k| env.get(k).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(
            c.channels.slack.as_ref().unwrap().webhook_url,
            "https://hooks.slack.com/services/T/B/secret"
        );
        assert!(c.channels.webhook.is_none(), "empty values count as unset");
        let e = Config::default()
            .apply_secret_env(|k| (k == "LLMCHAT_RECEIVER_SMTP_PASSWORD").then(|| "pw".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[channels.email]") && !e.contains("pw"), "{e}");
    }
}
