//! Secrets in delivery: the JSON log never carries the bearer token or
//! Slack's URL, and email goes over STARTTLS and implicit TLS with its
//! credentials from the environment.

use std::process::{Command, Stdio};
use std::time::Duration;

use llmchat_tests::sinks::SmtpTls;

use crate::delivery::sqlite;
use crate::helpers::{config, free_port, payload, wait_until, Receiver, SmtpSink, Target, TOKEN};

#[test]
fn json_logs_never_carry_the_token_or_the_slack_secret() {
    let dir = tempfile::tempdir().unwrap();
    // Slack webhook URLs are secrets: the path is the credential.
    let slack = Target::start(vec![(500, None), (500, None)]);
    let secret_path = "/services/T0SECRET/B0SECRET/XySecretSlackToken";
    let cfg = config(
        dir.path(),
        &sqlite(dir.path()),
        Some(&slack.url(secret_path)),
        None,
        None,
    );
    let log = dir.path().join("receiver.log");
    let port = free_port();
    let mut child = Command::new(crate::helpers::BIN)
        .arg("--config.file")
        .arg(&cfg)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.format",
            "json",
        ])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(15), "ready", || {
        reqwest::blocking::get(format!("{base}/-/ready")).is_ok_and(|r| r.status().is_success())
    });
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/webhook"))
        .bearer_auth(TOKEN)
        .body(payload(&[("LLMChatSlowResponses", "warning", "firing")]))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_until(Duration::from_secs(15), "failures then success", || {
        slack.requests().len() >= 3
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(text.contains("notification failed; will retry"), "{text}");
    for secret in [TOKEN, "XySecretSlackToken", "T0SECRET"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
}

#[test]
fn email_goes_over_starttls_and_implicit_tls_with_auth_from_the_environment() {
    let (server_tls, ca_pem) = llmchat_tests::sinks::self_signed_tls();
    let password = "smtp-password-from-env-42";
    for (mode, name) in [
        (SmtpTls::StartTls(server_tls.clone()), "starttls"),
        (SmtpTls::Implicit(server_tls.clone()), "implicit"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpSink::start_with(mode);
        let ca = dir.path().join("relay-ca.pem");
        std::fs::write(&ca, &ca_pem).unwrap();
        let email = |ca_line: &str| {
            format!(
                "[web]\nbearer_token = \"{TOKEN}\"\n[store]\nurl = \"{}\"\n\
                 [delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\npoll_interval = \"100ms\"\ntimeout = \"3s\"\n\
                 [channels.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{name}\"\n{ca_line}\
                 username = \"alerts\"\nfrom = \"alerts@llmchat.test\"\nto = {{ critical = [\"oncall@llmchat.test\"] }}\n",
                sqlite(dir.path()),
                smtp.port
            )
        };
        // Without the relay's CA, its self-signed certificate is refused:
        // nothing is sent, the notification waits with the TLS error.
        let untrusted = dir.path().join("untrusted.toml");
        std::fs::write(&untrusted, email("")).unwrap();
        let r = Receiver::start_with_env(
            &untrusted,
            free_port(),
            &[],
            &[("LLMCHAT_RECEIVER_SMTP_PASSWORD", password)],
        );
        r.post(
            &payload(&[("LLMChatRedisDown", "critical", "firing")]),
            Some(TOKEN),
        );
        wait_until(Duration::from_secs(15), "a failed attempt", || {
            r.notifications("pending")["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["attempts"].as_i64().unwrap_or(0) >= 1)
        });
        assert!(
            smtp.mails().is_empty(),
            "{name}: sent to an untrusted relay"
        );
        r.kill();
        // With it: delivered, encrypted, authenticated with the password
        // that came from the environment.
        let trusted = dir.path().join("trusted.toml");
        std::fs::write(
            &trusted,
            email(&format!("ca_file = \"{}\"\n", ca.display())),
        )
        .unwrap();
        let _r = Receiver::start_with_env(
            &trusted,
            free_port(),
            &[],
            &[("LLMCHAT_RECEIVER_SMTP_PASSWORD", password)],
        );
        wait_until(
            Duration::from_secs(15),
            &format!("mail over {name}"),
            || !smtp.mails().is_empty(),
        );
        let mail = &smtp.mails()[0];
        assert!(mail.tls, "{name}: not encrypted");
        assert_eq!(
            mail.auth,
            Some(("alerts".to_string(), password.to_string())),
            "{name}"
        );
        assert!(mail
            .data
            .contains("Subject: [LLMChat][CRITICAL] LLMChatRedisDown"));
    }
}
