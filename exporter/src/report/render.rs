//! The report as Markdown, with the sections of the guide's
//! `generateReport` (响应时间, 错误率, 吞吐量, 资源使用, 数据库性能, 建议),
//! in English or Chinese.

use std::fmt::Write;

use super::{rfc3339, Finding, Lang, Report, Severity, Usage};

struct Text {
    title: &'static str,
    response: &'static str,
    mean: &'static str,
    errors: &'static str,
    total_error_rate: &'static str,
    errors_4xx: &'static str,
    errors_5xx: &'static str,
    times: &'static str,
    throughput: &'static str,
    rps: &'static str,
    per_day: &'static str,
    peak: &'static str,
    chart: &'static str,
    resources: &'static str,
    cpu: &'static str,
    memory: &'static str,
    disk: &'static str,
    mean_max: (&'static str, &'static str),
    database: &'static str,
    connections: &'static str,
    limit: &'static str,
    ping: &'static str,
    chat: &'static str,
    chat_header: &'static str,
    findings: &'static str,
    none: &'static str,
    advice: &'static str,
    no_data: &'static str,
    source: &'static str,
    partial: &'static str,
}

const EN: Text = Text {
    title: "LLMChat performance report",
    response: "Response time",
    mean: "Mean response time",
    errors: "Error rate",
    total_error_rate: "Overall error rate (status >= 400)",
    errors_4xx: "4xx errors",
    errors_5xx: "5xx errors",
    times: "",
    throughput: "Throughput",
    rps: "Requests per second",
    per_day: "Requests per day",
    peak: "Peak hour",
    chart: "Daily request rate and p95 latency",
    resources: "Resource usage",
    cpu: "CPU usage",
    memory: "Memory usage",
    disk: "Disk usage (fullest mount)",
    mean_max: ("mean", "max"),
    database: "Database performance",
    connections: "Connections",
    limit: "max_connections",
    ping: "Mean query time (SELECT 1)",
    chat: "Chat messages by agent",
    chat_header: "| Agent | Messages | Errors | Error ratio |",
    findings: "Threshold checks",
    none: "No threshold crossed.",
    advice: "Recommendations",
    no_data: "no data",
    source: "Data",
    partial: "Partial: the server holds data only for this span of the requested period",
};

const ZH: Text = Text {
    title: "LLMChat 性能分析报告",
    response: "响应时间",
    mean: "平均响应时间",
    errors: "错误率",
    total_error_rate: "总体错误率 (状态码 >= 400)",
    errors_4xx: "4xx错误",
    errors_5xx: "5xx错误",
    times: "次",
    throughput: "吞吐量",
    rps: "每秒请求数",
    per_day: "每日请求数",
    peak: "高峰时段",
    chart: "每日请求速率与 P95 响应时间",
    resources: "资源使用",
    cpu: "CPU使用率",
    memory: "内存使用率",
    disk: "磁盘使用率 (最满的挂载点)",
    mean_max: ("平均", "最高"),
    database: "数据库性能",
    connections: "连接数",
    limit: "max_connections",
    ping: "查询平均时间 (SELECT 1)",
    chat: "各智能体聊天消息",
    chat_header: "| 智能体 | 消息数 | 错误数 | 错误率 |",
    findings: "阈值检查",
    none: "没有超过阈值的指标。",
    advice: "建议",
    no_data: "无数据",
    source: "数据来源",
    partial: "部分数据：服务器只保存了所请求时段中的这一段",
};

fn ms(v: Option<f64>, t: &Text) -> String {
    v.map_or(t.no_data.into(), |s| format!("{:.2}ms", s * 1000.0))
}

fn pct(v: Option<f64>, t: &Text) -> String {
    v.map_or(t.no_data.into(), |r| format!("{:.2}%", r * 100.0))
}

fn usage(u: &Usage, t: &Text) -> String {
    format!(
        "{} {}, {} {}",
        t.mean_max.0,
        pct(u.mean, t),
        t.mean_max.1,
        pct(u.max, t)
    )
}

fn count(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// What a finding means, and what to do, from the guide's procedures.
fn finding_text(f: &Finding, lang: Lang) -> (String, String) {
    let v = f.value;
    match (f.kind, lang) {
        ("performance", Lang::En) => (
            format!("Mean response time too high: {:.2}ms (threshold 500ms)", v * 1000.0),
            "Find the slowest routes (`llmchat_http_request_duration_seconds` by route), run `EXPLAIN ANALYZE` on their queries and create the indexes of `scripts/database-optimization.sql`; check the Redis hit ratio and the cache TTLs.".into(),
        ),
        ("performance", Lang::Zh) => (
            format!("平均响应时间过高: {:.2}ms (阈值 500ms)", v * 1000.0),
            "找出最慢的路由 (按 route 查看 `llmchat_http_request_duration_seconds`)，对其查询执行 `EXPLAIN ANALYZE`，并创建 `scripts/database-optimization.sql` 中的索引；检查 Redis 命中率与缓存 TTL。".into(),
        ),
        ("error_rate", Lang::En) => (
            format!("Error rate too high: {:.2}% (threshold 1%)", v * 100.0),
            "Break the errors down by route and status (`llmchat_http_requests_total`): 5xx point at the backend or its dependencies, 4xx at a client or a scanner; see the runbook of LLMChatErrorRateAboveTarget.".into(),
        ),
        ("error_rate", Lang::Zh) => (
            format!("错误率过高: {:.2}% (阈值 1%)", v * 100.0),
            "按路由与状态码拆分错误 (`llmchat_http_requests_total`)：5xx 指向后端或其依赖，4xx 指向客户端或扫描器；参见 LLMChatErrorRateAboveTarget 的处理手册。".into(),
        ),
        ("memory", Lang::En) => (
            format!("Memory usage too high: {:.2}% on average (threshold 80%)", v * 100.0),
            "Check the backend's resident memory for growth (a leak), then add memory or move other workloads off the host.".into(),
        ),
        ("memory", Lang::Zh) => (
            format!("内存使用率过高: 平均 {:.2}% (阈值 80%)", v * 100.0),
            "检查后端进程常驻内存是否持续增长 (内存泄漏)，然后增加内存或迁出其他负载。".into(),
        ),
        ("disk", Lang::En) => (
            format!("Disk usage reached {:.2}% (threshold 80%)", v * 100.0),
            "Run the weekly cleanup (`scripts/weekly-cleanup.sh`): old logs, temporary files, uploads and backups; grow the filesystem if it stays high.".into(),
        ),
        ("disk", Lang::Zh) => (
            format!("磁盘使用率达到 {:.2}% (阈值 80%)", v * 100.0),
            "执行周度清理 (`scripts/weekly-cleanup.sh`)：旧日志、临时文件、上传文件与旧备份；若仍然偏高则扩容。".into(),
        ),
        ("database_connections", Lang::En) => (
            format!("Database connections peaked at {:.2}% of max_connections (threshold 80%)", v * 100.0),
            "Look for idle-in-transaction sessions and pool leaks; the backend's pool is min 2, max 10 per process. Add PgBouncer or raise max_connections.".into(),
        ),
        ("database_connections", Lang::Zh) => (
            format!("数据库连接数峰值达到 max_connections 的 {:.2}% (阈值 80%)", v * 100.0),
            "检查 idle in transaction 会话与连接池泄漏；后端连接池每个进程 min 2、max 10。可引入 PgBouncer 或提高 max_connections。".into(),
        ),
        (_, Lang::En) => (
            format!("A chat agent's error ratio is {:.2}% (threshold 5%)", v * 100.0),
            "Check that agent's provider (status, quota, credentials) in the chat table above.".into(),
        ),
        (_, Lang::Zh) => (
            format!("某个智能体的错误率为 {:.2}% (阈值 5%)", v * 100.0),
            "检查上表中该智能体的模型服务商 (状态、配额、凭证)。".into(),
        ),
    }
}

/// The report as Markdown; `chart` is the SVG written beside it, if any
/// (none on stdout: a link to a file that is not there would mislead).
pub fn markdown(r: &Report, lang: Lang, chart: Option<&str>) -> String {
    let t = match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} - {} – {}\n",
        t.title,
        rfc3339(r.from),
        rfc3339(r.to)
    );
    let src = &r.source;
    let _ = writeln!(
        s,
        "{}: {}{}, {} – {}\n",
        t.source,
        src.server,
        src.version
            .as_deref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default(),
        rfc3339(src.data_from),
        rfc3339(src.data_to)
    );
    if src.partial {
        let _ = writeln!(
            s,
            "> **{}** ({} – {}).\n",
            t.partial,
            rfc3339(src.requested_from),
            rfc3339(src.requested_to)
        );
    }
    let _ = writeln!(s, "## {}\n", t.response);
    let _ = writeln!(s, "- {}: {}", t.mean, ms(r.mean_response_seconds, t));
    let _ = writeln!(s, "- P95: {}", ms(r.p95_response_seconds, t));
    let _ = writeln!(s, "- P99: {}\n", ms(r.p99_response_seconds, t));
    let _ = writeln!(s, "## {}\n", t.errors);
    let _ = writeln!(s, "- {}: {}", t.total_error_rate, pct(r.error_ratio, t));
    let _ = writeln!(
        s,
        "- {}: {}{}",
        t.errors_4xx,
        count(r.client_errors),
        t.times
    );
    let _ = writeln!(
        s,
        "- {}: {}{}\n",
        t.errors_5xx,
        count(r.server_errors),
        t.times
    );
    let _ = writeln!(s, "## {}\n", t.throughput);
    let _ = writeln!(s, "- {}: {:.2}", t.rps, r.requests_per_second);
    let _ = writeln!(s, "- {}: {}", t.per_day, count(r.requests_per_day));
    if let Some((start, rate)) = r.peak_hour {
        let _ = writeln!(
            s,
            "- {}: {} ({:.2} req/s)",
            t.peak,
            &rfc3339(start)[..16].replace('T', " "),
            rate
        );
    }
    match chart {
        Some(chart) => {
            let _ = writeln!(s, "\n![{}]({chart})\n", t.chart);
        }
        None => s.push('\n'),
    }
    let _ = writeln!(s, "## {}\n", t.resources);
    let _ = writeln!(s, "- {}: {}", t.cpu, usage(&r.cpu, t));
    let _ = writeln!(s, "- {}: {}", t.memory, usage(&r.memory, t));
    let _ = writeln!(s, "- {}: {}\n", t.disk, usage(&r.disk, t));
    let _ = writeln!(s, "## {}\n", t.database);
    let conn = |v: Option<f64>| v.map_or(t.no_data.to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(
        s,
        "- {}: {} {}, {} {} ({} {})",
        t.connections,
        t.mean_max.0,
        conn(r.database_connections.mean),
        t.mean_max.1,
        conn(r.database_connections.max),
        t.limit,
        // A setting, a whole number: 100, not 100.0.
        r.database_connections_max
            .map_or(t.no_data.to_string(), count)
    );
    let _ = writeln!(s, "- {}: {}\n", t.ping, ms(r.database_ping_seconds, t));
    if !r.agents.is_empty() {
        let _ = writeln!(s, "## {}\n\n{}\n|---|---|---|---|", t.chat, t.chat_header);
        for a in &r.agents {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2}% |",
                a.agent_id.replace('|', "\\|"),
                count(a.messages),
                count(a.errors),
                a.error_ratio * 100.0
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## {}\n", t.findings);
    if r.findings.is_empty() {
        let _ = writeln!(s, "{}\n", t.none);
    }
    for f in &r.findings {
        let sev = match f.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
        };
        let _ = writeln!(s, "- **{sev}** {}", finding_text(f, lang).0);
    }
    if !r.findings.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "## {}\n", t.advice);
    if r.findings.is_empty() {
        let line = match lang {
            Lang::En => "All figures are within the guide's targets; keep the weekly maintenance and the daily backups running.",
            Lang::Zh => "各项指标均在指南目标之内；请继续执行周度维护与每日备份。",
        };
        let _ = writeln!(s, "- {line}");
    }
    for f in &r.findings {
        let _ = writeln!(s, "- {}", finding_text(f, lang).1);
    }
    s
}
