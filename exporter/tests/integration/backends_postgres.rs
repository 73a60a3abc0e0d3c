//! The database collector against a real PostgreSQL the test starts,
//! kills and restarts: its figures against what SQL says, slow
//! statements, and a password that never shows.

use std::time::Duration;

use crate::backends::{only, scrape_with_timeout, start, TOKEN};
use crate::helpers::{sample, wait_until, Exporter};
use llmchat_tests::services::{Postgres, LLMCHAT_SCHEMA};

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
