//! The period's LLM usage, from the chat events' metrics: tokens and spend
//! per agent and model, the agents that spent most, time-to-first-token
//! percentiles (estimates from the histogram's buckets), provider error
//! rates by type, and each agent's cost per message against the previous
//! period of the same length (a rise is a finding). The section renders
//! itself, in English or Chinese.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::histogram::{buckets, quantile, Estimate};
use super::model::{Finding, Severity, Subject};
use super::prometheus::{Client, Labels};
use super::{cell, Job, Lang, ReportError};

/// A cost per message this many times the previous period's is a finding.
pub const COST_PER_MESSAGE_RISE: f64 = 1.5;
/// Messages an agent needs in both periods for its cost per message to be
/// compared (a handful of messages is noise).
pub const MIN_MESSAGES: f64 = 100.0;
/// Rows of the per-model table; the rest are counted.
const MODEL_ROWS: usize = 30;

/// One agent's use of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelUsage {
    pub agent_id: String,
    pub model: String,
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub cached_input_tokens: f64,
    /// Absent for a model without a price (its tokens are unpriced).
    pub cost: Option<f64>,
    pub currency: Option<String>,
}

/// One agent's spend in one currency, and its cost per message now and in
/// the period before.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSpend {
    pub agent_id: String,
    pub currency: String,
    pub cost: f64,
    pub messages: f64,
    pub cost_per_message: Option<f64>,
    pub previous_cost_per_message: Option<f64>,
}

/// Time to the first token of one agent's streamed answers.
#[derive(Debug, Clone, Serialize)]
pub struct FirstToken {
    pub agent_id: String,
    pub answers: f64,
    pub p50: Option<Estimate>,
    pub p95: Option<Estimate>,
    pub p99: Option<Estimate>,
}

/// One provider's calls and its failures by error type.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderErrors {
    pub provider: String,
    pub calls: f64,
    /// (error_type, failed calls), most first.
    pub errors: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmUsage {
    pub models: Vec<ModelUsage>,
    /// By currency, then most spent first.
    pub agents: Vec<AgentSpend>,
    pub first_token: Vec<FirstToken>,
    pub providers: Vec<ProviderErrors>,
    pub unpriced_tokens: f64,
}

impl LlmUsage {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.providers.is_empty()
    }

    /// Agents whose cost per message rose by [`COST_PER_MESSAGE_RISE`] or
    /// more against the previous period.
    pub fn findings(&self) -> Vec<Finding> {
        self.agents
            .iter()
            .filter_map(|a| {
                let rise =
                    a.cost_per_message? / a.previous_cost_per_message.filter(|p| *p > 0.0)?;
                (rise >= COST_PER_MESSAGE_RISE).then(|| Finding {
                    kind: "agent_cost_per_message",
                    severity: Severity::Warning,
                    value: rise,
                    threshold: COST_PER_MESSAGE_RISE,
                    subject: Subject {
                        agent_id: Some(a.agent_id.clone()),
                        ..Subject::default()
                    },
                })
            })
            .collect()
    }
}

fn label(l: &Labels, name: &str) -> String {
    l.get(name).cloned().unwrap_or_default()
}

/// The period `[to - d, to]`'s usage; `d` is a PromQL duration.
pub async fn usage(client: &Client, job: &Job, d: &str, to: f64) -> Result<LlmUsage, ReportError> {
    let v = |expr: String| async move { client.vector(&expr, to).await };
    let tokens = job.sel("llmchat_chat_tokens_total", "");
    let cost = job.sel("llmchat_chat_cost_total", "");
    let messages = job.sel("llmchat_chat_messages_total", "");
    let first = job.sel("llmchat_chat_time_to_first_token_seconds_bucket", "");
    let calls = job.sel("llmchat_chat_provider_calls_total", "");
    let errors = job.sel("llmchat_chat_provider_errors_total", "");
    let unpriced = job.sel("llmchat_chat_unpriced_tokens_total", "");
    let (tokens, cost_by_model, spend, previous_spend, msgs, previous_msgs) = tokio::try_join!(
        v(format!(
            "sum by (agent_id, model, type) (increase({tokens}[{d}]))"
        )),
        v(format!(
            "sum by (agent_id, model, currency) (increase({cost}[{d}]))"
        )),
        v(format!(
            "sum by (agent_id, currency) (increase({cost}[{d}]))"
        )),
        v(format!(
            "sum by (agent_id, currency) (increase({cost}[{d}] offset {d}))"
        )),
        v(format!("sum by (agent_id) (increase({messages}[{d}]))")),
        v(format!(
            "sum by (agent_id) (increase({messages}[{d}] offset {d}))"
        )),
    )?;
    let (first, calls, errors, unpriced) = tokio::try_join!(
        v(format!("sum by (agent_id, le) (increase({first}[{d}]))")),
        v(format!("sum by (provider) (increase({calls}[{d}]))")),
        v(format!(
            "sum by (provider, error_type) (increase({errors}[{d}]))"
        )),
        v(format!("sum(increase({unpriced}[{d}]))")),
    )?;

    let mut models: BTreeMap<(String, String), ModelUsage> = BTreeMap::new();
    for (l, n) in &tokens {
        let key = (label(l, "agent_id"), label(l, "model"));
        let m = models.entry(key.clone()).or_insert_with(|| ModelUsage {
            agent_id: key.0,
            model: key.1,
            input_tokens: 0.0,
            output_tokens: 0.0,
            cached_input_tokens: 0.0,
            cost: None,
            currency: None,
        });
        match l.get("type").map(String::as_str) {
            Some("input") => m.input_tokens += n,
            Some("output") => m.output_tokens += n,
            Some("cached_input") => m.cached_input_tokens += n,
            _ => {}
        }
    }
    for (l, c) in &cost_by_model {
        if let Some(m) = models.get_mut(&(label(l, "agent_id"), label(l, "model"))) {
            *m.cost.get_or_insert(0.0) += c;
            m.currency = l.get("currency").cloned();
        }
    }
    let per_agent = |list: &[(Labels, f64)]| -> BTreeMap<String, f64> {
        list.iter()
            .map(|(l, n)| (label(l, "agent_id"), *n))
            .collect()
    };
    let (msgs, previous_msgs) = (per_agent(&msgs), per_agent(&previous_msgs));
    let previous: BTreeMap<(String, String), f64> = previous_spend
        .iter()
        .map(|(l, c)| ((label(l, "agent_id"), label(l, "currency")), *c))
        .collect();
    let per_message = |cost: Option<f64>, n: Option<&f64>| {
        let n = *n.filter(|n| **n >= MIN_MESSAGES)?;
        Some(cost? / n)
    };
    let mut agents: Vec<AgentSpend> = spend
        .iter()
        .map(|(l, c)| {
            let (agent_id, currency) = (label(l, "agent_id"), label(l, "currency"));
            let before = previous.get(&(agent_id.clone(), currency.clone())).copied();
            AgentSpend {
                cost_per_message: per_message(Some(*c), msgs.get(&agent_id)),
                previous_cost_per_message: per_message(before, previous_msgs.get(&agent_id)),
                messages: msgs.get(&agent_id).copied().unwrap_or(0.0),
                agent_id,
                currency,
                cost: *c,
            }
        })
        .collect();
    // Spend in different currencies is not added up or ranked together.
    agents.sort_by(|a, b| a.currency.cmp(&b.currency).then(b.cost.total_cmp(&a.cost)));

    let mut by_agent: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    for (l, n) in first {
        by_agent
            .entry(label(&l, "agent_id"))
            .or_default()
            .push((l, n));
    }
    let first_token = by_agent
        .into_iter()
        .filter_map(|(agent_id, series)| {
            let b = buckets(&series);
            let answers = b.iter().find(|(le, _)| le.is_infinite())?.1;
            (answers > 0.0).then(|| FirstToken {
                agent_id,
                answers,
                p50: quantile(0.5, &b),
                p95: quantile(0.95, &b),
                p99: quantile(0.99, &b),
            })
        })
        .collect();

    let mut providers: Vec<ProviderErrors> = calls
        .iter()
        .map(|(l, n)| {
            let provider = label(l, "provider");
            let mut errors: Vec<(String, f64)> = errors
                .iter()
                .filter(|(e, n)| e.get("provider") == Some(&provider) && *n > 0.0)
                .map(|(e, n)| (label(e, "error_type"), *n))
                .collect();
            errors.sort_by(|a, b| b.1.total_cmp(&a.1));
            ProviderErrors {
                provider,
                calls: *n,
                errors,
            }
        })
        .filter(|p| p.calls > 0.0)
        .collect();
    providers.sort_by(|a, b| b.calls.total_cmp(&a.calls));

    Ok(LlmUsage {
        models: models.into_values().collect(),
        agents,
        first_token,
        providers,
        unpriced_tokens: unpriced.first().map_or(0.0, |(_, n)| *n),
    })
}

struct Words {
    title: &'static str,
    none: &'static str,
    models_header: &'static str,
    unpriced: &'static str,
    agents_header: &'static str,
    first_token: &'static str,
    first_token_header: &'static str,
    providers_header: &'static str,
    no_errors: &'static str,
    no_data: &'static str,
}

const EN: Words = Words {
    title: "LLM usage and cost",
    none:
        "No LLM usage in the period (llmchat_chat_tokens_total, llmchat_chat_provider_calls_total).",
    models_header: "| Agent | Model | Input tokens | Cached input | Output tokens | Spend |",
    unpriced: "Tokens of models without a price (chat.llm.prices), not in the spend above: ",
    agents_header: "| Agent | Spend | Messages | Cost per message | Previous period |",
    first_token: "Time to first token (estimates: interpolated within the histogram's buckets):",
    first_token_header: "| Agent | Streamed answers | P50 | P95 | P99 |",
    providers_header: "| Provider | Calls | Failed | Error types |",
    no_errors: "none",
    no_data: "n/a",
};

const ZH: Words = Words {
    title: "LLM 用量与费用",
    none: "本时段没有 LLM 用量（llmchat_chat_tokens_total、llmchat_chat_provider_calls_total）。",
    models_header: "| 智能体 | 模型 | 输入 token | 缓存输入 | 输出 token | 费用 |",
    unpriced: "未定价模型（chat.llm.prices 中没有价格）的 token，不计入上面的费用：",
    agents_header: "| 智能体 | 费用 | 消息数 | 每条消息费用 | 上一时段 |",
    first_token: "首 token 时间（估算值：在直方图桶内线性插值）：",
    first_token_header: "| 智能体 | 流式回答数 | P50 | P95 | P99 |",
    providers_header: "| 服务商 | 调用次数 | 失败率 | 错误类型 |",
    no_errors: "无",
    no_data: "无数据",
};

fn tokens(n: f64) -> String {
    let digits = format!("{}", n.round() as i64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn money(v: f64, currency: &str) -> String {
    format!("{v:.2} {}", cell(currency))
}

fn seconds(e: Option<Estimate>, w: &Words) -> String {
    match e {
        None => w.no_data.into(),
        Some(e) if e.above_top_bucket => format!("> {} s", e.seconds),
        Some(e) => format!("{:.2} s", e.seconds),
    }
}

/// The section, in Markdown.
pub fn render(out: &mut String, u: &LlmUsage, lang: Lang) {
    let w = match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    };
    let _ = writeln!(out, "## {}\n", w.title);
    if u.is_empty() {
        let _ = writeln!(out, "{}\n", w.none);
        return;
    }
    if !u.models.is_empty() {
        let _ = writeln!(out, "{}\n|---|---|---|---|---|---|", w.models_header);
        for m in u.models.iter().take(MODEL_ROWS) {
            let spend = match (m.cost, &m.currency) {
                (Some(c), Some(cur)) => money(c, cur),
                _ => w.no_data.into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {spend} |",
                cell(&m.agent_id),
                cell(&m.model),
                tokens(m.input_tokens),
                tokens(m.cached_input_tokens),
                tokens(m.output_tokens),
            );
        }
        if u.models.len() > MODEL_ROWS {
            let _ = writeln!(out, "| … +{} | | | | | |", u.models.len() - MODEL_ROWS);
        }
        out.push('\n');
    }
    if u.unpriced_tokens > 0.0 {
        let _ = writeln!(out, "{}{}\n", w.unpriced, tokens(u.unpriced_tokens));
    }
    if !u.agents.is_empty() {
        let _ = writeln!(out, "{}\n|---|---|---|---|---|", w.agents_header);
        let per = |v: Option<f64>, cur: &str| {
            v.map_or(w.no_data.into(), |v| format!("{v:.4} {}", cell(cur)))
        };
        for a in &u.agents {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&a.agent_id),
                money(a.cost, &a.currency),
                tokens(a.messages),
                per(a.cost_per_message, &a.currency),
                per(a.previous_cost_per_message, &a.currency),
            );
        }
        out.push('\n');
    }
    if !u.first_token.is_empty() {
        let _ = writeln!(
            out,
            "{}\n\n{}\n|---|---|---|---|---|",
            w.first_token, w.first_token_header
        );
        for f in &u.first_token {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&f.agent_id),
                tokens(f.answers),
                seconds(f.p50, w),
                seconds(f.p95, w),
                seconds(f.p99, w),
            );
        }
        out.push('\n');
    }
    if !u.providers.is_empty() {
        let _ = writeln!(out, "{}\n|---|---|---|---|", w.providers_header);
        for p in &u.providers {
            let failed: f64 = p.errors.iter().map(|(_, n)| n).sum();
            let types = if p.errors.is_empty() {
                w.no_errors.to_string()
            } else {
                p.errors
                    .iter()
                    .map(|(t, n)| format!("{} {:.2}%", cell(t), n / p.calls * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2}% | {types} |",
                cell(&p.provider),
                tokens(p.calls),
                failed / p.calls * 100.0,
            );
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, now: Option<f64>, before: Option<f64>) -> AgentSpend {
        AgentSpend {
            agent_id: id.into(),
            currency: "USD".into(),
            cost: 1.0,
            messages: 1000.0,
            cost_per_message: now,
            previous_cost_per_message: before,
        }
    }

    #[test]
    fn a_cost_per_message_half_again_as_high_is_a_finding() {
        let u = LlmUsage {
            agents: vec![
                agent("up", Some(0.003), Some(0.002)),
                agent("flat", Some(0.0029), Some(0.002)),
                agent("new", Some(0.01), None),
                agent("was_free", Some(0.01), Some(0.0)),
            ],
            ..LlmUsage::default()
        };
        let f = u.findings();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].subject.agent_id.as_deref(), Some("up"));
        assert!((f[0].value - 1.5).abs() < 1e-9);
    }

    #[test]
    fn token_counts_are_grouped_by_thousands() {
        assert_eq!(tokens(0.0), "0");
        assert_eq!(tokens(999.0), "999");
        assert_eq!(tokens(1000.0), "1,000");
        assert_eq!(tokens(864_000_000.4), "864,000,000");
    }
}
