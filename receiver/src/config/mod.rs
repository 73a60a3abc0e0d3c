//! Configuration, in the exporter's style: defaults < TOML file
//! (`--config.file`) < `LLMCHAT_RECEIVER_*` environment < flags. Secrets
//! (tokens, passwords, webhook URLs, HMAC keys) are never printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use llmchat_common::settings::Settings;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;

use crate::channels::{ChannelError, Senders};
use crate::metrics::ChannelLabels;
use crate::templates::{RouteTemplates, TemplateError, Templates};

pub const DEFAULT_PORT: u16 = 9843;
/// The shortest bearer token accepted, at start and when its file changes.
pub const MIN_TOKEN_LEN: usize = 16;

use llmchat_common::invalid;
pub use llmchat_common::ConfigError;

pub use llmchat_common::duration;

mod cli;
mod delivery;
pub use cli::{Cli, Command, RenderArgs};
pub use delivery::DeliveryConfig;

/// The resolved configuration the receiver runs with. The sections with
/// flags declare them with `#[derive(Settings)]`.
#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[setting(section)]
    pub web: WebConfig,
    #[setting(section)]
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub routing: RoutingConfig,
    pub channels: ChannelsConfig,
    #[setting(section)]
    pub recovery: crate::recovery::config::RecoveryConfig,
    pub notify: crate::templates::NotifyConfig,
    #[setting(section)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on.
    #[setting(flag, value_name = "ADDR", default = format!(":{DEFAULT_PORT}"))]
    pub listen_address: String,
    /// Bearer token Alertmanager must send (`http_config.authorization`).
    #[setting(flag, value_name = "TOKEN")]
    pub bearer_token: Option<String>,
    /// File holding the bearer token (instead of --web.bearer-token).
    ///
    /// A Docker or systemd credential; trailing whitespace is ignored.
    #[setting(flag)]
    pub bearer_token_file: Option<PathBuf>,
    /// Or basic auth (`http_config.basic_auth`).
    pub basic_username: Option<String>,
    pub basic_password: Option<String>,
    /// Accept posts without credentials (trusted networks only).
    #[setting(flag)]
    pub auth_disabled: bool,
    #[setting(default = 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Alerts taken from one post; beyond it, the firing and most severe
    /// are kept and the rest folded into the post's count of left-out
    /// alerts (the email says how many, with a link to Alertmanager).
    #[setting(default = 1000)]
    pub max_alerts_per_post: usize,
    /// Posts parsed and routed at once; the others wait (up to
    /// `web.limits.body_timeout`), then get 503, which Alertmanager retries.
    /// A post carrying a critical alert may also take one slot kept for
    /// such posts: a page does not queue behind a storm of warnings.
    #[setting(default = 4)]
    pub max_concurrent_posts: usize,
    /// Bytes of posts (their bodies' length) whose notifications may wait
    /// for the store's commit at once; past it a post waits for room (up
    /// to `web.limits.body_timeout`, then 503). A post leaves its parse
    /// slot once routed, so one group commit (one fsync) takes every post
    /// waiting, while the memory they hold stays bounded.
    #[setting(default = 16 * 1024 * 1024)]
    pub commit_queue_bytes: usize,
    /// exporter-toolkit web-config file (TLS, mutual TLS, basic auth, headers).
    ///
    /// Basic auth for every path; re-read when it changes or on SIGHUP.
    #[setting(flag = "web.config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// What one client may hold of the server (`[web.limits]`).
    #[setting(section)]
    pub limits: llmchat_common::http::Limits,
}

#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Outbox store: sqlite://PATH (default, no server needed) or postgres://...
    #[setting(flag, value_name = "URL", default = "sqlite://llmchat-receiver.db")]
    pub url: String,
}

/// A route: alerts whose labels match all `matchers` go to `channels`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub matchers: BTreeMap<String, String>,
    pub channels: Vec<ChannelKind>,
    /// The language of this route's messages (else `[notify] language`).
    #[serde(default)]
    pub language: Option<crate::templates::Language>,
    /// Template files for this route's alerts, as `[notify.templates]`.
    #[serde(default)]
    pub templates: BTreeMap<String, PathBuf>,
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
        let by = |sev: &str, channels: &[ChannelKind]| Route {
            matchers: BTreeMap::from([("severity".to_string(), sev.to_string())]),
            channels: channels.to_vec(),
            language: None,
            templates: BTreeMap::new(),
        };
        Self {
            default_severity: "warning".into(),
            routes: vec![
                by(
                    "critical",
                    &[ChannelKind::Email, ChannelKind::Slack, ChannelKind::Webhook],
                ),
                by("warning", &[ChannelKind::Slack, ChannelKind::Webhook]),
                by("info", &[ChannelKind::Webhook]),
            ],
        }
    }
}

pub use crate::channels::{ChannelKind, ChannelsConfig};

#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log filter.
    #[setting(flag, value_name = "FILTER", default = "info")]
    pub level: String,
    /// Log format, text or json.
    #[setting(flag, value_name = "FORMAT", default = "text")]
    pub format: String,
}

impl Config {
    /// Applies every channel's secrets from the environment
    /// ([`crate::channels::secret_env`]), so that a deployment (docker
    /// compose's `.env`, a systemd credential) keeps them out of the TOML
    /// file. Empty values count as unset.
    pub fn apply_secret_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        self.channels.apply_secret_env(get)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        listen_address(&self.web.listen_address)?;
        let has_basic = self.web.basic_username.is_some() || self.web.basic_password.is_some();
        let file_users = match &self.web.config_file {
            Some(path) => llmchat_common::webconfig::load(path)?.has_users(),
            None => false,
        };
        if file_users && (self.web.bearer_token.is_some() || has_basic) {
            // One Authorization header cannot carry both.
            return Err(invalid(
                if has_basic { "web.basic_username" } else { "web.bearer_token" },
                "(not shown)",
                "the web config file's basic_auth_users already guard every path; set one or the other",
            ));
        }
        if !self.web.auth_disabled && self.web.bearer_token.is_none() && !has_basic && !file_users {
            return Err(invalid(
                "web.bearer_token",
                "(unset)",
                "credentials are required: set web.bearer_token or web.basic_username/basic_password, or basic_auth_users in web.config_file (or web.auth_disabled = true)",
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
            .is_some_and(|t| t.len() < MIN_TOKEN_LEN)
        {
            return Err(invalid(
                "web.bearer_token",
                "(not shown)",
                format!("must be at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        self.web.limits.validate()?;
        for (key, value) in [
            ("web.max_alerts_per_post", self.web.max_alerts_per_post),
            ("web.max_concurrent_posts", self.web.max_concurrent_posts),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be at least 1"));
            }
        }
        if self.web.body_limit_bytes < 1024 {
            return Err(invalid(
                "web.body_limit_bytes",
                self.web.body_limit_bytes,
                "must be at least 1024",
            ));
        }
        // A semaphore's permits are counted in u32 per acquisition; a
        // post must fit whole.
        if self.web.commit_queue_bytes < self.web.body_limit_bytes
            || self.web.commit_queue_bytes > u32::MAX as usize
        {
            return Err(invalid(
                "web.commit_queue_bytes",
                self.web.commit_queue_bytes,
                format!(
                    "must be from web.body_limit_bytes ({}) to {}",
                    self.web.body_limit_bytes,
                    u32::MAX
                ),
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
        self.channels.validate()?;
        for (key, url) in [
            ("notify.runbook_base_url", &self.notify.runbook_base_url),
            ("notify.grafana_url", &self.notify.grafana_url),
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(key, url, "expected an http(s) URL"));
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
        self.check_templates()?;
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

    /// Every template compiles now, or the start fails naming the file and
    /// the line.
    pub fn check_templates(&self) -> Result<(), ConfigError> {
        self.templates(Default::default()).map_err(|e| {
            let key = e.key().to_string();
            invalid(&key, "(template)", e.to_string())
        })?;
        Ok(())
    }

    /// Every template compiled: the channels' built-ins, `[notify]`'s
    /// files, each route's (by route index) and those written in the
    /// channels' sections; a template's render failures are counted in
    /// `template_errors`.
    pub fn templates(
        &self,
        template_errors: Family<ChannelLabels, Counter>,
    ) -> Result<Templates, TemplateError> {
        let routes: Vec<RouteTemplates> = self
            .routing
            .routes
            .iter()
            .map(|r| RouteTemplates {
                language: r.language,
                templates: r.templates.clone(),
            })
            .collect();
        Templates::new(
            &self.notify,
            &routes,
            &crate::channels::templates(),
            &self.channels.inline_templates(),
            template_errors,
        )
    }

    /// The configured channels with every template compiled.
    pub fn senders(
        &self,
        template_errors: Family<ChannelLabels, Counter>,
    ) -> Result<Senders, ChannelError> {
        Senders::new(
            &self.channels,
            self.templates(template_errors)?,
            self.delivery.timeout,
            self.delivery.slack_interval,
        )
    }
}

pub fn listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    llmchat_common::listen_address(value)
        .map_err(|reason| invalid("web.listen_address", value, reason))
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
            c.channels.slack.as_ref().unwrap().webhook_url.as_deref(),
            Some("https://hooks.slack.com/services/T/B/secret")
        );
        assert!(c.channels.webhook.is_none(), "empty values count as unset");
        let e = Config::default()
            .apply_secret_env(|k| (k == "LLMCHAT_RECEIVER_SMTP_PASSWORD").then(|| "pw".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[channels.email]") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn every_secret_variable_keeps_its_name_and_its_place() {
        assert_eq!(
            crate::channels::secret_env(),
            [
                "LLMCHAT_RECEIVER_SMTP_USERNAME",
                "LLMCHAT_RECEIVER_SMTP_PASSWORD",
                "LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL",
                "LLMCHAT_RECEIVER_SLACK_BOT_TOKEN",
                "LLMCHAT_RECEIVER_WEBHOOK_URL",
                "LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET",
            ]
        );
        let file =
            "[channels.email]\nsmtp_host = \"h\"\nfrom = \"a@b\"\nto = { default = [\"c@d\"] }\n\
                    [channels.slack]\nchannel = \"#alerts\"\n\
                    [channels.webhook]\nurl = \"http://file/\"\n";
        let mut c: Config = llmchat_common::from_toml(file).unwrap();
        c.apply_secret_env(|k| Some(format!("{k}-value"))).unwrap();
        let (email, slack, webhook) = (
            c.channels.email.unwrap(),
            c.channels.slack.unwrap(),
            c.channels.webhook.unwrap(),
        );
        assert_eq!(
            email.username.unwrap(),
            "LLMCHAT_RECEIVER_SMTP_USERNAME-value"
        );
        assert_eq!(
            email.password.unwrap(),
            "LLMCHAT_RECEIVER_SMTP_PASSWORD-value"
        );
        assert_eq!(
            slack.webhook_url.unwrap(),
            "LLMCHAT_RECEIVER_SLACK_WEBHOOK_URL-value"
        );
        assert_eq!(
            slack.bot_token.unwrap(),
            "LLMCHAT_RECEIVER_SLACK_BOT_TOKEN-value"
        );
        assert_eq!(webhook.url, "LLMCHAT_RECEIVER_WEBHOOK_URL-value");
        assert_eq!(
            webhook.hmac_secret.unwrap(),
            "LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET-value"
        );
        // A variable that cannot make its section alone says what is missing.
        for (var, wanted) in [
            (
                "LLMCHAT_RECEIVER_SLACK_BOT_TOKEN",
                "[channels.slack] (with its channel)",
            ),
            ("LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET", "no webhook URL"),
        ] {
            let e = Config::default()
                .apply_secret_env(|k| (k == var).then(|| "s3cret".to_string()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(wanted) && e.contains(var) && !e.contains("s3cret"),
                "{e}"
            );
        }
        let mut c = Config::default();
        c.apply_secret_env(|k| (k == "LLMCHAT_RECEIVER_WEBHOOK_URL").then(|| "http://env/".into()))
            .unwrap();
        let w = c.channels.webhook.unwrap();
        assert_eq!((w.url.as_str(), w.send_resolved), ("http://env/", true));
    }
}
