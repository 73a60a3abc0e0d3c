//! Delivery: takes due notifications from the outbox, sends each with a
//! timeout, and records the outcome. Failures retry with exponential
//! backoff and jitter (or the target's `Retry-After`); past
//! `delivery.max_age` a notification is dead-lettered. Messages to one
//! Slack webhook are spaced by `delivery.slack_interval`.
//!
//! A channel whose send failed for now is paused for that retry delay: in
//! an outage its target is tried once per delay, not once per queued
//! notification, which would flood both the target and the store.
//!
//! Each channel drains on a task of its own, in batches of [`BATCH`],
//! critical first: a backlog in one channel (Slack paced at a message a
//! second behind a storm of warnings) never delays another channel's
//! pages. Counting and purging run on their own timer, so the outbox
//! gauges stay true while a channel is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channels::ChannelKind;
use crate::channels::{SendError, Senders};
use crate::config::DeliveryConfig;
use crate::metrics::{ChannelLabels, Metrics, NotificationLabels};
use crate::payload::Delivery;
use crate::store::{now_ms, Notification, Store};

/// What the worker remembers of one channel between passes.
#[derive(Debug, Default)]
struct ChannelState {
    /// After a failure, no send before this.
    paused_until: Option<Instant>,
    /// The last send, for Slack's spacing.
    last_sent: Option<Instant>,
}

/// How long a sent message can still be updated or replied to.
const THREAD_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Worker {
    pub store: Arc<Store>,
    pub senders: Arc<Senders>,
    pub metrics: Arc<Metrics>,
    pub config: DeliveryConfig,
    pub wake: Arc<tokio::sync::Notify>,
}

/// The delay before attempt `attempts + 1`: doubling from `initial`,
/// capped at `max`, with up to ±20% jitter so retries do not stampede.
pub fn backoff(attempts: i64, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(2u32.saturating_pow((attempts.clamp(1, 30) - 1) as u32));
    let base = exp.min(max);
    let jitter = 0.8 + fastrand::f64() * 0.4;
    base.mul_f64(jitter).min(max)
}

/// Most notifications one channel takes from the store at once; after a
/// full batch it looks again, so a new critical alert waits for at most
/// one batch of its own channel (a paced channel takes a second's worth).
pub const BATCH: i64 = 64;

impl Worker {
    /// Runs every channel's task and the housekeeping until `shutdown`.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let worker = Arc::new(self);
        let mut wakers = Vec::new();
        let mut tasks = Vec::new();
        for channel in worker.senders.configured() {
            let wake = Arc::new(tokio::sync::Notify::new());
            wakers.push(wake.clone());
            tasks.push(tokio::spawn(worker.clone().channel(
                channel,
                wake,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(worker.clone().housekeeping(shutdown.clone())));
        // A stored post wakes every channel (each keeps one permit).
        let mut stop = shutdown;
        loop {
            tokio::select! {
                _ = worker.wake.notified() => wakers.iter().for_each(|w| w.notify_one()),
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        futures_util::future::join_all(tasks).await;
    }

    /// One channel's delivery loop.
    async fn channel(
        self: Arc<Self>,
        channel: ChannelKind,
        wake: Arc<tokio::sync::Notify>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut state = ChannelState::default();
        // Logged when it starts failing and when it works again, not per
        // pass: a store outage would log ten lines a second.
        let mut failing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let more = match self.batch(channel, &mut state).await {
                Err(e) => {
                    if !failing {
                        tracing::warn!(channel = channel.as_str(), error = %e, "outbox delivery paused: the store failed");
                        failing = true;
                    }
                    false
                }
                Ok(more) => {
                    if failing {
                        tracing::info!(channel = channel.as_str(), "outbox delivery resumed");
                        failing = false;
                    }
                    more
                }
            };
            if more {
                continue;
            }
            let nap = match state.paused_until {
                Some(until) => until
                    .saturating_duration_since(Instant::now())
                    .min(self.config.poll_interval)
                    .max(Duration::from_millis(10)),
                None => self.config.poll_interval,
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sends one batch of what is due; `true` when there may be more.
    async fn batch(
        &self,
        channel: ChannelKind,
        state: &mut ChannelState,
    ) -> Result<bool, crate::store::StoreError> {
        if state
            .paused_until
            .is_some_and(|until| until > Instant::now())
        {
            return Ok(false);
        }
        // A paced channel (Slack: a message a second) takes what it can
        // send in about a second, so a new critical alert waits behind one
        // message, not behind 64 seconds of warnings.
        let pace = self
            .senders
            .get(channel)
            .map_or(Duration::ZERO, |c| c.pace());
        let batch = if pace.is_zero() {
            BATCH
        } else {
            (Duration::from_secs(1).as_nanos() / pace.as_nanos()).clamp(1, BATCH as u128) as i64
        };
        let due = self.store.due(now_ms(), batch, channel.as_str()).await?;
        let full = due.len() as i64 == batch;
        for n in due {
            if let Some(delay) = self.deliver(n, state).await? {
                state.paused_until = Some(Instant::now() + delay);
                return Ok(false);
            }
        }
        Ok(full)
    }

    /// The outbox gauges once a second, the purges once a minute, on their
    /// own task: true while every channel is busy.
    async fn housekeeping(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_purge = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.count().await {
                tracing::debug!(error = %e, "outbox count failed");
            }
            if last_purge.elapsed() > Duration::from_secs(60) {
                let cutoff = now_ms() - self.config.dedup_window.as_millis() as i64;
                if let Err(e) = self.store.purge(cutoff).await {
                    tracing::debug!(error = %e, "outbox purge failed");
                }
                // Where messages went is kept for as long as an alert may
                // fire before its resolve (or a recovery outcome) arrives.
                let threads_cutoff = now_ms() - THREAD_RETENTION.as_millis() as i64;
                if let Err(e) = self.store.purge_threads(threads_cutoff).await {
                    tracing::debug!(error = %e, "message thread purge failed");
                }
                last_purge = Instant::now();
            }
        }
    }

    async fn count(&self) -> Result<(), crate::store::StoreError> {
        let pending = self.store.pending_by_channel().await?;
        let now = now_ms();
        for channel in self.senders.configured() {
            let labels = ChannelLabels {
                channel: channel.as_str(),
            };
            let (n, oldest) = pending
                .iter()
                .find(|(c, _, _)| c == channel.as_str())
                .map_or((0, now), |(_, n, oldest)| (*n, *oldest));
            self.metrics.outbox_pending.get_or_create(&labels).set(n);
            self.metrics
                .outbox_oldest_pending
                .get_or_create(&labels)
                .set((now - oldest).max(0) as f64 / 1000.0);
        }
        self.metrics
            .outbox_dead
            .set(self.store.count("dead").await?);
        Ok(())
    }

    /// Sends one notification; on a failure to retry, returns how long to
    /// pause its channel.
    async fn deliver(
        &self,
        n: Notification,
        state: &mut ChannelState,
    ) -> Result<Option<Duration>, crate::store::StoreError> {
        let Some(channel) = ChannelKind::parse(&n.channel) else {
            return self
                .store
                .mark_dead(n.id, n.attempts, "unknown channel")
                .await
                .map(|_| None);
        };
        // A channel's pace (Slack: about one message a second per webhook).
        let pace = self
            .senders
            .get(channel)
            .map_or(Duration::ZERO, |c| c.pace());
        if !pace.is_zero() {
            if let Some(last) = state.last_sent {
                let wait = pace.saturating_sub(last.elapsed());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let lease = now_ms() + (self.config.timeout.as_millis() as i64) * 3;
        if !self.store.claim(&n, lease).await? {
            return Ok(None); // another worker or replica has it
        }
        let delivery = match Delivery::parse(&n.payload) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .store
                    .mark_dead(n.id, n.attempts, &format!("unreadable payload: {e}"))
                    .await
                    .map(|_| None)
            }
        };
        let started = Instant::now();
        let notice = delivery.first();
        let result = self.senders.send(channel, &delivery, &self.store).await;
        self.metrics
            .send_duration
            .get_or_create(&ChannelLabels {
                channel: channel.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        state.last_sent = Some(Instant::now());
        let attempts = n.attempts + 1;
        let count = |result: &'static str| {
            self.metrics
                .notifications
                .get_or_create(&NotificationLabels {
                    channel: channel.as_str(),
                    result,
                })
                .inc();
        };
        match result {
            Ok(()) => {
                count("sent");
                tracing::info!(id = n.id, channel = channel.as_str(), alert = %notice.alertname, attempts, "notification sent");
                self.store.mark_sent(n.id, attempts).await.map(|_| None)
            }
            Err(e) => {
                let reason = e.to_string();
                let too_old = now_ms() - n.created_ms > self.config.max_age.as_millis() as i64;
                if matches!(e, SendError::Permanent(_) | SendError::NotConfigured(_)) || too_old {
                    count("dead");
                    tracing::error!(id = n.id, channel = channel.as_str(), alert = %notice.alertname, error = %reason, attempts, "notification dead-lettered");
                    self.store
                        .mark_dead(n.id, attempts, &reason)
                        .await
                        .map(|_| None)
                } else {
                    count("failed");
                    let delay = match e {
                        SendError::Retry {
                            after: Some(after), ..
                        } => after.min(self.config.max_backoff),
                        _ => backoff(
                            attempts,
                            self.config.initial_backoff,
                            self.config.max_backoff,
                        ),
                    };
                    tracing::warn!(id = n.id, channel = channel.as_str(), alert = %notice.alertname, error = %reason, attempts, retry_in = ?delay, "notification failed; will retry");
                    self.store
                        .mark_retry(n.id, attempts, now_ms() + delay.as_millis() as i64, &reason)
                        .await?;
                    Ok(Some(delay))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let s = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let b1 = backoff(1, s, max).as_secs_f64();
            let b3 = backoff(3, s, max).as_secs_f64();
            assert!((0.8..=1.2).contains(&b1), "{b1}");
            assert!((3.2..=4.8).contains(&b3), "{b3}");
            assert!(backoff(30, s, max) <= max);
        }
    }
}
