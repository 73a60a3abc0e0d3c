//! Email over SMTP (lettre): STARTTLS, implicit TLS or plain for a local
//! relay, optional authentication; recipients per severity, as the guide's
//! getAlertEmails.
//!
//! By default the alerts of one Alertmanager group that share a recipient
//! list go out as one email (the count in the subject); `per_alert = true`
//! sends one per alert. Each email is multipart text and HTML from the
//! templates. Emails about one group thread in mail clients: the group's
//! first email is the thread's root (its `Message-ID` kept in the store),
//! later ones, the resolve among them, carry `In-Reply-To`/`References`.

use llmchat_common::settings::Settings;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{SUBMISSIONS_PORT, SUBMISSION_PORT};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;
use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{Channel, ChannelError, ChannelKind, ChannelSpec, Shared};
use crate::payload::{Delivery, Notice, Status};
use crate::store::{Store, Thread};
use crate::templates::context::{cut, one_line};
use crate::templates::{Language, TemplateSpec, Templates};
use llmchat_common::{invalid, ConfigError};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// `[channels.email]`: the relay, the sender and the recipients (no
/// defaults: they are the deployment's).
#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(deny_unknown_fields)]
#[setting(no_default)]
pub struct EmailConfig {
    pub smtp_host: String,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM certificates to trust for the relay, besides the public roots
    /// (an internal relay with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The relay's user name.
    #[setting(env = "LLMCHAT_RECEIVER_SMTP_USERNAME")]
    #[serde(default)]
    pub username: Option<String>,
    /// The relay's password.
    #[setting(env = "LLMCHAT_RECEIVER_SMTP_PASSWORD")]
    #[serde(default)]
    pub password: Option<String>,
    pub from: String,
    /// Recipients per severity (the guide's getAlertEmails).
    pub to: BTreeMap<String, Vec<String>>,
    #[serde(default = "crate::channels::yes")]
    pub send_resolved: bool,
    /// One email per alert instead of one per group and recipient list.
    #[serde(default)]
    pub per_alert: bool,
    /// Send `username`/`password` over a connection without TLS to a relay
    /// that is not on this host (refused by default: anyone on the path
    /// reads them).
    #[serde(default)]
    pub allow_plaintext_auth: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on the submission port.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS, for a local relay.
    None,
}

/// Why `[channels.email]` cannot be used; each keeps its source.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("smtp_host: not a usable relay")]
    Relay(#[source] lettre::transport::smtp::Error),
    #[error("ca_file {path}: cannot read it")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ca_file {path}: not a PEM certificate")]
    Certificate {
        path: PathBuf,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("tls = \"none\" with username/password would send them in clear to {host}; use starttls or implicit, a relay on this host, or set allow_plaintext_auth = true")]
    PlaintextAuth { host: String },
    #[error("from {value:?}: not a mailbox")]
    From {
        value: String,
        #[source]
        source: lettre::address::AddressError,
    },
}

/// The channel's line in [`super::ALL`].
/// The email's templates: subject, plain text, HTML (HTML-escaped).
pub const SUBJECT: TemplateSpec = TemplateSpec {
    name: "email_subject",
    suffix: "txt",
    builtin: &[
        (
            Language::En,
            include_str!("../../templates/en/email_subject.txt"),
        ),
        (
            Language::Zh,
            include_str!("../../templates/zh/email_subject.txt"),
        ),
    ],
};
pub const TEXT: TemplateSpec = TemplateSpec {
    name: "email_text",
    suffix: "txt",
    builtin: &[
        (
            Language::En,
            include_str!("../../templates/en/email_text.txt"),
        ),
        (
            Language::Zh,
            include_str!("../../templates/zh/email_text.txt"),
        ),
    ],
};
pub const HTML: TemplateSpec = TemplateSpec {
    name: "email_html",
    suffix: "html",
    builtin: &[
        (Language::En, include_str!("../../templates/en/email.html")),
        (Language::Zh, include_str!("../../templates/zh/email.html")),
    ],
};

/// The email channel's line in the `channels!` table.
pub struct EmailSpec;

impl ChannelSpec for EmailSpec {
    type Config = EmailConfig;
    const TEMPLATES: &'static [&'static TemplateSpec] = &[&SUBJECT, &TEXT, &HTML];
    /// SMTP credentials go into `[channels.email]`, which must exist.
    fn section_from_env(
        _key: &str,
        var: &'static str,
        _value: String,
    ) -> Result<EmailConfig, ConfigError> {
        Err(invalid(
            "channels.email",
            var,
            "SMTP credentials are set but [channels.email] is not",
        ))
    }

    fn placeholder() -> EmailConfig {
        EmailConfig {
            smtp_host: "localhost".into(),
            smtp_port: None,
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password: None,
            from: "llmchat-receiver@localhost".into(),
            to: BTreeMap::from([("default".into(), vec!["oncall@localhost".into()])]),
            send_resolved: true,
            per_alert: false,
            allow_plaintext_auth: false,
        }
    }

    fn build(config: &EmailConfig, shared: &Shared) -> Result<Box<dyn Channel>, ChannelError> {
        Ok(Box::new(Email::new(
            config,
            shared.timeout,
            shared.templates.clone(),
        )?))
    }
}

impl Channel for Email {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn group(&self, notice: &Notice) -> Option<String> {
        if self.config.per_alert {
            return None;
        }
        Some(
            self.recipients(&notice.severity)
                .map(|l| l.join(","))
                .unwrap_or_default(),
        )
    }

    fn render(&self, d: &Delivery) -> Result<String, SendError> {
        let m = self.compose(d);
        Ok(format!(
            "Subject: {}\n\n--- text/plain ---\n{}\n--- text/html ---\n{}",
            m.subject, m.text, m.html
        ))
    }

    fn send<'a>(
        &'a self,
        d: &'a Delivery,
        store: &'a Store,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(Email::send(self, d, store))
    }
}

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: EmailConfig,
    templates: Arc<Templates>,
}

/// One email's rendered parts.
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The longest subject sent; mail clients show far less.
const MAX_SUBJECT: usize = 250;

/// A subject on one line, whatever the template or the alert put in it.
fn subject_line(s: &str) -> String {
    let line = one_line(s);
    cut(
        line.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .as_str(),
        MAX_SUBJECT,
    )
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

/// TLS that trusts the public roots and the certificates of `ca_file`.
fn tls_with_ca(host: &str, ca_file: &std::path::Path) -> Result<TlsParameters, EmailError> {
    let pem = std::fs::read(ca_file).map_err(|source| EmailError::CaFile {
        path: ca_file.to_owned(),
        source,
    })?;
    let certificate = |source| EmailError::Certificate {
        path: ca_file.to_owned(),
        source,
    };
    let cert = Certificate::from_pem(&pem).map_err(certificate)?;
    TlsParameters::builder(host.to_string())
        .add_root_certificate(cert)
        .build()
        .map_err(certificate)
}

impl Email {
    pub fn new(
        c: &EmailConfig,
        timeout: Duration,
        templates: Arc<Templates>,
    ) -> Result<Self, EmailError> {
        let loopback = c.smtp_host == "localhost"
            || c.smtp_host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if c.tls == SmtpTls::None && c.username.is_some() && !loopback && !c.allow_plaintext_auth {
            return Err(EmailError::PlaintextAuth {
                host: c.smtp_host.clone(),
            });
        }
        let mut builder = match (c.tls, &c.ca_file) {
            (SmtpTls::Starttls, None) => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.smtp_host)
                    .map_err(EmailError::Relay)?
            }
            (SmtpTls::Implicit, None) => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.smtp_host)
                .map_err(EmailError::Relay)?,
            (SmtpTls::None, _) => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host)
            }
            (tls, Some(ca_file)) => {
                let params = tls_with_ca(&c.smtp_host, ca_file)?;
                let (tls, port) = if tls == SmtpTls::Implicit {
                    (Tls::Wrapper(params), SUBMISSIONS_PORT)
                } else {
                    (Tls::Required(params), SUBMISSION_PORT)
                };
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host)
                    .port(port)
                    .tls(tls)
            }
        };
        if let Some(port) = c.smtp_port {
            builder = builder.port(port);
        }
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let from = c.from.parse().map_err(|source| EmailError::From {
            value: c.from.clone(),
            source,
        })?;
        Ok(Email {
            transport: builder.timeout(Some(timeout)).build(),
            from,
            config: c.clone(),
            templates,
        })
    }

    fn recipients(&self, severity: &str) -> Option<&Vec<String>> {
        self.config
            .to
            .get(severity)
            .or_else(|| self.config.to.get("default"))
            .filter(|list| !list.is_empty())
    }

    /// Subject, text and HTML from the templates (the built-in ones when
    /// a file fails).
    pub fn compose(&self, d: &Delivery) -> Composed {
        let ctx = self.templates.context(&d.notices, d.route);
        let render = |name| {
            self.templates
                .render(name, d.route, "email", &ctx, |_| Ok(()))
                .unwrap_or_default()
        };
        let mut subject = subject_line(&render(&SUBJECT));
        if subject.is_empty() {
            subject = subject_line(&format!("[LLMChat] {}", d.first().alertname));
        }
        Composed {
            subject,
            text: render(&TEXT),
            html: render(&HTML),
        }
    }

    /// The thread an email belongs to: its group (or alert) and recipients.
    fn thread_key(&self, d: &Delivery, to: &[String]) -> String {
        let n = d.first();
        let what = if self.config.per_alert {
            format!("{}|{}", n.fingerprint, n.starts_at)
        } else {
            n.group_key.clone()
        };
        format!(
            "email|{}",
            hash(&[
                &what,
                &to.join(","),
                &d.route.map(|r| r.to_string()).unwrap_or_default()
            ])
        )
    }

    async fn send(&self, d: &Delivery, store: &Store) -> Result<(), SendError> {
        let severity = &d.first().severity;
        let to = self.recipients(severity).ok_or_else(|| {
            SendError::Permanent(format!("no recipients for severity {severity}"))
        })?;
        let m = self.compose(d);
        // The same outbox row gets the same Message-ID on every attempt, so
        // a root that failed once and was retried is still the root.
        let domain = self.from.email.domain().to_string();
        let payload = serde_json::to_string(d).unwrap_or_default();
        let message_id = format!("<{}@{domain}>", hash(&[&payload]));
        let key = self.thread_key(d, to);
        let all_resolved = d.notices.iter().all(|n| n.status == Status::Resolved);
        // Threading is a courtesy: a store that fails here must not hold
        // the email back.
        let root = match store.thread(&key).await {
            Ok(Some(t)) => Some(t.message_ref),
            Ok(None) if !all_resolved => {
                let mine = Thread {
                    target: String::new(),
                    message_ref: message_id.clone(),
                };
                store
                    .put_thread_once(&key, &mine)
                    .await
                    .ok()
                    .map(|t| t.message_ref)
            }
            _ => None,
        }
        .filter(|root| *root != message_id);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(m.subject)
            .message_id(Some(message_id));
        if let Some(root) = root {
            builder = builder.in_reply_to(root.clone()).references(root);
        }
        for addr in to {
            let mailbox: Mailbox = addr
                .parse()
                .map_err(|e| SendError::Permanent(format!("recipient {addr:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let message = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(m.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(m.html),
                    ),
            )
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| {
            if e.is_permanent() {
                SendError::Permanent(e.to_string())
            } else {
                SendError::Retry {
                    reason: e.to_string(),
                    after: None,
                }
            }
        })?;
        if all_resolved {
            // The group is over: its next firing starts a new thread.
            let _ = store.delete_thread(&key).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod plaintext_tests {
    use super::*;

    fn config(host: &str, allow: bool) -> EmailConfig {
        EmailConfig {
            smtp_host: host.into(),
            smtp_port: Some(25),
            tls: SmtpTls::None,
            ca_file: None,
            username: Some("alerts".into()),
            password: Some("relay-password".into()),
            from: "a@example.com".into(),
            to: BTreeMap::new(),
            send_resolved: true,
            per_alert: false,
            allow_plaintext_auth: allow,
        }
    }

    #[test]
    fn credentials_in_clear_only_to_this_host_or_when_allowed() {
        let templates = || {
            Arc::new(
                Templates::new(
                    &Default::default(),
                    &[],
                    &crate::channels::templates(),
                    &[],
                    Default::default(),
                )
                .unwrap(),
            )
        };
        let t = Duration::from_secs(1);
        let e = Email::new(&config("smtp.example.com", false), t, templates())
            .err()
            .expect("refused");
        assert!(matches!(e, EmailError::PlaintextAuth { .. }));
        assert!(!e.to_string().contains("relay-password"));
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            assert!(
                Email::new(&config(host, false), t, templates()).is_ok(),
                "{host}"
            );
        }
        assert!(Email::new(&config("smtp.example.com", true), t, templates()).is_ok());
    }
}
