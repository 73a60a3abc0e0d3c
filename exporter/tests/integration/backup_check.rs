//! Backups read back (the guide's 备份策略 verified, not just found): real
//! pg_dump output (plain and custom format) from a test PostgreSQL and
//! real `tar czf` archives, whole, cut short at several points and with a
//! flipped byte; a dump still being written; the read budget on a large
//! archive. Each through the exporter's binary and its metrics.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use llmchat_tests::services::{Postgres, LLMCHAT_SCHEMA};

use crate::helpers::{run, sample, wait_until, Exporter};

/// Writes `bytes` to `dir/name` dated `age` ago (older than any settle).
fn put(dir: &Path, name: &str, bytes: &[u8], age: Duration) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// A real `tar czf` of a folder holding `size` bytes of noise.
fn archive(size: usize) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let noise: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::create_dir(src.path().join("uploads")).unwrap();
    std::fs::write(src.path().join("uploads/a.bin"), &noise[..size / 2]).unwrap();
    std::fs::write(
        src.path().join("uploads/b.txt"),
        b"hello\n".repeat(size / 12),
    )
    .unwrap();
    std::fs::write(src.path().join("uploads/c.bin"), &noise[size / 2..]).unwrap();
    let out = src.path().join("out.tar.gz");
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(src.path())
        .arg("uploads")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar czf");
    std::fs::read(out).unwrap()
}

fn config(dir: &Path, backups: &Path, budget: u64) -> std::path::PathBuf {
    config_with(dir, backups, budget, &Postgres::pg_restore())
}

fn config_with(dir: &Path, backups: &Path, budget: u64, pg_restore: &Path) -> std::path::PathBuf {
    let path = dir.join("exporter.toml");
    std::fs::write(
        &path,
        format!(
            "[backup]\ndir = \"{}\"\ncheck_interval = \"200ms\"\nsettle = \"1s\"\ncheck_bytes_per_second = {budget}\npg_restore = \"{}\"\n",
            backups.display(),
            pg_restore.display()
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path) -> Exporter {
    // Exporter::start turns every other collector off already.
    Exporter::start(&[
        "--collector.backup",
        "--config.file",
        config.to_str().unwrap(),
    ])
}

fn invalid(text: &str, kind: &str, reason: &str) -> f64 {
    sample(
        text,
        "llmchat_backup_invalid_files_total",
        &[("kind", kind), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[test]
fn real_dumps_and_archives_read_back_and_each_truncation_or_flipped_byte_is_caught() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    pg.psql(
        "INSERT INTO messages (session_id, created_at, content) SELECT g % 7 + 1, now(), repeat('message ' || g, 20) FROM generate_series(1, 2000) g",
    );
    let plain = pg.dump(&["--format=plain"]);
    let custom = pg.dump(&["--format=custom"]);
    assert!(plain.len() > 50_000, "{}", plain.len());
    let tgz = archive(400_000);

    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let day = Duration::from_secs(86_400);
    // Oldest to newest: whole ones, then the broken ones; the newest
    // database dump is a cut one, the newest uploads archive is whole.
    put(&backups, "database_20261101_020000.sql", &plain, day * 9);
    put(&backups, "database_20261102_020000.sql", &custom, day * 8);
    let cuts = |len: usize| [len / 2, len * 9 / 10, len - 40];
    let mut age = day * 7;
    let mut expect_database = 0;
    for (i, cut) in cuts(plain.len()).into_iter().enumerate() {
        put(
            &backups,
            &format!("database_2026110{}_020000.sql", 3 + i),
            &plain[..cut],
            age,
        );
        age -= Duration::from_secs(3600);
        expect_database += 1;
    }
    for (i, cut) in cuts(custom.len()).into_iter().enumerate() {
        put(
            &backups,
            &format!("database_2026111{i}_020000.sql"),
            &custom[..cut],
            age,
        );
        age -= Duration::from_secs(3600);
        expect_database += 1;
    }
    put(
        &backups,
        "uploads_20261101_020000.tar.gz",
        &tgz[..tgz.len() / 3],
        day * 9,
    );
    put(
        &backups,
        "uploads_20261102_020000.tar.gz",
        &tgz[..tgz.len() - 10],
        day * 8,
    );
    let mut flipped = tgz.clone();
    flipped[tgz.len() / 2] ^= 0x10;
    put(
        &backups,
        "uploads_20261103_020000.tar.gz",
        &flipped,
        day * 7,
    );
    put(&backups, "uploads_20261104_020000.tar.gz", &tgz, day * 6);
    put(
        &backups,
        "application_20261104_020000.tar.gz",
        &tgz,
        day * 6,
    );

    let e = start(&config(dir.path(), &backups, 256 << 20));
    let text = e.scrape_when("every file judged", |t| {
        let db: f64 = ["truncated", "corrupt", "unreadable"]
            .iter()
            .map(|r| invalid(t, "database", r))
            .sum();
        db >= expect_database as f64
            && invalid(t, "uploads", "truncated") + invalid(t, "uploads", "corrupt") >= 3.0
            && sample(t, "llmchat_backup_newest_valid", &[("kind", "application")]).is_some()
    });
    // The plain dump's three cuts lose the trailer (or the closing
    // \\unrestrict line); pg_restore reads the custom dump's cuts to where
    // they end ("end of file"): all six truncated.
    assert_eq!(
        invalid(&text, "database", "truncated"),
        expect_database as f64,
        "{text}"
    );
    let database: f64 = ["truncated", "corrupt", "unreadable"]
        .iter()
        .map(|r| invalid(&text, "database", r))
        .sum();
    assert_eq!(database, expect_database as f64, "{text}");
    assert_eq!(invalid(&text, "uploads", "truncated"), 2.0, "{text}");
    assert_eq!(invalid(&text, "uploads", "corrupt"), 1.0, "{text}");
    let valid = |kind: &str| sample(&text, "llmchat_backup_newest_valid", &[("kind", kind)]);
    assert_eq!(valid("database"), Some(0.0), "the newest dump is a cut one");
    assert_eq!(valid("uploads"), Some(1.0));
    assert_eq!(valid("application"), Some(1.0));
    assert_eq!(valid("config"), None, "no config backup, no verdict");
    let checked = sample(
        &text,
        "llmchat_backup_checked_bytes_total",
        &[("kind", "application")],
    );
    assert_eq!(checked, Some(tgz.len() as f64));
    // Retention and space: the oldest file per kind, the folder's size.
    let oldest = sample(
        &text,
        "llmchat_backup_oldest_timestamp_seconds",
        &[("kind", "database")],
    )
    .unwrap();
    let nine_days_ago = (SystemTime::now() - day * 9)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (oldest - nine_days_ago).abs() < 60.0,
        "{oldest} {nine_days_ago}"
    );
    let total: u64 = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(
        sample(&text, "llmchat_backup_dir_size_bytes", &[]),
        Some(total as f64)
    );
    // The filesystem it is on, for the fill forecast.
    let fs_line = text
        .lines()
        .find(|l| l.starts_with("llmchat_backup_filesystem_available_bytes{mountpoint=\"/"))
        .unwrap_or_else(|| panic!("no filesystem of the backup folder: {text}"));
    let free: f64 = fs_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(free > 0.0, "{fs_line}");

    // Judged once: more passes log no file twice, count nothing again.
    std::thread::sleep(Duration::from_millis(800));
    let again = e.scrape_text();
    assert_eq!(invalid(&again, "uploads", "corrupt"), 1.0);
    let log = e.log();
    assert_eq!(
        log.matches("uploads_20261103_020000.tar.gz").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("reason=\"corrupt\"") || log.contains("reason=corrupt"),
        "{log}"
    );
}

/// The exporter's image has no pg_restore: custom dumps are then read by
/// the exporter itself, and each cut is still caught, also one that ends
/// exactly between two data blocks (found by walking the blocks).
#[test]
fn without_pg_restore_a_custom_dump_is_read_to_its_end_and_every_cut_caught() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    pg.psql(
        "INSERT INTO messages (session_id, created_at, content) SELECT g % 7 + 1, now(), repeat('message ' || g, 20) FROM generate_series(1, 2000) g; SELECT lo_from_bytea(0, 'a large object'::bytea)",
    );
    let custom = pg.dump(&["--format=custom"]);
    let uncompressed = pg.dump(&["--format=custom", "--compress=0"]);
    // The large objects' block comes last: its dump id, from pg_restore's
    // listing, finds where it starts (type 3, then the id as pg_dump
    // writes integers: a sign byte and four bytes, least significant
    // first). A cut there ends exactly between two blocks.
    let listing = Command::new(Postgres::pg_restore())
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&custom)?;
            child.wait_with_output()
        })
        .expect("pg_restore --list");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let blobs_id: u32 = listing
        .lines()
        .find(|l| l.contains(" BLOBS - BLOBS"))
        .and_then(|l| l.split(';').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no BLOBS entry: {listing}"));
    let mut marker = vec![3u8, 0];
    marker.extend_from_slice(&blobs_id.to_le_bytes());
    let blobs = custom
        .windows(marker.len())
        .rposition(|w| w == marker)
        .expect("the large objects block");
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let day = Duration::from_secs(86_400);
    put(&backups, "database_20261101_020000.sql", &custom, day * 9);
    put(
        &backups,
        "database_20261102_020000.sql",
        &uncompressed,
        day * 8,
    );
    let mut age = day * 7;
    let cuts = [8, 40, 400, custom.len() / 2, blobs, custom.len() - 1];
    for (i, cut) in cuts.iter().enumerate() {
        put(
            &backups,
            &format!("database_2026111{i}_020000.sql"),
            &custom[..*cut],
            age,
        );
        age -= Duration::from_secs(3600);
    }
    let e = start(&config_with(
        dir.path(),
        &backups,
        256 << 20,
        Path::new("/nonexistent/pg_restore"),
    ));
    let text = e.scrape_when("every dump judged", |t| {
        invalid(t, "database", "truncated") + invalid(t, "database", "corrupt") >= cuts.len() as f64
    });
    assert_eq!(
        invalid(&text, "database", "truncated"),
        cuts.len() as f64,
        "{text}"
    );
    assert_eq!(invalid(&text, "database", "corrupt"), 0.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "llmchat_backup_checked_bytes_total",
            &[("kind", "database")]
        ),
        Some((custom.len() + uncompressed.len() + cuts.iter().sum::<usize>()) as f64),
        "every byte of every dump read"
    );
    // The two whole dumps passed: the newest valid one is the newest
    // whole one only once the cut ones are gone.
    for i in 0..cuts.len() {
        std::fs::remove_file(backups.join(format!("database_2026111{i}_020000.sql"))).unwrap();
    }
    e.scrape_when("the newest dump is the whole one", |t| {
        sample(t, "llmchat_backup_newest_valid", &[("kind", "database")]) == Some(1.0)
    });
    assert!(
        e.log().contains("pg_restore not found"),
        "the fallback is said once at start: {}",
        e.log()
    );
}

#[test]
fn a_dump_still_being_written_is_not_judged_until_it_is_complete() {
    let pg = Postgres::start();
    pg.psql(LLMCHAT_SCHEMA);
    pg.psql(
        "INSERT INTO messages (session_id, created_at, content) SELECT g % 7 + 1, now(), repeat('message ' || g, 20) FROM generate_series(1, 2000) g",
    );
    let plain = pg.dump(&["--format=plain"]);
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    put(
        &backups,
        "database_20261101_020000.sql",
        &plain,
        Duration::from_secs(86_400),
    );
    let e = start(&config(dir.path(), &backups, 256 << 20));
    e.scrape_when("the old dump judged", |t| {
        sample(t, "llmchat_backup_newest_valid", &[("kind", "database")]) == Some(1.0)
    });
    // pg_dump writing for three seconds, a piece every 300 ms: never
    // judged meanwhile, so never invalid, and the old verdict stands.
    let path = backups.join("database_20261102_020000.sql");
    let pieces = plain.chunks(plain.len() / 10 + 1).collect::<Vec<_>>();
    for piece in &pieces {
        crate::helpers::append(&path, piece);
        std::thread::sleep(Duration::from_millis(300));
        let t = e.scrape_text();
        assert_eq!(
            invalid(&t, "database", "truncated"),
            0.0,
            "judged while written"
        );
        assert_eq!(
            sample(&t, "llmchat_backup_newest_valid", &[("kind", "database")]),
            Some(1.0)
        );
    }
    let done = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Complete, and settled: judged, valid, and after it was finished.
    let t = e.scrape_when("the new dump judged", |t| {
        sample(
            t,
            "llmchat_backup_newest_check_timestamp_seconds",
            &[("kind", "database")],
        )
        .is_some_and(|at| at > done)
    });
    assert_eq!(
        sample(&t, "llmchat_backup_newest_valid", &[("kind", "database")]),
        Some(1.0)
    );
    assert_eq!(invalid(&t, "database", "truncated"), 0.0);
}

#[test]
fn the_read_budget_holds_while_a_large_archive_is_checked() {
    let tgz = archive(24 << 20);
    let budget: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let e = start(&config(dir.path(), &backups, budget));
    let started = Instant::now();
    put(
        &backups,
        "uploads_20261101_020000.tar.gz",
        &tgz,
        Duration::from_secs(3600),
    );
    let checked = |t: &str| {
        sample(
            t,
            "llmchat_backup_checked_bytes_total",
            &[("kind", "uploads")],
        )
        .unwrap_or(0.0)
    };
    // Mid-way, the bytes read so far are within the budget's pace.
    wait_until(Duration::from_secs(30), "the check under way", || {
        checked(&e.scrape_text()) > 0.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mid = checked(&e.scrape_text());
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        mid <= budget as f64 * elapsed * 1.1,
        "{mid} bytes in {elapsed:.1} s, over {budget} a second"
    );
    e.scrape_when("the archive read back", |t| {
        sample(t, "llmchat_backup_newest_valid", &[("kind", "uploads")]) == Some(1.0)
    });
    let took = started.elapsed().as_secs_f64();
    let floor = tgz.len() as f64 / budget as f64;
    assert!(
        took >= floor * 0.95,
        "{} bytes read in {took:.2} s: over the budget",
        tgz.len()
    );
}

#[test]
fn a_budget_too_small_or_an_interval_of_zero_exits_64_naming_the_key() {
    for (flag, value, key) in [
        (
            "--backup.check-bytes-per-second",
            "10",
            "backup.check_bytes_per_second",
        ),
        ("--backup.check-interval", "0s", "backup.check_interval"),
    ] {
        let out = run(&[flag, value, "--config.check"], &[]);
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{err}");
    }
}
