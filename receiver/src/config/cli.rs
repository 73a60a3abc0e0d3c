//! `llmchat-receiver`'s command line: the flags that set configuration
//! keys (each also read from its `LLMCHAT_RECEIVER_*` variable), the
//! `render` subcommand's arguments, and how the layers resolve into a
//! [`Config`].

use std::path::PathBuf;

use clap::Parser;

use super::Config;
use llmchat_common::settings::{self, Settings};

/// Prefix of every environment variable.
const ENV_PREFIX: &str = "LLMCHAT_RECEIVER_";
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
    /// What the section flags (and their variables) gave, in the keys'
    /// shape ([`llmchat_common::settings::layer`]).
    #[arg(skip)]
    pub settings: settings::Given,
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

impl Cli {
    /// The command with every section's flags, and every flag's variable
    /// and default filled in.
    pub fn full_command() -> clap::Command {
        use clap::CommandFactory;
        let command = Cli::command().args(settings::arguments(ENV_PREFIX, Config::settings()));
        llmchat_common::config::finish_command(command, ENV_PREFIX, &serde_json::Value::Null)
    }

    /// Parses a command line (the program name first).
    pub fn parse_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = Self::full_command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.settings = settings::layer(&matches, Config::settings());
        Ok(cli)
    }

    /// The configuration for `render`: the file and flags, with the
    /// templates compiled, but without what only serving needs (credentials).
    pub fn resolve_for_render(self) -> Result<Config, ConfigError> {
        let name_flag = |e: ConfigError| e.name_flag(&Self::full_command());
        let c: Config =
            llmchat_common::layered_on_serde_defaults(self.config_file.as_deref(), &self.settings)
                .map_err(name_flag)?;
        c.check_templates()?;
        Ok(c)
    }

    /// Stacks serde's defaults < the file < environment and flags, then the
    /// secrets' variables, then validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let name_flag = |e: ConfigError| e.name_flag(&Self::full_command());
        let mut c: Config =
            llmchat_common::layered_on_serde_defaults(self.config_file.as_deref(), &self.settings)
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
        llmchat_tests::assert_flags_unchanged(&Cli::full_command(), env!("CARGO_MANIFEST_DIR"));
    }
}
