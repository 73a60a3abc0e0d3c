//! The stack's processes: our binaries (checked newer than their
//! sources), any child killed on drop, readiness, and Prometheus on the
//! stack's own configuration with the rules' durations scaled.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use llmchat_tests::{free_port, repo_root};

use crate::harness::{wait_until, INTERVAL, TIME_SCALE};

/// A workspace binary, built by `cargo test --workspace` next to this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the tests with `cargo test --workspace`, which builds it",
                path.display()
            )
        });
    // A binary older than its sources would test old code.
    let crate_dir = name.trim_start_matches("llmchat-");
    // The crate and the workspace crates it is built from.
    let from: &[&str] = match crate_dir {
        "exporter" => &["settings-derive", "common", "tail", "report"],
        _ => &["settings-derive", "common"],
    };
    for src in std::iter::once(crate_dir)
        .chain(from.iter().copied())
        .map(|c| format!("{c}/src"))
    {
        if let Some(newest) = newest_mtime(&repo_root().join(&src)) {
            assert!(
                newest <= built,
                "{} is older than {src}: run the tests with `cargo test --workspace`, which rebuilds it",
                path.display()
            );
        }
    }
    path
}

/// The newest modification time of the sources that go into the binary:
/// unit-test modules (`tests.rs`, compiled only under `cfg(test)`) do not,
/// and a change to one alone does not rebuild it.
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "tests.rs")
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if m.is_dir() {
                newest_mtime(&e.path())
            } else {
                m.modified().ok()
            }
        })
        .max()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Proc {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("LLMCHAT_STACK_VERBOSE").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} (is it installed?): {e}"));
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ready(url: &str, what: &str) {
    wait_until(Duration::from_secs(30), &format!("{what} ready"), || {
        reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success())
    });
}

/// Replaces `from` with `to` in `text`, insisting that it is there: the
/// test must notice when the stack's files change under it.
pub fn substitute(text: &mut String, file: &str, from: &str, to: &str) {
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}; update the test"
    );
    *text = text.replace(from, to);
}

/// The rules with every duration in `for:`, `[range]` and `offset`
/// divided by [`TIME_SCALE`] (at least 1s).
pub fn scaled_rules(text: &str) -> String {
    let re = regex::Regex::new(r"(for: |\[|offset )(\d+)([smhdw])").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        let n: u64 = c[2].parse().unwrap();
        let secs = n * match &c[3] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => 604800,
        };
        format!("{}{}s", &c[1], (secs / TIME_SCALE).max(1))
    })
    .into_owned()
}

/// Where stack/prometheus.yml's targets are, as `host:port` lists.
pub struct Targets<'a> {
    pub exporters: &'a [String],
    pub receivers: &'a [String],
    pub node: String,
    pub alertmanagers: &'a [String],
}

/// Prometheus from the stack's own `stack/prometheus.yml` and the scaled
/// rules, in `d`, with only intervals, paths and `targets` substituted;
/// its process and URL, once it is ready.
pub fn start_prometheus(d: &Path, targets: &Targets<'_>) -> (Proc, String) {
    let rules_dir = d.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    // Every rule file, as stack/prometheus.yml's `rules/*.rules.yml` loads
    // them.
    let mut copied = 0;
    for entry in std::fs::read_dir(repo_root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".rules.yml") {
            let rules = std::fs::read_to_string(&path).unwrap();
            std::fs::write(rules_dir.join(&name), scaled_rules(&rules)).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 1, "no rule files under rules/");
    let port = free_port();
    let f = "stack/prometheus.yml";
    let mut text = std::fs::read_to_string(repo_root().join(f)).unwrap();
    let list = |items: &[String]| items.join("\", \"");
    for (from, to) in [
        (
            "scrape_interval: 15s",
            format!("scrape_interval: {INTERVAL}"),
        ),
        ("scrape_timeout: 10s", format!("scrape_timeout: {INTERVAL}")),
        (
            "evaluation_interval: 15s",
            format!("evaluation_interval: {INTERVAL}"),
        ),
        (
            "/etc/prometheus/rules/",
            format!("{}/", rules_dir.display()),
        ),
        ("llmchat-exporter:9842", list(targets.exporters)),
        ("llmchat-receiver:9843", list(targets.receivers)),
        ("node-exporter:9100", targets.node.clone()),
        ("alertmanager:9093", list(targets.alertmanagers)),
        ("localhost:9090", format!("127.0.0.1:{port}")),
    ] {
        substitute(&mut text, f, from, &to);
    }
    let config = d.join("prometheus.yml");
    std::fs::write(&config, text).unwrap();
    let proc = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        "prometheus (apt-get install prometheus)",
    );
    let url = format!("http://127.0.0.1:{port}");
    ready(&format!("{url}/-/ready"), "prometheus");
    (proc, url)
}
