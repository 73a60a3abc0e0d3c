//! PostgreSQL, Redis, app-probe and backup collectors against real servers
//! the tests start, kill and restart; deadlines against a server that
//! accepts and never answers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use crate::helpers::{sample, Exporter};
use llmchat_tests::services::Redis;

pub(crate) const TOKEN: &str = "admin-token-for-tests-0123456789";

pub(crate) fn only(collector: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![format!("--collector.{collector}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub(crate) fn start(args: &[String]) -> Exporter {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start_with_env(&refs, &[("LLMCHAT_EXPORTER_WEB_ADMIN_TOKEN", TOKEN)])
}

/// How much later than Prometheus' scrape timeout a scrape may end here: a
/// loaded 2-core machine's scheduling and the HTTP round trip. A scrape
/// that waited on a service that never answers would take the client's
/// 30 s instead.
pub(crate) const SCRAPE_MARGIN: Duration = Duration::from_secs(3);

/// A scrape as Prometheus sends it, with its scrape timeout; checks the
/// answer came within that timeout plus [`SCRAPE_MARGIN`].
pub(crate) fn scrape_with_timeout(e: &Exporter, seconds: &str) -> String {
    let started = Instant::now();
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", e.base))
        .header("X-Prometheus-Scrape-Timeout-Seconds", seconds)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let took = started.elapsed();
    let bound = Duration::from_secs_f64(seconds.parse().unwrap()) + SCRAPE_MARGIN;
    assert!(took < bound, "scrape took {took:?}, timeout {seconds} s");
    text
}

fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (port, handle)
}

#[test]
fn services_that_accept_and_never_answer_cannot_hold_the_scrape() {
    let (port, _hole) = black_hole();
    let mut args: Vec<String> = [
        "--collector.host",
        "--collector.database",
        "--collector.redis",
        "--collector.app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--database.url".to_string(),
        format!("postgres://postgres@127.0.0.1:{port}/llmchat"),
        "--redis.url".to_string(),
        format!("redis://127.0.0.1:{port}"),
        "--app.url".to_string(),
        format!("http://127.0.0.1:{port}"),
    ]);
    let e = start(&args);
    for _ in 0..2 {
        let text = scrape_with_timeout(&e, "2");
        for (up, collector) in [
            ("llmchat_database_up", "database"),
            ("llmchat_redis_up", "redis"),
            ("llmchat_app_up", "app"),
        ] {
            assert_eq!(sample(&text, up, &[]), Some(0.0), "{up}");
            assert_eq!(
                sample(
                    &text,
                    "llmchat_exporter_collector_success",
                    &[("collector", collector)]
                ),
                Some(0.0)
            );
        }
        // Everything else is still there.
        assert!(sample(&text, "llmchat_host_memory_total_bytes", &[]).is_some());
        assert_eq!(
            sample(
                &text,
                "llmchat_exporter_collector_success",
                &[("collector", "host")]
            ),
            Some(1.0)
        );
    }
}

/// A stand-in LLMChat backend answering the guide's health endpoints.
fn fake_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/health" => (
                    "200 OK",
                    r#"{"status":"degraded","checks":[{"name":"database","status":"healthy"},{"name":"redis","status":"unhealthy"},{"name":"disk","status":"healthy"}],"uptime":12.5}"#,
                ),
                "/health/db" => ("200 OK", r#"{"status":"healthy"}"#),
                _ => ("503 Service Unavailable", r#"{"status":"unhealthy"}"#),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn app_probe_reads_the_backends_health_endpoints() {
    let port = fake_backend();
    let e = start(&only(
        "app",
        &["--app.url", &format!("http://127.0.0.1:{port}")],
    ));
    let text = e.scrape_text();
    let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(s("llmchat_app_up", &[]), Some(1.0));
    assert_eq!(
        s("llmchat_app_health_status", &[("status", "degraded")]),
        Some(1.0)
    );
    assert_eq!(
        s("llmchat_app_health_status", &[("status", "healthy")]),
        Some(0.0)
    );
    assert_eq!(
        s("llmchat_app_health_check_up", &[("check", "database")]),
        Some(1.0)
    );
    assert_eq!(
        s("llmchat_app_health_check_up", &[("check", "redis")]),
        Some(0.0)
    );
    assert_eq!(
        s("llmchat_app_endpoint_up", &[("endpoint", "health_db")]),
        Some(1.0)
    );
    assert_eq!(
        s("llmchat_app_endpoint_up", &[("endpoint", "health_redis")]),
        Some(0.0)
    );
    assert!(
        s(
            "llmchat_app_probe_duration_seconds",
            &[("endpoint", "health")]
        )
        .unwrap()
            < 1.0
    );
}

#[test]
fn backups_of_each_kind_and_an_empty_newest_one() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: usize, age_hours: u64| {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![b'x'; bytes]).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_hours * 3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        when.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    write("database_20261124_020000.sql", 5000, 48);
    let newest_db = write("database_20261125_020000.sql", 0, 24);
    write("application_20261125_020000.tar.gz", 300, 24);
    let newest_uploads = write("uploads_20261126_020000.tar.gz", 1234, 1);
    write("uploads_20261125_020000.tar.gz", 99, 25);
    write("notes.txt", 10, 1);
    let e = start(&only(
        "backup",
        &["--backup.dir", dir.path().to_str().unwrap()],
    ));
    let text = e.scrape_text();
    let s = |name: &str, kind: &str| sample(&text, name, &[("kind", kind)]);
    assert_eq!(s("llmchat_backup_files", "database"), Some(2.0));
    assert_eq!(s("llmchat_backup_files", "config"), Some(0.0));
    assert_eq!(s("llmchat_backup_newest_size_bytes", "database"), Some(0.0));
    assert_eq!(s("llmchat_backup_newest_empty", "database"), Some(1.0));
    assert!(
        (s("llmchat_backup_newest_timestamp_seconds", "database").unwrap() - newest_db).abs() < 1.0
    );
    assert_eq!(
        s("llmchat_backup_newest_size_bytes", "uploads"),
        Some(1234.0)
    );
    assert_eq!(s("llmchat_backup_newest_empty", "uploads"), Some(0.0));
    assert!(
        (s("llmchat_backup_newest_timestamp_seconds", "uploads").unwrap() - newest_uploads).abs()
            < 1.0
    );
    assert_eq!(s("llmchat_backup_newest_size_bytes", "config"), None);
    assert_eq!(sample(&text, "llmchat_backup_dir_exists", &[]), Some(1.0));
}

#[test]
fn a_failing_collector_is_logged_when_it_fails_and_when_it_recovers_not_per_scrape() {
    // A Redis that is down at first: its port is known, nothing listens.
    let mut redis = Redis::start();
    redis.kill();
    let e = start(&only("redis", &["--redis.url", &redis.url()]));
    let failures = |e: &Exporter| {
        e.sample(
            "llmchat_exporter_collector_failures_total",
            &[("collector", "redis")],
        )
    };
    for _ in 0..5 {
        e.scrape_text();
    }
    // Every failed scrape counted (the helper's ready check does not scrape).
    assert_eq!(failures(&e), Some(6.0), "5 scrapes and this one");
    redis.restart();
    crate::helpers::wait_until(Duration::from_secs(15), "redis collector back", || {
        e.sample(
            "llmchat_exporter_collector_success",
            &[("collector", "redis")],
        ) == Some(1.0)
    });
    for _ in 0..3 {
        e.scrape_text();
    }
    let log = e.log();
    assert_eq!(log.matches("collector failing").count(), 1, "{log}");
    assert_eq!(log.matches("collector recovered").count(), 1, "{log}");
}

/// The namespace SCAN stops at `redis.scan_max_keys`: the count is then
/// partial and says so (`llmchat_redis_namespace_scan_complete` 0).
#[test]
fn the_app_probe_follows_no_redirect() {
    let elsewhere = llmchat_tests::sinks::Target::start(Vec::new());
    let location: &'static str = Box::leak(elsewhere.url("/health").into_boxed_str());
    let backend = llmchat_tests::sinks::Target::start(
        (0..30)
            .map(|_| (302, Some(("location", location))))
            .collect(),
    );
    let e = start(&only("app", &["--app.url", &backend.url("")]));
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_app_up", &[]), Some(0.0), "{text}");
    assert!(!backend.requests().is_empty());
    assert!(
        elsewhere.requests().is_empty(),
        "the probe followed a redirect"
    );
}
