//! Email over SMTP (lettre): STARTTLS, implicit TLS or plain for a local
//! relay, optional authentication; a multipart text+HTML body; recipients
//! per severity, as the guide's getAlertEmails.

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

use super::{Channel, ChannelError, ChannelKind, ChannelsConfig, Shared};
use crate::payload::{Notice, Status};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    pub from: String,
    /// Recipients per severity (the guide's getAlertEmails).
    pub to: BTreeMap<String, Vec<String>>,
    #[serde(default = "crate::config::yes")]
    pub send_resolved: bool,
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
    #[error("from {value:?}: not a mailbox")]
    From {
        value: String,
        #[source]
        source: lettre::address::AddressError,
    },
}

/// The channel's line in [`super::ALL`].
pub fn build(
    config: &ChannelsConfig,
    shared: &Shared,
) -> Result<Option<Box<dyn Channel>>, ChannelError> {
    match &config.email {
        Some(c) => Ok(Some(Box::new(Email::new(c, shared.timeout)?))),
        None => Ok(None),
    }
}

impl Channel for Email {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn render(&self, notice: &Notice) -> Result<String, SendError> {
        Ok(Self::bodies(notice).0)
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(Email::send(self, notice))
    }
}

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: EmailConfig,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    pub fn new(c: &EmailConfig, timeout: Duration) -> Result<Self, EmailError> {
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
        })
    }

    fn bodies(notice: &Notice) -> (String, String) {
        let state = match notice.status {
            Status::Firing => "FIRING",
            Status::Resolved => "RESOLVED",
        };
        let labels: Vec<String> = notice
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let text = format!(
            "{state}: {}\nSeverity: {}\nSummary: {}\n\n{}\n\nLabels: {}\nStarted: {}\n{}Source: {}\n",
            notice.alertname,
            notice.severity,
            notice.summary,
            notice.description,
            labels.join(", "),
            notice.starts_at,
            notice.ends_at.as_ref().map(|e| format!("Ended: {e}\n")).unwrap_or_default(),
            notice.generator_url,
        );
        let rows: String = notice
            .labels
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><td>{}</td><td>{}</td></tr>",
                    html_escape(k),
                    html_escape(v)
                )
            })
            .collect();
        let html = format!(
            "<html><body><h2>{state}: {}</h2><p><b>Severity:</b> {}</p><p><b>{}</b></p><p>{}</p>\
             <table>{rows}</table><p><a href=\"{}\">Source</a></p></body></html>",
            html_escape(&notice.alertname),
            html_escape(&notice.severity),
            html_escape(&notice.summary),
            html_escape(&notice.description),
            html_escape(&notice.generator_url),
        );
        (text, html)
    }

    async fn send(&self, notice: &Notice) -> Result<(), SendError> {
        let to = self
            .config
            .to
            .get(&notice.severity)
            .or_else(|| self.config.to.get("default"))
            .filter(|list| !list.is_empty())
            .ok_or_else(|| {
                SendError::Permanent(format!("no recipients for severity {}", notice.severity))
            })?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(notice.subject());
        for addr in to {
            let mailbox: Mailbox = addr
                .parse()
                .map_err(|e| SendError::Permanent(format!("recipient {addr:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let (text, html) = Self::bodies(notice);
        let message = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                SendError::Permanent(e.to_string())
            } else {
                SendError::Retry {
                    reason: e.to_string(),
                    after: None,
                }
            }
        })
    }
}
