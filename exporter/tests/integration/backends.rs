//! PostgreSQL, Redis, app-probe and backup collectors against real servers
//! the tests start, kill and restart; deadlines against a server that
//! accepts and never answers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use crate::helpers::{sample, wait_until, Exporter};
use llmchat_tests::services::{Postgres, Redis, LLMCHAT_SCHEMA};

const TOKEN: &str = "admin-token-for-tests-0123456789";

fn only(collector: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![format!("--collector.{collector}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start(args: &[String]) -> Exporter {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start_with_env(&refs, &[("LLMCHAT_EXPORTER_WEB_ADMIN_TOKEN", TOKEN)])
}

/// How much later than Prometheus' scrape timeout a scrape may end here: a
/// loaded 2-core machine's scheduling and the HTTP round trip. A scrape
/// that waited on a service that never answers would take the client's
/// 30 s instead.
const SCRAPE_MARGIN: Duration = Duration::from_secs(3);

/// A scrape as Prometheus sends it, with its scrape timeout; checks the
/// answer came within that timeout plus [`SCRAPE_MARGIN`].
fn scrape_with_timeout(e: &Exporter, seconds: &str) -> String {
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

#[test]
fn postgres_metrics_match_what_sql_says_and_survive_a_crash() {
    let mut pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "{}"
[database.refresh]
active_sessions = {{ interval = "1s", timeout = "5s" }}
[[database.custom_queries]]
name = "sessions_by_user_prefix"
help = "Sessions by the first letter of the user id."
sql = "SELECT substr(user_id, 1, 1) AS prefix, count(*) AS n FROM chat_sessions GROUP BY 1"
value = "n"
labels = ["prefix"]
[[database.custom_queries]]
name = "broken"
help = "A query against a table that does not exist."
sql = "SELECT count(*) AS n FROM no_such_table"
value = "n"
"#,
            pg.url()
        ),
    )
    .unwrap();
    let e = start(&only(
        "database",
        &["--config.file", config.to_str().unwrap()],
    ));
    let errors = |query: &'static str, reason: &'static str| {
        move |t: &str| {
            sample(
                t,
                "llmchat_database_query_errors_total",
                &[("query", query), ("reason", reason)],
            )
        }
    };
    // Every background query has run once (the broken one has failed).
    let text = e.scrape_when("every background query's first run", |t| {
        [
            "llmchat_active_sessions",
            "llmchat_expired_sessions",
            "llmchat_orphaned_messages",
            "llmchat_database_size_bytes",
        ]
        .iter()
        .all(|m| sample(t, m, &[]).is_some())
            && t.contains("llmchat_agents{")
            && t.contains("llmchat_database_table_size_bytes{")
            && t.contains("llmchat_custom_sessions_by_user_prefix{")
            && errors("custom_broken", "error")(t) >= Some(1.0)
            && sample(t, "llmchat_database_statements_available", &[]).is_some()
    });
    let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(s("llmchat_database_up", &[]), Some(1.0));
    assert_eq!(
        s(
            "llmchat_exporter_collector_success",
            &[("collector", "database")]
        ),
        Some(1.0)
    );
    assert!(s("llmchat_database_ping_duration_seconds", &[]).unwrap() < 1.0);
    assert_eq!(s("llmchat_active_sessions", &[]), Some(7.0));
    assert_eq!(s("llmchat_expired_sessions", &[]), Some(3.0));
    assert_eq!(s("llmchat_orphaned_messages", &[]), Some(4.0));
    // The oldest of each backlog: 40 days idle, 100 days old.
    let days = |v: Option<f64>| v.map(|s| s / 86_400.0);
    let sessions = days(s("llmchat_expired_sessions_oldest_age_seconds", &[])).unwrap();
    assert!((sessions - 40.0).abs() < 0.01, "{sessions}");
    let messages = days(s("llmchat_orphaned_messages_oldest_age_seconds", &[])).unwrap();
    assert!((messages - 100.0).abs() < 0.01, "{messages}");
    assert_eq!(
        s(
            "llmchat_agents",
            &[("provider", "openai"), ("active", "true")]
        ),
        Some(2.0)
    );
    assert_eq!(
        s(
            "llmchat_agents",
            &[("provider", "openai"), ("active", "false")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            "llmchat_agents",
            &[("provider", "anthropic"), ("active", "true")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s("llmchat_database_connections_max", &[]),
        Some(pg.psql_f64("SHOW max_connections"))
    );
    assert!(s("llmchat_database_connections", &[("state", "active")]).unwrap() >= 1.0);
    let size = pg.psql_f64("SELECT pg_database_size('llmchat')");
    let got = s("llmchat_database_size_bytes", &[]).unwrap();
    assert!((got - size).abs() / size < 0.05, "size {got} vs {size}");
    assert_eq!(
        s(
            "llmchat_database_table_size_bytes",
            &[("table", "messages")]
        ),
        Some(pg.psql_f64("SELECT pg_total_relation_size('messages')"))
    );
    // Table statistics as pg_stat_user_tables has them.
    for (metric, column) in [
        ("llmchat_database_table_live_tuples", "n_live_tup"),
        ("llmchat_database_table_dead_tuples", "n_dead_tup"),
        ("llmchat_database_table_inserted_rows_total", "n_tup_ins"),
        ("llmchat_database_table_deleted_rows_total", "n_tup_del"),
    ] {
        let want = pg.psql_f64(&format!(
            "SELECT {column} FROM pg_stat_user_tables WHERE relname = 'messages'"
        ));
        assert_eq!(s(metric, &[("table", "messages")]), Some(want), "{metric}");
    }
    assert_eq!(
        s(
            "llmchat_database_table_inserted_rows_total",
            &[("table", "messages")]
        ),
        Some(26.0)
    );
    assert!(s(
        "llmchat_database_table_last_analyze_timestamp_seconds",
        &[("table", "agents")]
    )
    .is_some());
    // The custom query, and the broken one failing alone.
    assert_eq!(
        s("llmchat_custom_sessions_by_user_prefix", &[("prefix", "u")]),
        Some(12.0)
    );
    assert_eq!(
        s("llmchat_custom_sessions_by_user_prefix", &[("prefix", "x")]),
        Some(3.0)
    );
    assert!(!text.contains("llmchat_custom_broken"));
    assert_eq!(errors("custom_broken", "timeout")(&text), Some(0.0));
    let last_success = |query: &str| {
        s(
            "llmchat_database_query_last_success_timestamp_seconds",
            &[("query", query)],
        )
    };
    assert_eq!(last_success("custom_broken"), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for query in [
        "active_sessions",
        "agents",
        "database_size",
        "table_sizes",
        "expired_sessions",
        "orphaned_messages",
        "custom_sessions_by_user_prefix",
    ] {
        let at = last_success(query).unwrap_or_else(|| panic!("{query} never succeeded"));
        assert!(at <= now && at > now - 60.0, "{query}: {at}");
        assert_eq!(errors(query, "error")(&text), Some(0.0), "{query}");
    }
    assert_eq!(
        s(
            "llmchat_database_query_interval_seconds",
            &[("query", "active_sessions")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            "llmchat_database_query_interval_seconds",
            &[("query", "orphaned_messages")]
        ),
        Some(900.0)
    );
    // No pg_stat_statements on this server: said, not an error.
    assert_eq!(s("llmchat_database_statements_available", &[]), Some(0.0));
    assert_eq!(errors("statements", "error")(&text), Some(0.0));
    assert!(!text.contains("llmchat_database_slow_queries_total"));
    assert_eq!(e.get("/health/db").status(), 200);

    // Crash: the scrape still answers within its deadline, reporting down.
    pg.kill();
    let text = scrape_with_timeout(&e, "3");
    assert_eq!(sample(&text, "llmchat_database_up", &[]), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "llmchat_exporter_collector_success",
            &[("collector", "database")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "llmchat_active_sessions", &[]),
        None,
        "no stale values"
    );
    let r = e.get("/health/db");
    assert_eq!(r.status(), 503);
    let body = r.text().unwrap();
    assert!(body.contains("\"status\":\"unhealthy\""), "{body}");

    // Back again: the pools reconnect by themselves, and the background
    // query reads what changed meanwhile (one more active session).
    pg.restart();
    pg.psql("UPDATE chat_sessions SET updated_at = now() WHERE id = (SELECT id FROM chat_sessions ORDER BY updated_at LIMIT 1)");
    e.scrape_when("the active-sessions count after the restart", |t| {
        sample(t, "llmchat_database_up", &[]) == Some(1.0)
            && sample(t, "llmchat_active_sessions", &[]) == Some(8.0)
    });
    assert_eq!(e.get("/health/db").status(), 200);
}

/// With pg_stat_statements loaded and created, the guide's slow-query
/// count: calls of statements whose mean time is over the threshold, and
/// the totals the report divides for the statements' mean time.
#[test]
fn slow_queries_from_pg_stat_statements() {
    let pg = Postgres::start_with(&["shared_preload_libraries=pg_stat_statements"]);
    pg.psql("CREATE EXTENSION pg_stat_statements");
    // Three calls of one statement at 300 ms each, over a 100 ms threshold;
    // the fast ones stay out.
    for _ in 0..3 {
        pg.psql("SELECT pg_sleep(0.3)");
    }
    pg.psql("SELECT 1");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\nslow_query_threshold = \"100ms\"\n[database.refresh]\nstatements = {{ interval = \"1s\", timeout = \"5s\" }}\n",
            pg.url()
        ),
    )
    .unwrap();
    let e = start(&only(
        "database",
        &["--config.file", config.to_str().unwrap()],
    ));
    let text = e.scrape_when("pg_stat_statements read", |t| {
        sample(t, "llmchat_database_statements_available", &[]) == Some(1.0)
    });
    let s = |name: &str| sample(&text, name, &[]);
    assert_eq!(
        s("llmchat_database_slow_queries_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(s("llmchat_database_slow_statements"), Some(1.0));
    let calls = s("llmchat_database_statement_calls_total").unwrap();
    let seconds = s("llmchat_database_statement_execution_seconds_total").unwrap();
    assert!(calls >= 4.0, "{calls}");
    assert!(seconds >= 0.9, "three 300 ms sleeps: {seconds}");
}

/// A live PostgreSQL that asks for a password and gets a wrong one: the
/// authentication error travels through the driver, the collector, the
/// log and the health endpoints, and the password appears in none of them
/// (nor the right one, which the exporter never had).
#[test]
fn database_password_never_shows() {
    let pg = Postgres::start();
    pg.add_password_role("llmchat_app", "Right-Passw0rd-xyz");
    let secret = "Wr0ng-Passw0rd-Sup3rSecret";
    let url = format!(
        "postgres://llmchat_app:{secret}@127.0.0.1:{}/llmchat",
        pg.port
    );
    let e = Exporter::start_with_env(
        &only("database", &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[
            ("LLMCHAT_EXPORTER_DATABASE_URL", url.as_str()),
            ("LLMCHAT_EXPORTER_WEB_ADMIN_TOKEN", TOKEN),
        ],
    );
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_database_up", &[]), Some(0.0));
    let detailed = reqwest::blocking::Client::new()
        .get(format!("{}/health/detailed", e.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    // The failure that was reported is the server's refusal, so the path
    // that could leak the password was taken.
    assert!(
        detailed.contains("password authentication failed"),
        "{detailed}"
    );
    // The unauthenticated /health/db says only that it failed; the
    // driver's words (they name users and databases) stay behind the token.
    let health_db = e.get("/health/db").text().unwrap();
    assert!(
        health_db.contains("unreachable") && !health_db.contains("password authentication"),
        "{health_db}"
    );
    wait_until(Duration::from_secs(10), "the failure logged", || {
        e.log().contains("collector failing")
    });
    for body in [
        text,
        detailed,
        health_db,
        e.get("/").text().unwrap(),
        e.log(),
    ] {
        assert!(!body.contains(secret), "password leaked: {body}");
        assert!(!body.contains("Right-Passw0rd"), "password leaked: {body}");
    }
}

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
