//! The alerts that fired in the period, from Prometheus' own `ALERTS`
//! series: each firing spell with its start, end and duration. Resolution
//! is the query step (a minute up to 35 days): a spell shorter than that
//! may be missed, and its times are right to within a step.

use std::collections::BTreeMap;

use serde::Serialize;

use super::prometheus::{Client, Labels};
use super::{Job, ReportError};

/// One spell of one alert (one label set) firing.
#[derive(Debug, Clone, Serialize)]
pub struct FiredAlert {
    pub alertname: String,
    pub severity: String,
    /// The alert's other labels that say what it is about (instance,
    /// agent_id, mountpoint, …); job, alertstate and severity left out.
    pub labels: BTreeMap<String, String>,
    pub start: f64,
    /// `None`: still firing at the period's end.
    pub end: Option<f64>,
    pub duration_seconds: f64,
}

impl FiredAlert {
    /// `instance=a:9842, mountpoint=/`, for the text.
    pub fn subject(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The step of the `ALERTS` query: a minute while the period has at most
/// 50,000 of them (35 days), else coarser.
pub fn step(from: f64, to: f64) -> f64 {
    ((to - from) / 50_000.0).max(60.0).ceil()
}

/// Every firing spell in `[from, to]`, longest first. The Watchdog (always
/// firing by design) and alerts of another job are left out; alerts with no
/// job label (fleet-wide ones) are kept.
pub async fn fired(
    client: &Client,
    job: &Job,
    from: f64,
    to: f64,
) -> Result<Vec<FiredAlert>, ReportError> {
    let step = step(from, to);
    let expr = format!(
        "ALERTS{{alertstate=\"firing\",alertname!=\"Watchdog\",severity!=\"none\",{}}}",
        job.or_absent()
    );
    let series = client.matrix(&expr, from, to, step).await?;
    let mut out = Vec::new();
    for (labels, points) in series {
        spells(&labels, &points, step, to, &mut out);
    }
    out.sort_by(|a, b| {
        b.duration_seconds
            .total_cmp(&a.duration_seconds)
            .then(a.start.total_cmp(&b.start))
    });
    Ok(out)
}

/// Splits one series' samples into spells: a gap of more than a step ends
/// one. A spell ends a step after its last sample, unless that sample is
/// the period's last.
fn spells(labels: &Labels, points: &[(f64, f64)], step: f64, to: f64, out: &mut Vec<FiredAlert>) {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let subject: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "__name__" | "alertname" | "alertstate" | "severity" | "job"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut i = 0;
    while i < points.len() {
        let start = points[i].0;
        let mut last = start;
        i += 1;
        while i < points.len() && points[i].0 - last <= step * 1.5 {
            last = points[i].0;
            i += 1;
        }
        let end = (last + step < to).then_some(last + step);
        out.push(FiredAlert {
            alertname: get("alertname"),
            severity: get("severity"),
            labels: subject.clone(),
            start,
            end,
            duration_seconds: end.unwrap_or(to) - start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_spells_and_the_last_may_still_fire() {
        let labels: Labels = [
            ("alertname", "LLMChatHighErrorRate"),
            ("alertstate", "firing"),
            ("severity", "critical"),
            ("job", "llmchat-exporter"),
            ("instance", "a:9842"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let points: Vec<(f64, f64)> = [0.0, 60.0, 120.0, 600.0, 660.0]
            .iter()
            .map(|t| (*t, 1.0))
            .collect();
        let mut out = Vec::new();
        spells(&labels, &points, 60.0, 700.0, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].start, out[0].end), (0.0, Some(180.0)));
        assert_eq!(out[0].duration_seconds, 180.0);
        assert_eq!((out[1].start, out[1].end), (600.0, None));
        assert_eq!(out[0].subject(), "instance=a:9842");
        assert_eq!(out[0].severity, "critical");
    }
}
