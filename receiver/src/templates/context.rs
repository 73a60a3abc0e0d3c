//! What a template sees: one message's alerts, made safe and linked.
//!
//! Everything an alert carries is untrusted here. Values are cut to a
//! bound (with an ellipsis), labels lose control characters (a CR/LF in a
//! label value must not fake a line or a header), and the links are built
//! by this code from configured base URLs, Alertmanager's external URL and
//! Prometheus' generator URL, only ever as http(s): an annotation cannot
//! smuggle a `javascript:` link into a button. Escaping for each format is
//! the template's auto-escaping (HTML, JSON) and the `slack` filter.

use std::collections::BTreeMap;
use std::time::SystemTime;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use super::{Language, LinkConfig};
use crate::payload::{Notice, NoticeKind, Status};

/// The most characters of one label or annotation value a message shows.
/// Slack allows 3,000 per text and mail clients wrap anything; a 100 KB
/// value is cut here, never the notification dropped.
pub const MAX_VALUE_CHARS: usize = 2000;

/// Annotations the templates show in their own place, not in the list.
const OWN_PLACE: [&str; 5] = [
    "summary",
    "description",
    "runbook_url",
    "dashboard",
    "dashboard_panel",
];

/// The template context of one message (one alert, or one email's group).
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext {
    pub language: &'static str,
    /// `firing` when any alert fires, else `resolved`.
    pub status: &'static str,
    /// `alert`, or `recovery` for the outcome of a recovery action.
    pub kind: &'static str,
    /// The highest severity among the firing alerts (or of all, when all
    /// resolved).
    pub severity: String,
    /// The alerts listed: at most [`MAX_LISTED`], firing first.
    pub alerts: Vec<AlertContext>,
    pub firing: Vec<AlertContext>,
    pub resolved: Vec<AlertContext>,
    /// Every alert of the message, listed or not.
    pub count: usize,
    pub firing_count: usize,
    pub resolved_count: usize,
    /// Alerts of the message beyond those listed ("and 9,500 more").
    pub unlisted: usize,
    /// Alertmanager's alerts view, filtered to the common alertname when
    /// there is one; empty without an http(s) external URL.
    pub group_link: String,
    /// The alertname all alerts share, or empty.
    pub common_alertname: String,
    /// Alerts Alertmanager left out of the group (`truncatedAlerts`).
    pub truncated_alerts: u64,
}

/// One alert as a template sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertContext {
    pub alertname: String,
    pub status: &'static str,
    pub severity: String,
    pub summary: String,
    pub description: String,
    /// Sorted by name.
    pub labels: Vec<Pair>,
    /// Without those shown in their own place (summary, description, links).
    pub annotations: Vec<Pair>,
    pub starts_at: String,
    pub ends_at: String,
    /// "12 min" for a resolved alert, in the message's language; empty if
    /// unknown.
    pub duration: String,
    pub links: Links,
    /// The links that exist, in button order.
    pub link_list: Vec<LinkItem>,
    pub fingerprint: String,
}

/// One link of [`AlertContext::link_list`]; `kind` is runbook,
/// dashboard, silence or graph (templates map it to a title).
#[derive(Debug, Clone, Serialize)]
pub struct LinkItem {
    pub kind: &'static str,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub name: String,
    pub value: String,
}

/// Absolute http(s) URLs, or empty when there is none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Links {
    pub runbook: String,
    pub dashboard: String,
    pub silence: String,
    pub graph: String,
}

/// Cuts `s` to `max` characters, ending in an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().nth(max).is_none() {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A label value on one line: control characters (CR, LF, tabs, escape
/// sequences) become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An annotation's text: line breaks kept as `\n`, other control
/// characters gone.
fn text_block(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// Escapes what Slack parses in any text: `&`, `<` and `>`. Without `<`
/// no `<!channel>`, `<@U123>` or `<https://evil|click>` can form.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn is_http(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(|c| c.is_control() || c == ' ')
}

/// `runbook_url` made absolute: a relative path (the rules hold
/// `docs/runbooks.md#…`) joined to `notify.runbook_base_url`.
fn runbook(annotation: Option<&String>, links: &LinkConfig) -> String {
    let Some(url) = annotation.map(|s| s.trim()).filter(|s| !s.is_empty()) else {
        return String::new();
    };
    if is_http(url) {
        return url.to_string();
    }
    if url.contains(':') || links.runbook_base_url.is_empty() {
        return String::new();
    }
    let joined = format!(
        "{}/{}",
        links.runbook_base_url.trim_end_matches('/'),
        url.trim_start_matches("./").trim_start_matches('/')
    );
    if is_http(&joined) {
        joined
    } else {
        String::new()
    }
}

/// What may not appear raw in a URL path segment or query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `{grafana_url}/d/{uid}` from the rule's `dashboard` annotation, opened
/// on the panel its `dashboard_panel` names (`?viewPanel=N`, digits only).
fn dashboard(annotation: Option<&String>, panel: Option<&String>, links: &LinkConfig) -> String {
    match annotation.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(uid) if !links.grafana_url.is_empty() => {
            let mut url = format!(
                "{}/d/{}",
                links.grafana_url.trim_end_matches('/'),
                utf8_percent_encode(uid, COMPONENT)
            );
            if let Some(id) = panel
                .map(|p| p.trim())
                .filter(|p| !p.is_empty() && p.len() < 10 && p.bytes().all(|b| b.is_ascii_digit()))
            {
                url.push_str("?viewPanel=");
                url.push_str(id);
            }
            url
        }
        _ => String::new(),
    }
}

/// Label values longer than this stay out of the silence link: a URL
/// must stay usable, and the form is reviewed before it silences anything.
const MAX_SILENCE_VALUE: usize = 256;

/// Alertmanager's silence form, pre-filled with every label of the alert
/// (but oversized values): `{externalURL}/#/silences/new?filter={a="1",b="2"}`.
pub fn silence(external_url: &str, labels: &BTreeMap<String, String>) -> String {
    if !is_http(external_url) || labels.is_empty() {
        return String::new();
    }
    let matchers: Vec<String> = labels
        .iter()
        .filter(|(_, v)| v.len() <= MAX_SILENCE_VALUE)
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    let filter = format!("{{{}}}", matchers.join(","));
    format!(
        "{}/#/silences/new?filter={}",
        external_url.trim_end_matches('/'),
        utf8_percent_encode(&filter, COMPONENT)
    )
}

/// RFC 3339 as Alertmanager writes it (fractions and `Z`), to a time.
fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('+').next()?)
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
}

/// How long an alert fired, in whole minutes (or hours and minutes).
fn duration(n: &Notice, language: Language) -> String {
    let (Some(start), Some(end)) = (
        parse_time(&n.starts_at),
        n.ends_at.as_deref().and_then(parse_time),
    ) else {
        return String::new();
    };
    let Ok(d) = end.duration_since(start) else {
        return String::new();
    };
    let minutes = (d.as_secs() + 30) / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    match (language, h) {
        (Language::En, 0) => format!("{m} min"),
        (Language::En, _) => format!("{h} h {m} min"),
        (Language::Zh, 0) => format!("{m} 分钟"),
        (Language::Zh, _) => format!("{h} 小时 {m} 分钟"),
    }
}

fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

impl AlertContext {
    pub fn new(n: &Notice, language: Language, links: &LinkConfig) -> Self {
        let value = |s: &str| cut(&one_line(s), MAX_VALUE_CHARS);
        let labels = n
            .labels
            .iter()
            .map(|(k, v)| Pair {
                name: value(k),
                value: value(v),
            })
            .collect();
        let annotations = n
            .annotations
            .iter()
            .filter(|(k, _)| !OWN_PLACE.contains(&k.as_str()))
            .map(|(k, v)| Pair {
                name: value(k),
                value: cut(&text_block(v), MAX_VALUE_CHARS),
            })
            .collect();
        let links = Links {
            runbook: runbook(n.annotations.get("runbook_url"), links),
            dashboard: dashboard(
                n.annotations.get("dashboard"),
                n.annotations.get("dashboard_panel"),
                links,
            ),
            silence: silence(&n.external_url, &n.labels),
            graph: if is_http(&n.generator_url) {
                n.generator_url.clone()
            } else {
                String::new()
            },
        };
        let link_list = [
            ("runbook", &links.runbook),
            ("dashboard", &links.dashboard),
            ("silence", &links.silence),
            ("graph", &links.graph),
        ]
        .into_iter()
        .filter(|(_, url)| !url.is_empty())
        .map(|(kind, url)| LinkItem {
            kind,
            url: url.clone(),
        })
        .collect();
        AlertContext {
            alertname: value(&n.alertname),
            status: n.status.as_str(),
            severity: value(&n.severity),
            summary: value(&n.summary),
            description: cut(&text_block(&n.description), MAX_VALUE_CHARS),
            labels,
            annotations,
            starts_at: value(&n.starts_at),
            ends_at: n.ends_at.as_deref().map(value).unwrap_or_default(),
            duration: duration(n, language),
            links,
            link_list,
            fingerprint: value(&n.fingerprint),
        }
    }
}

/// Alertmanager's alerts page for the message's alerts.
fn group_link(notices: &[Notice], common_alertname: &str) -> String {
    let Some(base) = notices
        .first()
        .map(|n| n.external_url.trim_end_matches('/'))
    else {
        return String::new();
    };
    if !is_http(base) {
        return String::new();
    }
    if common_alertname.is_empty() {
        return format!("{base}/#/alerts");
    }
    let filter = format!("{{alertname=\"{common_alertname}\"}}");
    format!(
        "{base}/#/alerts?filter={}",
        utf8_percent_encode(&filter, NON_ALPHANUMERIC)
    )
}

/// The most alerts one message lists: a storm's group of 9,600 alerts
/// makes an email of about 100 KB, not 10 MB that a relay refuses (and
/// with it the whole group's page). The rest are counted ("and M more")
/// and the message links to Alertmanager's view of the group.
pub const MAX_LISTED: usize = 100;

impl MessageContext {
    pub fn new(notices: &[Notice], language: Language, links: &LinkConfig) -> Self {
        let firing_count = notices
            .iter()
            .filter(|n| n.status == Status::Firing)
            .count();
        let resolved_count = notices.len() - firing_count;
        // Firing first: those are what the reader must act on.
        let listed: Vec<&Notice> = notices
            .iter()
            .filter(|n| n.status == Status::Firing)
            .chain(notices.iter().filter(|n| n.status != Status::Firing))
            .take(MAX_LISTED)
            .collect();
        let alerts: Vec<AlertContext> = listed
            .iter()
            .map(|n| AlertContext::new(n, language, links))
            .collect();
        let firing: Vec<AlertContext> = alerts
            .iter()
            .filter(|a| a.status == Status::Firing.as_str())
            .cloned()
            .collect();
        let resolved: Vec<AlertContext> = alerts
            .iter()
            .filter(|a| a.status == Status::Resolved.as_str())
            .cloned()
            .collect();
        let ranked = |firing_only: bool| {
            notices
                .iter()
                .filter(|n| !firing_only || n.status == Status::Firing)
                .map(|n| cut(&one_line(&n.severity), MAX_VALUE_CHARS))
                .max_by_key(|s| rank(s))
        };
        let severity = ranked(firing_count > 0).unwrap_or_default();
        let common_alertname = match notices.first() {
            Some(a) if notices.iter().all(|b| b.alertname == a.alertname) => {
                cut(&one_line(&a.alertname), MAX_VALUE_CHARS)
            }
            _ => String::new(),
        };
        MessageContext {
            language: language.as_str(),
            status: if firing_count == 0 {
                "resolved"
            } else {
                "firing"
            },
            kind: if notices
                .first()
                .is_some_and(|n| n.kind == NoticeKind::RecoveryOutcome)
            {
                "recovery"
            } else {
                "alert"
            },
            severity,
            count: notices.len(),
            firing_count,
            resolved_count,
            unlisted: notices.len() - alerts.len(),
            group_link: group_link(notices, &common_alertname),
            truncated_alerts: notices.first().map_or(0, |n| n.truncated_alerts),
            alerts,
            firing,
            resolved,
            common_alertname,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_ends_in_an_ellipsis_only_when_it_cuts() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("日本語テキスト", 4), "日本語…");
        assert_eq!(cut("", 3), "");
        assert_eq!(cut(&"x".repeat(100_000), 10).chars().count(), 10);
    }

    #[test]
    fn silence_link_carries_every_label_encoded() {
        let labels = BTreeMap::from([
            ("alertname".to_string(), "X".to_string()),
            ("job".to_string(), "a\"b&c".to_string()),
        ]);
        let url = silence("http://am:9093/", &labels);
        assert_eq!(
            url,
            "http://am:9093/#/silences/new?filter=%7Balertname%3D%22X%22%2Cjob%3D%22a%5C%22b%26c%22%7D"
        );
        assert_eq!(silence("javascript:alert(1)", &labels), "");
    }

    #[test]
    fn runbook_links_are_absolute_http_or_nothing() {
        let links = LinkConfig {
            runbook_base_url: "https://git.example/monitor/blob/main/".into(),
            grafana_url: "https://grafana.example".into(),
        };
        let r = |s: &str| runbook(Some(&s.to_string()), &links);
        assert_eq!(
            r("docs/runbooks.md#x"),
            "https://git.example/monitor/blob/main/docs/runbooks.md#x"
        );
        assert_eq!(r("https://wiki/x"), "https://wiki/x");
        assert_eq!(r("javascript:alert(1)"), "");
        assert_eq!(runbook(Some(&"docs/x".into()), &LinkConfig::default()), "");
        assert_eq!(
            dashboard(Some(&"llmchat-overview".into()), None, &links),
            "https://grafana.example/d/llmchat-overview"
        );
        assert_eq!(
            dashboard(Some(&"llmchat-overview".into()), Some(&"2".into()), &links),
            "https://grafana.example/d/llmchat-overview?viewPanel=2"
        );
        // Only digits: a panel annotation cannot add to the URL.
        assert_eq!(
            dashboard(Some(&"x".into()), Some(&"2&var-job=evil".into()), &links),
            "https://grafana.example/d/x"
        );
        assert_eq!(
            dashboard(Some(&"a/../b?x".into()), None, &links),
            "https://grafana.example/d/a%2F..%2Fb%3Fx"
        );
    }

    #[test]
    fn durations_in_both_languages() {
        let mut n: Notice = serde_json::from_value(serde_json::json!({
            "alertname": "X", "status": "resolved", "severity": "critical", "summary": "",
            "description": "", "labels": {}, "annotations": {},
            "starts_at": "2026-11-26T10:00:00.123Z", "ends_at": "2026-11-26T10:12:10Z",
            "generator_url": "", "fingerprint": "f", "group_key": "g", "truncated_alerts": 0,
            "external_url": ""
        }))
        .unwrap();
        assert_eq!(duration(&n, Language::En), "12 min");
        assert_eq!(duration(&n, Language::Zh), "12 分钟");
        n.ends_at = Some("2026-11-26T12:05:00Z".into());
        assert_eq!(duration(&n, Language::En), "2 h 5 min");
        n.ends_at = None;
        assert_eq!(duration(&n, Language::En), "");
    }

    #[test]
    fn labels_lose_line_breaks() {
        assert_eq!(one_line("a\r\nBcc: x@y\tz"), "a  Bcc: x@y z");
        assert_eq!(text_block("a\r\nb\u{1b}[31m"), "a\nb[31m");
    }
}
