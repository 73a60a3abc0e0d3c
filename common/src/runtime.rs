//! The binaries' tokio runtimes and how their outcome becomes an exit
//! code: one copy for the exporter and the receiver, which had the same
//! twenty lines each.

use std::future::Future;
use std::process::ExitCode;

/// How a service's fatal error is reported, besides the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalError {
    /// Logged only (the exporter).
    Logged,
    /// Logged and printed as `program: error` (the receiver).
    LoggedAndPrinted,
}

/// Runs a service (the exporter's or the receiver's `run`) on a
/// multi-threaded runtime with logging set up: success is exit 0; an
/// error is reported as `fatal` says and exit 1.
pub fn serve<E: std::fmt::Display>(
    program: &str,
    log_level: &str,
    json_logs: bool,
    fatal: FatalError,
    service: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    crate::logging::init(log_level, json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if fatal == FatalError::LoggedAndPrinted {
                eprintln!("{program}: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs a one-shot command (a report, a verdict) on a current-thread
/// runtime; `Err` is the exit code when the runtime cannot start.
pub fn once<T>(program: &str, work: impl Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok(rt.block_on(work)),
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
