//! The period hour by hour (local whole hours), and what the report makes
//! of the hours: local days, the busiest hour, the typical daily peak, the
//! worst hours and days (5xx ratio, p95, saturation).
//!
//! Hours are asked of Prometheus (one range query per figure, in pieces
//! under its point limit); days are sums of hours made here, so they start
//! at local midnight whatever the zone's offset or DST.

use std::collections::BTreeMap;

use super::histogram::{self, Estimate};
use super::model::{Period, TypicalPeak};
use super::prometheus::Client;
use super::time::Zone;
use super::{Job, ReportError};

/// One local whole hour, ending at `end`.
#[derive(Debug, Clone)]
pub struct Hour {
    pub end: f64,
    pub requests: f64,
    pub server_errors: f64,
    /// Cumulative bucket counts by upper bound.
    pub buckets: Vec<(f64, f64)>,
    pub cpu_max: Option<f64>,
    pub memory_max: Option<f64>,
}

/// The hours of `[from, to]` that are whole local hours; a period too short
/// or too skewed to hold one gets the hour that ends at `to`.
pub async fn hours(
    client: &Client,
    job: &Job,
    zone: &Zone,
    from: f64,
    to: f64,
) -> Result<Vec<Hour>, ReportError> {
    let first = zone.next_whole_hour(from + 3600.0);
    let start = if first <= to { first } else { to };
    let requests = job.sel("llmchat_http_requests_total", "");
    let server_errors = job.sel("llmchat_http_requests_total", r#"status_code=~"5..""#);
    let bucket = job.sel("llmchat_http_request_duration_seconds_bucket", "");
    let cpu = job.sel("llmchat_host_cpu_usage_ratio", "");
    // Gauges over [end - 1h, end - 1s]: a sample at the very end of the
    // hour belongs to the next one (a range selector includes both ends).
    let memory = format!(
        "max(1 - min_over_time({}[3599s] offset 1s) / max_over_time({}[3599s] offset 1s))",
        job.sel("llmchat_host_memory_available_bytes", ""),
        job.sel("llmchat_host_memory_total_bytes", "")
    );
    let range = |expr: String| async move { client.range(&expr, start, to, 3600.0).await };
    let buckets_expr = format!("sum by (le) (increase({bucket}[1h]))");
    let (req, errors, cpu, memory, buckets) = tokio::try_join!(
        range(format!("sum(increase({requests}[1h]))")),
        range(format!("sum(increase({server_errors}[1h]))")),
        range(format!("max(max_over_time({cpu}[3599s] offset 1s))")),
        range(memory),
        client.matrix(&buckets_expr, start, to, 3600.0),
    )?;
    let at = |points: &[(f64, f64)], t: f64| {
        points
            .iter()
            .find(|(pt, _)| (pt - t).abs() < 0.5)
            .map(|(_, v)| *v)
    };
    let mut ends: Vec<f64> = req.iter().chain(&cpu).chain(&memory).map(|p| p.0).collect();
    ends.sort_by(f64::total_cmp);
    ends.dedup();
    Ok(ends
        .into_iter()
        .map(|t| Hour {
            end: t,
            requests: at(&req, t).unwrap_or(0.0),
            server_errors: at(&errors, t).unwrap_or(0.0),
            buckets: buckets
                .iter()
                .filter_map(|(labels, points)| {
                    let le = labels.get("le")?.parse::<f64>().ok()?;
                    Some((le, at(points, t)?))
                })
                .collect(),
            cpu_max: at(&cpu, t),
            memory_max: at(&memory, t),
        })
        .collect())
}

/// Sums hours into one span.
pub fn period(hours: &[Hour]) -> Option<Period> {
    let first = hours.first()?;
    let last = hours.last()?;
    let requests: f64 = hours.iter().map(|h| h.requests).sum();
    let server_errors: f64 = hours.iter().map(|h| h.server_errors).sum();
    let mut buckets = Vec::new();
    for h in hours {
        histogram::add(&mut buckets, &h.buckets);
    }
    let max = |f: fn(&Hour) -> Option<f64>| hours.iter().filter_map(f).reduce(f64::max);
    Some(Period {
        start: first.end - 3600.0,
        end: last.end,
        requests,
        requests_per_second: requests / (hours.len() as f64 * 3600.0),
        server_errors,
        server_error_ratio: (requests > 0.0).then(|| server_errors / requests),
        p95: histogram::quantile(0.95, &buckets),
        cpu_max: max(|h| h.cpu_max),
        memory_max: max(|h| h.memory_max),
    })
}

/// Each hour as a span.
pub fn each_hour(hours: &[Hour]) -> Vec<Period> {
    hours.chunks(1).filter_map(period).collect()
}

/// Local days (the hours that start on each), in order.
pub fn days(hours: &[Hour], zone: &Zone) -> Vec<Period> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < hours.len() {
        let day = zone.day(hours[i].end - 3600.0);
        let mut j = i + 1;
        while j < hours.len() && zone.day(hours[j].end - 3600.0) == day {
            j += 1;
        }
        out.extend(period(&hours[i..j]));
        i = j;
    }
    out
}

/// The hour of day whose mean traffic is highest, over whole days only
/// (under a day, every hour of day is seen once at most: no "typical").
pub fn typical_peak(hours: &[Hour], zone: &Zone) -> Option<TypicalPeak> {
    if hours.len() < 24 {
        return None;
    }
    let mut by_hour: BTreeMap<u8, (f64, f64)> = BTreeMap::new();
    for h in hours {
        let slot = by_hour.entry(zone.hour_of_day(h.end - 3600.0)).or_default();
        slot.0 += h.requests;
        slot.1 += 1.0;
    }
    by_hour
        .into_iter()
        .map(|(hour, (n, count))| TypicalPeak {
            hour_of_day: hour,
            requests_per_second: n / count / 3600.0,
        })
        .max_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second))
}

/// The busiest single hour (the first, among equals).
pub fn busiest(hours: &[Period]) -> Option<Period> {
    hours
        .iter()
        .filter(|p| p.requests > 0.0)
        .max_by(|a, b| {
            a.requests
                .total_cmp(&b.requests)
                .then(b.start.total_cmp(&a.start))
        })
        .cloned()
}

/// The spans with the highest 5xx ratio, worst first: at most `n`, only
/// those worse than `baseline` (the period's own ratio: an ordinary hour
/// is not an incident) and with at least a tenth of the mean span's
/// traffic (nor is one failed request in a quiet hour).
pub fn worst(spans: &[Period], baseline: f64, n: usize) -> Vec<Period> {
    let mean = spans.iter().map(|p| p.requests).sum::<f64>() / spans.len().max(1) as f64;
    let mut out: Vec<Period> = spans
        .iter()
        .filter(|p| p.server_errors > 0.0 && p.requests >= mean / 10.0)
        .filter(|p| p.server_error_ratio.unwrap_or(0.0) > baseline)
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        b.server_error_ratio
            .unwrap_or(0.0)
            .total_cmp(&a.server_error_ratio.unwrap_or(0.0))
            .then(a.start.total_cmp(&b.start))
    });
    out.truncate(n);
    out
}

/// The hour with the highest p95 (one above the top bucket beats any),
/// if it is slower than `baseline` (the period's p95): when every hour is
/// alike, none is the slowest.
pub fn slowest(hours: &[Period], baseline: Option<f64>) -> Option<Period> {
    let key = |e: &Option<Estimate>| {
        e.map_or(f64::MIN, |e| {
            if e.above_top_bucket {
                f64::MAX
            } else {
                e.seconds
            }
        })
    };
    hours
        .iter()
        .filter(|p| p.p95.is_some())
        .max_by(|a, b| {
            key(&a.p95)
                .total_cmp(&key(&b.p95))
                .then(b.start.total_cmp(&a.start))
        })
        .filter(|p| key(&p.p95) > baseline.unwrap_or(f64::MIN) * (1.0 + 1e-9))
        .cloned()
}

/// The hour with the highest CPU or memory peak (the first, among
/// equals); none when every hour peaks alike.
pub fn most_saturated(hours: &[Period]) -> Option<Period> {
    let key = |p: &Period| p.cpu_max.unwrap_or(0.0).max(p.memory_max.unwrap_or(0.0));
    let seen: Vec<&Period> = hours
        .iter()
        .filter(|p| p.cpu_max.is_some() || p.memory_max.is_some())
        .collect();
    let lowest = seen.iter().map(|p| key(p)).reduce(f64::min)?;
    seen.into_iter()
        .max_by(|a, b| key(a).total_cmp(&key(b)).then(b.start.total_cmp(&a.start)))
        .filter(|p| key(p) > lowest)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(end: f64, requests: f64, errors: f64) -> Hour {
        Hour {
            end,
            requests,
            server_errors: errors,
            buckets: vec![(1.0, requests * 0.9), (f64::INFINITY, requests)],
            cpu_max: Some(0.5),
            memory_max: None,
        }
    }

    #[test]
    fn days_start_at_local_midnight() {
        let sh = Zone::new(Some("Asia/Shanghai")).unwrap();
        // 48 hours from 2026-11-01T00:00+08:00.
        let start = 1_793_462_400.0;
        let hours: Vec<Hour> = (1..=48)
            .map(|i| hour(start + 3600.0 * i as f64, 100.0, 0.0))
            .collect();
        let d = days(&hours, &sh);
        assert_eq!(d.len(), 2);
        assert_eq!(sh.minute(d[1].start), "2026-11-02 00:00");
        assert_eq!(d[0].requests, 2400.0);
        // In UTC the same hours straddle three days.
        assert_eq!(days(&hours, &Zone::new(Some("UTC")).unwrap()).len(), 3);
    }

    #[test]
    fn worst_hours_need_traffic_and_errors() {
        let hours = vec![
            hour(3600.0, 1000.0, 10.0),
            hour(7200.0, 1000.0, 300.0),
            hour(10800.0, 2.0, 2.0),
            hour(14400.0, 1000.0, 0.0),
        ];
        let w = worst(&each_hour(&hours), 0.0, 5);
        assert_eq!(w.len(), 2, "the quiet hour and the clean one are out");
        assert_eq!(worst(&each_hour(&hours), 0.05, 5).len(), 1, "the baseline");
        assert_eq!(w[0].end, 7200.0);
        assert_eq!(w[0].server_error_ratio, Some(0.3));
    }

    #[test]
    fn alike_hours_have_no_most_saturated_one_and_the_first_busiest() {
        let hours = each_hour(&[hour(3600.0, 10.0, 0.0), hour(7200.0, 10.0, 0.0)]);
        assert!(most_saturated(&hours).is_none());
        assert_eq!(busiest(&hours).unwrap().end, 3600.0);
        let mut hot = hour(10800.0, 10.0, 0.0);
        hot.memory_max = Some(0.99);
        let hours = each_hour(&[hour(3600.0, 10.0, 0.0), hot]);
        assert_eq!(most_saturated(&hours).unwrap().end, 10800.0);
    }
}
