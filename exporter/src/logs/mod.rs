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

use llmchat_common::settings::Settings;
use llmchat_common::{duration, invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// `[logs]`: the files to tail and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Application log file to tail (winston JSON or plain lines); repeat
    /// for several (comma-separated in the variable).
    #[setting(flag, value_name = "PATH", default = ["/var/log/llmchat/app.log", "/var/log/llmchat/error.log"])]
    pub app: Vec<PathBuf>,
    /// Access log file to tail (nginx, or JSON lines); repeat for several.
    #[setting(flag, value_name = "PATH", default = ["/var/log/nginx/access.log"])]
    pub access: Vec<PathBuf>,
    /// Read log files that already exist from their start, not their end.
    #[setting(flag)]
    pub from_beginning: bool,
    /// Re-check every log file this often, besides inotify (a safety net).
    #[setting(flag, default = Duration::from_secs(1))]
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Keep draining a rotated-away log file this long, for late writes.
    #[setting(flag, default = Duration::from_secs(5))]
    #[serde(with = "duration")]
    pub rotate_wait: Duration,
    /// Bytes of one log line kept for classification.
    ///
    /// Longer lines are counted once, classified on their first bytes and
    /// the rest discarded, so memory stays bounded.
    #[setting(flag, value_name = "BYTES", default = 1024 * 1024)]
    pub max_line_bytes: usize,
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
