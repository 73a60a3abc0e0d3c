//! Configuration: defaults, overridden by a TOML file, overridden by
//! `LLMCHAT_EXPORTER_*` environment variables, overridden by flags.
//!
//! Every setting has one canonical key. The TOML file spells it
//! `section.key_name`, the flag `--section.key-name`, the environment
//! `LLMCHAT_EXPORTER_SECTION_KEY_NAME`. Validation happens before any port is
//! bound, and every error names the key and the value that was refused, so
//! `main` can print it and exit with 64 (EX_USAGE).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, Parser};
use serde::Deserialize;

use crate::access_log::{DurationUnit, JsonFields};
use crate::chat_event::ChatConfig;
use crate::collectors::app::AppConfig;
use crate::collectors::backup::BackupConfig;
use crate::collectors::database::DatabaseConfig;
use crate::collectors::redis::RedisConfig;
use crate::route::RouteRule;

/// The default port. The Prometheus default-port-allocation list gives
/// 9100-9999 to exporters; 9842 is not listed there for any well-known
/// exporter (see README, "Configuration").
pub const DEFAULT_PORT: u16 = 9842;

use llmchat_common::invalid;
pub use llmchat_common::ConfigError;

/// The resolved configuration the exporter runs with.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub web: WebConfig,
    pub collectors: CollectorsConfig,
    pub logs: LogsConfig,
    pub access: AccessConfig,
    pub chat: ChatConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub app: AppConfig,
    pub backup: BackupConfig,
    pub host: HostConfig,
    pub log: OwnLogConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// `host:port`, or `:port` for every IPv4 address.
    pub listen_address: String,
    pub telemetry_path: String,
    /// Time budget of one scrape's collectors; Prometheus' own scrape
    /// timeout (X-Prometheus-Scrape-Timeout-Seconds) lowers it further.
    #[serde(with = "duration")]
    pub collector_timeout: Duration,
    /// Bearer token that /health/detailed requires (the guide's AdminGuard);
    /// without one, /health/detailed answers 403.
    pub admin_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    pub host: bool,
    pub logs: bool,
    /// HTTP metrics from access logs.
    pub access: bool,
    /// Chat events from the app logs (needs `logs`, whose tailer reads them).
    pub chat: bool,
    /// PostgreSQL.
    pub database: bool,
    pub redis: bool,
    /// The backend's own /health endpoints.
    pub app: bool,
    /// The backup directory.
    pub backup: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Application log files to tail (winston JSON or plain lines).
    pub app: Vec<PathBuf>,
    /// Access log files to tail (nginx, or JSON lines).
    pub access: Vec<PathBuf>,
    /// Read files that exist at start-up from their beginning instead of
    /// their end.
    pub from_beginning: bool,
    /// Safety-net re-check of every file, on top of inotify events.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long a rotated-away file is still drained for late writes.
    #[serde(with = "duration")]
    pub rotate_wait: Duration,
    /// Longer lines are counted once, classified on their first bytes and
    /// the rest discarded, so memory stays bounded.
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// `combined` (nginx combined + $request_time), `json`, or an nginx
    /// `log_format` string.
    pub format: String,
    /// Field names for `format = "json"`.
    pub json: JsonFields,
    /// Bucket bounds of `llmchat_http_request_duration_seconds`.
    pub buckets: Vec<f64>,
    /// Distinct routes kept; the rest become `other`.
    pub max_routes: usize,
    /// User rules, applied before the built-in `:id` normalisation.
    pub routes: Vec<RouteRule>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            format: "combined".into(),
            json: JsonFields::default(),
            // The guide's MetricsService buckets.
            buckets: vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0],
            max_routes: 200,
            routes: Vec::new(),
        }
    }
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
            admin_token: None,
        }
    }
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        Self {
            host: true,
            logs: true,
            access: true,
            chat: true,
            database: true,
            redis: true,
            app: true,
            backup: true,
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
            access: vec![PathBuf::from("/var/log/nginx/access.log")],
            from_beginning: false,
            poll_interval: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(5),
            max_line_bytes: 1024 * 1024,
        }
    }
}

impl LogsConfig {
    pub fn tail_options(&self) -> crate::tail::Options {
        crate::tail::Options {
            from_beginning: self.from_beginning,
            rotate_wait: self.rotate_wait,
            max_line_bytes: self.max_line_bytes,
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

pub use llmchat_common::duration;

/// Command line of `llmchat-exporter`. Every flag also reads its
/// `LLMCHAT_EXPORTER_*` variable; an unset flag leaves the file's value.
#[derive(Debug, Parser)]
#[command(
    name = "llmchat-exporter",
    version,
    about = "Prometheus exporter for LLMChat: traffic, chat, database, cache, host and logs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

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

    /// Access log file to tail; repeat for several [default:
    /// /var/log/nginx/access.log].
    #[arg(
        long = "logs.access",
        env = "LLMCHAT_EXPORTER_LOGS_ACCESS",
        value_name = "PATH",
        value_delimiter = ',',
        action = ArgAction::Append
    )]
    pub logs_access: Vec<PathBuf>,

    /// Access log format: combined, json, or an nginx log_format string [default: combined].
    #[arg(
        long = "access.format",
        env = "LLMCHAT_EXPORTER_ACCESS_FORMAT",
        value_name = "FORMAT"
    )]
    pub access_format: Option<String>,

    /// Request duration histogram buckets, seconds, comma-separated [default: 0.1,0.5,1,2,5,10].
    #[arg(
        long = "access.buckets",
        env = "LLMCHAT_EXPORTER_ACCESS_BUCKETS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub access_buckets: Vec<f64>,

    /// Distinct route label values kept; the rest become "other" [default: 200].
    #[arg(
        long = "access.max-routes",
        env = "LLMCHAT_EXPORTER_ACCESS_MAX_ROUTES",
        value_name = "N"
    )]
    pub access_max_routes: Option<usize>,

    /// A route rule REGEX=ROUTE, applied before the :id normalisation; repeatable.
    #[arg(long = "access.routes", env = "LLMCHAT_EXPORTER_ACCESS_ROUTES", value_name = "REGEX=ROUTE", action = ArgAction::Append)]
    pub access_routes: Vec<RouteRule>,

    /// JSON access logs: field (dotted path) of the method [default: method].
    #[arg(
        long = "access.json.method",
        env = "LLMCHAT_EXPORTER_ACCESS_JSON_METHOD",
        value_name = "FIELD"
    )]
    pub access_json_method: Option<String>,
    /// JSON access logs: field of the request path [default: url].
    #[arg(
        long = "access.json.path",
        env = "LLMCHAT_EXPORTER_ACCESS_JSON_PATH",
        value_name = "FIELD"
    )]
    pub access_json_path: Option<String>,
    /// JSON access logs: field of the status code [default: statusCode].
    #[arg(
        long = "access.json.status",
        env = "LLMCHAT_EXPORTER_ACCESS_JSON_STATUS",
        value_name = "FIELD"
    )]
    pub access_json_status: Option<String>,
    /// JSON access logs: field of the duration [default: responseTime].
    #[arg(
        long = "access.json.duration",
        env = "LLMCHAT_EXPORTER_ACCESS_JSON_DURATION",
        value_name = "FIELD"
    )]
    pub access_json_duration: Option<String>,
    /// JSON access logs: unit of the duration, ms or s [default: ms].
    #[arg(long = "access.json.duration-unit", env = "LLMCHAT_EXPORTER_ACCESS_JSON_DURATION_UNIT", value_name = "UNIT", value_parser = parse_unit)]
    pub access_json_duration_unit: Option<DurationUnit>,
    /// JSON access logs: field of the response size [default: contentLength].
    #[arg(
        long = "access.json.bytes",
        env = "LLMCHAT_EXPORTER_ACCESS_JSON_BYTES",
        value_name = "FIELD"
    )]
    pub access_json_bytes: Option<String>,

    /// Chat events: field naming the event [default: event].
    #[arg(
        long = "chat.event-field",
        env = "LLMCHAT_EXPORTER_CHAT_EVENT_FIELD",
        value_name = "FIELD"
    )]
    pub chat_event_field: Option<String>,
    /// Chat events: value of that field that marks a chat message [default: chat_message].
    #[arg(
        long = "chat.event-value",
        env = "LLMCHAT_EXPORTER_CHAT_EVENT_VALUE",
        value_name = "VALUE"
    )]
    pub chat_event_value: Option<String>,
    /// Chat events: field of the agent id [default: agent_id].
    #[arg(
        long = "chat.agent-field",
        env = "LLMCHAT_EXPORTER_CHAT_AGENT_FIELD",
        value_name = "FIELD"
    )]
    pub chat_agent_field: Option<String>,
    /// Chat events: field of the status, success or error [default: status].
    #[arg(
        long = "chat.status-field",
        env = "LLMCHAT_EXPORTER_CHAT_STATUS_FIELD",
        value_name = "FIELD"
    )]
    pub chat_status_field: Option<String>,
    /// Chat events: field of the response duration [default: duration_ms].
    #[arg(
        long = "chat.duration-field",
        env = "LLMCHAT_EXPORTER_CHAT_DURATION_FIELD",
        value_name = "FIELD"
    )]
    pub chat_duration_field: Option<String>,
    /// Chat events: unit of the duration, ms or s [default: ms].
    #[arg(long = "chat.duration-unit", env = "LLMCHAT_EXPORTER_CHAT_DURATION_UNIT", value_name = "UNIT", value_parser = parse_unit)]
    pub chat_duration_unit: Option<DurationUnit>,
    /// Distinct agent_id values kept; the rest become "other" [default: 100].
    #[arg(
        long = "chat.max-agents",
        env = "LLMCHAT_EXPORTER_CHAT_MAX_AGENTS",
        value_name = "N"
    )]
    pub chat_max_agents: Option<usize>,
    /// Chat duration histogram buckets, seconds [default: 0.5,1,2,5,10,30,60].
    #[arg(
        long = "chat.buckets",
        env = "LLMCHAT_EXPORTER_CHAT_BUCKETS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub chat_buckets: Vec<f64>,

    /// PostgreSQL URL; the password never appears in labels, logs or errors
    /// [default: postgres://postgres@localhost:5432/llmchat].
    #[arg(
        long = "database.url",
        env = "LLMCHAT_EXPORTER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Tables whose statistics are exported, comma-separated [default: chat_sessions,messages,agents].
    #[arg(
        long = "database.tables",
        env = "LLMCHAT_EXPORTER_DATABASE_TABLES",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub database_tables: Vec<String>,
    /// Window in which an updated session counts as active [default: 30m].
    #[arg(long = "database.active-window", env = "LLMCHAT_EXPORTER_DATABASE_ACTIVE_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub database_active_window: Option<Duration>,
    /// How long sizes and backlog counts are reused [default: 60s].
    #[arg(long = "database.cache-ttl", env = "LLMCHAT_EXPORTER_DATABASE_CACHE_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub database_cache_ttl: Option<Duration>,
    /// Connections the collector may open at most [default: 2].
    #[arg(
        long = "database.max-connections",
        env = "LLMCHAT_EXPORTER_DATABASE_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub database_max_connections: Option<u32>,

    /// Redis URL [default: redis://localhost:6379].
    #[arg(
        long = "redis.url",
        env = "LLMCHAT_EXPORTER_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Cache namespaces counted by key prefix, comma-separated [default: agents,sessions,messages].
    #[arg(
        long = "redis.namespaces",
        env = "LLMCHAT_EXPORTER_REDIS_NAMESPACES",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub redis_namespaces: Vec<String>,
    /// Time budget of the namespace SCAN per scrape [default: 500ms].
    #[arg(long = "redis.scan-budget", env = "LLMCHAT_EXPORTER_REDIS_SCAN_BUDGET", value_name = "DURATION", value_parser = parse_duration)]
    pub redis_scan_budget: Option<Duration>,
    /// Keys the namespace SCAN examines at most per scrape [default: 100000].
    #[arg(
        long = "redis.scan-max-keys",
        env = "LLMCHAT_EXPORTER_REDIS_SCAN_MAX_KEYS",
        value_name = "N"
    )]
    pub redis_scan_max_keys: Option<u64>,

    /// The backend's base URL, probed at /health, /health/db, /health/redis [default: http://localhost:3001].
    #[arg(long = "app.url", env = "LLMCHAT_EXPORTER_APP_URL", value_name = "URL")]
    pub app_url: Option<String>,

    /// Directory backup.sh writes to [default: /backups/llmchat].
    #[arg(
        long = "backup.dir",
        env = "LLMCHAT_EXPORTER_BACKUP_DIR",
        value_name = "PATH"
    )]
    pub backup_dir: Option<PathBuf>,

    /// Bearer token for /health/detailed (prefer the environment variable).
    #[arg(
        long = "web.admin-token",
        env = "LLMCHAT_EXPORTER_WEB_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub web_admin_token: Option<String>,

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

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the monthly performance report (the guide's PerformanceAnalyzer) from Prometheus.
    Report(crate::report::ReportArgs),
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

    /// Enable the HTTP collector (tails --logs.access) [default: true].
    #[arg(long = "collector.access", env = "LLMCHAT_EXPORTER_COLLECTOR_ACCESS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub access: Option<bool>,
    /// Disable the HTTP collector.
    #[arg(long = "no-collector.access")]
    pub no_access: bool,

    /// Enable chat events from the app logs (with the logs collector) [default: true].
    #[arg(long = "collector.chat", env = "LLMCHAT_EXPORTER_COLLECTOR_CHAT", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub chat: Option<bool>,
    /// Disable chat events.
    #[arg(long = "no-collector.chat")]
    pub no_chat: bool,

    /// Enable the PostgreSQL collector [default: true].
    #[arg(long = "collector.database", env = "LLMCHAT_EXPORTER_COLLECTOR_DATABASE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub database: Option<bool>,
    /// Disable the PostgreSQL collector.
    #[arg(long = "no-collector.database")]
    pub no_database: bool,

    /// Enable the Redis collector [default: true].
    #[arg(long = "collector.redis", env = "LLMCHAT_EXPORTER_COLLECTOR_REDIS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub redis: Option<bool>,
    /// Disable the Redis collector.
    #[arg(long = "no-collector.redis")]
    pub no_redis: bool,

    /// Enable the app probe [default: true].
    #[arg(long = "collector.app", env = "LLMCHAT_EXPORTER_COLLECTOR_APP", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub app: Option<bool>,
    /// Disable the app probe.
    #[arg(long = "no-collector.app")]
    pub no_app: bool,

    /// Enable the backup collector [default: true].
    #[arg(long = "collector.backup", env = "LLMCHAT_EXPORTER_COLLECTOR_BACKUP", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub backup: Option<bool>,
    /// Disable the backup collector.
    #[arg(long = "no-collector.backup")]
    pub no_backup: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. \"5s\")"))
}

fn parse_unit(s: &str) -> Result<DurationUnit, String> {
    DurationUnit::parse(s).ok_or_else(|| "expected ms or s".to_string())
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
        set(
            &mut c.collectors.access,
            flag(self.collectors.access, self.collectors.no_access),
        );
        set(
            &mut c.collectors.chat,
            flag(self.collectors.chat, self.collectors.no_chat),
        );
        set(
            &mut c.collectors.database,
            flag(self.collectors.database, self.collectors.no_database),
        );
        set(
            &mut c.collectors.redis,
            flag(self.collectors.redis, self.collectors.no_redis),
        );
        set(
            &mut c.collectors.app,
            flag(self.collectors.app, self.collectors.no_app),
        );
        set(
            &mut c.collectors.backup,
            flag(self.collectors.backup, self.collectors.no_backup),
        );
        set(&mut c.database.url, self.database_url);
        set_list(&mut c.database.tables, self.database_tables);
        set(&mut c.database.active_window, self.database_active_window);
        set(&mut c.database.cache_ttl, self.database_cache_ttl);
        set(
            &mut c.database.max_connections,
            self.database_max_connections,
        );
        set(&mut c.redis.url, self.redis_url);
        set_list(&mut c.redis.namespaces, self.redis_namespaces);
        set(&mut c.redis.scan_budget, self.redis_scan_budget);
        set(&mut c.redis.scan_max_keys, self.redis_scan_max_keys);
        set(&mut c.app.url, self.app_url);
        set(&mut c.backup.dir, self.backup_dir);
        if self.web_admin_token.is_some() {
            c.web.admin_token = self.web_admin_token;
        }
        set_list(&mut c.logs.app, self.logs_app);
        set_list(&mut c.logs.access, self.logs_access);
        set(&mut c.access.format, self.access_format);
        set_list(&mut c.access.buckets, self.access_buckets);
        set(&mut c.access.max_routes, self.access_max_routes);
        set_list(&mut c.access.routes, self.access_routes);
        let j = &mut c.access.json;
        set(&mut j.method, self.access_json_method);
        set(&mut j.path, self.access_json_path);
        set(&mut j.status, self.access_json_status);
        set(&mut j.duration, self.access_json_duration);
        set(&mut j.duration_unit, self.access_json_duration_unit);
        set(&mut j.bytes, self.access_json_bytes);
        let ch = &mut c.chat;
        set(&mut ch.event_field, self.chat_event_field);
        set(&mut ch.event_value, self.chat_event_value);
        set(&mut ch.agent_field, self.chat_agent_field);
        set(&mut ch.status_field, self.chat_status_field);
        set(&mut ch.duration_field, self.chat_duration_field);
        set(&mut ch.duration_unit, self.chat_duration_unit);
        set(&mut ch.max_agents, self.chat_max_agents);
        set_list(&mut ch.buckets, self.chat_buckets);
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
        llmchat_common::from_toml(text)
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
        for (key, list) in [
            ("logs.app", &self.logs.app),
            ("logs.access", &self.logs.access),
        ] {
            for (i, p) in list.iter().enumerate() {
                if p.as_os_str().is_empty() || p.file_name().is_none() {
                    return Err(invalid(
                        key,
                        p.display(),
                        format!("entry {i} is not a file path"),
                    ));
                }
            }
        }
        if let Err(e) = crate::access_log::Parser::new(&self.access.format, &self.access.json) {
            return Err(invalid("access.format", &self.access.format, e));
        }
        validate_buckets("access.buckets", &self.access.buckets)?;
        validate_buckets("chat.buckets", &self.chat.buckets)?;
        if self.access.max_routes == 0 {
            return Err(invalid("access.max-routes", 0, "must be at least 1"));
        }
        if let Err(e) = crate::route::Normalizer::new(&self.access.routes, 1) {
            return Err(invalid("access.routes", "", e));
        }
        if self.collectors.database {
            if let Err(e) =
                crate::collectors::database::DatabaseCollector::validate_url(&self.database.url)
            {
                return Err(invalid(
                    "database.url",
                    "(not shown: may hold a password)",
                    e,
                ));
            }
        }
        if !(1..=10).contains(&self.database.max_connections) {
            return Err(invalid(
                "database.max-connections",
                self.database.max_connections,
                "must be 1 to 10",
            ));
        }
        for (i, q) in self.database.custom_queries.iter().enumerate() {
            let ok_name = !q.name.is_empty()
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok_name {
                return Err(invalid(
                    "database.custom_queries.name",
                    &q.name,
                    format!("entry {i}: use [a-z0-9_]+"),
                ));
            }
        }
        if self.collectors.redis {
            if let Err(e) = redis::Client::open(self.redis.url.as_str()) {
                return Err(invalid("redis.url", "(not shown: may hold a password)", e));
            }
        }
        if self.collectors.app {
            if let Err(e) = crate::collectors::app::AppCollector::new(&self.app) {
                return Err(invalid("app.url", &self.app.url, e));
            }
        }
        if self
            .web
            .admin_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(invalid(
                "web.admin-token",
                "(not shown)",
                "must be at least 16 characters",
            ));
        }
        if self.chat.max_agents == 0 {
            return Err(invalid("chat.max-agents", 0, "must be at least 1"));
        }
        if self.chat.event_field.is_empty() || self.chat.event_value.is_empty() {
            return Err(invalid(
                "chat.event-value",
                &self.chat.event_value,
                "event field and value must not be empty",
            ));
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
            if self.collectors.chat {
                names.push("chat");
            }
        }
        if self.collectors.access {
            names.push("access");
        }
        for (on, name) in [
            (self.collectors.database, "database"),
            (self.collectors.redis, "redis"),
            (self.collectors.app, "app"),
            (self.collectors.backup, "backup"),
        ] {
            if on {
                names.push(name);
            }
        }
        names
    }
}

fn validate_buckets(key: &'static str, buckets: &[f64]) -> Result<(), ConfigError> {
    let text = || {
        buckets
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if buckets.is_empty() {
        return Err(invalid(key, "", "needs at least one bucket"));
    }
    if buckets.iter().any(|b| !b.is_finite() || *b < 0.0)
        || buckets.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(invalid(
            key,
            text(),
            "bounds must be finite, non-negative and increasing",
        ));
    }
    Ok(())
}

/// Resolves `host:port` or `:port` to a socket address.
pub fn resolve_listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    llmchat_common::listen_address(value)
        .map_err(|reason| invalid("web.listen-address", value, reason))
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
