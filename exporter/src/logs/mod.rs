//! The log pipeline, apart from the scrape-time collectors:
//!
//! ```text
//! file ─ llmchat-tail (the `tail/` crate: inotify + poll, rotation,
//!        O_NONBLOCK opens; LineSplitter: lines, capped at logs.max_line_bytes)
//!      ─ a Sink per collector:
//!          app.rs     app logs: level.rs classifies, chat_event.rs + chat.rs
//!                     record chat events from the same lines
//!          access.rs  access logs: access_format.rs parses, route.rs
//!                     normalises the path into a bounded route label
//! ```
//!
//! Counting happens on the tailer threads; a scrape only reads totals.
//! `[logs]` (this module) holds what both tailers share: the paths and
//! how files are followed.

pub mod access;
pub mod access_format;
pub mod app;
pub mod chat;
pub mod chat_event;
pub mod level;

pub mod llm_usage;
pub mod route;

use std::path::PathBuf;
use std::time::Duration;

use llmchat_common::{duration, invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// `[logs]`: the files to tail and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Application log files to tail (winston JSON or plain lines).
    pub app: Vec<PathBuf>,
    /// Access log files to tail (nginx, or JSON lines).
    pub access: Vec<PathBuf>,
    /// Read files that exist at start-up from their beginning instead of
    /// their end.
    pub from_beginning: bool,
    /// Safety-net re-check of every file, on top of inotify events.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long a rotated-away file is still drained for late writes.
    #[serde(with = "duration")]
    pub rotate_wait: Duration,
    /// Longer lines are counted once, classified on their first bytes and
    /// the rest discarded, so memory stays bounded.
    pub max_line_bytes: usize,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            app: vec![
                PathBuf::from("/var/log/llmchat/app.log"),
                PathBuf::from("/var/log/llmchat/error.log"),
            ],
            access: vec![PathBuf::from("/var/log/nginx/access.log")],
            from_beginning: false,
            poll_interval: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(5),
            max_line_bytes: 1024 * 1024,
        }
    }
}

/// `--logs.*` flags; each also reads `LLMCHAT_EXPORTER_LOGS_*`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct LogsFlags {
    /// Application log file to tail; repeat for several (comma-separated in the variable).
    #[arg(
        id = "logs.app",
        long = "logs.app",
        value_name = "PATH",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub app: Vec<PathBuf>,
    /// Access log file to tail; repeat for several.
    #[arg(
        id = "logs.access",
        long = "logs.access",
        value_name = "PATH",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<PathBuf>,
    /// Read log files that already exist from their start, not their end.
    #[arg(id = "logs.from_beginning", long = "logs.from-beginning", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub from_beginning: Option<bool>,
    /// Re-check every log file this often, besides inotify.
    #[arg(id = "logs.poll_interval", long = "logs.poll-interval", value_name = "DURATION", value_parser = duration::flag)]
    pub poll_interval: Option<String>,
    /// Keep draining a rotated-away log file this long.
    #[arg(id = "logs.rotate_wait", long = "logs.rotate-wait", value_name = "DURATION", value_parser = duration::flag)]
    pub rotate_wait: Option<String>,
    /// Bytes of one log line kept for classification.
    #[arg(
        id = "logs.max_line_bytes",
        long = "logs.max-line-bytes",
        value_name = "BYTES"
    )]
    pub max_line_bytes: Option<usize>,
}

impl LogsConfig {
    pub fn tail_options(&self) -> llmchat_tail::Options {
        llmchat_tail::Options {
            from_beginning: self.from_beginning,
            rotate_wait: self.rotate_wait,
            max_line_bytes: self.max_line_bytes,
        }
    }
}

impl crate::collector_kit::Section for LogsConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        if self.poll_interval < Duration::from_millis(10) {
            return Err(invalid(
                "logs.poll_interval",
                humantime::format_duration(self.poll_interval),
                "must be at least 10ms",
            ));
        }
        if self.max_line_bytes < 64 {
            return Err(invalid(
                "logs.max_line_bytes",
                self.max_line_bytes,
                "must be at least 64",
            ));
        }
        for (key, list) in [("logs.app", &self.app), ("logs.access", &self.access)] {
            for (i, p) in list.iter().enumerate() {
                if p.as_os_str().is_empty() || p.file_name().is_none() {
                    return Err(invalid(
                        key,
                        p.display(),
                        format!("entry {i} is not a file path"),
                    ));
                }
            }
        }
        Ok(())
    }
}
