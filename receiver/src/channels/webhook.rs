//! Generic webhook: the normalised alert document as JSON, with configured
//! headers and, given a shared secret, an HMAC-SHA256 signature of the body
//! in `X-LLMChat-Signature: sha256=<hex>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{http_outcome, transport_error, SendError};
use crate::config::WebhookConfig;
use crate::payload::Notice;

pub const SIGNATURE_HEADER: &str = "X-LLMChat-Signature";

pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
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
