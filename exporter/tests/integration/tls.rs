//! `--web.config.file` (exporter-toolkit's format) with the real tools:
//! Debian's Prometheus scrapes over HTTPS with basic auth, and nothing
//! else gets in; old protocol versions are refused at the handshake; the
//! file is re-read on SIGHUP and a broken one keeps the last good one;
//! a bad file at start exits 64 naming the key.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use llmchat_tests::pki::Pki;

use crate::helpers::{free_port, sample, wait_until, Exporter, BIN};

fn https_client(pki: &Pki) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.pem("ca.pem")).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn start(pki: &Pki, web: &Path) -> Exporter {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--web.listen-address",
        "127.0.0.1:0",
        "--collector.disable-defaults",
    ])
    .arg("--web.config.file")
    .arg(web);
    Exporter::spawn_https(cmd, https_client(pki))
}

fn web_yml(dir: &Path, hash: &str, extra_tls: &str) -> std::path::PathBuf {
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{extra_tls}\
             http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    path
}

fn kill_hup(e: &Exporter) {
    let ok = Command::new("kill")
        .args(["-HUP", &e.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_nothing_else_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let hash = bcrypt::hash("scrape-pass", 4).unwrap();
    let web = web_yml(dir.path(), &hash, "");
    let e = start(&pki, &web);
    let metrics = format!("{}/metrics", e.base);

    // Straight from a client: credentials needed, headers set, probes open.
    let r = e.client().get(&metrics).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"llmchat-monitor\""
    );
    let r = e
        .client()
        .get(&metrics)
        .basic_auth("prometheus", Some("scrape-pass"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.text().unwrap().contains("llmchat_exporter_build_info"));
    assert_eq!(
        e.client()
            .get(format!("{}/-/healthy", e.base))
            .send()
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = e.base.replace("https://", "http://");
    assert!(reqwest::blocking::get(format!("{plain}/metrics")).is_err());

    // Prometheus: the right configuration scrapes (up 1); a wrong password
    // and plain HTTP do not (up 0).
    let port = e.base.rsplit(':').next().unwrap().to_string();
    let target = format!("127.0.0.1:{port}");
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    let job = |name: &str, scheme: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: {scheme}\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['{target}']\n",
            pki.path("ca.pem").display()
        )
    };
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
            job("tls", "https", "scrape-pass"),
            job("wrong_password", "https", "not-the-pass"),
            job("plain", "http", "scrape-pass"),
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let up = || -> Vec<(String, String)> {
        let Ok(r) = reqwest::blocking::get(format!(
            "http://127.0.0.1:{prom_port}/api/v1/query?query=up"
        )) else {
            return Vec::new();
        };
        let v: serde_json::Value = r.json().unwrap_or_default();
        let mut rows: Vec<_> = v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                (
                    s["metric"]["job"].as_str().unwrap_or_default().to_string(),
                    s["value"][1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let want = |rows: &[(String, String)]| {
        rows == [
            ("plain".to_string(), "0".to_string()),
            ("tls".to_string(), "1".to_string()),
            ("wrong_password".to_string(), "0".to_string()),
        ]
    };
    let mut last = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        last = up();
        if want(&last) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(want(&last), "up by job: {last:?}");

    // SIGHUP re-reads the file: a new password replaces the old one. The
    // file keeps its length and modification time, so only the signal can
    // have told the exporter.
    let before = std::fs::metadata(&web).unwrap();
    let hash = bcrypt::hash("rotated-pass", 4).unwrap();
    web_yml(dir.path(), &hash, "");
    std::fs::File::options()
        .write(true)
        .open(&web)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    assert_eq!(std::fs::metadata(&web).unwrap().len(), before.len());
    kill_hup(&e);
    let status = |password: &str| {
        e.client()
            .get(&metrics)
            .basic_auth("prometheus", Some(password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    wait_until(Duration::from_secs(10), "the new password", || {
        status("rotated-pass") == 200
    });
    assert_eq!(status("scrape-pass"), 401);
    // A changed file is re-read without a signal (checked every 5 s).
    let hash = bcrypt::hash("third-pass", 4).unwrap();
    web_yml(dir.path(), &hash, "");
    wait_until(Duration::from_secs(30), "the changed file", || {
        status("third-pass") == 200
    });
    assert_eq!(status("rotated-pass"), 401);
    // A broken file keeps the last good one, and says so.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: plain-text\n").unwrap();
    let failures = || {
        let text = e
            .client()
            .get(&metrics)
            .basic_auth("prometheus", Some("third-pass"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        sample(
            &text,
            "llmchat_exporter_web_config_reloads_total",
            &[("result", "failure")],
        )
    };
    wait_until(Duration::from_secs(30), "the failed reload", || {
        failures() == Some(1.0)
    });
    assert_eq!(status("third-pass"), 200);
    assert!(
        e.log().contains("web config not reloaded")
            && e.log().contains("basic_auth_users.prometheus"),
        "{}",
        e.log()
    );
}

/// A client offering only TLS 1.2 against `min_version: TLS13`, and one
/// offering only TLS 1.1 against the default, are refused at the
/// handshake (Python's ssl module, i.e. OpenSSL, as the client).
#[test]
fn protocol_versions_below_the_minimum_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let hash = bcrypt::hash("x", 4).unwrap();
    let try_versions = |e: &Exporter, versions: &[&str]| -> String {
        let port = e.base.rsplit(':').next().unwrap();
        let script = format!(
            r#"
import socket, ssl, sys
for v in sys.argv[1:]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations("{ca}")
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    ctx.minimum_version = getattr(ssl.TLSVersion, v)
    ctx.maximum_version = getattr(ssl.TLSVersion, v)
    try:
        with socket.create_connection(("127.0.0.1", {port})) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                print(v, "accepted", t.version())
    except (ssl.SSLError, OSError) as e:
        print(v, "refused", e)
"#,
            ca = pki.path("ca.pem").display()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .args(versions)
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let web = web_yml(dir.path(), &hash, "");
    let e = start(&pki, &web);
    let out = try_versions(&e, &["TLSv1_1", "TLSv1_2", "TLSv1_3"]);
    assert!(out.contains("TLSv1_1 refused"), "{out}");
    assert!(out.contains("TLSv1_2 accepted TLSv1.2"), "{out}");
    assert!(out.contains("TLSv1_3 accepted TLSv1.3"), "{out}");
    drop(e);
    let web = web_yml(dir.path(), &hash, "  min_version: TLS13\n");
    let e = start(&pki, &web);
    let out = try_versions(&e, &["TLSv1_2", "TLSv1_3"]);
    assert!(out.contains("TLSv1_2 refused"), "{out}");
    assert!(out.contains("TLSv1_3 accepted TLSv1.3"), "{out}");
}

/// A web-config file that does not load stops the start with 64, naming
/// the key, before any port is bound.
#[test]
fn a_bad_web_config_file_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    Pki::create(dir.path());
    let cases = [
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth: x\n", "client_auth"),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: client-key.pem\n", "tls_server_config.key_file"),
        ("basic_auth_users:\n  prometheus: hunter2\n", "basic_auth_users.prometheus"),
    ];
    for (text, key) in cases {
        let web = dir.path().join("bad.yml");
        std::fs::write(&web, text).unwrap();
        let out = Command::new(BIN)
            .env_clear()
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--collector.disable-defaults",
            ])
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains("bad.yml"),
            "{key}: {stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

/// `systemctl reload` sends SIGHUP; without a web-config file there is
/// nothing to re-read, and the exporter must go on serving, not end.
#[test]
fn sighup_without_a_web_config_file_does_not_end_the_exporter() {
    let e = Exporter::start(&[]);
    kill_hup(&e);
    wait_until(Duration::from_secs(10), "the SIGHUP to be seen", || {
        e.log().contains("SIGHUP received")
    });
    assert!(e.scrape_text().contains("llmchat_exporter_build_info"));
}
