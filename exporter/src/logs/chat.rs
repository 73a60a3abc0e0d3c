//! Chat collector: the guide's `recordChatMessage(agentId, status)` as
//! `llmchat_chat_messages_total{agent_id,status}`, plus the response
//! duration when the backend logs one. Fed by the app-log tailer of the
//! logs collector (chat events are lines of the same winston JSON log); a
//! scrape encodes the totals.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::registry::Unit;

use crate::collectors::encode::{counter_family, histogram_family, HistogramCounts};
use crate::config::{validate_buckets, Config, Section};
use crate::logs::access_format::DurationUnit;
use crate::logs::chat_event::{ChatConfig, ChatStatus, Parser};
use llmchat_common::{invalid, ConfigError};

/// The collector's line in [`crate::collectors::ALL`]. Chat events are
/// lines of the app log, so the logs collector's tailer records them (when
/// this is enabled); chat has no per-scrape work of its own.
pub const ENTRY: crate::collectors::Entry = crate::collectors::Entry {
    name: "chat",
    role: crate::collectors::Role::Host,
    enabled_by_default: true,
    help: "chat events from the app logs (needs the logs collector)",
    start: |_, _| Ok(None),
};

/// `--chat.*` flags.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, serde::Serialize)]
pub struct ChatFlags {
    /// Chat events: field naming the event.
    #[arg(
        id = "chat.event_field",
        long = "chat.event-field",
        value_name = "FIELD"
    )]
    pub event_field: Option<String>,
    /// Chat events: value of that field that marks a chat message.
    #[arg(
        id = "chat.event_value",
        long = "chat.event-value",
        value_name = "VALUE"
    )]
    pub event_value: Option<String>,
    /// Chat events: field of the agent id.
    #[arg(
        id = "chat.agent_field",
        long = "chat.agent-field",
        value_name = "FIELD"
    )]
    pub agent_field: Option<String>,
    /// Chat events: field of the status, success or error.
    #[arg(
        id = "chat.status_field",
        long = "chat.status-field",
        value_name = "FIELD"
    )]
    pub status_field: Option<String>,
    /// Chat events: field of the response duration.
    #[arg(
        id = "chat.duration_field",
        long = "chat.duration-field",
        value_name = "FIELD"
    )]
    pub duration_field: Option<String>,
    /// Chat events: unit of the duration, ms or s.
    #[arg(id = "chat.duration_unit", long = "chat.duration-unit", value_name = "UNIT", value_parser = DurationUnit::flag)]
    pub duration_unit: Option<DurationUnit>,
    /// Distinct agent_id values kept; the rest become "other".
    #[arg(id = "chat.max_agents", long = "chat.max-agents", value_name = "N")]
    pub max_agents: Option<usize>,
    /// Chat duration histogram buckets, seconds.
    #[arg(
        id = "chat.buckets",
        long = "chat.buckets",
        value_name = "LIST",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<f64>,
}

impl Section for ChatConfig {
    fn validate(&self, _: &Config) -> Result<(), ConfigError> {
        validate_buckets("chat.buckets", &self.buckets)?;
        if self.max_agents == 0 {
            return Err(invalid("chat.max_agents", 0, "must be at least 1"));
        }
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

#[derive(Default)]
struct Totals {
    messages: HashMap<MessageLabels, u64>,
    durations: HashMap<AgentLabels, HistogramCounts>,
}

/// Lives in the tailer thread: recognises events and batches them.
pub struct ChatRecorder {
    parser: Parser,
    bounds: Arc<[f64]>,
    max_agents: usize,
    agents: HashSet<Arc<str>>,
    other: Arc<str>,
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
                .entry(AgentLabels { agent_id: agent })
                .or_insert_with(|| HistogramCounts::new(bounds))
                .observe(bounds, d);
        }
        Some(true)
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
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in self.batch.messages.drain() {
            *totals.messages.entry(k).or_insert(0) += n;
        }
        for (k, h) in self.batch.durations.drain() {
            match totals.durations.get_mut(&k) {
                Some(t) => t.merge(&h),
                None => {
                    totals.durations.insert(k, h);
                }
            }
        }
    }
}

/// Encodes the chat totals at scrape time.
pub struct ChatCollector {
    bounds: Arc<[f64]>,
    totals: Arc<Mutex<Totals>>,
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
            agents: HashSet::new(),
            other: Arc::from(OTHER_AGENT),
            batch: Totals::default(),
            totals: totals.clone(),
        },
        ChatCollector { bounds, totals },
    )
}

impl Collector for ChatCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
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
        Ok(())
    }
}
