//! `command` actions: an argv executed directly (never through a shell) in
//! its own process group, with an environment built from scratch: PATH,
//! the configured fixed variables and the alert's sanitised
//! `LLMCHAT_ALERT_*` labels, but none of the receiver's own environment,
//! which may hold its secrets. At the timeout, or when cancelled, the
//! whole group gets SIGTERM, then SIGKILL after the grace period, so no
//! child or grandchild outlives the run.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::config::CommandSpec;
use super::{Outcome, RunResult, OUTPUT_LIMIT};

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
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = OUTPUT_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
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
                    RunResult::Succeeded
                } else {
                    RunResult::Failed
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
                RunResult::Cancelled
            } else {
                RunResult::TimedOut
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
