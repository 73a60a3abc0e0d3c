//! Turning PostgreSQL rows into series: per-table statistics, custom
//! queries, and numbers of whatever numeric type a query returns.

use prometheus_client::registry::Unit;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::CustomQuery;
use crate::collector_kit::snapshot::Snapshot;

pub fn table_stats(s: &mut Snapshot, rows: &[PgRow]) {
    struct Col {
        index: usize,
        name: &'static str,
        help: &'static str,
        counter: bool,
        unit: Option<Unit>,
    }
    let cols = [
        Col {
            index: 1,
            name: "table_live_tuples",
            help: "Live rows in the table (n_live_tup).",
            counter: false,
            unit: None,
        },
        Col {
            index: 2,
            name: "table_dead_tuples",
            help: "Dead rows awaiting VACUUM (n_dead_tup).",
            counter: false,
            unit: None,
        },
        Col {
            index: 3,
            name: "table_inserted_rows",
            help: "Rows inserted since the statistics reset (n_tup_ins).",
            counter: true,
            unit: None,
        },
        Col {
            index: 4,
            name: "table_updated_rows",
            help: "Rows updated since the statistics reset (n_tup_upd).",
            counter: true,
            unit: None,
        },
        Col {
            index: 5,
            name: "table_deleted_rows",
            help: "Rows deleted since the statistics reset (n_tup_del).",
            counter: true,
            unit: None,
        },
        Col {
            index: 6,
            name: "table_last_vacuum_timestamp",
            help: "Last manual VACUUM, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 7,
            name: "table_last_autovacuum_timestamp",
            help: "Last autovacuum, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 8,
            name: "table_last_analyze_timestamp",
            help: "Last manual ANALYZE, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 9,
            name: "table_last_autoanalyze_timestamp",
            help: "Last autoanalyze, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
    ];
    for c in cols {
        let mut f = if c.counter {
            s.counter(c.name, c.help, c.unit)
        } else {
            s.gauge(c.name, c.help, c.unit)
        };
        for r in rows {
            let Ok(table) = r.try_get::<String, _>(0) else {
                continue;
            };
            // A table never vacuumed has no timestamp: no sample.
            if let Some(v) = column_f64(r, c.index) {
                f.sample(&[("table", &table)], v);
            }
        }
    }
}

/// Exports one custom query; false when its rows do not fit its config.
pub fn custom_family(s: &mut Snapshot, c: &CustomQuery, rows: &[PgRow]) -> bool {
    let mut samples = Vec::new();
    for r in rows {
        let Some(value) = column_f64_named(r, &c.value) else {
            return false;
        };
        let mut labels = Vec::new();
        for l in &c.labels {
            let Some(v) = column_text(r, l) else {
                return false;
            };
            labels.push((l.clone(), v));
        }
        samples.push((labels, value));
    }
    let mut f = s.gauge(format!("custom_{}", c.name), c.help.clone(), None);
    for (labels, value) in samples {
        f.sample_dynamic(labels, value);
    }
    true
}

pub fn column_f64(row: &PgRow, index: usize) -> Option<f64> {
    if let Ok(v) = row.try_get::<Option<f64>, _>(index) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(index) {
        return v.map(|v| v as f64);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(index) {
        return v.map(f64::from);
    }
    if let Ok(v) = row.try_get::<Option<f32>, _>(index) {
        return v.map(f64::from);
    }
    None
}

fn column_f64_named(row: &PgRow, name: &str) -> Option<f64> {
    use sqlx::Column;
    let index = row.columns().iter().position(|c| c.name() == name)?;
    column_f64(row, index)
}

fn column_text(row: &PgRow, name: &str) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(name) {
        return Some(v.unwrap_or_default());
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(name) {
        return Some(v.map(|b| b.to_string()).unwrap_or_default());
    }
    column_f64_named(row, name).map(|v| v.to_string())
}
