//! The restore drill against a real PostgreSQL: a good dump restores into
//! the scratch database, its counts match the live ones and the scratch
//! database is emptied again; a cut dump fails the drill; a scratch
//! database holding a table no drill made is refused and left untouched;
//! a scratch URL naming the live database exits 64 at start.

use std::path::Path;

use llmchat_tests::services::{Postgres, LLMCHAT_SCHEMA};

use crate::helpers::{run, sample, Exporter};

fn config(dir: &Path, backups: &Path, live: &str, scratch: &str) -> std::path::PathBuf {
    let path = dir.join("exporter.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{live}\"\n\
             [backup]\ndir = \"{}\"\ncheck = false\nsettle = \"30s\"\n\
             [backup.drill]\nenabled = true\nscratch_url = \"{scratch}\"\ninterval = \"1h\"\nrun_at_start = true\n\
             statement_timeout = \"60s\"\ntimeout = \"120s\"\npsql = \"{}\"\npg_restore = \"{}\"\n",
            backups.display(),
            Postgres::psql_program().display(),
            Postgres::pg_restore().display()
        ),
    )
    .unwrap();
    path
}

/// One drill run by a fresh exporter: its metrics once it has a result.
fn drill(dir: &Path, backups: &Path, pg: &Postgres, scratch_db: &str) -> (String, String) {
    let scratch = format!("postgres://postgres@127.0.0.1:{}/{scratch_db}", pg.port);
    let cfg = config(dir, backups, &pg.url(), &scratch);
    let e = Exporter::start(&["--collector.backup", "--config.file", cfg.to_str().unwrap()]);
    let text = e.scrape_when("a drill result", |t| {
        sample(t, "llmchat_backup_drill_success", &[]).is_some()
    });
    (text, e.log())
}

/// A dump written `hours` ago (older than the settle time).
fn put(backups: &Path, name: &str, bytes: &[u8], hours: u64) {
    let path = backups.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3600))
        .unwrap();
}

fn runs(text: &str, result: &str) -> f64 {
    sample(
        text,
        "llmchat_backup_drill_runs_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_good_dump_restores_and_matches_a_cut_one_fails_and_a_foreign_scratch_is_refused() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    pg.psql(
        "INSERT INTO messages (session_id, created_at, content) SELECT g % 7 + 1, now(), repeat('message ' || g, 20) FROM generate_series(1, 3000) g",
    );
    pg.psql("ANALYZE");
    let live_messages = pg.psql_f64("SELECT count(*) FROM messages");
    let live_agents = pg.psql_f64("SELECT count(*) FROM agents");
    let plain = pg.dump(&["--format=plain"]);
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    for db in [
        "drill_ok",
        "drill_cut",
        "drill_foreign",
        "drill_custom",
        "drill_writing",
    ] {
        pg.psql_db("postgres", &format!("CREATE DATABASE {db}"));
    }

    // A good plain dump: restored, counted, matched, cleaned up.
    put(&backups, "database_20261201_020000.sql", &plain, 4);
    let (text, log) = drill(dir.path(), &backups, &pg, "drill_ok");
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(1.0),
        "{log}"
    );
    assert_eq!(
        sample(&text, "llmchat_backup_drill_rows", &[("table", "messages")]),
        Some(live_messages)
    );
    assert_eq!(
        sample(&text, "llmchat_backup_drill_rows", &[("table", "agents")]),
        Some(live_agents)
    );
    assert!(sample(
        &text,
        "llmchat_backup_drill_last_success_timestamp_seconds",
        &[]
    )
    .is_some());
    assert_eq!(runs(&text, "succeeded"), 1.0);
    let left = pg.psql_db(
        "drill_ok",
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'",
    );
    assert_eq!(left.trim(), "0", "the scratch database was not emptied");

    // The same from a custom-format dump, through pg_restore.
    put(
        &backups,
        "database_20261202_020000.sql",
        &pg.dump(&["--format=custom"]),
        3,
    );
    let (text, log) = drill(dir.path(), &backups, &pg, "drill_custom");
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(1.0),
        "{log}"
    );
    assert_eq!(
        sample(&text, "llmchat_backup_drill_rows", &[("table", "messages")]),
        Some(live_messages)
    );

    // The newest dump cut short: the drill fails, and says why.
    put(
        &backups,
        "database_20261203_020000.sql",
        &plain[..plain.len() / 2],
        2,
    );
    let (text, log) = drill(dir.path(), &backups, &pg, "drill_cut");
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(0.0),
        "{log}"
    );
    assert_eq!(runs(&text, "failed"), 1.0);
    assert!(log.contains("restore drill failed"), "{log}");

    // pg_dump still writing tonight's dump (modified just now): the drill
    // restores the newest complete one, and succeeds.
    std::fs::remove_file(backups.join("database_20261203_020000.sql")).unwrap();
    std::fs::write(
        backups.join("database_20261204_020000.sql"),
        &plain[..plain.len() / 3],
    )
    .unwrap();
    let (text, log) = drill(dir.path(), &backups, &pg, "drill_writing");
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(1.0),
        "{log}"
    );

    // A scratch database with a table no drill made: refused, untouched.
    pg.psql_db(
        "drill_foreign",
        "CREATE TABLE customer_data (id int); INSERT INTO customer_data VALUES (1)",
    );
    let (text, log) = drill(dir.path(), &backups, &pg, "drill_foreign");
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(0.0),
        "{log}"
    );
    assert_eq!(runs(&text, "refused"), 1.0);
    assert_eq!(
        pg.psql_db("drill_foreign", "SELECT count(*) FROM customer_data")
            .trim(),
        "1"
    );
}

#[test]
fn a_scratch_url_naming_the_live_database_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let live = "postgres://postgres:s3cret@localhost:5432/llmchat";
    for scratch in [
        "postgres://postgres:s3cret@127.0.0.1:5432/llmchat",
        "postgres://other@localhost/llmchat",
    ] {
        let cfg = config(dir.path(), dir.path(), live, scratch);
        let out = run(
            &["--config.file", cfg.to_str().unwrap(), "--config.check"],
            &[],
        );
        assert_eq!(out.status.code(), Some(64), "{scratch}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("backup.drill.scratch_url"), "{err}");
        assert!(err.contains("live database"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn by_default_the_first_drill_waits_an_interval_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        dir.path(),
        "postgres://postgres@127.0.0.1:1/llmchat",
        "postgres://postgres@127.0.0.1:1/llmchat_drill",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("run_at_start = true\n", "");
    std::fs::write(&cfg, text).unwrap();
    let e = Exporter::start(&["--collector.backup", "--config.file", cfg.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let text = e.scrape_text();
    // Enabled, so its counters are there, all at 0; no run yet.
    assert_eq!(runs(&text, "failed"), 0.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "llmchat_backup_drill_runs_total",
            &[("result", "succeeded")]
        ),
        Some(0.0)
    );
    assert_eq!(sample(&text, "llmchat_backup_drill_success", &[]), None);
}

/// The restore runs at a lower CPU and I/O priority: a stand-in `psql`
/// records its own niceness and I/O class, then runs the real one.
#[test]
fn the_restore_runs_at_a_lower_cpu_and_io_priority() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    pg.psql_db("postgres", "CREATE DATABASE drill_priority");
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    put(
        &backups,
        "database_20261201_020000.sql",
        &pg.dump(&["--format=plain"]),
        4,
    );
    let seen = dir.path().join("priority");
    let wrapper = dir.path().join("psql");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{{ nice; ionice -p $$; }} > '{}'\nexec '{}' \"$@\"\n",
            seen.display(),
            Postgres::psql_program().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = format!("postgres://postgres@127.0.0.1:{}/drill_priority", pg.port);
    let cfg = config(dir.path(), &backups, &pg.url(), &scratch);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("psql = \"{}\"", Postgres::psql_program().display()),
        &format!("psql = \"{}\"", wrapper.display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let e = Exporter::start(&["--collector.backup", "--config.file", cfg.to_str().unwrap()]);
    let text = e.scrape_when("a drill result", |t| {
        sample(t, "llmchat_backup_drill_success", &[]).is_some()
    });
    assert_eq!(
        sample(&text, "llmchat_backup_drill_success", &[]),
        Some(1.0),
        "{}",
        e.log()
    );
    let seen = std::fs::read_to_string(&seen).expect("the stand-in psql ran");
    let mut lines = seen.lines();
    let own: i32 = String::from_utf8(std::process::Command::new("nice").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        lines.next().and_then(|l| l.trim().parse::<i32>().ok()),
        Some((own + 10).min(19)),
        "{seen}"
    );
    assert_eq!(lines.next(), Some("best-effort: prio 7"), "{seen}");
}
