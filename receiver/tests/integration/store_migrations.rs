//! A store written before versioned migrations opens under them and keeps
//! its rows: fixtures made with the schema `Store::open` created by hand
//! (main at e74cc3b, plus the first release's `receiver_heartbeat`), on
//! SQLite and on a real PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

/// A fixture with its rows stamped a minute ago.
fn fixture(text: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 60_000;
    text.replace("__NOW_MS__", &now.to_string())
}

/// Runs `script` against a SQLite file with Python's sqlite3 (no receiver,
/// no sqlx: the fixture is written the way any other tool would).
fn sqlite(db: &Path, script: &str, query: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             c.executescript(sys.argv[2]); c.commit()\n\
             if sys.argv[3]: print('|'.join(str(r[0]) for r in c.execute(sys.argv[3])))",
        )
        .arg(db)
        .arg(script)
        .arg(query)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn config(dir: &Path, store: &str, hook: &Target) -> std::path::PathBuf {
    let text = format!(
        "[web]\nbearer_token = \"{TOKEN}\"\n\n[store]\nurl = \"{store}\"\n\n\
         [delivery]\npoll_interval = \"100ms\"\n\n\
         [channels.webhook]\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    let path = dir.join("receiver.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The pending notification goes out, the sent one does not go out again,
/// and the audit record is still listed.
fn expect_rows_kept(r: &Receiver, hook: &Target) {
    wait_until(
        Duration::from_secs(15),
        "the fixture's pending notification",
        || !hook.requests().is_empty(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let sent: Vec<String> = hook
        .requests()
        .iter()
        .map(|q| q.json()["alertname"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(sent, ["FixturePending"], "{}", r.log());
    let actions: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/actions", r.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let audit = actions["audit"].as_array().unwrap();
    assert!(
        audit.iter().any(|a| a["action"] == "restart"
            && a["result"] == "succeeded"
            && a["output"] == "restarted"),
        "{actions}"
    );
}

#[test]
fn a_sqlite_store_from_before_migrations_opens_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    sqlite(
        &db,
        &fixture(include_str!("../fixtures/store-0.1-sqlite.sql")),
        "",
    );
    let hook = Target::start(vec![]);
    let r = Receiver::start(&config(
        dir.path(),
        &format!("sqlite://{}", db.display()),
        &hook,
    ));
    expect_rows_kept(&r, &hook);
    drop(r);
    assert_eq!(
        sqlite(
            &db,
            "",
            "SELECT version FROM _sqlx_migrations ORDER BY version"
        ),
        "1|2|3|4"
    );
    assert_eq!(
        sqlite(
            &db,
            "",
            "SELECT count(*) FROM sqlite_master WHERE name = 'receiver_heartbeat'"
        ),
        "0"
    );
    // Opening again applies nothing twice and changes nothing.
    let hook = Target::start(vec![]);
    let r = Receiver::start(&config(
        dir.path(),
        &format!("sqlite://{}", db.display()),
        &hook,
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert!(hook.requests().is_empty(), "{}", r.log());
    assert_eq!(
        sqlite(&db, "", "SELECT count(*) FROM _sqlx_migrations"),
        "4"
    );
}

#[test]
fn a_postgres_store_from_before_migrations_opens_and_keeps_its_rows() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql(&fixture(include_str!("../fixtures/store-0.1-postgres.sql")));
    let dir = tempfile::tempdir().unwrap();
    let hook = Target::start(vec![]);
    let r = Receiver::start(&config(dir.path(), &pg.url(), &hook));
    expect_rows_kept(&r, &hook);
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, '|' ORDER BY version) FROM _sqlx_migrations"),
        "1|2|3|4"
    );
    assert_eq!(
        pg.psql("SELECT to_regclass('receiver_heartbeat') IS NULL"),
        "t"
    );
}
