//! `llmchat-receiver`'s command line: the flags that set configuration
//! keys (each also read from its `LLMCHAT_RECEIVER_*` variable), the
//! `render` subcommand's arguments, and how the layers resolve into a
//! [`Config`].

use std::path::PathBuf;

use clap::Parser;

use super::{Config, LogConfig, StoreConfig, WebConfig};
use llmchat_common::{invalid, ConfigError};

/// Command line of `llmchat-receiver`. Every flag also reads its
/// `LLMCHAT_RECEIVER_*` variable (added by
/// [`llmchat_common::config::finish_command`]); an unset flag leaves the
/// file's value.
#[derive(Debug, Parser)]
#[command(
    name = "llmchat-receiver",
    version,
    about = "Alertmanager webhook receiver for LLMChat: email, Slack and webhooks, durably"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Validate the configuration and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print what would be sent for an Alertmanager webhook payload, for
    /// template authors (as `amtool template render`); uses the
    /// configuration's templates, routes and links.
    Render(RenderArgs),
}

/// `llmchat-receiver render`'s arguments (`crate::render` runs it).
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The Alertmanager webhook payload (JSON, version 4).
    #[arg(long, value_name = "FILE")]
    pub payload: PathBuf,
    /// email, slack or webhook.
    #[arg(long, value_name = "CHANNEL", value_parser = clap::builder::PossibleValuesParser::new(
        crate::channels::ALL.iter().map(|k| k.as_str())
    ))]
    pub channel: String,
    /// zh or en: every message in this language, whatever the
    /// configuration says.
    #[arg(long, value_name = "LANGUAGE", value_parser = ["zh", "en"])]
    pub language: Option<String>,
}

/// The flags that set configuration keys, in the keys' own shape, so that
/// figment lays them over the file without a line per setting.
#[derive(Debug, Default, clap::Args, serde::Serialize)]
pub struct Flags {
    #[command(flatten)]
    web: WebFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    recovery: RecoveryFlags,
    #[command(flatten)]
    log: LogFlags,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, serde::Serialize)]
struct WebFlags {
    /// Address to listen on.
    #[arg(
        id = "web.listen_address",
        long = "web.listen-address",
        value_name = "ADDR"
    )]
    listen_address: Option<String>,
    /// Bearer token Alertmanager must send.
    #[arg(
        id = "web.bearer_token",
        long = "web.bearer-token",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    bearer_token: Option<String>,
    /// File holding the bearer token (instead of --web.bearer-token).
    #[arg(
        id = "web.bearer_token_file",
        long = "web.bearer-token-file",
        value_name = "PATH"
    )]
    bearer_token_file: Option<PathBuf>,
    /// Accept posts without credentials (trusted networks only).
    #[arg(id = "web.auth_disabled", long = "web.auth-disabled", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    auth_disabled: Option<bool>,
    /// exporter-toolkit web-config file (TLS, mutual TLS, basic auth, headers).
    #[arg(id = "web.config_file", long = "web.config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    limits: llmchat_common::http::LimitsFlags,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, serde::Serialize)]
struct StoreFlags {
    /// Outbox store: sqlite://PATH or postgres://...
    #[arg(
        id = "store.url",
        long = "store.url",
        value_name = "URL",
        hide_env_values = true
    )]
    url: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, serde::Serialize)]
struct RecoveryFlags {
    /// Redis that shares recovery cooldowns between receiver replicas (SET NX PX);
    /// without it they are kept in the store (key recovery.redis_url).
    #[arg(
        id = "recovery.redis_url",
        long = "redis.url",
        env = "LLMCHAT_RECEIVER_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// Record recovery decisions without running any action.
    #[arg(id = "recovery.dry_run", long = "recovery.dry-run", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    dry_run: Option<bool>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, serde::Serialize)]
struct LogFlags {
    /// Log filter.
    #[arg(id = "log.level", long = "log.level", value_name = "FILTER")]
    level: Option<String>,
    /// Log format, text or json.
    #[arg(id = "log.format", long = "log.format", value_name = "FORMAT")]
    format: Option<String>,
}

impl Cli {
    /// The command with every flag's variable and default filled in.
    pub fn full_command() -> clap::Command {
        use clap::CommandFactory;
        let defaults = serde_json::json!({
            "web": {
                "listen_address": WebConfig::default().listen_address,
                "limits": llmchat_common::http::Limits::default(),
            },
            "store": { "url": StoreConfig::default().url },
            "log": { "level": LogConfig::default().level, "format": LogConfig::default().format },
        });
        llmchat_common::config::finish_command(Cli::command(), "LLMCHAT_RECEIVER_", &defaults)
    }

    /// Parses a command line (the program name first).
    pub fn parse_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        Cli::from_arg_matches(&Self::full_command().try_get_matches_from(args)?)
    }

    /// The configuration for `render`: the file and flags, with the
    /// templates compiled, but without what only serving needs (credentials).
    pub fn resolve_for_render(self) -> Result<Config, ConfigError> {
        let name_flag = |e: ConfigError| e.name_flag(&Self::full_command());
        let c: Config =
            llmchat_common::layered_on_serde_defaults(self.config_file.as_deref(), &self.flags)
                .map_err(name_flag)?;
        c.check_templates()?;
        Ok(c)
    }

    /// Stacks serde's defaults < the file < environment and flags, then the
    /// secrets' variables, then validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let name_flag = |e: ConfigError| e.name_flag(&Self::full_command());
        let mut c: Config =
            llmchat_common::layered_on_serde_defaults(self.config_file.as_deref(), &self.flags)
                .map_err(name_flag)?;
        c.apply_secret_env(|k| std::env::var(k).ok())?;
        if let Some(path) = &c.web.bearer_token_file {
            if c.web.bearer_token.is_some() {
                return Err(invalid(
                    "web.bearer_token_file",
                    path.display(),
                    "set either web.bearer_token or web.bearer_token_file, not both",
                ));
            }
            let token = std::fs::read_to_string(path)
                .map_err(|e| invalid("web.bearer_token_file", path.display(), e))?;
            c.web.bearer_token = Some(token.trim_end().to_string());
        }
        c.validate().map_err(name_flag)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_and_variable_keeps_its_name() {
        let flags = llmchat_common::config::describe_flags(&Cli::full_command());
        let golden =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/flags.txt");
        llmchat_tests::assert_golden(&golden, &flags);
    }
}
