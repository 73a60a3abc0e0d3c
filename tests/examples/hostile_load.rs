//! The driver of bench/hostile-load.sh: one attack against the servers
//! named, while it measures fresh scrapes (a new connection each, as after
//! a restart of Prometheus) and Alertmanager-like webhook posts.
//!
//! usage: hostile_load ATTACK SECONDS TARGET... where ATTACK is none,
//! idle, half-headers, slow-body, health-polling or wrong-password, and a
//! TARGET is name=url=pid (url of /metrics or /webhook; the pid is read
//! for CPU time). Credentials: BENCH_USER/BENCH_PASSWORD (basic auth of
//! the web-config file), BENCH_TOKEN (the receiver's bearer token).
//! Loopback only; every loop ends with SECONDS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmchat_tests::hostile::{raise_own_open_files, Attack, Hostile};

/// One firing alert, as Alertmanager posts it.
const WEBHOOK: &str = r#"{"version":"4","groupKey":"{}:{alertname=\"LLMChatBench\"}","truncatedAlerts":0,"status":"firing","receiver":"llmchat","groupLabels":{"alertname":"LLMChatBench"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://127.0.0.1:9093","alerts":[{"status":"firing","labels":{"alertname":"LLMChatBench","severity":"info","instance":"bench:9842"},"annotations":{"summary":"bench"},"startsAt":"2026-12-02T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://127.0.0.1:9090/graph","fingerprint":"bench"}]}"#;

struct Target {
    name: String,
    url: String,
    pid: u32,
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// 5,000 connections of one kind; a server that stopped accepting costs
/// each connect 300 ms, not the default 2 s.
fn hold(addr: SocketAddr, attack: Attack) -> Hostile {
    Hostile::mixed_within(addr, &[(attack, 5000)], Duration::from_millis(300))
}

/// Whether the attack holds connections that the server must time out.
fn held_kind(attack: &str) -> bool {
    matches!(attack, "idle" | "half-headers" | "slow-body")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attack = args[0].clone();
    let seconds: u64 = args[1].parse().unwrap();
    let targets: Vec<Target> = args[2..]
        .iter()
        .map(|t| {
            let mut parts = t.splitn(3, '=');
            Target {
                name: parts.next().unwrap().into(),
                url: parts.next().unwrap().into(),
                pid: parts.next().unwrap().parse().unwrap(),
            }
        })
        .collect();
    let user = std::env::var("BENCH_USER").unwrap_or_default();
    let password = std::env::var("BENCH_PASSWORD").unwrap_or_default();
    let token = std::env::var("BENCH_TOKEN").unwrap_or_default();
    raise_own_open_files(16_000);

    // Each target in turn: the attack against it alone, and meanwhile
    // its fresh scrapes or posts measured.
    let refused = Arc::new(AtomicUsize::new(0));
    let per_target = Duration::from_secs(seconds) / targets.len() as u32;
    let mut lines = Vec::new();
    for t in &targets {
        let addr: SocketAddr = t
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut held = Vec::new();
        let mut threads = Vec::new();
        match attack.as_str() {
            "none" => {}
            "idle" => held.push(hold(addr, Attack::Idle)),
            "half-headers" => held.push(hold(addr, Attack::HalfHeaders)),
            "slow-body" => held.push(hold(addr, Attack::SlowBody)),
            "health-polling" | "wrong-password" => {
                let (n, path) = if attack == "health-polling" {
                    (32, "/health")
                } else {
                    (200, "/metrics")
                };
                for i in 0..n {
                    let url = format!("http://{addr}{path}");
                    let (stop, refused) = (stop.clone(), refused.clone());
                    let wrong = attack == "wrong-password";
                    let user = user.clone();
                    threads.push(std::thread::spawn(move || {
                        let c = reqwest::blocking::Client::builder()
                            .timeout(Duration::from_secs(30))
                            .build()
                            .unwrap();
                        let mut k = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let mut req = c.get(&url);
                            if wrong {
                                req = req.basic_auth(&user, Some(format!("guess-{i}-{k}")));
                            }
                            if let Ok(r) = req.send() {
                                if r.status() == 429 {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            k += 1;
                        }
                    }));
                }
            }
            other => panic!("unknown attack {other}"),
        }
        std::thread::sleep(Duration::from_secs(1));
        let cpu_before = cpu_seconds(t.pid);
        let started = Instant::now();
        let mut times = Vec::new();
        let mut failures = 0;
        while started.elapsed() < per_target {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let began = Instant::now();
            let ok = if t.url.ends_with("/webhook") {
                let req = c
                    .post(&t.url)
                    .header("content-type", "application/json")
                    .body(WEBHOOK);
                let req = if user.is_empty() {
                    req.bearer_auth(&token)
                } else {
                    req.basic_auth(&user, Some(&password))
                };
                req.send().is_ok_and(|r| r.status() == 200)
            } else {
                let mut req = c
                    .get(&t.url)
                    .header("X-Prometheus-Scrape-Timeout-Seconds", "10");
                if !user.is_empty() {
                    req = req.basic_auth(&user, Some(&password));
                }
                req.send()
                    .and_then(|r| r.error_for_status())
                    .and_then(|r| r.bytes())
                    .is_ok()
            };
            if ok {
                times.push(began.elapsed().as_secs_f64() * 1000.0);
            } else {
                failures += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let cores = (cpu_seconds(t.pid) - cpu_before) / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for th in threads {
            let _ = th.join();
        }
        drop(held);
        times.sort_by(f64::total_cmp);
        lines.push(format!(
            "{attack:<15} {:<10} n={:<4} failed={:<3} p50={:>8.2} ms p99={:>8.2} ms max={:>8.2} ms cpu={cores:.2} cores",
            t.name,
            times.len(),
            failures,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(f64::NAN),
        ));
        // Let the server close what the attack left.
        std::thread::sleep(Duration::from_secs(if held_kind(&attack) { 12 } else { 1 }));
    }
    if attack == "wrong-password" {
        lines.push(format!(
            "{attack:<15} answered 429: {}",
            refused.load(Ordering::Relaxed)
        ));
    }
    for l in lines {
        println!("{l}");
    }
}
