//! Requests the receiver must refuse, clearly and without storing anything.

use crate::helpers::{config, payload, Receiver, TOKEN};

#[test]
fn bad_requests_get_4xx_with_a_message_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(
        dir.path(),
        &store,
        None,
        Some("http://127.0.0.1:9/none"),
        None,
    );
    let r = Receiver::start(&cfg);
    let good = payload(&[("LLMChatHighErrorRate", "critical", "firing")]);

    let resp = r.post(&good, None);
    assert_eq!(resp.status(), 401);
    assert!(resp.text().unwrap().contains("missing credentials"));
    let resp = r.post(&good, Some("wrong-token-wrong-token"));
    assert_eq!(resp.status(), 401);
    assert!(resp.text().unwrap().contains("wrong credentials"));

    let resp = r.post("{not json", Some(TOKEN));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("invalid JSON"));
    let wrong_type = good.replace(r#""truncatedAlerts":0"#, r#""truncatedAlerts":"many""#);
    let resp = r.post(&wrong_type, Some(TOKEN));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("truncatedAlerts"));
    let missing = good.replace(r#""fingerprint":"fp-LLMChatHighErrorRate""#, r#""other":1"#);
    let resp = r.post(&missing, Some(TOKEN));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("fingerprint"));
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(8000));
    let resp = r.post(&huge, Some(TOKEN));
    assert_eq!(resp.status(), 413);
    assert!(resp.text().unwrap().contains("limit"));

    for state in ["pending", "sent", "dead"] {
        let n = r.notifications(state);
        assert_eq!(
            n["notifications"].as_array().unwrap().len(),
            0,
            "{state}: {n}"
        );
    }
    let resp = reqwest::blocking::get(format!("{}/notifications", r.base)).unwrap();
    assert_eq!(resp.status(), 401, "the API needs credentials too");
    let metrics = reqwest::blocking::get(format!("{}/metrics", r.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("llmchat_receiver_webhook_requests_total{code=\"400\"} 3"),
        "{metrics}"
    );
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[web]\nbearer_token = \"short\"\n").unwrap();
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["--config.check", "--config.file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.bearer_token") && !err.contains("short\""),
        "{err}"
    );
    std::fs::write(&path, "[delivery]\nmax_age = \"forever\"\n").unwrap();
    let out = std::process::Command::new(crate::helpers::BIN)
        .args(["--config.check", "--config.file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivery.max_age"));
}

#[test]
fn the_example_config_is_valid() {
    let example = llmchat_tests::repo_root().join("config/receiver.example.toml");
    let out = std::process::Command::new(crate::helpers::BIN)
        .arg("--config.file")
        .arg(&example)
        .arg("--config.check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "channels: email, slack, webhook; recovery actions: cache_cleanup, gc, restart"
        ),
        "{said}"
    );
}

/// The token file rewritten while the receiver runs (a rotation through
/// `.env` and `docker compose up -d`): from then on the old token gets 401
/// and the new one 200, with no restart.
#[test]
fn a_rotated_token_file_is_in_force_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(
        dir.path(),
        &store,
        None,
        Some("http://127.0.0.1:9/none"),
        None,
    );
    // The token comes from the file only.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(&format!("bearer_token = \"{TOKEN}\"\n"), "");
    std::fs::write(&cfg, text).unwrap();
    let token_file = dir.path().join("receiver_token");
    std::fs::write(&token_file, "old-token-0123456789abcdef\n").unwrap();
    let r = Receiver::start_with_args(
        &cfg,
        0,
        &["--web.bearer-token-file", token_file.to_str().unwrap()],
    );
    let alert = payload(&[("LLMChatHighErrorRate", "critical", "firing")]);
    assert_eq!(
        r.post(&alert, Some("old-token-0123456789abcdef")).status(),
        200
    );

    // Written as stack/init-secrets.sh writes it: beside, then moved over.
    let tmp = dir.path().join("receiver_token.tmp");
    std::fs::write(&tmp, "new-token-0123456789abcdef").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    let resp = r.post(&alert, Some("old-token-0123456789abcdef"));
    assert_eq!(resp.status(), 401);
    assert!(resp.text().unwrap().contains("wrong credentials"));
    assert_eq!(
        r.post(&alert, Some("new-token-0123456789abcdef")).status(),
        200
    );
    assert!(
        r.log().contains("the bearer token file changed"),
        "{}",
        r.log()
    );
    assert!(
        !r.log().contains("new-token-0123456789abcdef"),
        "the token is never logged"
    );
}
