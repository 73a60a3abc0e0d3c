//! The message templates from the outside: golden files of every built-in
//! template (zh and en) through `llmchat-receiver render`, a template
//! that does not compile stopping the start with exit 64, and one that
//! fails at send time replaced by the built-in one, counted, and sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .arg("render")
        .args(args)
        .output()
        .unwrap()
}

/// Each built-in template, in both languages, for one firing alert, its
/// resolve, a group of 30 and a recovery outcome. `LLMCHAT_BLESS=1`
/// rewrites the files after a deliberate change; review the diff.
#[test]
fn built_in_templates_match_their_golden_files() {
    let dir = golden_dir();
    let bless = std::env::var_os("LLMCHAT_BLESS").is_some();
    let mut differ = Vec::new();
    for language in ["en", "zh"] {
        for channel in llmchat_receiver::channels::ALL.iter().map(|k| k.as_str()) {
            for case in ["firing", "resolved", "group30", "recovery"] {
                let payload = dir.join(format!("payloads/{case}.json"));
                let out = render(&[
                    "--config.file",
                    dir.join("config.toml").to_str().unwrap(),
                    "--payload",
                    payload.to_str().unwrap(),
                    "--channel",
                    channel,
                    "--language",
                    language,
                ]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let got = String::from_utf8(out.stdout).unwrap();
                let path = dir.join(format!("{language}/{channel}-{case}.txt"));
                if bless {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &got).unwrap();
                    continue;
                }
                let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                    panic!("{} is missing; run with LLMCHAT_BLESS=1", path.display())
                });
                if got != want {
                    differ.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        differ.is_empty(),
        "rendered output differs from (run with LLMCHAT_BLESS=1 and review the diff): {differ:#?}"
    );
    // A few facts the files must hold, so that blessing cannot hide a
    // broken template.
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    assert!(read("en/email-group30.txt")
        .contains("Subject: [LLMChat][WARNING:27] LLMChatDiskUsageHigh"));
    assert!(
        read("zh/email-group30.txt").contains("Subject: [LLMChat][警告:27] LLMChatDiskUsageHigh")
    );
    assert!(
        read("en/email-resolved.txt").contains("Subject: [LLMChat][RESOLVED] LLMChatHighErrorRate")
    );
    assert!(read("zh/slack-resolved.txt").contains("已恢复（持续 12 分钟）：LLMChatHighErrorRate"));
    assert!(read("en/slack-resolved.txt").contains("\"color\": \"#2eb886\""));
    assert!(read("en/email-firing.txt").contains("https://grafana.example.com/d/llmchat-overview"));
    assert!(read("en/webhook-firing.txt")
        .contains("\"silence\":\"http://alertmanager:9093/#/silences/new?filter="));
    assert!(read("zh/email-recovery.txt").contains("Recovery action restart_backend succeeded"));
    assert_eq!(
        read("en/slack-group30.txt")
            .matches("=== slack message")
            .count(),
        30
    );
}

#[test]
fn render_names_a_broken_template_file_and_line_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("subject.j2");
    std::fs::write(&template, "[LLMChat]\n{{ status\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[notify.templates]\nemail_subject = \"{}\"\n",
            template.display()
        ),
    )
    .unwrap();
    let payload = golden_dir().join("payloads/firing.json");
    let out = render(&[
        "--config.file",
        config.to_str().unwrap(),
        "--payload",
        payload.to_str().unwrap(),
        "--channel",
        "email",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notify.templates.email_subject"), "{err}");
    assert!(err.contains(&template.display().to_string()), "{err}");
    assert!(err.contains("line 2"), "{err}");
    // The receiver itself refuses to start the same way.
    let cfg = crate::helpers::config(dir.path(), "sqlite://x.db", None, None, None);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[notify.templates]\nemail_subject = \"{}\"\n",
        template.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .arg("--config.file")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("subject.j2"),
        "{err}"
    );
    // An unreadable payload is an error that names it.
    let out = render(&["--payload", "/nonexistent.json", "--channel", "slack"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

#[test]
fn a_template_that_fails_at_send_time_falls_back_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Target::start(vec![]);
    let hook = Target::start(vec![]);
    let broken = dir.path().join("broken.j2");
    // Compiles; fails when rendered (no such function).
    std::fs::write(&broken, "{{ nope() }}").unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(
        dir.path(),
        &store,
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        None,
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[notify.templates]\nslack = \"{0}\"\nwebhook_body = \"{0}\"\n",
        broken.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let r = Receiver::start(&cfg);
    let body = payload(&[("LLMChatSlowResponses", "warning", "firing")]);
    assert_eq!(r.post(&body, Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "both channels", || {
        !slack.requests().is_empty() && !hook.requests().is_empty()
    });
    assert_eq!(
        slack.requests()[0].json()["text"],
        "[LLMChat][WARNING] LLMChatSlowResponses"
    );
    assert_eq!(
        hook.requests()[0].json()["alertname"],
        "LLMChatSlowResponses"
    );
    for channel in ["slack", "webhook"] {
        assert_eq!(
            r.metric(&format!(
                "llmchat_receiver_template_errors_total{{channel=\"{channel}\"}}"
            )),
            Some(1.0),
            "{channel}"
        );
    }
    assert_eq!(
        r.metric("llmchat_receiver_template_errors_total{channel=\"email\"}"),
        None,
        "email is not configured"
    );
    assert!(r.log().contains("template failed; using the built-in one"));
}
