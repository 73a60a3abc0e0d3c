//! Shared helpers for the whole-project tests in `tests/`.
#![forbid(unsafe_code)]

pub mod fuzz;
pub mod hostile;
pub mod pki;
pub mod prometheus;
pub mod services;
pub mod sinks;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
/// Polls `cond` every 50 ms until it holds; fails the test naming `what`
/// once `timeout` has passed. The one wait of every test binary.
pub fn wait_until(timeout: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Runs a tool from the repository root; a tool that is not installed is a
/// failure, never a skip.
pub fn run(program: &str, args: &[&str]) -> Output {
    run_in(&repo_root(), program, args)
}

/// Runs a tool in `dir` with a clean environment (PATH, the C locale and a
/// throw-away HOME): nothing of the developer's shell, proxy settings or
/// tool configuration reaches it.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new(program);
    services::hermetic(&mut c)
        .env("HOME", home.path())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"))
}

/// A copy of what `docker compose` reads from the repository (the compose
/// file, `.env.example`, the mounted configs and the build context's
/// Dockerfile), without any `.env` a developer may have.
pub fn compose_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    for f in [
        "docker-compose.yml",
        "docker-compose.tls.yml",
        "docker-compose.longterm.yml",
        "docker-compose.desktop.yml",
        ".env.example",
        "Dockerfile",
    ] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    for d in ["stack", "rules", "dashboards"] {
        copy_dir(&root.join(d), &dir.path().join(d));
    }
    dir
}

/// Copies a folder and everything under it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// stdout and stderr together, for assertion messages.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The port a child bound to `127.0.0.1:0` says it listens on: the
/// `address=HOST:PORT` field of its "listening" log line in `log`. No
/// race: the port is the child's from the start, never "free a moment ago".
pub fn bound_port(log: &Path, timeout: std::time::Duration) -> u16 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .filter(|l| l.contains("listening"))
            .find_map(|l| {
                let addr = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))?;
                addr.rsplit_once(':')?.1.parse::<u16>().ok()
            });
        if let Some(port) = port {
            return port;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no \"listening address=\" line within {timeout:?}; log:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One of our binaries started for a test; its stderr goes to a file,
/// shown only when the test fails.
pub struct Daemon {
    pub child: std::process::Child,
    /// The port it serves: the one asked for, or the one it logged as
    /// bound when asked for port 0.
    pub port: u16,
    pub stderr: tempfile::NamedTempFile,
}

/// Starts `cmd` (one of our binaries, or a wrapper running it) with only
/// `PATH` and `env` in its environment (none of the developer's
/// `LLMCHAT_*` or proxy variables), its stdout discarded and its stderr to
/// a file; `port` 0 means the port it logs as bound ([`bound_port`]).
/// Returns once `ready(port)` holds; `what` names it if that takes over
/// `timeout`.
pub fn start_daemon(
    mut cmd: std::process::Command,
    port: u16,
    env: &[(&str, &str)],
    timeout: std::time::Duration,
    what: &str,
    mut ready: impl FnMut(u16) -> bool,
) -> Daemon {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let port = if port == 0 {
        bound_port(stderr.path(), timeout)
    } else {
        port
    };
    wait_until(timeout, &format!("{what} ready"), || ready(port));
    Daemon {
        child,
        port,
        stderr,
    }
}

/// A port for a service that must keep it across restarts, or that a test
/// binds later: free when picked, and below the kernel's ephemeral range,
/// so no outgoing connection (of this test or a parallel one) can be given
/// it in the meantime; no two picks in one process are the same port.
/// Prefer binding port 0 and [`bound_port`] where the child can.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_start <= LOWEST + 1_000 {
        // No room below the ephemeral range: let the kernel pick.
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let span = ephemeral_start - LOWEST;
    // Test binaries run one after another, but a developer may run two:
    // start each process somewhere else in the range.
    let seed = std::process::id().wrapping_mul(7_919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < span, "no free port below {ephemeral_start}");
        let port = (LOWEST + seed.wrapping_add(n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs a command with `input` on stdin; panics if it cannot start (a
/// missing tool is a failure, not a skip).
pub fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Compares `got` with the golden file at `path`; `LLMCHAT_BLESS=1`
/// rewrites the file after a deliberate change.
pub fn assert_golden(path: &Path, got: &str) {
    if std::env::var_os("LLMCHAT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (LLMCHAT_BLESS=1 writes it)", path.display()));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{} differs at line {}:\n got: {:?}\nwant: {:?}\n(LLMCHAT_BLESS=1 rewrites it)\n{got}",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

/// Pins every flag and variable name of a binary's command (id, long
/// name, value name, variable, how it takes values) to the golden file
/// `tests/golden/flags.txt` of the crate at `crate_dir`.
pub fn assert_flags_unchanged(command: &clap::Command, crate_dir: &str) {
    let flags = describe_flags(command);
    assert_golden(&Path::new(crate_dir).join("tests/golden/flags.txt"), &flags);
}

/// One line per argument of `command` that sets something: its id, long
/// name, value name, variable and how it takes values. The tests that pin
/// every flag and variable name compare it with a golden file.
pub fn describe_flags(command: &clap::Command) -> String {
    let mut lines: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .map(|a| {
            let value = a
                .get_value_names()
                .map(|v| format!(" <{}>", v.join(" ")))
                .unwrap_or_default();
            let env = a
                .get_env()
                .map(|e| format!(" ${}", e.to_string_lossy()))
                .unwrap_or_default();
            let optional = match a.get_num_args() {
                Some(r) if r.min_values() == 0 && a.get_action().takes_values() => {
                    " (value optional)"
                }
                _ => "",
            };
            let delimiter = a
                .get_value_delimiter()
                .map(|d| format!(" (split on {d:?})"))
                .unwrap_or_default();
            let takes = if !a.get_action().takes_values() {
                " (switch)"
            } else if matches!(a.get_action(), clap::ArgAction::Append) {
                " (repeatable)"
            } else {
                ""
            };
            format!(
                "{} --{}{value}{env}{optional}{delimiter}{takes}",
                a.get_id(),
                a.get_long().unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}
