//! A scrape's worth of values for collectors that read a remote service
//! (PostgreSQL, Redis, the app, backups): built fresh by each refresh and
//! swapped in whole, so a series the service no longer reports disappears,
//! and encoded at scrape time. Label keys are code constants (or, for
//! custom queries, configured), so label sets stay bounded.

use llmchat_common::lock;
use std::borrow::Cow;
use std::sync::Mutex;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

type Labels = Vec<(Cow<'static, str>, String)>;

#[derive(Debug, Clone)]
struct Family {
    name: Cow<'static, str>,
    help: Cow<'static, str>,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    families: Vec<Family>,
}

/// Adds samples to one family of a [`Snapshot`].
pub struct FamilyBuilder<'a>(&'a mut Family);

impl FamilyBuilder<'_> {
    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: f64) -> &mut Self {
        let labels = labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), (*v).to_string()))
            .collect();
        self.0.samples.push((labels, value));
        self
    }

    /// A sample whose label names come from configuration.
    pub fn sample_dynamic(&mut self, labels: Vec<(String, String)>, value: f64) -> &mut Self {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), v))
            .collect();
        self.0.samples.push((labels, value));
        self
    }

    pub fn value(&mut self, value: f64) -> &mut Self {
        self.0.samples.push((Vec::new(), value));
        self
    }
}

impl Snapshot {
    fn family(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        unit: Option<Unit>,
        kind: MetricType,
    ) -> FamilyBuilder<'_> {
        self.families.push(Family {
            name: name.into(),
            help: help.into(),
            unit,
            kind,
            samples: Vec::new(),
        });
        FamilyBuilder(self.families.last_mut().expect("just pushed"))
    }

    /// A gauge family; `name` without the `llmchat_` prefix and the unit.
    pub fn gauge(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        unit: Option<Unit>,
    ) -> FamilyBuilder<'_> {
        self.family(name, help, unit, MetricType::Gauge)
    }

    /// A counter family (the `_total` suffix is added by the encoder).
    pub fn counter(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        unit: Option<Unit>,
    ) -> FamilyBuilder<'_> {
        self.family(name, help, unit, MetricType::Counter)
    }

    /// Appends `other`'s families (a background job's value).
    pub fn extend(&mut self, other: Snapshot) {
        self.families.extend(other.families);
    }

    /// The text exposition of this snapshot alone, unprefixed.
    #[cfg(test)]
    pub fn render_for_tests(&self) -> String {
        #[derive(Debug)]
        struct Alone(Snapshot);
        impl prometheus_client::collector::Collector for Alone {
            fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
                self.0.encode(&mut e)
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Alone(self.clone())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    /// The value of an unlabelled sample, for tests and health answers.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.families
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.samples.iter().find(|(l, _)| l.is_empty()))
            .map(|(_, v)| *v)
    }

    pub fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        for f in &self.families {
            if f.samples.is_empty() {
                continue;
            }
            let mut family = e.encode_descriptor(&f.name, &f.help, f.unit.as_ref(), f.kind)?;
            for (labels, value) in &f.samples {
                let metric = family.encode_family(labels)?;
                match f.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(metric)?,
                    _ => ConstGauge::new(*value).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

/// What a remote-service collector publishes: replaced whole by each
/// successful refresh, and reset to its "down" form (just `*_up 0`) when a
/// refresh fails or runs out of time, so no stale value is ever served.
pub struct Published {
    current: Mutex<Snapshot>,
    down: fn() -> Snapshot,
}

impl Published {
    pub fn new(down: fn() -> Snapshot) -> Self {
        Published {
            current: Mutex::new(down()),
            down,
        }
    }

    pub fn set(&self, snapshot: Snapshot) {
        *lock(&self.current) = snapshot;
    }

    pub fn set_down(&self) {
        self.set((self.down)());
    }

    /// Publishes a refresh's outcome: the snapshot, or the down form and
    /// the error for the scrape to report.
    pub fn publish<E: Into<super::RefreshError>>(
        &self,
        outcome: Result<Snapshot, E>,
    ) -> Result<(), super::RefreshError> {
        match outcome {
            Ok(s) => {
                self.set(s);
                Ok(())
            }
            Err(e) => {
                self.set_down();
                Err(e.into())
            }
        }
    }

    pub fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        lock(&self.current).encode(e)
    }
}
