//! The restore drill (the guide's 恢复流程, rehearsed): optional and off
//! by default. On a schedule the newest database dump is restored into a
//! scratch database with `psql` (plain) or `pg_restore` (custom format),
//! at a lower CPU priority and under a statement timeout, the rows of the
//! tables that matter are counted and compared with the live database's
//! own counts, and the scratch database is emptied again.
//!
//! Safety: a scratch URL naming the live database is refused at start
//! (exit 64); a scratch database holding any table while lacking the
//! drill's marker table (so not left by a previous drill) is refused at
//! each run and left untouched. Connection secrets reach the tools through
//! their environment, never their command line.

use llmchat_common::{invalid, lock, ConfigError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmchat_common::duration;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The table whose presence says "a previous drill made these".
const MARKER: &str = "_llmchat_restore_drill";

/// `[backup.drill]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrillConfig {
    pub enabled: bool,
    /// The scratch database; never the live one.
    pub scratch_url: String,
    /// Daily by default; "168h" for weekly.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Whether a drill runs as soon as the exporter starts; by default the
    /// first one runs an interval later, so an exporter that restarts
    /// (a deploy, a crash loop) does not restore the database each time.
    pub run_at_start: bool,
    /// Each statement of the restore and the counts.
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
    /// The whole restore.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Tables counted after the restore.
    pub tables: Vec<String>,
    /// How far a restored count may be from the live one, as a share of
    /// it: the growth (or cleanup) since the dump was taken.
    pub max_row_difference: f64,
    pub psql: PathBuf,
    pub pg_restore: PathBuf,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            enabled: false,
            scratch_url: String::new(),
            interval: Duration::from_secs(86_400),
            run_at_start: false,
            statement_timeout: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(2 * 3600),
            tables: ["chat_sessions", "messages", "agents"]
                .map(String::from)
                .to_vec(),
            max_row_difference: 0.2,
            psql: PathBuf::from("psql"),
            pg_restore: PathBuf::from("pg_restore"),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Same server and database: `localhost`, 127.0.0.1 and ::1 are one host.
fn same_database(a: &PgConnectOptions, b: &PgConnectOptions) -> bool {
    let host = |o: &PgConnectOptions| match o.get_host() {
        "localhost" | "127.0.0.1" | "::1" => "localhost".to_string(),
        h => h.to_string(),
    };
    let db = |o: &PgConnectOptions| o.get_database().unwrap_or(o.get_username()).to_string();
    host(a) == host(b) && a.get_port() == b.get_port() && db(a) == db(b)
}

impl DrillConfig {
    /// A reason the drill's settings are wrong: (key, reason). The URL is
    /// never repeated (it may hold a password).
    pub fn check(&self, live_url: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| invalid(key, "(not shown)", reason);
        if !self.enabled {
            return Ok(());
        }
        let scratch: PgConnectOptions = self.scratch_url.parse().map_err(|_| {
            bad(
                "backup.drill.scratch_url",
                "is not a postgres:// URL".to_string(),
            )
        })?;
        if let Ok(live) = live_url.parse::<PgConnectOptions>() {
            if same_database(&scratch, &live) {
                return Err(bad(
                    "backup.drill.scratch_url",
                    "names the live database (database.url): the drill drops everything in it"
                        .into(),
                ));
            }
        }
        if let Some(t) = self.tables.iter().find(|t| !is_identifier(t)) {
            return Err(bad(
                "backup.drill.tables",
                format!("{t:?} is not a lower-case table name"),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_row_difference) {
            return Err(bad(
                "backup.drill.max_row_difference",
                "must be between 0 and 1".into(),
            ));
        }
        if self.interval.is_zero() || self.timeout.is_zero() || self.statement_timeout.is_zero() {
            return Err(bad(
                "backup.drill.interval",
                "interval, timeout and statement_timeout must be above zero".into(),
            ));
        }
        Ok(())
    }
}

/// How the last drills went, for the collector.
#[derive(Debug, Default)]
pub struct DrillState {
    pub last_ok: Option<bool>,
    pub last_duration: f64,
    pub last_success: Option<f64>,
    pub rows: BTreeMap<String, f64>,
    /// Runs by result: succeeded, failed, refused.
    pub runs: BTreeMap<&'static str, u64>,
}

pub type SharedDrill = Arc<Mutex<DrillState>>;

/// Why a drill did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("no complete database dump in the backup folder")]
    NoDump,
    #[error("the scratch database holds tables no drill made (e.g. {0}): refused, left untouched")]
    Refused(String),
    #[error("cannot reach the {which} database")]
    Connect {
        which: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("a query on the {which} database failed")]
    Query {
        which: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot start {0}")]
    Spawn(String, #[source] std::io::Error),
    #[error("the restore failed: {0}")]
    Restore(String),
    #[error("the restore took longer than backup.drill.timeout")]
    Timeout,
    #[error("table {table}: {restored} rows restored, {live} live (allowed difference {allowed})")]
    Rows {
        table: String,
        restored: f64,
        live: f64,
        allowed: f64,
    },
}

fn scratch_query(source: sqlx::Error) -> DrillError {
    DrillError::Query {
        which: "scratch",
        source,
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The newest `database_*.sql` in `dir` untouched for `settle`: a dump
/// pg_dump is still writing is not restored (it would fail the drill).
fn newest_dump(dir: &Path, settle: Duration) -> Option<PathBuf> {
    let settled = SystemTime::now().checked_sub(settle)?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("database_") && n.ends_with(".sql")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(t, _)| *t <= settled)
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

async fn schemas(pool: &PgPool) -> Result<Vec<String>, DrillError> {
    sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    )
    .fetch_all(pool)
    .await
    .map_err(scratch_query)
}

/// Drops every schema a restore may have made and leaves an empty public.
async fn empty(pool: &PgPool) -> Result<(), DrillError> {
    for s in schemas(pool).await? {
        let sql = format!("DROP SCHEMA \"{}\" CASCADE", s.replace('"', "\"\""));
        sqlx::query(&sql)
            .execute(pool)
            .await
            .map_err(scratch_query)?;
    }
    sqlx::query("CREATE SCHEMA public")
        .execute(pool)
        .await
        .map_err(scratch_query)?;
    Ok(())
}

/// One drill; the restored rows per table on success.
pub async fn run(
    config: &DrillConfig,
    backup_dir: &Path,
    settle: Duration,
    live_url: &str,
) -> Result<BTreeMap<String, f64>, DrillError> {
    let dump = newest_dump(backup_dir, settle).ok_or(DrillError::NoDump)?;
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let scratch_options: PgConnectOptions = config
        .scratch_url
        .parse::<PgConnectOptions>()
        .map_err(|source| DrillError::Connect {
            which: "scratch",
            source,
        })?
        .options([("statement_timeout", timeout_ms.as_str())])
        .disable_statement_logging();
    let scratch = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(scratch_options.clone())
        .await
        .map_err(|source| DrillError::Connect {
            which: "scratch",
            source,
        })?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r','p','v','m','f') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'",
    )
    .fetch_all(&scratch)
    .await
    .map_err(scratch_query)?;
    if !tables.is_empty() && !tables.iter().any(|t| t == MARKER) {
        return Err(DrillError::Refused(tables[0].clone()));
    }
    empty(&scratch).await?;
    sqlx::query(&format!(
        "CREATE TABLE public.{MARKER} (started_at timestamptz NOT NULL DEFAULT now())"
    ))
    .execute(&scratch)
    .await
    .map_err(scratch_query)?;

    let restored = restore(config, &dump, &scratch_options).await;
    let counted = match restored {
        Ok(()) => count(config, &scratch, live_url).await,
        Err(e) => Err(e),
    };
    // Emptied whatever happened, so the next drill (and the disk) starts
    // clean; a failure here leaves the marker for the next drill to clear.
    let cleaned = empty(&scratch).await;
    scratch.close().await;
    let rows = counted?;
    cleaned?;
    Ok(rows)
}

async fn restore(
    config: &DrillConfig,
    dump: &Path,
    scratch: &PgConnectOptions,
) -> Result<(), DrillError> {
    let custom = {
        use std::io::Read;
        let mut head = [0u8; 5];
        std::fs::File::open(dump)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"PGDMP"
    };
    let database = scratch.get_database().unwrap_or(scratch.get_username());
    let (program, args): (&Path, Vec<std::ffi::OsString>) = if custom {
        (
            &config.pg_restore,
            vec![
                "--no-owner".into(),
                "--no-privileges".into(),
                "--exit-on-error".into(),
                "-d".into(),
                database.into(),
                dump.into(),
            ],
        )
    } else {
        (
            &config.psql,
            vec![
                "-X".into(),
                "-q".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-f".into(),
                dump.into(),
            ],
        )
    };
    // nice and ionice: reading the dump must take neither the CPU nor the
    // disk from the live database (best-effort class, lowest level; the
    // idle class could starve the drill forever on a busy disk). ionice
    // is util-linux's, on every Debian host; where it is missing the
    // drill runs under nice alone.
    let mut cmd = match super::backup_check::find_program(Path::new("ionice")) {
        Some(ionice) => {
            let mut cmd = tokio::process::Command::new(ionice);
            cmd.args(["-c", "2", "-n", "7", "nice"]);
            cmd
        }
        None => tokio::process::Command::new("nice"),
    };
    cmd.arg("-n")
        .arg("10")
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("PGHOST", scratch.get_host())
        .env("PGPORT", scratch.get_port().to_string())
        .env("PGUSER", scratch.get_username())
        .env("PGDATABASE", database)
        .env("PGCONNECT_TIMEOUT", "10")
        .env(
            "PGOPTIONS",
            // The server does the restore's writing: without waiting for
            // each commit's WAL flush it fsyncs far less (a scratch
            // database's rows need no durability).
            format!(
                "-c statement_timeout={} -c synchronous_commit=off",
                config.statement_timeout.as_millis()
            ),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(password) = password_of(&config.scratch_url) {
        cmd.env("PGPASSWORD", password);
    }
    let child = cmd
        .spawn()
        .map_err(|e| DrillError::Spawn(program.display().to_string(), e))?;
    let out = tokio::time::timeout(config.timeout, child.wait_with_output())
        .await
        .map_err(|_| DrillError::Timeout)?
        .map_err(|e| DrillError::Spawn(program.display().to_string(), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(DrillError::Restore(last.chars().take(300).collect()))
}

/// The URL's password, percent-decoded (`url`, not hand parsing: userinfo
/// escapes are easy to get wrong).
fn password_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let p = parsed.password()?;
    Some(
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

async fn count(
    config: &DrillConfig,
    scratch: &PgPool,
    live_url: &str,
) -> Result<BTreeMap<String, f64>, DrillError> {
    let live = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(
            live_url
                .parse::<PgConnectOptions>()
                .map_err(|source| DrillError::Connect {
                    which: "live",
                    source,
                })?
                .disable_statement_logging(),
        )
        .await
        .map_err(|source| DrillError::Connect {
            which: "live",
            source,
        })?;
    let mut rows = BTreeMap::new();
    for table in &config.tables {
        let restored: f64 =
            sqlx::query_scalar(&format!("SELECT count(*)::float8 FROM public.\"{table}\""))
                .fetch_one(scratch)
                .await
                .map_err(scratch_query)?;
        // The exporter's own figure: pg_stat_user_tables' live rows.
        let live_rows: f64 = sqlx::query_scalar(
            "SELECT COALESCE(max(n_live_tup), 0)::float8 FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&live)
        .await
        .map_err(|source| DrillError::Query { which: "live", source })?;
        let allowed = (live_rows * config.max_row_difference).max(10.0);
        if (restored - live_rows).abs() > allowed {
            live.close().await;
            return Err(DrillError::Rows {
                table: table.clone(),
                restored,
                live: live_rows,
                allowed,
            });
        }
        rows.insert(table.clone(), restored);
    }
    live.close().await;
    Ok(rows)
}

/// Runs the drill now and every `interval`, recording each outcome and
/// logging each failure with its reason.
pub async fn drill_loop(
    config: DrillConfig,
    dir: PathBuf,
    settle: Duration,
    live_url: String,
    state: SharedDrill,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if !config.run_at_start {
        // The interval's first tick is immediate: skip it.
        tick.tick().await;
    }
    loop {
        tick.tick().await;
        let started = Instant::now();
        let outcome = run(&config, &dir, settle, &live_url).await;
        let mut s = lock(&state);
        s.last_duration = started.elapsed().as_secs_f64();
        let result = match &outcome {
            Ok(rows) => {
                s.rows = rows.clone();
                s.last_success = Some(now());
                tracing::info!(rows = ?rows, "restore drill succeeded");
                "succeeded"
            }
            Err(e) => {
                tracing::warn!(error = %llmchat_common::error_chain(e), "restore drill failed");
                if matches!(e, DrillError::Refused(_)) {
                    "refused"
                } else {
                    "failed"
                }
            }
        };
        s.last_ok = Some(outcome.is_ok());
        *s.runs.entry(result).or_default() += 1;
    }
}
