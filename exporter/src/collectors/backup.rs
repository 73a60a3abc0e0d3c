//! Backup collector: the guide's `backup.sh` layout in `--backup.dir`
//! (`database_*.sql`, `application_*.tar.gz`, `config_*.tar.gz`,
//! `uploads_*.tar.gz`). For each kind, the newest file's time and size and
//! whether it is empty: the script's own "verify backup" step.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::snapshot::{Published, Snapshot};
use super::{RefreshError, Source};

/// The collector's line in [`crate::collectors::ALL`].
pub const ENTRY: super::Entry = super::Entry {
    name: "backup",
    role: crate::collectors::Role::Services,
    enabled_by_default: true,
    help: "the newest file of each kind backup.sh writes to backup.dir",
    start: |config, ctx| {
        let c = Arc::new(BackupCollector::new(&config.backup));
        ctx.registry
            .sub_registry_with_prefix("backup")
            .register_collector(Box::new(c.clone()));
        Ok(Some(c as Arc<dyn Source>))
    },
};

/// `[backup]`: where `backup.sh` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    pub dir: PathBuf,
}

/// `--backup.*` flags.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct BackupFlags {
    /// Directory backup.sh writes to.
    #[arg(id = "backup.dir", long = "backup.dir", value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

impl crate::config::Section for BackupConfig {
    fn validate(&self, _: &crate::config::Config) -> Result<(), llmchat_common::ConfigError> {
        Ok(())
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/backups/llmchat"),
        }
    }
}

/// The kinds `backup.sh` writes: (label, file prefix, file suffix).
pub const KINDS: [(&str, &str, &str); 4] = [
    ("database", "database_", ".sql"),
    ("application", "application_", ".tar.gz"),
    ("config", "config_", ".tar.gz"),
    ("uploads", "uploads_", ".tar.gz"),
];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot list the backup directory")]
    List(#[source] std::io::Error),
    #[error("the backup scan task failed")]
    Join(#[source] tokio::task::JoinError),
}

#[derive(Debug, Default, Clone)]
struct Newest {
    files: usize,
    modified: f64,
    size: u64,
}

pub struct BackupCollector {
    dir: PathBuf,
    published: Published,
}

impl std::fmt::Debug for BackupCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupCollector").finish_non_exhaustive()
    }
}

impl BackupCollector {
    pub fn new(config: &BackupConfig) -> Self {
        Self {
            dir: config.dir.clone(),
            published: Published::new(Snapshot::default),
        }
    }
}

fn scan(dir: &std::path::Path) -> Result<(bool, Vec<Newest>), std::io::Error> {
    let mut newest = vec![Newest::default(); KINDS.len()];
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((false, newest)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(kind) = KINDS
            .iter()
            .position(|(_, prefix, suffix)| name.starts_with(prefix) && name.ends_with(suffix))
        else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let n = &mut newest[kind];
        n.files += 1;
        if n.files == 1 || modified > n.modified {
            n.modified = modified;
            n.size = meta.len();
        }
    }
    Ok((true, newest))
}

impl Source for BackupCollector {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            let (exists, newest) = tokio::task::spawn_blocking(move || scan(&dir))
                .await
                .map_err(BackupError::Join)?
                .map_err(BackupError::List)?;
            let mut s = Snapshot::default();
            s.gauge(
                "dir_exists",
                "1 if the backup directory exists, else 0.",
                None,
            )
            .value(f64::from(u8::from(exists)));
            let mut f = s.gauge(
                "files",
                "Backup files of each kind in the backup directory.",
                None,
            );
            for ((kind, _, _), n) in KINDS.iter().zip(&newest) {
                f.sample(&[("kind", kind)], n.files as f64);
            }
            let present: Vec<_> = KINDS
                .iter()
                .zip(&newest)
                .filter(|(_, n)| n.files > 0)
                .map(|((kind, _, _), n)| (*kind, n.clone()))
                .collect();
            let mut f = s.gauge(
                "newest_timestamp",
                "Modification time of the newest backup file of each kind, Unix time.",
                Some(Unit::Seconds),
            );
            for (kind, n) in &present {
                f.sample(&[("kind", kind)], n.modified);
            }
            let mut f = s.gauge(
                "newest_size",
                "Size of the newest backup file of each kind.",
                Some(Unit::Bytes),
            );
            for (kind, n) in &present {
                f.sample(&[("kind", kind)], n.size as f64);
            }
            let mut f = s.gauge(
                "newest_empty",
                "1 if the newest backup file of the kind is empty (backup.sh's verify step fails), else 0.",
                None,
            );
            for (kind, n) in &present {
                f.sample(&[("kind", kind)], f64::from(u8::from(n.size == 0)));
            }
            self.published.set(s);
            Ok(())
        })
    }

    fn clear(&self) {
        self.published.set_down();
    }
}

impl Collector for BackupCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}
