//! A small client of the Prometheus HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`) for the report.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ReportError;

pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

pub type Labels = BTreeMap<String, String>;

impl Client {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, ReportError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ReportError::Argument(
                "--prometheus.url",
                format!("{base:?} is not an http(s) URL"),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ReportError::Argument("--prometheus.url", e.to_string()))?;
        Ok(Client {
            http,
            base,
            timeout,
        })
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>, ReportError> {
        let query = params
            .iter()
            .find(|(k, _)| *k == "query")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .map_err(|e| ReportError::Unreachable {
                url: self.base.clone(),
                reason: self.why(e),
            })?;
        let status = resp.status();
        let body: ApiResponse = resp.json().await.map_err(|e| ReportError::Query {
            query: query.clone(),
            reason: format!("HTTP {status}, unreadable answer: {}", e.without_url()),
        })?;
        if body.status != "success" {
            return Err(ReportError::Query {
                query,
                reason: body.error.unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        Ok(body.data.map(|d| d.result).unwrap_or_default())
    }

    /// What went wrong, in the words an operator acts on: a timeout (and
    /// which), a refused connection, a name that does not resolve, or the
    /// error chain (which says "error sending request" and little else).
    fn why(&self, e: reqwest::Error) -> String {
        let timed_out = e.is_timeout();
        let chain = llmchat_common::error_chain(&e.without_url());
        let lower = chain.to_lowercase();
        if timed_out {
            format!(
                "no answer within --timeout {} ({chain})",
                humantime::format_duration(self.timeout)
            )
        } else if lower.contains("connection refused") {
            format!("connection refused: nothing listens there ({chain})")
        } else if lower.contains("dns")
            || lower.contains("failed to lookup")
            || lower.contains("name or service not known")
        {
            format!("the host name does not resolve ({chain})")
        } else {
            chain
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// What the server says it is (`/api/v1/status/buildinfo`: Prometheus,
    /// and VictoriaMetrics, which answers it too), when it says.
    pub async fn version(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Build {
            data: BuildData,
        }
        #[derive(Deserialize)]
        struct BuildData {
            version: String,
        }
        let resp = self
            .http
            .get(format!("{}/api/v1/status/buildinfo", self.base))
            .send()
            .await
            .ok()?;
        let b: Build = resp.json().await.ok()?;
        Some(b.data.version).filter(|v| !v.is_empty())
    }

    /// An instant query whose result is one number (or nothing).
    pub async fn scalar(&self, query: &str, time: f64) -> Result<Option<f64>, ReportError> {
        let series = self.vector(query, time).await?;
        Ok(series.first().map(|(_, v)| *v).filter(|v| !v.is_nan()))
    }

    /// An instant query: each series' labels and value.
    pub async fn vector(&self, query: &str, time: f64) -> Result<Vec<(Labels, f64)>, ReportError> {
        let series = self
            .get(
                "/api/v1/query",
                &[("query", query.to_string()), ("time", format!("{time:.3}"))],
            )
            .await?;
        Ok(series
            .into_iter()
            .filter_map(|s| {
                let (_, v) = s.value?;
                Some((s.metric, v.parse().ok()?))
            })
            .collect())
    }

    /// A range query of one series: (time, value) points.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(f64, f64)>, ReportError> {
        Ok(self
            .matrix(query, start, end, step)
            .await?
            .into_iter()
            .next()
            .map(|(_, points)| points)
            .unwrap_or_default())
    }

    /// A range query: each series' labels and (time, value) points.
    /// Asked in pieces of at most [`MAX_POINTS`] steps, since Prometheus
    /// refuses more than 11,000 points per series in one query; the pieces'
    /// points join up (a piece starts one step after the previous one ends).
    pub async fn matrix(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(Labels, Vec<(f64, f64)>)>, ReportError> {
        let mut out: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        let mut piece_start = start;
        while piece_start <= end {
            let piece_end = (piece_start + step * (MAX_POINTS - 1) as f64).min(end);
            let series = self
                .get(
                    "/api/v1/query_range",
                    &[
                        ("query", query.to_string()),
                        ("start", format!("{piece_start:.3}")),
                        ("end", format!("{piece_end:.3}")),
                        ("step", format!("{step}")),
                    ],
                )
                .await?;
            for s in series {
                out.entry(s.metric).or_default().extend(
                    s.values
                        .into_iter()
                        .filter_map(|(t, v)| Some((t, v.parse::<f64>().ok()?)))
                        .filter(|(_, v)| !v.is_nan()),
                );
            }
            piece_start = piece_end + step;
        }
        Ok(out.into_iter().collect())
    }
}

/// Points per range query piece: under Prometheus' 11,000.
pub const MAX_POINTS: usize = 10_000;
