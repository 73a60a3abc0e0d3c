//! The HTTP surface of the real binary: routes, methods, health, shutdown.

use crate::helpers::Exporter;

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let e = Exporter::start(&[]);
    assert_eq!(e.get("/nope").status(), 404);
    let r = e.request(reqwest::Method::POST, "/metrics");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(e.request(reqwest::Method::DELETE, "/health").status(), 405);
    assert_eq!(e.request(reqwest::Method::HEAD, "/metrics").status(), 200);
}

#[test]
fn landing_page_links_every_endpoint_and_lists_collectors() {
    let e = Exporter::start(&["--collector.host", "--web.telemetry-path", "/custom"]);
    let r = e.get("/");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().unwrap();
    for link in [
        "href=\"/custom\"",
        "href=\"/health\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
    ] {
        assert!(page.contains(link), "{link} missing from landing page");
    }
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.contains("<code>host</code>") && !page.contains("<code>logs</code>"));
    assert_eq!(e.get("/custom").status(), 200);
    assert_eq!(e.get("/metrics").status(), 404);
}

#[test]
fn health_reports_each_collector_and_uptime() {
    let started = std::time::Instant::now();
    let e = Exporter::start(&["--collector.host", "--collector.logs", "--collector.access"]);
    let r = e.get("/health");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // Uptime counts from the process's start: not more than the test has
    // waited, and it grows.
    let uptime = v["uptime_seconds"].as_f64().unwrap();
    assert!(uptime < started.elapsed().as_secs_f64(), "uptime {uptime}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let later: serde_json::Value = e.get("/health").json().unwrap();
    assert!(later["uptime_seconds"].as_f64().unwrap() >= uptime + 0.04);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["host", "logs", "access"]);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "healthy"));
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let e = Exporter::start(&[]);
    let status = e.terminate();
    assert!(status.success(), "exit status {status:?}");
}

/// Without `web.admin_token`, `/health/detailed` is off: 403 naming the
/// key, whatever token is sent.
#[test]
fn health_detailed_is_forbidden_without_an_admin_token() {
    let e = Exporter::start(&[]);
    let r = e.get("/health/detailed");
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("web.admin_token"));
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/health/detailed", e.base))
        .bearer_auth("any-token-at-all-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// SIGTERM while a scrape is in flight (its app probe hangs on a server
/// that never answers): the scrape still gets its answer, cut at its
/// deadline, and the exporter then exits 0.
#[test]
fn sigterm_during_a_scrape_lets_it_finish_then_exits_cleanly() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = format!("http://{}", hole.local_addr().unwrap());
    let e = Exporter::start(&["--collector.app", "--app.url", &app]);
    let base = e.base.clone();
    let scrape = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .get(format!("{base}/metrics"))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "3")
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    // The scrape is in flight once the probe's connection is queued.
    let (_probe, _) = hole.accept().unwrap();
    let status = e.terminate();
    assert!(status.success(), "exit status {status:?}");
    let (code, text) = scrape
        .join()
        .unwrap()
        .expect("the in-flight scrape got no answer");
    assert_eq!(code, 200);
    assert!(text.contains("llmchat_app_up 0"), "{text}");
}
