//! The open connections, so that no client can hold them all: a cap, and
//! at the cap the connection that has waited longest without a request
//! being handled is closed to make room for the new one.
//!
//! Why close the idlest rather than refuse the newest: an attacker, or a
//! load balancer that leaks connections, fills every slot first, and a
//! server that refuses the newest then refuses Prometheus' next scrape
//! for as long as the slots stay full. Closing the connection that has
//! waited longest (idle, half-sent headers, a body trickling in) costs a
//! well-behaved client at most one reconnect, and an idle keep-alive
//! connection is exactly what Go's and Prometheus' clients expect to find
//! closed. A connection whose request is being handled is never closed:
//! when every slot has one, the new connection is refused (closed at
//! once), since then the server is busy, not attacked.
//!
//! Counted in `*_http_connections_closed_total{reason}` and
//! `*_http_connections_open`; the cap in force is `*_http_connections_max`.

use crate::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No request within `idle_timeout`.
    Idle,
    /// Headers not complete within `header_timeout`.
    HeaderTimeout,
    /// Body not complete within `body_timeout`.
    BodyTimeout,
    /// Closed at the cap to make room: it had waited longest.
    Evicted,
    /// Refused at the cap: every connection had a request being handled.
    Refused,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Idle,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::Evicted,
        CloseReason::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::Evicted => "evicted_at_cap",
            CloseReason::Refused => "refused_at_cap",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// No byte of a next request yet.
const NONE: u64 = u64::MAX;

/// One connection's state as the cap and the timeouts see it.
pub struct Conn {
    id: u64,
    /// Requests being handled (past their body); never evicted while > 0.
    busy: AtomicUsize,
    /// Requests whose headers have arrived and whose response has not
    /// been written: the body's timeout and the handler own that time.
    in_request: AtomicUsize,
    /// Milliseconds since the table's epoch at which the connection last
    /// started waiting for a client (accepted, or a response finished).
    waiting_since_ms: AtomicU64,
    /// When the first byte of the next request arrived ([`NONE`]: not
    /// yet): from then on the headers' timeout runs, not the idle one.
    first_byte_ms: AtomicU64,
    /// Woken when the connection is evicted.
    pub evicted: tokio::sync::Notify,
}

/// The table of open connections and its metrics.
pub struct Connections {
    cap: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    open_gauge: Gauge,
    max_gauge: Gauge,
    closed: Family<ReasonLabels, Counter>,
    auth_throttled: Counter,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Self> {
        let c = Arc::new(Connections {
            cap: cap.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            open_gauge: Gauge::default(),
            max_gauge: Gauge::default(),
            closed: Family::default(),
            auth_throttled: Counter::default(),
        });
        c.max_gauge.set(c.cap as i64);
        for reason in CloseReason::ALL {
            let _ = c.closed.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        c
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Registers the connection metrics in `registry` (the binary's own
    /// prefix: `llmchat_exporter_`, `llmchat_receiver_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections_open",
            "Client connections open to this server",
            self.open_gauge.clone(),
        );
        registry.register(
            "http_connections_max",
            "Client connections served at once (web.limits.max_connections, lowered to the open-file limit)",
            self.max_gauge.clone(),
        );
        registry.register(
            "http_connections_closed",
            "Client connections the server closed or refused, by reason",
            self.closed.clone(),
        );
        registry.register(
            "http_auth_throttled",
            "Basic-auth requests answered 429 because the bcrypt checks were all busy (web.limits.auth_concurrency, auth_queue)",
            self.auth_throttled.clone(),
        );
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes a slot for a new connection, closing the longest-waiting idle
    /// one at the cap; `None` when every slot has a request being handled.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = lock(&self.open);
        if open.len() >= self.cap {
            let victim = open
                .values()
                .filter(|c| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.waiting_since_ms.load(Ordering::Acquire))
                .cloned();
            match victim {
                Some(v) => {
                    open.remove(&v.id);
                    self.open_gauge.dec();
                    self.count(CloseReason::Evicted);
                    // A permit is stored if the task is not waiting yet.
                    v.evicted.notify_one();
                }
                None => {
                    drop(open);
                    self.count(CloseReason::Refused);
                    return None;
                }
            }
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            in_request: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(self.now_ms()),
            first_byte_ms: AtomicU64::new(NONE),
            evicted: tokio::sync::Notify::new(),
        });
        open.insert(conn.id, conn.clone());
        self.open_gauge.inc();
        Some(Slot {
            table: self.clone(),
            conn,
        })
    }

    pub fn count(&self, reason: CloseReason) {
        self.closed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn count_auth_throttled(&self) {
        self.auth_throttled.inc();
    }
}

/// A connection's slot in the table; freed when dropped.
pub struct Slot {
    table: Arc<Connections>,
    pub conn: Arc<Conn>,
}

impl Slot {
    /// Marks a request's headers as arrived until the guard drops (its
    /// response is ready).
    pub fn request(&self) -> InRequest {
        self.conn.in_request.fetch_add(1, Ordering::AcqRel);
        InRequest {
            conn: self.conn.clone(),
            table: self.table.clone(),
        }
    }

    /// Marks a request as being handled (its body read) until the
    /// returned guard drops.
    pub fn handling(&self) -> Handling {
        self.conn.busy.fetch_add(1, Ordering::AcqRel);
        Handling {
            conn: self.conn.clone(),
        }
    }

    /// Notes that bytes arrived from the client.
    pub fn bytes_arrived(&self) {
        let _ = self.conn.first_byte_ms.compare_exchange(
            NONE,
            self.table.now_ms(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// What the connection is waiting for, and since how long.
    pub fn waiting(&self) -> Waiting {
        if self.conn.in_request.load(Ordering::Acquire) > 0 {
            return Waiting::Server;
        }
        let now = self.table.now_ms();
        let ms = |since: u64| std::time::Duration::from_millis(now.saturating_sub(since));
        match self.conn.first_byte_ms.load(Ordering::Acquire) {
            NONE => Waiting::Idle(ms(self.conn.waiting_since_ms.load(Ordering::Acquire))),
            first => Waiting::Headers(ms(first)),
        }
    }

    pub fn table(&self) -> &Connections {
        &self.table
    }
}

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// A request is in progress (its body, its handler, its response).
    Server,
    /// No byte of a next request, for this long.
    Idle(std::time::Duration),
    /// The rest of a request's headers, since its first byte this long ago.
    Headers(std::time::Duration),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.table.open);
        // Absent when it was evicted (and already uncounted).
        if open.remove(&self.conn.id).is_some() {
            self.table.open_gauge.dec();
        }
    }
}

/// A request past its headers; the connection waits for its client
/// again from when it drops.
pub struct InRequest {
    conn: Arc<Conn>,
    table: Arc<Connections>,
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.conn
            .waiting_since_ms
            .store(self.table.now_ms(), Ordering::Release);
        self.conn.first_byte_ms.store(NONE, Ordering::Release);
        self.conn.in_request.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request being handled: its connection is not closed at the cap.
pub struct Handling {
    conn: Arc<Conn>,
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_waiting_idle_connection_goes() {
        let table = Connections::new(2);
        let a = table.admit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = table.admit().unwrap();
        // a is the oldest, but busy: b goes.
        let request = a.request();
        let busy = a.handling();
        let c = table.admit().unwrap();
        assert!(!table.open.lock().unwrap().contains_key(&b.conn.id));
        assert!(table.open.lock().unwrap().contains_key(&c.conn.id));
        // Both remaining busy: the next is refused.
        let _busy_c = c.handling();
        assert!(table.admit().is_none());
        drop(busy);
        drop(request);
        // a waits again (from now), so it can be evicted.
        let d = table.admit().unwrap();
        assert!(!table.open.lock().unwrap().contains_key(&a.conn.id));
        drop((a, b, d));
        assert_eq!(table.open.lock().unwrap().len(), 1);
        assert_eq!(table.open_gauge.get(), 1);
        let evicted = table
            .closed
            .get_or_create(&ReasonLabels {
                reason: "evicted_at_cap",
            })
            .get();
        assert_eq!(evicted, 2);
    }
}
