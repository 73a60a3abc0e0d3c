//! `llmchat-exporter report` against a real Prometheus holding a month of
//! synthetic but realistic series, loaded with `promtool tsdb
//! create-blocks-from openmetrics`. Expected figures are computed here from
//! the generator, independently of PromQL.

use crate::month::*;
use crate::prometheus::*;

#[test]
fn monthly_report_from_a_real_prometheus() {
    let prom = prometheus_with_a_month();
    let r = json(&prom, &MONTH);
    // The job's two deploys (not the staging job's), each with the hour
    // before and after; the one at the incident's start is the worst.
    let deploys = r["deploys"].as_array().expect("deploys");
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    let (clean, bad) = (&deploys[0], &deploys[1]);
    assert_eq!(clean["version"], "1.4.1");
    assert_eq!(clean["previous_version"], "1.4.0");
    assert!(
        (clean["at"].as_f64().unwrap() - DEPLOY_CLEAN as f64).abs() <= 60.0,
        "{clean}"
    );
    assert_eq!(clean["worst"], false);
    close(
        clean["after"]["error_ratio"].as_f64().unwrap(),
        0.015,
        "clean after",
    );
    assert_eq!(bad["version"], "1.5.0");
    assert_eq!(bad["previous_version"], "1.4.1");
    assert_eq!(bad["instances"], 1);
    assert!(
        (bad["at"].as_f64().unwrap() - INCIDENT as f64).abs() <= 60.0,
        "{bad}"
    );
    assert_eq!(bad["worst"], true);
    close(
        bad["before"]["error_ratio"].as_f64().unwrap(),
        0.015,
        "before the bad deploy",
    );
    close(
        bad["after"]["error_ratio"].as_f64().unwrap(),
        0.3,
        "after the bad deploy",
    );
    let f = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {r}"))
    };
    let exp = expected();
    let seconds = (TO - FROM) as f64;
    // The report names its server, the span it covered (all of it) and
    // the zone its times are in.
    assert_eq!(r["source"]["server"], prom.url.as_str());
    assert_eq!(r["source"]["partial"], false);
    assert!(r["source"]["version"].is_string(), "{}", r["source"]);
    assert_eq!(r["timezone"], "UTC");
    close(f("from"), FROM as f64, "from");

    close(f("requests"), exp.requests, "requests");
    close(f("client_errors"), exp.requests * 0.01, "4xx");
    close(f("server_errors"), exp.server_errors, "5xx");
    close(f("error_ratio"), exp.error_ratio(), "error ratio");
    close(f("requests_per_second"), exp.requests / seconds, "rps");
    close(f("requests_per_day"), exp.requests / 30.0, "per day");
    let mean: f64 = DURATIONS.iter().map(|(s, d)| s * d).sum();
    close(f("mean_response_seconds"), mean, "mean");
    // 95% of requests are at or below 2 s and 80% below 1 s: the 95th
    // lands on the top of (1, 2]; the 99th is 4/5 into (2, 5].
    close(f("p95_response_seconds"), 2.0, "p95");
    close(f("p99_response_seconds"), 2.0 + 3.0 * 0.8, "p99");
    assert_eq!(r["p95_above_top_bucket"], false);
    // A mean over time takes every 5-minute point of [FROM, TO], both ends
    // included (Prometheus 2.x ranges are closed): 8641 points.
    let mean_of = |value: &dyn Fn(i64) -> f64| {
        let points: Vec<f64> = (0..=(TO - FROM) / STEP)
            .map(|i| value(FROM + i * STEP))
            .collect();
        points.iter().sum::<f64>() / points.len() as f64
    };
    let memory_mean = mean_of(&|t| if busy(t) { 0.95 } else { 0.85 });
    // The mean of available bytes includes the one 99% sample.
    assert!(
        (r["memory"]["mean"].as_f64().unwrap() - memory_mean).abs() < 1e-4,
        "memory mean {}",
        r["memory"]
    );
    // The 99% sample between two 5-minute points is the maximum.
    close(r["memory"]["max"].as_f64().unwrap(), 0.99, "memory max");
    let cpu_mean = mean_of(&|t| if busy(t) { 0.9 } else { 0.3 });
    close(r["cpu"]["mean"].as_f64().unwrap(), cpu_mean, "cpu mean");
    close(r["cpu"]["max"].as_f64().unwrap(), 0.9, "cpu max");
    // The fullest mount, named.
    close(r["disk"]["max"].as_f64().unwrap(), 0.85, "disk max");
    assert_eq!(r["disk"]["mountpoint"], "/data");
    assert_eq!(r["disk"]["instance"], "a:9842");
    let db = &r["database"];
    let conn_mean = mean_of(&|t| if busy(t) { 85.0 } else { 20.0 });
    close(
        db["connections"]["mean"].as_f64().unwrap(),
        conn_mean,
        "conn mean",
    );
    close(db["connections"]["max"].as_f64().unwrap(), 85.0, "conn max");
    close(
        db["max_connections"].as_f64().unwrap(),
        100.0,
        "max_connections",
    );
    close(db["ping_seconds"].as_f64().unwrap(), 0.002, "ping");
    assert_eq!(db["statements_available"], true);
    close(
        db["statements_mean_seconds"].as_f64().unwrap(),
        0.005,
        "statements' mean",
    );
    close(
        db["slow_queries"].as_f64().unwrap(),
        2.0 * 8640.0,
        "slow queries",
    );

    // The busiest single hour and the typical daily peak, on whole hours.
    let busiest = &r["busiest_hour"];
    assert_eq!(
        busiest["start"].as_f64().unwrap() as i64,
        exp.busiest_hour.0
    );
    assert_eq!(exp.busiest_hour.0, PEAK);
    close(
        busiest["requests_per_second"].as_f64().unwrap(),
        exp.busiest_hour.1,
        "busiest rate",
    );
    assert_eq!(r["typical_peak"]["hour_of_day"], 20);
    close(
        r["typical_peak"]["requests_per_second"].as_f64().unwrap(),
        (29.0 * 30.0 + 60.0) / 30.0,
        "typical peak rate",
    );
    assert_eq!(r["timeline_resolution"], "day");
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 30);
    close(
        timeline[0]["p95"]["seconds"].as_f64().unwrap(),
        2.0,
        "daily p95",
    );
    close(
        timeline[0]["start"].as_f64().unwrap(),
        FROM as f64,
        "first day",
    );

    // The incident: its three hours are the worst, its day the worst day,
    // and its alert is listed with its span; the Watchdog and the staging
    // job's alert are not.
    let worst = r["worst_hours"].as_array().unwrap();
    for (i, h) in worst.iter().take(3).enumerate() {
        assert_eq!(
            h["start"].as_f64().unwrap() as i64,
            INCIDENT + 3600 * i as i64,
            "{worst:?}"
        );
        close(
            h["server_error_ratio"].as_f64().unwrap(),
            0.3,
            "incident 5xx",
        );
    }
    assert_eq!(worst.len(), 3, "ordinary hours are not listed: {worst:?}");
    assert_eq!(r["worst_days"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["slowest_hour"],
        serde_json::Value::Null,
        "all hours alike"
    );
    assert_eq!(
        r["worst_days"][0]["start"].as_f64().unwrap() as i64,
        INCIDENT - 3 * 3600
    );
    let alerts = r["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["alertname"], "LLMChatHighErrorRate");
    assert_eq!(a["labels"]["instance"], "a:9842");
    assert_eq!(a["start"].as_f64().unwrap() as i64, INCIDENT + 300);
    // Backfilled samples have no stale marker at the end, so the series
    // stays visible for Prometheus' 5-minute lookback after the last one.
    let end = a["end"].as_f64().unwrap() as i64;
    assert!(
        (INCIDENT_END + 300..=INCIDENT_END + 600).contains(&end),
        "end {end}"
    );
    assert_eq!(
        r["most_saturated_hour"]["start"].as_f64().unwrap() as i64,
        PEAK,
        "the 99% memory sample"
    );

    let agents = r["agents"].as_array().unwrap();
    let agent = |id: &str| {
        agents
            .iter()
            .find(|a| a["agent_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {agents:?}"))
    };
    close(
        agent("gpt-4o")["error_ratio"].as_f64().unwrap(),
        1.0 / 101.0,
        "gpt-4o errors",
    );
    close(
        agent("claude")["error_ratio"].as_f64().unwrap(),
        5.0 / 55.0,
        "claude errors",
    );

    // checkThresholds: mean > 500 ms warning, error rate > 1% critical,
    // memory > 80% warning; plus /data over 80%, connections > 80% of max
    // and two agents over 5% errors. Each names its subject.
    let findings: Vec<(String, String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let subject = ["route", "instance", "mountpoint", "agent_id", "backup_kind"]
                .iter()
                .filter_map(|k| f[*k].as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ");
            (
                f["kind"].as_str().unwrap().into(),
                f["severity"].as_str().unwrap().into(),
                subject,
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("performance", "warning", "route=/api/chat"),
        ("error_rate", "critical", "route=/api/chat"),
        ("memory", "warning", "instance=a:9842"),
        ("disk", "warning", "instance=a:9842 mountpoint=/data"),
        ("database_connections", "warning", ""),
        ("agent_errors", "warning", "agent_id=qwen"),
        ("agent_errors", "warning", "agent_id=claude"),
        ("agent_cost_per_message", "warning", "agent_id=qwen"),
        ("backup_invalid", "critical", "backup_kind=database"),
        ("backup_drill_failed", "warning", ""),
    ]
    .iter()
    .map(|(k, s, x)| (k.to_string(), s.to_string(), x.to_string()))
    .collect();
    assert_eq!(findings, want);

    // Backups: one a night per kind, each read back, October 12's dump
    // truncated; the newest of each reads back at the month's end.
    let backups: Vec<(String, f64, f64, f64, bool)> = r["backups"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().unwrap().to_string(),
                k["made"].as_f64().unwrap(),
                k["checked"].as_f64().unwrap(),
                k["invalid"]["truncated"].as_f64().unwrap_or(0.0),
                k["newest_valid"] == true,
            )
        })
        .collect();
    assert_eq!(
        backups,
        [
            ("database".to_string(), 30.0, 30.0, 1.0, true),
            ("uploads".to_string(), 30.0, 30.0, 0.0, true),
        ]
    );
    // The restore drills: one a night, October 12's failed.
    assert_eq!(r["backups"]["drills"]["succeeded"], 29.0);
    assert_eq!(r["backups"]["drills"]["failed"], 1.0);

    // LLM usage, against the generator's own figures (8,640 steps): tokens
    // per agent and model, spend to the cent, the top agents by spend per
    // currency, cost per message against September's, time to first token
    // and provider error rates.
    let llm = &r["llm"];
    let model = |agent: &str, model: &str| {
        llm["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["agent_id"] == agent && m["model"] == model)
            .unwrap_or_else(|| panic!("{agent}/{model} in {llm}"))
            .clone()
    };
    for (agent, name, input, cached, output, cost) in [
        (
            "gpt-4o",
            "gpt-4o",
            100_000.0,
            20_000.0,
            20_000.0,
            Some(3672.00),
        ),
        (
            "claude",
            "claude-3-5-sonnet",
            60_000.0,
            0.0,
            15_000.0,
            Some(3499.20),
        ),
        ("qwen", "qwen-max", 100_000.0, 0.0, 10_000.0, Some(1935.36)),
        ("qwen", "bge-embed", 5_000.0, 0.0, 0.0, None),
    ] {
        let m = model(agent, name);
        let what = format!("{agent}/{name}");
        close(m["input_tokens"].as_f64().unwrap(), input * 8640.0, &what);
        close(
            m["cached_input_tokens"].as_f64().unwrap(),
            cached * 8640.0,
            &what,
        );
        close(m["output_tokens"].as_f64().unwrap(), output * 8640.0, &what);
        match cost {
            Some(c) => assert!(
                (m["cost"].as_f64().unwrap() - c).abs() < 0.005,
                "{what}: spend {} against {c}",
                m["cost"]
            ),
            None => assert!(m["cost"].is_null(), "{what}: unpriced, not free: {m}"),
        }
    }
    close(
        llm["unpriced_tokens"].as_f64().unwrap(),
        5_000.0 * 8640.0,
        "unpriced",
    );
    let agents: Vec<(String, String)> = llm["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["currency"].as_str().unwrap().into(),
                a["agent_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        agents,
        pairs(&[("CNY", "qwen"), ("USD", "gpt-4o"), ("USD", "claude")])
    );
    let qwen = &llm["agents"][0];
    close(
        qwen["cost_per_message"].as_f64().unwrap(),
        0.224 / 100.0,
        "qwen now",
    );
    close(
        qwen["previous_cost_per_message"].as_f64().unwrap(),
        0.144 / 100.0,
        "qwen before",
    );
    let gpt = &llm["agents"][1];
    close(
        gpt["cost_per_message"].as_f64().unwrap(),
        gpt["previous_cost_per_message"].as_f64().unwrap(),
        "gpt-4o's cost per message did not move",
    );
    let first = llm["first_token"].as_array().unwrap();
    let p = |i: usize, q: &str| first[i][q]["seconds"].as_f64().unwrap();
    assert_eq!(first[0]["agent_id"], "claude");
    close(
        first[0]["answers"].as_f64().unwrap(),
        40.0 * 8640.0,
        "claude answers",
    );
    close(p(0, "p50"), 0.64, "claude p50");
    close(p(0, "p95"), 1.28, "claude p95");
    close(p(0, "p99"), 2.304, "claude p99");
    assert_eq!(first[1]["agent_id"], "gpt-4o");
    close(p(1, "p50"), 0.32, "gpt-4o p50");
    close(p(1, "p95"), 0.96, "gpt-4o p95");
    close(p(1, "p99"), 1.216, "gpt-4o p99");
    type Provider = (String, f64, Vec<(String, f64)>);
    let providers: Vec<Provider> = llm["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let errors = p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
                .collect();
            (
                p["provider"].as_str().unwrap().into(),
                p["calls"].as_f64().unwrap(),
                errors,
            )
        })
        .collect();
    let want_providers = [
        ("openai", 101.0, "rate_limited", 1.0),
        ("dify", 100.0, "provider_5xx", 8.0),
        ("anthropic", 55.0, "overloaded", 5.0),
    ];
    assert_eq!(providers.len(), 3, "{providers:?}");
    for ((name, calls, errors), (want, n, kind, failed)) in providers.iter().zip(want_providers) {
        assert_eq!(name, want);
        close(*calls, n * 8640.0, want);
        assert_eq!(errors.len(), 1, "{want}: {errors:?}");
        assert_eq!(errors[0].0, kind);
        close(errors[0].1, failed * 8640.0, kind);
    }

    // Markdown, English and Chinese, with the chart beside it.
    let dir = tempfile::tempdir().unwrap();
    for (lang, needles) in [
        (
            "en",
            &[
                "## Response time",
                "## Error rate",
                "## Throughput",
                "## Resource usage",
                "## Database performance",
                "## Recommendations",
                "Mean response time too high: 540.00ms",
                "**CRITICAL** Error rate too high:",
                "Busiest hour: 2026-10-15 20:00–21:00 (60.00 req/s)",
                "| 2026-10-20 03:00–04:00 | 10.00 | 30.00% |",
                "| LLMChatHighErrorRate | critical | instance=a:9842 | 2026-10-20 03:05 |",
                "Agent qwen's error ratio is 8.00%",
                "Agent claude's error ratio is 9.09%",
                "Disk usage of /data on a:9842 reached 85.00%",
                "Start with the worst hour, 2026-10-20 03:00–04:00 (5xx 30.00%), when LLMChatHighErrorRate fired.",
                "P95 and P99 are estimates",
            ][..],
        ),
        (
            "zh",
            &[
                "## 响应时间",
                "## 错误率",
                "## 吞吐量",
                "## 资源使用",
                "## 数据库性能",
                "## 建议",
                "平均响应时间过高: 540.00ms",
                "错误率过高:",
                "最繁忙的一小时: 2026-10-15 20:00–21:00",
                "智能体 qwen 的错误率为 8.00%",
                "智能体 claude 的错误率为 9.09%",
                "慢查询数量",
                "内存使用率: 平均",
                "，最高 99.00%",
            ][..],
        ),
    ] {
        let path = dir.path().join(format!("report-{lang}.md"));
        let mut args = vec![
            "--prometheus.url",
            prom.url.as_str(),
            "--lang",
            lang,
            "--output",
        ];
        let p = path.to_str().unwrap().to_string();
        args.push(&p);
        args.extend_from_slice(&MONTH);
        let out = report(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = std::fs::read_to_string(&path).unwrap();
        for n in needles {
            assert!(md.contains(n), "{lang}: {n:?} missing in\n{md}");
        }
        let chart_name = format!("report-{lang}-chart.svg");
        assert!(md.contains(&format!("]({chart_name})")));
        let svg = std::fs::read_to_string(dir.path().join(&chart_name)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.matches("<polyline").count() == 2,
            "{svg}"
        );
        let title = if lang == "zh" { "每日每秒请求数" } else { "Daily requests/s" };
        assert!(svg.contains(title), "{lang}: {svg}");
    }

    // A range with no data: a clear error, not an empty healthy report.
    let out = report(&[
        "--prometheus.url",
        &prom.url,
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-01-31T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no LLMChat data"));
    assert!(out.stdout.is_empty());
}
