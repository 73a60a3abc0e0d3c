//! The deploys of the period, from `llmchat_app_info` (the version each
//! instance's `/health` reports): each version change of the job with its
//! 5xx ratio and p95 in the hour before and the hour after, and the one
//! that made things worst. Times are right to within the query step (a
//! minute up to 35 days).

use std::collections::BTreeMap;

use serde::Serialize;

use super::histogram::{buckets, quantile, Estimate};
use super::prometheus::Client;
use super::{alerts, Job, ReportError};

/// At most this many deploys are measured (two queries each).
const MAX_DEPLOYS: usize = 100;

/// The hour before or after a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct DeployHour {
    pub requests: f64,
    pub error_ratio: Option<f64>,
    pub p95: Option<Estimate>,
}

/// One version reaching the job's instances.
#[derive(Debug, Clone, Serialize)]
pub struct Deploy {
    pub version: String,
    /// The version the first instance ran before.
    pub previous_version: Option<String>,
    /// When the first instance reported it.
    pub at: f64,
    pub instances: usize,
    pub before: DeployHour,
    pub after: DeployHour,
    /// The deploy after which the 5xx ratio (else the p95) rose most.
    pub worst: bool,
}

/// One instance's change of version.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    instance: String,
    at: f64,
    version: String,
    previous: String,
}

/// The changes in one instance's samples (time, version), in time order.
fn changes_of(instance: &str, mut samples: Vec<(f64, String)>) -> Vec<Change> {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    samples
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| Change {
            instance: instance.to_string(),
            at: w[1].0,
            version: w[1].1.clone(),
            previous: w[0].1.clone(),
        })
        .collect()
}

/// The changes grouped into deploys: one per version, from its first
/// instance's change (a rollout over several instances is one deploy; the
/// same version deployed again after another is a second one).
fn group(mut changes: Vec<Change>) -> Vec<(String, Option<String>, f64, usize)> {
    changes.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut out: Vec<(String, Option<String>, f64, Vec<String>)> = Vec::new();
    for c in changes {
        match out
            .iter_mut()
            .rev()
            .find(|d| d.0 == c.version && !d.3.contains(&c.instance))
        {
            Some(d) => d.3.push(c.instance),
            None => out.push((c.version, Some(c.previous), c.at, vec![c.instance])),
        }
    }
    out.into_iter()
        .map(|(v, p, at, i)| (v, p, at, i.len()))
        .collect()
}

async fn hour(client: &Client, job: &Job, end: f64) -> Result<DeployHour, ReportError> {
    let requests = job.sel("llmchat_http_requests_total", "");
    let errors = job.sel("llmchat_http_requests_total", r#"status_code=~"5..""#);
    let bucket = job.sel("llmchat_http_request_duration_seconds_bucket", "");
    let (requests, errors, bucket) = (
        format!("sum(increase({requests}[1h]))"),
        format!("sum(increase({errors}[1h]))"),
        format!("sum by (le) (increase({bucket}[1h]))"),
    );
    let (n, e, bucket_counts) = tokio::try_join!(
        client.scalar(&requests, end),
        client.scalar(&errors, end),
        client.vector(&bucket, end),
    )?;
    let requests = n.unwrap_or(0.0);
    Ok(DeployHour {
        requests,
        error_ratio: (requests > 0.0).then(|| e.unwrap_or(0.0) / requests),
        p95: quantile(0.95, &buckets(&bucket_counts)),
    })
}

/// The period's deploys of the job, oldest first.
pub async fn deploys(
    client: &Client,
    job: &Job,
    from: f64,
    to: f64,
) -> Result<Vec<Deploy>, ReportError> {
    let step = alerts::step(from, to);
    // timestamp(): each point is the time of the sample it comes from, so
    // an old version's series is not drawn on past its last sample.
    let series = client
        .matrix(
            &format!("timestamp({})", job.sel("llmchat_app_info", "")),
            from - step,
            to,
            step,
        )
        .await?;
    let mut by_instance: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for (labels, points) in series {
        let (Some(instance), Some(version)) = (labels.get("instance"), labels.get("version"))
        else {
            continue;
        };
        let mut sampled: Vec<f64> = points.into_iter().map(|(_, at)| at).collect();
        sampled.dedup();
        by_instance
            .entry(instance.clone())
            .or_default()
            .extend(sampled.into_iter().map(|at| (at, version.clone())));
    }
    let changes: Vec<Change> = by_instance
        .into_iter()
        .flat_map(|(instance, samples)| changes_of(&instance, samples))
        .filter(|c| c.at >= from && c.at <= to)
        .collect();
    let mut out = Vec::new();
    for (version, previous_version, at, instances) in group(changes).into_iter().take(MAX_DEPLOYS) {
        let (before, after) = tokio::try_join!(
            hour(client, job, at),
            hour(client, job, (at + 3600.0).min(to))
        )?;
        out.push(Deploy {
            version,
            previous_version,
            at,
            instances,
            before,
            after,
            worst: false,
        });
    }
    mark_worst(&mut out);
    Ok(out)
}

/// Marks the deploy after which the 5xx ratio rose most (else the p95),
/// if any made things worse at all.
fn mark_worst(deploys: &mut [Deploy]) {
    let rise = |d: &Deploy| {
        let ratio = d.after.error_ratio.unwrap_or(0.0) - d.before.error_ratio.unwrap_or(0.0);
        let p95 = d.after.p95.map(|e| e.seconds).unwrap_or(0.0)
            - d.before.p95.map(|e| e.seconds).unwrap_or(0.0);
        (ratio, p95)
    };
    let worst = deploys
        .iter()
        .enumerate()
        .map(|(i, d)| (i, rise(d)))
        .filter(|(_, (r, p))| *r > 0.0 || *p > 0.0)
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(a.1 .1.total_cmp(&b.1 .1)));
    if let Some((i, _)) = worst {
        deploys[i].worst = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(list: &[(f64, &str)]) -> Vec<(f64, String)> {
        list.iter().map(|(t, v)| (*t, v.to_string())).collect()
    }

    #[test]
    fn a_rollout_is_one_deploy_and_a_redeploy_another() {
        let mut changes = changes_of(
            "a",
            samples(&[(1.0, "1.0"), (2.0, "1.1"), (5.0, "1.0"), (8.0, "1.1")]),
        );
        changes.extend(changes_of("b", samples(&[(1.0, "1.0"), (3.0, "1.1")])));
        let deploys = group(changes);
        assert_eq!(
            deploys,
            vec![
                ("1.1".to_string(), Some("1.0".to_string()), 2.0, 2),
                ("1.0".to_string(), Some("1.1".to_string()), 5.0, 1),
                ("1.1".to_string(), Some("1.0".to_string()), 8.0, 1),
            ]
        );
    }
}
