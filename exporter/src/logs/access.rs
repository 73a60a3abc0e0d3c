//! HTTP collector: tails nginx (or JSON) access logs and publishes the
//! guide's `MetricsService` HTTP series, `llmchat_http_requests_total`,
//! `llmchat_http_request_duration_seconds` and the response sizes, so that
//! LLMChat needs no code change. Lines that do not parse are counted in
//! `llmchat_log_parse_errors_total{file}` and skipped.
//!
//! The tailer thread parses and aggregates a batch at a time, then merges
//! into the shared totals under one lock per batch; a scrape encodes the
//! totals.

use llmchat_common::lock;
use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::collector_kit::encode::{counter_family, histogram_family, HistogramCounts};
use crate::collector_kit::{validate_buckets, Context, Section, StartError, Started};
use crate::collector_kit::{FileLabels, RefreshError, Source};
use crate::logs::access_format::JsonFields;
use crate::logs::access_format::Parser;
use crate::logs::route::RouteRule;
use crate::logs::route::{Normalizer, RouteId};
use crate::logs::LogsConfig;
use llmchat_common::settings::Settings;
use llmchat_common::{invalid, ConfigError};
use llmchat_tail::{self as tail, Rotation, Sink, Tailer};
use serde::{Deserialize, Serialize};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "access",
    role: crate::collector_kit::Role::Host,
    enabled_by_default: true,
    help: "HTTP requests from the access logs (logs.access)",
};

/// Registers the `llmchat_http_*` metrics and starts tailing the access
/// logs named in `[logs]`, read as `[access]` says.
pub fn start(logs: &LogsConfig, access: &AccessConfig, ctx: &mut Context<'_>) -> Started {
    let shared = ctx.log_files();
    let registry = ctx.registry.sub_registry_with_prefix("http");
    let c = AccessCollector::start(logs, access, &shared, registry)
        .map_err(|e| StartError::new("access", e))?;
    Ok(Some(c as Arc<dyn Source>))
}

/// `[access]`: how access-log lines are read and labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Access log format: combined, json, or an nginx log_format string.
    ///
    /// `combined` is nginx's combined format plus $request_time.
    #[setting(flag, value_name = "FORMAT", default = "combined")]
    pub format: String,
    /// Field names for `format = "json"`.
    #[setting(section)]
    pub json: JsonFields,
    /// Request duration histogram buckets, seconds, comma-separated
    /// (`llmchat_http_request_duration_seconds`; the guide's MetricsService
    /// buckets by default).
    #[setting(flag, default = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0])]
    pub buckets: Vec<f64>,
    /// Distinct route label values kept; the rest become "other".
    #[setting(flag, default = 200)]
    pub max_routes: usize,
    /// A route rule REGEX=ROUTE, applied before the :id normalisation;
    /// repeatable.
    #[setting(flag, no_delimiter, value_name = "REGEX=ROUTE")]
    pub routes: Vec<RouteRule>,
}

impl Section for AccessConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        if let Err(e) = Parser::new(&self.format, &self.json) {
            return Err(invalid("access.format", &self.format, e));
        }
        validate_buckets("access.buckets", &self.buckets)?;
        if self.max_routes == 0 {
            return Err(invalid("access.max_routes", 0, "must be at least 1"));
        }
        if let Err(e) = Normalizer::new(&self.routes, 1) {
            return Err(invalid("access.routes", "", e));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("access.format: {0}")]
    Format(#[from] crate::logs::access_format::FormatError),
    #[error("access.routes: {0}")]
    Route(#[from] crate::logs::route::RuleError),
    #[error("cannot start the access-log tailer thread: {0}")]
    Spawn(std::io::Error),
    #[error("the access-log tailer thread has stopped")]
    TailerStopped,
}

/// The standard methods; anything else is `OTHER`, so a scanner sending
/// made-up methods cannot grow the label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    pub fn parse(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other => "OTHER",
        }
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Method,
    route: Arc<str>,
    status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: Method,
    route: Arc<str>,
}

#[derive(Default)]
struct Totals {
    requests: HashMap<RequestLabels, u64>,
    durations: HashMap<RouteLabels, HistogramCounts>,
    sizes: HashMap<RouteLabels, u64>,
}

/// What one batch adds for one method and route.
struct RouteBatch {
    /// (status, count); a route sees few distinct statuses.
    statuses: Vec<(u16, u64)>,
    durations: HistogramCounts,
    bytes: u64,
    bytes_seen: bool,
}

/// What one batch adds, keyed by route id so the hot path never touches a
/// string, and one hash lookup per line.
#[derive(Default)]
struct Batch {
    routes: FxHashMap<(Method, RouteId), RouteBatch>,
    parse_errors: u64,
}

struct AccessSink {
    parser: Parser,
    routes: Normalizer,
    bounds: Arc<[f64]>,
    batch: Batch,
    totals: Arc<Mutex<Totals>>,
    parse_errors: Vec<Counter>,
    /// Per file: `llmchat_log_file_readable`.
    readable: Vec<Gauge>,
}

impl Sink for AccessSink {
    fn readable(&mut self, file: usize, readable: bool) {
        self.readable[file].set(i64::from(readable));
    }

    fn line(&mut self, _file: usize, line: &[u8], truncated: bool) {
        let parsed = if truncated {
            None
        } else {
            self.parser.parse(line).ok()
        };
        let Some(req) = parsed else {
            self.batch.parse_errors += 1;
            return;
        };
        let method = Method::parse(&req.method);
        let route = self.routes.route(req.target.as_deref());
        let bounds = &self.bounds;
        let entry = self
            .batch
            .routes
            .entry((method, route))
            .or_insert_with(|| RouteBatch {
                statuses: Vec::new(),
                durations: HistogramCounts::new(bounds),
                bytes: 0,
                bytes_seen: false,
            });
        match entry.statuses.iter_mut().find(|(s, _)| *s == req.status) {
            Some((_, n)) => *n += 1,
            None => entry.statuses.push((req.status, 1)),
        }
        if let Some(d) = req.duration_seconds {
            entry.durations.observe(bounds, d);
        }
        if let Some(b) = req.bytes {
            entry.bytes += b;
            entry.bytes_seen = true;
        }
    }

    fn bytes_read(&mut self, _file: usize, _n: u64) {}

    fn rotated(&mut self, _file: usize, _kind: Rotation) {}

    fn flush(&mut self, file: usize) {
        if self.batch.parse_errors > 0 {
            self.parse_errors[file].inc_by(self.batch.parse_errors);
            self.batch.parse_errors = 0;
        }
        if self.batch.routes.is_empty() {
            return;
        }
        let mut totals = lock(&self.totals);
        let totals = &mut *totals;
        for ((method, route), batch) in self.batch.routes.drain() {
            let route = self.routes.name(route).clone();
            for (status_code, n) in batch.statuses {
                let key = RequestLabels {
                    method,
                    route: route.clone(),
                    status_code,
                };
                *totals.requests.entry(key).or_insert(0) += n;
            }
            let key = RouteLabels { method, route };
            if batch.durations.count > 0 {
                match totals.durations.get_mut(&key) {
                    Some(total) => total.merge(&batch.durations),
                    None => {
                        totals.durations.insert(key.clone(), batch.durations);
                    }
                }
            }
            if batch.bytes_seen {
                *totals.sizes.entry(key).or_insert(0) += batch.bytes;
            }
        }
    }
}

pub struct AccessCollector {
    totals: Arc<Mutex<Totals>>,
    bounds: Arc<[f64]>,
    tail: tail::Handle,
}

impl std::fmt::Debug for AccessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCollector").finish_non_exhaustive()
    }
}

impl AccessCollector {
    /// Starts tailing `logs.access` and registers the HTTP metrics.
    pub fn start(
        logs: &LogsConfig,
        config: &AccessConfig,
        shared: &crate::collector_kit::LogFiles,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, AccessError> {
        let parser = Parser::new(&config.format, &config.json)?;
        let routes = Normalizer::new(&config.routes, config.max_routes)?;
        let bounds: Arc<[f64]> = config.buckets.clone().into();
        let totals = Arc::new(Mutex::new(Totals::default()));
        let sink = AccessSink {
            parser,
            routes,
            bounds: bounds.clone(),
            batch: Batch::default(),
            totals: totals.clone(),
            parse_errors: logs
                .access
                .iter()
                .map(|p| {
                    shared
                        .parse_errors
                        .get_or_create(&FileLabels {
                            file: p.display().to_string(),
                        })
                        .clone()
                })
                .collect(),
            readable: logs
                .access
                .iter()
                .map(|p| {
                    shared
                        .readable
                        .get_or_create(&FileLabels {
                            file: p.display().to_string(),
                        })
                        .clone()
                })
                .collect(),
        };
        let tailer = Tailer::new(logs.access.clone(), logs.tail_options(), sink);
        let tail = tail::spawn(tailer, logs.poll_interval).map_err(AccessError::Spawn)?;
        let collector = Arc::new(AccessCollector {
            totals,
            bounds,
            tail,
        });
        registry.register_collector(Box::new(collector.clone()));
        Ok(collector)
    }
}

impl Source for AccessCollector {
    fn name(&self) -> &'static str {
        "access"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        Box::pin(async move {
            if self.tail.is_alive() {
                Ok(())
            } else {
                Err(AccessError::TailerStopped.into())
            }
        })
    }

    fn clear(&self) {
        // Counters are totals since start; nothing goes stale.
    }

    fn stop(&self) {
        self.tail.stop();
    }
}

impl Collector for AccessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = lock(&self.totals);
        counter_family(
            &mut e,
            "requests",
            "HTTP requests, from the access log (the guide's MetricsService http_requests_total).",
            None,
            totals.requests.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        histogram_family(
            &mut e,
            "request_duration",
            "HTTP request duration ($request_time, else the sum of $upstream_response_time), from the access log.",
            Some(Unit::Seconds),
            &self.bounds,
            totals.durations.iter().map(|(k, h)| (k.clone(), h)),
        )?;
        counter_family(
            &mut e,
            "response_size",
            "HTTP response body bytes sent, from the access log.",
            Some(Unit::Bytes),
            totals.sizes.iter().map(|(k, v)| (k.clone(), *v as f64)),
        )?;
        Ok(())
    }
}
