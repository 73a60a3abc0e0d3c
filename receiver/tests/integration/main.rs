//! End-to-end tests of the real `llmchat-receiver` binary: one test
//! binary, shared helpers, real SMTP (a sink in the test), local HTTP
//! stand-ins for Slack and the webhook target, and a real Alertmanager.

mod claims;
mod delivery;
mod delivery_secrets;
mod email_format;
mod helpers;
mod hostile;
mod llm_fallback;
mod recovery;
mod recovery_caps;
mod recovery_instances;
mod recovery_limits;
mod redirects;
mod requests;
mod rollback;
mod slack_api;
mod store_faults;
mod store_migrations;
mod storm;
mod templates;
mod tls;
