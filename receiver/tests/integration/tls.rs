//! The receiver behind `--web.config.file` with mutual TLS: Debian's
//! Alertmanager posts with its client certificate (and the bearer token)
//! and the notification flows; a client without a certificate is refused
//! at the handshake.

use std::process::{Command, Stdio};
use std::time::Duration;

use llmchat_tests::pki::Pki;

use crate::helpers::{config, start_alertmanager, wait_until, Target, BIN, TOKEN};

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn alertmanager_posts_over_mutual_tls_and_a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .unwrap();
    let hook = Target::start(vec![]);
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(dir.path(), &store, None, Some(&hook.url("/h")), None);
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut receiver = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--config.file")
        .arg(&cfg)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let port = llmchat_tests::bound_port(stderr.path(), Duration::from_secs(15));
    let base = format!("https://127.0.0.1:{port}");
    let ca = reqwest::Certificate::from_pem(&pki.pem("ca.pem")).unwrap();
    let client = |identity: bool| {
        let mut b = reqwest::blocking::Client::builder()
            .add_root_certificate(ca.clone())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10));
        if identity {
            let mut pem = pki.pem("client.pem");
            pem.extend(pki.pem("client-key.pem"));
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    let with_cert = client(true);
    wait_until(Duration::from_secs(15), "receiver ready", || {
        with_cert
            .get(format!("{base}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    // No certificate: refused in the handshake, before any HTTP.
    let refused = client(false)
        .get(format!("{base}/-/ready"))
        .send()
        .unwrap_err();
    let why = chain(&refused);
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    assert!(hook.requests().is_empty());

    let (mut am, am_url) = start_alertmanager(
        dir.path(),
    format!(
        "route:\n  receiver: llmchat\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: llmchat\n    webhook_configs:\n      - url: {base}/webhook\n        http_config:\n          \
         authorization:\n            credentials: {TOKEN}\n          tls_config:\n            ca_file: {}\n            cert_file: {}\n            key_file: {}\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client-key.pem").display(),
    ),
    );
    let alert = serde_json::json!([{
        "labels": {"alertname": "LLMChatDiskUsageHigh", "severity": "warning", "instance": "host-a:9842"},
        "annotations": {"summary": "Disk above 80%"},
    }]);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{am_url}/api/v2/alerts"))
        .json(&alert)
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    let delivered = || {
        hook.requests()
            .iter()
            .any(|r| r.json()["alertname"] == "LLMChatDiskUsageHigh")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !delivered() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = am.kill();
    let _ = am.wait();
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert!(
        delivered(),
        "nothing reached the webhook; receiver log:\n{}",
        std::fs::read_to_string(stderr.path()).unwrap_or_default()
    );
}

/// basic_auth_users in the web-config file guard every path; the
/// receiver's own bearer token cannot ride in the same Authorization
/// header, so setting both is refused at start, naming the key.
#[test]
fn file_basic_auth_and_the_receivers_own_token_together_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "basic_auth_users:\n  alertmanager: '$2y$04$1lQmBHbzBQk7XDhDkXOgUuXYP2CULXFMo4sldkvSV5JpGy0YnBYFS'\n",
    )
    .unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let cfg = config(dir.path(), &store, None, None, None);
    let out = Command::new(BIN)
        .env_clear()
        .arg("--config.file")
        .arg(&cfg)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&web)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("web.bearer_token") && stderr.contains("basic_auth_users"),
        "{stderr}"
    );
}

/// SMTP credentials over a connection without TLS: refused at start (exit
/// 64, naming the key) for a relay on another host, accepted for one on
/// this host or with the explicit opt-in.
#[test]
fn smtp_credentials_in_clear_to_another_host_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    for (host, opt_in, ok) in [
        ("mail.example.com", "", false),
        ("127.0.0.1", "", true),
        ("mail.example.com", "allow_plaintext_auth = true\n", true),
    ] {
        let path = crate::helpers::config(dir.path(), &store, None, None, Some(2525));
        crate::helpers::edit_config(
            &path,
            &[(
                "smtp_host = \"127.0.0.1\"\n",
                &format!("smtp_host = \"{host}\"\nusername = \"alerts\"\npassword = \"relay-secret-password\"\n{opt_in}"),
            )],
        );
        let out = std::process::Command::new(crate::helpers::BIN)
            .arg("--config.file")
            .arg(&path)
            .arg("--config.check")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!said.contains("relay-secret-password"), "{said}");
        if ok {
            assert!(out.status.success(), "{host} {opt_in}: {said}");
        } else {
            assert_eq!(out.status.code(), Some(64), "{said}");
            assert!(
                said.contains("channels.email") && said.contains("in clear"),
                "{said}"
            );
        }
    }
}
