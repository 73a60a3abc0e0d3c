//! The receiver's durable store (sqlx): the outbox of notifications
//! ([`outbox`]), recovery's audit ([`audit`]) and the coordination tables
//! replicas share without Redis (`coordination`), in an embedded SQLite
//! file by default or in PostgreSQL when several receivers share it. The
//! schema is versioned: `receiver/migrations/{sqlite,postgres}`, applied
//! at open by sqlx's migrator.
//!
//! This module owns the pool and the rules that keep the store usable
//! through faults (a full disk, a dropped or read-only PostgreSQL):
//! - a transaction runs on a connection of its own, and a connection that
//!   saw any error inside a transaction is closed, never returned to the
//!   pool (see [`outbox`] for why the driver's own bookkeeping cannot be
//!   trusted after a failed COMMIT);
//! - every statement error is classified ([`ErrorKind`]) and counted;
//! - whether the store can take a write is the outcome of the latest real
//!   write of the accept path (an outbox insert, or a heartbeat when no
//!   insert was tried for a second), logged when it changes, not per error;
//! - after a fault clears, SQLite's WAL is checkpointed and truncated.

pub mod audit;
mod coordination;
mod health;
pub mod outbox;
mod threads;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub use audit::{AuditRecord, IntFlag};
pub use health::{StoreHealth, StoreMetrics};
pub use outbox::{NewNotification, Notification};
pub use threads::Thread;

/// What went wrong with a store statement, for the error counter's
/// `kind` label and for deciding what a fault means. Bounded on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The disk (or PostgreSQL's) is full.
    Full,
    /// Another writer holds the lock (SQLite busy, PostgreSQL lock timeout).
    Locked,
    /// The file system failed a read or write.
    Io,
    /// The server cannot be reached, or the pool has no connection for us.
    Connection,
    /// The store takes no writes (a read-only file or a standby PostgreSQL).
    Readonly,
    /// Anything else (a bug, a constraint): still counted.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Full,
        ErrorKind::Locked,
        ErrorKind::Io,
        ErrorKind::Connection,
        ErrorKind::Readonly,
        ErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Full => "full",
            ErrorKind::Locked => "locked",
            ErrorKind::Io => "io",
            ErrorKind::Connection => "connection",
            ErrorKind::Readonly => "readonly",
            ErrorKind::Other => "other",
        }
    }

    /// Classifies a driver error: SQLite's (extended) result codes or
    /// PostgreSQL's SQLSTATEs, as the `Any` driver passes them through
    /// (both can be all digits, hence the flag).
    pub fn of(e: &sqlx::Error, sqlite: bool) -> ErrorKind {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => ErrorKind::Connection,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if sqlite {
                    // The primary result code is the extended one's low byte.
                    match code.parse::<i32>().map(|n| n & 0xff) {
                        Ok(13) => ErrorKind::Full,
                        Ok(5 | 6) => ErrorKind::Locked,
                        Ok(10 | 11 | 14 | 26) => ErrorKind::Io,
                        Ok(8) => ErrorKind::Readonly,
                        _ => ErrorKind::Other,
                    }
                } else {
                    // SQLSTATE classes and codes.
                    match code.as_str() {
                        "53100" => ErrorKind::Full,
                        "25006" => ErrorKind::Readonly,
                        "55P03" | "40P01" | "40001" => ErrorKind::Locked,
                        "58030" => ErrorKind::Io,
                        c if c.starts_with("08") || c.starts_with("57P") => ErrorKind::Connection,
                        _ => ErrorKind::Other,
                    }
                }
            }
            _ => ErrorKind::Other,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store")]
    Open(#[source] sqlx::Error),
    #[error("cannot bring the store's schema up to date")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("store error ({kind}): {source}")]
    Query {
        kind: ErrorKind,
        #[source]
        source: sqlx::Error,
    },
    /// Another request's rows in the same group commit hit `kind`; none of
    /// the batch was stored.
    #[error("store error ({kind}) in the group commit holding these rows")]
    BatchFailed { kind: ErrorKind },
    #[error("the store writer has stopped")]
    WriterStopped,
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Query { kind, .. } | StoreError::BatchFailed { kind } => *kind,
            StoreError::Open(_) | StoreError::Migrate(_) | StoreError::WriterStopped => {
                ErrorKind::Other
            }
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Store {
    pool: AnyPool,
    health: Arc<StoreHealth>,
    writer: tokio::sync::mpsc::Sender<outbox::InsertJob>,
}

/// The schema's versions, embedded at build time.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a statement may wait for SQLite's write lock, and for a pool
/// connection: a fault shows as an error within this, not as a hang.
const WAIT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the store and creates its tables; starts the group-commit
    /// writer and the heartbeat that keeps `metrics`' writability true.
    pub async fn open(url: &str, metrics: StoreMetrics) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        // sqlx's errors never quote the URL, so the password cannot leak
        // through them.
        let open_error = StoreError::Open;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 5 })
            .acquire_timeout(WAIT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Writers wait for each other instead of failing.
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        // FULL: a commit is on disk (WAL fsynced) before the
                        // 200 that acknowledges it; the group commit shares
                        // one fsync among all requests waiting.
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(open_error)?;
        if sqlite {
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(open_error)?;
        }
        // Versioned schema: migrations/sqlite or migrations/postgres, each
        // applied once and recorded in _sqlx_migrations (PostgreSQL takes an
        // advisory lock, so replicas starting together apply them once).
        let migrator = if sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        let health = Arc::new(StoreHealth::new(metrics, sqlite, pool.clone()));
        let (writer, jobs) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(outbox::group_commit(
            pool.clone(),
            jobs,
            sqlite,
            health.clone(),
        ));
        // The first probe before the first request, so /health is true from
        // the start; then once a second while no insert tells.
        health.probe().await;
        tokio::spawn(health.clone().heartbeat());
        Ok(Store {
            pool,
            health,
            writer,
        })
    }

    /// Whether the store took the latest write of the accept path.
    pub fn writable(&self) -> bool {
        self.health.writable()
    }

    /// Counts a failed statement by kind and wraps it.
    fn fail(&self, source: sqlx::Error) -> StoreError {
        self.health.error(source)
    }

    /// Runs one statement; how many rows it touched.
    async fn execute<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<u64, StoreError> {
        Ok(q.execute(&self.pool)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected())
    }
}
