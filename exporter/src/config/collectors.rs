//! The collector table: every collector, in exposition order, with the
//! sections it starts from. This is the one place that pairs a collector
//! with the configuration; the collectors themselves see only their own
//! sections. `[collectors]` (which run) is built from it too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::collector_kit::{Context, Entry, Role, Started};
use crate::collectors::{app, backup, database, host, redis};
use crate::logs;

/// One line of the collector table: what the collector says about
/// itself, and how it starts from the sections it reads.
pub struct Line {
    pub entry: Entry,
    /// Registers its metrics and starts it.
    pub start: fn(&Config, &mut Context<'_>) -> Started,
}

/// Every collector, in exposition order. Adding a collector is its module
/// and one line here.
#[rustfmt::skip]
pub const ALL: &[Line] = &[
    Line { entry: host::ENTRY, start: |c, ctx| host::start(&c.host, ctx) },
    Line { entry: logs::app::ENTRY, start: |c, ctx| logs::app::start(&c.logs, c.collectors.is_enabled("chat").then_some(&c.chat), ctx) },
    Line { entry: logs::chat::ENTRY, start: |_, _| Ok(None) },
    Line { entry: logs::access::ENTRY, start: |c, ctx| logs::access::start(&c.logs, &c.access, ctx) },
    Line { entry: database::ENTRY, start: |c, ctx| database::start(&c.database, ctx) },
    Line { entry: redis::ENTRY, start: |c, ctx| redis::start(&c.redis, ctx) },
    Line { entry: app::ENTRY, start: |c, ctx| app::start(&c.app, ctx) },
    Line { entry: backup::ENTRY, start: |c, ctx| backup::start(&c.backup, &c.database.url, ctx) },
];

/// The entry named `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    ALL.iter().map(|l| &l.entry).find(|e| e.name == name)
}

fn entries() -> impl Iterator<Item = &'static Entry> {
    ALL.iter().map(|l| &l.entry)
}

/// `[collectors]`: which collectors run, `name = true|false`. The names are
/// the table's; an unknown name is refused by [`CollectorsConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CollectorsConfig(BTreeMap<String, bool>);

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self(
            entries()
                .map(|e| (e.name.to_string(), e.enabled_by_default))
                .collect(),
        )
    }
}

impl CollectorsConfig {
    /// The defaults of a role: those on by default that the role runs.
    pub fn for_role(role: Role) -> Self {
        Self(
            entries()
                .map(|e| {
                    let runs = role == Role::All || e.role == role;
                    (e.name.to_string(), e.enabled_by_default && runs)
                })
                .collect(),
        )
    }

    /// Every collector off: the defaults under `--collector.disable-defaults`.
    pub fn none() -> Self {
        Self(entries().map(|e| (e.name.to_string(), false)).collect())
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }

    pub fn set(&mut self, name: &str, on: bool) {
        self.0.insert(name.to_string(), on);
    }

    /// Names of the enabled collectors, in table order.
    pub fn enabled(&self) -> Vec<&'static str> {
        entries()
            .filter(|e| self.is_enabled(e.name))
            .map(|e| e.name)
            .collect()
    }

    pub fn validate(&self) -> Result<(), llmchat_common::ConfigError> {
        for name in self.0.keys() {
            if entry(name).is_none() {
                let known: Vec<_> = entries().map(|e| e.name).collect();
                return Err(llmchat_common::invalid(
                    format!("collectors.{name}"),
                    name,
                    format!("no such collector (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_unique_names_and_every_default_is_known() {
        let mut names: Vec<_> = entries().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        CollectorsConfig::default().validate().unwrap();
        let mut c = CollectorsConfig::none();
        c.set("backup", true);
        assert_eq!(c.enabled(), vec!["backup"]);
        c.set("nope", true);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("collectors.nope") && e.contains("backup"), "{e}");
    }
}
