//! Stand-ins the tests run themselves: an HTTP server that answers from a
//! script and records what it got (for Slack, a webhook target, the
//! backend), and an SMTP sink speaking enough of RFC 5321 for a relay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    body: Arc<Mutex<String>>,
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
        let body = Arc::new(Mutex::new("ok".to_string()));
        let answer = body.clone();
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
                let body = answer.lock().unwrap().clone();
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Target {
            port,
            received,
            body,
        }
    }

    /// What every later answer carries as its body (default `ok`).
    pub fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// The body every later answer carries, for a thread that keeps it
    /// current (a /health whose uptime grows).
    pub fn body_handle(&self) -> Arc<Mutex<String>> {
        self.body.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// How the Slack Web API stand-in answers one call.
#[derive(Debug, Clone, Copy)]
pub enum SlackAnswer {
    /// `{"ok": true, "channel": …, "ts": …}` with a new ts.
    Ok,
    /// HTTP 429 with `Retry-After` (seconds).
    RateLimited(u32),
    /// HTTP 200 with `{"ok": false, "error": code}`.
    Error(&'static str),
}

/// A stand-in for Slack's Web API (`chat.postMessage`, `chat.update`):
/// records every call, answers from a script, then `ok` with a fresh `ts`
/// for each posted message (an update keeps its message's ts).
pub struct SlackApi {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

/// The channel id the stand-in says messages went to.
pub const SLACK_CHANNEL_ID: &str = "C0ALERTS";

impl SlackApi {
    pub fn start(script: Vec<SlackAnswer>) -> SlackApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            let mut posted = 0u32;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                let update = req.path.ends_with("/chat.update");
                let asked: serde_json::Value =
                    serde_json::from_slice(&req.body).unwrap_or_default();
                log.lock().unwrap().push(req);
                let (status, extra, body) = match script.next().unwrap_or(SlackAnswer::Ok) {
                    SlackAnswer::Ok => {
                        let ts = if update {
                            asked["ts"].as_str().unwrap_or_default().to_string()
                        } else {
                            posted += 1;
                            format!("1700000000.{posted:06}")
                        };
                        (
                            200,
                            String::new(),
                            serde_json::json!({"ok": true, "channel": SLACK_CHANNEL_ID, "ts": ts})
                                .to_string(),
                        )
                    }
                    SlackAnswer::RateLimited(secs) => (
                        429,
                        format!("retry-after: {secs}\r\n"),
                        r#"{"ok":false,"error":"ratelimited"}"#.to_string(),
                    ),
                    SlackAnswer::Error(code) => (
                        200,
                        String::new(),
                        serde_json::json!({"ok": false, "error": code}).to_string(),
                    ),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        SlackApi { port, received }
    }

    /// The API's base URL (`api_url`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// Every call: (method, JSON body, Authorization header).
    pub fn calls(&self) -> Vec<(String, serde_json::Value, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.path.rsplit('/').next().unwrap_or_default().to_string(),
                    serde_json::from_slice(&r.body).unwrap_or_default(),
                    r.header("authorization").unwrap_or_default().to_string(),
                )
            })
            .collect()
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
    /// When the message was accepted.
    pub at: Instant,
    /// Whether it came over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The AUTH PLAIN credentials the client gave, decoded: (user, password).
    pub auth: Option<(String, String)>,
}

/// How the sink speaks TLS.
#[derive(Clone)]
pub enum SmtpTls {
    /// Plain text, no STARTTLS offered: a local relay.
    None,
    /// Offers STARTTLS, and AUTH PLAIN once encrypted (submission, 587).
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS from the first byte, AUTH PLAIN offered (465).
    Implicit(Arc<rustls::ServerConfig>),
}

/// A self-signed certificate for 127.0.0.1 and localhost: the server's
/// TLS config, and the certificate's PEM for the client to trust.
pub fn self_signed_tls() -> (Arc<rustls::ServerConfig>, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("a self-signed certificate");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("the server certificate");
    (Arc::new(config), ck.cert.pem())
}

/// A minimal SMTP server: enough of RFC 5321 (with STARTTLS, RFC 3207,
/// and AUTH PLAIN, RFC 4616) for what a relay does with our mail.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// A plain local relay.
    pub fn start() -> SmtpSink {
        Self::start_with(SmtpTls::None)
    }

    pub fn start_with(tls: SmtpTls) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let store = store.clone();
                let tls = tls.clone();
                std::thread::spawn(move || serve(stream, tls, store));
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn tls_stream(
    config: Arc<rustls::ServerConfig>,
    stream: TcpStream,
) -> Option<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let conn = rustls::ServerConnection::new(config).ok()?;
    Some(rustls::StreamOwned::new(conn, stream))
}

fn serve(stream: TcpStream, tls: SmtpTls, store: Arc<Mutex<Vec<Mail>>>) {
    match tls {
        SmtpTls::None => {
            smtp_session(stream, Session::Plain, &store);
        }
        SmtpTls::Implicit(config) => {
            if let Some(s) = tls_stream(config, stream) {
                smtp_session(s, Session::Secure { greet: true }, &store);
            }
        }
        SmtpTls::StartTls(config) => {
            if let Some(stream) = smtp_session(stream, Session::OffersStartTls, &store) {
                if let Some(s) = tls_stream(config, stream) {
                    smtp_session(s, Session::Secure { greet: false }, &store);
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Session {
    Plain,
    OffersStartTls,
    /// Encrypted; `greet`: send the 220 greeting (not after STARTTLS).
    Secure {
        greet: bool,
    },
}

/// Runs one session over `stream`; returns the stream when the client
/// asked for STARTTLS (the caller wraps it and goes on).
fn smtp_session<S: Read + Write>(stream: S, mode: Session, store: &Mutex<Vec<Mail>>) -> Option<S> {
    let secure = matches!(mode, Session::Secure { .. });
    let mut reader = BufReader::new(stream);
    if mode != (Session::Secure { greet: false }) {
        let _ = reader.get_mut().write_all(b"220 sink ESMTP\r\n");
        let _ = reader.get_mut().flush();
    }
    let (mut from, mut to, mut auth) = (String::new(), Vec::new(), None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            match mode {
                Session::Plain => b"250-sink\r\n250 8BITMIME\r\n",
                Session::OffersStartTls => b"250-sink\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
                Session::Secure { .. } => b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
            }
        } else if upper.starts_with("STARTTLS") && mode == Session::OffersStartTls {
            let _ = reader.get_mut().write_all(b"220 go ahead\r\n");
            let _ = reader.get_mut().flush();
            return Some(reader.into_inner());
        } else if upper.starts_with("AUTH PLAIN ") && secure {
            auth = decode_plain(line[11..].trim());
            if auth.is_some() {
                b"235 authenticated\r\n"
            } else {
                b"535 bad credentials\r\n"
            }
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            let _ = reader.get_mut().write_all(b"354 go on\r\n");
            let _ = reader.get_mut().flush();
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return None;
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
                at: Instant::now(),
                tls: secure,
                auth: auth.clone(),
            });
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = reader.get_mut().write_all(b"221 bye\r\n");
            let _ = reader.get_mut().flush();
            return None;
        } else {
            b"250 OK\r\n"
        };
        let _ = reader.get_mut().write_all(reply);
        let _ = reader.get_mut().flush();
    }
}

/// AUTH PLAIN's base64 of `authzid NUL user NUL password`.
fn decode_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut parts = raw.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, password))
}
