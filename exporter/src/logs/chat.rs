//! Chat collector: the guide's `recordChatMessage(agentId, status)` as
//! `llmchat_chat_messages_total{agent_id,status}`, plus the response
//! duration when the backend logs one, and what the event says about the
//! LLM call (`logs/llm_usage.rs`): tokens, time to first token, provider
//! errors by type, and spend. Fed by the app-log tailer of the
//! logs collector (chat events are lines of the same winston JSON log); a
//! scrape encodes the totals.

// FxHash, as access.rs: several map updates per chat event, keys bounded
// (max_agents, max_models, max_providers) so hash flooding has no room.
use llmchat_common::lock;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::registry::Unit;

use crate::collector_kit::encode::{
    counter_family, gauge_family, histogram_family, HistogramCounts,
};
use crate::collector_kit::{validate_buckets, Section};
use crate::logs::chat_event::{ChatConfig, ChatStatus, Parser};
use crate::logs::llm_usage::{Budget, Usage, UsageConfig};
use llmchat_common::{invalid, ConfigError};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`. Chat events are
/// lines of the app log, so the logs collector's tailer records them (when
/// this is enabled); chat has no per-scrape work of its own.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "chat",
    role: crate::collector_kit::Role::Host,
    enabled_by_default: true,
    help: "chat events from the app logs (needs the logs collector)",
};

impl Section for ChatConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        validate_buckets("chat.buckets", &self.buckets)?;
        if self.max_agents == 0 {
            return Err(invalid("chat.max_agents", 0, "must be at least 1"));
        }
        self.llm.check()?;
        if self.event_field.is_empty() || self.event_value.is_empty() {
            return Err(invalid(
                "chat.event_value",
                &self.event_value,
                "event field and value must not be empty",
            ));
        }
        Ok(())
    }
}

/// The agent of events past the `max_agents` cap.
pub const OTHER_AGENT: &str = "other";

impl EncodeLabelValue for ChatStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    agent_id: Arc<str>,
    status: ChatStatus,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent_id: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    agent_id: Arc<str>,
    model: Arc<str>,
    /// `input`, `output`, `cached_input` (gen_ai.token.type).
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    agent_id: Arc<str>,
    model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    agent_id: Arc<str>,
    provider: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    agent_id: Arc<str>,
    provider: Arc<str>,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    agent_id: Arc<str>,
    model: Arc<str>,
    currency: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    /// `day` or `month`.
    period: &'static str,
    currency: String,
}

#[derive(Default)]
struct Totals {
    messages: HashMap<MessageLabels, u64>,
    durations: HashMap<AgentLabels, HistogramCounts>,
    tokens: HashMap<TokenLabels, u64>,
    token_usage: HashMap<TokenLabels, HistogramCounts>,
    unpriced: HashMap<TokenLabels, u64>,
    first_token: HashMap<ModelLabels, HistogramCounts>,
    calls: HashMap<ProviderLabels, u64>,
    errors: HashMap<ErrorLabels, u64>,
    cost: HashMap<CostLabels, f64>,
}

/// gen_ai.client.token.usage's explicit bucket boundaries (OpenTelemetry
/// GenAI semantic conventions).
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// gen_ai.client.operation.time_to_first_chunk's (and operation
/// duration's) boundaries, seconds.
pub const FIRST_TOKEN_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// A bounded set of label values: the first `max` seen, then `other`.
struct Bounded {
    max: usize,
    seen: HashSet<Arc<str>>,
    other: Arc<str>,
}

impl Bounded {
    fn new(max: usize) -> Self {
        Bounded {
            max,
            seen: HashSet::default(),
            other: Arc::from(OTHER_AGENT),
        }
    }

    fn get(&mut self, value: &str) -> Arc<str> {
        if let Some(v) = self.seen.get(value) {
            return v.clone();
        }
        if self.seen.len() >= self.max || value == OTHER_AGENT {
            return self.other.clone();
        }
        let v: Arc<str> = Arc::from(value);
        self.seen.insert(v.clone());
        v
    }
}

/// Lives in the tailer thread: recognises events and batches them.
pub struct ChatRecorder {
    parser: Parser,
    bounds: Arc<[f64]>,
    max_agents: usize,
    agents: HashSet<Arc<str>>,
    other: Arc<str>,
    models: Bounded,
    providers: Bounded,
    llm: UsageConfig,
    /// The currencies of the price table, as labels.
    currencies: Vec<Arc<str>>,
    batch: Totals,
    totals: Arc<Mutex<Totals>>,
}

impl ChatRecorder {
    /// `Some(true)`: a chat event, recorded; `Some(false)`: a chat event
    /// that could not be read (a parse error); `None`: not a chat event.
    pub fn record(&mut self, line: &[u8]) -> Option<bool> {
        let event = match self.parser.parse(line)? {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable chat event");
                return Some(false);
            }
        };
        let agent = self.agent(&event.agent_id);
        *self
            .batch
            .messages
            .entry(MessageLabels {
                agent_id: agent.clone(),
                status: event.status,
            })
            .or_insert(0) += 1;
        if let Some(d) = event.duration_seconds {
            let bounds = &self.bounds;
            self.batch
                .durations
                .entry(AgentLabels {
                    agent_id: agent.clone(),
                })
                .or_insert_with(|| HistogramCounts::new(bounds))
                .observe(bounds, d);
        }
        self.record_usage(agent, &event.usage);
        Some(true)
    }

    /// Tokens, spend, time to first token and the provider's error.
    fn record_usage(&mut self, agent: Arc<str>, usage: &Usage) {
        let model = self.models.get(usage.model.as_deref().unwrap_or("unknown"));
        let provider = self
            .providers
            .get(usage.provider.as_deref().unwrap_or("unknown"));
        let b = &mut self.batch;
        *b.calls
            .entry(ProviderLabels {
                agent_id: agent.clone(),
                provider: provider.clone(),
            })
            .or_insert(0) += 1;
        if let Some(error_type) = usage.error_type {
            *b.errors
                .entry(ErrorLabels {
                    agent_id: agent.clone(),
                    provider,
                    error_type,
                })
                .or_insert(0) += 1;
        }
        if let Some(t) = usage.time_to_first_token_seconds {
            b.first_token
                .entry(ModelLabels {
                    agent_id: agent.clone(),
                    model: model.clone(),
                })
                .or_insert_with(|| HistogramCounts::new(&FIRST_TOKEN_BUCKETS))
                .observe(&FIRST_TOKEN_BUCKETS, t);
        }
        let counts = [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cached_input", usage.cached_input_tokens),
        ];
        if counts.iter().all(|(_, n)| n.is_none()) {
            return;
        }
        // The model's name as logged, not its bounded label: a price
        // applies to a model even past max_models.
        let priced = usage.model.as_deref().and_then(|m| self.llm.cost(m, usage));
        for (kind, n) in counts {
            let Some(n) = n else { continue };
            let labels = TokenLabels {
                agent_id: agent.clone(),
                model: model.clone(),
                r#type: kind,
            };
            *b.tokens.entry(labels.clone()).or_insert(0) += n;
            b.token_usage
                .entry(labels.clone())
                .or_insert_with(|| HistogramCounts::new(&TOKEN_BUCKETS))
                .observe(&TOKEN_BUCKETS, n as f64);
            if priced.is_none() {
                *b.unpriced.entry(labels).or_insert(0) += n;
            }
        }
        if let Some((cost, currency)) = priced {
            // One Arc per currency, not one allocation per event.
            let currency = match self.currencies.iter().find(|c| ***c == *currency) {
                Some(c) => c.clone(),
                None => {
                    let c: Arc<str> = Arc::from(currency);
                    self.currencies.push(c.clone());
                    c
                }
            };
            *self
                .batch
                .cost
                .entry(CostLabels {
                    agent_id: agent,
                    model,
                    currency,
                })
                .or_insert(0.0) += cost;
        }
    }

    fn agent(&mut self, id: &str) -> Arc<str> {
        if let Some(a) = self.agents.get(id) {
            return a.clone();
        }
        if self.agents.len() >= self.max_agents || id == OTHER_AGENT {
            return self.other.clone();
        }
        let a: Arc<str> = Arc::from(id);
        self.agents.insert(a.clone());
        a
    }

    pub fn flush(&mut self) {
        if self.batch.messages.is_empty() {
            return;
        }
        fn add<K: std::hash::Hash + Eq, V: std::ops::AddAssign + Default>(
            into: &mut HashMap<K, V>,
            from: &mut HashMap<K, V>,
        ) {
            for (k, n) in from.drain() {
                *into.entry(k).or_default() += n;
            }
        }
        fn merge<K: std::hash::Hash + Eq>(
            into: &mut HashMap<K, HistogramCounts>,
            from: &mut HashMap<K, HistogramCounts>,
        ) {
            for (k, h) in from.drain() {
                match into.get_mut(&k) {
                    Some(t) => t.merge(&h),
                    None => {
                        into.insert(k, h);
                    }
                }
            }
        }
        let mut totals = lock(&self.totals);
        let b = &mut self.batch;
        add(&mut totals.messages, &mut b.messages);
        add(&mut totals.tokens, &mut b.tokens);
        add(&mut totals.unpriced, &mut b.unpriced);
        add(&mut totals.calls, &mut b.calls);
        add(&mut totals.errors, &mut b.errors);
        add(&mut totals.cost, &mut b.cost);
        merge(&mut totals.durations, &mut b.durations);
        merge(&mut totals.token_usage, &mut b.token_usage);
        merge(&mut totals.first_token, &mut b.first_token);
    }
}

/// Encodes the chat totals at scrape time.
pub struct ChatCollector {
    bounds: Arc<[f64]>,
    totals: Arc<Mutex<Totals>>,
    budget: Option<Budget>,
}

impl std::fmt::Debug for ChatCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCollector").finish_non_exhaustive()
    }
}

/// A recorder for the tailer and the collector that publishes what it records.
pub fn new(config: &ChatConfig) -> (ChatRecorder, ChatCollector) {
    let bounds: Arc<[f64]> = config.buckets.clone().into();
    let totals = Arc::new(Mutex::new(Totals::default()));
    (
        ChatRecorder {
            parser: Parser::new(config.clone()),
            bounds: bounds.clone(),
            max_agents: config.max_agents,
            agents: HashSet::default(),
            other: Arc::from(OTHER_AGENT),
            models: Bounded::new(config.llm.max_models),
            providers: Bounded::new(config.llm.max_providers),
            llm: config.llm.clone(),
            currencies: Vec::new(),
            batch: Totals::default(),
            totals: totals.clone(),
        },
        ChatCollector {
            bounds,
            totals,
            budget: config.llm.budget.clone(),
        },
    )
}

impl Collector for ChatCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = lock(&self.totals);
        counter_family(
            &mut e,
            "messages",
            "Chat messages by agent and outcome, from the backend's chat_message log events (the guide's recordChatMessage).",
            None,
            totals.messages.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        histogram_family(
            &mut e,
            "response_duration",
            "Chat response duration by agent, from the backend's chat_message log events.",
            Some(Unit::Seconds),
            &self.bounds,
            totals.durations.iter().map(|(k, h)| (k.clone(), h)),
        )?;
        counter_family(
            &mut e,
            "tokens",
            "LLM tokens by agent, model and type (input, output, cached_input), from the chat events' usage (gen_ai.client.token.usage).",
            None,
            totals.tokens.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        histogram_family(
            &mut e,
            "token_usage",
            "Tokens per LLM call by agent, model and type, with the GenAI semantic conventions' boundaries (gen_ai.client.token.usage).",
            None,
            &TOKEN_BUCKETS,
            totals.token_usage.iter().map(|(k, h)| (k.clone(), h)),
        )?;
        histogram_family(
            &mut e,
            "time_to_first_token",
            "Time from the request to the first streamed token by agent and model (gen_ai.client.operation.time_to_first_chunk).",
            Some(Unit::Seconds),
            &FIRST_TOKEN_BUCKETS,
            totals.first_token.iter().map(|(k, h)| (k.clone(), h)),
        )?;
        counter_family(
            &mut e,
            "provider_calls",
            "Chat events by agent and LLM provider (unknown when the event names none): the denominator of the provider error ratios.",
            None,
            totals.calls.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        counter_family(
            &mut e,
            "provider_errors",
            "Failed chat events by agent, provider and error type (rate_limited, timeout, overloaded, context_length, content_filter, auth, provider_5xx, other; error.type).",
            None,
            totals.errors.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        counter_family(
            &mut e,
            "cost",
            "Spend on LLM tokens by agent, model and currency, from chat.llm.prices (per million tokens).",
            None,
            totals.cost.iter().map(|(k, v)| (k.clone(), *v)),
        )?;
        if let Some(b) = &self.budget {
            let periods = [("day", b.daily), ("month", b.monthly)];
            gauge_family(
                &mut e,
                "cost_budget",
                "The LLM spend budget of a UTC day or month, from chat.llm.budget: the one place the budget rules read it.",
                None,
                periods.into_iter().filter_map(|(period, v)| {
                    Some((BudgetLabels { period, currency: b.currency.clone() }, v?))
                }),
            )?;
        }
        counter_family(
            &mut e,
            "unpriced_tokens",
            "Tokens of models without a price in chat.llm.prices: spend not counted in llmchat_chat_cost_total, never taken as free.",
            None,
            totals.unpriced.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        Ok(())
    }
}
