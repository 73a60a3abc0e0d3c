//! The Redis collector against a real Redis the test starts and restarts:
//! its figures against INFO, and the namespace SCAN within its budget.

use std::time::{Duration, Instant};

use crate::backends::{only, scrape_with_timeout, start};
use crate::helpers::sample;
use llmchat_tests::services::Redis;

#[test]
fn redis_metrics_match_info_and_survive_a_restart() {
    let mut redis = Redis::start();
    redis.cli(&["CONFIG", "SET", "maxmemory", "104857600"]);
    let mut commands = String::new();
    for i in 0..4 {
        commands.push_str(&format!("SET agents:{i} a\n"));
    }
    for i in 0..2500 {
        commands.push_str(&format!("SET messages:{i} m\n"));
    }
    commands.push_str(
        "SET unrelated x\nGET agents:1\nGET agents:missing\nSELECT 1\nSET sessions:1 s\n",
    );
    redis.pipe(&commands);
    let e = start(&only(
        "redis",
        &[
            "--redis.url",
            &redis.url(),
            "--redis.namespaces",
            "agents,messages,sessions",
        ],
    ));
    // The namespace SCAN runs in the background, right after start.
    let text = e.scrape_when("the first namespace SCAN", |t| {
        t.contains("llmchat_redis_namespace_keys{")
    });
    let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(s("llmchat_redis_up", &[]), Some(1.0));
    let scan = [("query", "namespace_keys")];
    assert_eq!(s("llmchat_redis_query_interval_seconds", &scan), Some(30.0));
    assert!(s("llmchat_redis_query_duration_seconds", &scan).is_some());
    assert!(s("llmchat_redis_query_last_success_timestamp_seconds", &scan).is_some());
    assert_eq!(
        s(
            "llmchat_redis_query_errors_total",
            &[("query", "namespace_keys"), ("reason", "error")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s("llmchat_redis_namespace_keys", &[("namespace", "agents")]),
        Some(4.0)
    );
    assert_eq!(
        s("llmchat_redis_namespace_keys", &[("namespace", "messages")]),
        Some(2500.0)
    );
    // sessions:1 went to db 1; SCAN looks at the URL's database (0).
    assert_eq!(
        s("llmchat_redis_namespace_keys", &[("namespace", "sessions")]),
        Some(0.0)
    );
    assert_eq!(
        s(
            "llmchat_redis_namespace_scan_complete",
            &[("namespace", "messages")]
        ),
        Some(1.0)
    );
    assert_eq!(s("llmchat_redis_db_keys", &[("db", "db0")]), Some(2505.0));
    assert_eq!(s("llmchat_redis_db_keys", &[("db", "db1")]), Some(1.0));
    assert_eq!(s("llmchat_redis_memory_max_bytes", &[]), Some(104857600.0));
    assert!(s("llmchat_redis_memory_used_bytes", &[]).unwrap() > 0.0);
    assert!(s("llmchat_redis_connections_active", &[]).unwrap() >= 1.0);
    for (metric, key) in [
        ("llmchat_redis_keyspace_hits_total", "keyspace_hits"),
        ("llmchat_redis_keyspace_misses_total", "keyspace_misses"),
        ("llmchat_redis_evicted_keys_total", "evicted_keys"),
    ] {
        assert_eq!(s(metric, &[]), Some(redis.info(key)), "{metric}");
    }
    assert_eq!(s("llmchat_redis_keyspace_hits_total", &[]), Some(1.0));
    assert_eq!(s("llmchat_redis_keyspace_misses_total", &[]), Some(1.0));
    assert_eq!(e.get("/health/redis").status(), 200);

    redis.kill();
    let text = scrape_with_timeout(&e, "3");
    assert_eq!(sample(&text, "llmchat_redis_up", &[]), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "llmchat_redis_namespace_keys",
            &[("namespace", "agents")]
        ),
        None
    );
    assert_eq!(e.get("/health/redis").status(), 503);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape_with_timeout(&e, "3");
        if sample(&text, "llmchat_redis_up", &[]) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "redis metrics did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(e.get("/health/redis").status(), 200);
}

/// Accepts connections and never answers, like a wedged server.
#[test]
fn redis_namespace_scan_stops_at_its_key_budget() {
    let redis = Redis::start();
    let mut commands = String::new();
    for i in 0..3000 {
        commands.push_str(&format!("SET messages:{i} m\n"));
    }
    redis.pipe(&commands);
    let e = start(&only(
        "redis",
        &[
            "--redis.url",
            &redis.url(),
            "--redis.namespaces",
            "messages",
            "--redis.scan-max-keys",
            "500",
        ],
    ));
    let text = e.scrape_when("the first namespace SCAN", |t| {
        t.contains("llmchat_redis_namespace_keys{")
    });
    assert_eq!(
        sample(
            &text,
            "llmchat_redis_namespace_scan_complete",
            &[("namespace", "messages")]
        ),
        Some(0.0)
    );
    let counted = sample(
        &text,
        "llmchat_redis_namespace_keys",
        &[("namespace", "messages")],
    );
    assert!(
        counted.is_some_and(|n| n < 3000.0),
        "a truncated scan reported {counted:?} of 3000 keys"
    );
}
