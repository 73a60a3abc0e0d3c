//! Hostile and broken clients against the real exporter: thousands of
//! idle, half-sent and trickling connections under a 1,024-file limit,
//! each timeout, wrong-password floods, `/health` pollers, `Expect:
//! 100-continue` and HTTP/2 prior knowledge, and log lines forged through
//! a file name.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmchat_tests::hostile::{raise_own_open_files, raw_exchange, Attack, Hostile};

use crate::helpers::{sample, wait_until, Exporter, BIN};

fn addr(e: &Exporter) -> SocketAddr {
    e.base.trim_start_matches("http://").parse().unwrap()
}

/// The exporter under `prlimit --nofile=SOFT:HARD`, every collector off.
fn start_limited(nofile: &str, args: &[&str]) -> Exporter {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}"))
        .arg(BIN)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--collector.disable-defaults",
        ])
        .args(args);
    Exporter::spawn(cmd, 0, &[])
}

fn closed(e: &Exporter, reason: &str) -> f64 {
    e.sample(
        "llmchat_exporter_http_connections_closed_total",
        &[("reason", reason)],
    )
    .unwrap_or(-1.0)
}

#[test]
fn five_thousand_hostile_connections_leave_room_for_a_scrape() {
    raise_own_open_files(12_000);
    let e = start_limited("1024:1024", &[]);
    let hostile = Hostile::mixed(
        addr(&e),
        &[
            (Attack::Idle, 2000),
            (Attack::HalfHeaders, 2000),
            (Attack::SlowBody, 1000),
        ],
    );
    // With all 5,000 connected (or turned away), a fresh scrape and the
    // liveness probe still get through.
    let text = e.scrape_text();
    assert!(text.contains("llmchat_exporter_build_info"), "{text}");
    assert_eq!(e.get("/-/healthy").status(), 200);
    let open = sample(&text, "llmchat_exporter_http_connections_open", &[]).unwrap();
    assert!(
        (1.0..=512.0).contains(&open),
        "{open} open connections over the cap of 512"
    );
    assert_eq!(
        sample(&text, "llmchat_exporter_http_connections_max", &[]),
        Some(512.0)
    );
    assert!(
        hostile.still_open() <= 512,
        "the server holds {} of ours",
        hostile.still_open()
    );
    assert!(closed(&e, "evicted_at_cap") >= 4000.0, "{text}");
    assert!(
        !e.log().contains("Too many open files"),
        "the exporter ran out of descriptors:\n{}",
        e.log()
    );
    drop(hostile);
}

#[test]
fn slow_clients_are_closed_by_their_timeouts() {
    let e = Exporter::start(&[
        "--web.limits.header-timeout",
        "1s",
        "--web.limits.body-timeout",
        "1s",
        "--web.limits.idle-timeout",
        "3s",
    ]);
    let hostile = Hostile::mixed(
        addr(&e),
        &[
            (Attack::Idle, 3),
            (Attack::HalfHeaders, 4),
            (Attack::SlowBody, 5),
        ],
    );
    assert_eq!(hostile.len(), 12);
    // A keep-alive connection after one whole request counts as idle.
    let kept = {
        let mut s = std::net::TcpStream::connect(addr(&e)).unwrap();
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        s
    };
    wait_until(Duration::from_secs(20), "every slow client closed", || {
        hostile.still_open() == 0
    });
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!((&kept).read(&mut buf).unwrap_or(0), 0, "keep-alive kept");
    // Idle: ours and the keep-alive one (the helper's own client may add
    // its pooled connection).
    let counts = || {
        [
            closed(&e, "idle_timeout"),
            closed(&e, "header_timeout"),
            closed(&e, "body_timeout"),
        ]
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(counts(), [i, 4.0, 5.0] if i >= 4.0) {
        assert!(Instant::now() < deadline, "closes counted: {:?}", counts());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let e = start_limited("1024:4096", &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", e.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
    assert!(
        e.log().contains("open-file limit raised") && e.log().contains("before=1024"),
        "{}",
        e.log()
    );
    // The cap follows a low limit: three quarters of 256.
    let low = start_limited("256:256", &[]);
    assert_eq!(
        low.sample("llmchat_exporter_http_connections_max", &[]),
        Some(192.0)
    );
}

/// CPU seconds the process has used (utime + stime, in clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_wrong_password_flood_takes_one_core_and_the_right_password_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right-password", 10).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    let e = Exporter::start(&["--web.config.file", web.to_str().unwrap()]);
    let url = format!("{}/metrics", e.base);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The right password once, so that it is cached.
    let right = |c: &reqwest::blocking::Client| {
        c.get(&url)
            .basic_auth("prometheus", Some("right-password"))
            .send()
            .map(|r| r.status().as_u16())
    };
    assert_eq!(right(&client).unwrap(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let throttled = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_before = cpu_seconds(e.child.id());
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let (stop, throttled, wrong) = (stop.clone(), throttled.clone(), wrong.clone());
            let url = url.clone();
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // A new password each time: no cache helps.
                    let r = c
                        .get(&url)
                        .basic_auth("prometheus", Some(format!("guess-{i}-{n}")))
                        .send();
                    match r.map(|r| r.status().as_u16()) {
                        Ok(429) => throttled.fetch_add(1, Ordering::Relaxed),
                        Ok(401) => wrong.fetch_add(1, Ordering::Relaxed),
                        other => panic!("a wrong password got {other:?}"),
                    };
                    n += 1;
                }
            })
        })
        .collect();
    // Meanwhile the right password keeps working.
    let mut statuses = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        statuses.push(right(&client).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_seconds(e.child.id()) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        throttled.load(Ordering::Relaxed) > 0,
        "no flood was throttled"
    );
    assert!(wrong.load(Ordering::Relaxed) > 0, "no password was checked");
    // One bcrypt check at a time: about one core, never all of them
    // (without the bound, 200 clients keep every core busy).
    let cores = cpu / wall;
    assert!(cores < 1.5, "{cores:.2} cores used by the flood");
    let metrics = client
        .get(&url)
        .basic_auth("prometheus", Some("right-password"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        sample(&metrics, "llmchat_exporter_http_auth_throttled_total", &[]).unwrap() > 0.0,
        "{metrics}"
    );
}

/// A backend whose `/health` takes `delay` to answer.
fn slow_backend(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let body = r#"{"status":"healthy","uptime":1}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

#[test]
fn health_pollers_cannot_push_a_scrape_past_its_deadline() {
    let port = slow_backend(Duration::from_secs(2));
    let e = Exporter::start(&[
        "--collector.app",
        "--app.url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let pollers: Vec<_> = (0..32)
        .map(|_| {
            let (stop, polls) = (stop.clone(), polls.clone());
            let url = format!("{}/health", e.base);
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    if c.get(&url).send().is_ok() {
                        polls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Prometheus' scrape: a 10 s timeout, said in its header.
    let scraper = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = scraper
            .get(format!("{}/metrics", e.base))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "10")
            .send()
            .expect("a scrape went past Prometheus' 10 s timeout");
        assert_eq!(r.status(), 200);
        assert!(r.text().unwrap().contains("llmchat_app_up 1"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in pollers {
        t.join().unwrap();
    }
    assert!(
        polls.load(Ordering::Relaxed) > 32,
        "the pollers never got through"
    );
}

#[test]
fn expect_continue_over_the_limit_is_refused_before_the_body() {
    let e = Exporter::start(&[]);
    let answer = raw_exchange(
        addr(&e),
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[test]
fn http2_is_not_served_in_cleartext() {
    let e = Exporter::start(&[]);
    let answer = raw_exchange(
        addr(&e),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        Duration::from_secs(5),
    );
    // An HTTP/2 server answers with a SETTINGS frame (type 4 in the
    // fourth byte); HTTP/1.1 answers with a status line or closes.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_file_name_with_a_line_break_stays_on_one_log_line() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the log file should be: the exporter logs its path.
    let forged = dir.path().join("app.log\nERROR forged line \u{1b}[2J");
    std::fs::create_dir(&forged).unwrap();
    let e = Exporter::start(&["--collector.logs", "--logs.app", forged.to_str().unwrap()]);
    wait_until(Duration::from_secs(10), "the path logged", || {
        e.log().contains("forged line")
    });
    let log = e.log();
    assert!(!log.contains('\u{1b}'), "an escape byte in the log:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line:\n{log}"
    );
    assert!(
        log.contains("app.log\\nERROR forged line \\u{1b}[2J"),
        "{log}"
    );
}
