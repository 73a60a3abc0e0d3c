//! Backup collector: the guide's `backup.sh` layout in `--backup.dir`
//! (`database_*.sql`, `application_*.tar.gz`, `config_*.tar.gz`,
//! `uploads_*.tar.gz`). For each kind, the newest file's time and size and
//! whether it is empty (the script's own "verify backup" step), the oldest
//! file's time (a retention that stopped deleting shows), the folder's
//! size, and whether the newest file that is complete can be read back:
//! `backup_check.rs` checks each new file once, in the background.

use llmchat_common::lock;
use llmchat_common::settings::Settings;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use llmchat_common::{duration, invalid};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

use super::backup_check::{self, Invalid, Seen, SharedState};
use super::backup_drill::{self, DrillConfig, SharedDrill};
use crate::collector_kit::snapshot::{Published, Snapshot};
use crate::collector_kit::{Context, RefreshError, Source, Started};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "backup",
    role: crate::collector_kit::Role::Services,
    enabled_by_default: true,
    help: "the newest file of each kind backup.sh writes to backup.dir",
};

/// Registers the backup metrics and starts the collector, with the
/// read-back checks and the restore drill when they are on. The drill
/// compares the restored counts with the live database at `live_url`
/// (`database.url`).
pub fn start(config: &BackupConfig, live_url: &str, ctx: &mut Context<'_>) -> Started {
    let c = Arc::new(BackupCollector::new(config));
    if config.check {
        tokio::spawn(check_loop(config.clone(), c.checks.clone()));
    }
    if config.drill.enabled {
        tokio::spawn(backup_drill::drill_loop(
            config.drill.clone(),
            config.dir.clone(),
            config.settle,
            live_url.to_string(),
            c.drill.clone(),
        ));
    }
    ctx.registry
        .sub_registry_with_prefix("backup")
        .register_collector(Box::new(c.clone()));
    Ok(Some(c as Arc<dyn Source>))
}

/// `[backup]`: where `backup.sh` writes, and how its files are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Directory backup.sh writes to.
    #[setting(flag, default = "/backups/llmchat")]
    pub dir: PathBuf,
    /// Read each new backup file back (gzip, tar, pg_dump's trailer).
    #[setting(flag, default = true)]
    pub check: bool,
    /// How often the backup folder is looked at for new files to check.
    #[setting(flag, default = Duration::from_secs(60))]
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// A backup file unchanged this long (and between two looks) is
    /// complete and may be checked.
    #[setting(flag, default = Duration::from_secs(60))]
    #[serde(with = "duration")]
    pub settle: Duration,
    /// Read budget of the checks, bytes a second.
    ///
    /// 20 MiB/s by default: a 50 GB uploads archive is read in about 40
    /// minutes, a small share of a disk's bandwidth.
    #[setting(flag, value_name = "BYTES", default = 20 * 1024 * 1024)]
    pub check_bytes_per_second: u64,
    /// The program that reads custom-format dumps (`pg_dump -Fc`); the
    /// header alone is checked when it is not installed.
    #[setting(default = "pg_restore")]
    pub pg_restore: PathBuf,
    /// `[backup.drill]`: the optional restore drill.
    pub drill: DrillConfig,
}

impl BackupConfig {
    /// The drill's checks against the live database's URL
    /// (`database.url`): the configuration's assembly runs it, since it
    /// joins two sections.
    pub fn validate_drill(&self, live_url: &str) -> Result<(), llmchat_common::ConfigError> {
        self.drill.check(live_url)
    }
}

impl crate::collector_kit::Section for BackupConfig {
    fn validate(&self, _enabled: bool) -> Result<(), llmchat_common::ConfigError> {
        if self.check_interval.is_zero() {
            return Err(invalid("backup.check_interval", "0s", "must be above zero"));
        }
        if self.check_bytes_per_second < 64 * 1024 {
            return Err(invalid(
                "backup.check_bytes_per_second",
                self.check_bytes_per_second,
                "must be at least 65536 (64 KiB a second)",
            ));
        }
        Ok(())
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
    oldest: f64,
}

pub struct BackupCollector {
    dir: PathBuf,
    published: Published,
    /// What the background checks found.
    checks: SharedState,
    /// The restore drill's outcomes; published only when it is enabled.
    drill: SharedDrill,
    drill_enabled: bool,
    filesystem: Arc<FilesystemOf>,
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
            checks: SharedState::default(),
            drill: SharedDrill::default(),
            drill_enabled: config.drill.enabled,
            filesystem: Arc::default(),
        }
    }
}

/// What one look at the folder found.
#[derive(Debug, Default)]
struct Listing {
    exists: bool,
    newest: Vec<Newest>,
    /// Every regular file at the top of the folder, of any name.
    total_bytes: u64,
    /// The backup files: path, kind, size and time.
    files: Vec<(PathBuf, &'static str, Seen)>,
    /// The filesystem the folder is on: mount point, size, available.
    filesystem: Option<(String, u64, u64)>,
}

/// The filesystem holding the backup folder: one statvfs(2) per scrape
/// for its size and free space; its mount point (the `mountpoint` label)
/// looked up in the mount table only when the folder's device changes, as
/// when a backup disk is mounted under it, not on every scrape.
#[derive(Debug, Default)]
struct FilesystemOf {
    /// The folder's device and the mount point found for it.
    mount: Mutex<Option<(u64, String)>>,
}

impl FilesystemOf {
    /// Mount point, size and bytes available to unprivileged writers.
    fn read(&self, dir: &std::path::Path) -> Option<(String, u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let device = std::fs::metadata(dir).ok()?.dev();
        let stat = nix::sys::statvfs::statvfs(dir).ok()?;
        let fragment = stat.fragment_size();
        let size = stat.blocks().saturating_mul(fragment);
        let available = stat.blocks_available().saturating_mul(fragment);
        let mut mount = lock(&self.mount);
        let mountpoint = match mount.as_ref() {
            Some((d, point)) if *d == device => point.clone(),
            _ => {
                let point = mount_point_of(dir)?;
                *mount = Some((device, point.clone()));
                point
            }
        };
        Some((mountpoint, size, available))
    }
}

/// The mount with the longest mount point that contains `dir` (a backup
/// disk mounted under /backups, or the root); sysinfo reads the mount
/// table.
fn mount_point_of(dir: &std::path::Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mut disks = sysinfo::Disks::new().ok()?;
    disks.refresh(true);
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.mount_point().to_string_lossy().into_owned())
}

fn scan(dir: &std::path::Path) -> Result<Listing, std::io::Error> {
    let mut out = Listing {
        newest: vec![Newest::default(); KINDS.len()],
        ..Listing::default()
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    out.exists = true;
    for entry in entries {
        let entry = entry?;
        // Not followed: a symlink's target is not this folder's to size.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.total_bytes += meta.len();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(kind) = KINDS
            .iter()
            .position(|(_, prefix, suffix)| name.starts_with(prefix) && name.ends_with(suffix))
        else {
            continue;
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let n = &mut out.newest[kind];
        n.files += 1;
        if n.files == 1 || modified > n.modified {
            n.modified = modified;
            n.size = meta.len();
        }
        if n.files == 1 || modified < n.oldest {
            n.oldest = modified;
        }
        out.files.push((
            entry.path(),
            KINDS[kind].0,
            Seen {
                size: meta.len(),
                modified,
            },
        ));
    }
    Ok(out)
}

/// Looks at the folder every `check_interval` and reads back each file
/// that is new, complete and not yet judged; logs each invalid file once.
async fn check_loop(config: BackupConfig, state: SharedState) {
    let pg_restore = backup_check::find_program(&config.pg_restore);
    if pg_restore.is_none() {
        tracing::info!(
            program = %config.pg_restore.display(),
            "pg_restore not found: custom-format dumps are read by the exporter (header, table of contents, data blocks), their compressed data not inflated"
        );
    }
    let mut tick = tokio::time::interval(config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (dir, state, pg_restore) = (config.dir.clone(), state.clone(), pg_restore.clone());
        let (settle, budget) = (config.settle, config.check_bytes_per_second);
        let judged = tokio::task::spawn_blocking(move || {
            let files = scan(&dir).map(|l| l.files).unwrap_or_default();
            backup_check::pass(&state, &files, settle, budget, pg_restore.as_deref())
        })
        .await
        .unwrap_or_default();
        for (path, kind, checked) in judged {
            if let Err(reason) = checked.verdict {
                let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
                tracing::warn!(
                    kind,
                    file = file.as_deref().unwrap_or(""),
                    reason = reason.as_str(),
                    "backup file cannot be read back"
                );
            }
        }
    }
}

impl Source for BackupCollector {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        let dir = self.dir.clone();
        let filesystem = self.filesystem.clone();
        Box::pin(async move {
            let listing = tokio::task::spawn_blocking(move || {
                scan(&dir).map(|mut listing| {
                    listing.filesystem = filesystem.read(&dir);
                    listing
                })
            })
            .await
            .map_err(BackupError::Join)?
            .map_err(BackupError::List)?;
            let (exists, newest) = (listing.exists, &listing.newest);
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
            for ((kind, _, _), n) in KINDS.iter().zip(newest) {
                f.sample(&[("kind", kind)], n.files as f64);
            }
            let present: Vec<_> = KINDS
                .iter()
                .zip(newest)
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
            let mut f = s.gauge(
                "oldest_timestamp",
                "Modification time of the oldest backup file of each kind, Unix time: older than the retention (backup.sh deletes after 30 days) means the deletion stopped.",
                Some(Unit::Seconds),
            );
            for (kind, n) in &present {
                f.sample(&[("kind", kind)], n.oldest);
            }
            if exists {
                s.gauge(
                    "dir_size",
                    "Bytes of all the regular files at the top of the backup folder.",
                    Some(Unit::Bytes),
                )
                .value(listing.total_bytes as f64);
            }
            if let Some((mountpoint, size, available)) = &listing.filesystem {
                let labels = [("mountpoint", mountpoint.as_str())];
                s.gauge(
                    "filesystem_size",
                    "Size of the filesystem the backup folder is on.",
                    Some(Unit::Bytes),
                )
                .sample(&labels, *size as f64);
                s.gauge(
                    "filesystem_available",
                    "Bytes available to the backup script on the backup folder's filesystem: LLMChatBackupDiskFillsBeforeNextBackup forecasts it.",
                    Some(Unit::Bytes),
                )
                .sample(&labels, *available as f64);
            }
            self.publish_checks(&mut s, &listing);
            if self.drill_enabled {
                self.publish_drill(&mut s);
            }
            self.published.set(s);
            Ok(())
        })
    }

    fn clear(&self) {
        self.published.set_down();
    }
}

impl BackupCollector {
    /// The restore drill: the last run's outcome, duration and rows, the
    /// last success, and runs by result.
    fn publish_drill(&self, s: &mut Snapshot) {
        let d = lock(&self.drill);
        if let Some(ok) = d.last_ok {
            s.gauge(
                "drill_success",
                "1 if the last restore drill restored the newest database dump and its row counts matched the live ones, else 0.",
                None,
            )
            .value(f64::from(u8::from(ok)));
            s.gauge(
                "drill_duration",
                "How long the last restore drill took.",
                Some(Unit::Seconds),
            )
            .value(d.last_duration);
        }
        if let Some(at) = d.last_success {
            s.gauge(
                "drill_last_success_timestamp",
                "When a restore drill last succeeded, Unix time.",
                Some(Unit::Seconds),
            )
            .value(at);
        }
        let mut f = s.gauge(
            "drill_rows",
            "Rows of each counted table restored by the last successful drill.",
            None,
        );
        for (table, n) in &d.rows {
            f.sample(&[("table", table.as_str())], *n);
        }
        let mut f = s.counter(
            "drill_runs",
            "Restore drills by result: succeeded, failed, refused (the scratch database holds tables no drill made).",
            None,
        );
        for result in ["succeeded", "failed", "refused"] {
            f.sample(
                &[("result", result)],
                *d.runs.get(result).unwrap_or(&0) as f64,
            );
        }
    }

    /// The background checks' findings: the verdict on the newest file of
    /// each kind that has been judged (a file still being written is not,
    /// so the previous one stands meanwhile), when it was judged, and the
    /// running totals.
    fn publish_checks(&self, s: &mut Snapshot, listing: &Listing) {
        let state = lock(&self.checks);
        let mut newest: Vec<(&'static str, &backup_check::Judged)> = Vec::new();
        for (path, kind, _) in &listing.files {
            let Some(j) = state.judged.get(path) else {
                continue;
            };
            match newest.iter_mut().find(|(k, _)| k == kind) {
                Some(n) if n.1.seen.modified < j.seen.modified => n.1 = j,
                Some(_) => {}
                None => newest.push((kind, j)),
            }
        }
        let mut f = s.gauge(
            "newest_valid",
            "1 if the newest complete backup file of the kind reads back whole (pg_dump's trailer, pg_restore, gzip and tar to the end), 0 if not; absent until one is checked.",
            None,
        );
        for (kind, j) in &newest {
            f.sample(
                &[("kind", kind)],
                f64::from(u8::from(j.checked.verdict.is_ok())),
            );
        }
        let mut f = s.gauge(
            "newest_check_timestamp",
            "When the check of the newest complete backup file of the kind finished, Unix time.",
            Some(Unit::Seconds),
        );
        for (kind, j) in &newest {
            f.sample(&[("kind", kind)], j.at);
        }
        let mut f = s.counter(
            "checked",
            "Bytes read back by the backup checks, by kind.",
            Some(Unit::Bytes),
        );
        for (kind, _, _) in KINDS {
            f.sample(
                &[("kind", kind)],
                *state.checked_bytes.get(kind).unwrap_or(&0) as f64,
            );
        }
        let mut f = s.counter(
            "invalid_files",
            "Backup files found unreadable, by kind and reason (truncated, corrupt, unreadable); each file counted once.",
            None,
        );
        for (kind, _, _) in KINDS {
            for reason in [Invalid::Truncated, Invalid::Corrupt, Invalid::Unreadable] {
                let n = state.invalid.get(&(kind, reason)).copied().unwrap_or(0);
                f.sample(&[("kind", kind), ("reason", reason.as_str())], n as f64);
            }
        }
    }
}

impl Collector for BackupCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}
