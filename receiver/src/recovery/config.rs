//! The `[recovery]` section: named actions, each of exactly one kind, and
//! the triggers that map alerts to them by label matchers. Only what is
//! written here can run: an alert's labels select among these actions and
//! never supply a command, an argument, a URL or a key pattern.

use llmchat_common::settings::Settings;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub use super::command::CommandSpec;
use super::effect::Spec;
pub use super::http_action::HttpSpec;
use super::matcher::Matcher;
pub use super::redis_cleanup::RedisCleanupSpec;
pub use super::signal::SignalSpec;
use llmchat_common::{duration, invalid, ConfigError};

#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Record recovery decisions without running any action.
    #[setting(flag)]
    pub dry_run: bool,
    /// Redis that shares recovery cooldowns and run caps between receiver
    /// replicas (SET NX PX); without it they are kept in the store (key
    /// recovery.redis_url).
    #[setting(
        flag = "redis.url",
        env = "LLMCHAT_RECEIVER_REDIS_URL",
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// Alerts to actions. Unset: the guide's attemptAutoRecovery by the
    /// `fault` label, for those of its actions that are configured.
    pub triggers: Option<Vec<Trigger>>,
    pub actions: BTreeMap<String, ActionConfig>,
    /// How often runs interrupted by a stop are looked for and recorded
    /// as `abandoned`.
    #[setting(default = Duration::from_secs(60))]
    #[serde(with = "duration")]
    pub maintenance_interval: Duration,
    /// The instance this receiver acts for, as a matcher
    /// (`instance="host-b:9842"`, `instance=~"host-b:.*"`): actions run
    /// only for alerts it matches; the rest are audited as
    /// `skipped_other_instance`. Unset: every alert.
    pub instance: Option<Matcher>,
}

/// Alerts matching every matcher trigger every listed action. Unlike
/// routes, all matching triggers apply: an alert may trigger several
/// actions, or none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Alertmanager-style matchers: `fault="high_error_rate"`,
    /// `severity=~"critical|warning"`, `instance!="canary"`.
    pub matchers: Vec<Matcher>,
    pub actions: Vec<String>,
}

/// The guide's `attemptAutoRecovery`: fault → action name.
pub const DEFAULT_TRIGGERS: [(&str, &str); 4] = [
    ("high_memory_usage", "gc"),
    ("high_error_rate", "restart"),
    ("slow_response", "cache_cleanup"),
    // LLMChatDeployRegression (docs/deploys.md).
    ("deploy_regression", "rollback"),
];

/// One action as configured: its limits, and what it does (`effect`).
/// Read through [`RawAction`], whose optional kind keys are the TOML shape
/// (`[recovery.actions.x.command]`, ...); "exactly one of them" is checked
/// there, once, and becomes the [`EffectConfig`] enum.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAction")]
pub struct ActionConfig {
    pub cooldown: Duration,
    pub max_runs_per_hour: u32,
    pub dry_run: bool,
    pub cancel_on_resolve: bool,
    /// Alert labels whose values join the scope of the cooldown, the run
    /// lock and the hourly slots: `["version"]` runs a rollback once per
    /// deploy (and instance), not once per cooldown.
    pub scope_labels: Vec<String>,
    /// Labels the alert must carry, each matching its regular expression
    /// in full, before the action runs; else `skipped_label_mismatch`. A
    /// value that reaches a command's environment is then known to be
    /// what the site's script expects (a version, not `--upload-pack=...`).
    pub require_labels: Vec<(String, regex::Regex)>,
    pub effect: EffectConfig,
}

/// Lists the action kinds once: the TOML key, the enum variant, the spec.
/// Each kind's module implements [`Spec`] for its spec.
macro_rules! effect_kinds {
    ($($key:ident => $variant:ident($spec:ty),)*) => {
        /// What an action does: exactly one kind.
        #[derive(Debug, Clone)]
        pub enum EffectConfig {
            $( $variant($spec), )*
        }

        /// The kinds' keys, in table order.
        pub const KINDS: &[&str] = &[$(stringify!($key)),*];

        impl EffectConfig {
            /// The kind's key: the `kind` of audit rows and `/actions`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( EffectConfig::$variant(_) => stringify!($key), )*
                }
            }

            pub fn spec(&self) -> &dyn Spec {
                match self {
                    $( EffectConfig::$variant(spec) => spec, )*
                }
            }
        }

        /// An action as written: its limits and one optional table per kind.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawAction {
            /// No second run of this action starts within this time of the last.
            #[serde(default = "default_cooldown", with = "duration")]
            pub cooldown: Duration,
            /// Runs allowed in any hour; 0 means no cap beyond the cooldown.
            #[serde(default = "default_max_runs")]
            pub max_runs_per_hour: u32,
            #[serde(default)]
            pub dry_run: bool,
            /// Stop a running action when its alert resolves.
            #[serde(default)]
            pub cancel_on_resolve: bool,
            #[serde(default)]
            pub scope_labels: Vec<String>,
            #[serde(default)]
            pub require_labels: BTreeMap<String, String>,
            $( pub $key: Option<$spec>, )*
        }

        impl TryFrom<RawAction> for ActionConfig {
            type Error = ActionError;

            fn try_from(a: RawAction) -> Result<Self, ActionError> {
                let mut kinds = Vec::new();
                $( if let Some(spec) = a.$key {
                    kinds.push(EffectConfig::$variant(spec));
                } )*
                if kinds.len() != 1 {
                    let (last, rest) = KINDS.split_last().unwrap_or((&"", &[]));
                    return Err(ActionError::KindCount(format!("{} or {last}", rest.join(", "))));
                }
                for label in a.scope_labels.iter().chain(a.require_labels.keys()) {
                    if !is_label_name(label) {
                        return Err(ActionError::LabelName(label.clone()));
                    }
                }
                let require_labels = a
                    .require_labels
                    .into_iter()
                    .map(|(label, pattern)| {
                        regex::Regex::new(&format!("^(?:{pattern})$"))
                            .map(|re| (label.clone(), re))
                            .map_err(|source| ActionError::Pattern { label: label.clone(), source })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(ActionConfig {
                    cooldown: a.cooldown,
                    max_runs_per_hour: a.max_runs_per_hour,
                    dry_run: a.dry_run,
                    cancel_on_resolve: a.cancel_on_resolve,
                    scope_labels: a.scope_labels,
                    require_labels,
                    effect: kinds.remove(0),
                })
            }
        }
    };
}

effect_kinds! {
    command => Command(CommandSpec),
    http => Http(HttpSpec),
    signal => Signal(SignalSpec),
    redis_cleanup => RedisCleanup(RedisCleanupSpec),
}

/// Why an action's table cannot be an action.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("needs exactly one of {0}")]
    KindCount(String),
    #[error("{0:?} is not a Prometheus label name")]
    LabelName(String),
    #[error("require_labels.{label}: not a regular expression: {source}")]
    Pattern {
        label: String,
        #[source]
        source: regex::Error,
    },
}

fn default_cooldown() -> Duration {
    Duration::from_secs(600)
}

fn default_max_runs() -> u32 {
    6
}

/// Prometheus' label name grammar.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")
}

impl RecoveryConfig {
    /// The triggers in force: the configured ones, or the guide's defaults
    /// for the default actions that are configured.
    pub fn effective_triggers(&self) -> Vec<Trigger> {
        match &self.triggers {
            Some(t) => t.clone(),
            None => DEFAULT_TRIGGERS
                .iter()
                .filter(|(_, action)| self.actions.contains_key(*action))
                .map(|(fault, action)| Trigger {
                    matchers: vec![Matcher::equal("fault", fault)],
                    actions: vec![action.to_string()],
                })
                .collect(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.maintenance_interval.is_zero() {
            return Err(invalid(
                "recovery.maintenance_interval",
                "0s",
                "must be above zero",
            ));
        }
        if let Some(u) = &self.redis_url {
            if !is_redis_url(u) {
                return Err(invalid(
                    "recovery.redis_url",
                    "(not shown)",
                    "expected redis://, rediss:// or unix://",
                ));
            }
        }
        for t in self.triggers.iter().flatten() {
            if t.matchers.is_empty() {
                return Err(invalid(
                    "recovery.triggers.matchers",
                    "[]",
                    "a trigger needs at least one matcher (an empty list would match every alert)",
                ));
            }
            for a in &t.actions {
                if !self.actions.contains_key(a) {
                    return Err(invalid(
                        "recovery.triggers.actions",
                        a,
                        "no such action under [recovery.actions]",
                    ));
                }
            }
        }
        for (name, a) in &self.actions {
            let bad = |reason: &str| invalid("recovery.actions", name, reason);
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad("action names are 1-64 characters of [A-Za-z0-9_-]"));
            }
            a.effect
                .spec()
                .check(self)
                .map_err(|reason| bad(&reason.to_string()))?;
            if a.cancel_on_resolve && !a.effect.spec().cancellable() {
                return Err(bad(&format!(
                    "cancel_on_resolve does not apply to {} actions",
                    a.effect.kind()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RecoveryConfig, ConfigError> {
        let c: RecoveryConfig =
            llmchat_common::from_toml(text).map_err(|e| invalid("recovery", e.key, e.message))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn default_triggers_cover_only_configured_actions() {
        let c =
            parse("[actions.gc.signal]\nsignal = \"SIGUSR2\"\npid_file = \"/run/backend.pid\"\nprocess_name = \"node\"\n")
                .unwrap();
        let t = c.effective_triggers();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].actions, ["gc"]);
        assert_eq!(t[0].matchers[0].to_string(), "fault=\"high_memory_usage\"");
        assert_eq!(c.actions["gc"].cooldown, Duration::from_secs(600));
    }

    #[test]
    fn refuses_what_could_run_something_unintended() {
        for (text, needle) in [
            ("[actions.x]\ncooldown = \"1m\"\n", "exactly one"),
            ("[actions.x.command]\nargv = []\n", "argv"),
            (
                "[actions.x.command]\nargv = [\"true\"]\n[actions.x.http]\nurl = \"http://a\"\n",
                "exactly one",
            ),
            (
                "[actions.x.signal]\nsignal = \"SIGNOPE\"\npid_file = \"/p\"\n",
                "not a signal",
            ),
            (
                "[actions.x.signal]\nsignal = \"TERM\"\n",
                "signal needs process_name",
            ),
            (
                "[actions.x.signal]\nsignal = \"TERM\"\nprocess_name = \"node\"\nuid = 1000\n",
                "signal.uid goes with pid_file",
            ),
            (
                "[actions.x.redis_cleanup]\npatterns = [\"cache:*\"]\n",
                "needs a url",
            ),
            (
                "[actions.x.redis_cleanup]\nurl = \"redis://r\"\npatterns = [\"*\"]\n",
                "every key",
            ),
            (
                "[[triggers]]\nmatchers = ['fault=\"x\"']\nactions = [\"missing\"]\n",
                "no such action",
            ),
            (
                "[[triggers]]\nmatchers = []\nactions = []\n",
                "at least one matcher",
            ),
            (
                "[actions.x.http]\nurl = \"http://a\"\n[actions.x]\ncancel_on_resolve = true\n",
                "does not apply to http actions",
            ),
            ("[actions.x.http]\nmethod = \"POST\"\n", "http.url (or http.url_by_instance) is required"),
            (
                "[actions.x.http]\nurl = \"http://a\"\nurl_by_instance = { \"h:1\" = \"http://b\" }\n",
                "not both",
            ),
            (
                "[actions.x.http]\nurl_by_instance = { \"h:1\" = \"file:///etc/passwd\" }\n",
                "must be http(s)",
            ),
            ("instance = 'instance=\"a'\n", "instance"),
        ] {
            let e = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(needle), "{text:?}: {e:?}");
        }
    }
}
