//! The receiver process, an HTTP target that answers from a script and
//! records what it got, and an SMTP sink.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_llmchat-receiver");
pub const TOKEN: &str = "receiver-token-0123456789abcdef";
pub const HMAC_SECRET: &str = "shared-hmac-secret";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request a target received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A local HTTP server standing in for Slack or a webhook target. It
/// answers each request with the next scripted `(status, extra header)`,
/// then 200 once the script is used up.
pub struct Target {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Target {
    pub fn start(script: Vec<(u16, Option<(&'static str, &'static str)>)>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(listener, script)
    }

    /// Starts on a given port (for a target that comes up late).
    pub fn start_on(port: u16) -> Target {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        Self::serve(listener, Vec::new())
    }

    fn serve(
        listener: TcpListener,
        script: Vec<(u16, Option<(&'static str, &'static str)>)>,
    ) -> Target {
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                log.lock().unwrap().push(req);
                let (status, extra) = script.next().unwrap_or((200, None));
                let extra = extra
                    .map(|(k, v)| format!("{k}: {v}\r\n"))
                    .unwrap_or_default();
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        Target { port, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server: enough of RFC 5321 for a plain local relay.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let store = store.clone();
                std::thread::spawn(move || smtp_session(stream, store));
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(stream: TcpStream, store: Arc<Mutex<Vec<Mail>>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let _ = out.write_all(b"220 sink ESMTP\r\n");
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            let _ = out.write_all(b"354 go on\r\n");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            store.lock().unwrap().push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 OK\r\n"
        };
        let _ = out.write_all(reply);
    }
}

/// A running receiver, killed on drop.
pub struct Receiver {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

impl Receiver {
    pub fn start(config: &Path) -> Receiver {
        Self::start_on(config, free_port())
    }

    pub fn start_on(config: &Path, port: u16) -> Receiver {
        Self::start_with_args(config, port, &[])
    }

    pub fn start_with_args(config: &Path, port: u16, args: &[&str]) -> Receiver {
        let child = Command::new(BIN)
            .args(args)
            .arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let r = Receiver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        wait_until(Duration::from_secs(15), "receiver ready", || {
            reqwest::blocking::get(format!("{}/-/ready", r.base))
                .is_ok_and(|x| x.status().is_success())
        });
        r
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

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
