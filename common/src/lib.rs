//! What the exporter and the receiver share: TOML files whose errors name
//! the key, durations written as `"5s"`, `host:port` / `:port` listen
//! addresses, the one shutdown future (SIGINT or SIGTERM), and the HTTP
//! server ([`http`]).
#![forbid(unsafe_code)]

pub mod http;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Why a configuration was refused. Each variant names the key; `main`
/// prints it and exits with 64 (EX_USAGE).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}: {message}")]
    File {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{key}: invalid value {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// The error for a value that `key` refused.
pub fn invalid(key: &'static str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// sysexits EX_USAGE: the command line or the configuration was refused.
pub const EXIT_USAGE: u8 = 64;

/// Parses the command line; `--help` and `--version` end in success, any
/// other error in [`EXIT_USAGE`], clap's message printed either way.
pub fn parse_cli<C: clap::Parser>() -> Result<C, std::process::ExitCode> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            std::process::ExitCode::from(EXIT_USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

/// Serde for durations written as `"5s"`, `"1m30s"`.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?}: {e} (use e.g. \"5s\")"))
        })
    }
}

/// Parses TOML into `T`; on error, `(key path, message)`.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        // toml's message carries a source excerpt; keep the message itself.
        let message = e.into_inner().message().trim().to_string();
        (
            if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message,
        )
    })
}

/// Resolves `host:port`, or `:port` for every IPv4 address; the error is
/// the reason, for the caller to wrap with its key.
pub fn listen_address(value: &str) -> Result<SocketAddr, String> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{e} (expected host:port or :port)"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
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
