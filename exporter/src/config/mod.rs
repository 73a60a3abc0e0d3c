//! Configuration: defaults, overridden by a TOML file, overridden by
//! `LLMCHAT_EXPORTER_*` environment variables, overridden by flags.
//!
//! Every setting has one canonical key. The TOML file spells it
//! `section.key_name`, the flag `--section.key-name`, the environment
//! `LLMCHAT_EXPORTER_SECTION_KEY_NAME`. Each section is owned by the module
//! that uses it (a collector's config and flags live in the collector's
//! module); this file only lists the sections, once, in `sections!`.
//!
//! Each default is written once, in its section's `Default`: the layers
//! start from it, and `--help` shows it (added by
//! [`llmchat_common::config::finish_command`] from the same value).
//! Validation happens before any port is bound, and every error names the
//! key (and its flag) and the value that was refused, so `main` can print
//! it and exit with 64 (EX_USAGE).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use llmchat_common::settings::{self, Settings};
use serde::{Deserialize, Serialize};

pub mod collectors;

use crate::collector_kit::{self, Section};
use crate::{collectors as c, logs};
pub use collectors::CollectorsConfig;

use llmchat_common::invalid;
pub use llmchat_common::{duration, ConfigError};

/// The default port. The Prometheus default-port-allocation list gives
/// 9100-9999 to exporters; 9842 is not listed there for any well-known
/// exporter (see README, "Configuration").
pub const DEFAULT_PORT: u16 = 9842;

/// Prefix of every environment variable.
pub const ENV_PREFIX: &str = "LLMCHAT_EXPORTER_";

/// Lists the sections once: the `Config` field and its type, which
/// declares its settings (and so its flags) with `#[derive(Settings)]`.
macro_rules! sections {
    ($( $(#[$doc:meta])* $name:ident : $config:ty; )*) => {
        /// The resolved configuration the exporter runs with.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            /// Which collectors run (`collectors.<name> = true|false`);
            /// their flags are the collector table's.
            pub collectors: CollectorsConfig,
            $( $(#[$doc])* #[setting(section)] pub $name: $config, )*
        }

        impl Config {
            fn validate_sections(&self) -> Result<(), ConfigError> {
                $( Section::validate(
                    &self.$name,
                    self.collectors.is_enabled(stringify!($name)),
                )?; )*
                Ok(())
            }
        }
    };
}

sections! {
    web: WebConfig;
    /// The files the log pipeline tails.
    logs: logs::LogsConfig;
    access: logs::access::AccessConfig;
    chat: logs::chat_event::ChatConfig;
    database: c::database::DatabaseConfig;
    redis: c::redis::RedisConfig;
    app: c::app::AppConfig;
    backup: c::backup::BackupConfig;
    host: c::host::HostConfig;
    /// The exporter's own log.
    log: OwnLogConfig;
}

/// `[web]`: the HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, `host:port` or `:port` (every IPv4 address).
    #[setting(flag, value_name = "ADDR", default = format!(":{DEFAULT_PORT}"))]
    pub listen_address: String,
    /// Path under which metrics are served.
    #[setting(flag, value_name = "PATH", default = "/metrics")]
    pub telemetry_path: String,
    /// Time budget of each collector within one scrape.
    ///
    /// Prometheus' own scrape timeout (X-Prometheus-Scrape-Timeout-Seconds)
    /// lowers it further.
    #[setting(flag, default = Duration::from_secs(5))]
    #[serde(with = "duration")]
    pub collector_timeout: Duration,
    /// Bearer token for /health/detailed (prefer the environment variable).
    ///
    /// The guide's AdminGuard; without one, /health/detailed answers 403.
    #[setting(flag, value_name = "TOKEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// exporter-toolkit web-config file (TLS, basic auth, headers).
    ///
    /// Also mutual TLS; re-read when it changes or on SIGHUP.
    #[setting(flag = "web.config.file", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<std::path::PathBuf>,
    /// What one client may hold of the server (`[web.limits]`).
    #[setting(section)]
    pub limits: llmchat_common::http::Limits,
}

impl Section for WebConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        resolve_listen_address(&self.listen_address)?;
        let path = &self.telemetry_path;
        if !path.starts_with('/') || path == "/" || path == "/health" || path.contains(['?', '#']) {
            return Err(invalid(
                "web.telemetry_path",
                path,
                "must start with '/', and must not be '/' or '/health'",
            ));
        }
        if self.collector_timeout.is_zero() {
            return Err(invalid(
                "web.collector_timeout",
                "0s",
                "must be greater than zero",
            ));
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "web.admin_token",
                "(not shown)",
                "must be at least 16 characters",
            ));
        }
        if let Some(path) = &self.config_file {
            llmchat_common::webconfig::load(path)?;
        }
        self.limits.validate()
    }
}

/// `[log]`: the exporter's own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct OwnLogConfig {
    /// The exporter's own log filter, e.g. `info` or `llmchat_exporter=debug`
    /// (a tracing filter).
    #[setting(flag, value_name = "FILTER", default = "info")]
    pub level: String,
}

impl Section for OwnLogConfig {
    fn validate(&self, _enabled: bool) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| invalid("log.level", &self.level, e))
    }
}

/// Command line of `llmchat-exporter`. Every flag also reads its
/// `LLMCHAT_EXPORTER_*` variable; an unset flag leaves the file's value.
/// Parse with [`Cli::parse_from_args`]: the `--[no-]collector.<name>` flags
/// are added from the collector table at run time.
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
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Validate the configuration, print it, and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Turn off every collector that is on by default; only those enabled
    /// by `--collector.<name>` (or the file's `[collectors]`) run.
    #[arg(long = "collector.disable-defaults", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub disable_defaults: Option<bool>,

    /// Which collectors run by default: host (this host's logs, host
    /// metrics and backend probe), services (the shared PostgreSQL, Redis
    /// and backups) or all.
    #[arg(
        long = "role",
        value_name = "ROLE",
        value_enum,
        env = "LLMCHAT_EXPORTER_ROLE"
    )]
    pub role: Option<collector_kit::Role>,

    /// What the section flags (and their variables) gave, in the keys'
    /// shape ([`llmchat_common::settings::layer`]).
    #[arg(skip)]
    pub settings: settings::Given,

    /// `--collector.<name>` / `--no-collector.<name>` as given.
    #[arg(skip)]
    pub collector_switches: BTreeMap<String, bool>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the monthly performance report (the guide's PerformanceAnalyzer) from Prometheus.
    Report(llmchat_report::ReportArgs),
    /// Judge a deploy from Prometheus: wait for the rollout, then compare the new version with the old (the guide's verify-deployment.sh).
    VerifyDeployment(crate::verify::VerifyArgs),
}

impl Cli {
    /// The full command: the derived flags, the collector table's
    /// `--[no-]collector.<name>` pairs, each flag's variable and its default.
    pub fn full_command() -> clap::Command {
        let mut command = <Cli as CommandFactory>::command();
        for e in collectors::ALL.iter().map(|line| &line.entry) {
            let state = if e.enabled_by_default {
                "enabled"
            } else {
                "disabled"
            };
            command = command
                .arg(
                    clap::Arg::new(format!("collector.{}", e.name))
                        .long(format!("collector.{}", e.name))
                        .value_name("BOOL")
                        .num_args(0..=1)
                        .default_missing_value("true")
                        .value_parser(clap::builder::BoolishValueParser::new())
                        .help(format!(
                            "Enable the {} collector: {} [default: {state}]",
                            e.name, e.help
                        )),
                )
                .arg(
                    clap::Arg::new(format!("no-collector.{}", e.name))
                        .long(format!("no-collector.{}", e.name))
                        .action(clap::ArgAction::SetTrue)
                        .help(format!("Disable the {} collector", e.name)),
                );
        }
        let command = command.args(settings::arguments(ENV_PREFIX, Config::settings()));
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        llmchat_common::config::finish_command(command, ENV_PREFIX, &defaults)
    }

    /// Parses a command line (the program name first).
    pub fn parse_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::full_command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.settings = settings::layer(&matches, Config::settings());
        for e in collectors::ALL.iter().map(|line| &line.entry) {
            let on = format!("collector.{}", e.name);
            let off = format!("no-collector.{}", e.name);
            // The negative form, being a bare flag, wins over the positive
            // one and its variable.
            if matches.get_flag(&off) {
                cli.collector_switches.insert(e.name.into(), false);
            } else if let Some(v) = matches.get_one::<bool>(&on) {
                cli.collector_switches.insert(e.name.into(), *v);
            }
        }
        Ok(cli)
    }

    /// Stacks defaults < the file named by `--config.file` < environment
    /// and flags, then validates.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let defaults = Config {
            collectors: if self.disable_defaults == Some(true) {
                CollectorsConfig::none()
            } else {
                CollectorsConfig::for_role(self.role.unwrap_or_default())
            },
            ..Config::default()
        };
        let mut layer = self.settings.clone();
        if !self.collector_switches.is_empty() {
            layer.0.insert(
                "collectors".into(),
                serde_json::json!(self.collector_switches),
            );
        }
        let name_flag = |e: ConfigError| e.name_flag(&Self::full_command());
        let config = llmchat_common::layered(&defaults, self.config_file.as_deref(), &layer)
            .map_err(name_flag)?;
        config.validate().map_err(name_flag)?;
        Ok(config)
    }
}

impl Config {
    /// Parses TOML text into a configuration.
    pub fn from_toml(text: &str) -> Result<Self, llmchat_common::TomlError> {
        llmchat_common::from_toml(text)
    }

    /// Checks every value that could fail later, so that nothing fails after
    /// the port is bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.collectors.validate()?;
        self.validate_sections()?;
        // The one check that joins two sections: the drill's scratch
        // database must not be the live one.
        self.backup.validate_drill(&self.database.url)
    }

    /// Names of the enabled collectors, in exposition order.
    pub fn enabled_collectors(&self) -> Vec<&'static str> {
        self.collectors.enabled()
    }
}

pub use crate::collector_kit::validate_buckets;

/// Resolves `host:port` or `:port` to a socket address.
pub fn resolve_listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    llmchat_common::listen_address(value)
        .map_err(|reason| invalid("web.listen_address", value, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], file: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec!["llmchat-exporter".to_string()];
        if let Some(text) = file {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            v.push(format!("--config.file={}", path.display()));
        }
        v.extend(args.iter().map(|s| s.to_string()));
        Cli::parse_from_args(v).unwrap().resolve()
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
        let file = "[web]\nlisten_address = \"127.0.0.1:1\"\n[collectors]\nhost = false\n";
        let c = resolve(&[], Some(file)).unwrap();
        assert_eq!(c.web.listen_address, "127.0.0.1:1");
        assert_eq!(c.web.telemetry_path, "/metrics");
        assert!(!c.collectors.is_enabled("host"));
        let c = resolve(
            &["--web.listen-address", "127.0.0.1:2", "--collector.host"],
            Some(file),
        )
        .unwrap();
        assert_eq!(c.web.listen_address, "127.0.0.1:2");
        assert!(c.collectors.is_enabled("host"));
    }

    #[test]
    fn no_collector_flag_disables() {
        let c = resolve(&["--no-collector.logs"], None).unwrap();
        assert!(!c.collectors.is_enabled("logs"));
        let c = resolve(&["--collector.logs=false"], None).unwrap();
        assert!(!c.collectors.is_enabled("logs"));
        let c = resolve(&["--collector.logs"], Some("[collectors]\nlogs = false\n")).unwrap();
        assert!(c.collectors.is_enabled("logs"));
    }

    #[test]
    fn disable_defaults_keeps_only_what_is_asked_for() {
        let c = resolve(
            &["--collector.disable-defaults", "--collector.backup"],
            None,
        )
        .unwrap();
        assert_eq!(c.enabled_collectors(), vec!["backup"]);
        let c = resolve(
            &["--collector.disable-defaults"],
            Some("[collectors]\nredis = true\n"),
        )
        .unwrap();
        assert_eq!(c.enabled_collectors(), vec!["redis"]);
        let e = resolve(&[], Some("[collectors]\nnope = true\n")).unwrap_err();
        assert_eq!(e.key(), Some("collectors.nope"), "{e}");
    }

    #[test]
    fn roles_choose_the_defaults_and_flags_still_decide() {
        let all = resolve(&[], None).unwrap().enabled_collectors();
        let host = resolve(&["--role", "host"], None).unwrap();
        assert_eq!(
            host.enabled_collectors(),
            vec!["host", "logs", "chat", "access", "app"]
        );
        let services = resolve(&["--role", "services"], None).unwrap();
        assert_eq!(
            services.enabled_collectors(),
            vec!["database", "redis", "backup"]
        );
        assert_eq!(
            resolve(&["--role", "all"], None)
                .unwrap()
                .enabled_collectors(),
            all
        );
        // An explicit flag or file key still wins over the role.
        let c = resolve(
            &["--role", "host", "--collector.backup", "--no-collector.app"],
            None,
        )
        .unwrap();
        assert_eq!(
            c.enabled_collectors(),
            vec!["host", "logs", "chat", "access", "backup"]
        );
        let c = resolve(&["--role", "services"], Some("[collectors]\nhost = true\n")).unwrap();
        assert!(c.collectors.is_enabled("host"));
        assert!(Cli::parse_from_args(["llmchat-exporter", "--role", "nope"]).is_err());
    }

    #[test]
    fn repeated_logs_app_flags_replace_the_default_list() {
        let c = resolve(&["--logs.app", "/a.log", "--logs.app", "/b.log"], None).unwrap();
        assert_eq!(
            c.logs.app,
            vec![PathBuf::from("/a.log"), PathBuf::from("/b.log")]
        );
    }

    #[test]
    fn file_errors_name_the_key_and_its_flag() {
        let e = resolve(&[], Some("[web]\nlisten_adress = \"x\"\n")).unwrap_err();
        assert!(e.to_string().contains("listen_adress"), "{e}");
        let e = resolve(&[], Some("[logs]\npoll_interval = \"soon\"\n")).unwrap_err();
        assert_eq!(e.key(), Some("logs.poll_interval"));
        assert!(e.to_string().contains("(--logs.poll-interval)"), "{e}");
        let e = resolve(&[], Some("[collectors]\nhost = \"yes\"\n")).unwrap_err();
        assert_eq!(e.key(), Some("collectors.host"), "{e}");
        let key = Config::from_toml("[logs]\npoll_interval = \"soon\"\n")
            .unwrap_err()
            .key;
        assert_eq!(key, "logs.poll_interval");
    }

    #[test]
    fn invalid_values_name_key_flag_and_value() {
        let mut c = Config::default();
        c.web.listen_address = "nonsense".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("web.listen_address") && e.contains("nonsense"),
            "{e}"
        );
        let e = resolve(&["--web.telemetry-path", "metrics"], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("web.telemetry_path (--web.telemetry-path)") && e.contains("\"metrics\""),
            "{e}"
        );
        let e = resolve(&["--host.mount-points-exclude", "("], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host.mount_points_exclude"), "{e}");
    }

    #[test]
    fn every_flag_and_variable_keeps_its_name() {
        llmchat_tests::assert_flags_unchanged(&Cli::full_command(), env!("CARGO_MANIFEST_DIR"));
    }

    #[test]
    fn help_shows_each_default_and_variable_from_the_one_default() {
        let help = Cli::full_command().render_long_help().to_string();
        for wanted in [
            "[default: 200]",
            "[default: :9842]",
            "[default: 30m]",
            "LLMCHAT_EXPORTER_ACCESS_MAX_ROUTES",
            "--no-collector.backup",
            "LLMCHAT_EXPORTER_COLLECTOR_BACKUP",
        ] {
            assert!(help.contains(wanted), "{wanted} missing from\n{help}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_toml_text_is_accepted_or_refused_with_a_key(text in "\\PC{0,200}") {
            if let Err(llmchat_common::TomlError { key, message }) = Config::from_toml(&text) {
                prop_assert!(!key.is_empty() && !message.is_empty());
            }
        }

        #[test]
        fn any_flag_value_is_accepted_or_refused_naming_the_flag(
            value in "\\PC{0,40}",
            pick in any::<prop::sample::Index>(),
        ) {
            let command = Cli::full_command();
            let longs: Vec<String> = command
                .get_arguments()
                .filter(|a| a.get_action().takes_values() && a.get_long() != Some("config.file"))
                .filter_map(|a| a.get_long().map(String::from))
                .collect();
            let long = pick.get(&longs);
            match Cli::parse_from_args(["llmchat-exporter", &format!("--{long}={value}")]) {
                Ok(cli) => {
                    // Refused naming the key, or (a file the value names
                    // cannot be read: `--web.config.file`) naming the file.
                    if let Err(e) = cli.resolve() {
                        let named = e.key().is_some()
                            || matches!(e, ConfigError::Read { .. } if long == "web.config.file");
                        prop_assert!(named, "{e}");
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains(&format!("--{long}")), "{e}"),
            }
        }
    }
}
