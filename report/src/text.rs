//! The report's words in English and Chinese: section titles, labels, and
//! what each finding means and what to do about it (from the guide's
//! procedures). Chinese text uses Chinese punctuation (，；).

use super::model::{Finding, Report};
use super::Lang;

pub struct Text {
    pub title: &'static str,
    pub period: &'static str,
    pub source: &'static str,
    pub partial: &'static str,
    pub requested: &'static str,
    pub response: &'static str,
    pub mean: &'static str,
    pub estimated: &'static str,
    pub errors: &'static str,
    pub total_error_rate: &'static str,
    pub errors_4xx: &'static str,
    pub errors_5xx: &'static str,
    pub times: &'static str,
    pub throughput: &'static str,
    pub rps: &'static str,
    pub per_day: &'static str,
    pub busiest: &'static str,
    pub typical: &'static str,
    pub chart: &'static str,
    pub worst: &'static str,
    pub worst_hours_header: &'static str,
    pub worst_days_header: &'static str,
    pub no_worst: &'static str,
    pub slowest: &'static str,
    pub saturated: &'static str,
    pub alerts: &'static str,
    pub alerts_header: &'static str,
    pub no_alerts: &'static str,
    pub deploys: &'static str,
    pub deploys_header: &'static str,
    pub no_deploys: &'static str,
    pub worst_deploy: &'static str,
    pub still_firing: &'static str,
    pub resources: &'static str,
    pub cpu: &'static str,
    pub memory: &'static str,
    pub disk: &'static str,
    pub on: &'static str,
    pub mean_max: (&'static str, &'static str),
    pub sep: &'static str,
    pub database: &'static str,
    pub connections: &'static str,
    pub ping: &'static str,
    pub statements_mean: &'static str,
    pub slow_queries: &'static str,
    pub not_available: &'static str,
    pub chat: &'static str,
    pub chat_header: &'static str,
    pub findings: &'static str,
    pub none: &'static str,
    pub advice: &'static str,
    pub all_good: &'static str,
    pub no_data: &'static str,
    pub hours_minutes: (&'static str, &'static str),
}

pub const EN: Text = Text {
    title: "LLMChat performance report",
    period: "Period",
    source: "Data",
    partial: "Partial: the server holds data only for this span of the requested period:",
    requested: "requested",
    response: "Response time",
    mean: "Mean response time",
    estimated: "P95 and P99 are estimates: interpolated linearly within the request-duration histogram's buckets; \"> 10 s\" means above the top bucket.",
    errors: "Error rate",
    total_error_rate: "Overall error rate (status >= 400)",
    errors_4xx: "4xx errors",
    errors_5xx: "5xx errors",
    times: "",
    throughput: "Throughput",
    rps: "Requests per second",
    per_day: "Requests per day",
    busiest: "Busiest hour",
    typical: "Typical daily peak (hour of day with the highest mean)",
    chart: "Request rate and p95 latency",
    worst: "Worst hours and days",
    worst_hours_header: "| Hour | Requests/s | 5xx ratio | P95 | CPU max | Memory max |",
    worst_days_header: "| Day | Requests/s | 5xx ratio | P95 | CPU max | Memory max |",
    no_worst: "No hour had 5xx responses.",
    slowest: "Slowest hour (p95)",
    saturated: "Most saturated hour",
    alerts: "Alerts fired",
    alerts_header: "| Alert | Severity | Subject | Start | End | Duration |",
    no_alerts: "No alert fired in the period.",
    deploys: "Deploys",
    deploys_header: "| Time | Version | From | Instances | 5xx hour before | 5xx hour after | P95 hour before | P95 hour after |",
    no_deploys: "No version change seen in the period (llmchat_app_info).",
    worst_deploy: "Worst deploy: ",
    still_firing: "still firing",
    resources: "Resource usage",
    cpu: "CPU usage",
    memory: "Memory usage",
    disk: "Disk usage (fullest mount",
    on: "on",
    mean_max: ("mean", "max"),
    sep: ", ",
    database: "Database performance",
    connections: "Connections",
    ping: "Mean query time (SELECT 1 round trip, the exporter's ping)",
    statements_mean: "Statements' mean execution time (pg_stat_statements)",
    slow_queries: "Slow queries (calls of statements over the exporter's database.slow_query_threshold)",
    not_available: "not available: enable pg_stat_statements (shared_preload_libraries = 'pg_stat_statements', then CREATE EXTENSION pg_stat_statements; docs/metrics.md)",
    chat: "Chat messages by agent",
    chat_header: "| Agent | Messages | Errors | Error ratio |",
    findings: "Threshold checks",
    none: "No threshold crossed.",
    advice: "Recommendations",
    all_good: "All figures are within the guide's targets; keep the weekly maintenance and the daily backups running.",
    no_data: "no data",
    hours_minutes: ("h", "m"),
};

pub const ZH: Text = Text {
    title: "LLMChat 性能分析报告",
    period: "时段",
    source: "数据来源",
    partial: "部分数据：服务器只保存了所请求时段中的这一段：",
    requested: "所请求的时段",
    response: "响应时间",
    mean: "平均响应时间",
    estimated: "P95 与 P99 为估算值：在请求耗时直方图的桶内线性插值；“> 10 s”表示超出最高的桶。",
    errors: "错误率",
    total_error_rate: "总体错误率 (状态码 >= 400)",
    errors_4xx: "4xx错误",
    errors_5xx: "5xx错误",
    times: "次",
    throughput: "吞吐量",
    rps: "每秒请求数",
    per_day: "每日请求数",
    busiest: "最繁忙的一小时",
    typical: "每日典型高峰 (平均请求最多的时段)",
    chart: "请求速率与 P95 响应时间",
    worst: "最差的小时与日期",
    worst_hours_header: "| 小时 | 每秒请求数 | 5xx 比例 | P95 | CPU 最高 | 内存最高 |",
    worst_days_header: "| 日期 | 每秒请求数 | 5xx 比例 | P95 | CPU 最高 | 内存最高 |",
    no_worst: "没有出现 5xx 响应的小时。",
    slowest: "最慢的一小时 (P95)",
    saturated: "资源最紧张的一小时",
    alerts: "触发的告警",
    alerts_header: "| 告警 | 级别 | 对象 | 开始 | 结束 | 持续 |",
    no_alerts: "本时段没有触发告警。",
    deploys: "部署",
    deploys_header: "| 时间 | 版本 | 上一版本 | 实例数 | 部署前一小时 5xx | 部署后一小时 5xx | 部署前一小时 P95 | 部署后一小时 P95 |",
    no_deploys: "本时段未发现版本变更（llmchat_app_info）。",
    worst_deploy: "影响最大的部署：",
    still_firing: "仍在触发",
    resources: "资源使用",
    cpu: "CPU使用率",
    memory: "内存使用率",
    disk: "磁盘使用率 (最满的挂载点",
    on: "位于",
    mean_max: ("平均", "最高"),
    sep: "，",
    database: "数据库性能",
    connections: "连接数",
    ping: "查询平均时间 (SELECT 1 往返，导出器的探测)",
    statements_mean: "语句平均执行时间 (pg_stat_statements)",
    slow_queries: "慢查询数量 (平均耗时超过导出器 database.slow_query_threshold 的语句的调用次数)",
    not_available: "不可用：请启用 pg_stat_statements (shared_preload_libraries = 'pg_stat_statements'，然后 CREATE EXTENSION pg_stat_statements；见 docs/metrics.md)",
    chat: "各智能体聊天消息",
    chat_header: "| 智能体 | 消息数 | 错误数 | 错误率 |",
    findings: "阈值检查",
    none: "没有超过阈值的指标。",
    advice: "建议",
    all_good: "各项指标均在指南目标之内；请继续执行周度维护与每日备份。",
    no_data: "无数据",
    hours_minutes: ("小时", "分"),
};

pub fn of(lang: Lang) -> &'static Text {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// `3h 0m`, `3小时0分`.
pub fn duration(seconds: f64, t: &Text) -> String {
    let minutes = (seconds / 60.0).round() as i64;
    let (h, m) = t.hours_minutes;
    let sep = if t.sep == "，" { "" } else { " " };
    format!("{}{h}{sep}{}{m}", minutes / 60, minutes % 60)
}

/// What a finding says, naming its subject.
pub fn finding(f: &Finding, lang: Lang) -> String {
    let v = f.value;
    let s = &f.subject;
    let name = |x: &Option<String>| x.clone().unwrap_or_default();
    match (f.kind, lang) {
        ("performance", Lang::En) => format!(
            "Mean response time too high: {:.2}ms (threshold 500ms){}",
            v * 1000.0,
            s.route
                .as_ref()
                .map(|r| format!("; slowest route {r}"))
                .unwrap_or_default()
        ),
        ("performance", Lang::Zh) => format!(
            "平均响应时间过高: {:.2}ms (阈值 500ms){}",
            v * 1000.0,
            s.route
                .as_ref()
                .map(|r| format!("；最慢的路由 {r}"))
                .unwrap_or_default()
        ),
        ("error_rate", Lang::En) => format!(
            "Error rate too high: {:.2}% (threshold 1%){}",
            v * 100.0,
            s.route
                .as_ref()
                .map(|r| format!("; most 5xx on route {r}"))
                .unwrap_or_default()
        ),
        ("error_rate", Lang::Zh) => format!(
            "错误率过高: {:.2}% (阈值 1%){}",
            v * 100.0,
            s.route
                .as_ref()
                .map(|r| format!("；5xx 最多的路由 {r}"))
                .unwrap_or_default()
        ),
        ("memory", Lang::En) => format!(
            "Memory usage on {} too high: {:.2}% on average (threshold 80%)",
            name(&s.instance),
            v * 100.0
        ),
        ("memory", Lang::Zh) => format!(
            "{} 内存使用率过高: 平均 {:.2}% (阈值 80%)",
            name(&s.instance),
            v * 100.0
        ),
        ("disk", Lang::En) => format!(
            "Disk usage of {} on {} reached {:.2}% (threshold 80%)",
            name(&s.mountpoint),
            name(&s.instance),
            v * 100.0
        ),
        ("disk", Lang::Zh) => format!(
            "{} 上 {} 的磁盘使用率达到 {:.2}% (阈值 80%)",
            name(&s.instance),
            name(&s.mountpoint),
            v * 100.0
        ),
        ("database_connections", Lang::En) => format!(
            "Database connections peaked at {:.2}% of max_connections (threshold 80%)",
            v * 100.0
        ),
        ("database_connections", Lang::Zh) => format!(
            "数据库连接数峰值达到 max_connections 的 {:.2}% (阈值 80%)",
            v * 100.0
        ),
        ("backup_invalid", Lang::En) => format!(
            "{} {} backup file(s) could not be read back in the period, or the newest one does not; a restore from it would fail",
            v,
            name(&s.backup_kind)
        ),
        ("backup_invalid", Lang::Zh) => format!(
            "本时段有 {} 个 {} 备份文件无法回读，或最新的备份无法回读；用它恢复会失败",
            v,
            name(&s.backup_kind)
        ),
        ("backup_drill_failed", Lang::En) => format!(
            "{v} restore drill(s) failed or were refused in the period"
        ),
        ("backup_drill_failed", Lang::Zh) => format!("本时段有 {v} 次恢复演练失败或被拒绝"),
        ("agent_cost_per_message", Lang::En) => format!(
            "Agent {}'s LLM cost per message is {:.2} times the previous period's (threshold {})",
            name(&s.agent_id),
            v,
            f.threshold
        ),
        ("agent_cost_per_message", Lang::Zh) => format!(
            "智能体 {} 的每条消息 LLM 费用是上一时段的 {:.2} 倍 (阈值 {})",
            name(&s.agent_id),
            v,
            f.threshold
        ),
        (_, Lang::En) => format!(
            "Agent {}'s error ratio is {:.2}% (threshold 5%)",
            name(&s.agent_id),
            v * 100.0
        ),
        (_, Lang::Zh) => format!(
            "智能体 {} 的错误率为 {:.2}% (阈值 5%)",
            name(&s.agent_id),
            v * 100.0
        ),
    }
}

/// What to do about a kind of finding; `context` is what the report found
/// that bears on it (the worst hour, the alerts then, the agents).
pub fn advice(kind: &str, lang: Lang, context: &str) -> String {
    let base = match (kind, lang) {
        ("performance", Lang::En) => "Find the slowest routes (`llmchat_http_request_duration_seconds` by route), run `EXPLAIN ANALYZE` on their queries and create the indexes of `scripts/database-optimization.sql`; check the Redis hit ratio and the cache TTLs.",
        ("performance", Lang::Zh) => "找出最慢的路由 (按 route 查看 `llmchat_http_request_duration_seconds`)，对其查询执行 `EXPLAIN ANALYZE`，并创建 `scripts/database-optimization.sql` 中的索引；检查 Redis 命中率与缓存 TTL。",
        ("error_rate", Lang::En) => "Break the errors down by route and status (`llmchat_http_requests_total`): 5xx point at the backend or its dependencies, 4xx at a client or a scanner; see the runbook of LLMChatErrorRateAboveTarget.",
        ("error_rate", Lang::Zh) => "按路由与状态码拆分错误 (`llmchat_http_requests_total`)：5xx 指向后端或其依赖，4xx 指向客户端或扫描器；参见 LLMChatErrorRateAboveTarget 的处理手册。",
        ("memory", Lang::En) => "Check the backend's resident memory for growth (a leak), then add memory or move other workloads off the host.",
        ("memory", Lang::Zh) => "检查后端进程常驻内存是否持续增长 (内存泄漏)，然后增加内存或迁出其他负载。",
        ("disk", Lang::En) => "Run the weekly cleanup (`scripts/weekly-cleanup.sh`): old logs, temporary files, uploads and backups; grow the filesystem if it stays high.",
        ("disk", Lang::Zh) => "执行周度清理 (`scripts/weekly-cleanup.sh`)：旧日志、临时文件、上传文件与旧备份；若仍然偏高则扩容。",
        ("database_connections", Lang::En) => "Look for idle-in-transaction sessions and pool leaks; the backend's pool is min 2, max 10 per process. Add PgBouncer or raise max_connections.",
        ("database_connections", Lang::Zh) => "检查 idle in transaction 会话与连接池泄漏；后端连接池每个进程 min 2、max 10。可引入 PgBouncer 或提高 max_connections。",
        ("agent_errors", Lang::En) => "Check the provider (status, quota, credentials) of each of these agents:",
        ("agent_errors", Lang::Zh) => "逐个检查这些智能体的模型服务商 (状态、配额、凭证)：",
        ("backup_invalid", Lang::En) => "Keep the last backup that reads back until a new one does; see the runbook of LLMChatBackupInvalid (the exporter's log names each file and why).",
        ("backup_invalid", Lang::Zh) => "在新备份通过回读校验之前，保留最后一个可回读的备份；参见 LLMChatBackupInvalid 的处理手册 (导出器日志会列出每个文件及原因)。",
        ("backup_drill_failed", Lang::En) => "Read the exporter's log for each drill's reason (the restore, the row counts, a refused scratch database); see the runbook of LLMChatBackupDrillFailing.",
        ("backup_drill_failed", Lang::Zh) => "在导出器日志中查看每次演练的原因 (恢复失败、行数不符或临时数据库被拒绝)；参见 LLMChatBackupDrillFailing 的处理手册。",
        ("agent_cost_per_message", Lang::En) => "Compare the agent's input tokens per request and its model with the previous period (LLM usage & cost dashboard): a longer prompt or history, a pricier model, or lost prompt caching; see the runbook of LLMChatMonthlyBudgetForecast.",
        ("agent_cost_per_message", Lang::Zh) => "对比该智能体每次请求的输入 token 与所用模型和上一时段的差异 (LLM 用量与费用仪表盘)：提示词或历史变长、换了更贵的模型，或提示缓存失效；参见 LLMChatMonthlyBudgetForecast 的处理手册。",
        ("alerts", Lang::En) => "Review the alerts that fired (table above) with their runbooks (docs/runbooks.md); the longest:",
        (_, Lang::Zh) => "对照处理手册 (docs/runbooks.md) 复查上表中触发的告警；持续最久的：",
        (_, Lang::En) => "",
    };
    match (context.is_empty(), lang) {
        (true, _) => base.to_string(),
        (false, Lang::En) => format!("{base} {context}"),
        (false, Lang::Zh) => format!("{base}{context}"),
    }
}

/// Whether the report found nothing to act on.
pub fn all_good(r: &Report) -> bool {
    r.findings.is_empty() && r.alerts.is_empty()
}
