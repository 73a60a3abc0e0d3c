//! Configuration: defaults, overridden by a TOML file, overridden by
//! `LLMCHAT_EXPORTER_*` environment variables, overridden by flags.
//!
//! Every setting has one canonical key. The TOML file spells it
//! `section.key_name`, the flag `--section.key-name`, the environment
//! `LLMCHAT_EXPORTER_SECTION_KEY_NAME`. Validation happens before any port is
//! bound, and every error names the key and the value that was refused, so
//! `main` can print it and exit with 64 (EX_USAGE).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, Parser};
use serde::Deserialize;

/// The default port. The Prometheus default-port-allocation list gives
/// 9100-9999 to exporters; 9842 is not listed there for any well-known
/// exporter (see README, "Configuration").
pub const DEFAULT_PORT: u16 = 9842;

/// Why a configuration was refused. Each variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}: {message}")]
    File {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{key}: invalid value {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(key: &'static str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The resolved configuration the exporter runs with.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub web: WebConfig,
    pub collectors: CollectorsConfig,
    pub logs: LogsConfig,
    pub host: HostConfig,
    pub log: OwnLogConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// `host:port`, or `:port` for every IPv4 address.
    pub listen_address: String,
    pub telemetry_path: String,
    /// Per-collector time budget within one scrape.
    #[serde(with = "humantime_serde_compat")]
    pub collector_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    pub host: bool,
    pub logs: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Application log files to tail (winston JSON or plain lines).
    pub app: Vec<PathBuf>,
    /// Read files that exist at start-up from their beginning instead of
    /// their end.
    pub from_beginning: bool,
    /// Safety-net re-check of every file, on top of inotify events.
    #[serde(with = "humantime_serde_compat")]
    pub poll_interval: Duration,
    /// How long a rotated-away file is still drained for late writes.
    #[serde(with = "humantime_serde_compat")]
    pub rotate_wait: Duration,
    /// Longer lines are counted once, classified on their first bytes and
    /// the rest discarded, so memory stays bounded.
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Executable name of the LLMChat backend process.
    pub process_name: String,
    /// A pid file; when set, it wins over `process_name`.
    pub pid_file: Option<PathBuf>,
    /// Filesystem types that are not real storage.
    pub fs_types_exclude: Vec<String>,
    /// Mount points to skip, as one regular expression.
    pub mount_points_exclude: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OwnLogConfig {
    /// tracing filter for the exporter's own log, e.g. `info` or `llmchat_exporter=debug`.
    pub level: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: format!(":{DEFAULT_PORT}"),
            telemetry_path: "/metrics".into(),
            collector_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self {
            host: true,
            logs: true,
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            app: vec![
                PathBuf::from("/var/log/llmchat/app.log"),
                PathBuf::from("/var/log/llmchat/error.log"),
            ],
            from_beginning: false,
            poll_interval: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(5),
            max_line_bytes: 1024 * 1024,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            process_name: "node".into(),
            pid_file: None,
            // node_exporter's list, less overlay (a container's `/` is
            // overlay, and the guide checks `df /`), plus RAM-backed tmpfs.
            fs_types_exclude: [
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "proc",
                "procfs",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "erofs",
                "sysfs",
                "tmpfs",
                "tracefs",
            ]
            .map(String::from)
            .to_vec(),
            mount_points_exclude:
                "^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
                    .into(),
        }
    }
}

impl Default for OwnLogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Durations in the TOML file are strings such as `"5s"` or `"1m30s"`.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?}: {e} (use e.g. \"5s\")"))
        })
    }
}

/// Command line of `llmchat-exporter`. Every flag also reads its
/// `LLMCHAT_EXPORTER_*` variable; an unset flag leaves the file's value.
#[derive(Debug, Parser)]
#[command(
    name = "llmchat-exporter",
    version,
    about = "Prometheus exporter for LLMChat: traffic, chat, database, cache, host and logs"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(
        long = "config.file",
        env = "LLMCHAT_EXPORTER_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,

    /// Validate the configuration, print it, and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Address to listen on, `host:port` or `:port` [default: :9842].
    #[arg(
        long = "web.listen-address",
        env = "LLMCHAT_EXPORTER_WEB_LISTEN_ADDRESS",
        value_name = "ADDR"
    )]
    pub web_listen_address: Option<String>,

    /// Path under which metrics are served [default: /metrics].
    #[arg(
        long = "web.telemetry-path",
        env = "LLMCHAT_EXPORTER_WEB_TELEMETRY_PATH",
        value_name = "PATH"
    )]
    pub web_telemetry_path: Option<String>,

    /// Time budget of each collector within one scrape [default: 5s].
    #[arg(
        long = "web.collector-timeout",
        env = "LLMCHAT_EXPORTER_WEB_COLLECTOR_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub web_collector_timeout: Option<Duration>,

    #[command(flatten)]
    pub collectors: CollectorFlags,

    /// Application log file to tail; repeat for several [default:
    /// /var/log/llmchat/app.log, /var/log/llmchat/error.log].
    #[arg(
        long = "logs.app",
        env = "LLMCHAT_EXPORTER_LOGS_APP",
        value_name = "PATH",
        value_delimiter = ',',
        action = ArgAction::Append
    )]
    pub logs_app: Vec<PathBuf>,

    /// Read log files that already exist from their start, not their end.
    #[arg(
        long = "logs.from-beginning",
        env = "LLMCHAT_EXPORTER_LOGS_FROM_BEGINNING",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub logs_from_beginning: Option<bool>,

    /// Re-check every log file this often, besides inotify [default: 1s].
    #[arg(
        long = "logs.poll-interval",
        env = "LLMCHAT_EXPORTER_LOGS_POLL_INTERVAL",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub logs_poll_interval: Option<Duration>,

    /// Keep draining a rotated-away log file this long [default: 5s].
    #[arg(
        long = "logs.rotate-wait",
        env = "LLMCHAT_EXPORTER_LOGS_ROTATE_WAIT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub logs_rotate_wait: Option<Duration>,

    /// Bytes of one log line kept for classification [default: 1048576].
    #[arg(
        long = "logs.max-line-bytes",
        env = "LLMCHAT_EXPORTER_LOGS_MAX_LINE_BYTES",
        value_name = "BYTES"
    )]
    pub logs_max_line_bytes: Option<usize>,

    /// Executable name of the LLMChat backend process [default: node].
    #[arg(
        long = "host.process-name",
        env = "LLMCHAT_EXPORTER_HOST_PROCESS_NAME",
        value_name = "NAME"
    )]
    pub host_process_name: Option<String>,

    /// Pid file of the LLMChat backend; wins over --host.process-name.
    #[arg(
        long = "host.pid-file",
        env = "LLMCHAT_EXPORTER_HOST_PID_FILE",
        value_name = "PATH"
    )]
    pub host_pid_file: Option<PathBuf>,

    /// Filesystem types to skip, comma-separated.
    #[arg(
        long = "host.fs-types-exclude",
        env = "LLMCHAT_EXPORTER_HOST_FS_TYPES_EXCLUDE",
        value_name = "TYPES",
        value_delimiter = ','
    )]
    pub host_fs_types_exclude: Vec<String>,

    /// Mount points to skip, as a regular expression.
    #[arg(
        long = "host.mount-points-exclude",
        env = "LLMCHAT_EXPORTER_HOST_MOUNT_POINTS_EXCLUDE",
        value_name = "REGEX"
    )]
    pub host_mount_points_exclude: Option<String>,

    /// The exporter's own log filter [default: info].
    #[arg(
        long = "log.level",
        env = "LLMCHAT_EXPORTER_LOG_LEVEL",
        value_name = "FILTER"
    )]
    pub log_level: Option<String>,
}

/// `--collector.<name>` / `--no-collector.<name>` pairs. The positive form
/// takes an optional boolean so that the environment can say `false` too;
/// the negative form, being a flag, wins over it and over the environment.
#[derive(Debug, Args)]
pub struct CollectorFlags {
    /// Enable the host collector (memory, disks, CPU, backend process) [default: true].
    #[arg(long = "collector.host", env = "LLMCHAT_EXPORTER_COLLECTOR_HOST", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub host: Option<bool>,
    /// Disable the host collector.
    #[arg(long = "no-collector.host")]
    pub no_host: bool,

    /// Enable the log-file collector (tails --logs.app) [default: true].
    #[arg(long = "collector.logs", env = "LLMCHAT_EXPORTER_COLLECTOR_LOGS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub logs: Option<bool>,
    /// Disable the log-file collector.
    #[arg(long = "no-collector.logs")]
    pub no_logs: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. \"5s\")"))
}

fn flag(enable: Option<bool>, disable: bool) -> Option<bool> {
    if disable {
        Some(false)
    } else {
        enable
    }
}

impl Cli {
    /// Loads the file named by `--config.file` (if any) over the defaults,
    /// then applies environment and flags, then validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut config = match &self.config_file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    fn apply(self, c: &mut Config) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        fn set_list<T>(slot: &mut Vec<T>, value: Vec<T>) {
            if !value.is_empty() {
                *slot = value;
            }
        }
        set(&mut c.web.listen_address, self.web_listen_address);
        set(&mut c.web.telemetry_path, self.web_telemetry_path);
        set(&mut c.web.collector_timeout, self.web_collector_timeout);
        set(
            &mut c.collectors.host,
            flag(self.collectors.host, self.collectors.no_host),
        );
        set(
            &mut c.collectors.logs,
            flag(self.collectors.logs, self.collectors.no_logs),
        );
        set_list(&mut c.logs.app, self.logs_app);
        set(&mut c.logs.from_beginning, self.logs_from_beginning);
        set(&mut c.logs.poll_interval, self.logs_poll_interval);
        set(&mut c.logs.rotate_wait, self.logs_rotate_wait);
        set(&mut c.logs.max_line_bytes, self.logs_max_line_bytes);
        set(&mut c.host.process_name, self.host_process_name);
        if self.host_pid_file.is_some() {
            c.host.pid_file = self.host_pid_file;
        }
        set_list(&mut c.host.fs_types_exclude, self.host_fs_types_exclude);
        set(
            &mut c.host.mount_points_exclude,
            self.host_mount_points_exclude,
        );
        set(&mut c.log.level, self.log_level);
    }
}

impl Config {
    /// Parses a TOML file; an error names the offending key path.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|(key, message)| ConfigError::File {
            path: path.to_owned(),
            key,
            message,
        })
    }

    /// Parses TOML text into a configuration; on error, `(key path, message)`.
    pub fn from_toml(text: &str) -> Result<Self, (String, String)> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            // toml's message carries a source excerpt; keep its first line.
            let message = e.into_inner().message().trim().to_string();
            (
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            )
        })
    }

    /// Checks every value that could fail later, so that nothing fails after
    /// the port is bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        resolve_listen_address(&self.web.listen_address)?;
        let path = &self.web.telemetry_path;
        if !path.starts_with('/') || path == "/" || path == "/health" || path.contains(['?', '#']) {
            return Err(invalid(
                "web.telemetry-path",
                path,
                "must start with '/', and must not be '/' or '/health'",
            ));
        }
        if self.web.collector_timeout.is_zero() {
            return Err(invalid(
                "web.collector-timeout",
                "0s",
                "must be greater than zero",
            ));
        }
        if self.logs.poll_interval < Duration::from_millis(10) {
            return Err(invalid(
                "logs.poll-interval",
                humantime::format_duration(self.logs.poll_interval),
                "must be at least 10ms",
            ));
        }
        if self.logs.max_line_bytes < 64 {
            return Err(invalid(
                "logs.max-line-bytes",
                self.logs.max_line_bytes,
                "must be at least 64",
            ));
        }
        for (i, p) in self.logs.app.iter().enumerate() {
            if p.as_os_str().is_empty() || p.file_name().is_none() {
                return Err(invalid(
                    "logs.app",
                    p.display(),
                    format!("entry {i} is not a file path"),
                ));
            }
        }
        if self.host.process_name.is_empty() && self.host.pid_file.is_none() {
            return Err(invalid(
                "host.process-name",
                "",
                "set a process name or a pid file",
            ));
        }
        if let Err(e) = regex::Regex::new(&self.host.mount_points_exclude) {
            return Err(invalid(
                "host.mount-points-exclude",
                &self.host.mount_points_exclude,
                e,
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", &self.log.level, e));
        }
        Ok(())
    }

    /// Names of the enabled collectors, in exposition order.
    pub fn enabled_collectors(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.collectors.host {
            names.push("host");
        }
        if self.collectors.logs {
            names.push("logs");
        }
        names
    }
}

/// Resolves `host:port` or `:port` to a socket address.
pub fn resolve_listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    let key = "web.listen-address";
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    match full.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| invalid(key, value, "resolves to no address")),
        Err(e) => Err(invalid(
            key,
            value,
            format!("{e} (expected host:port or :port)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["llmchat-exporter"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        assert_eq!(
            resolve_listen_address(":9842").unwrap(),
            "0.0.0.0:9842".parse().unwrap()
        );
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let mut c = Config::from_toml(
            "[web]\nlisten_address = \"127.0.0.1:1\"\n[collectors]\nhost = false\n",
        )
        .unwrap();
        assert_eq!(c.web.listen_address, "127.0.0.1:1");
        assert_eq!(c.web.telemetry_path, "/metrics");
        assert!(!c.collectors.host);
        cli(&["--web.listen-address", "127.0.0.1:2", "--collector.host"]).apply(&mut c);
        assert_eq!(c.web.listen_address, "127.0.0.1:2");
        assert!(c.collectors.host);
    }

    #[test]
    fn no_collector_flag_disables() {
        let mut c = Config::default();
        cli(&["--no-collector.logs"]).apply(&mut c);
        assert!(!c.collectors.logs);
        let mut c = Config::default();
        cli(&["--collector.logs=false"]).apply(&mut c);
        assert!(!c.collectors.logs);
        let mut c = Config::default();
        c.collectors.logs = false;
        cli(&["--collector.logs"]).apply(&mut c);
        assert!(c.collectors.logs);
    }

    #[test]
    fn repeated_logs_app_flags_replace_the_default_list() {
        let mut c = Config::default();
        cli(&["--logs.app", "/a.log", "--logs.app", "/b.log"]).apply(&mut c);
        assert_eq!(
            c.logs.app,
            vec![PathBuf::from("/a.log"), PathBuf::from("/b.log")]
        );
    }

    #[test]
    fn file_errors_name_the_key() {
        let (key, msg) = Config::from_toml("[web]\nlisten_adress = \"x\"\n").unwrap_err();
        assert!(msg.contains("listen_adress"), "{key}: {msg}");
        let (key, _) = Config::from_toml("[logs]\npoll_interval = \"soon\"\n").unwrap_err();
        assert_eq!(key, "logs.poll_interval");
        let (key, _) = Config::from_toml("[collectors]\nhost = \"yes\"\n").unwrap_err();
        assert_eq!(key, "collectors.host");
    }

    #[test]
    fn invalid_values_name_key_and_value() {
        let mut c = Config::default();
        c.web.listen_address = "nonsense".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("web.listen-address") && e.contains("nonsense"),
            "{e}"
        );
        let mut c = Config::default();
        c.web.telemetry_path = "metrics".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("web.telemetry-path") && e.contains("\"metrics\""),
            "{e}"
        );
        let mut c = Config::default();
        c.host.mount_points_exclude = "(".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("host.mount-points-exclude"));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_toml_text_is_accepted_or_refused_with_a_key(text in "\\PC{0,200}") {
            if let Err((key, message)) = Config::from_toml(&text) {
                prop_assert!(!key.is_empty() && !message.is_empty());
            }
        }
    }
}
