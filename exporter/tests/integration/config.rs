//! Configuration as a user meets it: the example file, bad files, bad
//! flags, and the file < env < flag precedence.

use crate::helpers::{repo_root, run, Exporter};

#[test]
fn config_check_accepts_the_shipped_example() {
    let example = repo_root().join("config/exporter.example.toml");
    let out = run(
        &["--config.file", example.to_str().unwrap(), "--config.check"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn bad_config_file_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[logs]\npoll_interval = \"often\"\n").unwrap();
    let out = run(
        &["--config.file", path.to_str().unwrap(), "--config.check"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logs.poll_interval") && err.contains("often"),
        "{err}"
    );

    std::fs::write(&path, "[web]\nlisten_adress = \":1\"\n").unwrap();
    let out = run(&["--config.file", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_adress"));

    std::fs::write(&path, "[web]\nlisten_address = \"no-port-here\"\n").unwrap();
    let out = run(&["--config.file", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.listen-address") && err.contains("no-port-here"),
        "{err}"
    );
}

#[test]
fn bad_flag_or_env_value_exits_64() {
    let out = run(&["--logs.poll-interval", "soon", "--config.check"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
    let out = run(
        &["--config.check"],
        &[("LLMCHAT_EXPORTER_WEB_TELEMETRY_PATH", "no-slash")],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.telemetry-path") && err.contains("no-slash"),
        "{err}"
    );
    let out = run(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn flags_override_env_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[web]\ntelemetry_path = \"/from-file\"\n[collectors]\nhost = false\nlogs = false\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();

    let e = Exporter::start(&["--config.file", file]);
    assert_eq!(e.get("/from-file").status(), 200);
    assert!(!e
        .get("/from-file")
        .text()
        .unwrap()
        .contains("llmchat_host_"));
    drop(e);

    let e = Exporter::start_with_env(
        &["--config.file", file],
        &[
            ("LLMCHAT_EXPORTER_WEB_TELEMETRY_PATH", "/from-env"),
            ("LLMCHAT_EXPORTER_COLLECTOR_HOST", "true"),
        ],
    );
    assert_eq!(e.get("/from-file").status(), 404);
    assert!(e
        .get("/from-env")
        .text()
        .unwrap()
        .contains("llmchat_host_memory_total_bytes"));
    drop(e);

    let e = Exporter::start_with_env(
        &[
            "--config.file",
            file,
            "--web.telemetry-path",
            "/from-flag",
            "--no-collector.host",
        ],
        &[
            ("LLMCHAT_EXPORTER_WEB_TELEMETRY_PATH", "/from-env"),
            ("LLMCHAT_EXPORTER_COLLECTOR_HOST", "true"),
        ],
    );
    assert_eq!(e.get("/from-env").status(), 404);
    assert!(!e
        .get("/from-flag")
        .text()
        .unwrap()
        .contains("llmchat_host_"));
}

#[test]
fn help_names_the_variables_but_never_shows_their_values() {
    let secret = "s3cret-in-the-url";
    let out = run(
        &["--help"],
        &[
            (
                "LLMCHAT_EXPORTER_APP_URL",
                &format!("http://admin:{secret}@127.0.0.1:3000"),
            ),
            (
                "LLMCHAT_EXPORTER_LOGS_APP",
                &format!("/var/log/{secret}.log"),
            ),
        ],
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("LLMCHAT_EXPORTER_APP_URL"), "{help}");
    assert!(!help.contains(secret), "{help}");
}
