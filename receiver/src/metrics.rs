//! The receiver's own metrics, for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub status: &'static str,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub channel: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// A configured action's name: bounded by the configuration.
    pub action: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionNameLabels {
    pub action: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub alerts: Family<AlertLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub send_duration: Family<ChannelLabels, Histogram>,
    pub webhook_requests: Family<RequestLabels, Counter>,
    /// Pending notifications per channel, and the age of the oldest.
    pub outbox_pending: Family<ChannelLabels, Gauge>,
    pub outbox_oldest_pending: Family<ChannelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub outbox_dead: Gauge,
    pub duplicates: Counter,
    /// Alerts beyond `web.max_alerts_per_post`, counted and not routed.
    pub alerts_folded: Counter,
    /// Per-alert messages folded into a digest by the per-minute budget.
    pub notifications_folded: Counter,
    /// Bytes of posts waiting for the store's commit
    /// (`web.commit_queue_bytes` is its bound).
    pub commit_queue_bytes: Gauge,
    pub recovery_actions: Family<ActionLabels, Counter>,
    pub recovery_duration: Family<ActionNameLabels, Histogram>,
    /// Templates that failed to render, by channel (the built-in one was
    /// sent instead).
    pub template_errors: Family<ChannelLabels, Counter>,
    /// Owned by the store, which sets them; registered here.
    pub store: crate::store::StoreMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("llmchat_receiver");
        let alerts = Family::<AlertLabels, Counter>::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        let send_duration = Family::<ChannelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let webhook_requests = Family::<RequestLabels, Counter>::default();
        let outbox_pending = Family::<ChannelLabels, Gauge>::default();
        let outbox_oldest_pending =
            Family::<ChannelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let outbox_dead = Gauge::default();
        let duplicates = Counter::default();
        let alerts_folded = Counter::default();
        let notifications_folded = Counter::default();
        let commit_queue_bytes = Gauge::default();
        registry.register_with_unit(
            "commit_queue",
            "Bytes of posts (their bodies) waiting for the store's commit; at web.commit_queue_bytes posts wait, then get 503",
            Unit::Bytes,
            commit_queue_bytes.clone(),
        );
        registry.register(
            "notifications_folded",
            "Per-alert messages folded into one digest message by delivery.max_messages_per_minute",
            notifications_folded.clone(),
        );
        registry.register(
            "alerts_folded",
            "Alerts of posts over web.max_alerts_per_post: counted in the group's left-out alerts, not routed or acted on",
            alerts_folded.clone(),
        );
        let template_errors = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "template_errors",
            "Templates that failed to render, by channel; the built-in template was used instead",
            template_errors.clone(),
        );
        registry.register(
            "alerts_received",
            "Alerts received from Alertmanager, by status and severity",
            alerts.clone(),
        );
        registry.register(
            "notifications",
            "Notification send attempts by channel and result (sent, failed, dead)",
            notifications.clone(),
        );
        registry.register_with_unit(
            "send_duration",
            "Time of one send attempt, by channel",
            Unit::Seconds,
            send_duration.clone(),
        );
        registry.register(
            "webhook_requests",
            "POST /webhook requests by HTTP status answered",
            webhook_requests.clone(),
        );
        registry.register(
            "outbox_pending",
            "Notifications waiting in the outbox, by channel",
            outbox_pending.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_pending_age",
            "Age of the oldest notification waiting in the outbox, by channel (0 when none waits)",
            Unit::Seconds,
            outbox_oldest_pending.clone(),
        );
        registry.register(
            "outbox_dead",
            "Notifications dead-lettered after delivery.max_age",
            outbox_dead.clone(),
        );
        registry.register(
            "duplicate_notifications",
            "Notifications dropped as duplicates (Alertmanager retries, HA pairs)",
            duplicates.clone(),
        );
        let recovery_actions = Family::<ActionLabels, Counter>::default();
        let recovery_duration = Family::<ActionNameLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0])
        });
        registry.register(
            "recovery_actions",
            "Recovery action decisions by action and result (succeeded, failed, timed_out, cancelled, dry_run, abandoned, skipped_*)",
            recovery_actions.clone(),
        );
        registry.register_with_unit(
            "recovery_action_duration",
            "Time of one recovery action run, by action",
            Unit::Seconds,
            recovery_duration.clone(),
        );
        let store = crate::store::StoreMetrics::default();
        registry.register(
            "store_writable",
            "Whether the store took the latest write of the accept path (1) or not (0): webhooks get 503 while 0",
            store.writable.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store statements by kind (full, locked, io, connection, readonly, other)",
            store.errors.clone(),
        );
        Metrics {
            registry,
            store,
            recovery_actions,
            recovery_duration,
            template_errors,
            alerts,
            notifications,
            send_duration,
            webhook_requests,
            outbox_pending,
            outbox_oldest_pending,
            outbox_dead,
            duplicates,
            alerts_folded,
            notifications_folded,
            commit_queue_bytes,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
