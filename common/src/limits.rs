//! `[web.limits]`: what one client may hold of the server, the same for
//! both binaries. Each limit has a default, a TOML key, a flag (and so an
//! environment variable), and a metric where it acts (see
//! [`crate::http::connections`]).
//!
//! The defaults follow what nginx and Go's net/http do for a server on the
//! open network, tightened where a monitoring endpoint can afford it:
//!
//! | limit | here | nginx | Go net/http |
//! |---|---|---|---|
//! | headers must arrive within | 10 s | `client_header_timeout` 60 s | `ReadHeaderTimeout`, none by default |
//! | a body must arrive within | 10 s in all | `client_body_timeout` 60 s between reads | `ReadTimeout`, none by default |
//! | an idle keep-alive connection lives | 60 s | `keepalive_timeout` 75 s | `IdleTimeout`, none by default |
//! | open connections | 512 | `worker_connections` 512 | unlimited |
//!
//! Prometheus sends a scrape's headers at once and Alertmanager's body
//! is a few kilobytes on a local network, so seconds are plenty; what the
//! short timeouts buy is that a client that stops sending stops costing a
//! file descriptor soon.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{duration, invalid, ConfigError};
use crate::settings::Settings;

/// `[web.limits]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; at the cap the longest-waiting one
    /// without a request being handled is closed.
    ///
    /// The one closed has waited longest without a request being handled
    /// (idle, still sending headers, or still sending a body); when every
    /// connection has a request being handled, the new one is refused.
    /// Lowered at start to three quarters of the open-file limit.
    #[setting(flag, value_name = "N", default = 512)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from when the
    /// connection became ready for them.
    #[setting(flag, default = Duration::from_secs(10))]
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body, from its headers.
    ///
    /// Past it: 408, and the connection is closed.
    #[setting(flag, default = Duration::from_secs(10))]
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection (no request in progress) is kept.
    #[setting(flag, default = Duration::from_secs(60))]
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// bcrypt checks of basic-auth passwords running at once.
    ///
    /// The web-config file's users; each check takes one core for tens of
    /// milliseconds.
    #[setting(flag, value_name = "N", default = 1)]
    pub auth_concurrency: usize,
    /// Requests that may wait for a bcrypt check; more get 429.
    ///
    /// Beyond those running; none waits longer than `header_timeout`.
    #[setting(flag, value_name = "N", default = 16)]
    pub auth_queue: usize,
}

impl Limits {
    /// The checks run before anything starts; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid(
                "web.limits.max_connections",
                0,
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("web.limits.header_timeout", self.header_timeout),
            ("web.limits.body_timeout", self.body_timeout),
            ("web.limits.idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "0s", "must be greater than zero"));
            }
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.auth_concurrency == 0 || self.auth_concurrency > cores {
            return Err(invalid(
                "web.limits.auth_concurrency",
                self.auth_concurrency,
                format!("must be from 1 to the number of cores ({cores})"),
            ));
        }
        Ok(())
    }
}

/// Raises the soft open-file limit to the hard limit, as Go's runtime does
/// for every Go exporter since Go 1.19: the default soft limit of 1,024
/// is a relic of select(2), which neither tokio nor hyper use. Returns
/// (soft before, soft after), `None` where the limits cannot be read.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some((soft, soft));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Some((soft, hard)),
        Err(_) => Some((soft, soft)),
    }
}

/// The connection cap in force: `configured`, but never more than three
/// quarters of the open-file limit, so that the store, the database pools,
/// the tailed files and the outgoing connections keep descriptors of their
/// own when every connection slot is taken.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX);
            configured.min(room.max(1))
        }
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_quarter_of_the_descriptors() {
        assert_eq!(effective_max_connections(512, Some(1024)), 512);
        assert_eq!(effective_max_connections(5000, Some(1024)), 768);
        assert_eq!(effective_max_connections(512, Some(256)), 192);
        assert_eq!(effective_max_connections(512, Some(1)), 1);
        assert_eq!(effective_max_connections(512, None), 512);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_key() {
        let e = Limits {
            idle_timeout: Duration::ZERO,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key(), Some("web.limits.idle_timeout"));
        let e = Limits {
            auth_concurrency: 10_000,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key(), Some("web.limits.auth_concurrency"));
        assert!(Limits::default().validate().is_ok());
    }
}
