//! The log-file collector through every case the tailer must survive, with
//! exact counts read from `/metrics`.

use std::path::Path;

use crate::helpers::{append, Exporter};

const LINES: &str = "llmchat_log_lines_total";

fn start(paths: &[&Path]) -> Exporter {
    start_with(paths, &["--logs.rotate-wait", "1s"])
}

fn start_with(paths: &[&Path], extra: &[&str]) -> Exporter {
    let mut args = vec!["--no-collector.host", "--logs.poll-interval", "100ms"];
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
