//! [`WebGuard`]: the web-config file in force, what the server asks of
//! each connection and request, and its re-reading (on change or SIGHUP).

use crate::lock;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hyper::header::HeaderValue;

use super::{load, WebConfig};
use crate::auth::AuthError;
use crate::config::ConfigError;
use crate::limits::Limits;

/// A modification stamp of the file and every file it names.
fn stamp(inputs: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    inputs
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// Re-reads are counted by outcome: `llmchat_*_web_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(super) struct ReloadLabels {
    pub(super) result: &'static str,
}

/// What the server applies, reloadable.
pub struct WebGuard {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
    /// Checks that passed, by a SHA-256 of (user, hash, password), so that
    /// a scrape does not pay bcrypt's cost each time (exporter-toolkit does
    /// the same); only successes, so guessing stays expensive.
    pub(super) passed: Mutex<HashSet<[u8; 32]>>,
    /// Checks that failed, keyed the same way: a client that repeats one
    /// wrong password costs one bcrypt check, not one per request.
    failed: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt checks running at once (`web.limits.auth_concurrency`): a
    /// flood of wrong passwords takes that many cores, not every core of
    /// the host the exporter shares with LLMChat.
    auth_slots: Arc<tokio::sync::Semaphore>,
    /// Requests waiting for a slot, bounded by `auth_queue`.
    auth_waiting: AtomicUsize,
    auth_queue: usize,
    /// The longest wait for a slot (`web.limits.header_timeout`).
    auth_wait: Duration,
    pub(super) reloads: prometheus_client::metrics::family::Family<
        ReloadLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// A hash no password matches, checked for unknown users so that the
/// time taken does not tell which user names exist.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl WebGuard {
    /// Loads `path` (if any) for serving, with the bcrypt bounds of
    /// `limits`; `Err` is the start-up refusal.
    pub fn new(path: Option<&Path>, limits: &Limits) -> Result<Arc<WebGuard>, ConfigError> {
        let config = match path {
            Some(p) => load(p)?,
            None => WebConfig::none(),
        };
        let guard = Arc::new(WebGuard {
            path: path.map(Path::to_path_buf),
            current: RwLock::new(Arc::new(config)),
            passed: Mutex::new(Default::default()),
            failed: Mutex::new(Default::default()),
            auth_slots: Arc::new(tokio::sync::Semaphore::new(limits.auth_concurrency.max(1))),
            auth_waiting: AtomicUsize::new(0),
            auth_queue: limits.auth_queue,
            auth_wait: limits.header_timeout,
            reloads: Default::default(),
        });
        for result in ["success", "failure"] {
            let _ = guard.reloads.get_or_create(&ReloadLabels { result });
        }
        Ok(guard)
    }

    pub fn current(&self) -> Arc<WebConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Registers `web_config_reloads_total{result}` in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "web_config_reloads",
            "Re-reads of the web-config file (--web.config.file) by result; a failed one keeps the last good file",
            self.reloads.clone(),
        );
    }

    /// Re-reads the file; a file that does not load keeps the last good one.
    pub fn reload(&self) -> bool {
        let Some(path) = &self.path else {
            return true;
        };
        match load(path) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                for cache in [&self.passed, &self.failed] {
                    lock(cache).clear();
                }
                self.reloads
                    .get_or_create(&ReloadLabels { result: "success" })
                    .inc();
                tracing::info!(file = %path.display(), "web config reloaded");
                true
            }
            Err(e) => {
                self.reloads
                    .get_or_create(&ReloadLabels { result: "failure" })
                    .inc();
                tracing::error!(error = %e, "web config not reloaded; the last good one stays in force");
                false
            }
        }
    }

    /// Re-reads the file whenever it or a file it names changes (checked
    /// every `every`), and on SIGHUP.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        if self.path.is_none() {
            // SIGHUP's default action ends the process: `systemctl reload`
            // (the units' ExecReload) must not, with no file to re-read.
            tokio::spawn(async {
                if let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP received; there is no web config file to re-read");
                    }
                }
            });
            return;
        }
        let guard = self.clone();
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = stamp(&guard.current().inputs);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => {
                        let now = stamp(&guard.current().inputs);
                        if now == seen {
                            continue;
                        }
                        guard.reload();
                    }
                    _ = hangup => {
                        guard.reload();
                    }
                }
                seen = stamp(&guard.current().inputs);
            }
        });
    }

    /// Checks a request's `Authorization` against `basic_auth_users`;
    /// `Ok` when the file sets none. bcrypt runs off the async threads.
    pub async fn check_basic(&self, authorization: Option<&HeaderValue>) -> Result<(), AuthError> {
        use base64::Engine;
        use sha2::Digest;
        let config = self.current();
        if config.users.is_empty() {
            return Ok(());
        }
        let (user, password) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .ok_or(AuthError::Missing)?;
        let hash = config.users.get(&user).cloned();
        let mut digest = sha2::Sha256::new();
        for part in [
            user.as_str(),
            hash.as_deref().unwrap_or(""),
            password.as_str(),
        ] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part.as_bytes());
        }
        let key: [u8; 32] = digest.finalize().into();
        if hash.is_some() && lock(&self.passed).contains(&key) {
            return Ok(());
        }
        if lock(&self.failed).contains(&key) {
            return Err(AuthError::Wrong);
        }
        let permit = self.auth_slot().await?;
        let ok = tokio::task::spawn_blocking(move || {
            // Held until bcrypt ends, even if the client has gone.
            let _permit = permit;
            match hash {
                Some(h) => bcrypt::verify(&password, &h).unwrap_or(false),
                None => {
                    let _ = bcrypt::verify(&password, DUMMY_HASH);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        // Bounded: a flood of distinct passwords cannot grow either cache.
        let cache = if ok { &self.passed } else { &self.failed };
        let mut cache = lock(cache);
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(key);
        if ok {
            Ok(())
        } else {
            Err(AuthError::Wrong)
        }
    }

    /// A bcrypt slot, waiting at most `auth_wait` behind at most
    /// `auth_queue` others; [`AuthError::Busy`] otherwise.
    async fn auth_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AuthError> {
        if let Ok(permit) = self.auth_slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.auth_waiting.fetch_add(1, Ordering::AcqRel) >= self.auth_queue {
            self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AuthError::Busy);
        }
        let waited =
            tokio::time::timeout(self.auth_wait, self.auth_slots.clone().acquire_owned()).await;
        self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AuthError::Busy),
        }
    }
}
