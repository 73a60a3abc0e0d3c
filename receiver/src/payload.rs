//! Alertmanager's webhook payload, version 4, and what one alert becomes
//! for the channels. Unknown fields are ignored; a missing or mistyped
//! field is refused with its path named.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `endsAt` of an alert that is still firing.
pub const STILL_FIRING: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: Status,
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("invalid JSON at {path}: {message}")]
    Json { path: String, message: String },
    #[error("unsupported payload version {0:?}; expected \"4\"")]
    Version(String),
    #[error("alerts[{index}].{field} must not be empty")]
    Empty { index: usize, field: &'static str },
}

/// Parses and checks a webhook body.
pub fn parse(body: &[u8]) -> Result<Webhook, PayloadError> {
    // The fast path; only a body that fails is parsed again to find the
    // path of the problem (path tracking costs on every field).
    let hook = match serde_json::from_slice::<Webhook>(body) {
        Ok(hook) => hook,
        Err(_) => return Err(locate(body)),
    };
    check(hook)
}

/// The error of a body that does not parse, with the field's path.
fn locate(body: &[u8]) -> PayloadError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let located = serde_path_to_error::deserialize::<_, Webhook>(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            PayloadError::Json {
                path: if path == "." { "(body)".into() } else { path },
                message: inner.to_string(),
            }
        })
        .and_then(|_| {
            de.end().map_err(|e| PayloadError::Json {
                path: "(body)".into(),
                message: e.to_string(),
            })
        });
    match located {
        Err(e) => e,
        Ok(()) => PayloadError::Json {
            path: "(body)".into(),
            message: "not a valid payload".into(),
        },
    }
}

fn check(hook: Webhook) -> Result<Webhook, PayloadError> {
    if hook.version != "4" {
        return Err(PayloadError::Version(hook.version));
    }
    for (index, a) in hook.alerts.iter().enumerate() {
        if a.fingerprint.is_empty() {
            return Err(PayloadError::Empty {
                index,
                field: "fingerprint",
            });
        }
        if a.starts_at.is_empty() {
            return Err(PayloadError::Empty {
                index,
                field: "startsAt",
            });
        }
    }
    Ok(hook)
}

/// One alert as the channels see it: the normalised document the generic
/// webhook posts, and what email and Slack render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// What the notice reports. Stored with the outbox's delivery; an
    /// alert's is left out, so the document is as Alertmanager's alert.
    #[serde(default, skip_serializing_if = "NoticeKind::is_alert")]
    pub kind: NoticeKind,
    pub alertname: String,
    pub status: Status,
    pub severity: String,
    pub summary: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// `None` while firing.
    pub ends_at: Option<String>,
    pub generator_url: String,
    pub fingerprint: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub external_url: String,
}

/// What a notice reports: channels and templates ask this, not the
/// alertname, whether a notice is an alert or a recovery action's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// An alert from Alertmanager.
    #[default]
    Alert,
    /// The outcome of a recovery action: Slack threads it under the alert
    /// that triggered it (its `trigger_fingerprint` label), templates see
    /// `kind = "recovery"`.
    RecoveryOutcome,
}

impl NoticeKind {
    pub fn is_alert(&self) -> bool {
        *self == NoticeKind::Alert
    }
}

impl Notice {
    pub fn new(hook: &Webhook, alert: &Alert, severity: &str) -> Self {
        Notice {
            kind: NoticeKind::Alert,
            alertname: alert
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "unnamed".into()),
            status: alert.status,
            severity: severity.to_string(),
            summary: alert
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_default(),
            description: alert
                .annotations
                .get("description")
                .cloned()
                .unwrap_or_default(),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at.clone(),
            ends_at: (!alert.ends_at.is_empty() && alert.ends_at != STILL_FIRING)
                .then(|| alert.ends_at.clone()),
            generator_url: alert.generator_url.clone(),
            fingerprint: alert.fingerprint.clone(),
            group_key: hook.group_key.clone(),
            truncated_alerts: hook.truncated_alerts,
            external_url: hook.external_url.clone(),
        }
    }

    /// The outbox's deduplication key of this alert's notification in one
    /// state to one channel: a repeated post of it is a no-op.
    pub fn dedup_key(&self, status: Status, channel: &str) -> String {
        format!(
            "{}|{}|{}|{}",
            self.fingerprint,
            status.as_str(),
            self.starts_at,
            channel
        )
    }

    /// `[LLMChat][CRITICAL] LLMChatHighErrorRate`, or `[RESOLVED]`.
    pub fn subject(&self) -> String {
        let tag = match self.status {
            Status::Resolved => "RESOLVED".to_string(),
            Status::Firing => self.severity.to_uppercase(),
        };
        format!("[LLMChat][{tag}] {}", self.alertname)
    }
}

/// What one outbox row delivers: one alert, or one group's alerts for a
/// channel that groups them (email); `route` is the index of the route
/// whose templates and language apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(default)]
    pub route: Option<usize>,
    pub notices: Vec<Notice>,
}

impl Delivery {
    pub fn one(notice: Notice, route: Option<usize>) -> Self {
        Delivery {
            route,
            notices: vec![notice],
        }
    }

    /// A stored payload: a delivery, or a single notice as receivers
    /// before 0.2 stored it.
    pub fn parse(payload: &str) -> Result<Delivery, StoredPayloadError> {
        let value: serde_json::Value = serde_json::from_str(payload)?;
        let delivery = if value.get("notices").is_some() {
            serde_json::from_value::<Delivery>(value)?
        } else {
            Delivery::one(serde_json::from_value::<Notice>(value)?, None)
        };
        if delivery.notices.is_empty() {
            return Err(StoredPayloadError::NoAlerts);
        }
        Ok(delivery)
    }

    /// The first alert (there is always one).
    pub fn first(&self) -> &Notice {
        &self.notices[0]
    }
}

/// Why an outbox row's payload cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredPayloadError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("no alerts")]
    NoAlerts,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"{"version":"4","groupKey":"{}:{alertname=\"X\"}","truncatedAlerts":0,"status":"firing","receiver":"llmchat","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093","alerts":[{"status":"firing","labels":{"alertname":"LLMChatHighErrorRate","severity":"critical"},"annotations":{"summary":"s"},"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"abc","extra":1}],"unknown":true}"#;

    #[test]
    fn parses_version_4_and_ignores_unknown_fields() {
        let hook = parse(SAMPLE.as_bytes()).unwrap();
        let n = Notice::new(&hook, &hook.alerts[0], "critical");
        assert_eq!(n.subject(), "[LLMChat][CRITICAL] LLMChatHighErrorRate");
        assert_eq!(n.ends_at, None);
    }

    #[test]
    fn stored_payloads_of_both_shapes_parse() {
        let hook = parse(SAMPLE.as_bytes()).unwrap();
        let n = Notice::new(&hook, &hook.alerts[0], "critical");
        let legacy = serde_json::to_string(&n).unwrap();
        assert_eq!(
            Delivery::parse(&legacy).unwrap(),
            Delivery::one(n.clone(), None)
        );
        let d = Delivery::one(n, Some(2));
        assert_eq!(
            Delivery::parse(&serde_json::to_string(&d).unwrap()).unwrap(),
            d
        );
        assert!(Delivery::parse(r#"{"notices":[]}"#).is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(br#"{"version":"4"}"#).unwrap_err().to_string();
        assert!(e.contains("groupKey"), "{e}");
        let bad = SAMPLE.replace(r#""fingerprint":"abc""#, r#""fingerprint":7"#);
        let e = parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("alerts[0].fingerprint"), "{e}");
        let e = parse(b"{not json").unwrap_err().to_string();
        assert!(e.starts_with("invalid JSON"), "{e}");
        let v3 = SAMPLE.replace(r#""version":"4""#, r#""version":"3""#);
        assert!(parse(v3.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("version"));
    }
}
