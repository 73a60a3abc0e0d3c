//! What this receiver is doing about each scope (see
//! `Recovery::scope`): nothing, deciding (waiting for the store or the
//! shared run lock), or running. A decision that finds another one still
//! deciding waits for its outcome instead of calling it a run: only a
//! run under way makes `skipped_running`, and a decision that cannot
//! reach the shared lock is `skipped_unavailable` however the decisions
//! of one post interleave.

use llmchat_common::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

enum State {
    /// A decision is under way; waiters are woken when it ends or runs.
    Deciding(Arc<Notify>),
    /// The action runs here (or its dry run is being recorded).
    Running(Arc<Notify>),
}

/// The scopes of one action.
#[derive(Default)]
pub(super) struct Scopes(Mutex<HashMap<String, State>>);

/// What taking a scope found.
pub(super) enum Take<'a> {
    /// Ours until the guard drops.
    Taken(BusyGuard<'a>),
    /// A run of the scope is under way here.
    Running,
    /// Another decision for it was still waiting for the store after
    /// the wait this one allowed.
    StillDeciding,
}

impl Scopes {
    /// Whether any scope runs.
    pub(super) fn any_running(&self) -> bool {
        self.lock().values().any(|s| matches!(s, State::Running(_)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        lock(&self.0)
    }

    /// Takes `scope` for a decision, waiting up to `wait` for another
    /// decision of it to end.
    pub(super) async fn take(&self, scope: &str, wait: Duration) -> Take<'_> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notify = match self.try_take(scope) {
                Ok(guard) => return Take::Taken(guard),
                Err(State::Running(_)) => return Take::Running,
                Err(State::Deciding(n)) => n,
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before looking again, so that an end between the
            // look and the wait is not missed.
            notified.as_mut().enable();
            match self.try_take(scope) {
                Ok(guard) => return Take::Taken(guard),
                Err(State::Running(_)) => return Take::Running,
                Err(State::Deciding(n)) if !Arc::ptr_eq(&n, &notify) => continue,
                Err(State::Deciding(_)) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Take::StillDeciding;
            }
        }
    }

    /// The scope if free; otherwise its state (with its notifier).
    fn try_take(&self, scope: &str) -> Result<BusyGuard<'_>, State> {
        let mut map = self.lock();
        match map.get(scope) {
            None => {
                let notify = Arc::new(Notify::new());
                map.insert(scope.to_string(), State::Deciding(notify.clone()));
                Ok(BusyGuard {
                    scopes: self,
                    scope: scope.to_string(),
                    notify,
                })
            }
            Some(State::Running(n)) => Err(State::Running(n.clone())),
            Some(State::Deciding(n)) => Err(State::Deciding(n.clone())),
        }
    }
}

/// A scope taken for a decision; freed however the decision ends.
pub(super) struct BusyGuard<'a> {
    scopes: &'a Scopes,
    scope: String,
    notify: Arc<Notify>,
}

impl BusyGuard<'_> {
    /// The scope taken.
    pub(super) fn scope(&self) -> &str {
        &self.scope
    }

    /// The decision is to run: decisions waiting for it skip as running.
    pub(super) fn running(&self) {
        self.scopes
            .lock()
            .insert(self.scope.clone(), State::Running(self.notify.clone()));
        self.notify.notify_waiters();
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.scopes.lock().remove(&self.scope);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_sees_the_outcome_of_the_decision_before_it() {
        let scopes = Scopes::default();
        let Take::Taken(first) = scopes.take("a", Duration::from_secs(5)).await else {
            panic!("free scope not taken");
        };
        // Deciding, then gone: the waiter takes the scope itself.
        let (second, ()) = tokio::join!(scopes.take("a", Duration::from_secs(5)), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        });
        assert!(matches!(second, Take::Taken(_)));
        drop(second);
        // Deciding, then running: the waiter skips as running.
        let Take::Taken(first) = scopes.take("a", Duration::from_secs(5)).await else {
            panic!("free scope not taken");
        };
        let (second, ()) = tokio::join!(scopes.take("a", Duration::from_secs(5)), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            first.running();
        });
        assert!(matches!(second, Take::Running));
        assert!(scopes.any_running());
        // Deciding for longer than the wait.
        let third = scopes.take("a", Duration::from_millis(1)).await;
        assert!(matches!(third, Take::Running));
        drop(first);
        let Take::Taken(_held) = scopes.take("b", Duration::from_secs(5)).await else {
            panic!("free scope not taken");
        };
        assert!(matches!(
            scopes.take("b", Duration::from_millis(10)).await,
            Take::StillDeciding
        ));
    }
}
