//! The verdict table of `verify-deployment`, in English or Chinese.

use super::{CheckResult, Verdict, Verification};
use llmchat_report::{rfc3339, Lang};

struct Words {
    title: &'static str,
    instances: &'static str,
    rollout: &'static str,
    analysis: &'static str,
    baseline: &'static str,
    previous: &'static str,
    header: [&'static str; 5],
    estimate: &'static str,
    verdict: &'static str,
    verdicts: [&'static str; 4],
    results: [&'static str; 4],
    checks: [(&'static str, &'static str); 4],
    stragglers: &'static str,
}

const EN: Words = Words {
    title: "Deployment verification",
    instances: "instances",
    rollout: "rollout",
    analysis: "analysis window",
    baseline: "baseline (the job before the change)",
    previous: "previous version",
    header: ["check", "new", "before", "fails above", "result"],
    estimate: "p95 is estimated from the histogram's buckets, as histogram_quantile does.",
    verdict: "verdict",
    verdicts: ["PASS", "REGRESSION", "INCONCLUSIVE", "ROLLOUT NOT FINISHED"],
    results: ["pass", "FAIL", "too little traffic", "no data"],
    checks: [
        ("http_5xx", "5xx ratio"),
        ("latency_p95", "p95 latency"),
        ("chat_errors", "chat errors"),
        ("health", "backend /health up"),
    ],
    stragglers: "not on the version",
};

const ZH: Words = Words {
    title: "部署验证",
    instances: "实例",
    rollout: "发布",
    analysis: "分析窗口",
    baseline: "基线（变更前的同一 job）",
    previous: "上一版本",
    header: ["检查项", "新版本", "变更前", "失败阈值", "结果"],
    estimate: "p95 由直方图分桶估算（与 histogram_quantile 相同）。",
    verdict: "结论",
    verdicts: ["通过", "性能回退", "无法判断", "发布未完成"],
    results: ["通过", "失败", "流量不足", "无数据"],
    checks: [
        ("http_5xx", "5xx 比例"),
        ("latency_p95", "p95 延迟"),
        ("chat_errors", "聊天错误率"),
        ("health", "后端 /health 可用"),
    ],
    stragglers: "未运行该版本",
};

/// A check's value as read: ratios in percent, latency in seconds.
pub(super) fn value(check: &str, v: Option<f64>, lower_bound: bool) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    let text = match check {
        "latency_p95" => format!("{v:.3} s"),
        _ => format!("{:.2}%", v * 100.0),
    };
    if lower_bound {
        format!("> {text}")
    } else {
        text
    }
}

fn span(s: Option<super::Span>) -> String {
    s.map(|s| {
        format!(
            "{} .. {} ({})",
            rfc3339(s.from),
            rfc3339(s.to),
            humantime::format_duration(std::time::Duration::from_secs(
                (s.to - s.from).round().max(0.0) as u64
            ))
        )
    })
    .unwrap_or_else(|| "-".into())
}

pub(super) fn text(v: &Verification, lang: Lang) -> String {
    let w = match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "{}: {} {} ({})",
        w.title,
        v.job,
        v.version,
        v.verdict_word(w)
    ));
    line(format!("{}: {}", w.instances, v.instances.join(", ")));
    if !v.stragglers.is_empty() {
        let list: Vec<String> = v
            .stragglers
            .iter()
            .map(|s| format!("{} ({})", s.instance, s.version.as_deref().unwrap_or("-")))
            .collect();
        line(format!("{}: {}", w.stragglers, list.join(", ")));
    }
    if !v.previous_versions.is_empty() {
        let list: Vec<String> = v
            .previous_versions
            .iter()
            .map(|(i, p)| format!("{i} {p}"))
            .collect();
        line(format!("{}: {}", w.previous, list.join(", ")));
    }
    line(format!("{}: {}", w.rollout, span(v.rollout)));
    line(format!("{}: {}", w.analysis, span(v.analysis)));
    line(format!("{}: {}", w.baseline, span(v.baseline)));
    if !v.checks.is_empty() {
        line(String::new());
        let rows: Vec<[String; 5]> = v
            .checks
            .iter()
            .map(|c| {
                let name = w
                    .checks
                    .iter()
                    .find(|(k, _)| *k == c.check)
                    .map(|(_, n)| *n)
                    .unwrap_or(c.check);
                let name = match &c.agent_id {
                    Some(a) => format!("{name} ({a})"),
                    None => name.to_string(),
                };
                let counted = |n: Option<f64>| n.map(|n| format!(", n={n:.0}")).unwrap_or_default();
                [
                    name,
                    format!(
                        "{}{}",
                        value(c.check, c.new, c.above_top_bucket),
                        counted(c.new_count)
                    ),
                    format!(
                        "{}{}",
                        value(c.check, c.baseline, false),
                        counted(c.baseline_count)
                    ),
                    value(c.check, c.limit, false),
                    w.results[match c.result {
                        CheckResult::Pass => 0,
                        CheckResult::Fail => 1,
                        CheckResult::TooLittleTraffic => 2,
                        CheckResult::NoData => 3,
                    }]
                    .to_string(),
                ]
            })
            .collect();
        let header = w.header.map(str::to_string);
        let width = |i: usize| {
            rows.iter()
                .chain(std::iter::once(&header))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..5).map(width).collect();
        for row in std::iter::once(&header).chain(rows.iter()) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, n)| format!("{c}{}", " ".repeat(n - c.chars().count())))
                .collect();
            line(cells.join("  ").trim_end().to_string());
        }
        line(format!("* {}", w.estimate));
    }
    line(String::new());
    line(format!(
        "{}: {} (exit {})",
        w.verdict,
        v.verdict_word(w),
        v.exit_code
    ));
    for r in &v.reasons {
        line(format!("- {r}"));
    }
    out
}

impl Verification {
    fn verdict_word(&self, w: &Words) -> &'static str {
        w.verdicts[match self.verdict {
            Verdict::Pass => 0,
            Verdict::Regression => 1,
            Verdict::Inconclusive => 2,
            Verdict::RolloutUnfinished => 3,
        }]
    }
}
