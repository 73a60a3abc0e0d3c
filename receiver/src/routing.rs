//! Which channels an alert goes to: the first route whose matchers all
//! match its labels (by default the guide's getNotificationChannels by
//! severity); an alert without a known severity gets the default one.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::channels::ChannelKind;
use crate::channels::Senders;
use crate::config::RoutingConfig;
use crate::payload::{Alert, Delivery, Notice, Status, Webhook};

/// The severity used for routing, email recipients and subjects.
pub fn severity(alert: &Alert, config: &RoutingConfig) -> String {
    match alert.labels.get("severity").map(String::as_str) {
        Some(s @ ("critical" | "warning" | "info")) => s.to_string(),
        _ => config.default_severity.clone(),
    }
}

/// The channels of the first matching route, and that route's index
/// (whose templates and language apply).
pub fn route(
    alert: &Alert,
    severity: &str,
    config: &RoutingConfig,
) -> (Option<usize>, Vec<ChannelKind>) {
    match config.routes.iter().position(|r| {
        r.matchers.iter().all(|(k, v)| {
            let value = if k == "severity" {
                Some(severity)
            } else {
                alert.labels.get(k).map(String::as_str)
            };
            value == Some(v.as_str())
        })
    }) {
        Some(i) => (Some(i), config.routes[i].channels.clone()),
        None => (None, Vec::new()),
    }
}

pub fn channels(alert: &Alert, severity: &str, config: &RoutingConfig) -> Vec<ChannelKind> {
    route(alert, severity, config).1
}

/// One message a post makes: to one channel, one alert or one group.
#[derive(Debug)]
pub struct Planned {
    pub channel: ChannelKind,
    pub delivery: Delivery,
    pub dedup_key: String,
    pub severity: String,
    pub status: &'static str,
}

/// The messages of one post: per alert and routed channel that wants it,
/// except that a channel that groups (email) gets one message per route
/// and group key with all of that group's alerts. `only` sends every
/// alert to that one channel, whatever the routes say (`render`).
pub fn plan(
    hook: &Webhook,
    config: &RoutingConfig,
    senders: &Senders,
    only: Option<ChannelKind>,
) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut groups: BTreeMap<(ChannelKind, Option<usize>, String), Vec<Notice>> = BTreeMap::new();
    for alert in &hook.alerts {
        let severity = severity(alert, config);
        let notice = Notice::new(hook, alert, &severity);
        let (route_index, mut channels) = route(alert, &severity, config);
        if let Some(c) = only {
            channels = vec![c];
        }
        for channel in channels {
            let Some(sender) = senders.get(channel) else {
                continue;
            };
            if only.is_none() && !sender.wants(&notice) {
                continue;
            }
            if let Some(key) = sender.group(&notice) {
                groups
                    .entry((channel, route_index, key))
                    .or_default()
                    .push(notice.clone());
                continue;
            }
            out.push(Planned {
                channel,
                dedup_key: notice.dedup_key(alert.status, channel.as_str()),
                severity: severity.clone(),
                status: alert.status.as_str(),
                delivery: Delivery::one(notice.clone(), route_index),
            });
        }
    }
    for ((channel, route, key), notices) in groups {
        // The same alerts in the same states are the same message: a
        // repeated post (Alertmanager's retry, an HA pair) is a duplicate.
        let mut states: Vec<String> = notices
            .iter()
            .map(|n| format!("{}|{}|{}", n.fingerprint, n.status.as_str(), n.starts_at))
            .collect();
        states.sort();
        let digest = hex::encode(Sha256::digest(
            format!(
                "{}\0{key}\0{route:?}\0{}",
                hook.group_key,
                states.join("\0")
            )
            .as_bytes(),
        ));
        let firing = notices.iter().any(|n| n.status == Status::Firing);
        out.push(Planned {
            channel,
            dedup_key: format!("group|{digest}|{}", channel.as_str()),
            severity: notices[0].severity.clone(),
            status: if firing { "firing" } else { "resolved" },
            delivery: Delivery { route, notices },
        });
    }
    out
}

/// What the fuzz target (`receiver/fuzz`) and the corpus test run on any
/// bytes: parse; a body that is taken becomes notices with subjects and
/// stored deliveries that read back, as the webhook handler and the
/// worker do with it. Panics only where the receiver would.
pub fn fuzz_one(body: &[u8]) {
    let Ok(hook) = crate::payload::parse(body) else {
        return;
    };
    for alert in &hook.alerts {
        let severity = severity(alert, &Default::default());
        let notice = Notice::new(&hook, alert, &severity);
        let _ = notice.subject();
        let stored =
            serde_json::to_string(&Delivery::one(notice, None)).expect("a delivery serialises");
        Delivery::parse(&stored).expect("a stored delivery reads back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_fuzz_corpus_and_its_mutations_never_panic() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/webhook_body");
        let ran = llmchat_tests::fuzz::run_corpus(
            &corpus,
            std::time::Duration::from_secs(5),
            super::fuzz_one,
        );
        assert!(ran > 100, "{ran} inputs");
    }

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            status: crate::payload::Status::Firing,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            annotations: BTreeMap::new(),
            starts_at: "2026-11-26T10:00:00Z".into(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: "f".into(),
        }
    }

    #[test]
    fn default_routes_follow_the_guide() {
        let c = RoutingConfig::default();
        let route = |labels: &[(&str, &str)]| {
            let a = alert(labels);
            let s = severity(&a, &c);
            (s.clone(), channels(&a, &s, &c))
        };
        use ChannelKind::*;
        assert_eq!(
            route(&[("severity", "critical")]),
            ("critical".into(), vec![Email, Slack, Webhook])
        );
        assert_eq!(
            route(&[("severity", "warning")]),
            ("warning".into(), vec![Slack, Webhook])
        );
        assert_eq!(
            route(&[("severity", "info")]),
            ("info".into(), vec![Webhook])
        );
        assert_eq!(route(&[]), ("warning".into(), vec![Slack, Webhook]));
        assert_eq!(
            route(&[("severity", "page")]),
            ("warning".into(), vec![Slack, Webhook])
        );
    }
}
