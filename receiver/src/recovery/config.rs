//! The `[recovery]` section: named actions, each of exactly one kind, and
//! the triggers that map alerts to them by label matchers. Only what is
//! written here can run: an alert's labels select among these actions and
//! never supply a command, an argument, a URL or a key pattern.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::matcher::Matcher;
use llmchat_common::{duration, invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Record every decision, run nothing.
    pub dry_run: bool,
    /// Redis shared by the replicas for cooldowns and run caps (SET NX PX);
    /// without it, both live in the store.
    pub redis_url: Option<String>,
    /// Alerts to actions. Unset: the guide's attemptAutoRecovery by the
    /// `fault` label, for those of its actions that are configured.
    pub triggers: Option<Vec<Trigger>>,
    pub actions: BTreeMap<String, ActionConfig>,
    /// How often runs interrupted by a stop are looked for and recorded
    /// as `abandoned`.
    #[serde(with = "duration")]
    pub maintenance_interval: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            redis_url: None,
            triggers: None,
            actions: BTreeMap::new(),
            maintenance_interval: Duration::from_secs(60),
        }
    }
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
pub const DEFAULT_TRIGGERS: [(&str, &str); 3] = [
    ("high_memory_usage", "gc"),
    ("high_error_rate", "restart"),
    ("slow_response", "cache_cleanup"),
];

/// One action as configured: its limits, and what it does (`effect`).
/// Read through [`RawAction`], whose four optional keys are the TOML
/// shape (`[recovery.actions.x.command]`, ...); "exactly one of them" is
/// checked there, once, and becomes the [`EffectConfig`] enum.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAction")]
pub struct ActionConfig {
    pub cooldown: Duration,
    pub max_runs_per_hour: u32,
    pub dry_run: bool,
    pub cancel_on_resolve: bool,
    pub effect: EffectConfig,
}

/// What an action does: exactly one kind.
#[derive(Debug, Clone)]
pub enum EffectConfig {
    Command(CommandSpec),
    Http(HttpSpec),
    Signal(SignalSpec),
    RedisCleanup(RedisCleanupSpec),
}

impl EffectConfig {
    /// The kind's key, and the `kind` of audit rows and `/actions`.
    pub fn kind(&self) -> &'static str {
        match self {
            EffectConfig::Command(_) => "command",
            EffectConfig::Http(_) => "http",
            EffectConfig::Signal(_) => "signal",
            EffectConfig::RedisCleanup(_) => "redis_cleanup",
        }
    }
}

impl TryFrom<RawAction> for ActionConfig {
    type Error = String;

    fn try_from(a: RawAction) -> Result<Self, String> {
        let effect = match (a.command, a.http, a.signal, a.redis_cleanup) {
            (Some(x), None, None, None) => EffectConfig::Command(x),
            (None, Some(x), None, None) => EffectConfig::Http(x),
            (None, None, Some(x), None) => EffectConfig::Signal(x),
            (None, None, None, Some(x)) => EffectConfig::RedisCleanup(x),
            _ => return Err("needs exactly one of command, http, signal or redis_cleanup".into()),
        };
        Ok(ActionConfig {
            cooldown: a.cooldown,
            max_runs_per_hour: a.max_runs_per_hour,
            dry_run: a.dry_run,
            cancel_on_resolve: a.cancel_on_resolve,
            effect,
        })
    }
}

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
    /// Kill a running command when its alert resolves.
    #[serde(default)]
    pub cancel_on_resolve: bool,
    pub command: Option<CommandSpec>,
    pub http: Option<HttpSpec>,
    pub signal: Option<SignalSpec>,
    pub redis_cleanup: Option<RedisCleanupSpec>,
}

fn default_cooldown() -> Duration {
    Duration::from_secs(600)
}

fn default_max_runs() -> u32 {
    6
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments, executed directly: no shell ever sees them.
    pub argv: Vec<String>,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL to the process group at timeout.
    #[serde(default = "default_grace", with = "duration")]
    pub kill_grace: Duration,
    pub cwd: Option<PathBuf>,
    /// Extra fixed environment. The receiver's own environment is not
    /// passed on (it may hold its secrets); PATH is.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    /// Statuses that mean success; empty: any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    /// `SIGUSR2`, `USR2`, `SIGHUP`, ...
    pub signal: String,
    pub pid_file: Option<PathBuf>,
    /// Exact process name (Linux `comm`, as `pgrep -x`).
    pub process_name: Option<String>,
    /// With `process_name`: signal every match instead of refusing when
    /// more than one process has the name.
    #[serde(default)]
    pub all_matching: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCleanupSpec {
    /// The application's Redis; defaults to `recovery.redis_url`.
    pub url: Option<String>,
    /// Glob patterns (Redis MATCH syntax) of the keys to remove.
    pub patterns: Vec<String>,
    /// Most keys removed in one run.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// Time budget of one run.
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    /// SCAN COUNT hint.
    #[serde(default = "default_scan_count")]
    pub scan_count: u64,
}

fn default_max_keys() -> u64 {
    100_000
}

fn default_scan_count() -> u64 {
    1000
}

fn is_redis_url(u: &str) -> bool {
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
            if let EffectConfig::Command(c) = &a.effect {
                if c.argv.is_empty() || c.argv[0].is_empty() {
                    return Err(bad("command.argv needs at least the program"));
                }
                if c.timeout.is_zero() {
                    return Err(bad("command.timeout must be above zero"));
                }
                if let Some(k) = c.env.keys().find(|k| {
                    k.is_empty()
                        || k.contains('=')
                        || k.contains('\0')
                        || k.starts_with("LLMCHAT_ALERT_")
                }) {
                    return Err(bad(&format!(
                        "command.env key {k:?} is empty, has '=' or NUL, or is reserved (LLMCHAT_ALERT_*)"
                    )));
                }
            }
            if let EffectConfig::Http(h) = &a.effect {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    return Err(bad("http.url must be an http(s) URL"));
                }
                if reqwest::Method::from_bytes(h.method.as_bytes()).is_err() {
                    return Err(bad("http.method is not an HTTP method"));
                }
                if let Some(s) = h.expect_status.iter().find(|s| !(100..=599).contains(*s)) {
                    return Err(bad(&format!(
                        "http.expect_status {s} is not an HTTP status"
                    )));
                }
                if h.timeout.is_zero() {
                    return Err(bad("http.timeout must be above zero"));
                }
            }
            if let EffectConfig::Signal(s) = &a.effect {
                if super::signal::parse_signal(&s.signal).is_none() {
                    return Err(bad(&format!(
                        "signal.signal {:?} is not a signal name",
                        s.signal
                    )));
                }
                if s.pid_file.is_some() == s.process_name.is_some() {
                    return Err(bad("signal needs exactly one of pid_file or process_name"));
                }
            }
            if let EffectConfig::RedisCleanup(r) = &a.effect {
                match r.url.as_ref().or(self.redis_url.as_ref()) {
                    None => {
                        return Err(bad(
                            "redis_cleanup needs a url (or recovery.redis_url / --redis.url)",
                        ))
                    }
                    Some(u) if !is_redis_url(u) => {
                        return Err(bad(
                            "redis_cleanup.url: expected redis://, rediss:// or unix://",
                        ))
                    }
                    _ => {}
                }
                if r.patterns.is_empty() || r.patterns.iter().any(|p| p.is_empty()) {
                    return Err(bad(
                        "redis_cleanup.patterns needs at least one non-empty pattern",
                    ));
                }
                if r.patterns.iter().any(|p| p == "*") {
                    return Err(bad(
                        "redis_cleanup.patterns: \"*\" would remove every key; name the cache namespaces",
                    ));
                }
                if r.max_keys == 0 || r.scan_count == 0 || r.timeout.is_zero() {
                    return Err(bad(
                        "redis_cleanup.max_keys, scan_count and timeout must be above zero",
                    ));
                }
            }
            if a.cancel_on_resolve && !matches!(a.effect, EffectConfig::Command(_)) {
                return Err(bad("cancel_on_resolve applies to command actions only"));
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
            llmchat_common::from_toml(text).map_err(|(k, m)| invalid("recovery", k, m))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn default_triggers_cover_only_configured_actions() {
        let c =
            parse("[actions.gc.signal]\nsignal = \"SIGUSR2\"\npid_file = \"/run/backend.pid\"\n")
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
                "exactly one of pid_file",
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
                "command actions only",
            ),
        ] {
            let e = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(needle), "{text:?}: {e:?}");
        }
    }
}
