//! The rollback recipe of docs/deploys.md: LLMChatDeployRegression
//! (`fault="deploy_regression"`) runs the site's rollback script through
//! the `command` action, once per deploy and instance, with the previous
//! version in its environment only after it matched the version pattern;
//! a restart does not run for it.

use std::path::Path;

use crate::helpers::*;
use crate::recovery::{alert, finished};

/// The deploy alert as the rules make it.
fn regression(fingerprint: &str, version: &str, previous: &str) -> String {
    alert(
        "firing",
        fingerprint,
        &[
            ("alertname", "LLMChatDeployRegression"),
            ("severity", "critical"),
            ("fault", "deploy_regression"),
            ("instance", "host-a:9842"),
            ("job", "llmchat-exporter"),
            ("check", "http_5xx"),
            ("version", version),
            ("previous_version", previous),
        ],
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_deploy_regression_rolls_back_once_per_deploy_with_the_checked_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(dir.path(), &store, None, None, None);
    let (rolled, restarted) = (dir.path().join("rolled"), dir.path().join("restarted"));
    // The recipe's action, with a script that records what it was given:
    // its arguments (none from the alert) and the environment's version.
    let script = dir.path().join("rollback-to-previous.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$# $LLMCHAT_ALERT_PREVIOUS_VERSION $LLMCHAT_ALERT_VERSION $LLMCHAT_ALERT_INSTANCE\" >> {}\n",
            rolled.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[recovery]\ninstance = 'instance=\"host-a:9842\"'\n\
         [recovery.actions.rollback]\ncooldown = \"24h\"\nmax_runs_per_hour = 2\nscope_labels = [\"version\"]\n\
         require_labels = {{ previous_version = 'v?[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]{{1,40}})?' }}\n\
         [recovery.actions.rollback.command]\nargv = [\"{}\"]\n\
         [recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo restart >> {}\"]\n",
        script.display(),
        restarted.display()
    ));
    std::fs::write(&path, text).unwrap();
    let r = Receiver::start(&path);

    // The bad deploy: the rollback runs once, the version in its
    // environment and nothing on its command line.
    assert_eq!(
        r.post(&regression("fp-1", "1.5.0", "1.4.2"), Some(TOKEN))
            .status(),
        200
    );
    let audit = finished(&r, "rollback", 1);
    assert_eq!(audit[0]["result"], "succeeded", "{audit:?}");
    assert_eq!(lines(&rolled), ["0 1.4.2 1.5.0 host-a:9842"]);

    // Alertmanager's repeat of the same alert (and the same deploy seen by
    // another check): no second rollback.
    assert_eq!(
        r.post(&regression("fp-1", "1.5.0", "1.4.2"), Some(TOKEN))
            .status(),
        200
    );
    assert_eq!(
        r.post(&regression("fp-2", "1.5.0", "1.4.2"), Some(TOKEN))
            .status(),
        200
    );
    let audit = finished(&r, "rollback", 3);
    assert_eq!(audit[1]["result"], "skipped_cooldown", "{audit:?}");
    assert_eq!(audit[2]["result"], "skipped_cooldown", "{audit:?}");

    // A previous version that is no version: audited, nothing runs, and
    // the value is not repeated in the audit.
    let hostile = "--upload-pack=touch${IFS}/tmp/pwned";
    assert_eq!(
        r.post(&regression("fp-3", "1.6.0", hostile), Some(TOKEN))
            .status(),
        200
    );
    let audit = finished(&r, "rollback", 4);
    assert_eq!(audit[3]["result"], "skipped_label_mismatch", "{audit:?}");
    let detail = audit[3]["detail"].as_str().unwrap();
    assert!(detail.contains("previous_version"), "{detail}");
    assert!(!detail.contains("upload-pack"), "{detail}");

    // The next deploy's regression is a new deploy: it rolls back within
    // the first one's cooldown.
    assert_eq!(
        r.post(&regression("fp-4", "1.6.0", "1.5.1"), Some(TOKEN))
            .status(),
        200
    );
    let audit = finished(&r, "rollback", 5);
    assert_eq!(audit[4]["result"], "succeeded", "{audit:?}");
    assert_eq!(
        lines(&rolled),
        ["0 1.4.2 1.5.0 host-a:9842", "0 1.5.1 1.6.0 host-a:9842"]
    );
    // The restart never ran for a deploy regression.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(lines(&restarted).is_empty());
    assert_eq!(
        r.metric("llmchat_receiver_recovery_actions_total{action=\"rollback\",result=\"skipped_label_mismatch\"}"),
        Some(1.0)
    );
}

#[test]
fn bad_scope_or_required_labels_exit_64_naming_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    for (extra, says) in [
        ("scope_labels = [\"ver-sion\"]\n", "ver-sion"),
        (
            "require_labels = { previous_version = '(1' }\n",
            "require_labels.previous_version",
        ),
    ] {
        let path = config(dir.path(), &store, None, None, None);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "[recovery.actions.rollback]\n{extra}[recovery.actions.rollback.command]\nargv = [\"/bin/true\"]\n"
        ));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("--config.file")
            .arg(&path)
            .arg("--config.check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.contains("rollback"), "{err}");
    }
}
