//! Quantiles from histogram bucket counts, as `histogram_quantile` reckons
//! them (linear interpolation inside the bucket the rank falls in), but
//! saying when the rank falls in the `+Inf` bucket: the report then shows
//! "> 10 s" rather than the 10 s Prometheus caps it at. The report sums
//! hours into local days itself, so it needs the same arithmetic here.

use serde::Serialize;

/// An estimated quantile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Seconds; with `above_top_bucket`, the top bucket's bound.
    pub seconds: f64,
    /// The quantile is over the highest finite bucket bound: only a lower
    /// bound is known.
    pub above_top_bucket: bool,
}

/// `sum by (le) (...)`'s answer as (bound, count) pairs; Rust reads
/// Prometheus' `+Inf` as infinity.
pub fn buckets(series: &[(super::prometheus::Labels, f64)]) -> Vec<(f64, f64)> {
    series
        .iter()
        .filter_map(|(l, c)| Some((l.get("le")?.parse().ok()?, *c)))
        .collect()
}

/// Cumulative bucket counts by upper bound (`le`, `+Inf` included), in any
/// order. `None` without observations or without a `+Inf` bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<Estimate> {
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(_, c)| c.is_finite())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let &(top, total) = b.last()?;
    if top != f64::INFINITY || total <= 0.0 || b.len() < 2 {
        return None;
    }
    // Counts from a rate can dip by rounding: keep them monotonic, as
    // Prometheus does.
    for i in 1..b.len() {
        b[i].1 = b[i].1.max(b[i - 1].1);
    }
    let rank = q * total;
    let i = b[..b.len() - 1]
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(b.len() - 1);
    if i == b.len() - 1 {
        return Some(Estimate {
            seconds: b[b.len() - 2].0,
            above_top_bucket: true,
        });
    }
    let (upper, count) = b[i];
    if i == 0 && upper <= 0.0 {
        return Some(Estimate {
            seconds: upper,
            above_top_bucket: false,
        });
    }
    let (lower, below) = if i > 0 { b[i - 1] } else { (0.0, 0.0) };
    let in_bucket = count - below;
    let seconds = if in_bucket > 0.0 {
        lower + (upper - lower) * ((rank - below) / in_bucket)
    } else {
        upper
    };
    Some(Estimate {
        seconds,
        above_top_bucket: false,
    })
}

/// Adds bucket counts of the same bounds (hours into a day).
pub fn add(into: &mut Vec<(f64, f64)>, more: &[(f64, f64)]) {
    for (le, c) in more {
        match into.iter_mut().find(|(l, _)| l == le) {
            Some(slot) => slot.1 += c,
            None => into.push((*le, *c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_like_histogram_quantile() {
        // 80 under 1 s, 95 under 2 s, 100 in all.
        let b = [
            (0.5, 50.0),
            (1.0, 80.0),
            (2.0, 95.0),
            (5.0, 100.0),
            (INF, 100.0),
        ];
        let p95 = quantile(0.95, &b).unwrap();
        assert_eq!(p95.seconds, 2.0);
        assert!(!p95.above_top_bucket);
        // The 99th: 4 of the 5 in (2, 5].
        assert!((quantile(0.99, &b).unwrap().seconds - 4.4).abs() < 1e-9);
        // Half of the first bucket: from 0.
        assert_eq!(quantile(0.25, &b).unwrap().seconds, 0.25);
    }

    #[test]
    fn the_top_bucket_is_a_lower_bound() {
        let b = [(1.0, 10.0), (10.0, 90.0), (INF, 100.0)];
        let p95 = quantile(0.95, &b).unwrap();
        assert_eq!(p95.seconds, 10.0);
        assert!(p95.above_top_bucket);
        assert!(!quantile(0.5, &b).unwrap().above_top_bucket);
    }

    #[test]
    fn no_observations_no_quantile() {
        assert_eq!(quantile(0.95, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(quantile(0.95, &[(1.0, 3.0)]), None);
        assert_eq!(quantile(0.95, &[]), None);
    }

    #[test]
    fn days_are_summed_hours() {
        let mut day = Vec::new();
        add(&mut day, &[(1.0, 1.0), (INF, 2.0)]);
        add(&mut day, &[(1.0, 3.0), (INF, 4.0)]);
        assert_eq!(day, vec![(1.0, 4.0), (INF, 6.0)]);
    }
}
