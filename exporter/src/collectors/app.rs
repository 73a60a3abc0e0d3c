//! App probe: the guide's daily `curl -f` of the backend's `/health`,
//! `/health/db` and `/health/redis`, as metrics. The body of `/health`
//! (the guide's `HealthController`) gives the overall status and each
//! check, and its `version` and `uptime` become `llmchat_app_info` and
//! `llmchat_app_start_time_seconds`, which the deploy rules and
//! `verify-deployment` read.

use llmchat_common::lock;
use llmchat_common::settings::Settings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::collector_kit::snapshot::{Published, Snapshot};
use crate::collector_kit::{Context, RefreshError, Source, StartError, Started};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "app",
    role: crate::collector_kit::Role::Host,
    enabled_by_default: true,
    help: "the backend's /health, /health/db and /health/redis (app.url)",
};

/// Registers the backend probe's metrics and starts it.
pub fn start(config: &AppConfig, ctx: &mut Context<'_>) -> Started {
    let c = Arc::new(AppCollector::new(config).map_err(|e| StartError::new("app", e))?);
    ctx.registry
        .sub_registry_with_prefix("app")
        .register_collector(Box::new(c.clone()));
    Ok(Some(c as Arc<dyn Source>))
}

/// `[app]`: the backend's base URL and which versions it may report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// The backend's base URL, probed at /health, /health/db, /health/redis.
    #[setting(flag, value_name = "URL", default = "http://localhost:3001")]
    pub url: String,
    /// A reported version matching this (in full) is a label value; any
    /// other is `unknown`.
    ///
    /// The `version` label of `llmchat_app_info`, so that a backend cannot
    /// grow the label without bound.
    #[setting(flag, value_name = "REGEX", default = DEFAULT_VERSION_PATTERN)]
    pub version_pattern: String,
}

/// A semantic version, an optional `v`, and an optional pre-release or
/// build suffix (`1.4.2`, `v2.0.0-rc.1`, `1.4.2+build.7`).
pub const DEFAULT_VERSION_PATTERN: &str =
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-+][0-9A-Za-z.-]{1,40})?";

impl crate::collector_kit::Section for AppConfig {
    fn validate(&self, enabled: bool) -> Result<(), llmchat_common::ConfigError> {
        if enabled {
            if let Err(e) = AppCollector::new(self) {
                return Err(match e {
                    AppError::Pattern(_) => {
                        llmchat_common::invalid("app.version_pattern", &self.version_pattern, e)
                    }
                    _ => llmchat_common::invalid("app.url", &self.url, e),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app.url {0:?} is not an http(s) URL")]
    Url(String),
    #[error("not a regular expression")]
    Pattern(#[source] regex::Error),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the backend's /health failed: {0}")]
    Down(String),
}

/// Check names from the backend are capped, so a misbehaving backend
/// cannot grow the `check` label without bound.
const MAX_CHECKS: usize = 20;

const ENDPOINTS: [(&str, &str); 3] = [
    ("health", "/health"),
    ("health_db", "/health/db"),
    ("health_redis", "/health/redis"),
];

pub struct AppCollector {
    client: reqwest::Client,
    base: String,
    version_pattern: regex::Regex,
    published: Published,
    /// Probes whose `version` did not match the pattern.
    versions_rejected: AtomicU64,
    state: Mutex<VersionState>,
}

/// What earlier probes saw, so that the start time does not jitter and a
/// rejected version is logged once, not once per scrape.
#[derive(Debug, Default)]
struct VersionState {
    /// The start time published, and the uptime it was derived from.
    start: Option<(f64, f64)>,
    /// The last version string rejected (escaped), logged when it first came.
    rejected: Option<String>,
}

/// How far a start time derived from a later probe may move before it is
/// taken as a restart rather than probe latency or a clock adjustment.
const START_TOLERANCE_SECONDS: f64 = 5.0;

/// At most this much of a rejected version is logged.
const MAX_LOGGED_VERSION: usize = 80;

impl std::fmt::Debug for AppCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCollector").finish_non_exhaustive()
    }
}

struct Probe {
    ok: bool,
    duration: f64,
    body: Option<serde_json::Value>,
    error: Option<String>,
}

fn down_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "up",
        "1 if the backend's /health answered 2xx (curl -f, a redirect not followed), else 0.",
        None,
    )
    .value(0.0);
    s
}

impl AppCollector {
    pub fn new(config: &AppConfig) -> Result<Self, AppError> {
        let base = config.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AppError::Url(config.url.clone()));
        }
        let version_pattern = regex::Regex::new(&format!("^(?:{})$", config.version_pattern))
            .map_err(AppError::Pattern)?;
        // A redirect is an answer to report, not to follow: the guide's
        // `curl -f` does not follow one either, and a redirect to another
        // host would take the probe there.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("llmchat-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AppError::Client)?;
        Ok(Self {
            client,
            base,
            version_pattern,
            published: Published::new(down_snapshot),
            versions_rejected: AtomicU64::new(0),
            state: Mutex::new(VersionState::default()),
        })
    }

    async fn probe(&self, path: &str) -> Probe {
        let start = Instant::now();
        let result = self.client.get(format!("{}{path}", self.base)).send().await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                // curl -f takes a 3xx as success, but an unfollowed
                // redirect is no answer from the backend's health check.
                let ok = status.is_success();
                let location = status.is_redirection().then(|| {
                    resp.headers()
                        .get(reqwest::header::LOCATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default()
                });
                let body = resp.json::<serde_json::Value>().await.ok();
                Probe {
                    ok,
                    duration: start.elapsed().as_secs_f64(),
                    body,
                    error: (!ok).then(|| match &location {
                        Some(to) => format!(
                            "HTTP {status}, a redirect to {} (not followed)",
                            llmchat_common::escape::escaped(to)
                        ),
                        None => format!("HTTP {status}"),
                    }),
                }
            }
            Err(e) => Probe {
                ok: false,
                duration: start.elapsed().as_secs_f64(),
                body: None,
                error: Some(e.without_url().to_string()),
            },
        }
    }

    async fn read(&self) -> (Snapshot, Option<String>) {
        let probes =
            futures_util::future::join_all(ENDPOINTS.iter().map(|(_, p)| self.probe(p))).await;
        let mut s = Snapshot::default();
        let health = &probes[0];
        s.gauge(
            "up",
            "1 if the backend's /health answered 2xx (curl -f, a redirect not followed), else 0.",
            None,
        )
        .value(f64::from(u8::from(health.ok)));
        let mut f = s.gauge(
            "probe_duration",
            "Time the backend took to answer each health endpoint.",
            Some(Unit::Seconds),
        );
        for ((name, _), p) in ENDPOINTS.iter().zip(&probes) {
            f.sample(&[("endpoint", name)], p.duration);
        }
        let mut f = s.gauge(
            "endpoint_up",
            "1 if the health endpoint answered 2xx, else 0 (the daily check's three curl -f; a redirect is not followed).",
            None,
        );
        for ((name, _), p) in ENDPOINTS.iter().zip(&probes) {
            f.sample(&[("endpoint", name)], f64::from(u8::from(p.ok)));
        }
        if let Some(body) = &health.body {
            if let Some(status) = body.get("status").and_then(|v| v.as_str()) {
                let mut f = s.gauge(
                    "health_status",
                    "1 for the status the backend's /health reports (healthy, degraded, unhealthy), 0 for the others.",
                    None,
                );
                for known in ["healthy", "degraded", "unhealthy"] {
                    f.sample(&[("status", known)], f64::from(u8::from(status == known)));
                }
            }
            self.version_series(&mut s, body);
            let checks = health_checks(body);
            if !checks.is_empty() {
                let mut f = s.gauge(
                    "health_check_up",
                    "1 if the check in the backend's /health body is healthy, else 0.",
                    None,
                );
                for (name, healthy) in checks.iter().take(MAX_CHECKS) {
                    f.sample(&[("check", name)], f64::from(u8::from(*healthy)));
                }
            }
        }
        s.counter(
            "version_rejected",
            "Probes of /health whose version did not match app.version_pattern (published as version=\"unknown\").",
            None,
        )
        .value(self.versions_rejected.load(Ordering::Relaxed) as f64);
        (s, health.error.clone())
    }

    /// `info{version}` and `start_time_seconds` from the body's `version`
    /// and `uptime`; each absent when the backend does not report it.
    fn version_series(&self, s: &mut Snapshot, body: &serde_json::Value) {
        let mut state = lock(&self.state);
        if let Some(reported) = body.get("version").and_then(|v| v.as_str()) {
            let version = if self.version_pattern.is_match(reported) {
                state.rejected = None;
                reported
            } else {
                self.versions_rejected.fetch_add(1, Ordering::Relaxed);
                let shown: String = reported.chars().take(MAX_LOGGED_VERSION).collect();
                let shown = llmchat_common::escape::escaped(&shown).to_string();
                if state.rejected.as_deref() != Some(shown.as_str()) {
                    tracing::warn!(
                        version = %shown,
                        "the backend reports a version that does not match app.version_pattern; published as \"unknown\""
                    );
                    state.rejected = Some(shown);
                }
                "unknown"
            };
            s.gauge(
                "info",
                "1 for the version the backend's /health reports (npm_package_version); \"unknown\" when it does not match app.version_pattern.",
                None,
            )
            .sample_dynamic(vec![("version".into(), version.into())], 1.0);
        }
        let uptime = body
            .get("uptime")
            .and_then(|v| v.as_f64())
            .filter(|u| u.is_finite() && *u >= 0.0);
        if let Some(uptime) = uptime {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let start = stable_start(state.start, now, uptime);
            state.start = Some((start, uptime));
            s.gauge(
                "start_time",
                "When the backend's process started, from its /health uptime (fixed at the first probe; moves only on a restart).",
                Some(Unit::Seconds),
            )
            .value(start);
        }
    }
}

/// The start time to publish: the one published before while the new
/// reading agrees with it (uptime grew, and now - uptime lies within a few
/// seconds of it), else a new one rounded to the second (a restart).
fn stable_start(previous: Option<(f64, f64)>, now: f64, uptime: f64) -> f64 {
    let derived = now - uptime;
    match previous {
        Some((start, last_uptime))
            if uptime >= last_uptime && (derived - start).abs() <= START_TOLERANCE_SECONDS =>
        {
            start
        }
        _ => derived.round(),
    }
}

/// `checks` as the guide's `formatChecks` may give it: a list of
/// `{name, status}` or a map of name to `{status}` or to a status string.
fn health_checks(body: &serde_json::Value) -> Vec<(String, bool)> {
    let healthy = |v: &serde_json::Value| {
        let status = v.get("status").unwrap_or(v);
        matches!(status.as_str(), Some("healthy" | "up" | "ok" | "pass"))
            || status.as_bool() == Some(true)
    };
    match body.get("checks") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|c| Some((c.get("name")?.as_str()?.to_string(), healthy(c))))
            .collect(),
        Some(serde_json::Value::Object(map)) => {
            map.iter().map(|(k, v)| (k.clone(), healthy(v))).collect()
        }
        _ => Vec::new(),
    }
}

impl Source for AppCollector {
    fn name(&self) -> &'static str {
        "app"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        Box::pin(async move {
            // A failed probe still publishes what it measured (app_up 0,
            // the probe times), not just the down form.
            let (snapshot, error) = self.read().await;
            self.published.set(snapshot);
            match error {
                None => Ok(()),
                Some(e) => Err(AppError::Down(e).into()),
            }
        })
    }

    fn clear(&self) {
        self.published.set_down();
    }
}

impl Collector for AppCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_moves_only_on_a_restart() {
        let first = stable_start(None, 1000.4, 100.0);
        assert_eq!(first, 900.0);
        // Probe latency and clock noise: the same start.
        assert_eq!(stable_start(Some((first, 100.0)), 1015.9, 115.2), first);
        assert_eq!(stable_start(Some((first, 115.0)), 1032.0, 130.0), first);
        // Uptime went back: a restart, however close the derived time.
        assert_eq!(stable_start(Some((first, 130.0)), 1040.0, 2.0), 1038.0);
        // A clock step of a minute: taken as a new start, once.
        assert_eq!(stable_start(Some((first, 130.0)), 1100.0, 140.0), 960.0);
    }

    #[test]
    fn the_default_version_pattern_bounds_the_label() {
        let c = AppCollector::new(&AppConfig::default()).unwrap();
        for ok in ["1.4.2", "v2.0.0-rc.1", "1.4.2+build.7", "10.20.30"] {
            assert!(c.version_pattern.is_match(ok), "{ok}");
        }
        let long = format!("1.0.0-{}", "a".repeat(200));
        for bad in [
            "",
            "latest",
            "1.4",
            "01.2.3",
            "1.2.3 ",
            "1.2.3\n",
            long.as_str(),
        ] {
            assert!(!c.version_pattern.is_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn checks_in_both_shapes() {
        let list = serde_json::json!({"checks": [{"name": "database", "status": "healthy"}, {"name": "redis", "status": "unhealthy"}]});
        assert_eq!(
            health_checks(&list),
            vec![("database".into(), true), ("redis".into(), false)]
        );
        let map = serde_json::json!({"checks": {"database": {"status": "up"}, "disk": "down"}});
        assert_eq!(
            health_checks(&map),
            vec![("database".into(), true), ("disk".into(), false)]
        );
    }
}
