//! Generic webhook: the normalised alert document as JSON (with its
//! `links`), with configured headers and, given a shared secret, an
//! HMAC-SHA256 signature of the body in `X-LLMChat-Signature: sha256=<hex>`.
//! Optionally the body is a template (`webhook_body` under
//! `[notify.templates]` or a route's templates, JSON-escaped) and headers
//! are templates too (`header_templates`, one line each).

use llmchat_common::settings::Settings;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{http_outcome, transport_error, SendError};
use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{Channel, ChannelError, ChannelKind, ChannelSpec, RecoveryOutcomes, Shared};
use crate::payload::Delivery;
use crate::store::Store;
use crate::templates::context::{cut, one_line};
use crate::templates::{InlineTemplate, MessageContext, TemplateSpec, Templates};
use llmchat_common::{invalid, ConfigError};
use std::sync::Arc;

pub const SIGNATURE_HEADER: &str = "X-LLMChat-Signature";

pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `[channels.webhook]`: where every alert goes as JSON (or a template).
#[derive(Debug, Clone, Deserialize, Settings)]
#[serde(deny_unknown_fields)]
#[setting(no_default)]
pub struct WebhookConfig {
    /// Where to post. The variable alone configures the webhook (or
    /// overrides the file's).
    #[setting(env = "LLMCHAT_RECEIVER_WEBHOOK_URL")]
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Shared secret for the `X-LLMChat-Signature: sha256=<hex>` header.
    #[setting(env = "LLMCHAT_RECEIVER_WEBHOOK_HMAC_SECRET")]
    #[serde(default)]
    pub hmac_secret: Option<String>,
    #[serde(default = "crate::channels::yes")]
    pub send_resolved: bool,
    /// Headers whose values are templates, e.g.
    /// `{ "X-Alert" = "{{ alerts[0].alertname }}" }`.
    #[serde(default)]
    pub header_templates: BTreeMap<String, String>,
    /// The Content-Type of a templated body.
    #[serde(default = "json_type")]
    pub body_content_type: String,
}

fn json_type() -> String {
    "application/json".into()
}

impl WebhookConfig {
    /// An http(s) URL, and header names that are header names.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(invalid(
                "channels.webhook.url",
                "(not shown)",
                "expected an http(s) URL",
            ));
        }
        for name in self.header_templates.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    "channels.webhook.header_templates",
                    name,
                    "not a header name",
                ));
            }
        }
        Ok(())
    }

    pub fn new(url: String) -> Self {
        WebhookConfig {
            url,
            headers: BTreeMap::new(),
            hmac_secret: None,
            send_resolved: true,
            header_templates: BTreeMap::new(),
            body_content_type: json_type(),
        }
    }
}

/// The channel's line in [`super::ALL`].
/// The webhook's body template (JSON-escaped); without one the body is
/// the alert document itself, so it has no built-in.
pub const BODY: TemplateSpec = TemplateSpec {
    name: "webhook_body",
    suffix: "json",
    builtin: &[],
};

/// The generic webhook's line in the `channels!` table.
pub struct WebhookSpec;

impl ChannelSpec for WebhookSpec {
    type Config = WebhookConfig;
    const TEMPLATES: &'static [&'static TemplateSpec] = &[&BODY];
    /// The machine-readable record: every outcome.
    const RECOVERY_OUTCOMES: RecoveryOutcomes = RecoveryOutcomes::Always;
    /// The URL's variable alone configures the webhook; the HMAC secret
    /// needs a webhook.
    fn section_from_env(
        key: &str,
        var: &'static str,
        value: String,
    ) -> Result<WebhookConfig, ConfigError> {
        match key {
            "url" => Ok(WebhookConfig::new(value)),
            _ => Err(invalid(
                "channels.webhook",
                var,
                "an HMAC secret is set but no webhook URL",
            )),
        }
    }

    fn validate(config: &WebhookConfig) -> Result<(), ConfigError> {
        config.check()
    }

    /// `header_templates`: one template per header, `header/<name>.txt`.
    fn inline_templates(config: &WebhookConfig) -> Vec<InlineTemplate> {
        config
            .header_templates
            .iter()
            .map(|(header, source)| InlineTemplate {
                key: format!("channels.webhook.header_templates.{header}"),
                id: header_template_id(header),
                source: source.clone(),
            })
            .collect()
    }

    fn placeholder() -> WebhookConfig {
        WebhookConfig::new("http://localhost/".into())
    }

    fn build(config: &WebhookConfig, shared: &Shared) -> Result<Box<dyn Channel>, ChannelError> {
        Ok(Box::new(Webhook {
            http: shared.http.clone(),
            config: config.clone(),
            templates: shared.templates.clone(),
        }))
    }
}

fn header_template_id(header: &str) -> String {
    format!("header/{header}.txt")
}

pub struct Webhook {
    http: reqwest::Client,
    config: WebhookConfig,
    templates: Arc<Templates>,
}

/// What one send posts: the body, its Content-Type and the templated headers.
pub struct Outgoing {
    pub body: Vec<u8>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
}

impl Webhook {
    /// The request for a delivery, from one template context: the body of
    /// the route's or global template when there is one that renders, else
    /// the alert document with its links; and the header templates.
    pub fn outgoing(&self, d: &Delivery) -> Result<Outgoing, SendError> {
        let ctx = self.templates.context(&d.notices, d.route);
        let headers = self.headers(&ctx);
        if self.templates.has_override(&BODY, d.route) {
            if let Some(body) = self
                .templates
                .render(&BODY, d.route, "webhook", &ctx, |_| Ok(()))
            {
                return Ok(Outgoing {
                    body: body.into_bytes(),
                    content_type: self.config.body_content_type.clone(),
                    headers,
                });
            }
        }
        let mut doc =
            serde_json::to_value(d.first()).map_err(|e| SendError::Permanent(e.to_string()))?;
        // The outbox's own bookkeeping, not part of the document: the
        // recovery outcome says what it is by its alertname.
        if let Some(fields) = doc.as_object_mut() {
            fields.remove("kind");
        }
        if let Some(a) = ctx.alerts.first() {
            doc["links"] = serde_json::to_value(&a.links).unwrap_or_default();
        }
        // A digest (the per-minute budget folded the rest of a post): how
        // many alerts it stands for, and where to see them.
        if d.notices.len() > 1 {
            doc["digest"] = serde_json::json!({
                "alerts": ctx.count as u64 + ctx.truncated_alerts,
                "alertnames": d.notices.iter().map(|n| n.alertname.as_str()).collect::<std::collections::BTreeSet<_>>(),
                "link": ctx.group_link,
            });
        }
        let body = serde_json::to_vec(&doc).map_err(|e| SendError::Permanent(e.to_string()))?;
        Ok(Outgoing {
            body,
            content_type: json_type(),
            headers,
        })
    }
}

impl Webhook {
    /// The header templates, rendered; a header that fails is counted and
    /// left out.
    fn headers(&self, ctx: &MessageContext) -> Vec<(String, String)> {
        self.config
            .header_templates
            .keys()
            .filter_map(|h| {
                match self
                    .templates
                    .render_inline(&header_template_id(h), "webhook", ctx)
                {
                    // A header value is one line, whatever the alert held.
                    Ok(v) => Some((h.clone(), cut(&one_line(&v), 1000))),
                    Err(error) => {
                        tracing::warn!(header = %h, error = %format!("{error:#}"), "webhook header template failed; header left out");
                        None
                    }
                }
            })
            .collect()
    }
}

impl Channel for Webhook {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn render(&self, d: &Delivery) -> Result<String, SendError> {
        let o = self.outgoing(d)?;
        let mut out = format!("Content-Type: {}\n", o.content_type);
        for (k, v) in &o.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&o.body));
        Ok(out)
    }

    fn send<'a>(
        &'a self,
        d: &'a Delivery,
        _store: &'a Store,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send_one(d))
    }
}

impl Webhook {
    async fn send_one(&self, d: &Delivery) -> Result<(), SendError> {
        let c = &self.config;
        let Outgoing {
            body,
            content_type,
            headers,
        } = self.outgoing(d)?;
        let mut req = self
            .http
            .post(&c.url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (k, v) in &c.headers {
            req = req.header(k, v);
        }
        for (k, v) in headers {
            // Control characters are gone already; a value reqwest still
            // refuses is left out rather than failing the send.
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&v) {
                req = req.header(k, value);
            }
        }
        if let Some(secret) = &c.hmac_secret {
            req = req.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        let resp = req.body(body).send().await.map_err(transport_error)?;
        http_outcome(&resp)
    }
}
