//! A real Prometheus holding given series: backfilled with `promtool tsdb
//! create-blocks-from openmetrics` (blocks made once per content and kept
//! in a cache directory the caller names), served on a free port. For the
//! tests that read Prometheus' HTTP API: the report's and
//! verify-deployment's.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llmchat_common::lock;

use crate::free_port;

/// One series: its name, its labels as written between braces, and its
/// samples (unix seconds, value).
pub struct Series {
    pub name: String,
    pub labels: String,
    pub points: Vec<(i64, f64)>,
}

pub fn openmetrics(series: &[Series]) -> String {
    openmetrics_between(series, i64::MIN, i64::MAX)
}

/// The samples of `series` at `from` ≤ t < `to`, as OpenMetrics text.
pub fn openmetrics_between(series: &[Series], from: i64, to: i64) -> String {
    let mut text = String::new();
    let mut names: Vec<&str> = Vec::new();
    for s in series {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    for name in names {
        // `unknown` keeps every sample name as it is; PromQL needs no type.
        let _ = writeln!(text, "# TYPE {name} unknown");
        for s in series.iter().filter(|s| s.name == name) {
            for (t, v) in s.points.iter().filter(|(t, _)| (from..to).contains(t)) {
                let _ = writeln!(text, "{name}{{{}}} {v} {t}", s.labels);
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TSDB blocks of `series`, made once per content and kept under `cache`
/// (Cargo's scratch directory for integration tests, `CARGO_TARGET_TMPDIR`):
/// promtool takes tens of seconds over a month of samples, and several
/// tests read the same month.
pub fn blocks_of(series: &[Series], cache: &std::path::Path) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let text = openmetrics(series);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = cache.join(format!("report-blocks-{:016x}", hasher.finish()));
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

/// A real Prometheus holding `series` (backfilled with promtool, the
/// blocks cached under `cache`) and keeping `retention`, on its own copy
/// of the blocks.
pub fn prometheus_with(series: &[Series], retention: &str, cache: &std::path::Path) -> Prometheus {
    let blocks = blocks_of(series, cache);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::copy_dir(&blocks.join("data"), &data);
    serve(dir, retention)
}

/// A real Prometheus holding `series`, backfilled into its own directory
/// (data relative to now is new each run: nothing to keep).
pub fn prometheus_with_recent(series: &[Series]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    backfill(series, dir.path());
    serve(dir, "100y")
}

/// Prometheus on the TSDB in `dir`/data.
pub fn serve(dir: tempfile::TempDir, retention: &str) -> Prometheus {
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
