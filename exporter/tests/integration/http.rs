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
    let e = Exporter::start(&["--collector.host", "--collector.logs", "--collector.access"]);
    let r = e.get("/health");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].as_f64().unwrap() >= 0.0);
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
