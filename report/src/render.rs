//! The report as Markdown, with the sections of the guide's
//! `generateReport` (响应时间, 错误率, 吞吐量, 资源使用, 数据库性能, 建议)
//! plus the worst hours and days and the alerts that fired, in English or
//! Chinese, every time in the report's zone.

use std::fmt::Write;

use super::histogram::Estimate;
use super::model::{Period, Report, Severity, Usage};
use super::text::{self, Text};
use super::time::Zone;
use super::{backups, cell, llm, Lang};

fn ms(v: Option<f64>, above: bool, t: &Text) -> String {
    match v {
        None => t.no_data.into(),
        Some(s) if above => format!("> {} s", trim(s)),
        Some(s) => format!("{:.2}ms", s * 1000.0),
    }
}

fn estimate(e: Option<Estimate>, t: &Text) -> String {
    ms(
        e.map(|e| e.seconds),
        e.is_some_and(|e| e.above_top_bucket),
        t,
    )
}

fn pct(v: Option<f64>, t: &Text) -> String {
    v.map_or(t.no_data.into(), |r| format!("{:.2}%", r * 100.0))
}

fn usage(u: &Usage, t: &Text) -> String {
    format!(
        "{} {}{}{} {}",
        t.mean_max.0,
        pct(u.mean, t),
        t.sep,
        t.mean_max.1,
        pct(u.max, t)
    )
}

fn count(v: f64) -> String {
    format!("{}", v.round() as i64)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `2026-10-15 20:00–21:00`.
fn hour_span(p: &Period, zone: &Zone) -> String {
    format!("{}–{}", zone.minute(p.start), &zone.minute(p.end)[11..])
}

fn period_row(label: String, p: &Period, t: &Text) -> String {
    format!(
        "| {label} | {:.2} | {} | {} | {} | {} |",
        p.requests_per_second,
        pct(p.server_error_ratio, t),
        estimate(p.p95, t),
        pct(p.cpu_max, t),
        pct(p.memory_max, t)
    )
}

/// The report as Markdown; `chart` is the SVG written beside it, if any
/// (none on stdout: a link to a file that is not there would mislead).
pub fn markdown(r: &Report, lang: Lang, zone: &Zone, chart: Option<&str>) -> String {
    let t = text::of(lang);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# {}\n", t.title);
    let _ = writeln!(
        w,
        "- {}: {} – {} ({}, {})",
        t.period,
        zone.minute(r.from),
        zone.minute(r.to),
        zone.name,
        zone.utc_offset(r.to)
    );
    let src = &r.source;
    let version = src
        .version
        .as_deref()
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    let _ = writeln!(w, "- {}: {}{version}\n", t.source, src.server);
    if src.partial {
        let _ = writeln!(
            w,
            "> **{}** {} – {} ({} {} – {}).\n",
            t.partial,
            zone.minute(src.data_from),
            zone.minute(src.data_to),
            t.requested,
            zone.minute(src.requested_from),
            zone.minute(src.requested_to)
        );
    }
    let _ = writeln!(w, "## {}\n", t.response);
    let _ = writeln!(w, "- {}: {}", t.mean, ms(r.mean_response_seconds, false, t));
    let _ = writeln!(
        w,
        "- P95: {}",
        ms(r.p95_response_seconds, r.p95_above_top_bucket, t)
    );
    let _ = writeln!(
        w,
        "- P99: {}\n",
        ms(r.p99_response_seconds, r.p99_above_top_bucket, t)
    );
    let _ = writeln!(w, "{}\n", t.estimated);
    let _ = writeln!(w, "## {}\n", t.errors);
    let _ = writeln!(w, "- {}: {}", t.total_error_rate, pct(r.error_ratio, t));
    let _ = writeln!(
        w,
        "- {}: {}{}",
        t.errors_4xx,
        count(r.client_errors),
        t.times
    );
    let _ = writeln!(
        w,
        "- {}: {}{}\n",
        t.errors_5xx,
        count(r.server_errors),
        t.times
    );
    let _ = writeln!(w, "## {}\n", t.throughput);
    let _ = writeln!(w, "- {}: {:.2}", t.rps, r.requests_per_second);
    let _ = writeln!(w, "- {}: {}", t.per_day, count(r.requests_per_day));
    if let Some(p) = &r.busiest_hour {
        let _ = writeln!(
            w,
            "- {}: {} ({:.2} req/s)",
            t.busiest,
            hour_span(p, zone),
            p.requests_per_second
        );
    }
    if let Some(p) = &r.typical_peak {
        let _ = writeln!(
            w,
            "- {}: {:02}:00–{:02}:00 ({} {:.2} req/s)",
            t.typical,
            p.hour_of_day,
            (p.hour_of_day + 1) % 24,
            t.mean_max.0,
            p.requests_per_second
        );
    }
    match chart {
        Some(chart) => {
            let _ = writeln!(w, "\n![{}]({chart})\n", t.chart);
        }
        None => w.push('\n'),
    }
    worst(w, r, zone, t);
    alerts(w, r, zone, t);
    deploys(w, r, zone, t);
    let _ = writeln!(w, "## {}\n", t.resources);
    let _ = writeln!(w, "- {}: {}", t.cpu, usage(&r.cpu, t));
    let _ = writeln!(w, "- {}: {}", t.memory, usage(&r.memory, t));
    let disk = &r.disk;
    let _ = writeln!(
        w,
        "- {} {} {} {}): {}\n",
        t.disk,
        disk.mountpoint.as_deref().unwrap_or("-"),
        t.on,
        disk.instance.as_deref().unwrap_or("-"),
        usage(
            &Usage {
                mean: disk.mean,
                max: disk.max
            },
            t
        )
    );
    database(w, r, t);
    backups::render(w, &r.backups, lang);
    llm::render(w, &r.llm, lang);
    if !r.agents.is_empty() {
        let _ = writeln!(w, "## {}\n\n{}\n|---|---|---|---|", t.chat, t.chat_header);
        for a in &r.agents {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.2}% |",
                cell(&a.agent_id),
                count(a.messages),
                count(a.errors),
                a.error_ratio * 100.0
            );
        }
        w.push('\n');
    }
    let _ = writeln!(w, "## {}\n", t.findings);
    if r.findings.is_empty() {
        let _ = writeln!(w, "{}\n", t.none);
    }
    for f in &r.findings {
        let sev = match (f.severity, lang) {
            (Severity::Critical, Lang::En) => "CRITICAL",
            (Severity::Warning, Lang::En) => "WARNING",
            (Severity::Critical, Lang::Zh) => "严重",
            (Severity::Warning, Lang::Zh) => "警告",
        };
        let _ = writeln!(w, "- **{sev}** {}", text::finding(f, lang));
    }
    if !r.findings.is_empty() {
        w.push('\n');
    }
    let _ = writeln!(w, "## {}\n", t.advice);
    for line in recommendations(r, lang, zone) {
        let _ = writeln!(w, "- {line}");
    }
    s
}

fn worst(w: &mut String, r: &Report, zone: &Zone, t: &Text) {
    let _ = writeln!(w, "## {}\n", t.worst);
    if r.worst_hours.is_empty() {
        let _ = writeln!(w, "{}\n", t.no_worst);
    } else {
        let _ = writeln!(w, "{}\n|---|---|---|---|---|---|", t.worst_hours_header);
        for p in &r.worst_hours {
            let _ = writeln!(w, "{}", period_row(hour_span(p, zone), p, t));
        }
        w.push('\n');
    }
    if !r.worst_days.is_empty() {
        let _ = writeln!(w, "{}\n|---|---|---|---|---|---|", t.worst_days_header);
        for p in &r.worst_days {
            let _ = writeln!(w, "{}", period_row(zone.day(p.start), p, t));
        }
        w.push('\n');
    }
    if let Some(p) = &r.slowest_hour {
        let _ = writeln!(
            w,
            "- {}: {} (P95 {})",
            t.slowest,
            hour_span(p, zone),
            estimate(p.p95, t)
        );
    }
    if let Some(p) = &r.most_saturated_hour {
        let _ = writeln!(
            w,
            "- {}: {} (CPU {}{}{} {})",
            t.saturated,
            hour_span(p, zone),
            pct(p.cpu_max, t),
            t.sep,
            t.memory,
            pct(p.memory_max, t)
        );
    }
    w.push('\n');
}

/// At most this many alert spells are listed; the rest are counted.
const ALERT_ROWS: usize = 20;

fn alerts(w: &mut String, r: &Report, zone: &Zone, t: &Text) {
    let _ = writeln!(w, "## {}\n", t.alerts);
    if r.alerts.is_empty() {
        let _ = writeln!(w, "{}\n", t.no_alerts);
        return;
    }
    let _ = writeln!(w, "{}\n|---|---|---|---|---|---|", t.alerts_header);
    for a in r.alerts.iter().take(ALERT_ROWS) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&a.alertname),
            cell(&a.severity),
            cell(&a.subject()),
            zone.minute(a.start),
            a.end.map_or(t.still_firing.to_string(), |e| zone.minute(e)),
            text::duration(a.duration_seconds, t)
        );
    }
    if r.alerts.len() > ALERT_ROWS {
        let _ = writeln!(w, "| … +{} | | | | | |", r.alerts.len() - ALERT_ROWS);
    }
    w.push('\n');
}

/// At most this many deploys are listed; the rest are counted.
const DEPLOY_ROWS: usize = 20;

fn deploys(w: &mut String, r: &Report, zone: &Zone, t: &Text) {
    let _ = writeln!(w, "## {}\n", t.deploys);
    if r.deploys.is_empty() {
        let _ = writeln!(w, "{}\n", t.no_deploys);
        return;
    }
    let _ = writeln!(w, "{}\n|---|---|---|---|---|---|---|---|", t.deploys_header);
    let p95 = |e: Option<super::histogram::Estimate>| {
        ms(
            e.map(|e| e.seconds),
            e.is_some_and(|e| e.above_top_bucket),
            t,
        )
    };
    for d in r.deploys.iter().take(DEPLOY_ROWS) {
        let _ = writeln!(
            w,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
            zone.minute(d.at),
            cell(&d.version),
            if d.worst { " ⚠" } else { "" },
            cell(d.previous_version.as_deref().unwrap_or("-")),
            d.instances,
            pct(d.before.error_ratio, t),
            pct(d.after.error_ratio, t),
            p95(d.before.p95),
            p95(d.after.p95),
        );
    }
    if r.deploys.len() > DEPLOY_ROWS {
        let _ = writeln!(w, "| … +{} | | | | | | | |", r.deploys.len() - DEPLOY_ROWS);
    }
    if let Some(d) = r.deploys.iter().find(|d| d.worst) {
        let _ = writeln!(
            w,
            "\n{}{} ({}): {} → {}, P95 {} → {}.",
            t.worst_deploy,
            cell(&d.version),
            zone.minute(d.at),
            pct(d.before.error_ratio, t),
            pct(d.after.error_ratio, t),
            p95(d.before.p95),
            p95(d.after.p95),
        );
    }
    w.push('\n');
}

fn database(w: &mut String, r: &Report, t: &Text) {
    let db = &r.database;
    let _ = writeln!(w, "## {}\n", t.database);
    let _ = writeln!(
        w,
        "- {}: {} {}{}{} {} (max_connections {})",
        t.connections,
        t.mean_max.0,
        db.connections
            .mean
            .map_or(t.no_data.to_string(), |v| format!("{v:.1}")),
        t.sep,
        t.mean_max.1,
        // Counts of connections are whole.
        db.connections.max.map_or(t.no_data.to_string(), count),
        // A setting, a whole number: 100, not 100.0.
        db.max_connections.map_or(t.no_data.to_string(), count)
    );
    let _ = writeln!(w, "- {}: {}", t.ping, ms(db.ping_seconds, false, t));
    let available = db.statements_available == Some(true);
    let _ = writeln!(
        w,
        "- {}: {}",
        t.statements_mean,
        if available {
            ms(db.statements_mean_seconds, false, t)
        } else {
            t.not_available.to_string()
        }
    );
    let _ = writeln!(
        w,
        "- {}: {}\n",
        t.slow_queries,
        match db.slow_queries {
            Some(n) if available => count(n),
            _ => t.not_available.to_string(),
        }
    );
}

/// One line per kind of finding (agents together), each with what the
/// report found that bears on it, then the alerts.
fn recommendations(r: &Report, lang: Lang, zone: &Zone) -> Vec<String> {
    let t = text::of(lang);
    if text::all_good(r) {
        return vec![t.all_good.to_string()];
    }
    let mut out = Vec::new();
    let mut kinds: Vec<&str> = r.findings.iter().map(|f| f.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let context = match kind {
            "error_rate" => r
                .worst_hours
                .first()
                .map(|p| {
                    let during: Vec<&str> = r
                        .alerts
                        .iter()
                        .filter(|a| a.start < p.end && a.end.unwrap_or(f64::MAX) > p.start)
                        .map(|a| a.alertname.as_str())
                        .collect();
                    let hour = hour_span(p, zone);
                    let ratio = pct(p.server_error_ratio, t);
                    match (lang, during.is_empty()) {
                        (Lang::En, true) => {
                            format!("Start with the worst hour, {hour} (5xx {ratio}).")
                        }
                        (Lang::En, false) => format!(
                            "Start with the worst hour, {hour} (5xx {ratio}), when {} fired.",
                            during.join(", ")
                        ),
                        (Lang::Zh, true) => format!("从最差的一小时 {hour} (5xx {ratio}) 查起。"),
                        (Lang::Zh, false) => format!(
                            "从最差的一小时 {hour} (5xx {ratio}) 查起，当时触发了 {}。",
                            during.join("、")
                        ),
                    }
                })
                .unwrap_or_default(),
            "performance" => r
                .slowest_hour
                .as_ref()
                .map(|p| match lang {
                    Lang::En => format!(
                        "The slowest hour was {} (P95 {}).",
                        hour_span(p, zone),
                        estimate(p.p95, t)
                    ),
                    Lang::Zh => format!(
                        "最慢的一小时为 {} (P95 {})。",
                        hour_span(p, zone),
                        estimate(p.p95, t)
                    ),
                })
                .unwrap_or_default(),
            "agent_errors" => {
                r.findings
                    .iter()
                    .filter(|f| f.kind == "agent_errors")
                    .filter_map(|f| {
                        Some(format!(
                            "{} ({:.2}%)",
                            f.subject.agent_id.as_deref()?,
                            f.value * 100.0
                        ))
                    })
                    .collect::<Vec<_>>()
                    .join(if lang == Lang::Zh { "、" } else { ", " })
                    + if lang == Lang::Zh { "。" } else { "." }
            }
            "disk" => {
                let mounts = r
                    .findings
                    .iter()
                    .filter(|f| f.kind == "disk")
                    .filter_map(|f| {
                        Some(format!(
                            "{} ({})",
                            f.subject.mountpoint.as_deref()?,
                            f.subject.instance.as_deref()?
                        ))
                    })
                    .collect::<Vec<_>>()
                    .join(t.sep);
                match lang {
                    Lang::En => format!("Over the line: {mounts}."),
                    Lang::Zh => format!("超过阈值的挂载点：{mounts}。"),
                }
            }
            _ => String::new(),
        };
        out.push(text::advice(kind, lang, &context));
    }
    if let Some(a) = r.alerts.first() {
        let subject = a.subject();
        let subject = if subject.is_empty() {
            String::new()
        } else {
            format!(" [{subject}]")
        };
        out.push(text::advice(
            "alerts",
            lang,
            &format!(
                "{}{subject} {} – {} ({}){}",
                a.alertname,
                zone.minute(a.start),
                a.end.map_or(t.still_firing.to_string(), |e| zone.minute(e)),
                text::duration(a.duration_seconds, t),
                if lang == Lang::Zh { "。" } else { "." }
            ),
        ));
    }
    out
}
