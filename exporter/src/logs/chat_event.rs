//! Recognises the backend's chat-message events in its winston JSON log,
//! the lines behind the guide's `recordChatMessage(agentId, status)`:
//! `{"level":"info","event":"chat_message","agent_id":"gpt-4o","status":"success","duration_ms":1830,...}`.

use llmchat_common::settings::Settings;
use memchr::memmem;
use serde::Deserialize;

use crate::logs::access_format::{as_f64, lookup, DurationUnit};
use crate::logs::llm_usage::{Malformed, Usage, UsageConfig};

/// Where the chat fields are in an event line, and how the metrics are
/// bounded and bucketed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Chat events: field naming the event.
    #[setting(flag, value_name = "FIELD", default = "event")]
    pub event_field: String,
    /// Chat events: value of that field that marks a chat message.
    #[setting(flag, value_name = "VALUE", default = "chat_message")]
    pub event_value: String,
    /// Chat events: field of the agent id.
    #[setting(flag, value_name = "FIELD", default = "agent_id")]
    pub agent_field: String,
    /// Chat events: field of the status, success or error.
    ///
    /// When the line has no such field, its level decides.
    #[setting(flag, value_name = "FIELD", default = "status")]
    pub status_field: String,
    /// Chat events: field of the response duration, when the backend logs it.
    #[setting(flag, value_name = "FIELD", default = "duration_ms")]
    pub duration_field: String,
    /// Chat events: unit of the duration, ms or s.
    #[setting(flag, default = DurationUnit::Ms)]
    pub duration_unit: DurationUnit,
    /// Distinct agent_id values kept; the rest become "other".
    #[setting(flag, default = 100)]
    pub max_agents: usize,
    /// Chat duration histogram buckets, seconds
    /// (`llmchat_chat_response_duration_seconds`).
    #[setting(flag, default = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0])]
    pub buckets: Vec<f64>,
    /// `[chat.llm]`: model, provider, tokens, time to first token, error
    /// types and prices.
    #[setting(default = UsageConfig::default())]
    pub llm: UsageConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatStatus {
    Success,
    Error,
}

impl ChatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatStatus::Success => "success",
            ChatStatus::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvent {
    pub agent_id: String,
    pub status: ChatStatus,
    pub duration_seconds: Option<f64>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("chat event without a string {0} field")]
    Missing(&'static str),
    #[error("chat event with status {0:?}, expected success or error")]
    Status(String),
    #[error("chat event with an invalid duration")]
    Duration,
    #[error(transparent)]
    Usage(#[from] Malformed),
}

pub struct Parser {
    fields: ChatConfig,
    prefilter: memmem::Finder<'static>,
}

impl Parser {
    pub fn new(fields: ChatConfig) -> Self {
        let prefilter = memmem::Finder::new(fields.event_value.as_bytes()).into_owned();
        Parser { fields, prefilter }
    }

    /// `None` when the line is not a chat event; `Some(Err)` when it is one
    /// but lacks what the metrics need.
    pub fn parse(&self, line: &[u8]) -> Option<Result<ChatEvent, ChatError>> {
        // Most lines are not chat events; skip JSON parsing for them.
        self.prefilter.find(line)?;
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let event = lookup(&value, &self.fields.event_field)?;
        if event.as_str() != Some(self.fields.event_value.as_str()) {
            return None;
        }
        Some(self.event(&value))
    }

    fn event(&self, value: &serde_json::Value) -> Result<ChatEvent, ChatError> {
        let f = &self.fields;
        let agent_id = match lookup(value, &f.agent_field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(ChatError::Missing("agent_id")),
        };
        let status = match lookup(value, &f.status_field) {
            Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "success" | "ok" | "succeeded" => ChatStatus::Success,
                "error" | "failed" | "failure" => ChatStatus::Error,
                _ => return Err(ChatError::Status(s.chars().take(40).collect())),
            },
            None => match value.get("level").and_then(|l| l.as_str()) {
                Some(l)
                    if crate::logs::level::Level::from_name(l)
                        == crate::logs::level::Level::Error =>
                {
                    ChatStatus::Error
                }
                _ => ChatStatus::Success,
            },
            Some(other) => {
                return Err(ChatError::Status(
                    other.to_string().chars().take(40).collect(),
                ))
            }
        };
        let duration_seconds = match lookup(value, &f.duration_field) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                as_f64(v)
                    .filter(|x| *x >= 0.0)
                    .map(|x| f.duration_unit.to_seconds(x))
                    .ok_or(ChatError::Duration)?,
            ),
        };
        let usage = f.llm.read(value, status == ChatStatus::Error)?;
        Ok(ChatEvent {
            agent_id,
            status,
            duration_seconds,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Parser {
        Parser::new(ChatConfig::default())
    }

    #[test]
    fn chat_events() {
        let e = p()
            .parse(br#"{"level":"info","message":"reply sent","event":"chat_message","agent_id":"gpt-4o","status":"success","duration_ms":1830,"timestamp":"2026-11-26T11:00:00Z"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            e,
            ChatEvent {
                agent_id: "gpt-4o".into(),
                status: ChatStatus::Success,
                duration_seconds: Some(1.83),
                usage: Usage::default(),
            }
        );
        let e = p()
            .parse(br#"{"level":"error","event":"chat_message","agent_id":"claude"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(e.status, ChatStatus::Error);
        assert_eq!(e.duration_seconds, None);
    }

    #[test]
    fn other_lines_are_not_events() {
        assert_eq!(p().parse(br#"{"level":"info","message":"hello"}"#), None);
        assert_eq!(
            p().parse(br#"{"event":"login","note":"chat_message"}"#),
            None
        );
        assert_eq!(p().parse(b"chat_message in plain text"), None);
    }

    #[test]
    fn broken_events_are_errors() {
        assert_eq!(
            p().parse(br#"{"event":"chat_message","status":"success"}"#),
            Some(Err(ChatError::Missing("agent_id")))
        );
        assert_eq!(
            p().parse(br#"{"event":"chat_message","agent_id":"a","status":"maybe"}"#),
            Some(Err(ChatError::Status("maybe".into())))
        );
        assert_eq!(
            p().parse(br#"{"event":"chat_message","agent_id":"a","duration_ms":"slow"}"#),
            Some(Err(ChatError::Duration))
        );
    }
}
