//! What a chat event says about the LLM call behind it: model, provider,
//! tokens (OpenAI's `usage.prompt_tokens` / `completion_tokens` /
//! `prompt_tokens_details.cached_tokens`, Anthropic's `usage.input_tokens`
//! / `output_tokens` / `cache_read_input_tokens`, or flat fields, each a
//! configurable list of paths, the first present wins), the time to the
//! first token, and the provider's error as one of a bounded set of
//! types. Prices turn tokens into spend.

use llmchat_common::{invalid, ConfigError};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::logs::access_format::{as_f64, lookup, DurationUnit};

/// The bounded `error_type` values (OpenTelemetry's `error.type`, as
/// LiteLLM's exception classes name them).
pub const ERROR_TYPES: [&str; 8] = [
    "rate_limited",
    "timeout",
    "overloaded",
    "context_length",
    "content_filter",
    "auth",
    "provider_5xx",
    "other",
];

/// One line of the error table: the provider statuses and codes that make
/// an error of this type. The first line that matches wins; an error that
/// matches none is `provider_5xx` for a 5xx status, else `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default)]
    pub statuses: Vec<u16>,
    /// Matched against the error code, case-insensitively, as substrings
    /// (`rate_limit` matches `rate_limit_exceeded`).
    #[serde(default)]
    pub codes: Vec<String>,
}

fn rule(error_type: &str, statuses: &[u16], codes: &[&str]) -> ErrorRule {
    ErrorRule {
        error_type: error_type.into(),
        statuses: statuses.to_vec(),
        codes: codes.iter().map(|c| c.to_string()).collect(),
    }
}

/// The default table: OpenAI's and Anthropic's documented statuses and
/// error codes, and Node's network error codes for timeouts.
pub fn default_error_rules() -> Vec<ErrorRule> {
    vec![
        rule(
            "rate_limited",
            &[429],
            &["rate_limit", "too_many_requests", "quota"],
        ),
        rule(
            "timeout",
            &[408, 504],
            &[
                "timeout",
                "timed_out",
                "etimedout",
                "econnaborted",
                "deadline",
            ],
        ),
        rule(
            "overloaded",
            &[529],
            &["overloaded", "server_busy", "capacity"],
        ),
        rule(
            "context_length",
            &[],
            &["context_length", "context_window", "max_tokens", "too_long"],
        ),
        rule(
            "content_filter",
            &[],
            &["content_filter", "content_policy", "safety", "moderation"],
        ),
        rule(
            "auth",
            &[401, 403],
            &[
                "invalid_api_key",
                "authentication",
                "permission",
                "unauthorized",
            ],
        ),
    ]
}

/// Price of a model's tokens, per million.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens; the input price when not given.
    pub cached_input: Option<f64>,
    /// ISO 4217 code, e.g. USD or CNY.
    pub currency: String,
}

/// `[chat.llm.budget]`: what the month's and the day's LLM spend may be,
/// in one currency. Published as `llmchat_chat_cost_budget{period}` so the
/// budget rules and the dashboard read it from the one place it is set;
/// days and months are UTC's, as OpenAI's and Anthropic's usage pages are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// ISO 4217 code; spend in other currencies is not judged against it.
    pub currency: String,
    pub daily: Option<f64>,
    pub monthly: Option<f64>,
}

/// `[chat]`'s LLM fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    pub model_field: String,
    pub provider_field: String,
    /// Paths tried in order; the first present is the count.
    pub input_tokens_fields: Vec<String>,
    pub output_tokens_fields: Vec<String>,
    pub cached_input_tokens_fields: Vec<String>,
    pub time_to_first_token_field: String,
    pub time_to_first_token_unit: DurationUnit,
    /// The provider's HTTP status and error code of a failed call.
    pub error_status_fields: Vec<String>,
    pub error_code_fields: Vec<String>,
    pub error_types: Vec<ErrorRule>,
    /// Distinct models and providers kept; the rest become `other`.
    pub max_models: usize,
    pub max_providers: usize,
    /// Model name → price. A model without one is counted in
    /// `llmchat_chat_unpriced_tokens_total`, never as free.
    pub prices: BTreeMap<String, Price>,
    pub budget: Option<Budget>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        let v = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            model_field: "model".into(),
            provider_field: "provider".into(),
            input_tokens_fields: v(&["usage.prompt_tokens", "usage.input_tokens", "input_tokens"]),
            output_tokens_fields: v(&[
                "usage.completion_tokens",
                "usage.output_tokens",
                "output_tokens",
            ]),
            cached_input_tokens_fields: v(&[
                "usage.prompt_tokens_details.cached_tokens",
                "usage.cache_read_input_tokens",
                "cached_input_tokens",
            ]),
            time_to_first_token_field: "time_to_first_token_ms".into(),
            time_to_first_token_unit: DurationUnit::Ms,
            error_status_fields: v(&["error.status", "error_status"]),
            error_code_fields: v(&["error.code", "error.type", "error_code"]),
            error_types: default_error_rules(),
            max_models: 50,
            max_providers: 20,
            prices: BTreeMap::new(),
            budget: None,
        }
    }
}

impl UsageConfig {
    /// A reason the table is wrong, naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| invalid(key, "(table)", reason);
        for r in &self.error_types {
            if !ERROR_TYPES.contains(&r.error_type.as_str()) {
                return Err(bad(
                    "chat.llm.error_types",
                    format!(
                        "{:?} is not one of {}",
                        r.error_type,
                        ERROR_TYPES.join(", ")
                    ),
                ));
            }
        }
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        for (model, p) in &self.prices {
            if !ok(p.input) || !ok(p.output) || !p.cached_input.is_none_or(ok) {
                return Err(bad(
                    "chat.llm.prices",
                    format!("{model}: prices must be numbers >= 0"),
                ));
            }
            if !is_currency(&p.currency) {
                return Err(bad(
                    "chat.llm.prices",
                    format!(
                        "{model}: currency {:?} is not an ISO 4217 code such as USD",
                        p.currency
                    ),
                ));
            }
        }
        if let Some(b) = &self.budget {
            if !is_currency(&b.currency) {
                return Err(bad(
                    "chat.llm.budget",
                    format!(
                        "currency {:?} is not an ISO 4217 code such as USD",
                        b.currency
                    ),
                ));
            }
            let positive = |x: &Option<f64>| x.is_none_or(|x| ok(x) && x > 0.0);
            if !positive(&b.daily) || !positive(&b.monthly) {
                return Err(bad(
                    "chat.llm.budget",
                    "daily and monthly must be numbers > 0".into(),
                ));
            }
        }
        if self.max_models == 0 || self.max_providers == 0 {
            return Err(bad(
                "chat.llm.max_models",
                "max_models and max_providers must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn is_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// What one event carries about its LLM call; every part optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    pub time_to_first_token_seconds: Option<f64>,
    /// For a failed call: one of [`ERROR_TYPES`].
    pub error_type: Option<&'static str>,
}

/// A field that is there but holds no valid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chat event with an invalid {0}")]
pub struct Malformed(pub &'static str);

fn first<'v>(value: &'v serde_json::Value, paths: &[String]) -> Option<&'v serde_json::Value> {
    paths
        .iter()
        .filter_map(|p| lookup(value, p))
        .find(|v| !v.is_null())
}

/// A token count: a whole number >= 0 (a string holding one too).
fn tokens(
    value: &serde_json::Value,
    paths: &[String],
    name: &'static str,
) -> Result<Option<u64>, Malformed> {
    match first(value, paths) {
        None => Ok(None),
        Some(v) => as_f64(v)
            .filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x < 1e15)
            .map(|x| Some(x as u64))
            .ok_or(Malformed(name)),
    }
}

fn text(value: &serde_json::Value, path: &str) -> Option<String> {
    match lookup(value, path)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl UsageConfig {
    /// The usage of one event; `failed` says whether the event is an
    /// error (its error type is then classified).
    pub fn read(&self, value: &serde_json::Value, failed: bool) -> Result<Usage, Malformed> {
        let ttft = match first(value, std::slice::from_ref(&self.time_to_first_token_field)) {
            None => None,
            Some(v) => Some(
                as_f64(v)
                    .filter(|x| *x >= 0.0)
                    .map(|x| self.time_to_first_token_unit.to_seconds(x))
                    .ok_or(Malformed("time to first token"))?,
            ),
        };
        Ok(Usage {
            model: text(value, &self.model_field),
            provider: text(value, &self.provider_field),
            input_tokens: tokens(value, &self.input_tokens_fields, "input token count")?,
            output_tokens: tokens(value, &self.output_tokens_fields, "output token count")?,
            cached_input_tokens: tokens(
                value,
                &self.cached_input_tokens_fields,
                "cached input token count",
            )?,
            time_to_first_token_seconds: ttft,
            error_type: failed.then(|| self.error_type(value)),
        })
    }

    /// The error's type from its status and code, by the table.
    pub fn error_type(&self, value: &serde_json::Value) -> &'static str {
        let status = first(value, &self.error_status_fields)
            .and_then(as_f64)
            .filter(|s| (100.0..600.0).contains(s))
            .map(|s| s as u16);
        let code = first(value, &self.error_code_fields).map(|v| match v {
            serde_json::Value::String(s) => s.to_ascii_lowercase(),
            other => other.to_string(),
        });
        for r in &self.error_types {
            let by_status = status.is_some_and(|s| r.statuses.contains(&s));
            let by_code = code.as_deref().is_some_and(|c| {
                r.codes
                    .iter()
                    .any(|p| !p.is_empty() && c.contains(&p.to_ascii_lowercase()))
            });
            if by_status || by_code {
                return ERROR_TYPES
                    .iter()
                    .copied()
                    .find(|t| *t == r.error_type)
                    .unwrap_or("other");
            }
        }
        match status {
            Some(s) if s >= 500 => "provider_5xx",
            _ => "other",
        }
    }

    /// The spend of one call, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<(f64, &str)> {
        let p = self.prices.get(model)?;
        let cached = usage.cached_input_tokens.unwrap_or(0);
        // OpenAI counts cached tokens inside prompt_tokens; Anthropic's
        // input_tokens leaves cache reads out. Either way the uncached
        // input is what is left after the cached part, never below 0.
        let input = usage.input_tokens.unwrap_or(0).saturating_sub(cached);
        let output = usage.output_tokens.unwrap_or(0);
        let cost = (input as f64 * p.input
            + cached as f64 * p.cached_input.unwrap_or(p.input)
            + output as f64 * p.output)
            / 1e6;
        Some((cost, p.currency.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_usage_shapes_and_flat_fields() {
        let c = UsageConfig::default();
        let openai = json!({"model": "gpt-4o", "provider": "openai", "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1000}}, "time_to_first_token_ms": 420});
        let u = c.read(&openai, false).unwrap();
        assert_eq!(u.model.as_deref(), Some("gpt-4o"));
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (Some(1200), Some(300), Some(1000))
        );
        assert_eq!(u.time_to_first_token_seconds, Some(0.42));
        let anthropic = json!({"usage": {"input_tokens": 50, "output_tokens": 7, "cache_read_input_tokens": 0}});
        let u = c.read(&anthropic, false).unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_input_tokens),
            (Some(50), Some(7), Some(0))
        );
        let flat = json!({"input_tokens": "12", "output_tokens": 3});
        let u = c.read(&flat, false).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (Some(12), Some(3)));
        assert_eq!(c.read(&json!({}), false).unwrap(), Usage::default());
    }

    #[test]
    fn malformed_numbers_are_errors() {
        let c = UsageConfig::default();
        for bad in [
            json!({"usage": {"prompt_tokens": -1}}),
            json!({"usage": {"prompt_tokens": 1.5}}),
            json!({"usage": {"completion_tokens": "many"}}),
            json!({"time_to_first_token_ms": "soon"}),
            json!({"input_tokens": 1e300}),
        ] {
            assert!(c.read(&bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_types_by_status_and_code() {
        let c = UsageConfig::default();
        let t = |v: serde_json::Value| c.error_type(&v);
        assert_eq!(t(json!({"error": {"status": 429}})), "rate_limited");
        assert_eq!(
            t(json!({"error": {"code": "rate_limit_exceeded"}})),
            "rate_limited"
        );
        assert_eq!(
            t(json!({"error": {"type": "overloaded_error", "status": 529}})),
            "overloaded"
        );
        assert_eq!(t(json!({"error": {"code": "ETIMEDOUT"}})), "timeout");
        assert_eq!(
            t(json!({"error": {"code": "context_length_exceeded", "status": 400}})),
            "context_length"
        );
        assert_eq!(
            t(json!({"error": {"code": "content_policy_violation"}})),
            "content_filter"
        );
        assert_eq!(t(json!({"error": {"status": 401}})), "auth");
        assert_eq!(t(json!({"error": {"status": 502}})), "provider_5xx");
        assert_eq!(t(json!({"error": {"status": 400, "code": "bad"}})), "other");
        assert_eq!(t(json!({})), "other");
    }

    #[test]
    fn cost_counts_cached_input_at_its_price() {
        let mut c = UsageConfig::default();
        c.prices.insert(
            "gpt-4o".into(),
            Price {
                input: 2.5,
                output: 10.0,
                cached_input: Some(1.25),
                currency: "USD".into(),
            },
        );
        let u = Usage {
            input_tokens: Some(1_200),
            output_tokens: Some(300),
            cached_input_tokens: Some(1_000),
            ..Usage::default()
        };
        let (cost, currency) = c.cost("gpt-4o", &u).unwrap();
        assert_eq!(currency, "USD");
        assert!((cost - (200.0 * 2.5 + 1000.0 * 1.25 + 300.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(c.cost("unknown-model", &u), None);
    }

    #[test]
    fn bad_tables_are_refused_naming_the_key() {
        let mut c = UsageConfig::default();
        c.error_types.push(rule("teapot", &[418], &[]));
        assert_eq!(c.check().unwrap_err().key(), Some("chat.llm.error_types"));
        let mut c = UsageConfig::default();
        c.prices.insert(
            "m".into(),
            Price {
                input: 1.0,
                output: -1.0,
                cached_input: None,
                currency: "USD".into(),
            },
        );
        assert_eq!(c.check().unwrap_err().key(), Some("chat.llm.prices"));
        let mut c = UsageConfig::default();
        c.prices.insert(
            "m".into(),
            Price {
                input: 1.0,
                output: 1.0,
                cached_input: None,
                currency: "dollars".into(),
            },
        );
        assert_eq!(c.check().unwrap_err().key(), Some("chat.llm.prices"));
    }
}
