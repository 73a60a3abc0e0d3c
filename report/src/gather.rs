//! Asks Prometheus for every figure of the report over the span `Source`
//! found, and assembles the [`Report`]. Whole-period figures are instant
//! queries over the period (`increase`, `*_over_time` on the raw samples,
//! so a peak between two scrapes of a subquery is not missed); the hourly
//! timeline comes from [`timeline`]; fired alerts from [`alerts`].

use super::histogram;
use super::model::{
    check_thresholds, AgentStats, Database, DiskUsage, InstanceUsage, Mount, Report, RouteStats,
    Source, Usage,
};
use super::prometheus::{Client, Labels};
use super::time::Zone;
use super::{alerts, backups, deploys, llm, timeline, Job, ReportError};

/// The step of the one subquery left (the connections' summed peak): a
/// minute, or whole minutes over long periods, to stay under 25,000 steps
/// (VictoriaMetrics refuses a subquery of more than 30,000 points).
fn subquery_step(seconds: f64) -> String {
    let minutes = (seconds / 25_000.0 / 60.0).ceil().max(1.0);
    format!("{}s", minutes as i64 * 60)
}

pub async fn build(
    client: &Client,
    job: &Job,
    zone: &Zone,
    source: Source,
) -> Result<Report, ReportError> {
    let (from, to) = if source.partial {
        (source.data_from, source.data_to)
    } else {
        (source.requested_from, source.requested_to)
    };
    let seconds = to - from;
    let d = format!("{}s", seconds.round() as i64);
    let q = |expr: String| async move { client.scalar(&expr, to).await };
    let v = |expr: String| async move { client.vector(&expr, to).await };
    let requests = job.sel("llmchat_http_requests_total", "");
    let requests_4xx = job.sel("llmchat_http_requests_total", r#"status_code=~"4..""#);
    let requests_5xx = job.sel("llmchat_http_requests_total", r#"status_code=~"5..""#);
    let duration = |suffix: &str| {
        job.sel(
            &format!("llmchat_http_request_duration_seconds_{suffix}"),
            "",
        )
    };
    let (bucket, sum, count) = (duration("bucket"), duration("sum"), duration("count"));
    let (requests_n, client_errors, server_errors, mean, buckets) = tokio::try_join!(
        q(format!("sum(increase({requests}[{d}]))")),
        q(format!("sum(increase({requests_4xx}[{d}]))")),
        q(format!("sum(increase({requests_5xx}[{d}]))")),
        q(format!(
            "sum(increase({sum}[{d}])) / sum(increase({count}[{d}]))"
        )),
        v(format!("sum by (le) (increase({bucket}[{d}]))")),
    )?;
    let (routes_n, routes_5xx, routes_sum, routes_count) = tokio::try_join!(
        v(format!("sum by (route) (increase({requests}[{d}]))")),
        v(format!("sum by (route) (increase({requests_5xx}[{d}]))")),
        v(format!("sum by (route) (increase({sum}[{d}]))")),
        v(format!("sum by (route) (increase({count}[{d}]))")),
    )?;

    let (avail, total) = (
        job.sel("llmchat_host_memory_available_bytes", ""),
        job.sel("llmchat_host_memory_total_bytes", ""),
    );
    let (fs_avail, fs_size) = (
        job.sel("llmchat_host_filesystem_available_bytes", ""),
        job.sel("llmchat_host_filesystem_size_bytes", ""),
    );
    let cpu = job.sel("llmchat_host_cpu_usage_ratio", "");
    let (cpu_mean, cpu_max, memory_by_instance, memory_max, disk_mean, disk_max) = tokio::try_join!(
        q(format!("avg(avg_over_time({cpu}[{d}]))")),
        q(format!("max(max_over_time({cpu}[{d}]))")),
        v(format!(
            "max by (instance) (1 - avg_over_time({avail}[{d}]) / avg_over_time({total}[{d}]))"
        )),
        q(format!(
            "max(1 - min_over_time({avail}[{d}]) / max_over_time({total}[{d}]))"
        )),
        v(format!(
            "max by (instance, mountpoint) (1 - avg_over_time({fs_avail}[{d}]) / avg_over_time({fs_size}[{d}]))"
        )),
        v(format!(
            "max by (instance, mountpoint) (1 - min_over_time({fs_avail}[{d}]) / max_over_time({fs_size}[{d}]))"
        )),
    )?;

    let conns = job.sel("llmchat_database_connections", "");
    let statement = |name: &str| job.sel(&format!("llmchat_database_{name}"), "");
    let (calls, exec, slow, available) = (
        statement("statement_calls_total"),
        statement("statement_execution_seconds_total"),
        statement("slow_queries_total"),
        statement("statements_available"),
    );
    let (conn_mean, conn_max, conn_limit, ping, statements_available, statements_mean, slow_n) = tokio::try_join!(
        q(format!("sum(avg_over_time({conns}[{d}]))")),
        q(format!(
            "max_over_time(sum({conns})[{d}:{}])",
            subquery_step(seconds)
        )),
        q(format!(
            "max(max_over_time({}[{d}]))",
            job.sel("llmchat_database_connections_max", "")
        )),
        q(format!(
            "avg(avg_over_time({}[{d}]))",
            job.sel("llmchat_database_ping_duration_seconds", "")
        )),
        q(format!("max(max_over_time({available}[{d}]))")),
        q(format!(
            "sum(increase({exec}[{d}])) / sum(increase({calls}[{d}]))"
        )),
        q(format!("sum(increase({slow}[{d}]))")),
    )?;

    let messages = job.sel("llmchat_chat_messages_total", "");
    let message_errors = job.sel("llmchat_chat_messages_total", r#"status="error""#);
    let (by_agent, errors_by_agent) = tokio::try_join!(
        v(format!("sum by (agent_id) (increase({messages}[{d}]))")),
        v(format!(
            "sum by (agent_id) (increase({message_errors}[{d}]))"
        )),
    )?;

    let (hours, fired, deploys, llm, backups) = tokio::try_join!(
        timeline::hours(client, job, zone, from, to),
        alerts::fired(client, job, from, to),
        deploys::deploys(client, job, from, to),
        llm::usage(client, job, &d, to),
        backups::backups(client, job, &d, to),
    )?;

    let has_host = cpu_mean.is_some() || !memory_by_instance.is_empty();
    let Some(requests) = requests_n.filter(|r| *r > 0.0).or(has_host.then_some(0.0)) else {
        return Err(ReportError::NoData {
            from: super::rfc3339(from),
            to: super::rfc3339(to),
        });
    };

    let label = |l: &Labels, k: &str| l.get(k).cloned().unwrap_or_default();
    let lookup = |set: &[(Labels, f64)], k: &str, value: &str| {
        set.iter()
            .find(|(l, _)| l.get(k).map(String::as_str) == Some(value))
            .map(|(_, v)| *v)
    };
    let mut agents: Vec<AgentStats> = by_agent
        .iter()
        .map(|(labels, n)| {
            let id = label(labels, "agent_id");
            let errors = lookup(&errors_by_agent, "agent_id", &id).unwrap_or(0.0);
            AgentStats {
                error_ratio: if *n > 0.0 { errors / n } else { 0.0 },
                agent_id: id,
                messages: *n,
                errors,
            }
        })
        .collect();
    agents.sort_by(|a, b| {
        b.messages
            .total_cmp(&a.messages)
            .then(a.agent_id.cmp(&b.agent_id))
    });
    let mut routes: Vec<RouteStats> = routes_n
        .iter()
        .map(|(labels, n)| {
            let route = label(labels, "route");
            let (s, c) = (
                lookup(&routes_sum, "route", &route),
                lookup(&routes_count, "route", &route),
            );
            RouteStats {
                requests: *n,
                server_errors: lookup(&routes_5xx, "route", &route).unwrap_or(0.0),
                mean_seconds: s.zip(c).filter(|(_, c)| *c > 0.0).map(|(s, c)| s / c),
                route,
            }
        })
        .collect();
    routes.sort_by(|a, b| {
        b.requests
            .total_cmp(&a.requests)
            .then(a.route.cmp(&b.route))
    });

    let mounts: Vec<Mount> = disk_max
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(l, v)| Mount {
            instance: label(l, "instance"),
            mountpoint: label(l, "mountpoint"),
            max: *v,
        })
        .collect();
    let fullest = mounts.iter().max_by(|a, b| a.max.total_cmp(&b.max));
    let disk = match fullest {
        Some(m) => DiskUsage {
            mean: disk_mean
                .iter()
                .find(|(l, _)| {
                    label(l, "instance") == m.instance && label(l, "mountpoint") == m.mountpoint
                })
                .map(|(_, v)| *v),
            max: Some(m.max),
            instance: Some(m.instance.clone()),
            mountpoint: Some(m.mountpoint.clone()),
        },
        None => DiskUsage::default(),
    };
    let memory_by_instance: Vec<InstanceUsage> = memory_by_instance
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(l, v)| InstanceUsage {
            instance: label(l, "instance"),
            mean: *v,
        })
        .collect();
    let memory_mean = (!memory_by_instance.is_empty()).then(|| {
        memory_by_instance.iter().map(|u| u.mean).sum::<f64>() / memory_by_instance.len() as f64
    });

    let bucket_counts = histogram::buckets(&buckets);
    let p95 = histogram::quantile(0.95, &bucket_counts);
    let p99 = histogram::quantile(0.99, &bucket_counts);

    let hourly = timeline::each_hour(&hours);
    let days = timeline::days(&hours, zone);
    let (timeline_resolution, timeline_points) = if seconds < 2.0 * 86400.0 {
        ("hour", hourly.clone())
    } else {
        ("day", days.clone())
    };
    let error_ratio = (requests > 0.0)
        .then(|| (client_errors.unwrap_or(0.0) + server_errors.unwrap_or(0.0)) / requests);
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let server_ratio = if requests > 0.0 {
        server_errors.unwrap_or(0.0) / requests
    } else {
        0.0
    };
    let mut report = Report {
        from,
        to,
        timezone: zone.name.clone(),
        source,
        mean_response_seconds: finite(mean),
        p95_response_seconds: p95.map(|e| e.seconds),
        p95_above_top_bucket: p95.is_some_and(|e| e.above_top_bucket),
        p99_response_seconds: p99.map(|e| e.seconds),
        p99_above_top_bucket: p99.is_some_and(|e| e.above_top_bucket),
        requests,
        error_ratio,
        client_errors: client_errors.unwrap_or(0.0),
        server_errors: server_errors.unwrap_or(0.0),
        requests_per_second: requests / seconds,
        requests_per_day: requests / (seconds / 86400.0),
        cpu: Usage {
            mean: finite(cpu_mean),
            max: finite(cpu_max),
        },
        memory: Usage {
            mean: memory_mean,
            max: finite(memory_max),
        },
        memory_by_instance,
        disk,
        mounts,
        database: Database {
            connections: Usage {
                mean: finite(conn_mean),
                max: finite(conn_max),
            },
            max_connections: finite(conn_limit),
            ping_seconds: finite(ping),
            statements_available: statements_available.map(|v| v >= 1.0),
            statements_mean_seconds: finite(statements_mean),
            slow_queries: finite(slow_n).filter(|_| statements_available >= Some(1.0)),
        },
        routes,
        agents,
        busiest_hour: timeline::busiest(&hourly),
        typical_peak: timeline::typical_peak(&hours, zone),
        timeline_resolution,
        timeline: timeline_points,
        worst_hours: timeline::worst(&hourly, server_ratio, 5),
        worst_days: if seconds < 2.0 * 86400.0 {
            Vec::new()
        } else {
            timeline::worst(&days, server_ratio, 3)
        },
        slowest_hour: timeline::slowest(&hourly, p95.map(|e| e.seconds)),
        most_saturated_hour: timeline::most_saturated(&hourly),
        alerts: fired,
        deploys,
        llm,
        backups,
        findings: Vec::new(),
    };
    report.findings = check_thresholds(&report);
    Ok(report)
}
