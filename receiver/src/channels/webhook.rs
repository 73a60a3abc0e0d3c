//! Generic webhook: the normalised alert document as JSON, with configured
//! headers and, given a shared secret, an HMAC-SHA256 signature of the body
//! in `X-LLMChat-Signature: sha256=<hex>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{http_outcome, transport_error, SendError};
use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{Channel, ChannelError, ChannelKind, ChannelsConfig, Shared};
use crate::payload::Notice;

pub const SIGNATURE_HEADER: &str = "X-LLMChat-Signature";

pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Shared secret for the `X-LLMChat-Signature: sha256=<hex>` header.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    #[serde(default = "crate::config::yes")]
    pub send_resolved: bool,
}

/// The channel's line in [`super::ALL`].
pub fn build(
    config: &ChannelsConfig,
    shared: &Shared,
) -> Result<Option<Box<dyn Channel>>, ChannelError> {
    Ok(config.webhook.as_ref().map(|c| {
        Box::new(Webhook {
            http: shared.http.clone(),
            config: c.clone(),
        }) as Box<dyn Channel>
    }))
}

pub struct Webhook {
    http: reqwest::Client,
    config: WebhookConfig,
}

impl Channel for Webhook {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn send_resolved(&self) -> bool {
        self.config.send_resolved
    }

    fn render(&self, notice: &Notice) -> Result<String, SendError> {
        serde_json::to_string(notice).map_err(|e| SendError::Permanent(e.to_string()))
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(send(&self.http, &self.config, notice))
    }
}

pub async fn send(
    http: &reqwest::Client,
    c: &WebhookConfig,
    notice: &Notice,
) -> Result<(), SendError> {
    let body = serde_json::to_vec(notice).map_err(|e| SendError::Permanent(e.to_string()))?;
    let mut req = http
        .post(&c.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (k, v) in &c.headers {
        req = req.header(k, v);
    }
    if let Some(secret) = &c.hmac_secret {
        req = req.header(SIGNATURE_HEADER, signature(secret, &body));
    }
    let resp = req.body(body).send().await.map_err(transport_error)?;
    http_outcome(&resp)
}
