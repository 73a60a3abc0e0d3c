//! The email as mail clients see it: one multipart message per
//! Alertmanager group and recipient list (the count in the subject), every
//! link in both parts, the resolve threaded under its firing email, the
//! HTML rendered by a real browser, and nothing an alert carries able to
//! add a header, markup or a link.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mail_parser::{HeaderValue, MessageParser};
use serde_json::{json, Value};

use crate::helpers::*;

const RUNBOOK_BASE: &str = "https://git.example.com/monitor/blob/main/";
const GRAFANA: &str = "https://grafana.example.com";

fn email_config(dir: &Path, smtp: &SmtpSink, extra_email: &str) -> PathBuf {
    let store = format!("sqlite://{}", dir.join("outbox.db").display());
    let path = config(dir, &store, None, None, Some(smtp.port));
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("body_limit_bytes = 4096", "body_limit_bytes = 1048576");
    text = text.replace(
        "to = {",
        &format!("{extra_email}to = {{ default = [\"ops@llmchat.test\"], "),
    );
    text.push_str(&format!(
        "[notify]\nrunbook_base_url = \"{RUNBOOK_BASE}\"\ngrafana_url = \"{GRAFANA}\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// One group of `n` critical alerts in `status`, each with its links.
fn group(n: usize, status: &str) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "status": status,
                "labels": {"alertname": "LLMChatDiskUsageHigh", "severity": "critical", "instance": format!("host-{i:02}:9842")},
                "annotations": {
                    "summary": format!("Disk almost full on host-{i:02}"),
                    "description": "Free space is below 10%.",
                    "runbook_url": "docs/runbooks.md#llmchatdiskusagehigh",
                    "dashboard": "llmchat-host-logs"
                },
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": if status == "resolved" { "2026-11-26T10:12:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": format!("http://prometheus:9090/graph?g0.expr=disk{i}&g0.tab=1"),
                "fingerprint": format!("fp-disk-{i:02}")
            })
        })
        .collect();
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"LLMChatDiskUsageHigh\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "llmchat", "groupLabels": {"alertname": "LLMChatDiskUsageHigh"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts
    })
}

struct Parsed {
    subject: String,
    message_id: String,
    in_reply_to: Option<String>,
    references: Option<String>,
    text: String,
    html: String,
}

fn id_of(v: &HeaderValue) -> Option<String> {
    match v {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    }
}

fn parse(data: &str) -> Parsed {
    let m = MessageParser::default()
        .parse(data.as_bytes())
        .expect("a MIME message");
    assert_eq!(m.text_body_count(), 1, "one text part");
    assert_eq!(m.html_body_count(), 1, "one HTML part");
    Parsed {
        subject: m.subject().unwrap_or_default().to_string(),
        message_id: m.message_id().unwrap_or_default().to_string(),
        in_reply_to: id_of(m.in_reply_to()),
        references: id_of(m.references()),
        text: m.body_text(0).unwrap().to_string(),
        html: m.body_html(0).unwrap().to_string(),
    }
}

fn silence(i: usize) -> String {
    format!(
        "http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22LLMChatDiskUsageHigh%22%2Cinstance%3D%22host-{i:02}%3A9842%22%2Cseverity%3D%22critical%22%7D"
    )
}

#[test]
fn a_group_is_one_threaded_email_with_every_link() {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&email_config(dir.path(), &smtp, ""));
    assert_eq!(
        r.post(&group(30, "firing").to_string(), Some(TOKEN))
            .status(),
        200
    );
    wait_until(Duration::from_secs(15), "the group's email", || {
        !smtp.mails().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.mails().len(), 1, "one email for the group");
    let mail = &smtp.mails()[0];
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, ["lead@llmchat.test", "oncall@llmchat.test"]);
    let firing = parse(&mail.data);
    assert_eq!(
        firing.subject,
        "[LLMChat][CRITICAL:30] LLMChatDiskUsageHigh"
    );
    assert!(
        firing.text.contains("30 firing, 0 resolved"),
        "{}",
        firing.text
    );
    assert!(firing.html.contains("<b>30 alerts</b>"), "{}", firing.html);
    let runbook = format!("{RUNBOOK_BASE}docs/runbooks.md#llmchatdiskusagehigh");
    let dashboard = format!("{GRAFANA}/d/llmchat-host-logs");
    for i in 0..30 {
        let graph = format!("http://prometheus:9090/graph?g0.expr=disk{i}&g0.tab=1");
        for link in [&runbook, &dashboard, &silence(i), &graph] {
            assert!(firing.text.contains(link.as_str()), "text lacks {link}");
            let href = format!("href=\"{}\"", link.replace('&', "&amp;"));
            assert!(firing.html.contains(&href), "HTML lacks {href}");
        }
        assert!(firing
            .html
            .contains(&format!("Disk almost full on host-{i:02}")));
    }
    assert!(firing.in_reply_to.is_none());

    // The resolve threads under the firing email.
    assert_eq!(
        r.post(&group(30, "resolved").to_string(), Some(TOKEN))
            .status(),
        200
    );
    wait_until(Duration::from_secs(15), "the resolve", || {
        smtp.mails().len() == 2
    });
    let resolved = parse(&smtp.mails()[1].data);
    assert_eq!(
        resolved.subject,
        "[LLMChat][RESOLVED:30] LLMChatDiskUsageHigh"
    );
    assert!(
        resolved.text.contains("(after 12 min)"),
        "{}",
        resolved.text
    );
    assert_ne!(resolved.message_id, firing.message_id);
    assert_eq!(
        resolved.in_reply_to.as_deref(),
        Some(firing.message_id.as_str())
    );
    assert_eq!(
        resolved.references.as_deref(),
        Some(firing.message_id.as_str())
    );

    // A new firing of the group after it resolved starts a new thread.
    let mut again = group(2, "firing");
    for a in again["alerts"].as_array_mut().unwrap() {
        a["startsAt"] = json!("2026-11-27T08:00:00Z");
    }
    assert_eq!(r.post(&again.to_string(), Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "the new firing", || {
        smtp.mails().len() == 3
    });
    let third = parse(&smtp.mails()[2].data);
    assert_eq!(third.subject, "[LLMChat][CRITICAL:2] LLMChatDiskUsageHigh");
    assert!(third.in_reply_to.is_none(), "{:?}", third.in_reply_to);
}

#[test]
fn one_email_per_alert_stays_an_option() {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&email_config(dir.path(), &smtp, "per_alert = true\n"));
    assert_eq!(
        r.post(&group(3, "firing").to_string(), Some(TOKEN))
            .status(),
        200
    );
    wait_until(Duration::from_secs(15), "three emails", || {
        smtp.mails().len() == 3
    });
    let mut subjects: Vec<String> = smtp
        .mails()
        .iter()
        .map(|m| parse(&m.data).subject)
        .collect();
    subjects.dedup();
    assert_eq!(subjects, ["[LLMChat][CRITICAL] LLMChatDiskUsageHigh"]);
    assert_eq!(
        r.post(&group(1, "resolved").to_string(), Some(TOKEN))
            .status(),
        200
    );
    wait_until(Duration::from_secs(15), "the resolve", || {
        smtp.mails().len() == 4
    });
    let resolved = parse(&smtp.mails()[3].data);
    let first_of_host_00 = smtp.mails()[..3]
        .iter()
        .map(|m| parse(&m.data))
        .find(|p| p.text.contains("host-00"))
        .unwrap();
    assert_eq!(resolved.in_reply_to, Some(first_of_host_00.message_id));
}

#[test]
fn chromium_renders_the_html_email_with_its_summary_and_links() {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(&email_config(dir.path(), &smtp, ""));
    assert_eq!(
        r.post(&group(3, "firing").to_string(), Some(TOKEN))
            .status(),
        200
    );
    wait_until(Duration::from_secs(15), "the email", || {
        !smtp.mails().is_empty()
    });
    let html = parse(&smtp.mails()[0].data).html;
    let page = dir.path().join("email.html");
    std::fs::write(&page, &html).unwrap();
    let chromium = |args: &[&str]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .output()
            .expect("chromium (apt-get install chromium)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.contains("Disk almost full on host-02"), "{dom}");
    assert!(
        dom.contains(&format!("href=\"{GRAFANA}/d/llmchat-host-logs\"")),
        "{dom}"
    );
    assert!(dom.contains(&format!("href=\"{}\"", silence(1))), "{dom}");
    assert!(
        dom.contains(">Runbook</a>") && dom.contains(">Silence</a>"),
        "{dom}"
    );
    let shot = dir.path().join("email.png");
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=900,1400",
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // Left in the test's folder for a person to look at while it runs.
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn nothing_an_alert_carries_reaches_a_header_markup_or_a_mention() {
    let smtp = SmtpSink::start();
    let slack = Target::start(vec![]);
    let hook = Target::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(
        dir.path(),
        &store,
        Some(&slack.url("/s")),
        Some(&hook.url("/h")),
        Some(smtp.port),
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("body_limit_bytes = 4096", "body_limit_bytes = 1048576");
    text = text.replace(
        "headers = { \"X-Team\" = \"sre\" }",
        "headers = { \"X-Team\" = \"sre\" }\nheader_templates = { \"X-Alert-Summary\" = \"{{ alerts[0].summary }}\" }",
    );
    std::fs::write(&path, text).unwrap();
    let r = Receiver::start(&path);
    let evil = "<b>bold</b> <script>alert(1)</script> <!channel> <!here> <@U123> <https://evil.example|click> *md* [x](https://evil.example)";
    let big = "z".repeat(100 * 1024);
    let body = json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "llmchat",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "Evil\r\nBcc: victim@evil.example", "severity": "critical", "job": evil, "huge": big},
            "annotations": {"summary": format!("{evil}\r\nX-Injected: yes"), "description": big, "runbook_url": "javascript:alert(1)"},
            "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "javascript:alert(2)", "fingerprint": "fp-evil"
        }]
    });
    assert_eq!(r.post(&body.to_string(), Some(TOKEN)).status(), 200);
    wait_until(Duration::from_secs(15), "every channel", || {
        !smtp.mails().is_empty() && !slack.requests().is_empty() && !hook.requests().is_empty()
    });
    // Email: no injected header, no markup, no link but the silence form.
    let raw = &smtp.mails()[0].data;
    let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
    for bad in ["\r\nBcc:", "\r\nX-Injected:"] {
        assert!(!headers.contains(bad), "{headers}");
    }
    assert_eq!(smtp.mails()[0].to.len(), 2, "no recipient added");
    let mail = parse(raw);
    assert!(!mail.subject.contains('\n'), "{}", mail.subject);
    assert!(mail.html.contains("&lt;script&gt;") && !mail.html.contains("<script>"));
    assert!(!mail.html.contains("<b>bold"));
    assert!(!mail.html.contains("javascript:") && !mail.text.contains("javascript:"));
    assert!(!mail.html.contains("href=\"https://evil"));
    assert!(mail.html.contains('…'), "the 100 KB value is cut");
    assert!(raw.len() < 200 * 1024, "{} bytes", raw.len());
    // Slack: escaped, plain text only, within its limits.
    let message = slack.requests()[0].json();
    let text = message.to_string();
    for bad in [
        "<!channel>",
        "<!here>",
        "<@U123>",
        "<https://evil",
        "javascript:",
    ] {
        assert!(!text.contains(bad), "{bad}");
    }
    assert!(!text.contains("\"mrkdwn\"") || message["mrkdwn"] == false);
    assert!(!text.contains("\"type\":\"mrkdwn\""));
    assert!(text.len() < 40 * 1024, "{} bytes", text.len());
    // Webhook: the document keeps the values (JSON is the escaping), and a
    // templated header is one line.
    let req = &hook.requests()[0];
    assert_eq!(req.json()["labels"]["job"], evil);
    let summary = req.header("X-Alert-Summary").unwrap();
    assert!(!summary.contains('\n') && !summary.contains('\r'));
    assert!(req.header("X-Injected").is_none());
    assert_eq!(req.json()["links"]["graph"], "");
    assert_eq!(req.json()["links"]["runbook"], "");
}
