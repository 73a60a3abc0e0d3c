//! Configuration shared by both binaries: the layers (defaults < TOML file <
//! environment < flags), the error that names the refused key, and the
//! serde helpers for durations.
//!
//! Keys are named one way everywhere: the TOML spelling
//! (`logs.poll_interval`), with the flag spelling beside it
//! (`--logs.poll-interval`) when the binary has such a flag.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a configuration was refused. Each variant names the key; `main`
/// prints it and exits with 64 (EX_USAGE).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {key}{}: {message}", flag_suffix(.flag))]
    File {
        path: PathBuf,
        key: String,
        flag: Option<String>,
        message: String,
    },
    #[error("{key}{}: invalid value {value:?}: {reason}", flag_suffix(.flag))]
    Invalid {
        key: String,
        flag: Option<String>,
        value: String,
        reason: String,
    },
}

fn flag_suffix(flag: &Option<String>) -> String {
    flag.as_deref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default()
}

/// The error for a value that `key` (TOML spelling) refused.
pub fn invalid(key: impl Into<String>, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        flag: None,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl ConfigError {
    /// The key the error names, TOML spelling.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::File { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// Adds the flag spelling of the key when `command` has a flag for it
    /// (its id is the key, as [`crate::settings::arguments`] makes them)
    /// spelt differently: `logs.poll_interval` → `--logs.poll-interval`,
    /// `web.config_file` → `--web.config.file`.
    pub fn name_flag(mut self, command: &clap::Command) -> Self {
        if let ConfigError::File { key, flag, .. } | ConfigError::Invalid { key, flag, .. } =
            &mut self
        {
            let long = command
                .get_arguments()
                .find(|a| a.get_id() == key.as_str())
                .and_then(|a| a.get_long());
            if let Some(long) = long.filter(|l| l != key) {
                *flag = Some(format!("--{long}"));
            }
        }
        self
    }
}

/// Stacks the layers into `T`: `defaults` < the TOML file < `flags`. The
/// flags are what clap read from the command line and the environment (a
/// flag beats its variable); unset ones must serialise to nothing
/// (`skip_serializing_if`), so that they leave the layers below alone.
///
/// figment does the merging: it merges nested tables key by key, so no
/// setting needs a hand-written "if the flag is set, overwrite the field"
/// line, and its errors carry the key path, which we turn into
/// [`ConfigError::File`].
pub fn layered<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    flags: &impl Serialize,
) -> Result<T, ConfigError> {
    stack(Figment::from(Serialized::defaults(defaults)), file, flags)
}

/// [`layered`] for a `T` whose every section is `#[serde(default)]`: the
/// defaults layer is serde's own.
pub fn layered_on_serde_defaults<T: DeserializeOwned>(
    file: Option<&Path>,
    flags: &impl Serialize,
) -> Result<T, ConfigError> {
    stack(Figment::new(), file, flags)
}

fn stack<T: DeserializeOwned>(
    mut figment: Figment,
    file: Option<&Path>,
    flags: &impl Serialize,
) -> Result<T, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Parse once on our own first: toml's errors name the line, and a
        // file that is not TOML at all never reaches the merge.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(ConfigError::File {
                path: path.to_owned(),
                key: "(syntax)".into(),
                flag: None,
                message: e.message().trim().to_string(),
            });
        }
        figment = figment.merge(Toml::string(&text));
    }
    figment = figment.merge(Serialized::defaults(flags));
    figment.extract().map_err(|e| {
        let key = if e.path.is_empty() {
            "(top level)".to_string()
        } else {
            e.path.join(".")
        };
        let from_file = e.metadata.as_ref().is_some_and(|m| m.name.contains("TOML"));
        let message = e.kind.to_string();
        match (file, from_file) {
            (Some(path), true) => ConfigError::File {
                path: path.to_owned(),
                key,
                flag: None,
                message,
            },
            _ => ConfigError::Invalid {
                key,
                flag: None,
                value: "(from flags or environment)".into(),
                reason: message,
            },
        }
    })
}

/// Finishes a derived command's own flags (those not made by
/// [`crate::settings::arguments`], which come finished: `--config.file`,
/// `--collector.<name>`): every `--section.key` flag that takes a value and
/// names no variable gets one (`<prefix>SECTION_KEY`), and `[default: …]`
/// in its help, read from `defaults` (a serialised default), so that
/// `--help` cannot drift from the code.
pub fn finish_command(
    command: clap::Command,
    env_prefix: &str,
    defaults: &serde_json::Value,
) -> clap::Command {
    let args: Vec<(String, String)> = command
        .get_arguments()
        .filter(|a| a.get_action().takes_values() && a.get_env().is_none())
        .filter_map(|a| {
            let long = a.get_long()?;
            (long.contains('.') && !long.starts_with("no-"))
                .then(|| (a.get_id().to_string(), long.to_string()))
        })
        .collect();
    let mut command = command;
    for (id, long) in args {
        let default = long
            .split('.')
            .try_fold(defaults, |v, k| v.get(k.replace('-', "_")))
            .and_then(default_text);
        let env = format!(
            "{env_prefix}{}",
            long.to_uppercase().replace(['.', '-'], "_")
        );
        command = command.mut_arg(id, |arg| {
            let arg = arg.env(env);
            // `--help` names the variable but never shows its value: any
            // of them may hold a credential (a URL with a password).
            let arg = arg.hide_env_values(true);
            match default {
                Some(d) => {
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    let long_help = arg.get_long_help().map(|h| h.to_string());
                    let arg = arg.help(format!("{help} [default: {d}]"));
                    match long_help {
                        Some(l) => arg.long_help(format!("{l} [default: {d}]")),
                        None => arg,
                    }
                }
                None => arg,
            }
        });
    }
    command
}

fn default_text(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) if !items.is_empty() => {
            let parts: Option<Vec<String>> = items.iter().map(default_text).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

/// TOML text that does not fit: the key path and toml's message.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TomlError {
    /// `section.key`, or `(top level)`.
    pub key: String,
    pub message: String,
}

/// Parses TOML text into `T`.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        // toml's message carries a source excerpt; keep the message itself,
        // or, where toml gives none (`a=`: a key without a value), the
        // first line of its report, which says where.
        let inner = e.into_inner();
        let mut message = inner.message().trim().to_string();
        if message.is_empty() {
            message = inner
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        TomlError {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message,
        }
    })
}

/// Serde for durations written as `"5s"`, `"1m30s"`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?}: {e} (use e.g. \"5s\")"))
        })
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// A flag's value parser: checks the text, keeps it as written, so the
    /// flag layer hands the same string a TOML file would.
    pub fn flag(text: &str) -> Result<String, BadDuration> {
        humantime::parse_duration(text)
            .map(|_| text.to_string())
            .map_err(BadDuration)
    }

    /// A duration flag's value that humantime cannot read.
    #[derive(Debug, thiserror::Error)]
    #[error("{0} (use e.g. \"5s\")")]
    pub struct BadDuration(#[source] pub humantime::DurationError);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        inner: Inner,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        poll_interval: u32,
        name: String,
    }
    impl Default for Sample {
        fn default() -> Self {
            Sample {
                inner: Inner {
                    poll_interval: 1,
                    name: "a".into(),
                },
            }
        }
    }
    impl Default for Inner {
        fn default() -> Self {
            Sample::default().inner
        }
    }
    #[derive(Serialize)]
    struct Flags {
        inner: InnerFlags,
    }
    #[derive(Serialize)]
    struct InnerFlags {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    }

    #[test]
    fn a_key_without_a_value_is_refused_with_a_message_saying_where() {
        // toml gives this error an empty message (found by the exporter's
        // config fuzz test).
        let e = from_toml::<Sample>("a=").unwrap_err();
        assert_eq!(e.key, "(top level)");
        assert_eq!(e.message, "TOML parse error at line 1, column 3");
    }

    #[test]
    fn layers_stack_and_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("llmchat-common-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[inner]\npoll_interval = 7\nname = \"b\"\n").unwrap();
        let flags = Flags {
            inner: InnerFlags {
                name: Some("c".into()),
            },
        };
        let got: Sample = layered(&Sample::default(), Some(&file), &flags).unwrap();
        assert_eq!(
            got.inner,
            Inner {
                poll_interval: 7,
                name: "c".into()
            }
        );
        let unset = Flags {
            inner: InnerFlags { name: None },
        };
        let got: Sample = layered(&Sample::default(), Some(&file), &unset).unwrap();
        assert_eq!(got.inner.name, "b");

        std::fs::write(&file, "[inner]\npoll_interval = \"x\"\n").unwrap();
        let e = layered(&Sample::default(), Some(&file), &unset).unwrap_err();
        assert_eq!(e.key(), Some("inner.poll_interval"), "{e}");
        let command = clap::Command::new("t")
            .arg(clap::Arg::new("inner.poll_interval").long("inner.poll-interval"));
        let text = e.name_flag(&command).to_string();
        assert!(
            text.contains("inner.poll_interval (--inner.poll-interval)"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
