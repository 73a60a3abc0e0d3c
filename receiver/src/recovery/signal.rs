//! `signal` actions: a named signal to the pid in a pid file, or to the
//! process found by its exact name (SIGUSR2 to the Node backend, whose own
//! handler runs `global.gc()`). Pids 0 and 1, negative pids (process
//! groups) and the receiver itself are refused. A pid file is trusted only
//! as far as the process it names has the configured name (and user, if
//! set): a stale pid file may name any process by now, and a mismatch is
//! a failure in the audit, not a signal.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::config::RecoveryConfig;
use super::effect::{failed, BuildError, Effect, InvalidSpec, RunContext, Spec};

use std::str::FromStr;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Decision, Outcome};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    /// `SIGUSR2`, `USR2`, `SIGHUP`, ...
    pub signal: String,
    pub pid_file: Option<PathBuf>,
    /// Exact process name (Linux `comm`, as `pgrep -x`): the process to
    /// find, or with `pid_file` the name its process must have.
    pub process_name: Option<String>,
    /// With `pid_file`: the user id its process must run as.
    #[serde(default)]
    pub uid: Option<u32>,
    /// With `process_name`: signal every match instead of refusing when
    /// more than one process has the name.
    #[serde(default)]
    pub all_matching: bool,
}
impl Spec for SignalSpec {
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), InvalidSpec> {
        let _ = recovery;
        let bad = |reason: &str| InvalidSpec(reason.to_string());
        let s = self;
        if parse_signal(&s.signal).is_none() {
            return Err(bad(&format!(
                "signal.signal {:?} is not a signal name",
                s.signal
            )));
        }
        if s.process_name.is_none() {
            return Err(bad(
                "signal needs process_name: the process to find, or with pid_file the name the pid's process must have (a stale pid file may name another process)",
            ));
        }
        if s.uid.is_some() && s.pid_file.is_none() {
            return Err(bad("signal.uid goes with pid_file"));
        }
        Ok(())
    }

    fn build(&self, _: &RecoveryConfig) -> Result<Box<dyn Effect>, BuildError> {
        Ok(Box::new(self.clone()))
    }
}

impl Effect for SignalSpec {
    fn longest_run(&self) -> Duration {
        // Reading /proc and one kill(2) per process: seconds at worst.
        Duration::from_secs(20)
    }

    fn run<'a>(&'a self, _: RunContext<'a>) -> BoxFuture<'a, super::Outcome> {
        Box::pin(async move { run(self).unwrap_or_else(failed) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot read the pid file {path}: {source}")]
    PidFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the pid file {path} does not hold a usable pid")]
    BadPid { path: String },
    #[error("no process named {0:?}")]
    NoProcess(String),
    #[error("{count} processes are named {name:?}; set all_matching or use a pid file")]
    Ambiguous { name: String, count: usize },
    #[error("cannot list processes: {0}")]
    Processes(String),
    #[error("pid {pid} from {path} is {found:?}, not the configured {expected}; not signalled")]
    Mismatch {
        pid: i32,
        path: String,
        expected: String,
        found: String,
    },
    #[error("cannot signal pid {pid}: {errno}")]
    Kill { pid: i32, errno: nix::errno::Errno },
}

/// `SIGUSR2`, `USR2` or `usr2`.
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

fn usable(pid: i32) -> bool {
    pid > 1 && pid != std::process::id() as i32
}

fn targets(spec: &SignalSpec) -> Result<Vec<i32>, SignalError> {
    if let Some(path) = &spec.pid_file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SignalError::PidFile {
            path: shown.clone(),
            source,
        })?;
        let pid = text
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| usable(*p))
            .ok_or(SignalError::BadPid {
                path: shown.clone(),
            })?;
        check_identity(spec, pid, &shown)?;
        return Ok(vec![pid]);
    }
    let name = spec.process_name.clone().unwrap_or_default();
    let mut sys = sysinfo::System::new().map_err(|e| SignalError::Processes(e.to_string()))?;
    sys.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
    let mut pids: Vec<i32> = sys
        .processes_by_exact_name(std::ffi::OsStr::new(&name))
        // Threads show up as processes too; signal the process.
        .filter(|p| p.thread_kind().is_none())
        .map(|p| p.pid().as_u32() as i32)
        .filter(|p| usable(*p))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    match pids.len() {
        0 => Err(SignalError::NoProcess(name)),
        1 => Ok(pids),
        count if spec.all_matching => {
            let _ = count;
            Ok(pids)
        }
        count => Err(SignalError::Ambiguous { name, count }),
    }
}

/// The process `pid` has the configured name (its `comm`) and, if set,
/// user id; read from /proc just before the signal.
fn check_identity(spec: &SignalSpec, pid: i32, path: &str) -> Result<(), SignalError> {
    let expected_name = spec.process_name.as_deref().unwrap_or_default();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_else(|_| "(no such process)".into());
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u32>().ok())
        });
    let mismatch = |expected: String, found: String| SignalError::Mismatch {
        pid,
        path: path.to_string(),
        expected,
        found,
    };
    if comm != expected_name {
        return Err(mismatch(
            format!("process name {expected_name:?}"),
            llmchat_common::escape::escaped(&comm),
        ));
    }
    if let Some(want) = spec.uid {
        if uid != Some(want) {
            return Err(mismatch(
                format!("uid {want}"),
                uid.map_or("(unknown uid)".into(), |u| format!("uid {u}")),
            ));
        }
    }
    Ok(())
}

pub fn run(spec: &SignalSpec) -> Result<Outcome, SignalError> {
    let signal = parse_signal(&spec.signal).unwrap_or(Signal::SIGUSR2);
    let pids = targets(spec)?;
    for pid in &pids {
        kill(Pid::from_raw(*pid), signal)
            .map_err(|errno| SignalError::Kill { pid: *pid, errno })?;
    }
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    Ok(Outcome {
        result: Decision::Succeeded,
        exit_status: None,
        output: format!("sent {} to pid {}", signal.as_str(), list.join(", ")),
        detail: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn signal_names_with_or_without_the_prefix() {
        assert_eq!(parse_signal("SIGUSR2"), Some(Signal::SIGUSR2));
        assert_eq!(parse_signal("usr2"), Some(Signal::SIGUSR2));
        assert_eq!(parse_signal("HUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn a_pid_file_naming_another_process_is_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let path = dir.path().join("pid");
        std::fs::write(&path, sleeper.id().to_string()).unwrap();
        // Until it has exec'd, the child still carries the test's name.
        let comm = format!("/proc/{}/comm", sleeper.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let spec = |name: &str, uid: Option<u32>| SignalSpec {
            signal: "TERM".into(),
            pid_file: Some(path.clone()),
            process_name: Some(name.into()),
            uid,
            all_matching: false,
        };
        let e = run(&spec("node", None)).unwrap_err();
        assert!(matches!(e, SignalError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("\"sleep\""), "{e}");
        let me: u32 = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let e = run(&spec("sleep", Some(me + 1))).unwrap_err();
        assert!(e.to_string().contains(&format!("uid {}", me + 1)), "{e}");
        assert!(
            sleeper.try_wait().unwrap().is_none(),
            "the sleep was signalled"
        );
        // The right name and user: signalled.
        run(&spec("sleep", Some(me))).unwrap();
        assert!(sleeper.wait().unwrap().signal().is_some());
    }

    #[test]
    fn refuses_init_and_itself() {
        let dir = tempfile::tempdir().unwrap();
        for pid in ["1", "0", "-5", &std::process::id().to_string(), "x"] {
            let path = dir.path().join("pid");
            std::fs::write(&path, pid).unwrap();
            let spec = SignalSpec {
                signal: "USR2".into(),
                pid_file: Some(path),
                process_name: Some("node".into()),
                uid: None,
                all_matching: false,
            };
            assert!(
                matches!(run(&spec), Err(SignalError::BadPid { .. })),
                "{pid}"
            );
        }
    }
}
