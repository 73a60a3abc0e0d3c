//! The receiver process and its config; the HTTP target and SMTP sink
//! come from the shared test crate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_llmchat-receiver");
pub const TOKEN: &str = "receiver-token-0123456789abcdef";
pub const HMAC_SECRET: &str = "shared-hmac-secret";

pub use llmchat_tests::free_port;

pub use llmchat_tests::wait_until;

pub use llmchat_tests::sinks::{SmtpSink, Target};

/// A running receiver, killed on drop. Its stderr goes to a file, shown
/// only when the test fails.
pub struct Receiver {
    pub child: Child,
    pub base: String,
    pub port: u16,
    stderr: tempfile::NamedTempFile,
}

impl Receiver {
    /// Starts on a port of its own choosing (it binds 127.0.0.1:0 and logs
    /// the port), so no other process can take it in between.
    pub fn start(config: &Path) -> Receiver {
        Self::start_on(config, 0)
    }

    pub fn start_on(config: &Path, port: u16) -> Receiver {
        Self::start_with_args(config, port, &[])
    }

    pub fn start_with_args(config: &Path, port: u16, args: &[&str]) -> Receiver {
        Self::start_with_env(config, port, args, &[])
    }

    pub fn start_with_env(
        config: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Receiver {
        Self::start_wrapped(&[], config, port, args, env)
    }

    /// Starts the binary under `wrapper` (a command that runs the rest of
    /// its arguments, such as `prlimit --nofile=1024:1024`).
    pub fn start_wrapped(
        wrapper: &[&str],
        config: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Receiver {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command
            .args(args)
            .arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"));
        let daemon = llmchat_tests::start_daemon(
            command,
            port,
            env,
            Duration::from_secs(15),
            "receiver",
            |port| {
                reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/ready"))
                    .is_ok_and(|x| x.status().is_success())
            },
        );
        Receiver {
            child: daemon.child,
            base: format!("http://127.0.0.1:{}", daemon.port),
            port: daemon.port,
            stderr: daemon.stderr,
        }
    }

    pub fn post(&self, body: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut req = reqwest::blocking::Client::new()
            .post(format!("{}/webhook", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap()
    }

    pub fn notifications(&self, status: &str) -> serde_json::Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/notifications?status={status}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Waits until the outbox holds nothing to send: no row pending or in
    /// flight. From then on no further send can happen, so counts taken
    /// after it are final (instead of "sleep, then assert nothing more").
    pub fn wait_until_drained(&self) {
        wait_until(Duration::from_secs(30), "the outbox to drain", || {
            self.notifications("pending")["notifications"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        });
    }

    /// What the receiver has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// GET `path` (unauthenticated): status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// The value of an unlabelled sample, or of `name{labels}` written as
    /// in the exposition (`llmchat_receiver_store_errors_total{kind="full"}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- llmchat-receiver on port {} ---\n{}",
                self.port,
                self.log()
            );
        }
    }
}

/// A config file for a receiver whose channels point at local stand-ins.
pub fn config(
    dir: &Path,
    store: &str,
    slack: Option<&str>,
    webhook: Option<&str>,
    smtp_port: Option<u16>,
) -> PathBuf {
    config_with_max_age(dir, store, slack, webhook, smtp_port, "24h")
}

pub fn config_with_max_age(
    dir: &Path,
    store: &str,
    slack: Option<&str>,
    webhook: Option<&str>,
    smtp_port: Option<u16>,
    max_age: &str,
) -> PathBuf {
    let mut text = format!(
        "[web]\nbearer_token = \"{TOKEN}\"\nbody_limit_bytes = 4096\n\n[store]\nurl = \"{store}\"\n\n\
         [delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"5s\"\npoll_interval = \"100ms\"\nslack_interval = \"300ms\"\ntimeout = \"2s\"\nmax_age = \"{max_age}\"\n\n"
    );
    if let Some(url) = slack {
        text.push_str(&format!("[channels.slack]\nwebhook_url = \"{url}\"\n\n"));
    }
    if let Some(url) = webhook {
        text.push_str(&format!(
            "[channels.webhook]\nurl = \"{url}\"\nhmac_secret = \"{HMAC_SECRET}\"\nheaders = {{ \"X-Team\" = \"sre\" }}\n\n"
        ));
    }
    if let Some(port) = smtp_port {
        text.push_str(&format!(
            "[channels.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"LLMChat Alerts <alerts@llmchat.test>\"\n\
             to = {{ critical = [\"oncall@llmchat.test\", \"lead@llmchat.test\"], warning = [\"team@llmchat.test\"] }}\n\n"
        ));
    }
    let path = dir.join("receiver.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Rewrites settings in a config file that [`config`] wrote: each `from`
/// must be there (a renamed default fails here, not as a silent no-op).
pub fn edit_config(path: &Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in {}", path.display());
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

/// An Alertmanager v4 payload with one alert per (name, severity, status).
pub fn payload(alerts: &[(&str, &str, &str)]) -> String {
    let items: Vec<String> = alerts
        .iter()
        .map(|(name, severity, status)| {
            format!(
                r#"{{"status":"{status}","labels":{{"alertname":"{name}","severity":"{severity}","instance":"host-a:9842"}},"annotations":{{"summary":"{name} summary","description":"{name} description"}},"startsAt":"2026-11-26T10:00:00Z","endsAt":"{}","generatorURL":"http://prometheus:9090/graph?g0.expr=x","fingerprint":"fp-{name}"}}"#,
                if *status == "resolved" { "2026-11-26T10:30:00Z" } else { "0001-01-01T00:00:00Z" }
            )
        })
        .collect();
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"x\"}}","truncatedAlerts":0,"status":"firing","receiver":"llmchat","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","alerts":[{}]}}"#,
        items.join(",")
    )
}

/// Debian's Alertmanager with `config` (YAML) on a free port, its data in
/// `dir`, clustering off; waits until it is ready. The child and its URL.
pub fn start_alertmanager(dir: &Path, config: String) -> (Child, String) {
    let port = free_port();
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, config).unwrap();
    let am = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.path={}", dir.join("am").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)");
    let url = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(30), "alertmanager ready", || {
        reqwest::blocking::get(format!("{url}/-/ready")).is_ok_and(|x| x.status().is_success())
    });
    (am, url)
}
