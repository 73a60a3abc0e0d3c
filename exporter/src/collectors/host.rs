//! Host collector: memory, swap, filesystems, CPU and load, and the LLMChat
//! backend process. Serves the guide's daily checks (`df /` over 80 %,
//! `free` over 80 %) and `FaultDetectionService`'s memory (90 %) and disk
//! (85 %) thresholds; the ratios themselves are recording rules.
//!
//! Everything is read with sysinfo on each scrape, on a blocking thread.

use llmchat_common::lock;
use llmchat_common::settings::Settings;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::registry::Unit;
use sysinfo::{
    Disks, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
    MINIMUM_CPU_UPDATE_INTERVAL,
};

use crate::collector_kit::encode::{counter, gauge, gauge_family};
use crate::collector_kit::Section;
use crate::collector_kit::{Context, RefreshError, Source, StartError, Started};
use llmchat_common::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "host",
    role: crate::collector_kit::Role::Host,
    enabled_by_default: true,
    help: "memory, swap, filesystems, CPU, load and the backend process",
};

/// Registers the host and backend-process metrics and starts the collector.
pub fn start(config: &HostConfig, ctx: &mut Context<'_>) -> Started {
    let c = Arc::new(HostCollector::new(config).map_err(|e| StartError::new("host", e))?);
    ctx.registry
        .sub_registry_with_prefix("host")
        .register_collector(Box::new(c.clone()));
    ctx.registry
        .sub_registry_with_prefix("backend")
        .register_collector(Box::new(BackendMetrics(c.clone())));
    Ok(Some(c as Arc<dyn Source>))
}

/// `[host]`: which process is the backend, which filesystems count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Executable name of the LLMChat backend process.
    #[setting(flag, value_name = "NAME", default = "node")]
    pub process_name: String,
    /// Pid file of the LLMChat backend; wins over --host.process-name.
    #[setting(flag)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// Filesystem types to skip (not real storage), comma-separated.
    ///
    /// node_exporter's list, less overlay (a container's `/` is overlay,
    /// and the guide checks `df /`), plus RAM-backed tmpfs.
    #[setting(flag, value_name = "TYPES", default = [
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "proc",
        "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs",
        "erofs", "sysfs", "tmpfs", "tracefs",
    ])]
    pub fs_types_exclude: Vec<String>,
    /// Mount points to skip, as a regular expression.
    #[setting(
        flag,
        value_name = "REGEX",
        default = "^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+|etc/(hosts|hostname|resolv\\.conf))($|/)"
    )]
    pub mount_points_exclude: String,
}

impl Section for HostConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        if self.process_name.is_empty() && self.pid_file.is_none() {
            return Err(invalid(
                "host.process_name",
                "",
                "set a process name or a pid file",
            ));
        }
        if let Err(e) = regex::Regex::new(&self.mount_points_exclude) {
            return Err(invalid(
                "host.mount_points_exclude",
                &self.mount_points_exclude,
                e,
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot open system information: {0}")]
    System(sysinfo::Error),
    #[error("cannot read the disk list: {0}")]
    Disks(sysinfo::Error),
    #[error("invalid mount-points-exclude expression: {0}")]
    MountRegex(#[from] regex::Error),
    #[error("the host reader thread failed: {0}")]
    Join(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilesystemLabels {
    mountpoint: String,
    device: String,
    fstype: String,
}

#[derive(Debug, Clone)]
struct Filesystem {
    labels: FilesystemLabels,
    size: u64,
    available: u64,
}

#[derive(Debug, Clone, Default)]
struct BackendProcess {
    /// How many processes matched; their memory and CPU are summed.
    matched: usize,
    resident_bytes: u64,
    cpu_seconds: f64,
    /// Start of the oldest match, Unix seconds.
    start_time: u64,
}

#[derive(Debug, Clone, Default)]
struct Snapshot {
    memory_total: u64,
    memory_available: u64,
    memory_used: u64,
    swap_total: u64,
    swap_used: u64,
    filesystems: Vec<Filesystem>,
    cpu_usage_ratio: Option<f64>,
    load: Option<(f64, f64, f64)>,
    backend: BackendProcess,
}

/// How often the whole process table is scanned for the backend by name;
/// in between, only the processes found last time are re-read (a full scan
/// reads /proc for every process, the costliest part of a host scrape).
const PROCESS_RESCAN: Duration = Duration::from_secs(15);

struct Reader {
    system: System,
    /// Processes matched by name at the last full scan, and when it was.
    matched: Vec<Pid>,
    last_scan: Option<Instant>,
    disks: Disks,
    last_cpu_refresh: Option<Instant>,
    cpu_usage_ratio: Option<f64>,
    process_name: String,
    pid_file: Option<PathBuf>,
    fs_types_exclude: Vec<String>,
    mount_points_exclude: regex::Regex,
}

pub struct HostCollector {
    reader: Arc<Mutex<Reader>>,
    snapshot: Arc<Mutex<Option<Snapshot>>>,
}

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCollector").finish_non_exhaustive()
    }
}

impl HostCollector {
    pub fn new(config: &HostConfig) -> Result<Self, HostError> {
        let mut system = System::new().map_err(HostError::System)?;
        // Prime the CPU counters so the first scrape has a baseline.
        system.refresh_cpu_usage();
        let reader = Reader {
            system,
            matched: Vec::new(),
            last_scan: None,
            disks: Disks::new().map_err(HostError::Disks)?,
            last_cpu_refresh: Some(Instant::now()),
            cpu_usage_ratio: None,
            process_name: config.process_name.clone(),
            pid_file: config.pid_file.clone(),
            fs_types_exclude: config.fs_types_exclude.clone(),
            mount_points_exclude: regex::Regex::new(&config.mount_points_exclude)?,
        };
        Ok(Self {
            reader: Arc::new(Mutex::new(reader)),
            snapshot: Arc::new(Mutex::new(None)),
        })
    }
}

impl Reader {
    fn read(&mut self) -> Snapshot {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        // CPU usage is the busy share since the previous refresh; sysinfo
        // needs some time between two refreshes for it to mean anything.
        if self.cpu_usage_ratio.is_none() {
            // The very first scrape, right after start-up: wait out the
            // rest of the minimum interval (at most 200 ms, once) so that
            // it already has a CPU value.
            if let Some(t) = self.last_cpu_refresh {
                std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL.saturating_sub(t.elapsed()));
            }
        }
        let now = Instant::now();
        let due = self
            .last_cpu_refresh
            .is_none_or(|t| now.duration_since(t) >= MINIMUM_CPU_UPDATE_INTERVAL);
        if due {
            self.system.refresh_cpu_usage();
            self.last_cpu_refresh = Some(now);
            let usage = f64::from(self.system.global_cpu_usage()) / 100.0;
            self.cpu_usage_ratio = Some(usage.clamp(0.0, 1.0));
        }
        self.disks.refresh(true);
        let filesystems = self.filesystems();
        let load = System::load_average()
            .ok()
            .map(|l| (l.one, l.five, l.fifteen));
        Snapshot {
            memory_total: self.system.total_memory(),
            memory_available: self.system.available_memory(),
            memory_used: self.system.used_memory(),
            swap_total: self.system.total_swap(),
            swap_used: self.system.used_swap(),
            filesystems,
            cpu_usage_ratio: self.cpu_usage_ratio,
            load,
            backend: self.backend(),
        }
    }

    fn filesystems(&self) -> Vec<Filesystem> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for disk in self.disks.iter() {
            let fstype = disk.file_system().to_string_lossy().into_owned();
            let mountpoint = disk.mount_point().to_string_lossy().into_owned();
            if self.fs_types_exclude.contains(&fstype)
                || self.mount_points_exclude.is_match(&mountpoint)
                || !seen.insert(mountpoint.clone())
            {
                continue;
            }
            out.push(Filesystem {
                labels: FilesystemLabels {
                    mountpoint,
                    device: disk.name().to_string_lossy().into_owned(),
                    fstype,
                },
                size: disk.total_space(),
                available: disk.available_space(),
            });
        }
        out
    }

    fn backend(&mut self) -> BackendProcess {
        let kind = ProcessRefreshKind::nothing()
            .with_memory()
            .with_cpu()
            .without_tasks();
        let pids: Vec<Pid> = if let Some(pid_file) = &self.pid_file {
            let Some(pid) = read_pid_file(pid_file) else {
                return BackendProcess::default();
            };
            self.system
                .refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
            vec![pid]
        } else {
            // Re-read the processes found last time; a full scan when one of
            // them is gone (a restart has a new pid) or when it is due, so a
            // backend that starts later is found within PROCESS_RESCAN.
            let vanished = !self.matched.is_empty() && {
                self.system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&self.matched),
                    true,
                    kind,
                );
                self.matched
                    .iter()
                    .any(|p| self.system.process(*p).is_none())
            };
            let due = self.last_scan.is_none_or(|t| t.elapsed() >= PROCESS_RESCAN);
            if vanished || due {
                self.system
                    .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
                self.last_scan = Some(Instant::now());
                self.matched = self
                    .system
                    .processes_by_exact_name(self.process_name.as_ref())
                    .map(|p| p.pid())
                    .collect();
            }
            self.matched.clone()
        };
        let mut found = BackendProcess::default();
        for pid in pids {
            let Some(p) = self.system.process(pid) else {
                continue;
            };
            found.matched += 1;
            found.resident_bytes += p.memory();
            found.cpu_seconds += p.accumulated_cpu_time() as f64 / 1000.0;
            if found.start_time == 0 || p.start_time() < found.start_time {
                found.start_time = p.start_time();
            }
        }
        found
    }
}

fn read_pid_file(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<usize>().ok().map(Pid::from)
}

impl Source for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        let reader = self.reader.clone();
        let snapshot = self.snapshot.clone();
        Box::pin(async move {
            let fresh = tokio::task::spawn_blocking(move || {
                let mut reader = lock(&reader);
                reader.read()
            })
            .await
            .map_err(|e| HostError::Join(e.to_string()))?;
            *lock(&snapshot) = Some(fresh);
            Ok(())
        })
    }

    fn clear(&self) {
        *lock(&self.snapshot) = None;
    }
}

impl Collector for HostCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let guard = lock(&self.snapshot);
        let Some(s) = guard.as_ref() else {
            return Ok(());
        };
        let b = Some(Unit::Bytes);
        gauge(
            &mut e,
            "memory_total",
            "Total physical memory.",
            b.clone(),
            s.memory_total as f64,
        )?;
        gauge(
            &mut e,
            "memory_available",
            "Memory available for new work without swapping (MemAvailable).",
            b.clone(),
            s.memory_available as f64,
        )?;
        gauge(
            &mut e,
            "memory_used",
            "Memory in use, as free(1) counts it.",
            b.clone(),
            s.memory_used as f64,
        )?;
        gauge(
            &mut e,
            "swap_total",
            "Total swap space.",
            b.clone(),
            s.swap_total as f64,
        )?;
        gauge(
            &mut e,
            "swap_used",
            "Swap space in use.",
            b.clone(),
            s.swap_used as f64,
        )?;
        gauge_family(
            &mut e,
            "filesystem_size",
            "Size of each real mounted filesystem.",
            b.clone(),
            s.filesystems
                .iter()
                .map(|f| (f.labels.clone(), f.size as f64)),
        )?;
        gauge_family(
            &mut e,
            "filesystem_available",
            "Space available to unprivileged users on each real mounted filesystem.",
            b.clone(),
            s.filesystems
                .iter()
                .map(|f| (f.labels.clone(), f.available as f64)),
        )?;
        if let Some(cpu) = s.cpu_usage_ratio {
            gauge(
                &mut e,
                "cpu_usage_ratio",
                "Share of CPU time busy across all cores since the previous scrape (0-1).",
                None,
                cpu,
            )?;
        }
        if let Some((one, five, fifteen)) = s.load {
            gauge(&mut e, "load1", "1-minute load average.", None, one)?;
            gauge(&mut e, "load5", "5-minute load average.", None, five)?;
            gauge(&mut e, "load15", "15-minute load average.", None, fifteen)?;
        }
        Ok(())
    }
}

/// `llmchat_backend_process*`: the backend process, from the same
/// snapshot, registered under its own prefix.
#[derive(Debug)]
pub struct BackendMetrics(pub Arc<HostCollector>);

impl Collector for BackendMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let guard = lock(&self.0.snapshot);
        let Some(s) = guard.as_ref() else {
            return Ok(());
        };
        let b = Some(Unit::Bytes);
        let p = &s.backend;
        gauge(
            &mut e,
            "process_up",
            "1 if the LLMChat backend process was found (by pid file or name), else 0.",
            None,
            f64::from(u8::from(p.matched > 0)),
        )?;
        gauge(
            &mut e,
            "processes",
            "Number of processes matching the backend's name or pid file.",
            None,
            p.matched as f64,
        )?;
        if p.matched > 0 {
            gauge(
                &mut e,
                "process_resident_memory",
                "Resident memory of the backend process(es).",
                b,
                p.resident_bytes as f64,
            )?;
            counter(
                &mut e,
                "process_cpu",
                "CPU time used by the backend process(es).",
                Some(Unit::Seconds),
                p.cpu_seconds,
            )?;
            gauge(
                &mut e,
                "process_start_time",
                "Start time of the (oldest) backend process, Unix time.",
                Some(Unit::Seconds),
                p.start_time as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::HostConfig;

    /// Docker bind-mounts /etc/hosts, /etc/hostname and /etc/resolv.conf
    /// into every container: as filesystems of their own they would raise
    /// the disk alerts three more times in the stack.
    #[test]
    fn the_default_exclusion_leaves_out_dockers_file_mounts_only() {
        let re = regex::Regex::new(&HostConfig::default().mount_points_exclude).unwrap();
        for skipped in [
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/proc",
            "/var/lib/docker/overlay2/x/merged",
        ] {
            assert!(re.is_match(skipped), "{skipped}");
        }
        for kept in [
            "/",
            "/etc",
            "/etc/hostsx",
            "/data",
            "/var/log/nginx",
            "/backups/llmchat",
        ] {
            assert!(!re.is_match(kept), "{kept}");
        }
    }
}
