//! The month the report tests read: synthetic but realistic series
//! (requests, latencies, chat and LLM usage, backups, alerts, versions)
//! and the figures the generator says they hold, computed here
//! independently of PromQL.

pub(crate) use llmchat_tests::prometheus::Series;

/// 2026-10-01T00:00:00Z and 2026-10-31T00:00:00Z.
pub(crate) const FROM: i64 = 1_790_812_800;
pub(crate) const TO: i64 = FROM + 30 * 86_400;
pub(crate) const STEP: i64 = 300;
/// 2026-10-15T20:00:00Z, the one hour at 60 requests/s.
pub(crate) const PEAK: i64 = FROM + 14 * 86_400 + 20 * 3600;
/// 2026-10-20T03:00:00Z to 06:00: three hours at 30% 5xx (1.5% otherwise).
pub(crate) const INCIDENT: i64 = FROM + 19 * 86_400 + 3 * 3600;
pub(crate) const INCIDENT_END: i64 = INCIDENT + 3 * 3600;
/// 2026-10-06T10:00:00Z: a deploy that changed nothing.
pub(crate) const DEPLOY_CLEAN: i64 = FROM + 5 * 86_400 + 10 * 3600;

/// The share of requests answered 5xx in the step starting at `t`.
pub(crate) fn share_5xx(t: i64) -> f64 {
    if (INCIDENT..INCIDENT_END).contains(&t) {
        0.3
    } else {
        0.015
    }
}

/// Requests per second during the 5 minutes that start at `t`: 10, 30 in
/// the 20:00 UTC hour, 60 in that hour on October 15.
pub(crate) fn rate(t: i64) -> i64 {
    let hour = (t.rem_euclid(86_400)) / 3600;
    if (PEAK..PEAK + 3600).contains(&t) {
        60
    } else if hour == 20 {
        30
    } else {
        10
    }
}

pub(crate) fn busy(t: i64) -> bool {
    (t.rem_euclid(86_400)) / 3600 == 20
}

/// Request durations: half at 0.05 s, 30% at 0.3 s, 15% at 1.5 s, 5% at 4 s.
pub(crate) const DURATIONS: [(f64, f64); 4] = [(0.5, 0.05), (0.3, 0.3), (0.15, 1.5), (0.05, 4.0)];
pub(crate) const BOUNDS: [&str; 7] = ["0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"];

/// Counters that start at 0 one day before FROM and grow by `inc(t)` for
/// the step starting at `t`; gauges that take `value(t)`.
pub(crate) fn generate() -> Vec<Series> {
    generate_between(FROM - 86_400, TO + 3600)
}

/// A counter from 0 at `start`, growing by `inc(t)` in the step starting
/// at `t`, until `end`.
pub(crate) fn counter_series(
    name: &str,
    labels: String,
    start: i64,
    end: i64,
    inc: &dyn Fn(i64) -> f64,
) -> Series {
    let mut v = 0.0;
    let mut points = vec![(start, 0.0)];
    let mut t = start;
    while t < end {
        v += inc(t);
        t += STEP;
        points.push((t, v));
    }
    Series {
        name: name.into(),
        labels,
        points,
    }
}

/// The same series between `start` and `end` (a server that keeps less,
/// or more, than the month).
pub(crate) fn generate_between(start: i64, end: i64) -> Vec<Series> {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let mut out = Vec::new();
    let mut counter = |name: &str, labels: String, inc: &dyn Fn(i64) -> f64| {
        out.push(counter_series(name, labels, start, end, inc));
    };
    let n = |t: i64| (rate(t) * STEP) as f64;
    let shares: [(&str, &dyn Fn(i64) -> f64); 3] = [
        ("200", &|t| 0.99 - share_5xx(t)),
        ("404", &|_| 0.01),
        ("500", &share_5xx),
    ];
    for (status, share) in shares {
        counter(
            "llmchat_http_requests_total",
            format!(r#"{job},method="GET",route="/api/chat",status_code="{status}""#),
            &move |t| n(t) * share(t),
        );
    }
    // Another job with the same metric names (a staging exporter on the
    // same Prometheus): ten times the traffic, all of it 5xx. The report
    // reads --job llmchat-exporter only, so none of it may show.
    counter(
        "llmchat_http_requests_total",
        r#"job="staging-exporter",instance="s:9842",method="GET",route="/api/chat",status_code="503""#.into(),
        &move |t| n(t) * 10.0,
    );
    let route = format!(r#"{job},method="GET",route="/api/chat""#);
    for (i, le) in BOUNDS.iter().enumerate() {
        let below: f64 = DURATIONS
            .iter()
            .filter(|(_, d)| i == 6 || *d <= le.parse::<f64>().unwrap())
            .map(|(share, _)| share)
            .sum();
        counter(
            "llmchat_http_request_duration_seconds_bucket",
            format!(r#"{route},le="{le}""#),
            &move |t| n(t) * below,
        );
    }
    let mean: f64 = DURATIONS.iter().map(|(s, d)| s * d).sum();
    counter(
        "llmchat_http_request_duration_seconds_sum",
        route.clone(),
        &move |t| n(t) * mean,
    );
    counter("llmchat_http_request_duration_seconds_count", route, &n);
    // The staging job's requests all take longer than the top bucket.
    for le in BOUNDS {
        counter(
            "llmchat_http_request_duration_seconds_bucket",
            format!(
                r#"job="staging-exporter",instance="s:9842",method="GET",route="/api/chat",le="{le}""#
            ),
            &move |t| if le == "+Inf" { n(t) * 10.0 } else { 0.0 },
        );
    }
    // pg_stat_statements: 1,000 statements a step at 5 ms on average, two
    // of them calls of slow statements.
    counter(
        "llmchat_database_statement_calls_total",
        job.into(),
        &|_| 1000.0,
    );
    counter(
        "llmchat_database_statement_execution_seconds_total",
        job.into(),
        &|_| 5.0,
    );
    counter("llmchat_database_slow_queries_total", job.into(), &|_| 2.0);
    let mut gauge = |name: &str, labels: &str, value: &dyn Fn(i64) -> f64| {
        let mut points = Vec::new();
        let mut t = start;
        while t <= end {
            points.push((t, value(t)));
            t += STEP;
        }
        out.push(Series {
            name: name.into(),
            labels: labels.into(),
            points,
        });
    };
    gauge("llmchat_host_memory_total_bytes", job, &|_| 16e9);
    gauge("llmchat_host_memory_available_bytes", job, &|t| {
        16e9 * if busy(t) { 0.05 } else { 0.15 }
    });
    gauge("llmchat_host_cpu_usage_ratio", job, &|t| {
        if busy(t) {
            0.9
        } else {
            0.3
        }
    });
    let fs = format!(r#"{job},mountpoint="/",device="/dev/vda",fstype="ext4""#);
    gauge("llmchat_host_filesystem_size_bytes", &fs, &|_| 100e9);
    gauge("llmchat_host_filesystem_available_bytes", &fs, &|_| 30e9);
    // The fullest mount, over the 80% line: the report must name it.
    let data = format!(r#"{job},mountpoint="/data",device="/dev/vdb",fstype="xfs""#);
    gauge("llmchat_host_filesystem_size_bytes", &data, &|_| 500e9);
    gauge("llmchat_host_filesystem_available_bytes", &data, &|_| 75e9);
    gauge(
        "llmchat_database_connections",
        &format!(r#"{job},state="active""#),
        &|t| {
            if busy(t) {
                70.0
            } else {
                5.0
            }
        },
    );
    gauge(
        "llmchat_database_connections",
        &format!(r#"{job},state="idle""#),
        &|_| 15.0,
    );
    gauge("llmchat_database_connections_max", job, &|_| 100.0);
    gauge("llmchat_database_ping_duration_seconds", job, &|_| 0.002);
    gauge("llmchat_database_statements_available", job, &|_| 1.0);
    // One sample between two 5-minute ones at 99%: a maximum read from
    // 5-minute points would say 95%.
    if let Some(memory) = out
        .iter_mut()
        .find(|s| s.name == "llmchat_host_memory_available_bytes")
    {
        let spike = PEAK + 150;
        if let Some(i) = memory.points.iter().position(|(t, _)| *t > spike) {
            memory.points.insert(i, (spike, 16e9 * 0.01));
        }
    }
    // The alert Prometheus raised during the incident (a sample a minute,
    // as its rule evaluation writes them), plus two that must stay out:
    // the always-firing Watchdog, and the staging job's own alert.
    let mut alert = |labels: &str, from: i64, to: i64, every: usize| {
        let points = (from..to)
            .step_by(every)
            .filter(|t| (start..=end).contains(t))
            .map(|t| (t, 1.0))
            .collect();
        out.push(Series {
            name: "ALERTS".into(),
            labels: labels.into(),
            points,
        });
    };
    alert(
        r#"alertname="LLMChatHighErrorRate",alertstate="firing",severity="critical",job="llmchat-exporter",instance="a:9842""#,
        INCIDENT + 300,
        INCIDENT_END + 300,
        60,
    );
    alert(
        r#"alertname="Watchdog",alertstate="firing",severity="none""#,
        start,
        end,
        STEP as usize,
    );
    alert(
        r#"alertname="LLMChatHighErrorRate",alertstate="firing",severity="critical",job="staging-exporter",instance="s:9842""#,
        start,
        end,
        STEP as usize,
    );
    // Versions: a clean deploy on October 6 and one at the start of the
    // incident (the worst); the staging job's own deploy stays out.
    let mut version = |labels: &str, from: i64, to: i64| {
        let points = (from..to)
            .step_by(STEP as usize)
            .filter(|t| (start..=end).contains(t))
            .map(|t| (t, 1.0))
            .collect();
        out.push(Series {
            name: "llmchat_app_info".into(),
            labels: labels.into(),
            points,
        });
    };
    version(&format!(r#"{job},version="1.4.0""#), start, DEPLOY_CLEAN);
    version(&format!(r#"{job},version="1.4.1""#), DEPLOY_CLEAN, INCIDENT);
    version(&format!(r#"{job},version="1.5.0""#), INCIDENT, end + STEP);
    let staging = r#"job="staging-exporter",instance="s:9842""#;
    version(
        &format!(r#"{staging},version="9.9.9""#),
        start,
        FROM + 2 * 86_400,
    );
    version(
        &format!(r#"{staging},version="9.9.10""#),
        FROM + 2 * 86_400,
        end + STEP,
    );
    chat_and_llm(&mut out, start, end);
    backup_series(&mut out, start, end);
    out
}

/// backup.sh at 02:00 every day, each file read back at 02:05; the
/// database dump of October 12 is found truncated (the newest dump does
/// not read back until the next night's).
pub(crate) fn backup_series(out: &mut Vec<Series>, start: i64, end: i64) {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let bad = FROM + 11 * 86_400 + 7500;
    let mut gauge = |name: &str, kind: &str, value: &dyn Fn(i64) -> f64| {
        let points = (start..=end)
            .step_by(STEP as usize)
            .map(|t| (t, value(t)))
            .collect();
        out.push(Series {
            name: name.into(),
            labels: format!(r#"{job},kind="{kind}""#),
            points,
        });
    };
    let at = |t: i64, offset: i64| ((t - offset).div_euclid(86_400) * 86_400 + offset) as f64;
    for kind in ["database", "uploads"] {
        gauge("llmchat_backup_newest_timestamp_seconds", kind, &|t| {
            at(t, 7200)
        });
        gauge(
            "llmchat_backup_newest_check_timestamp_seconds",
            kind,
            &|t| at(t, 7500),
        );
        let broken = kind == "database";
        gauge("llmchat_backup_newest_valid", kind, &move |t| {
            if broken && (bad..bad + 86_400).contains(&t) {
                0.0
            } else {
                1.0
            }
        });
    }
    // The restore drill at 03:00 every day; October 12's failed.
    let drill_day = FROM + 11 * 86_400 + 10_800;
    for (result, counts) in [
        (
            "succeeded",
            &(|day: i64| day != drill_day) as &dyn Fn(i64) -> bool,
        ),
        ("failed", &|day: i64| day == drill_day),
    ] {
        out.push(Series {
            name: "llmchat_backup_drill_runs_total".into(),
            labels: format!(r#"{job},result="{result}""#),
            points: (start..=end)
                .step_by(STEP as usize)
                .map(|t| {
                    let first = (start - 10_800).div_euclid(86_400) + 1;
                    let last = (t - 10_800).div_euclid(86_400);
                    let n = (first..=last)
                        .filter(|d| counts(d * 86_400 + 10_800))
                        .count();
                    (t, n as f64)
                })
                .collect(),
        });
    }
    out.push(Series {
        name: "llmchat_backup_invalid_files_total".into(),
        labels: format!(r#"{job},kind="database",reason="truncated""#),
        points: (start..=end)
            .step_by(STEP as usize)
            .map(|t| (t, if t >= bad { 1.0 } else { 0.0 }))
            .collect(),
    });
}

/// What a counter grows by in the step starting at a time.
pub(crate) type PerStep<'a> = &'a dyn Fn(i64) -> f64;

/// The bounds of FIRST_TOKEN_BUCKETS (the GenAI conventions') the data
/// below lands in, and +Inf: the others would only repeat their
/// neighbours' counts, and a month of them is slow to backfill.
pub(crate) const FIRST_TOKEN_BOUNDS: [&str; 5] = ["0.32", "0.64", "1.28", "2.56", "+Inf"];

/// The chat events' series, per 5-minute step; messages and spend from a
/// month before FROM (the LLM section compares each agent's cost per
/// message with the period before): gpt-4o on OpenAI (0.425 USD, 1 rate-limited call),
/// claude on Anthropic (0.405 USD, 5 overloaded), qwen on Dify (CNY:
/// 0.144 before FROM, 0.224 from it, its input doubled; 8 provider 5xx)
/// and an unpriced embedding model.
pub(crate) fn chat_and_llm(out: &mut Vec<Series>, start: i64, end: i64) {
    let job = r#"job="llmchat-exporter",instance="a:9842""#;
    let early = start.min(FROM - 30 * 86_400);
    let mut counter = |name: &str, labels: String, inc: &dyn Fn(i64) -> f64| {
        let start = if name == "llmchat_chat_messages_total" || name == "llmchat_chat_cost_total" {
            early
        } else {
            start
        };
        out.push(counter_series(name, labels, start, end, inc));
    };
    for (agent, status, per_step) in [
        ("gpt-4o", "success", 100.0),
        ("gpt-4o", "error", 1.0),
        ("claude", "success", 50.0),
        ("claude", "error", 5.0),
        ("qwen", "success", 92.0),
        ("qwen", "error", 8.0),
    ] {
        counter(
            "llmchat_chat_messages_total",
            format!(r#"{job},agent_id="{agent}",status="{status}""#),
            &move |_| per_step,
        );
    }
    let qwen_input = |t: i64| if t < FROM { 50_000.0 } else { 100_000.0 };
    let tokens: [(&str, &str, &str, PerStep); 8] = [
        ("gpt-4o", "gpt-4o", "input", &|_| 100_000.0),
        ("gpt-4o", "gpt-4o", "cached_input", &|_| 20_000.0),
        ("gpt-4o", "gpt-4o", "output", &|_| 20_000.0),
        ("claude", "claude-3-5-sonnet", "input", &|_| 60_000.0),
        ("claude", "claude-3-5-sonnet", "output", &|_| 15_000.0),
        ("qwen", "qwen-max", "input", &qwen_input),
        ("qwen", "qwen-max", "output", &|_| 10_000.0),
        ("qwen", "bge-embed", "input", &|_| 5_000.0),
    ];
    for (agent, model, kind, inc) in tokens {
        counter(
            "llmchat_chat_tokens_total",
            format!(r#"{job},agent_id="{agent}",model="{model}",type="{kind}""#),
            inc,
        );
    }
    counter(
        "llmchat_chat_unpriced_tokens_total",
        format!(r#"{job},agent_id="qwen",model="bge-embed",type="input""#),
        &|_| 5_000.0,
    );
    let qwen_cost = move |t: i64| (qwen_input(t) * 1.6 + 10_000.0 * 6.4) / 1e6;
    let costs: [(&str, &str, &str, PerStep); 3] = [
        ("gpt-4o", "gpt-4o", "USD", &|_| 0.425),
        ("claude", "claude-3-5-sonnet", "USD", &|_| 0.405),
        ("qwen", "qwen-max", "CNY", &qwen_cost),
    ];
    for (agent, model, currency, inc) in costs {
        counter(
            "llmchat_chat_cost_total",
            format!(r#"{job},agent_id="{agent}",model="{model}",currency="{currency}""#),
            inc,
        );
    }
    for (agent, provider, calls, error_type, errors) in [
        ("gpt-4o", "openai", 101.0, "rate_limited", 1.0),
        ("claude", "anthropic", 55.0, "overloaded", 5.0),
        ("qwen", "dify", 100.0, "provider_5xx", 8.0),
    ] {
        counter(
            "llmchat_chat_provider_calls_total",
            format!(r#"{job},agent_id="{agent}",provider="{provider}""#),
            &move |_| calls,
        );
        counter(
            "llmchat_chat_provider_errors_total",
            format!(r#"{job},agent_id="{agent}",provider="{provider}",error_type="{error_type}""#),
            &move |_| errors,
        );
    }
    // Streamed answers per step, cumulative by bound: gpt-4o 50 within
    // 0.32 s, 90 within 0.64 s, all 100 within 1.28 s; claude 20 within
    // 0.64 s, 38 within 1.28 s, all 40 within 2.56 s.
    for (agent, model, cumulative) in [
        (
            "gpt-4o",
            "gpt-4o",
            [(0.32, 50.0), (0.64, 90.0), (1.28, 100.0)],
        ),
        (
            "claude",
            "claude-3-5-sonnet",
            [(0.64, 20.0), (1.28, 38.0), (2.56, 40.0)],
        ),
    ] {
        for le in FIRST_TOKEN_BOUNDS {
            let bound: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let below = cumulative
                .iter()
                .rev()
                .find(|(b, _)| bound >= *b)
                .map_or(0.0, |(_, n)| *n);
            counter(
                "llmchat_chat_time_to_first_token_seconds_bucket",
                format!(r#"{job},agent_id="{agent}",model="{model}",le="{le}""#),
                &move |_| below,
            );
        }
    }
}

/// What the generator says the month holds, step by step.
pub(crate) struct Expected {
    pub(crate) requests: f64,
    pub(crate) server_errors: f64,
    pub(crate) busiest_hour: (i64, f64),
}

impl Expected {
    /// 4xx (1%) and 5xx over all requests.
    pub(crate) fn error_ratio(&self) -> f64 {
        (self.requests * 0.01 + self.server_errors) / self.requests
    }
}

pub(crate) fn expected() -> Expected {
    let mut requests = 0.0;
    let mut server_errors = 0.0;
    let mut hours = std::collections::BTreeMap::new();
    let mut t = FROM;
    while t < TO {
        requests += (rate(t) * STEP) as f64;
        server_errors += (rate(t) * STEP) as f64 * share_5xx(t);
        *hours.entry(t - t.rem_euclid(3600)).or_insert(0.0) += (rate(t) * STEP) as f64;
        t += STEP;
    }
    let (hour, n) = hours
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    Expected {
        requests,
        server_errors,
        busiest_hour: (hour, n / 3600.0),
    }
}
