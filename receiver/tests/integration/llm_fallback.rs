//! The fallback-provider recipe of docs/llm.md, as the document gives it:
//! `LLMChatProviderDegraded` for one provider calls the backend's admin
//! endpoint through the `http` action, to the configured URL with the
//! configured body only. A dry run first (as documented), then for real:
//! labels an outsider slipped into the alert (`url`, a hostile
//! `instance`) reach neither the URL nor the body; another provider's
//! alert triggers nothing; a repeat within the hour is skipped.

use std::time::Duration;

use crate::helpers::*;
use crate::recovery::{alert, audit, finished};

/// The recipe's TOML block, with the backend's address made the stand-in's.
fn recipe(backend: &Target) -> String {
    let doc = std::fs::read_to_string(llmchat_tests::repo_root().join("docs/llm.md")).unwrap();
    let (_, after) = doc
        .split_once("<!-- recipe: llm-fallback")
        .expect("docs/llm.md lost its recipe marker");
    let block = after
        .split_once("```toml\n")
        .and_then(|(_, b)| b.split_once("```"))
        .expect("the recipe's TOML block")
        .0;
    assert!(block.contains("http://127.0.0.1:3000"), "{block}");
    block.replace("http://127.0.0.1:3000", &backend.url(""))
}

fn degraded(fingerprint: &str, provider: &str) -> String {
    alert(
        "firing",
        fingerprint,
        &[
            ("alertname", "LLMChatProviderDegraded"),
            ("severity", "warning"),
            ("job", "llmchat-exporter"),
            ("provider", provider),
            ("error_type", "rate_limited"),
            // Not labels the rules make: what a hostile sender might add.
            ("url", "http://evil.invalid/steal"),
            ("instance", "evil.invalid:80"),
        ],
    )
}

fn receiver_with(dir: &std::path::Path, recovery: &str) -> Receiver {
    let store = format!("sqlite://{}", dir.join("outbox.db").display());
    let path = config(dir, &store, None, None, None);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(recovery);
    std::fs::write(&path, text).unwrap();
    Receiver::start(&path)
}

#[test]
fn a_degraded_provider_switches_to_its_fallback_through_the_configured_endpoint_only() {
    let backend = Target::start(vec![]);
    let recipe = recipe(&backend);

    // As documented: a dry run, audited, nothing sent.
    let dir = tempfile::tempdir().unwrap();
    let r = receiver_with(dir.path(), &recipe);
    assert_eq!(
        r.post(&degraded("fp-1", "openai"), Some(TOKEN)).status(),
        200
    );
    let runs = finished(&r, "openai_fallback", 1);
    assert_eq!(runs[0]["result"], "dry_run", "{runs:?}");
    assert!(backend.requests().is_empty());
    drop(r);

    // Trusted: the switch is made once, as configured.
    let dir = tempfile::tempdir().unwrap();
    let live = recipe.replace("dry_run = true", "dry_run = false");
    assert_ne!(live, recipe);
    let r = receiver_with(dir.path(), &live);
    assert_eq!(
        r.post(&degraded("fp-1", "openai"), Some(TOKEN)).status(),
        200
    );
    let runs = finished(&r, "openai_fallback", 1);
    assert_eq!(runs[0]["result"], "succeeded", "{runs:?}");
    let got = backend.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/admin/providers/openai/fallback");
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer <the backend's admin token>")
    );
    assert_eq!(
        got[0].json(),
        serde_json::json!({"reason": "provider_degraded", "enable": true})
    );
    let audit_text = serde_json::to_string(&audit(&r, "openai_fallback")).unwrap();
    assert!(!audit_text.contains("admin token"), "{audit_text}");

    // Anthropic's alert triggers nothing; OpenAI's repeat within the hour
    // is skipped; the backend hears nothing more.
    assert_eq!(
        r.post(&degraded("fp-2", "anthropic"), Some(TOKEN)).status(),
        200
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        r.post(&degraded("fp-3", "openai"), Some(TOKEN)).status(),
        200
    );
    let runs = finished(&r, "openai_fallback", 2);
    assert_eq!(runs.len(), 2, "{runs:?}");
    // max_runs_per_hour = 1 is checked before the cooldown.
    assert_eq!(runs[1]["result"], "skipped_rate_limit", "{runs:?}");
    assert_eq!(backend.requests().len(), 1);
}
