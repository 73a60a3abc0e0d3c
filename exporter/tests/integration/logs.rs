//! The log-file collector through every case the tailer must survive, with
//! exact counts read from `/metrics`.

use std::path::Path;

use crate::helpers::{append, Exporter};

const LINES: &str = "llmchat_log_lines_total";

fn start(paths: &[&Path]) -> Exporter {
    start_with(paths, &["--logs.rotate-wait", "1s"])
}

fn start_with(paths: &[&Path], extra: &[&str]) -> Exporter {
    let mut args = vec!["--collector.logs", "--logs.poll-interval", "100ms"];
    args.extend_from_slice(extra);
    let owned: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    for p in &owned {
        args.push("--logs.app");
        args.push(p);
    }
    Exporter::start(&args)
}

fn level(e: &Exporter, file: &str, level: &str) -> Option<f64> {
    e.sample(LINES, &[("file", file), ("level", level)])
}

fn expect_level(e: &Exporter, file: &str, lvl: &str, want: f64) {
    e.expect_stable(LINES, &[("file", file), ("level", lvl)], want);
}

#[test]
fn file_missing_at_start_is_read_from_its_beginning_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    let e = start(&[&path]);
    assert_eq!(
        e.sample("llmchat_log_file_exists", &[("file", file)]),
        Some(0.0)
    );
    assert_eq!(level(&e, file, "error"), Some(0.0));
    assert_eq!(
        e.sample(
            "llmchat_log_last_write_timestamp_seconds",
            &[("file", file)]
        ),
        None
    );

    append(
        &path,
        b"{\"level\":\"error\",\"message\":\"db down\"}\n\
          {\"level\":\"info\",\"message\":\"ok\"}\n\
          2026-11-26 WARN slow query\n\
          plain line\n",
    );
    expect_level(&e, file, "error", 1.0);
    expect_level(&e, file, "info", 1.0);
    expect_level(&e, file, "warn", 1.0);
    expect_level(&e, file, "other", 1.0);
    assert_eq!(
        e.sample("llmchat_log_errors_total", &[("file", file)]),
        Some(1.0)
    );
    assert_eq!(
        e.sample("llmchat_log_file_exists", &[("file", file)]),
        Some(1.0)
    );
    let mtime = e
        .sample(
            "llmchat_log_last_write_timestamp_seconds",
            &[("file", file)],
        )
        .expect("last write time once the file exists");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - mtime).abs() < 60.0, "mtime {mtime} vs now {now}");
}

#[test]
fn content_present_at_start_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"ERROR before start\nERROR before start\n");
    let e = start(&[&path]);
    append(&path, b"ERROR after start\n");
    expect_level(&e, file, "error", 1.0);
}

#[test]
fn rename_and_create_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    // Long enough that the old file is still drained after the checks below.
    let e = start_with(&[&path], &["--logs.rotate-wait", "60s"]);
    for _ in 0..5 {
        append(&path, b"ERROR before rotation\n");
    }
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // A writer that has not reopened yet still writes to the old file.
    append(&rotated, b"ERROR late write to the rotated file\n");
    append(&path, b"ERROR in the new file\nINFO in the new file\n");
    expect_level(&e, file, "error", 7.0);
    expect_level(&e, file, "info", 1.0);
    append(&rotated, b"ERROR even later\n");
    append(&path, b"ERROR new again\n");
    expect_level(&e, file, "error", 9.0);
    assert_eq!(
        e.sample(
            "llmchat_log_rotations_total",
            &[("file", file), ("kind", "replaced")]
        ),
        Some(1.0)
    );
}

#[test]
fn copytruncate_rotation_rereads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    let e = start(&[&path]);
    append(&path, b"ERROR one\nERROR two\nERROR three\n");
    expect_level(&e, file, "error", 3.0);
    std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Wait for the truncation to be seen before the file grows back.
    e.expect_stable(
        "llmchat_log_rotations_total",
        &[("file", file), ("kind", "truncated")],
        1.0,
    );
    append(&path, b"ERROR four\nWARN five\n");
    expect_level(&e, file, "error", 4.0);
    expect_level(&e, file, "warn", 1.0);
}

#[test]
fn deleted_and_recreated_file_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    let e = start(&[&path]);
    append(&path, b"ERROR a\n");
    expect_level(&e, file, "error", 1.0);
    std::fs::remove_file(&path).unwrap();
    e.expect_stable("llmchat_log_file_exists", &[("file", file)], 0.0);
    append(&path, b"ERROR b\nERROR c\n");
    expect_level(&e, file, "error", 3.0);
    assert_eq!(
        e.sample("llmchat_log_file_exists", &[("file", file)]),
        Some(1.0)
    );
}

#[test]
fn partial_line_counts_once_its_newline_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    let e = start(&[&path]);
    append(&path, b"{\"level\":\"err");
    e.expect_stable("llmchat_log_read_bytes_total", &[("file", file)], 13.0);
    let total: f64 = ["error", "warn", "info", "debug", "other"]
        .iter()
        .map(|l| level(&e, file, l).unwrap())
        .sum();
    assert_eq!(total, 0.0, "a line without its newline must not count");
    append(&path, b"or\",\"message\":\"x\"}\n");
    expect_level(&e, file, "error", 1.0);
    expect_level(&e, file, "other", 0.0);
}

#[test]
fn lines_over_one_mebibyte_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    let e = start(&[&path]);
    let mut huge = b"ERROR ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    huge.push(b'\n');
    append(&path, &huge);
    append(&path, b"WARN after the huge line\n");
    expect_level(&e, file, "error", 1.0);
    expect_level(&e, file, "warn", 1.0);
    assert_eq!(
        e.sample("llmchat_log_truncated_lines_total", &[("file", file)]),
        Some(1.0)
    );
    assert_eq!(
        e.sample("llmchat_log_read_bytes_total", &[("file", file)]),
        Some((huge.len() + 25) as f64)
    );
}

#[test]
fn invalid_utf8_lines_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let file = path.to_str().unwrap();
    append(&path, b"");
    let e = start(&[&path]);
    append(
        &path,
        b"\xff\xfe ERROR \xc3\x28\n{\"level\":\"warn\",\"m\":\"\xff\"}\n\x80\x81\n",
    );
    expect_level(&e, file, "error", 1.0);
    // The bad byte sits in a field we skip; the level field still reads.
    expect_level(&e, file, "warn", 1.0);
    expect_level(&e, file, "other", 1.0);
}

#[test]
fn two_files_are_counted_separately() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    let err = dir.path().join("error.log");
    append(&app, b"");
    let e = start(&[&app, &err]);
    append(&app, b"INFO a\n");
    append(&err, b"ERROR b\nERROR c\n");
    expect_level(&e, app.to_str().unwrap(), "info", 1.0);
    expect_level(&e, err.to_str().unwrap(), "error", 2.0);
    expect_level(&e, app.to_str().unwrap(), "error", 0.0);
}

/// Whether this process runs as root (the unreadable file needs another
/// user then: root reads anything).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn odd_files_at_log_paths_neither_block_nor_repeat_in_the_log() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let normal = d.join("app.log");
    std::fs::write(&normal, b"").unwrap();
    std::fs::set_permissions(&normal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fifo = d.join("fifo.log");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let directory = d.join("dir.log");
    std::fs::create_dir(&directory).unwrap();
    let looped = d.join("loop-a.log");
    std::os::unix::fs::symlink(d.join("loop-b.log"), &looped).unwrap();
    std::os::unix::fs::symlink(&looped, d.join("loop-b.log")).unwrap();
    let socket = d.join("socket.log");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let unreadable = d.join("unreadable.log");
    std::fs::write(&unreadable, b"ERROR never to be counted\n").unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    let zero = Path::new("/dev/zero");
    let odd: [&Path; 6] = [&fifo, &directory, &looped, &socket, zero, &unreadable];

    // As root, the exporter runs as nobody so that mode 000 means unreadable.
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(crate::helpers::BIN);
        c
    } else {
        Command::new(crate::helpers::BIN)
    };
    cmd.args(["--web.listen-address", "127.0.0.1:0"])
        .args(["--collector.disable-defaults", "--collector.logs"])
        .args(["--logs.poll-interval", "100ms", "--logs.app"])
        .arg(&normal);
    for p in odd {
        cmd.arg("--logs.app").arg(p);
    }
    let started = Instant::now();
    let e = Exporter::spawn(cmd, 0, &[]);
    let first_scrape = e.scrape_text();
    let took = started.elapsed();
    // Opening the FIFO used to block the start for good: a bound far above
    // a start on a loaded machine, far below "never".
    assert!(
        took < Duration::from_secs(10),
        "first scrape after {took:?}"
    );
    assert!(
        first_scrape.contains("llmchat_log_file_readable"),
        "{first_scrape}"
    );

    let file = |p: &Path| p.display().to_string();
    append(&normal, b"ERROR one\nERROR two\nINFO three\n");
    expect_level(&e, &file(&normal), "error", 2.0);
    expect_level(&e, &file(&normal), "info", 1.0);
    assert_eq!(
        e.sample("llmchat_log_file_readable", &[("file", &file(&normal))]),
        Some(1.0)
    );
    for p in odd {
        let f = file(p);
        assert_eq!(
            e.sample("llmchat_log_file_readable", &[("file", &f)]),
            Some(0.0),
            "{f}"
        );
        assert_eq!(
            e.sample(LINES, &[("file", &f), ("level", "error")]),
            Some(0.0),
            "{f}"
        );
    }
    // Only the unreadable one is a regular file.
    assert_eq!(
        e.sample("llmchat_log_file_exists", &[("file", &file(&unreadable))]),
        Some(1.0)
    );
    assert_eq!(
        e.sample("llmchat_log_file_exists", &[("file", &file(&fifo))]),
        Some(0.0)
    );

    // Many polls later (100 ms each), each odd path was still logged once.
    let polls_done = started + Duration::from_secs(2);
    while Instant::now() < polls_done {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = e.log();
    for p in odd {
        let f = format!("path={}", file(p));
        let n = log.lines().filter(|l| l.contains(&f)).count();
        assert_eq!(n, 1, "{f} logged {n} times:\n{log}");
    }
    assert!(log.contains("kind=\"fifo\""), "{log}");
    assert!(log.contains("kind=\"device\""), "{log}");
}
