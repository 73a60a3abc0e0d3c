//! `[delivery]`: how the outbox is sent: timeouts, retries and their
//! backoff, dead-lettering, Slack's pace and its per-minute budget.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one send.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// A notification still failing this long after it arrived is dead.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Minimum spacing of messages to one Slack webhook URL.
    #[serde(with = "duration")]
    pub slack_interval: Duration,
    /// How long deduplication keys are kept.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    /// How often the outbox is polled when nothing wakes the worker.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Messages per minute each paced per-alert channel (Slack) takes from
    /// posts; beyond it a post's other alerts go as one digest message
    /// ("and 940 more", with Alertmanager's link). Critical alerts always
    /// go one by one; a webhook gets every alert.
    pub max_messages_per_minute: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            slack_interval: Duration::from_secs(1),
            max_messages_per_minute: 60,
            dedup_window: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}
