//! HTTP and chat metrics end to end: access and app log lines in, exact
//! counters and histogram buckets out.

use crate::helpers::{append, run_with_stdin, sample, Exporter};

const ACCESS: &[&str] = &[
    r#"203.0.113.7 - - [26/Nov/2026:11:02:03 +0000] "GET /api/chat/sessions/42?page=2 HTTP/1.1" 200 5123 "https://chat.example.com/" "Mozilla/5.0" 0.045"#,
    r#"2001:db8::1 - alice [26/Nov/2026:11:02:04 +0000] "GET /api/chat/sessions/7 HTTP/2.0" 200 100 "-" "curl/8.5.0" 0.700"#,
    r#"198.51.100.9 - - [26/Nov/2026:11:02:05 +0000] "POST /api/chat/messages HTTP/1.1" 502 157 "-" "Agent \x22quoted\x22" 12.5"#,
    r#"198.51.100.9 - - [26/Nov/2026:11:02:06 +0000] "POST /api/chat/messages HTTP/1.1" 201 900 "-" "-" 1.5"#,
    r#"192.0.2.1 - - [26/Nov/2026:11:02:07 +0000] "\x16\x03\x01\x02\x00" 400 157 "-" "-" 0.001"#,
    r#"192.0.2.1 - - [26/Nov/2026:11:02:08 +0000] "PROPFIND /dav HTTP/1.1" 405 0 "-" "-" 0.002"#,
    "this is not an access log line",
    r#"192.0.2.1 - - [26/Nov/2026:11:02:09 +0000] "GET / HTTP/1.1" 999 0 "-" "-" 0.002"#,
];

const APP: &[&str] = &[
    r#"{"level":"info","message":"reply","event":"chat_message","agent_id":"gpt-4o","status":"success","duration_ms":800}"#,
    r#"{"level":"info","message":"reply","event":"chat_message","agent_id":"gpt-4o","status":"success","duration_ms":2500}"#,
    r#"{"level":"error","message":"provider timeout","event":"chat_message","agent_id":"claude","status":"error"}"#,
    r#"{"level":"info","message":"reply","event":"chat_message","agent_id":"a3","status":"success"}"#,
    r#"{"level":"warn","message":"broken","event":"chat_message","status":"success"}"#,
    r#"{"level":"info","message":"unrelated"}"#,
];

fn lines(v: &[&str]) -> Vec<u8> {
    v.iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[test]
fn access_and_chat_lines_become_exact_http_and_chat_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let app = dir.path().join("app.log");
    append(&access, b"");
    append(&app, b"");
    let e = Exporter::start(&[
        "--collector.logs",
        "--collector.chat",
        "--collector.access",
        "--logs.poll-interval",
        "100ms",
        "--logs.access",
        access.to_str().unwrap(),
        "--logs.app",
        app.to_str().unwrap(),
        "--chat.max-agents",
        "2",
    ]);
    append(&access, &lines(ACCESS));
    append(&app, &lines(APP));
    let (a, p) = (access.to_str().unwrap(), app.to_str().unwrap());
    e.expect_stable("llmchat_log_parse_errors_total", &[("file", a)], 2.0);
    e.expect_stable("llmchat_log_parse_errors_total", &[("file", p)], 1.0);
    let text = e.scrape_text();
    let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);

    let req = "llmchat_http_requests_total";
    let sessions = [
        ("method", "GET"),
        ("route", "/api/chat/sessions/:id"),
        ("status_code", "200"),
    ];
    assert_eq!(s(req, &sessions), Some(2.0));
    assert_eq!(
        s(
            req,
            &[
                ("method", "POST"),
                ("route", "/api/chat/messages"),
                ("status_code", "502")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            req,
            &[
                ("method", "POST"),
                ("route", "/api/chat/messages"),
                ("status_code", "201")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            req,
            &[
                ("method", "OTHER"),
                ("route", "other"),
                ("status_code", "400")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            req,
            &[
                ("method", "OTHER"),
                ("route", "/dav"),
                ("status_code", "405")
            ]
        ),
        Some(1.0)
    );
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("llmchat_http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 6.0);

    // Histogram: GET sessions observed 0.045 and 0.700.
    let h = "llmchat_http_request_duration_seconds";
    let get = [("method", "GET"), ("route", "/api/chat/sessions/:id")];
    let bucket = |labels: &[(&str, &str)], le: &str| {
        let mut l = labels.to_vec();
        l.push(("le", le));
        s(&format!("{h}_bucket"), &l)
    };
    assert_eq!(bucket(&get, "0.1"), Some(1.0));
    assert_eq!(bucket(&get, "0.5"), Some(1.0));
    assert_eq!(bucket(&get, "1"), Some(2.0));
    assert_eq!(bucket(&get, "+Inf"), Some(2.0));
    assert_eq!(s(&format!("{h}_count"), &get), Some(2.0));
    assert!((s(&format!("{h}_sum"), &get).unwrap() - 0.745).abs() < 1e-9);
    // POST messages: 12.5 and 1.5 -> 1.5 in le=2, 12.5 only in +Inf.
    let post = [("method", "POST"), ("route", "/api/chat/messages")];
    assert_eq!(bucket(&post, "1"), Some(0.0));
    assert_eq!(bucket(&post, "2"), Some(1.0));
    assert_eq!(bucket(&post, "10"), Some(1.0));
    assert_eq!(bucket(&post, "+Inf"), Some(2.0));
    assert_eq!(
        s("llmchat_http_response_size_bytes_total", &post),
        Some(1057.0)
    );
    assert_eq!(
        s("llmchat_http_response_size_bytes_total", &get),
        Some(5223.0)
    );

    // Chat: two agents kept (cap 2), the third becomes "other".
    let m = "llmchat_chat_messages_total";
    assert_eq!(
        s(m, &[("agent_id", "gpt-4o"), ("status", "success")]),
        Some(2.0)
    );
    assert_eq!(
        s(m, &[("agent_id", "claude"), ("status", "error")]),
        Some(1.0)
    );
    assert_eq!(
        s(m, &[("agent_id", "other"), ("status", "success")]),
        Some(1.0)
    );
    let c = "llmchat_chat_response_duration_seconds";
    assert_eq!(
        s(
            &format!("{c}_bucket"),
            &[("agent_id", "gpt-4o"), ("le", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            &format!("{c}_bucket"),
            &[("agent_id", "gpt-4o"), ("le", "5")]
        ),
        Some(2.0)
    );
    assert_eq!(
        s(&format!("{c}_count"), &[("agent_id", "gpt-4o")]),
        Some(2.0)
    );
    assert_eq!(s(&format!("{c}_count"), &[("agent_id", "claude")]), None);
    // The app-log level counters still see every line.
    assert_eq!(
        s("llmchat_log_lines_total", &[("file", p), ("level", "info")]),
        Some(4.0)
    );

    let out = run_with_stdin("promtool", &["check", "metrics"], text.as_bytes());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[test]
fn json_access_logs_with_configured_fields() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.json");
    append(&access, b"");
    let e = Exporter::start(&[
        "--collector.access",
        "--logs.poll-interval",
        "100ms",
        "--logs.access",
        access.to_str().unwrap(),
        "--access.format",
        "json",
        "--access.json.method",
        "req.method",
        "--access.json.path",
        "req.url",
        "--access.json.status",
        "res.statusCode",
        "--access.buckets",
        "0.01,0.1",
        "--access.routes",
        "^/api/users/[^/]+/avatar$=/api/users/:user/avatar",
    ]);
    append(
        &access,
        b"{\"req\":{\"method\":\"GET\",\"url\":\"/api/users/bob/avatar\"},\"res\":{\"statusCode\":200},\"responseTime\":5}\n\
          {\"req\":{\"method\":\"GET\",\"url\":\"/api/users/eve/avatar?s=1\"},\"res\":{\"statusCode\":304},\"responseTime\":50}\n\
          {\"req\":{\"method\":\"GET\"}}\n",
    );
    let a = access.to_str().unwrap();
    e.expect_stable("llmchat_log_parse_errors_total", &[("file", a)], 1.0);
    let route = [("method", "GET"), ("route", "/api/users/:user/avatar")];
    let mut ok = route.to_vec();
    ok.push(("status_code", "200"));
    assert_eq!(e.sample("llmchat_http_requests_total", &ok), Some(1.0));
    let mut le = route.to_vec();
    le.push(("le", "0.01"));
    assert_eq!(
        e.sample("llmchat_http_request_duration_seconds_bucket", &le),
        Some(1.0)
    );
    assert_eq!(
        e.sample("llmchat_http_request_duration_seconds_count", &route),
        Some(2.0)
    );
}
