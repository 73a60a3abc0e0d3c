//! Which channels an alert goes to: the first route whose matchers all
//! match its labels (by default the guide's getNotificationChannels by
//! severity); an alert without a known severity gets the default one.

use crate::config::{Channel, RoutingConfig};
use crate::payload::Alert;

/// The severity used for routing, email recipients and subjects.
pub fn severity(alert: &Alert, config: &RoutingConfig) -> String {
    match alert.labels.get("severity").map(String::as_str) {
        Some(s @ ("critical" | "warning" | "info")) => s.to_string(),
        _ => config.default_severity.clone(),
    }
}

pub fn channels(alert: &Alert, severity: &str, config: &RoutingConfig) -> Vec<Channel> {
    config
        .routes
        .iter()
        .find(|r| {
            r.matchers.iter().all(|(k, v)| {
                let value = if k == "severity" {
                    Some(severity)
                } else {
                    alert.labels.get(k).map(String::as_str)
                };
                value == Some(v.as_str())
            })
        })
        .map(|r| r.channels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        use Channel::*;
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
