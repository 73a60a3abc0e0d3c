//! The database collector's background queries: the LLMChat gauges whose
//! cost grows with the tables (active sessions, agents, the cleanup
//! backlogs), the database and table sizes, and the custom queries.
//!
//! Each runs on its own [`Schedule`] in a read-only transaction that starts
//! with `SET LOCAL statement_timeout`, so PostgreSQL itself stops a run at
//! its timeout (a run the exporter gave up on does not keep the server
//! busy), and without parallel workers, so a run takes one core of the
//! database server at most. Before its first run, each query's plan is read once (EXPLAIN,
//! never ANALYZE): a query that will read a large table sequentially on
//! every run is reported in the log and in
//! `llmchat_database_query_plan_seq_scan_rows`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::registry::Unit;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::{Executor, Postgres, Row};

use super::rows::{column_f64, custom_family};
use super::DatabaseConfig;
use crate::collector_kit::background::{self, BackgroundError, Job, Schedule, Tasks};
use crate::collector_kit::snapshot::Snapshot;

/// The query's one parameter, if it has one.
#[derive(Debug, Clone)]
enum Bind {
    None,
    Seconds(f64),
    Names(Vec<String>),
}

impl Bind {
    fn apply<'q>(&self, q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        match self {
            Bind::None => q,
            Bind::Seconds(v) => q.bind(*v),
            Bind::Names(v) => q.bind(v.clone()),
        }
    }
}

/// Which registry a query's series go to: the collector's own
/// (`llmchat_database_*`) or the root (the guide's names, custom queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Own,
    Guide,
}

/// Turns a run's rows into series; an error when they do not fit.
type Build = Box<dyn Fn(&[PgRow]) -> Result<Snapshot, RowsError> + Send + Sync>;

/// Why a run's rows do not fit the series they should become.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error("no row")]
    NoRow,
    #[error("the first column of the first row is not a number")]
    FirstNotNumber,
    #[error("a column is not a number")]
    NotNumber,
    #[error("the rows have no numeric column {0:?} or lack a label column")]
    CustomColumns(String),
}

struct Spec {
    name: String,
    schedule: Schedule,
    sql: String,
    bind: Bind,
    target: Target,
    build: Build,
    /// Said with a large sequential scan, when there is a known fix.
    hint: Option<&'static str>,
    /// The series to publish instead of failing when the query reads an
    /// optional extension that is not there (SQLSTATE 42P01, or 55000
    /// when it is not preloaded): its absence is a fact, not an error.
    when_absent: Option<fn() -> Snapshot>,
}

/// The started background queries.
pub struct Background {
    pub own: Vec<Arc<Job>>,
    pub guide: Vec<Arc<Job>>,
    tasks: Tasks,
}

impl Background {
    /// Every job, for their `query_*` series.
    pub fn all(&self) -> Vec<Arc<Job>> {
        self.own.iter().chain(&self.guide).cloned().collect()
    }

    pub fn stop(&self) {
        self.tasks.stop();
    }
}

/// Starts every background query of `config` on `pool`.
/// `tcp` is the server's address when it is reached over TCP (a refused
/// connection then fails a run at once instead of at its timeout).
pub fn start(pool: PgPool, tcp: Option<(String, u16)>, config: &DatabaseConfig) -> Background {
    let background = Background {
        own: Vec::new(),
        guide: Vec::new(),
        tasks: Tasks::default(),
    };
    let warn_rows = config.seq_scan_warn_rows as f64;
    specs(config).into_iter().fold(background, |mut b, spec| {
        let job = Job::new(spec.name.clone(), spec.schedule);
        match spec.target {
            Target::Own => b.own.push(job.clone()),
            Target::Guide => b.guide.push(job.clone()),
        }
        b.tasks.push(background::spawn(
            job.clone(),
            reader(pool.clone(), tcp.clone(), spec, job, warn_rows),
        ));
        b
    })
}

fn specs(config: &DatabaseConfig) -> Vec<Spec> {
    let q = &config.queries;
    let r = &config.refresh;
    let number = |name: &'static str, help: &'static str, unit: Option<Unit>| -> Build {
        Box::new(move |rows: &[PgRow]| {
            let v = rows
                .first()
                .and_then(|row| column_f64(row, 0))
                .ok_or(RowsError::FirstNotNumber)?;
            let mut s = Snapshot::default();
            s.gauge(name, help, unit.clone()).value(v);
            Ok(s)
        })
    };
    // A backlog and the age of its oldest row: the weekly job running on a
    // busy system never brings the count to 0, but keeps the oldest row
    // younger than its cut-off plus a week.
    let backlog = |name: &'static str,
                   help: &'static str,
                   age_name: &'static str,
                   age_help: &'static str|
     -> Build {
        Box::new(move |rows: &[PgRow]| {
            let row = rows.first().ok_or(RowsError::NoRow)?;
            let n = column_f64(row, 0).ok_or(RowsError::FirstNotNumber)?;
            let mut s = Snapshot::default();
            s.gauge(name, help, None).value(n);
            if let Some(age) = column_f64(row, 1) {
                s.gauge(age_name, age_help, Some(Unit::Seconds)).value(age);
            }
            Ok(s)
        })
    };
    let mut specs = vec![
        Spec {
            name: "active_sessions".into(),
            schedule: r.active_sessions,
            sql: q.active_sessions.clone(),
            bind: Bind::Seconds(config.active_window.as_secs_f64()),
            target: Target::Guide,
            build: number(
                "active_sessions",
                "Chat sessions updated within database.active_window (the guide's active_sessions_total), as of the latest background run.",
                None,
            ),
            hint: Some("an index on chat_sessions(updated_at) makes it cheap (docs/runbooks.md#llmchatbackgroundqueryfailing)"),
            when_absent: None,
        },
        Spec {
            name: "agents".into(),
            schedule: r.agents,
            sql: q.agents.clone(),
            bind: Bind::None,
            target: Target::Guide,
            build: Box::new(agents),
            hint: None,
            when_absent: None,
        },
        Spec {
            name: "database_size".into(),
            schedule: r.database_size,
            sql: "SELECT pg_database_size(current_database())::float8".into(),
            bind: Bind::None,
            target: Target::Own,
            build: number(
                "size",
                "Size of the LLMChat database, as of the latest background run.",
                Some(Unit::Bytes),
            ),
            hint: None,
            when_absent: None,
        },
        Spec {
            name: "table_sizes".into(),
            schedule: r.table_sizes,
            sql: "SELECT relname::text, pg_total_relation_size(relid)::float8 FROM pg_stat_user_tables WHERE relname = ANY($1)".into(),
            bind: Bind::Names(config.tables.clone()),
            target: Target::Own,
            build: Box::new(table_sizes),
            hint: None,
            when_absent: None,
        },
        Spec {
            name: "expired_sessions".into(),
            schedule: r.expired_sessions,
            sql: q.expired_sessions.clone(),
            bind: Bind::None,
            target: Target::Guide,
            build: backlog(
                "expired_sessions",
                "Sessions not updated for 30+ days, which the weekly maintenance deletes, as of the latest background run.",
                "expired_sessions_oldest_age",
                "How long the oldest of the expired sessions has been idle (0 when there is none); over 38 days, a weekly cleanup was missed.",
            ),
            hint: Some("an index on chat_sessions(updated_at) makes it cheap"),
            when_absent: None,
        },
        Spec {
            name: "orphaned_messages".into(),
            schedule: r.orphaned_messages,
            sql: q.orphaned_messages.clone(),
            bind: Bind::None,
            target: Target::Guide,
            build: backlog(
                "orphaned_messages",
                "Messages older than 90 days without a session, which the weekly maintenance deletes, as of the latest background run.",
                "orphaned_messages_oldest_age",
                "Age of the oldest of the orphaned messages (0 when there is none); over 98 days, a weekly cleanup was missed.",
            ),
            hint: Some("an index on messages(created_at) makes it cheap"),
            when_absent: None,
        },
        Spec {
            name: "statements".into(),
            schedule: r.statements,
            sql: STATEMENTS_SQL.into(),
            bind: Bind::Seconds(config.slow_query_threshold.as_secs_f64()),
            target: Target::Own,
            build: Box::new(statements),
            hint: None,
            when_absent: Some(statements_absent),
        },
    ];
    for c in &config.custom_queries {
        let custom = c.clone();
        specs.push(Spec {
            name: format!("custom_{}", c.name),
            schedule: c.schedule(),
            sql: c.sql.clone(),
            bind: Bind::None,
            target: Target::Guide,
            build: Box::new(move |rows: &[PgRow]| {
                let mut s = Snapshot::default();
                if custom_family(&mut s, &custom, rows) {
                    Ok(s)
                } else {
                    Err(RowsError::CustomColumns(custom.value.clone()))
                }
            }),
            hint: None,
            when_absent: None,
        });
    }
    specs
}

/// pg_stat_statements' totals for this database. The view reads a
/// shared-memory table of at most `pg_stat_statements.max` (5,000) rows,
/// whatever the data's size. `$1` is the slow threshold in seconds.
const STATEMENTS_SQL: &str = "SELECT coalesce(sum(calls), 0)::float8, \
     coalesce(sum(total_exec_time), 0)::float8 / 1000, \
     coalesce(sum(calls) FILTER (WHERE mean_exec_time > $1 * 1000), 0)::float8, \
     count(*) FILTER (WHERE mean_exec_time > $1 * 1000)::float8 \
     FROM pg_stat_statements \
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())";

const STATEMENTS_AVAILABLE: &str = "1 if pg_stat_statements can be read in the LLMChat database (shared_preload_libraries and CREATE EXTENSION), else 0; the statement series exist only when it is 1.";

fn statements(rows: &[PgRow]) -> Result<Snapshot, RowsError> {
    let row = rows.first().ok_or(RowsError::NoRow)?;
    let col = |i| column_f64(row, i).ok_or(RowsError::NotNumber);
    let mut s = Snapshot::default();
    s.gauge("statements_available", STATEMENTS_AVAILABLE, None)
        .value(1.0);
    s.counter(
        "statement_calls",
        "Statements executed in the LLMChat database (pg_stat_statements' calls; drops at pg_stat_statements_reset()).",
        None,
    )
    .value(col(0)?);
    s.counter(
        "statement_execution",
        "Time spent executing statements in the LLMChat database (pg_stat_statements' total_exec_time).",
        Some(Unit::Seconds),
    )
    .value(col(1)?);
    s.counter(
        "slow_queries",
        "Calls of statements whose mean execution time is over database.slow_query_threshold (the guide's 慢查询数量).",
        None,
    )
    .value(col(2)?);
    s.gauge(
        "slow_statements",
        "Distinct statements whose mean execution time is over database.slow_query_threshold.",
        None,
    )
    .value(col(3)?);
    Ok(s)
}

fn statements_absent() -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge("statements_available", STATEMENTS_AVAILABLE, None)
        .value(0.0);
    s
}

fn agents(rows: &[PgRow]) -> Result<Snapshot, RowsError> {
    let mut s = Snapshot::default();
    let mut f = s.gauge(
        "agents",
        "Agents by provider and whether they are active, as of the latest background run.",
        None,
    );
    for r in rows {
        let provider: String = r.try_get(0).unwrap_or_else(|_| "unknown".into());
        let active: bool = r.try_get(1).unwrap_or(false);
        if let Some(n) = column_f64(r, 2) {
            f.sample(
                &[
                    ("provider", &provider),
                    ("active", if active { "true" } else { "false" }),
                ],
                n,
            );
        }
    }
    Ok(s)
}

fn table_sizes(rows: &[PgRow]) -> Result<Snapshot, RowsError> {
    let mut s = Snapshot::default();
    let mut f = s.gauge(
        "table_size",
        "Total size of each table with indexes and TOAST, as of the latest background run.",
        Some(Unit::Bytes),
    );
    for r in rows {
        if let (Ok(table), Some(v)) = (r.try_get::<String, _>(0), column_f64(r, 1)) {
            f.sample(&[("table", &table)], v);
        }
    }
    Ok(s)
}

/// The job's read: the plan check until it has been done once, then the
/// query itself.
fn reader(
    pool: PgPool,
    tcp: Option<(String, u16)>,
    spec: Spec,
    job: Arc<Job>,
    warn_rows: f64,
) -> background::Read {
    let spec = Arc::new(spec);
    let planned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Box::new(move || {
        let (pool, tcp, spec, job, planned) = (
            pool.clone(),
            tcp.clone(),
            spec.clone(),
            job.clone(),
            planned.clone(),
        );
        let read: BoxFuture<'static, Result<Snapshot, BackgroundError>> = Box::pin(async move {
            super::refused_fast(tcp.as_ref(), &pool)
                .await
                .map_err(|e| BackgroundError::Failed(Box::new(e)))?;
            if !planned.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(rows) = check_plan(&pool, &spec, &job, warn_rows).await {
                    planned.store(true, std::sync::atomic::Ordering::Relaxed);
                    job.set_plan_seq_scan_rows(rows);
                }
            }
            let rows = run(
                pool,
                spec.sql.clone(),
                spec.bind.clone(),
                spec.schedule.timeout,
            )
            .await;
            let rows = match (rows, spec.when_absent) {
                (Err(e), Some(absent)) if is_absent(&e) => return Ok(absent()),
                (rows, _) => rows?,
            };
            (spec.build)(&rows).map_err(|e| BackgroundError::Failed(e.into()))
        });
        read
    })
}

/// Runs `sql` in a read-only transaction that PostgreSQL stops at `timeout`.
/// Boxed, over owned values: a future that holds a `&mut PgConnection`
/// across awaits is otherwise not provably `Send` for every lifetime.
fn run(
    pool: PgPool,
    sql: String,
    bind: Bind,
    timeout: Duration,
) -> BoxFuture<'static, Result<Vec<PgRow>, BackgroundError>> {
    Box::pin(async move {
        let mut conn = pool.acquire().await.map_err(|e| classify(e, timeout))?;
        // SET takes no bind parameters; the number is ours, not input.
        let ms = timeout.as_millis().max(1);
        // One core at most: a parallel scan would take every core of the
        // database it watches (and the scrape's share with them).
        let begin = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL max_parallel_workers_per_gather = 0"
        );
        // A plain string runs as a simple query, so it may hold two statements.
        conn.execute(begin.as_str())
            .await
            .map_err(|e| classify(e, timeout))?;
        let rows = bind.apply(sqlx::query(&sql)).fetch_all(&mut *conn).await;
        // Read-only: nothing to keep. A connection that cannot even roll
        // back is closed rather than pooled.
        if conn.execute("ROLLBACK").await.is_err() {
            conn.detach();
        }
        rows.map_err(|e| classify(e, timeout))
    })
}

/// An optional extension's view that is not there: 42P01
/// (undefined_table, no CREATE EXTENSION) or 55000
/// (object_not_in_prerequisite_state, not in shared_preload_libraries).
fn is_absent(e: &BackgroundError) -> bool {
    let BackgroundError::Failed(e) = e else {
        return false;
    };
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("42P01") | Some("55000"))
        }
        _ => false,
    }
}

/// `57014` (query_canceled) is what `statement_timeout` raises.
fn classify(e: sqlx::Error, timeout: Duration) -> BackgroundError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
            BackgroundError::Timeout(timeout)
        }
        sqlx::Error::PoolTimedOut => BackgroundError::Timeout(timeout),
        _ => BackgroundError::Failed(Box::new(e)),
    }
}

/// Reads the query's plan and returns the rows of the largest table it
/// reads sequentially (0 if none), saying so once if that is over
/// `warn_rows`.
async fn check_plan(
    pool: &PgPool,
    spec: &Spec,
    job: &Job,
    warn_rows: f64,
) -> Result<f64, sqlx::Error> {
    let explain = format!("EXPLAIN (VERBOSE, FORMAT JSON) {}", spec.sql);
    let row = spec
        .bind
        .apply(sqlx::query(&explain))
        .fetch_one(pool)
        .await
        .inspect_err(|e| {
            tracing::debug!(query = %job.name, error = %e, "cannot read the query's plan; trying again at its next run")
        })?;
    let plan: serde_json::Value = row.try_get(0)?;
    let mut scans = Vec::new();
    seq_scans(&plan, &mut scans);
    let mut largest: Option<(String, f64)> = None;
    for (schema, table, plan_rows) in scans {
        let rows: f64 = sqlx::query_scalar(
            "SELECT greatest(c.reltuples, 0)::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(&schema)
        .bind(&table)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0.0f64)
        .max(plan_rows);
        if largest.as_ref().is_none_or(|(_, r)| rows > *r) {
            largest = Some((table, rows));
        }
    }
    let rows = largest.as_ref().map_or(0.0, |(_, r)| *r);
    if let Some((table, rows)) = largest.filter(|(_, r)| *r > warn_rows) {
        tracing::warn!(
            query = %job.name,
            table = %table,
            rows,
            hint = spec.hint.unwrap_or("an index that serves its WHERE clause would"),
            "the query reads a large table sequentially on every run"
        );
    }
    Ok(rows)
}

/// (schema, table, estimated rows) of every sequential scan in a plan.
fn seq_scans(node: &serde_json::Value, out: &mut Vec<(String, String, f64)>) {
    match node {
        serde_json::Value::Array(items) => items.iter().for_each(|n| seq_scans(n, out)),
        serde_json::Value::Object(map) => {
            if map.get("Node Type").and_then(|t| t.as_str()) == Some("Seq Scan") {
                let text = |k: &str| map.get(k).and_then(|v| v.as_str()).unwrap_or_default();
                out.push((
                    text("Schema").to_string(),
                    text("Relation Name").to_string(),
                    map.get("Plan Rows").and_then(|v| v.as_f64()).unwrap_or(0.0),
                ));
            }
            for v in map.values() {
                seq_scans(v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_scans_are_found_anywhere_in_a_plan() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Aggregate",
            "Plans": [
                {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "messages", "Plan Rows": 12.0},
                {"Node Type": "Index Scan", "Schema": "public", "Relation Name": "chat_sessions", "Plan Rows": 3.0}
            ]
        }}]);
        let mut scans = Vec::new();
        seq_scans(&plan, &mut scans);
        assert_eq!(scans, vec![("public".into(), "messages".into(), 12.0)]);
    }
}
