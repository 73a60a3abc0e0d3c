//! The template engine's promises: escaping by kind, errors with lines,
//! fallback with a count, and the order files override the built-ins.

use std::collections::BTreeMap;
use std::io::Write;

use super::*;
use crate::channels::{email, slack, webhook};
use crate::payload::{Notice, Status};

fn notice(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Notice {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Notice {
        kind: Default::default(),
        alertname: labels.get("alertname").cloned().unwrap_or("X".into()),
        status: Status::Firing,
        severity: "critical".into(),
        summary: annotations.get("summary").cloned().unwrap_or_default(),
        description: annotations.get("description").cloned().unwrap_or_default(),
        labels,
        annotations,
        starts_at: "2026-11-26T10:00:00Z".into(),
        ends_at: None,
        generator_url: "http://prometheus:9090/graph?g0.expr=up".into(),
        fingerprint: "f1".into(),
        group_key: "{}:{}".into(),
        truncated_alerts: 0,
        external_url: "http://am:9093".into(),
    }
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn templates(
    notify: &NotifyConfig,
    routes: &[RouteTemplates],
) -> (Templates, Family<ChannelLabels, Counter>) {
    let errors = Family::<ChannelLabels, Counter>::default();
    let t = Templates::new(
        notify,
        routes,
        &crate::channels::templates(),
        &[],
        errors.clone(),
    )
    .unwrap();
    (t, errors)
}

const EVIL: &str =
    "<b>x</b> <!channel> <@U123> <https://evil|click> *bold* [a](http://evil) & \"q\"";

#[test]
fn html_email_escapes_everything_an_alert_carries() {
    let (t, _) = templates(&NotifyConfig::default(), &[]);
    let n = notice(
        &[("alertname", "A<script>"), ("job", EVIL)],
        &[("summary", EVIL), ("description", EVIL)],
    );
    let ctx = t.context(&[n], None);
    let html = t
        .render(&email::HTML, None, "email", &ctx, |_| Ok(()))
        .unwrap();
    assert!(!html.contains("<b>x"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<https://evil"), "{html}");
    assert!(!html.contains("href=\"http://evil"), "{html}");
    assert!(html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"), "{html}");
    assert!(html.contains("A&lt;script&gt;"), "{html}");
}

#[test]
fn slack_message_carries_no_mention_link_or_markup() {
    let (t, _) = templates(&NotifyConfig::default(), &[]);
    let n = notice(
        &[("alertname", "<!here>"), ("job", EVIL)],
        &[("summary", EVIL), ("description", EVIL)],
    );
    let ctx = t.context(&[n], None);
    let out = t
        .render(&slack::MESSAGE, None, "slack", &ctx, |_| Ok(()))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v.to_string();
    for bad in ["<!channel>", "<!here>", "<@U123>", "<https://evil"] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert_eq!(v["mrkdwn"], false);
    // Alert text only in plain_text objects: Slack formats nothing there.
    fn walk(v: &serde_json::Value, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()) == Some("mrkdwn") {
                    found.push(v.to_string());
                }
                m.values().for_each(|x| walk(x, found));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    let mut mrkdwn = Vec::new();
    walk(&v, &mut mrkdwn);
    assert!(mrkdwn.is_empty(), "{mrkdwn:?}");
    // Buttons only for the links this code built.
    let buttons: Vec<&str> = v["attachments"][0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert_eq!(buttons.len(), 2, "{buttons:?}"); // silence and graph
    assert!(buttons
        .iter()
        .all(|u| u.starts_with("http://am:9093/") || u.starts_with("http://prometheus:9090/")));
}

#[test]
fn line_breaks_in_labels_cannot_fake_lines_or_headers() {
    let (t, _) = templates(&NotifyConfig::default(), &[]);
    let n = notice(
        &[
            ("alertname", "A\r\nBcc: victim@example.com"),
            ("job", "j\r\nX-Evil: 1"),
        ],
        &[("summary", "s\r\nSubject: fake")],
    );
    let ctx = t.context(&[n], None);
    let subject = t
        .render(&email::SUBJECT, None, "email", &ctx, |_| Ok(()))
        .unwrap();
    assert!(
        !subject.trim().contains('\n') && !subject.contains('\r'),
        "{subject:?}"
    );
    let text = t
        .render(&email::TEXT, None, "email", &ctx, |_| Ok(()))
        .unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("Bcc:")
            || l.starts_with("X-Evil:")
            || l.starts_with("Subject:")),
        "{text}"
    );
}

#[test]
fn oversized_values_are_cut_with_an_ellipsis() {
    let (t, _) = templates(&NotifyConfig::default(), &[]);
    let big = "y".repeat(100 * 1024);
    let n = notice(
        &[("alertname", "A"), ("job", &big)],
        &[("summary", &big), ("description", &big)],
    );
    let ctx = t.context(&[n], None);
    assert_eq!(
        ctx.alerts[0].summary.chars().count(),
        context::MAX_VALUE_CHARS
    );
    assert!(ctx.alerts[0].summary.ends_with('…'));
    for name in [&email::TEXT, &email::HTML, &slack::MESSAGE] {
        let out = t.render(name, None, "email", &ctx, |_| Ok(())).unwrap();
        assert!(out.len() < 40 * 1024, "{name:?}: {} bytes", out.len());
        assert!(out.contains('…'));
    }
}

#[test]
fn a_template_that_does_not_compile_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "subject.j2", "line one\nline two\n{% if %}\n");
    let notify = NotifyConfig {
        templates: BTreeMap::from([(email::SUBJECT.name.to_string(), path.clone())]),
        ..Default::default()
    };
    let specs = crate::channels::templates();
    let e = Templates::new(&notify, &[], &specs, &[], Default::default())
        .err()
        .expect("a syntax error");
    let msg = e.to_string();
    assert!(msg.contains("notify.templates.email_subject"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    let route = RouteTemplates {
        language: None,
        templates: BTreeMap::from([(
            slack::MESSAGE.name.to_string(),
            dir.path().join("missing.j2"),
        )]),
    };
    let e = Templates::new(
        &NotifyConfig::default(),
        &[route],
        &specs,
        &[],
        Default::default(),
    )
    .err()
    .expect("a missing file");
    assert!(
        e.to_string().contains("routing.routes[0].templates.slack"),
        "{e}"
    );
    // A name no channel renders: refused, naming the key and the known
    // names.
    let notify = NotifyConfig {
        templates: BTreeMap::from([("emial_subject".to_string(), path)]),
        ..Default::default()
    };
    let e = Templates::new(&notify, &[], &specs, &[], Default::default())
        .err()
        .expect("an unknown template");
    let msg = e.to_string();
    assert!(
        msg.starts_with("notify.templates: unknown template \"emial_subject\""),
        "{msg}"
    );
    assert!(
        msg.contains("email_subject, email_text, email_html, slack, slack_reply, webhook_body"),
        "{msg}"
    );
}

#[test]
fn a_render_error_falls_back_to_the_built_in_template_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyConfig {
        templates: BTreeMap::from([
            // Compiles, fails at render time (a filter on the wrong type).
            (
                email::SUBJECT.name.to_string(),
                file(&dir, "s.j2", "{{ no_such_function() }}"),
            ),
            // Renders, but not JSON: refused by Slack's check.
            (
                slack::MESSAGE.name.to_string(),
                file(&dir, "slack.j2", "not json {{ status }}"),
            ),
        ]),
        ..Default::default()
    };
    let (t, errors) = templates(&notify, &[]);
    let ctx = t.context(&[notice(&[("alertname", "A")], &[])], None);
    let subject = t
        .render(&email::SUBJECT, None, "email", &ctx, |_| Ok(()))
        .unwrap();
    assert_eq!(subject.trim(), "[LLMChat][CRITICAL] A");
    let is_json = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .map(|_| ())
            .map_err(|e| OutputError {
                channel: "Slack",
                expected: "JSON",
                source: Box::new(e),
            })
    };
    let slack = t
        .render(&slack::MESSAGE, None, "slack", &ctx, is_json)
        .unwrap();
    assert!(slack.contains("\"[LLMChat][CRITICAL] A\""), "{slack}");
    assert_eq!(
        errors
            .get_or_create(&ChannelLabels { channel: "email" })
            .get(),
        1
    );
    assert_eq!(
        errors
            .get_or_create(&ChannelLabels { channel: "slack" })
            .get(),
        1
    );
}

#[test]
fn route_files_beat_global_files_beat_built_ins_and_routes_pick_their_language() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyConfig {
        templates: BTreeMap::from([(
            email::SUBJECT.name.to_string(),
            file(&dir, "g.j2", "global {{ alerts[0].alertname }}"),
        )]),
        ..Default::default()
    };
    let routes = [
        RouteTemplates {
            language: Some(Language::Zh),
            templates: BTreeMap::from([(
                email::SUBJECT.name.to_string(),
                file(&dir, "r.j2", "route {{ language }}"),
            )]),
        },
        RouteTemplates {
            language: Some(Language::Zh),
            templates: BTreeMap::new(),
        },
    ];
    let (t, _) = templates(&notify, &routes);
    let n = notice(&[("alertname", "A")], &[]);
    let render = |route| {
        let ctx = t.context(std::slice::from_ref(&n), route);
        t.render(&email::SUBJECT, route, "email", &ctx, |_| Ok(()))
            .unwrap()
    };
    assert_eq!(render(Some(0)), "route zh");
    assert_eq!(render(Some(1)), "global A");
    assert_eq!(render(None), "global A");
    let ctx = t.context(std::slice::from_ref(&n), Some(1));
    let text = t
        .render(&email::TEXT, Some(1), "email", &ctx, |_| Ok(()))
        .unwrap();
    assert!(text.contains("级别：严重"), "{text}");
}

#[test]
fn the_webhook_body_template_is_json_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyConfig {
        templates: BTreeMap::from([(
            webhook::BODY.name.to_string(),
            file(
                &dir,
                "b.j2",
                r#"{"title": {{ alerts[0].description }}, "n": {{ count }}}"#,
            ),
        )]),
        ..Default::default()
    };
    let (t, _) = templates(&notify, &[]);
    let ctx = t.context(
        &[notice(
            &[("alertname", "A")],
            &[("description", "say \"hi\"\n}, \"x\": 1")],
        )],
        None,
    );
    let body = t
        .render(&webhook::BODY, None, "webhook", &ctx, |_| Ok(()))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["title"], "say \"hi\"\n}, \"x\": 1");
    assert_eq!(v["n"], 1);
    assert!(v.get("x").is_none());
}

/// The tags of an HTML document, in order (names only).
fn tags(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r"<(/?[a-zA-Z!][a-zA-Z0-9]*)").unwrap();
    re.captures_iter(html).map(|c| c[1].to_string()).collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever an alert carries, the HTML email has the same markup as
    /// for a harmless alert, the Slack message is JSON without a `<`, and
    /// the subject is one line.
    #[test]
    fn no_alert_text_changes_the_markup(
        name in "\\PC{1,40}",
        value in "[\\PC\\r\\n<>&\"'`*_~\\[\\]()|!@]{1,200}",
        summary in "[\\PC\\r\\n<>&\"'`*_~\\[\\]()|!@]{1,200}",
    ) {
        let (t, errors) = templates(&NotifyConfig::default(), &[]);
        let render = |n: Notice, name| {
            let ctx = t.context(&[n], None);
            t.render(name, None, "email", &ctx, |_| Ok(())).unwrap()
        };
        let evil = notice(&[("alertname", &name), ("job", &value)], &[("summary", &summary), ("description", &value)]);
        let plain = notice(&[("alertname", "a"), ("job", "b")], &[("summary", "c"), ("description", "d")]);
        proptest::prop_assert_eq!(
            tags(&render(evil.clone(), &email::HTML)),
            tags(&render(plain, &email::HTML))
        );
        let slack = render(evil.clone(), &slack::MESSAGE);
        proptest::prop_assert!(serde_json::from_str::<serde_json::Value>(&slack).is_ok(), "{}", slack);
        proptest::prop_assert!(!slack.contains('<'), "{}", slack);
        let subject = render(evil, &email::SUBJECT);
        proptest::prop_assert!(!subject.trim().contains(['\r', '\n']), "{:?}", subject);
        proptest::prop_assert_eq!(errors.get_or_create(&ChannelLabels { channel: "email" }).get(), 0);
    }
}

/// Every `&` in `text` starts a whole entity (`&lt;`, `&#x2f;`).
fn entities_whole(text: &str) -> Result<(), String> {
    let re = regex::Regex::new(r"^&(#x?[0-9a-fA-F]+|[a-zA-Z]+);").unwrap();
    for (at, _) in text.match_indices('&') {
        if !re.is_match(&text[at..]) {
            return Err(format!(
                "a cut entity: …{}",
                &text[at..(at + 12).min(text.len())]
            ));
        }
    }
    Ok(())
}

#[test]
fn long_runs_of_escaped_characters_are_never_cut_inside_an_escape() {
    let (t, _) = templates(&NotifyConfig::default(), &[]);
    for c in ['<', '>', '&', '"', '\'', '/'] {
        for len in [1999, 2000, 2001, 5000] {
            let run: String = std::iter::repeat_n(c, len).collect();
            let n = notice(
                &[("alertname", "A"), ("job", &run)],
                &[("summary", &run), ("description", &run)],
            );
            let ctx = t.context(&[n], None);
            let html = t
                .render(&email::HTML, None, "email", &ctx, |_| Ok(()))
                .unwrap();
            entities_whole(&html).unwrap_or_else(|e| panic!("email, {c:?} x{len}: {e}"));
            let slack = t
                .render(&slack::MESSAGE, None, "slack", &ctx, |_| Ok(()))
                .unwrap();
            let mut message: serde_json::Value = serde_json::from_str(&slack).unwrap();
            crate::channels::slack::limits::enforce(&mut message);
            fn texts(v: &serde_json::Value, out: &mut Vec<String>) {
                match v {
                    serde_json::Value::String(s) => out.push(s.clone()),
                    serde_json::Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
                    serde_json::Value::Object(m) => m.values().for_each(|x| texts(x, out)),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            texts(&message, &mut all);
            for s in all {
                entities_whole(&s).unwrap_or_else(|e| panic!("slack, {c:?} x{len}: {e}"));
            }
        }
    }
}

#[test]
fn a_runaway_template_runs_out_of_fuel_and_the_built_in_one_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyConfig {
        templates: BTreeMap::from([(
            email::TEXT.name.to_string(),
            file(
                &dir,
                "loop.txt",
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            ),
        )]),
        ..Default::default()
    };
    let (t, errors) = templates(&notify, &[]);
    let ctx = t.context(&[notice(&[("alertname", "A")], &[])], None);
    let out = t
        .render(&email::TEXT, None, "email", &ctx, |_| Ok(()))
        .unwrap();
    // The built-in text, not ten billion x.
    assert!(
        out.contains('A') && out.len() < 10_000,
        "{} bytes",
        out.len()
    );
    assert_eq!(
        errors
            .get_or_create(&ChannelLabels { channel: "email" })
            .get(),
        1
    );
}

#[test]
fn a_storm_group_lists_its_first_alerts_and_counts_the_rest() {
    let (t, errors) = templates(&NotifyConfig::default(), &[]);
    let notices: Vec<Notice> = (0..9600)
        .map(|i| {
            let mut n = notice(
                &[
                    ("alertname", "LLMChatStorm"),
                    ("instance", &format!("host-{i}")),
                ],
                &[(
                    "summary",
                    "a realistic summary of what is wrong on this host",
                )],
            );
            n.fingerprint = format!("f{i}");
            n
        })
        .collect();
    let ctx = t.context(&notices, None);
    assert_eq!(ctx.count, 9600);
    assert_eq!(ctx.firing_count, 9600);
    assert_eq!(ctx.alerts.len(), context::MAX_LISTED);
    assert_eq!(ctx.unlisted, 9600 - context::MAX_LISTED);
    for name in [&email::HTML, &email::TEXT] {
        let out = t.render(name, None, "email", &ctx, |_| Ok(())).unwrap();
        assert!(out.len() < 400 * 1024, "{name:?}: {} bytes", out.len());
        assert!(out.contains("9500"), "{name:?} does not count the rest");
        assert!(
            out.contains("http://am:9093/#/alerts?filter=%7Balertname%3D%22LLMChatStorm%22%7D"),
            "{name:?} lacks the group's link"
        );
    }
    // The built-in templates fit their fuel with room to spare.
    assert_eq!(
        errors
            .get_or_create(&ChannelLabels { channel: "email" })
            .get(),
        0
    );
}
