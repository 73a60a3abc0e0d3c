//! The HTTP surface: `POST /webhook` (Alertmanager), `GET /notifications`
//! (authenticated), `/metrics`, `/health`, `/-/healthy`, `/-/ready`, `/`.
//! [`handle`] needs no socket, so tests can call it directly.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use llmchat_common::http::{refusal, AuthError, Refusal};
use serde_json::json;

use crate::channels::ChannelSet;
use crate::channels::Senders;
use crate::config::{RoutingConfig, WebConfig};
use crate::metrics::{AlertLabels, Metrics, RequestLabels};
use crate::payload;
use crate::routing;
use crate::store::{NewNotification, Store};

pub struct AppState {
    pub store: Arc<Store>,
    pub senders: Arc<Senders>,
    pub metrics: Arc<Metrics>,
    pub web: WebConfig,
    /// From `web`; the token file re-read when it changes.
    pub auth: crate::auth::Auth,
    pub routing: RoutingConfig,
    pub wake: Arc<tokio::sync::Notify>,
    pub recovery: Arc<crate::recovery::Recovery>,
    /// The web-config file in force: when it sets basic_auth_users, the
    /// server has checked them before the request got here.
    pub web_guard: Arc<llmchat_common::webconfig::WebGuard>,
    /// Posts being parsed and stored (`web.max_concurrent_posts`).
    pub posts: Arc<tokio::sync::Semaphore>,
    /// One more slot, only for posts that carry a critical alert.
    pub urgent_posts: Arc<tokio::sync::Semaphore>,
    /// Bytes of posts waiting for the store's commit
    /// (`web.commit_queue_bytes`).
    pub committing: Arc<tokio::sync::Semaphore>,
    /// Room for one more post (`web.body_limit_bytes`), only for posts
    /// that carry a critical alert.
    pub urgent_committing: Arc<tokio::sync::Semaphore>,
    /// Messages per minute per channel (`delivery.max_messages_per_minute`).
    pub budget: crate::budget::Budget,
}

type Body = Full<Bytes>;

/// Request failures, each with the status that says what the sender must
/// do: fix the request (4xx) or retry later (503). Messages name the
/// problem without internals.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed; use {0}")]
    Method(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("request body over the {0}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("the outbox store is unavailable; retry")]
    Unavailable,
    #[error("too many posts at once (web.max_concurrent_posts); retry")]
    Busy,
    #[error("too many posts waiting for the store (web.commit_queue_bytes); retry")]
    CommitQueueFull,
}

impl Refusal for RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::Unavailable | RequestError::Busy | RequestError::CommitQueueFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn allow(&self) -> Option<&'static str> {
        match self {
            RequestError::Method(allow) => Some(allow),
            _ => None,
        }
    }
}

impl RequestError {
    fn into_response(self) -> Response<Body> {
        let body = serde_json::to_vec(&json!({ "error": self.to_string() })).unwrap_or_default();
        refusal(&self, "llmchat-receiver", "application/json", body.into())
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    llmchat_common::http::response(status, "application/json", body.into())
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    llmchat_common::http::response(status, content_type, body.into())
}

/// Bearer token or basic auth, as Alertmanager's `http_config` sends them,
/// compared in constant time (common's [`Credentials`]).
fn authorize<B>(state: &AppState, req: &Request<B>) -> Result<(), RequestError> {
    // With basic_auth_users in the web-config file the server has already
    // checked every request (and the receiver's own credentials are unset:
    // a reload that drops the users leaves nothing that passes).
    if state.web.auth_disabled || state.web_guard.current().has_users() {
        return Ok(());
    }
    state
        .auth
        .check(req.headers().get(header::AUTHORIZATION))
        .map_err(|e| match e {
            AuthError::Missing => RequestError::Unauthorized("missing credentials"),
            AuthError::Wrong | AuthError::Busy => RequestError::Unauthorized("wrong credentials"),
        })
}

pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let is_webhook = req.uri().path() == "/webhook";
    let result = route(state, req).await;
    let resp = result.unwrap_or_else(RequestError::into_response);
    if is_webhook {
        state
            .metrics
            .webhook_requests
            .get_or_create(&RequestLabels {
                code: resp.status().as_u16(),
            })
            .inc();
    }
    resp
}

async fn route<B>(state: &AppState, req: Request<B>) -> Result<Response<Body>, RequestError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (path.as_str(), &method) {
        ("/webhook", &Method::POST) => webhook(state, req).await,
        ("/webhook", _) => Err(RequestError::Method("POST")),
        ("/notifications", &Method::GET) => {
            authorize(state, &req)?;
            notifications(state, req.uri().query().unwrap_or_default()).await
        }
        ("/actions", &Method::GET) => {
            authorize(state, &req)?;
            actions(state, req.uri().query().unwrap_or_default()).await
        }
        ("/metrics", &Method::GET) => {
            let mut out = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut out, &state.metrics.registry)
                .map_err(|_| RequestError::Unavailable)?;
            Ok(text_response(StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, out))
        }
        // The store's state from its latest real write (an insert, or the
        // heartbeat it writes once a second while idle): no write per probe.
        ("/health", &Method::GET) => Ok(if state.store.writable() {
            json_response(StatusCode::OK, &json!({"status": "healthy", "store": "writable"}))
        } else {
            json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unhealthy", "store": "not writable"}))
        }),
        ("/-/healthy", &Method::GET) => Ok(text_response(StatusCode::OK, "text/plain", "Healthy\n".into())),
        ("/-/ready", &Method::GET) => Ok(text_response(StatusCode::OK, "text/plain", "Ready\n".into())),
        ("/", &Method::GET) => Ok(text_response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html><html><head><title>LLMChat Receiver</title></head><body><h1>LLMChat Receiver</h1>\
                 <p>Version {}</p><ul><li>POST /webhook (Alertmanager, authenticated)</li>\
                 <li><a href=\"/notifications?status=pending\">/notifications</a> (authenticated)</li>\
                 <li><a href=\"/actions\">/actions</a> (recovery audit, authenticated)</li>\
                 <li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/health\">/health</a></li></ul></body></html>",
                env!("CARGO_PKG_VERSION")
            ),
        )),
        ("/notifications" | "/actions" | "/metrics" | "/health" | "/-/healthy" | "/-/ready" | "/", _) => {
            Err(RequestError::Method("GET"))
        }
        _ => Err(RequestError::NotFound),
    }
}

async fn webhook<B>(state: &AppState, req: Request<B>) -> Result<Response<Body>, RequestError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    authorize(state, &req)?;
    let limit = state.web.body_limit_bytes;
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                RequestError::TooLarge(limit)
            } else {
                RequestError::BadRequest("the request body could not be read".into())
            }
        })?
        .to_bytes();
    // Bounded work at once: a storm of 1 MiB posts queues here instead
    // of each holding its parsed alerts and rows in memory together. A
    // post with a critical alert may also take the slot kept for pages,
    // so that it does not wait behind thousands of warning groups.
    let urgent = carries_critical(&body);
    let permit = async {
        if urgent {
            tokio::select! {
                p = state.posts.clone().acquire_owned() => p,
                p = state.urgent_posts.clone().acquire_owned() => p,
            }
        } else {
            state.posts.clone().acquire_owned().await
        }
    };
    let deadline = tokio::time::Instant::now() + state.web.limits.body_timeout;
    let Ok(Ok(parsing)) = tokio::time::timeout_at(deadline, permit).await else {
        return Err(RequestError::Busy);
    };
    let size = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut hook = payload::parse(&body).map_err(|e| RequestError::BadRequest(e.to_string()))?;
    drop(body);
    fold(state, &mut hook);
    let (rows, recover) = outbox_rows(state, &hook)?;
    // The parse slot is for the CPU and the peak of parsing; waiting for
    // the commit holds only this post's share of the byte budget, so the
    // group commit can take every post that is waiting (one fsync for
    // all) while what they hold in memory stays bounded. A page may also
    // take the room kept for one post, as it may the kept slot.
    let committing = async {
        if urgent {
            tokio::select! {
                p = state.committing.clone().acquire_many_owned(size) => p,
                p = state.urgent_committing.clone().acquire_many_owned(size) => p,
            }
        } else {
            state.committing.clone().acquire_many_owned(size).await
        }
    };
    let Ok(Ok(committing)) = tokio::time::timeout_at(deadline, committing).await else {
        return Err(RequestError::CommitQueueFull);
    };
    let _queued = Queued::new(committing, &state.metrics.commit_queue_bytes);
    drop(parsing);
    // The store logs when it stops (and starts again) taking writes; one
    // line per refused post would repeat that through a whole outage.
    let stored = state.store.insert(&rows).await.map_err(|e| {
        tracing::debug!(error = %e, "cannot store notifications");
        RequestError::Unavailable
    })?;
    let duplicates = rows.len() - stored;
    state.metrics.duplicates.inc_by(duplicates as u64);
    if stored > 0 {
        state.wake.notify_one();
    }
    // Only once the notifications are stored: a post refused with 503 is
    // retried by Alertmanager, and its actions are decided then.
    state.recovery.on_post(&recover);
    Ok(json_response(
        StatusCode::OK,
        &json!({"alerts": hook.alerts.len(), "stored": stored, "duplicates": duplicates}),
    ))
}

/// A post's room in the commit queue, shown in
/// `llmchat_receiver_commit_queue_bytes` until the post is answered.
struct Queued {
    _room: tokio::sync::OwnedSemaphorePermit,
    gauge: Gauge,
    bytes: i64,
}

impl Queued {
    fn new(room: tokio::sync::OwnedSemaphorePermit, gauge: &Gauge) -> Self {
        let bytes = room.num_permits() as i64;
        gauge.inc_by(bytes);
        Queued {
            _room: room,
            gauge: gauge.clone(),
            bytes,
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// Whether a post's raw body carries a critical alert, before it is
/// parsed: a hint for the slot kept for pages, never a decision about the
/// alerts themselves (routing reads the parsed labels).
fn carries_critical(body: &[u8]) -> bool {
    static CRITICAL: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        regex::bytes::Regex::new(r#""severity"\s*:\s*"critical""#).expect("a valid pattern")
    });
    CRITICAL.is_match(body)
}

/// Keeps at most `web.max_alerts_per_post` alerts of a post: firing before
/// resolved, then the most severe, in Alertmanager's order otherwise. The
/// rest are folded into the post's `truncatedAlerts` (the templates say
/// how many Alertmanager's group holds beyond what is listed), counted,
/// and neither routed nor acted on. Taking them (200) rather than 413:
/// Alertmanager would retry the same post forever, and nothing of the
/// group, its page included, would go out.
fn fold(state: &AppState, hook: &mut payload::Webhook) {
    let max = state.web.max_alerts_per_post;
    if hook.alerts.len() <= max {
        return;
    }
    let rank = |a: &payload::Alert| {
        let severity = match routing::severity(a, &state.routing).as_str() {
            "critical" => 0,
            "warning" => 1,
            "info" => 2,
            _ => 3,
        };
        (a.status != payload::Status::Firing, severity)
    };
    hook.alerts.sort_by_key(rank);
    let received = hook.alerts.len();
    let folded = received - max;
    hook.alerts.truncate(max);
    hook.alerts.shrink_to_fit();
    hook.truncated_alerts += folded as u64;
    state.metrics.alerts_folded.inc_by(folded as u64);
    tracing::warn!(
        received,
        kept = max,
        folded,
        "post over web.max_alerts_per_post: the rest are counted, not routed"
    );
}

/// An alert of a post, and the channels it went to.
type ToRecover<'h> = (&'h payload::Alert, ChannelSet);

/// The outbox rows of a post (see [`routing::plan`]) and each alert with
/// whether it went to Slack (where its recovery outcome is reported).
fn outbox_rows<'h>(
    state: &AppState,
    hook: &'h payload::Webhook,
) -> Result<(Vec<NewNotification>, Vec<ToRecover<'h>>), RequestError> {
    let mut recover = Vec::new();
    for alert in &hook.alerts {
        let severity = routing::severity(alert, &state.routing);
        state
            .metrics
            .alerts
            .get_or_create(&AlertLabels {
                status: alert.status.as_str(),
                severity: severity.clone(),
            })
            .inc();
        let channels = routing::channels(alert, &severity, &state.routing);
        recover.push((alert, ChannelSet::of(&channels)));
    }
    let (planned, folded) = state.budget.apply(
        routing::plan(hook, &state.routing, &state.senders, None),
        |channel| {
            state
                .senders
                .get(channel)
                .is_some_and(|c| !c.pace().is_zero())
        },
    );
    state.metrics.notifications_folded.inc_by(folded as u64);
    let rows = planned
        .into_iter()
        .map(|p| {
            Ok(NewNotification {
                payload: serde_json::to_string(&p.delivery)
                    .map_err(|_| RequestError::Unavailable)?,
                dedup_key: p.dedup_key,
                channel: p.channel.as_str().into(),
                severity: p.severity,
                status: p.status.into(),
                alertname: p.delivery.first().alertname.clone(),
            })
        })
        .collect::<Result<_, RequestError>>()?;
    Ok((rows, recover))
}

async fn notifications(state: &AppState, query: &str) -> Result<Response<Body>, RequestError> {
    let status = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("status="))
        .unwrap_or("pending");
    if !matches!(status, "pending" | "sent" | "dead") {
        return Err(RequestError::BadRequest(format!(
            "status must be pending, sent or dead, not {status:?}"
        )));
    }
    let list = state
        .store
        .list(status, 500)
        .await
        .map_err(|_| RequestError::Unavailable)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"status": status, "notifications": list}),
    ))
}

async fn actions(state: &AppState, query: &str) -> Result<Response<Body>, RequestError> {
    let mut action = None;
    let mut limit = 100i64;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("action", v)) => action = Some(v.to_string()),
            Some(("limit", v)) => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        RequestError::BadRequest(format!("limit must be 1 to 1000, not {v:?}"))
                    })?
            }
            _ => {
                return Err(RequestError::BadRequest(format!(
                    "unknown query parameter {kv:?}; expected action= or limit="
                )))
            }
        }
    }
    let audit = state
        .recovery
        .store()
        .audit_list(action.as_deref(), limit)
        .await
        .map_err(|_| RequestError::Unavailable)?;
    let mut body = state.recovery.describe();
    body["audit"] = json!(audit);
    Ok(json_response(StatusCode::OK, &body))
}
