//! A real Prometheus for the report tests: series backfilled with
//! `promtool tsdb create-blocks-from openmetrics` (a month's blocks made
//! once per content and shared), and the report binary run against it.

use llmchat_common::lock;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, BIN};
use crate::report_month::*;

pub(crate) struct Prometheus {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn prometheus_with_a_month() -> Prometheus {
    prometheus_with(&generate(), "100y")
}

/// TSDB blocks of `series`, made once per content and kept in Cargo's
/// scratch directory for integration tests: promtool takes tens of seconds
/// over a month of samples, and several tests read the same month.
pub(crate) fn blocks_of(series: &[Series]) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let text = openmetrics(series);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-blocks-{:016x}", hasher.finish()));
    let _one_at_a_time = lock(&MAKING);
    // And one process at a time: two test runs of one checkout (a
    // leftover one, or a developer's beside CI's) share this directory.
    let lock_file = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock_file.lock().unwrap();
    if dir.join("done").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    drop(text);
    backfill(series, &dir);
    std::fs::write(dir.join("done"), "").unwrap();
    dir
}

/// `promtool tsdb create-blocks-from openmetrics` of `series` into
/// `dir`/data, one UTC day per promtool run, two runs at a time.
/// promtool (2.42) parses its whole input once per 2-hour block it
/// writes: the two months of the report's series in one file were parsed
/// over 700 times (five minutes of the test suite), a day's file is
/// parsed twelve times.
fn backfill(series: &[Series], dir: &std::path::Path) {
    const DAY: i64 = 86_400;
    let points = series.iter().flat_map(|s| s.points.iter().map(|(t, _)| *t));
    let (Some(first), Some(last)) = (points.clone().min(), points.max()) else {
        return;
    };
    let days: Vec<i64> = (first.div_euclid(DAY)..=last.div_euclid(DAY))
        .map(|d| d * DAY)
        .collect();
    let one_day = |day: i64| {
        let text = openmetrics_between(series, day, day + DAY);
        let input = dir.join(format!("input-{day}.om"));
        std::fs::write(&input, text).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(dir.join("data"))
            .output()
            .expect("promtool (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&input).unwrap();
    };
    std::thread::scope(|scope| {
        for half in [0, 1] {
            let days = &days;
            scope.spawn(move || days.iter().skip(half).step_by(2).for_each(|d| one_day(*d)));
        }
    });
}

/// A real Prometheus holding `series` (backfilled with promtool) and
/// keeping `retention`, on its own copy of the blocks.
pub(crate) fn prometheus_with(series: &[Series], retention: &str) -> Prometheus {
    let blocks = blocks_of(series);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    llmchat_tests::copy_dir(&blocks.join("data"), &data);
    serve(dir, retention)
}

/// A real Prometheus holding `series`, backfilled into its own directory
/// (data relative to now is new each run: nothing to keep).
pub(crate) fn prometheus_with_recent(series: &[Series]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    backfill(series, dir.path());
    serve(dir, "100y")
}

/// Prometheus on the TSDB in `dir`/data.
pub(crate) fn serve(dir: tempfile::TempDir, retention: &str) -> Prometheus {
    let data = dir.path().join("data");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--storage.tsdb.retention.time={retention}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let url = format!("http://127.0.0.1:{port}");
    let prom = Prometheus {
        child,
        url,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::blocking::get(format!("{}/-/ready", prom.url))
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    prom
}

/// The report in UTC unless a test says otherwise: the machine's zone is
/// the default, and a developer's must not change a result.
pub(crate) fn report(args: &[&str]) -> std::process::Output {
    report_in("UTC", args)
}

/// The report with `TZ` set to `zone` (the machine's zone, as it sees it).
pub(crate) fn report_in(zone: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("report")
        .args(args)
        .env("TZ", zone)
        .output()
        .unwrap()
}

pub(crate) fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

pub(crate) const MONTH: [&str; 4] = [
    "--from",
    "2026-10-01T00:00:00Z",
    "--to",
    "2026-10-31T00:00:00Z",
];

pub(crate) fn json(prom: &Prometheus, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--prometheus.url", prom.url.as_str(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = report(&args);
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
