//! LLM usage and cost from the backend's chat events, through the real
//! binary: a generated log of three providers (OpenAI-style usage with
//! cached tokens, Anthropic-style usage, a flat-field provider without a
//! price), streaming and not, errors of every kind with one provider
//! starting to rate-limit, and malformed lines; every count and the spend
//! checked against the generator's own totals, to the cent.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::helpers::{append, sample, Exporter};

/// A deterministic stream of numbers (no dependency, same every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const PRICES: &str = r#"
[chat.llm.prices.gpt-4o]
input = 2.5
output = 10.0
cached_input = 1.25
currency = "USD"
[chat.llm.prices."claude-3-5-sonnet"]
input = 3.0
output = 15.0
cached_input = 0.3
currency = "USD"
[chat.llm.budget]
currency = "USD"
daily = 250.0
monthly = 5000.0
"#;

#[derive(Default)]
struct Expected {
    tokens: BTreeMap<(String, String, &'static str), u64>,
    cost: BTreeMap<(String, String), f64>,
    errors: BTreeMap<(String, String, &'static str), u64>,
    calls: BTreeMap<(String, String), u64>,
    first_token_count: BTreeMap<(String, String), u64>,
    malformed: u64,
}

fn generate(n: usize) -> (String, Expected) {
    let mut rng = Lcg(42);
    let mut out = String::new();
    let mut x = Expected::default();
    for i in 0..n {
        let agent = ["support", "sales", "coder"][rng.next(3) as usize];
        let which = rng.next(3);
        let streaming = rng.next(2) == 0;
        let ttft = 80 + rng.next(2000);
        let input = 100 + rng.next(4000);
        let output = 10 + rng.next(800);
        // Anthropic starts answering 429 to a third of calls half-way.
        let rate_limited = which == 1 && i > n / 2 && rng.next(3) == 0;
        let failed = rate_limited || rng.next(50) == 0;
        let mut line = format!(
            r#"{{"level":"{}","message":"reply","event":"chat_message","agent_id":"{agent}","status":"{}","duration_ms":{}"#,
            if failed { "error" } else { "info" },
            if failed { "error" } else { "success" },
            ttft + 500
        );
        let (model, provider) = match which {
            0 => ("gpt-4o", "openai"),
            1 => ("claude-3-5-sonnet", "anthropic"),
            _ => ("my-dify-app", "dify"),
        };
        let _ = write!(line, r#","model":"{model}","provider":"{provider}""#);
        *x.calls.entry((agent.into(), provider.into())).or_default() += 1;
        if failed {
            let (err, kind) = if rate_limited {
                (
                    r#"{"status":429,"type":"rate_limit_error"}"#,
                    "rate_limited",
                )
            } else {
                match rng.next(4) {
                    0 => (r#"{"status":504}"#, "timeout"),
                    1 => (
                        r#"{"status":400,"code":"context_length_exceeded"}"#,
                        "context_length",
                    ),
                    2 => (r#"{"status":503}"#, "provider_5xx"),
                    _ => (r#"{"status":529,"type":"overloaded_error"}"#, "overloaded"),
                }
            };
            let _ = write!(line, r#","error":{err}"#);
            *x.errors
                .entry((agent.into(), provider.into(), kind))
                .or_default() += 1;
        } else {
            let cached = if which == 0 { rng.next(input) } else { 0 };
            match which {
                0 => {
                    let _ = write!(
                        line,
                        r#","usage":{{"prompt_tokens":{input},"completion_tokens":{output},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{cached}}}}}"#,
                        input + output
                    );
                }
                1 => {
                    let _ = write!(
                        line,
                        r#","usage":{{"input_tokens":{input},"output_tokens":{output}}}"#
                    );
                }
                _ => {
                    let _ = write!(line, r#","input_tokens":{input},"output_tokens":{output}"#);
                }
            }
            let key = |t| (agent.to_string(), model.to_string(), t);
            *x.tokens.entry(key("input")).or_default() += input;
            *x.tokens.entry(key("output")).or_default() += output;
            if which == 0 {
                *x.tokens.entry(key("cached_input")).or_default() += cached;
            }
            let cost = match which {
                0 => {
                    ((input - cached) as f64 * 2.5 + cached as f64 * 1.25 + output as f64 * 10.0)
                        / 1e6
                }
                1 => (input as f64 * 3.0 + output as f64 * 15.0) / 1e6,
                _ => 0.0,
            };
            if which != 2 {
                *x.cost.entry((agent.into(), model.into())).or_default() += cost;
            }
            if streaming {
                let _ = write!(line, r#","time_to_first_token_ms":{ttft}"#);
                *x.first_token_count
                    .entry((agent.into(), model.into()))
                    .or_default() += 1;
            }
        }
        line.push_str("}\n");
        out.push_str(&line);
        if i % 300 == 7 {
            // A malformed number: counted, skipped, nothing else recorded.
            out.push_str(r#"{"event":"chat_message","agent_id":"support","status":"success","model":"gpt-4o","usage":{"prompt_tokens":"lots","completion_tokens":5}}"#);
            out.push('\n');
            x.malformed += 1;
        }
    }
    (out, x)
}

/// The exporter tailing `log` for chat events, with `config`'s `[chat]`.
fn start(config: &std::path::Path, log: &std::path::Path) -> Exporter {
    Exporter::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--collector.logs",
        "--collector.chat",
        "--logs.poll-interval",
        "100ms",
        "--logs.app",
        log.to_str().unwrap(),
    ])
}

#[test]
fn tokens_spend_first_token_and_provider_errors_match_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, PRICES).unwrap();
    let e = start(&config, &log);
    let (lines, x) = generate(6000);
    append(&log, lines.as_bytes());
    let total_events = 6000.0;
    let text = e.scrape_when("every chat event", |t| {
        let n: f64 = t
            .lines()
            .filter(|l| l.starts_with("llmchat_chat_messages_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        n >= total_events
    });
    let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels).unwrap_or(0.0);
    for ((agent, model, kind), n) in &x.tokens {
        assert_eq!(
            s(
                "llmchat_chat_tokens_total",
                &[("agent_id", agent), ("model", model), ("type", kind)]
            ),
            *n as f64,
            "{agent} {model} {kind}"
        );
    }
    for ((agent, model), cost) in &x.cost {
        let got = s(
            "llmchat_chat_cost_total",
            &[("agent_id", agent), ("model", model), ("currency", "USD")],
        );
        assert!(
            (got - cost).abs() < 0.005,
            "{agent} {model}: {got} against {cost}"
        );
        assert!(*cost > 1.0, "a realistic spend: {cost}");
    }
    // The unpriced model's tokens are counted as unpriced, not as free.
    for ((agent, model, kind), n) in x.tokens.iter().filter(|((_, m, _), _)| m == "my-dify-app") {
        assert_eq!(
            s(
                "llmchat_chat_unpriced_tokens_total",
                &[("agent_id", agent), ("model", model), ("type", kind)]
            ),
            *n as f64
        );
        assert_eq!(
            sample(
                &text,
                "llmchat_chat_cost_total",
                &[("agent_id", agent), ("model", model), ("currency", "USD")]
            ),
            None
        );
    }
    for ((agent, provider, kind), n) in &x.errors {
        assert_eq!(
            s(
                "llmchat_chat_provider_errors_total",
                &[
                    ("agent_id", agent),
                    ("provider", provider),
                    ("error_type", kind)
                ]
            ),
            *n as f64,
            "{agent} {provider} {kind}"
        );
    }
    for ((agent, provider), n) in &x.calls {
        assert_eq!(
            s(
                "llmchat_chat_provider_calls_total",
                &[("agent_id", agent), ("provider", provider)]
            ),
            *n as f64
        );
    }
    let limited: f64 = x
        .errors
        .iter()
        .filter(|((_, p, k), _)| *p == "anthropic" && *k == "rate_limited")
        .map(|(_, n)| *n as f64)
        .sum();
    assert!(limited > 100.0, "{limited}");
    for ((agent, model), n) in &x.first_token_count {
        assert_eq!(
            s(
                "llmchat_chat_time_to_first_token_seconds_count",
                &[("agent_id", agent), ("model", model)]
            ),
            *n as f64
        );
    }
    assert_eq!(
        s(
            "llmchat_log_parse_errors_total",
            &[("file", log.to_str().unwrap())]
        ),
        x.malformed as f64
    );
    // The token histogram has the GenAI conventions' boundaries.
    assert!(text.contains(r#"le="6.7108864e+07""#), "{text}");
    // The budget, from the one place it is set, for the rules to read.
    for (period, amount) in [("day", 250.0), ("month", 5000.0)] {
        assert_eq!(
            sample(
                &text,
                "llmchat_chat_cost_budget",
                &[("period", period), ("currency", "USD")]
            ),
            Some(amount),
            "{period}"
        );
    }
    // Prometheus' own linter takes the new families as they are.
    let out = crate::helpers::run_with_stdin("promtool", &["check", "metrics"], text.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn models_past_the_limit_become_other_and_bad_price_tables_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, "[chat.llm]\nmax_models = 2\n").unwrap();
    let e = start(&config, &log);
    let mut lines = String::new();
    for i in 0..10 {
        let _ = writeln!(
            lines,
            r#"{{"event":"chat_message","agent_id":"a","status":"success","model":"model-{i}","input_tokens":10}}"#
        );
    }
    append(&log, lines.as_bytes());
    let text = e.scrape_when("the events", |t| t.contains(r#"model="other""#));
    let models: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("llmchat_chat_tokens_total{"))
        .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(models.len(), 3, "{models:?}");
    assert_eq!(
        sample(
            &text,
            "llmchat_chat_tokens_total",
            &[("agent_id", "a"), ("model", "other"), ("type", "input")]
        ),
        Some(80.0)
    );

    for (toml, key) in [
        (
            "[chat.llm.prices.m]\ninput = 1\noutput = 1\ncurrency = \"dollars\"\n",
            "chat.llm.prices",
        ),
        (
            "[[chat.llm.error_types]]\ntype = \"teapot\"\nstatuses = [418]\n",
            "chat.llm.error_types",
        ),
        (
            "[chat.llm.budget]\ncurrency = \"USD\"\ndaily = -5\n",
            "chat.llm.budget",
        ),
        (
            "[chat.llm.budget]\ncurrency = \"usd\"\nmonthly = 100\n",
            "chat.llm.budget",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let out = crate::helpers::run(
            &["--config.file", config.to_str().unwrap(), "--config.check"],
            &[],
        );
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{err}");
    }
}
