//! The channels of the guide's `NotificationService`, behind one
//! [`Channel`] trait. Each channel is one module holding all of its code:
//! its config section, its secrets from the environment, its checks, its
//! templates, its placeholder for `render`, its rendering and its sending
//! ([`ChannelSpec`]); the `channels!` table is the one list of them. Each renders its messages through the shared
//! [`Templates`]. Each send either succeeds, fails for now (retried,
//! honouring `Retry-After`), or fails for good (a 4xx other than 408/429:
//! the message itself is wrong).

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use std::sync::Arc;

use crate::payload::{Delivery, Notice, Status};
use crate::store::Store;
use llmchat_common::settings::{env_settings, Settings};
use llmchat_common::{invalid, ConfigError};

use crate::templates::{InlineTemplate, TemplateError, TemplateSpec, Templates};

impl ChannelKind {
    pub fn parse(s: &str) -> Option<ChannelKind> {
        ALL.iter().copied().find(|k| k.as_str() == s)
    }

    fn bit(self) -> u64 {
        1 << ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Which channels a recovery action's outcome goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcomes {
    /// Every outcome (the webhook: the machine-readable record).
    Always,
    /// Where the alert that triggered the action went (Slack: a reply in
    /// the alert's thread).
    WhereTheAlertWent,
    Never,
}

/// A set of channels (where an alert went), small and `Copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSet(u64);

impl ChannelSet {
    pub fn of(kinds: &[ChannelKind]) -> Self {
        ChannelSet(kinds.iter().fold(0, |bits, k| bits | k.bit()))
    }

    pub fn contains(self, kind: ChannelKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn union(self, other: ChannelSet) -> Self {
        ChannelSet(self.0 | other.0)
    }

    /// The channels a recovery outcome goes to when its alert went to
    /// these: each channel's [`RecoveryOutcomes`].
    pub fn for_recovery_outcome(self) -> Vec<ChannelKind> {
        ALL.iter()
            .copied()
            .filter(|k| match k.recovery_outcomes() {
                RecoveryOutcomes::Always => true,
                RecoveryOutcomes::WhereTheAlertWent => self.contains(*k),
                RecoveryOutcomes::Never => false,
            })
            .collect()
    }
}

/// What every channel's build gets besides its section.
pub struct Shared {
    /// One HTTP client for the HTTP channels (connection reuse, one TLS setup).
    pub http: reqwest::Client,
    /// `delivery.timeout`: the bound of one send.
    pub timeout: Duration,
    /// `delivery.slack_interval`.
    pub slack_interval: Duration,
    /// Every channel's templates, compiled once.
    pub templates: Arc<Templates>,
}

/// Serde's default for the channels' `send_resolved`.
pub(crate) fn yes() -> bool {
    true
}

/// One way to notify people.
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;

    /// Whether resolved notices go out too (`send_resolved`).
    fn send_resolved(&self) -> bool;

    /// Whether it takes this notice.
    fn wants(&self, notice: &Notice) -> bool {
        notice.status != Status::Resolved || self.send_resolved()
    }

    /// Alerts this channel sends in one message share a key (email: one
    /// message per recipient list and group); `None` is one per alert.
    fn group(&self, _notice: &Notice) -> Option<String> {
        None
    }

    /// The message as this channel would send it, for people
    /// (`llmchat-receiver render`).
    fn render(&self, delivery: &Delivery) -> Result<String, SendError>;

    /// Sends one outbox row's message. The store is there for what must
    /// outlive the send: where a message went, to update or thread under it.
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        store: &'a Store,
    ) -> BoxFuture<'a, Result<(), SendError>>;

    /// The least time between two sends (Slack allows about one message a
    /// second per webhook).
    fn pace(&self) -> Duration {
        Duration::ZERO
    }
}

/// What a channel's module declares besides its [`Channel`]: its
/// `[channels.<name>]` section, its templates, the environment variables
/// carrying its secrets, its own checks, the stand-in `render` uses when
/// it is not configured, and how it is built. The `channels!` table
/// below turns one line per channel into the [`ChannelKind`] variant, the
/// `[channels]` field and every dispatch over them.
pub trait ChannelSpec {
    /// `[channels.<name>]`. Its secrets are the fields it declares with
    /// `#[setting(env = "LLMCHAT_RECEIVER_…")]`, so that a deployment
    /// (docker compose's `.env`, a systemd credential) keeps them out of
    /// the TOML file.
    type Config: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Settings;

    /// The templates it renders (names, suffixes, built-ins).
    const TEMPLATES: &'static [&'static TemplateSpec];

    /// The section a secret's variable makes when the file has none: the
    /// one that alone configures the channel (Slack's webhook URL) makes
    /// it; any other is refused, saying what is missing.
    fn section_from_env(
        key: &str,
        var: &'static str,
        value: String,
    ) -> Result<Self::Config, ConfigError> {
        let _ = (key, value);
        Err(invalid(
            var,
            "(not shown)",
            "is set but the channel has no section",
        ))
    }

    /// Applies the secrets' variables (`get` answers `None` for an unset
    /// or empty variable), in the order the section declares them: into
    /// its section, or making it ([`Self::section_from_env`]).
    fn apply_secret_env(
        config: &mut Option<Self::Config>,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (key, var) in env_settings::<Self::Config>() {
            let Some(value) = get(var) else { continue };
            match config.as_mut() {
                Some(c) => c
                    .set_from_env(key, &value)
                    .map_err(|e| invalid(var, "(not shown)", e))?,
                None => *config = Some(Self::section_from_env(key, var, value)?),
            }
        }
        Ok(())
    }

    /// Its checks beyond serde's, before anything starts.
    fn validate(config: &Self::Config) -> Result<(), ConfigError> {
        let _ = config;
        Ok(())
    }

    /// Templates written in its section (the webhook's headers): `(key,
    /// template id, source)`.
    fn inline_templates(config: &Self::Config) -> Vec<InlineTemplate> {
        let _ = config;
        Vec::new()
    }

    /// Whether a recovery action's outcome (a notice of its own) goes to
    /// this channel.
    const RECOVERY_OUTCOMES: RecoveryOutcomes = RecoveryOutcomes::Never;

    /// A configuration for `render` when the channel is not configured:
    /// placeholders for what only sending needs (a relay, a URL); the
    /// templates are the same.
    fn placeholder() -> Self::Config;

    fn build(config: &Self::Config, shared: &Shared) -> Result<Box<dyn Channel>, ChannelError>;
}

/// Every channel, one line each: its module (`channels/<key>.rs` or
/// `channels/<key>/mod.rs`, also its `[channels]` key and its name), its
/// [`ChannelKind`] variant and the [`ChannelSpec`] in its module.
macro_rules! channels {
    ($( $key:ident => $variant:ident($spec_name:ident), )*) => {
        $( pub mod $key; )*

        channels!(@table $( $key => $variant($key::$spec_name), )*);
    };
    (@table $( $key:ident => $variant:ident($spec:path), )*) => {
        /// A channel's name: in routes, in the outbox's `channel` column,
        /// in the `channel` label.
        #[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[serde(rename_all = "lowercase")]
        pub enum ChannelKind {
            $( $variant, )*
        }

        /// Every channel, in table order.
        pub const ALL: &[ChannelKind] = &[ $( ChannelKind::$variant, )* ];

        impl ChannelKind {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ChannelKind::$variant => stringify!($key), )*
                }
            }

            /// Its [`ChannelSpec::RECOVERY_OUTCOMES`].
            pub fn recovery_outcomes(self) -> RecoveryOutcomes {
                match self {
                    $( ChannelKind::$variant => <$spec as ChannelSpec>::RECOVERY_OUTCOMES, )*
                }
            }
        }

        /// `[channels]`: one optional section per channel.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ChannelsConfig {
            $( pub $key: Option<<$spec as ChannelSpec>::Config>, )*
        }

        impl ChannelsConfig {
            /// Every configured channel's checks.
            pub fn validate(&self) -> Result<(), ConfigError> {
                $( if let Some(c) = &self.$key {
                    <$spec as ChannelSpec>::validate(c)?;
                } )*
                Ok(())
            }

            /// Every channel's secrets from the environment
            /// ([`secret_env`]); empty values count as unset.
            pub fn apply_secret_env(
                &mut self,
                get: impl Fn(&str) -> Option<String>,
            ) -> Result<(), ConfigError> {
                let get = |k: &str| get(k).filter(|v| !v.is_empty());
                $( <$spec as ChannelSpec>::apply_secret_env(&mut self.$key, &get)?; )*
                Ok(())
            }

            /// The configured channels' inline templates.
            pub fn inline_templates(&self) -> Vec<InlineTemplate> {
                let mut out = Vec::new();
                $( if let Some(c) = &self.$key {
                    out.extend(<$spec as ChannelSpec>::inline_templates(c));
                } )*
                out
            }

            /// Configures `kind` with its placeholder if it is not
            /// configured (`llmchat-receiver render`).
            pub fn with_placeholder(&mut self, kind: ChannelKind) {
                match kind {
                    $( ChannelKind::$variant => {
                        if self.$key.is_none() {
                            self.$key = Some(<$spec as ChannelSpec>::placeholder());
                        }
                    } )*
                }
            }

            fn build(&self, shared: &Shared) -> Result<Vec<Box<dyn Channel>>, ChannelError> {
                let mut built = Vec::new();
                $( if let Some(c) = &self.$key {
                    built.push(<$spec as ChannelSpec>::build(c, shared)?);
                } )*
                Ok(built)
            }
        }

        /// Every channel's templates.
        pub fn templates() -> Vec<&'static TemplateSpec> {
            let mut all = Vec::new();
            $( all.extend_from_slice(<$spec as ChannelSpec>::TEMPLATES); )*
            all
        }

        /// Every environment variable that carries a channel secret.
        pub fn secret_env() -> Vec<&'static str> {
            let mut all = Vec::new();
            $( all.extend(
                env_settings::<<$spec as ChannelSpec>::Config>().into_iter().map(|(_, var)| var)
            ); )*
            all
        }
    };
}

channels! {
    email => Email(EmailSpec),
    slack => Slack(SlackSpec),
    webhook => Webhook(WebhookSpec),
}

/// A channel that could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("channels.email.{0}")]
    Email(#[from] email::EmailError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

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
    if status.is_redirection() {
        return Err(SendError::Retry {
            reason: redirected(status, resp.headers()),
            after,
        });
    }
    let reason = format!("HTTP {status}");
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(SendError::Retry { reason, after })
    } else {
        Err(SendError::Permanent(reason))
    }
}

/// A 3xx answer as a failure that names where it pointed: redirects are
/// never followed (they would take secrets to another host), so the
/// operator needs the `Location` to fix the configured URL.
pub fn redirected(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> String {
    let location = headers
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "(no Location)".into());
    format!(
        "HTTP {status}, a redirect to {}; redirects are not followed: configure the final URL",
        llmchat_common::escape::escaped(&location)
    )
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
    let timed_out = e.is_timeout();
    // without_url: the URL may carry a token (Slack's does). The chain
    // says why ("connection refused", ...), which the top error does not.
    let chain = llmchat_common::error_chain(&e.without_url());
    SendError::Retry {
        reason: if timed_out {
            format!("timed out (delivery.timeout): {chain}")
        } else {
            chain
        },
        after: None,
    }
}

/// The configured channels, built from `[channels]` in one place.
pub struct Senders {
    channels: Vec<Box<dyn Channel>>,
}

impl Senders {
    /// Builds the configured channels around the compiled templates.
    /// `timeout` bounds one send (`delivery.timeout`); `slack_interval`
    /// spaces Slack's posts (`delivery.slack_interval`).
    pub fn new(
        config: &ChannelsConfig,
        templates: Templates,
        timeout: Duration,
        slack_interval: Duration,
    ) -> Result<Self, ChannelError> {
        let shared = Shared {
            templates: Arc::new(templates),
            // Never follow a redirect: it would carry the body, the
            // webhook's secret headers and its HMAC signature (and a Slack
            // token) to a host nobody configured. A 3xx is a failure.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("llmchat-receiver/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(ChannelError::Http)?,
            timeout,
            slack_interval,
        };
        Ok(Senders {
            channels: config.build(&shared)?,
        })
    }

    pub fn get(&self, kind: ChannelKind) -> Option<&dyn Channel> {
        self.channels
            .iter()
            .find(|c| c.kind() == kind)
            .map(|c| c.as_ref())
    }

    /// Whether a channel is configured and wants this notice.
    pub fn wants(&self, kind: ChannelKind, notice: &Notice) -> bool {
        self.get(kind).is_some_and(|c| c.wants(notice))
    }

    /// The channels that have a configuration.
    pub fn configured(&self) -> Vec<ChannelKind> {
        self.channels.iter().map(|c| c.kind()).collect()
    }

    /// Their names, or `none`.
    pub fn configured_names(&self) -> Vec<&'static str> {
        let names: Vec<_> = self.channels.iter().map(|c| c.kind().as_str()).collect();
        if names.is_empty() {
            vec!["none"]
        } else {
            names
        }
    }

    pub async fn send(
        &self,
        kind: ChannelKind,
        delivery: &Delivery,
        store: &Store,
    ) -> Result<(), SendError> {
        match self.get(kind) {
            Some(c) => c.send(delivery, store).await,
            None => Err(SendError::NotConfigured(kind.as_str())),
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
