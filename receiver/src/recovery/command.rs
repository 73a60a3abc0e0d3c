//! `command` actions: an argv executed directly (never through a shell) in
//! its own process group, with an environment built from scratch: PATH,
//! the configured fixed variables and the alert's sanitised
//! `LLMCHAT_ALERT_*` labels, but none of the receiver's own environment,
//! which may hold its secrets. At the timeout, or when cancelled, the
//! whole group gets SIGTERM, then SIGKILL after the grace period, so no
//! child or grandchild outlives the run.

use llmchat_common::lock;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use llmchat_common::duration;
use serde::Deserialize;

use super::config::RecoveryConfig;
use super::effect::{failed, BuildError, Effect, InvalidSpec, RunContext, Spec};

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::{Decision, Outcome, OUTPUT_LIMIT};
use crate::payload::Alert;

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
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_grace() -> Duration {
    Duration::from_secs(5)
}
impl Spec for CommandSpec {
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), InvalidSpec> {
        let _ = recovery;
        let bad = |reason: &str| InvalidSpec(reason.to_string());
        let c = self;
        if c.argv.is_empty() || c.argv[0].is_empty() {
            return Err(bad("command.argv needs at least the program"));
        }
        if c.timeout.is_zero() {
            return Err(bad("command.timeout must be above zero"));
        }
        if let Some(k) = c.env.keys().find(|k| {
            k.is_empty() || k.contains('=') || k.contains('\0') || k.starts_with("LLMCHAT_ALERT_")
        }) {
            return Err(bad(&format!(
                "command.env key {k:?} is empty, has '=' or NUL, or is reserved (LLMCHAT_ALERT_*)"
            )));
        }
        Ok(())
    }

    fn build(&self, _: &RecoveryConfig) -> Result<Box<dyn Effect>, BuildError> {
        Ok(Box::new(self.clone()))
    }

    fn cancellable(&self) -> bool {
        true
    }
}

impl Effect for CommandSpec {
    fn longest_run(&self) -> Duration {
        self.timeout + self.kill_grace
    }

    fn run<'a>(&'a self, ctx: RunContext<'a>) -> BoxFuture<'a, super::Outcome> {
        Box::pin(async move {
            let env = alert_env(ctx.alert, ctx.action);
            run(self, &env, ctx.cancel).await.unwrap_or_else(failed)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for the command: {0}")]
    Wait(std::io::Error),
}

/// Output of both pipes in arrival order, kept up to [`OUTPUT_LIMIT`];
/// the rest is read and dropped so the child never blocks on a full pipe.
#[derive(Default)]
struct Capture(Mutex<Vec<u8>>);

impl Capture {
    fn push(&self, chunk: &[u8]) {
        let mut buf = lock(&self.0);
        let room = OUTPUT_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    fn text(&self) -> String {
        let buf = lock(&self.0);
        super::output_text(&buf)
    }
}

async fn drain(mut pipe: impl tokio::io::AsyncRead + Unpin, capture: Arc<Capture>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        capture.push(&chunk[..n]);
    }
}

fn signal_group(pgid: Option<u32>, signal: Signal) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
        // ESRCH (the group is already gone) is the outcome we want.
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Resolves when cancelled; never when the sender is gone without cancelling.
async fn cancelled(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs the command; `cancel` turning true ends it as `cancelled`.
pub async fn run(
    spec: &CommandSpec,
    alert_env: &[(String, String)],
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Outcome, CommandError> {
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .envs(&spec.env)
        .envs(alert_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the timeout can then end the command and all it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        program: spec.argv[0].clone(),
        source,
    })?;
    let pgid = child.id();
    let capture = Arc::new(Capture::default());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(drain(out, capture.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(drain(err, capture.clone())));
    }
    enum End {
        Exited(std::process::ExitStatus),
        TimedOut,
        Cancelled,
    }
    let end = tokio::select! {
        status = child.wait() => End::Exited(status.map_err(CommandError::Wait)?),
        _ = tokio::time::sleep(spec.timeout) => End::TimedOut,
        _ = cancelled(&mut cancel) => End::Cancelled,
    };
    let status = match end {
        End::Exited(status) => Ok(status),
        End::TimedOut | End::Cancelled => {
            signal_group(pgid, Signal::SIGTERM);
            let status = tokio::time::timeout(spec.kill_grace, child.wait()).await;
            // Whatever of the group ignored SIGTERM, or outlived the leader.
            signal_group(pgid, Signal::SIGKILL);
            let status = match status {
                Ok(s) => s,
                Err(_) => child.wait().await,
            }
            .map_err(CommandError::Wait)?;
            Err((matches!(end, End::Cancelled), status))
        }
    };
    // A background process the command left holding the pipes must not
    // hold the audit record: its output is waited for briefly.
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
    }
    let output = capture.text();
    Ok(match status {
        Ok(status) => {
            let exit_status = status.code().or(status.signal().map(|s| 128 + s));
            Outcome {
                result: if status.success() {
                    Decision::Succeeded
                } else {
                    Decision::Failed
                },
                exit_status: exit_status.map(i64::from),
                output,
                detail: status
                    .signal()
                    .map(|s| format!("killed by signal {s}"))
                    .or_else(|| (!status.success()).then(|| format!("exited with {status}"))),
            }
        }
        Err((cancelled, status)) => Outcome {
            result: if cancelled {
                Decision::Cancelled
            } else {
                Decision::TimedOut
            },
            exit_status: status
                .code()
                .or(status.signal().map(|s| 128 + s))
                .map(i64::from),
            output,
            detail: Some(if cancelled {
                "cancelled: the alert resolved".into()
            } else {
                format!(
                    "timed out after {}; process group killed",
                    humantime::format_duration(spec.timeout)
                )
            }),
        },
    })
}
/// Labels passed to a command at most; alerts have a few dozen.
const MAX_ENV_LABELS: usize = 64;
/// Longest label value passed on, in bytes.
const MAX_ENV_VALUE: usize = 1024;

/// Labels that always reach the command when the alert has them, before
/// the [`MAX_ENV_LABELS`] others: what a recovery script decides on.
const CORE_LABELS: [&str; 5] = ["alertname", "instance", "severity", "fault", "job"];

/// Whether `name` is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`):
/// Alertmanager passes on whatever a rule or an API client set, and a
/// name outside the grammar has no honest environment spelling.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The alert as environment variables: `LLMCHAT_ALERT_<LABEL>` for each
/// label (name upper-cased), plus `LLMCHAT_ALERT_FINGERPRINT`, `_STATUS`,
/// `_STARTS_AT` and `LLMCHAT_ACTION`. The core labels come first; then
/// up to [`MAX_ENV_LABELS`] others. A name outside Prometheus' grammar is
/// skipped, and names that differ only in case (`target_host`,
/// `TARGET_HOST`) are both left out rather than letting either win.
/// Values lose NUL and control characters (a newline becomes a space) and
/// are cut at 1 KiB; they are data for the command, never parsed by a
/// shell of ours.
pub fn alert_env(alert: &Alert, action: &str) -> Vec<(String, String)> {
    let clean = |v: &str| {
        let mut s: String = v
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if s.len() > MAX_ENV_VALUE {
            let mut cut = MAX_ENV_VALUE;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    };
    let mut spellings: BTreeMap<String, usize> = BTreeMap::new();
    for name in alert.labels.keys().filter(|k| is_label_name(k)) {
        *spellings.entry(name.to_ascii_uppercase()).or_default() += 1;
    }
    let usable = |k: &str| is_label_name(k) && spellings.get(&k.to_ascii_uppercase()) == Some(&1);
    let core = CORE_LABELS
        .iter()
        .filter_map(|k| alert.labels.get_key_value(*k));
    let others = alert
        .labels
        .iter()
        .filter(|(k, _)| !CORE_LABELS.contains(&k.as_str()) && usable(k))
        .take(MAX_ENV_LABELS);
    let mut env: BTreeMap<String, String> = core
        .chain(others)
        .filter(|(k, _)| usable(k))
        .map(|(k, v)| {
            (
                format!("LLMCHAT_ALERT_{}", k.to_ascii_uppercase()),
                clean(v),
            )
        })
        .collect();
    env.insert(
        "LLMCHAT_ALERT_FINGERPRINT".into(),
        clean(&alert.fingerprint),
    );
    env.insert("LLMCHAT_ALERT_STATUS".into(), alert.status.as_str().into());
    env.insert("LLMCHAT_ALERT_STARTS_AT".into(), clean(&alert.starts_at));
    env.insert("LLMCHAT_ACTION".into(), action.into());
    env.into_iter().collect()
}

#[cfg(test)]
mod env_tests {
    use super::*;
    use crate::payload::Status;

    #[test]
    fn alert_labels_become_inert_environment_values() {
        let alert = Alert {
            status: Status::Firing,
            labels: BTreeMap::from([
                ("alertname".to_string(), "X".to_string()),
                (
                    "evil_name".to_string(),
                    "$(touch x); `id`\nrm -rf /\0".to_string(),
                ),
                ("evil-name.x".to_string(), "skipped".to_string()),
                ("targetéhost".to_string(), "skipped".to_string()),
                ("target_host".to_string(), "a".to_string()),
                ("TARGET_HOST".to_string(), "b".to_string()),
            ]),
            annotations: BTreeMap::new(),
            starts_at: "2026-11-26T10:00:00Z".into(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: "fp".into(),
        };
        let env: BTreeMap<String, String> = alert_env(&alert, "restart").into_iter().collect();
        assert_eq!(env["LLMCHAT_ALERT_EVIL_NAME"], "$(touch x); `id` rm -rf / ");
        // Outside the grammar, or two spellings of one name: left out.
        assert!(!env.values().any(|v| v == "skipped"), "{env:?}");
        assert!(!env.contains_key("LLMCHAT_ALERT_TARGET_HOST"), "{env:?}");
        assert_eq!(env["LLMCHAT_ALERT_ALERTNAME"], "X");
        assert_eq!(env["LLMCHAT_ALERT_FINGERPRINT"], "fp");
        assert_eq!(env["LLMCHAT_ACTION"], "restart");
        let long = Alert {
            labels: BTreeMap::from([("a".to_string(), "é".repeat(2000))]),
            ..alert
        };
        let env: BTreeMap<String, String> = alert_env(&long, "x").into_iter().collect();
        assert!(env["LLMCHAT_ALERT_A"].len() <= MAX_ENV_VALUE);
        // 64 padding labels sort before the core ones; the core ones stay.
        let mut labels: BTreeMap<String, String> = (0..100)
            .map(|i| (format!("A{i:02}"), "pad".to_string()))
            .collect();
        for core in CORE_LABELS {
            labels.insert(core.to_string(), core.to_string());
        }
        let padded = Alert { labels, ..long };
        let env: BTreeMap<String, String> = alert_env(&padded, "x").into_iter().collect();
        for core in CORE_LABELS {
            assert_eq!(env[&format!("LLMCHAT_ALERT_{}", core.to_uppercase())], core);
        }
        assert_eq!(
            env.keys()
                .filter(|k| k.starts_with("LLMCHAT_ALERT_A"))
                .count(),
            64 + 1
        );
    }
}
