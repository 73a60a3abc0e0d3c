//! Log-file collector: tails the application logs (`--logs.app`, by default
//! the guide's `/var/log/llmchat/app.log` and `error.log`) and counts lines
//! by level. Serves the daily check's `grep -c "ERROR" app.log`, and
//! `LogMonitor`'s "more than 10 errors" and "not updated for 1 hour" checks
//! (the thresholds are alerting rules).
//!
//! Counting happens on a background thread fed by the tailer (`llmchat_tail`); a scrape
//! only stats the files for presence and last-write time.

use llmchat_common::lock;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::chat::ChatRecorder;
use crate::collector_kit::encode::gauge_family;
use crate::collector_kit::{Context, FileLabels, RefreshError, Source, StartError, Started};
use crate::logs::chat_event::ChatConfig;
use crate::logs::level::{classify, Level};
use crate::logs::LogsConfig;
use llmchat_tail::{self as tail, Rotation, Sink, Tailer};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`; with `chat`
/// enabled, its tailer also records chat events.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "logs",
    role: crate::collector_kit::Role::Host,
    enabled_by_default: true,
    help: "application log files (logs.app): lines by level, errors, last write",
};

/// Registers the `llmchat_log_*` metrics and starts tailing the app logs
/// named in `[logs]`; with `chat` (the chat collector enabled), the same
/// tailer records chat events as `[chat]` says.
pub fn start(logs: &LogsConfig, chat: Option<&ChatConfig>, ctx: &mut Context<'_>) -> Started {
    let shared = ctx.log_files();
    let chat = chat.map(|chat| {
        let (recorder, collector) = super::chat::new(chat);
        ctx.registry
            .sub_registry_with_prefix("chat")
            .register_collector(Box::new(collector));
        recorder
    });
    let registry = ctx.registry.sub_registry_with_prefix("log");
    let c = LogCollector::start(logs, chat, &shared, registry)
        .map_err(|e| StartError::new("logs", e))?;
    Ok(Some(c as Arc<dyn Source>))
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("cannot start the log tailer thread: {0}")]
    Spawn(std::io::Error),
    #[error("the log tailer thread has stopped")]
    TailerStopped,
    #[error("the file check task failed: {0}")]
    Join(String),
}

impl EncodeLabelValue for Level {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum RotationKind {
    Replaced,
    Truncated,
}

impl EncodeLabelValue for RotationKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = match self {
            RotationKind::Replaced => "replaced",
            RotationKind::Truncated => "truncated",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LineLabels {
    file: String,
    level: Level,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    file: String,
    kind: RotationKind,
}

/// Counter handles for one file, plus counts batched between flushes so the
/// hot path touches no atomics.
struct FileCounters {
    by_level: [Counter; 5],
    errors: Counter,
    truncated: Counter,
    read_bytes: Counter,
    replaced: Counter,
    truncations: Counter,
    parse_errors: Counter,
    readable: Gauge,
    pending: [u64; 5],
    pending_truncated: u64,
    pending_parse_errors: u64,
}

struct CountingSink {
    files: Vec<FileCounters>,
    chat: Option<ChatRecorder>,
}

impl Sink for CountingSink {
    #[inline]
    fn line(&mut self, file: usize, line: &[u8], truncated: bool) {
        let f = &mut self.files[file];
        f.pending[classify(line) as usize] += 1;
        f.pending_truncated += u64::from(truncated);
        if let Some(chat) = self.chat.as_mut() {
            if chat.record(line) == Some(false) {
                f.pending_parse_errors += 1;
            }
        }
    }

    fn bytes_read(&mut self, file: usize, n: u64) {
        self.files[file].read_bytes.inc_by(n);
    }

    fn rotated(&mut self, file: usize, kind: Rotation) {
        let f = &self.files[file];
        match kind {
            Rotation::Replaced => f.replaced.inc(),
            Rotation::Truncated => f.truncations.inc(),
        };
    }

    fn readable(&mut self, file: usize, readable: bool) {
        self.files[file].readable.set(i64::from(readable));
    }

    fn flush(&mut self, file: usize) {
        let f = &mut self.files[file];
        for (i, n) in f.pending.iter_mut().enumerate() {
            if *n > 0 {
                f.by_level[i].inc_by(*n);
                if i == Level::Error as usize {
                    f.errors.inc_by(*n);
                }
                *n = 0;
            }
        }
        if f.pending_truncated > 0 {
            f.truncated.inc_by(f.pending_truncated);
            f.pending_truncated = 0;
        }
        if f.pending_parse_errors > 0 {
            f.parse_errors.inc_by(f.pending_parse_errors);
            f.pending_parse_errors = 0;
        }
        if let Some(chat) = self.chat.as_mut() {
            chat.flush();
        }
    }
}

#[derive(Debug, Clone)]
struct FileState {
    labels: FileLabels,
    exists: bool,
    size: u64,
    modified: Option<f64>,
}

pub struct LogCollector {
    paths: Vec<PathBuf>,
    states: Mutex<Vec<FileState>>,
    tail: tail::Handle,
}

impl std::fmt::Debug for LogCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCollector")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl LogCollector {
    /// Registers the log metrics and starts the tailer thread; with `chat`,
    /// the same pass over the lines also records chat events.
    pub fn start(
        config: &LogsConfig,
        chat: Option<ChatRecorder>,
        shared: &crate::collector_kit::LogFiles,
        registry: &mut Registry,
    ) -> Result<Arc<Self>, LogsError> {
        let lines = Family::<LineLabels, Counter>::default();
        let errors = Family::<FileLabels, Counter>::default();
        let truncated = Family::<FileLabels, Counter>::default();
        let read_bytes = Family::<FileLabels, Counter>::default();
        let rotations = Family::<RotationLabels, Counter>::default();
        let (readable, parse_errors) = (&shared.readable, &shared.parse_errors);
        registry.register(
            "lines",
            "Application log lines read, by level (winston JSON level field, or ERROR/WARN/INFO/DEBUG in plain lines)",
            lines.clone(),
        );
        registry.register(
            "errors",
            "Application log lines at error level (the guide's grep -c ERROR)",
            errors.clone(),
        );
        registry.register(
            "truncated_lines",
            "Log lines longer than logs.max_line_bytes, counted once and classified on their first bytes",
            truncated.clone(),
        );
        registry.register_with_unit(
            "read",
            "Bytes read from the application log file",
            Unit::Bytes,
            read_bytes.clone(),
        );
        registry.register(
            "rotations",
            "Times the log file was replaced (rename or delete, then create) or truncated (copytruncate)",
            rotations.clone(),
        );

        let label = |p: &PathBuf| p.display().to_string();
        let files = config
            .app
            .iter()
            .map(|p| {
                let file = label(p);
                let by_level = [
                    Level::Other,
                    Level::Debug,
                    Level::Info,
                    Level::Warn,
                    Level::Error,
                ]
                .map(|level| {
                    lines
                        .get_or_create(&LineLabels {
                            file: file.clone(),
                            level,
                        })
                        .clone()
                });
                let fl = FileLabels { file: file.clone() };
                let rot = |kind| {
                    rotations
                        .get_or_create(&RotationLabels {
                            file: file.clone(),
                            kind,
                        })
                        .clone()
                };
                FileCounters {
                    by_level,
                    errors: errors.get_or_create(&fl).clone(),
                    truncated: truncated.get_or_create(&fl).clone(),
                    read_bytes: read_bytes.get_or_create(&fl).clone(),
                    parse_errors: parse_errors.get_or_create(&fl).clone(),
                    readable: readable.get_or_create(&fl).clone(),
                    replaced: rot(RotationKind::Replaced),
                    truncations: rot(RotationKind::Truncated),
                    pending: [0; 5],
                    pending_truncated: 0,
                    pending_parse_errors: 0,
                }
            })
            .collect();

        let tailer = Tailer::new(
            config.app.clone(),
            config.tail_options(),
            CountingSink { files, chat },
        );
        let tail = tail::spawn(tailer, config.poll_interval).map_err(LogsError::Spawn)?;

        let states = config
            .app
            .iter()
            .map(|p| FileState {
                labels: FileLabels { file: label(p) },
                exists: false,
                size: 0,
                modified: None,
            })
            .collect();
        let collector = Arc::new(LogCollector {
            paths: config.app.clone(),
            states: Mutex::new(states),
            tail,
        });
        registry.register_collector(Box::new(collector.clone()));
        Ok(collector)
    }
}

impl Source for LogCollector {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        Box::pin(async move {
            let paths = self.paths.clone();
            // stat() can block on a hung network filesystem.
            let stats = tokio::task::spawn_blocking(move || {
                paths
                    .iter()
                    .map(|p| std::fs::metadata(p).ok().filter(|m| m.is_file()))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| LogsError::Join(e.to_string()))?;
            {
                let mut states = lock(&self.states);
                for (state, meta) in states.iter_mut().zip(stats) {
                    state.exists = meta.is_some();
                    state.size = meta.as_ref().map_or(0, |m| m.len());
                    state.modified = meta
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs_f64());
                }
            }
            if !self.tail.is_alive() {
                return Err(LogsError::TailerStopped.into());
            }
            Ok(())
        })
    }

    fn clear(&self) {
        // The file states are fresh stats; nothing stale to forget.
    }

    fn stop(&self) {
        self.tail.stop();
    }
}

impl Collector for LogCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let states = lock(&self.states);
        gauge_family(
            &mut e,
            "file_exists",
            "1 if the application log file exists now, else 0.",
            None,
            states
                .iter()
                .map(|s| (s.labels.clone(), f64::from(u8::from(s.exists)))),
        )?;
        gauge_family(
            &mut e,
            "file_size",
            "Current size of the application log file.",
            Some(Unit::Bytes),
            states
                .iter()
                .filter(|s| s.exists)
                .map(|s| (s.labels.clone(), s.size as f64)),
        )?;
        gauge_family(
            &mut e,
            "last_write_timestamp",
            "Last modification time of the application log file, Unix time (the guide's not-updated-for-1-hour check).",
            Some(Unit::Seconds),
            states
                .iter()
                .filter_map(|s| s.modified.map(|m| (s.labels.clone(), m))),
        )?;
        Ok(())
    }
}
