//! The database collector's background queries against a real PostgreSQL:
//! a query past its timeout is stopped by the server and counted while
//! scrapes stay quick, a failing query costs only its own value (which goes
//! once three intervals old), and each query's plan is checked once.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llmchat_tests::services::{Postgres, LLMCHAT_SCHEMA};

use crate::helpers::{sample, wait_until, Exporter};

fn exporter(pg: &Postgres, dir: &tempfile::TempDir, toml: &str) -> Exporter {
    let config: PathBuf = dir.path().join("exporter.toml");
    std::fs::write(
        &config,
        format!("[database]\nurl = \"{}\"\n{toml}", pg.url()),
    )
    .unwrap();
    Exporter::start(&[
        "--collector.database",
        "--config.file",
        config.to_str().unwrap(),
    ])
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn errors(text: &str, query: &str, reason: &str) -> Option<f64> {
    sample(
        text,
        "llmchat_database_query_errors_total",
        &[("query", query), ("reason", reason)],
    )
}

/// `pg_sleep(10)` with a 1 s timeout: PostgreSQL cancels it (it is gone
/// from pg_stat_activity, not left running after the exporter gave up),
/// it counts as a timeout, and scrapes meanwhile do not wait for it.
#[test]
fn a_query_past_its_timeout_is_cancelled_by_the_server_and_scrapes_do_not_wait() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let e = exporter(
        &pg,
        &dir,
        "[[database.custom_queries]]\nname = \"sleepy\"\nhelp = \"Sleeps.\"\n\
         sql = \"SELECT 1 AS n FROM pg_sleep(10)\"\nvalue = \"n\"\ninterval = \"60s\"\ntimeout = \"1s\"\n",
    );
    let running = || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM pg_sleep(10)%' \
             AND state = 'active' AND pid <> pg_backend_pid()",
        )
    };
    // Scrapes while it runs: the database collector's own measure of its
    // scrape stays below the query's 1 s, which it would reach at least if
    // the query were on the scrape path.
    let text = e.scrape_when("the timeout to be counted", |t| {
        let took = sample(
            t,
            "llmchat_exporter_collector_duration_seconds",
            &[("collector", "database")],
        )
        .unwrap();
        assert!(took < 1.0, "a scrape took {took} s while the query ran");
        assert_eq!(sample(t, "llmchat_database_up", &[]), Some(1.0));
        errors(t, "custom_sleepy", "timeout") == Some(1.0)
    });
    assert_eq!(errors(&text, "custom_sleepy", "error"), Some(0.0));
    assert!(!text.contains("llmchat_custom_sleepy"), "{text}");
    let took = sample(
        &text,
        "llmchat_database_query_duration_seconds",
        &[("query", "custom_sleepy")],
    )
    .unwrap();
    assert!((1.0..2.0).contains(&took), "stopped after {took} s");
    // The server stopped it: nothing is left sleeping for the other 9 s.
    assert_eq!(running(), "0");
    assert!(
        e.log().contains("background query failed") && e.log().contains("query=custom_sleepy"),
        "{}",
        e.log()
    );
}

/// A query whose table goes away fails alone: the others keep being
/// refreshed, its last value is still exported for three intervals and
/// then disappears, the failure is logged once however often it repeats,
/// and the value comes back once the table does.
#[test]
fn a_failing_query_costs_only_its_own_value_which_goes_after_three_intervals() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let e = exporter(
        &pg,
        &dir,
        "[database.refresh]\nactive_sessions = { interval = \"1s\", timeout = \"5s\" }\n\
         agents = { interval = \"1s\", timeout = \"5s\" }\n",
    );
    let agents = |t: &str| {
        sample(
            t,
            "llmchat_agents",
            &[("provider", "openai"), ("active", "true")],
        )
    };
    e.scrape_when("the first values", |t| {
        agents(t) == Some(2.0) && sample(t, "llmchat_active_sessions", &[]) == Some(7.0)
    });
    pg.psql("ALTER TABLE agents RENAME TO agents_gone");
    pg.psql("UPDATE chat_sessions SET updated_at = now() WHERE id = (SELECT id FROM chat_sessions ORDER BY updated_at LIMIT 1)");
    let text = e.scrape_when("agents to fail while active sessions move on", |t| {
        errors(t, "agents", "error") >= Some(1.0)
            && sample(t, "llmchat_active_sessions", &[]) == Some(8.0)
    });
    let last_agents = sample(
        &text,
        "llmchat_database_query_last_success_timestamp_seconds",
        &[("query", "agents")],
    )
    .unwrap();
    // Gone once three intervals (3 s) old, not before.
    let text = e.scrape_when("the stale agents value to go", |t| agents(t).is_none());
    assert!(
        now() - last_agents >= 3.0,
        "gone {} s after its last success",
        now() - last_agents
    );
    assert_eq!(sample(&text, "llmchat_active_sessions", &[]), Some(8.0));
    assert_eq!(sample(&text, "llmchat_database_up", &[]), Some(1.0));
    let failures = errors(&text, "agents", "error").unwrap();
    assert!(failures >= 3.0, "{failures} failures");
    let logged = |needle: &str| {
        e.log()
            .lines()
            .filter(|l| l.contains(needle) && l.contains("query=agents"))
            .count()
    };
    assert_eq!(logged("background query failed;"), 1, "{}", e.log());

    pg.psql("ALTER TABLE agents_gone RENAME TO agents");
    e.scrape_when("agents to come back", |t| agents(t) == Some(2.0));
    wait_until(Duration::from_secs(10), "the recovery to be logged", || {
        logged("background query succeeded again") == 1
    });
}

/// At start each query's plan is read (EXPLAIN): a query that reads a
/// table larger than `seq_scan_warn_rows` sequentially is said once in
/// the log and shown in a gauge with the table's rows.
#[test]
fn a_query_planned_as_a_large_sequential_scan_is_reported_once() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    let messages = pg.psql_f64("SELECT reltuples FROM pg_class WHERE relname = 'messages'");
    assert!(messages > 20.0, "the fixture was analyzed: {messages}");
    let dir = tempfile::tempdir().unwrap();
    let e = exporter(
        &pg,
        &dir,
        "seq_scan_warn_rows = 20\n[database.refresh]\norphaned_messages = { interval = \"1s\", timeout = \"5s\" }\n\
         [[database.custom_queries]]\nname = \"one\"\nhelp = \"One.\"\nsql = \"SELECT 1 AS n\"\nvalue = \"n\"\ninterval = \"1s\"\n",
    );
    let plan = |t: &str, q: &str| {
        sample(
            t,
            "llmchat_database_query_plan_seq_scan_rows",
            &[("query", q)],
        )
    };
    let text = e.scrape_when("the plans", |t| {
        plan(t, "orphaned_messages").is_some() && plan(t, "custom_one").is_some()
    });
    assert_eq!(plan(&text, "orphaned_messages"), Some(messages));
    assert_eq!(plan(&text, "custom_one"), Some(0.0));
    // Several runs later, still said once.
    let runs = |t: &str| {
        sample(
            t,
            "llmchat_database_query_last_success_timestamp_seconds",
            &[("query", "orphaned_messages")],
        )
    };
    let first = runs(&text).unwrap_or(0.0);
    e.scrape_when("two more runs", |t| runs(t) >= Some(first + 2.0));
    let said: Vec<_> = e
        .log()
        .lines()
        .filter(|l| {
            l.contains("reads a large table sequentially") && l.contains("query=orphaned_messages")
        })
        .map(String::from)
        .collect();
    assert_eq!(said.len(), 1, "{}", e.log());
    assert!(said[0].contains("table=messages"), "{}", said[0]);
    assert!(!e.log().contains("query=custom_one"), "{}", e.log());
}
