//! The store's faults, injected for real: a full disk under SQLite (a
//! tmpfs this test mounts), PostgreSQL stopped with `-m immediate` and
//! switched to read-only, and a soak that SIGKILLs the receiver and
//! PostgreSQL while alerts stream in. A 200 must mean stored: every alert
//! acknowledged is delivered, exactly once where no receiver was killed,
//! and the receiver recovers without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, wait_until, Receiver, Target, TOKEN};

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
/// Needs root (CI runs as root); a failed mount fails the test.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount (util-linux)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs for the disk-full test (it needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A receiver config with only the webhook channel, fast retries and a
/// body limit that takes 20-alert posts.
fn config(dir: &Path, store: &str, hook: &Target) -> PathBuf {
    let text = format!(
        "[web]\nbearer_token = \"{TOKEN}\"\nbody_limit_bytes = 4194304\n\n[store]\nurl = \"{store}\"\n\n\
         [delivery]\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\npoll_interval = \"100ms\"\ntimeout = \"2s\"\n\n\
         [channels.webhook]\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    let path = dir.join("receiver.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A post of one alert per name, each with an annotation of `pad` bytes.
fn payload(names: &[String], pad: usize) -> String {
    let alerts: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": n, "severity": "warning", "instance": "host-a:9842"},
                "annotations": {"summary": "x".repeat(pad)},
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": format!("fp-{n}"),
            })
        })
        .collect();
    serde_json::json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "llmchat", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts,
    })
    .to_string()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|j| format!("{prefix}-{j}")).collect()
}

/// POSTs a payload; the status, or None when the receiver could not be
/// reached (killed, restarting).
fn post(base: &str, body: &str) -> Option<u16> {
    reqwest::blocking::Client::new()
        .post(format!("{base}/webhook"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// How many times the target received each alert.
fn deliveries(hook: &Target) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in hook.requests() {
        let name = r.json()["alertname"].as_str().unwrap().to_string();
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

/// Waits until every acknowledged alert has reached the target; then
/// checks that nothing else was delivered but posts `in_doubt` (no answer,
/// or a 5xx while a kill was under way: stored, but the 200 was lost with
/// the process or the connection). Returns the deliveries.
fn expect_all_delivered(
    hook: &Target,
    acked: &BTreeSet<String>,
    in_doubt: &BTreeSet<String>,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = deliveries(hook);
        let missing: Vec<&String> = acked.iter().filter(|n| !seen.contains_key(*n)).collect();
        if missing.is_empty() {
            let refused: Vec<&String> = seen
                .keys()
                .filter(|n| !acked.contains(*n) && !in_doubt.contains(*n))
                .collect();
            assert!(
                refused.is_empty(),
                "delivered but refused with an answer: {refused:?}"
            );
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged alerts never delivered, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn expect_exactly_once(seen: &BTreeMap<String, usize>) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// Rows in a SQLite outbox, read with Python's sqlite3 (no receiver).
fn sqlite_rows(db: &Path) -> usize {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from notifications').fetchone()[0])")
        .arg(db)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_full_disk_refuses_posts_then_recovers_without_a_restart_losing_nothing() {
    let disk = Tmpfs::mount("8M");
    // Leave about 2.5 MB: a few dozen posts fill it.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 5_500_000]).unwrap();
    let hook = Target::start(vec![]);
    let work = tempfile::tempdir().unwrap();
    let db = disk.path().join("outbox.db");
    let cfg = config(work.path(), &format!("sqlite://{}", db.display()), &hook);
    let r = Receiver::start(&cfg);

    let mut acked = BTreeSet::new();
    let mut refused = None;
    for i in 0..500 {
        let batch = names(&format!("full-{i}"), 20);
        match post(&r.base, &payload(&batch, 1500)) {
            Some(200) => acked.extend(batch),
            Some(503) => {
                refused = Some(batch);
                break;
            }
            other => panic!("post {i}: {other:?}\n{}", r.log()),
        }
    }
    let refused = refused.expect("the disk never filled");
    assert!(!acked.is_empty(), "the first post already failed");
    // While full: /health and the gauge say so, and the error is counted.
    let (status, body) = r.get("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(r.metric("llmchat_receiver_store_writable"), Some(0.0));
    assert!(
        r.metric("llmchat_receiver_store_errors_total{kind=\"full\"}")
            .unwrap()
            >= 1.0
    );

    std::fs::remove_file(&filler).unwrap();
    // Alertmanager retries the refused post: it now gets in, as do new ones.
    let body = payload(&refused, 1500);
    wait_until(Duration::from_secs(30), "the refused post accepted", || {
        post(&r.base, &body) == Some(200)
    });
    acked.extend(refused);
    let fresh = names("after", 20);
    assert_eq!(post(&r.base, &payload(&fresh, 1500)), Some(200));
    acked.extend(fresh);
    wait_until(Duration::from_secs(10), "/health 200", || {
        r.get("/health").0 == 200
    });
    assert_eq!(r.metric("llmchat_receiver_store_writable"), Some(1.0));

    let seen = expect_all_delivered(&hook, &acked, &BTreeSet::new());
    expect_exactly_once(&seen);
    // The wedge showed as SQLITE_BUSY on every statement after the fault.
    assert_eq!(
        r.metric("llmchat_receiver_store_errors_total{kind=\"locked\"}"),
        Some(0.0),
        "{}",
        r.log()
    );
    // One line when the store stopped taking writes, one when it resumed.
    let log = r.log();
    assert_eq!(
        log.matches("the store cannot take writes").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("the store takes writes again").count(),
        1,
        "{log}"
    );
    r.kill();
    // Every acknowledged row is in the file, read without the receiver.
    assert_eq!(sqlite_rows(&db), acked.len());
}

#[test]
fn a_postgres_store_stopped_or_read_only_is_survived_without_a_restart() {
    let mut pg = llmchat_tests::services::Postgres::start();
    let hook = Target::start(vec![]);
    let work = tempfile::tempdir().unwrap();
    let r = Receiver::start(&config(work.path(), &pg.url(), &hook));
    let mut acked = BTreeSet::new();
    let accept = |prefix: &str, r: &Receiver| {
        let batch = names(prefix, 5);
        let body = payload(&batch, 100);
        wait_until(
            Duration::from_secs(30),
            &format!("{prefix} accepted"),
            || post(&r.base, &body) == Some(200),
        );
        batch
    };
    acked.extend(accept("before", &r));
    // Delivered first: a stop while a send's outcome is being recorded
    // leaves that row to be sent again (at least once), which is not
    // what this test is about.
    expect_all_delivered(&hook, &acked, &BTreeSet::new());

    // Stopped at once: posts and /health get 503, nothing is acknowledged.
    pg.stop_immediate();
    let down = payload(&names("down", 5), 100);
    assert_eq!(post(&r.base, &down), Some(503));
    wait_until(Duration::from_secs(10), "/health 503", || {
        r.get("/health").0 == 503
    });
    pg.restart();
    acked.extend(accept("down", &r));
    wait_until(Duration::from_secs(10), "/health 200", || {
        r.get("/health").0 == 200
    });

    // A failover to a read-only server: refused, counted as readonly.
    pg.psql_writable("ALTER SYSTEM SET default_transaction_read_only = on");
    pg.psql_writable("SELECT pg_reload_conf()");
    let readonly = payload(&names("readonly", 5), 100);
    wait_until(Duration::from_secs(10), "a read-only refusal", || {
        post(&r.base, &readonly) == Some(503)
    });
    assert_eq!(r.get("/health").0, 503);
    assert!(
        r.metric("llmchat_receiver_store_errors_total{kind=\"readonly\"}")
            .unwrap()
            >= 1.0
    );
    pg.psql_writable("ALTER SYSTEM RESET default_transaction_read_only");
    pg.psql_writable("SELECT pg_reload_conf()");
    acked.extend(accept("readonly", &r));
    wait_until(Duration::from_secs(10), "/health 200", || {
        r.get("/health").0 == 200
    });

    let seen = expect_all_delivered(&hook, &acked, &BTreeSet::new());
    expect_exactly_once(&seen);
}

/// How long the soak injects faults; `LLMCHAT_SOAK_SECONDS` runs it longer.
fn soak_duration() -> Duration {
    let secs = std::env::var("LLMCHAT_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[test]
fn a_soak_of_kills_loses_no_acknowledged_alert() {
    let mut pg = llmchat_tests::services::Postgres::start();
    let hook = Target::start(vec![]);
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &pg.url(), &hook);
    let port = free_port();
    let mut receiver = Some(Receiver::start_on(&cfg, port));
    let base = receiver.as_ref().unwrap().base.clone();

    // A steady stream of distinct alerts, about 50 a second.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    // Posts that got no answer or a 5xx: a kill may have struck between
    // the COMMIT and the answer, so each may or may not be stored.
    let in_doubt = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (acked, in_doubt, stop, base) =
            (acked.clone(), in_doubt.clone(), stop.clone(), base.clone());
        std::thread::spawn(move || {
            let mut posted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("soak-{posted}");
                posted += 1;
                match post(&base, &payload(std::slice::from_ref(&name), 200)) {
                    Some(200) => {
                        acked.lock().unwrap().insert(name);
                    }
                    None | Some(500..=599) => {
                        in_doubt.lock().unwrap().insert(name);
                    }
                    Some(_) => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            posted
        })
    };
    let end = Instant::now() + soak_duration();
    let (mut receiver_kills, mut store_kills) = (0, 0);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(fastrand::u64(1500..4000)));
        if fastrand::bool() {
            // kill -9 at a random moment of whatever it was doing.
            receiver.take().unwrap().kill();
            receiver_kills += 1;
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..500)));
            receiver = Some(Receiver::start_on(&cfg, port));
        } else {
            pg.kill();
            store_kills += 1;
            std::thread::sleep(Duration::from_millis(fastrand::u64(200..1500)));
            pg.restart();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let posted = poster.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 > posted / 3,
        "too few posts accepted to prove anything: {} of {posted}",
        acked.len()
    );
    let in_doubt = in_doubt.lock().unwrap().clone();
    let seen = expect_all_delivered(&hook, &acked, &in_doubt);
    // Posts are sequential, so a kill leaves at most the one post in flight
    // stored without its 200.
    let stored_unacked = seen.keys().filter(|n| in_doubt.contains(*n)).count();
    assert!(
        stored_unacked <= receiver_kills + store_kills,
        "{stored_unacked} unacknowledged posts stored for {} kills",
        receiver_kills + store_kills
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // At-least-once around a kill: a send whose `sent` mark died with the
    // process is sent again. Reported, not failed.
    eprintln!(
        "soak: {posted} posted, {} acknowledged, all delivered; {duplicates} duplicates; \
         {receiver_kills} receiver kills, {store_kills} PostgreSQL kills",
        acked.len()
    );
    // A send whose `sent` mark was lost (receiver or store killed) is the
    // only source: one in-flight send per kill.
    assert!(
        duplicates <= receiver_kills + store_kills,
        "{duplicates} duplicates for {} kills",
        receiver_kills + store_kills
    );
    drop(receiver);
}

#[test]
fn a_recovery_run_whose_audit_row_cannot_be_written_does_not_run() {
    let pg = llmchat_tests::services::Postgres::start();
    let hook = Target::start(vec![]);
    let work = tempfile::tempdir().unwrap();
    let (cfg, ran) = restart_on_a_postgres_store(work.path(), &pg, &hook, "0s");
    let r = Receiver::start(&cfg);
    // A real database error on every audit insert, and nothing else.
    pg.psql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON recovery_audit FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    assert_eq!(post(&r.base, &fault_alert("first")), Some(200));
    let skipped = "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"skipped_unavailable\"}";
    wait_until(Duration::from_secs(15), "the decision", || {
        r.metric(skipped) == Some(1.0)
    });
    assert!(!ran.exists(), "the action ran without its audit row");
    // The run lock it took is released, not left to block the next run.
    assert_eq!(pg.psql("SELECT count(*) FROM recovery_lock"), "0");

    pg.psql("DROP TRIGGER refuse ON recovery_audit");
    assert_eq!(post(&r.base, &fault_alert("second")), Some(200));
    let succeeded =
        "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"succeeded\"}";
    wait_until(Duration::from_secs(15), "the second run", || {
        r.metric(succeeded) == Some(1.0)
    });
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "x\n");
}

/// With no Redis, replicas share cooldowns and run locks through the
/// store. When the store cannot take the lock, or then the cooldown, the
/// action does not run (a replica cannot know another is not running it;
/// the 10-minute cooldown makes it use the cooldown table),
/// while the outbox on the same database still takes alerts; once the
/// tables take writes again, the next alert runs it.
#[test]
fn a_store_that_cannot_take_the_run_lock_or_cooldown_runs_nothing() {
    let pg = llmchat_tests::services::Postgres::start();
    let hook = Target::start(vec![]);
    let work = tempfile::tempdir().unwrap();
    let (cfg, ran) = restart_on_a_postgres_store(work.path(), &pg, &hook, "10m");
    let r = Receiver::start(&cfg);
    let skipped = "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"skipped_unavailable\"}";
    pg.psql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'coordination refused'; END $$;",
    );
    for (n, table) in [(1.0, "recovery_lock"), (2.0, "recovery_cooldown")] {
        pg.psql(&format!(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()"
        ));
        assert_eq!(post(&r.base, &fault_alert(table)), Some(200));
        wait_until(Duration::from_secs(15), "the decision", || {
            r.metric(skipped) == Some(n)
        });
        pg.psql(&format!("DROP TRIGGER refuse ON {table}"));
    }
    assert!(!ran.exists(), "the action ran without the shared state");
    let results = pg.psql("SELECT string_agg(result, ',' ORDER BY id) FROM recovery_audit");
    assert_eq!(results, "skipped_unavailable,skipped_unavailable");
    // The lock taken before the refused cooldown is not left held.
    assert_eq!(pg.psql("SELECT count(*) FROM recovery_lock"), "0");

    assert_eq!(post(&r.base, &fault_alert("again")), Some(200));
    let succeeded =
        "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"succeeded\"}";
    wait_until(
        Duration::from_secs(15),
        "the run once the store takes writes",
        || r.metric(succeeded) == Some(1.0),
    );
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "x\n");
}

/// A receiver config on `pg` whose `restart` action (with `cooldown`)
/// appends a line to the returned file each time it runs.
fn restart_on_a_postgres_store(
    work: &Path,
    pg: &llmchat_tests::services::Postgres,
    hook: &Target,
    cooldown: &str,
) -> (PathBuf, PathBuf) {
    let ran = work.join("ran");
    let cfg = config(work, &pg.url(), hook);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[recovery.actions.restart]\ncooldown = \"{cooldown}\"\n[recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo x >> {}\"]\ntimeout = \"10s\"\n",
        ran.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    (cfg, ran)
}

/// One alert named after `fingerprint` carrying the high_error_rate fault.
fn fault_alert(fingerprint: &str) -> String {
    let mut body: serde_json::Value =
        serde_json::from_str(&payload(&names(fingerprint, 1), 10)).unwrap();
    body["alerts"][0]["labels"]["fault"] = "high_error_rate".into();
    body.to_string()
}
