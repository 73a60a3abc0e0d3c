//! What the exporter and the receiver share: TOML files whose errors name
//! the key, durations written as `"5s"`, `host:port` / `:port` listen
//! addresses, the one shutdown future (SIGINT or SIGTERM), and the HTTP
//! server ([`http`]).
#![forbid(unsafe_code)]

// `#[derive(Settings)]` writes `::llmchat_common::settings::…`, in this
// crate as in the others.
extern crate self as llmchat_common;

pub mod auth;
pub mod escape;
pub mod http;
pub mod limits;
pub mod logging;
pub mod runtime;
pub mod settings;
pub mod webconfig;
pub use config::duration;

use std::net::{SocketAddr, ToSocketAddrs};

pub mod config;
pub use config::{from_toml, invalid, layered, layered_on_serde_defaults, ConfigError, TomlError};

/// An error and its sources, `outer: inner: innermost`, skipping a source
/// whose text the outer one already shows.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Locks `mutex`, taking the data of one whose holder panicked: every
/// mutex here guards counters, caches and tables that stay consistent
/// between statements, and one panicked task must not stop the metrics or
/// the deliveries of every other.
pub fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// sysexits EX_USAGE: the command line or the configuration was refused.
pub const EXIT_USAGE: u8 = 64;

/// Parses the command line; `--help` and `--version` end in success, any
/// other error in [`EXIT_USAGE`], clap's message printed either way.
pub fn parse_cli<C: clap::Parser>() -> Result<C, std::process::ExitCode> {
    parse_cli_with(C::try_parse)
}

/// [`parse_cli`] for a command line parsed by `parse` (a command built at
/// run time).
pub fn parse_cli_with<C>(
    parse: impl FnOnce() -> Result<C, clap::Error>,
) -> Result<C, std::process::ExitCode> {
    parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            std::process::ExitCode::from(EXIT_USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

/// Resolves `host:port`, or `:port` for every IPv4 address; the error is
/// the reason, for the caller to wrap with its key.
pub fn listen_address(value: &str) -> Result<SocketAddr, ListenAddressError> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.to_socket_addrs()
        .map_err(ListenAddressError::Resolve)?
        .next()
        .ok_or(ListenAddressError::NoAddress)
}

/// Why a listen address was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListenAddressError {
    #[error("{0} (expected host:port or :port)")]
    Resolve(#[source] std::io::Error),
    #[error("resolves to no address")]
    NoAddress,
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            listen_address(":9842").unwrap(),
            "0.0.0.0:9842".parse().unwrap()
        );
        assert!(listen_address("nonsense").is_err());
    }
}
