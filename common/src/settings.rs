//! Settings declared once. A configuration section derives [`Settings`]
//! (`llmchat-settings-derive`): each field is a TOML key whose
//! `#[setting(...)]` gives its default and, when it has one, its flag; its
//! doc comment is the flag's help. This module turns those declarations
//! into clap arguments ([`arguments`]: `--section.key-name`, read also
//! from `<PREFIX>SECTION_KEY_NAME`, with `[default: …]` in the help) and
//! reads back what was given ([`layer`]) in the keys' own shape, for
//! figment to lay over the file.
//!
//! A field's type says how its flag takes a value ([`FlagValue`]): a
//! duration is checked and kept as written (`"5s"`, as the file has it), a
//! list is repeatable and split on commas, a boolean may stand alone.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use serde_json::Value;

pub use llmchat_settings_derive::Settings;

/// A section whose settings were declared with `#[derive(Settings)]`.
pub trait Settings {
    /// The section's settings, in declaration order.
    fn settings() -> Vec<Setting>;

    /// Sets the field of an environment-only setting (`Kind::Env`) from
    /// its variable's text; other keys are left alone.
    fn set_from_env(&mut self, key: &str, text: &str) -> Result<(), FlagValueError>;
}

/// The environment-only settings of `T`: (key, variable), in declaration
/// order.
pub fn env_settings<T: Settings>() -> Vec<(&'static str, &'static str)> {
    T::settings()
        .into_iter()
        .filter_map(|s| match s.kind {
            Kind::Env(var) => Some((s.key, var)),
            _ => None,
        })
        .collect()
}

/// One declared setting: a flag, or a nested section.
#[derive(Debug)]
pub struct Setting {
    /// The TOML key within its section.
    pub key: &'static str,
    /// The field's doc comment: the flag's help.
    pub doc: &'static str,
    /// The default, as `--help` shows it; `None` when there is nothing to
    /// show (an empty list, an unset option).
    pub default: Option<String>,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Flag(Flag),
    /// A section within the section (`[web.limits]`).
    Section(fn() -> Vec<Setting>),
    /// Read from this variable only, never a flag (a channel's secret);
    /// its section applies it ([`Settings::set_from_env`]).
    Env(&'static str),
}

/// How a setting appears on the command line.
#[derive(Debug)]
pub struct Flag {
    /// The long name when it is not the key path with `-` for `_`
    /// (exporter-toolkit's `--web.config.file`).
    pub long: Option<&'static str>,
    /// The variable when it is not `<PREFIX>` and the key path in capitals.
    pub env: Option<&'static str>,
    pub value_name: &'static str,
    pub shape: Shape,
    /// Reads one value as the TOML file would hold it.
    pub parse: fn(&str) -> Result<Value, FlagValueError>,
}

/// How a flag takes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value; the last one given wins.
    One,
    /// A boolean: `--x`, `--x=false`.
    Switch,
    /// Repeatable, each value an item; `split`: also comma-separated (in
    /// the variable too).
    List { split: bool },
}

/// A flag's value that does not read as its setting's type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FlagValueError(#[from] Box<dyn std::error::Error + Send + Sync>);

impl FlagValueError {
    fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

/// A type a flag can carry: how it is read from the command line and how
/// its default is shown.
pub trait FlagValue {
    const VALUE_NAME: &'static str = "VALUE";
    const SHAPE: Shape = Shape::One;
    /// One value from the command line, as the TOML file would hold it.
    fn parse(text: &str) -> Result<Value, FlagValueError>;
    /// The value as `--help` shows it; `None` for nothing worth showing.
    fn show(&self) -> Option<String>;
    /// One value from a variable, as the field's own type.
    fn from_text(text: &str) -> Result<Self, FlagValueError>
    where
        Self: Sized + serde::de::DeserializeOwned,
    {
        serde_json::from_value(Self::parse(text)?).map_err(FlagValueError::new)
    }
}

impl FlagValue for String {
    const VALUE_NAME: &'static str = "TEXT";
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        Ok(Value::String(text.into()))
    }
    fn show(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.clone())
    }
}

impl FlagValue for PathBuf {
    const VALUE_NAME: &'static str = "PATH";
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        Ok(Value::String(text.into()))
    }
    fn show(&self) -> Option<String> {
        (!self.as_os_str().is_empty()).then(|| self.display().to_string())
    }
}

impl FlagValue for bool {
    const VALUE_NAME: &'static str = "BOOL";
    const SHAPE: Shape = Shape::Switch;
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        match text.to_ascii_lowercase().as_str() {
            "y" | "yes" | "t" | "true" | "on" | "1" => Ok(Value::Bool(true)),
            "n" | "no" | "f" | "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(FlagValueError::new(NotABool)),
        }
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("expected true or false")]
struct NotABool;

/// Durations are checked, then kept as written: the file's spelling.
impl FlagValue for Duration {
    const VALUE_NAME: &'static str = "DURATION";
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        crate::duration::flag(text)
            .map(Value::String)
            .map_err(FlagValueError::new)
    }
    fn show(&self) -> Option<String> {
        Some(humantime::format_duration(*self).to_string())
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl FlagValue for $t {
            const VALUE_NAME: &'static str = "N";
            fn parse(text: &str) -> Result<Value, FlagValueError> {
                let n: $t = text.parse().map_err(FlagValueError::new)?;
                serde_json::to_value(n).map_err(FlagValueError::new)
            }
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
numbers!(u16, u32, u64, usize, f64);

impl<T: FlagValue> FlagValue for Option<T> {
    const VALUE_NAME: &'static str = T::VALUE_NAME;
    const SHAPE: Shape = T::SHAPE;
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        T::parse(text)
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

impl<T: FlagValue> FlagValue for Vec<T> {
    const VALUE_NAME: &'static str = "LIST";
    const SHAPE: Shape = Shape::List { split: true };
    fn parse(text: &str) -> Result<Value, FlagValueError> {
        T::parse(text)
    }
    fn show(&self) -> Option<String> {
        let items: Option<Vec<String>> = self.iter().map(T::show).collect();
        items.filter(|i| !i.is_empty()).map(|i| i.join(","))
    }
}

/// A flag whose value reads through `FromStr` and is stored as the type
/// serialises (an enum's name, a table): for types of the crates that use
/// the settings.
pub fn parse_via_from_str<T>(text: &str) -> Result<Value, FlagValueError>
where
    T: std::str::FromStr + serde::Serialize,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let value: T = text.parse().map_err(FlagValueError::new)?;
    serde_json::to_value(value).map_err(FlagValueError::new)
}

/// Visits every flag under `prefix` (the key path of `settings`' section).
fn walk(prefix: &str, settings: Vec<Setting>, visit: &mut dyn FnMut(String, &Setting, &Flag)) {
    for s in settings {
        let path = if prefix.is_empty() {
            s.key.to_string()
        } else {
            format!("{prefix}.{}", s.key)
        };
        match &s.kind {
            Kind::Section(inner) => walk(&path, inner(), visit),
            Kind::Env(_) => {}
            Kind::Flag(flag) => visit(path, &s, flag),
        }
    }
}

/// The clap arguments of every flag in `root` (a configuration's sections):
/// id = the key path (`web.limits.body_timeout`, which
/// [`crate::ConfigError::name_flag`] looks up), long name and variable
/// derived from it unless declared, the doc comment as help and the
/// default beside it. Every variable's value is hidden from `--help`: any
/// may hold a credential (a URL with a password).
pub fn arguments(env_prefix: &str, root: Vec<Setting>) -> Vec<clap::Arg> {
    let mut args = Vec::new();
    walk("", root, &mut |path, setting, flag| {
        let long = flag
            .long
            .map(String::from)
            .unwrap_or_else(|| path.replace('_', "-"));
        let env = flag
            .env
            .map(String::from)
            .unwrap_or_else(|| format!("{env_prefix}{}", path.to_uppercase().replace('.', "_")));
        let (mut help, long_help) = help_of(setting.doc);
        let mut long_help = long_help;
        if let Some(d) = &setting.default {
            help = format!("{help} [default: {d}]");
            long_help = long_help.map(|l| format!("{l} [default: {d}]"));
        }
        let arg = clap::Arg::new(path)
            .long(long)
            .env(env)
            .hide_env_values(true)
            .value_name(flag.value_name)
            .help(help);
        let arg = match long_help {
            Some(l) => arg.long_help(l),
            None => arg,
        };
        let parser = clap::builder::ValueParser::new(flag.parse);
        let arg = match flag.shape {
            Shape::One => arg.action(clap::ArgAction::Set).value_parser(parser),
            Shape::Switch => arg
                .action(clap::ArgAction::Set)
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(clap::builder::BoolishValueParser::new().map(Value::Bool)),
            Shape::List { split } => {
                let arg = arg.action(clap::ArgAction::Append).value_parser(parser);
                if split {
                    arg.value_delimiter(',')
                } else {
                    arg
                }
            }
        };
        args.push(arg);
    });
    args
}

/// The help (the doc's first paragraph on one line) and, when the doc says
/// more, the long help (all of it).
fn help_of(doc: &str) -> (String, Option<String>) {
    let mut paragraphs = doc.split("\n\n");
    let first = paragraphs.next().unwrap_or_default();
    let help = first.split('\n').collect::<Vec<_>>().join(" ");
    let long = doc.contains("\n\n").then(|| {
        doc.split("\n\n")
            .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n")
    });
    (help, long)
}

/// What the command line and the environment gave for the flags, in the
/// keys' shape (`{"web": {"limits": {"body_timeout": "5s"}}}`), for figment
/// to lay over the file. Flags not given are absent, so that they leave the
/// file's values alone; the default (a command line not read by [`layer`])
/// is an empty table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Given(pub serde_json::Map<String, Value>);

/// What the command line and the environment gave for `root`'s flags.
pub fn layer(matches: &clap::ArgMatches, root: Vec<Setting>) -> Given {
    let mut out = Value::Object(Default::default());
    walk("", root, &mut |path, _, flag| {
        let Ok(Some(values)) = matches.try_get_many::<Value>(&path) else {
            return;
        };
        let mut values: Vec<Value> = values.cloned().collect();
        let value = match flag.shape {
            Shape::List { .. } => Value::Array(values),
            Shape::One | Shape::Switch => match values.pop() {
                Some(v) => v,
                None => return,
            },
        };
        let mut at = &mut out;
        for key in path.split('.') {
            at = &mut at[key];
        }
        *at = value;
    });
    match out {
        Value::Object(map) => Given(map),
        _ => Given::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The derive names `::llmchat_common`; inside this crate that is
    // `extern crate self as llmchat_common` in lib.rs.

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, Settings)]
    #[serde(default)]
    struct Inner {
        /// How long.
        ///
        /// More about it.
        #[setting(flag, default = Duration::from_secs(5))]
        #[serde(with = "crate::duration")]
        timeout: Duration,
        /// Names, comma-separated.
        #[setting(flag, default = ["a", "b"])]
        names: Vec<String>,
        /// Rules, never split.
        #[setting(flag, no_delimiter, value_name = "A=B")]
        rules: Vec<String>,
        /// Not a flag.
        #[setting(default = 3)]
        hidden: u32,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, Settings)]
    #[serde(default)]
    struct Root {
        /// Where.
        #[setting(flag = "top.where.to", env = "ELSEWHERE", default = "x")]
        place: String,
        /// On or off.
        #[setting(flag)]
        on: bool,
        /// Count.
        #[setting(flag, value_name = "N")]
        count: Option<u64>,
        #[setting(section)]
        inner: Inner,
    }

    #[derive(Debug, Clone, serde::Deserialize, Settings)]
    #[setting(no_default)]
    struct Secrets {
        required: String,
        /// A token.
        #[setting(env = "T_TOKEN")]
        token: Option<String>,
        /// A URL.
        #[setting(env = "T_URL")]
        url: String,
    }

    #[test]
    fn environment_only_settings_set_their_field_and_make_no_flag() {
        assert_eq!(
            env_settings::<Secrets>(),
            [("token", "T_TOKEN"), ("url", "T_URL")]
        );
        let mut s = Secrets {
            required: "r".into(),
            token: None,
            url: "a".into(),
        };
        s.set_from_env("token", "t").unwrap();
        s.set_from_env("url", "b").unwrap();
        s.set_from_env("required", "no").unwrap();
        assert_eq!(
            (s.token.as_deref(), s.url.as_str(), s.required.as_str()),
            (Some("t"), "b", "r")
        );
        assert!(arguments("T_", Secrets::settings()).is_empty());
    }

    fn command() -> clap::Command {
        clap::Command::new("t").args(arguments("T_", Root::settings()))
    }

    fn resolve(args: &[&str]) -> Result<Root, clap::Error> {
        let matches =
            command().try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))?;
        let layer = layer(&matches, Root::settings());
        Ok(crate::layered(&Root::default(), None, &layer).unwrap())
    }

    #[test]
    fn one_declaration_gives_default_flag_variable_and_help() {
        let d = Root::default();
        assert_eq!(d.place, "x");
        assert_eq!(d.inner.names, ["a", "b"]);
        assert_eq!(d.inner.hidden, 3);
        let flags = llmchat_tests::describe_flags(&command());
        assert_eq!(
            flags,
            "count --count <N> $T_COUNT\n\
             inner.names --inner.names <LIST> $T_INNER_NAMES (split on ',') (repeatable)\n\
             inner.rules --inner.rules <A=B> $T_INNER_RULES (repeatable)\n\
             inner.timeout --inner.timeout <DURATION> $T_INNER_TIMEOUT\n\
             on --on <BOOL> $T_ON (value optional)\n\
             place --top.where.to <TEXT> $ELSEWHERE\n"
        );
        let help = command().render_long_help().to_string();
        for wanted in [
            "How long.",
            "More about it. [default: 5s]",
            "[default: a,b]",
            "Where. [default: x]",
        ] {
            assert!(help.contains(wanted), "{wanted} missing from\n{help}");
        }
        assert!(!help.contains("Not a flag"), "{help}");
    }

    #[test]
    fn given_flags_are_laid_over_the_rest_and_absent_ones_are_not() {
        assert_eq!(resolve(&[]).unwrap(), Root::default());
        let r = resolve(&[
            "--top.where.to=y",
            "--on",
            "--count=7",
            "--inner.timeout=1m",
            "--inner.names=c,d",
            "--inner.names=e",
            "--inner.rules=a,b=c",
        ])
        .unwrap();
        assert_eq!(r.place, "y");
        assert!(r.on);
        assert_eq!(r.count, Some(7));
        assert_eq!(r.inner.timeout, Duration::from_secs(60));
        assert_eq!(r.inner.names, ["c", "d", "e"]);
        assert_eq!(r.inner.rules, ["a,b=c"]);
        assert_eq!(r.inner.hidden, 3);
        assert!(!resolve(&["--on=false"]).unwrap().on);
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_flag() {
        let e = resolve(&["--inner.timeout=soon"]).unwrap_err().to_string();
        assert!(
            e.contains("--inner.timeout <DURATION>") && e.contains("use e.g."),
            "{e}"
        );
        let e = resolve(&["--count=-1"]).unwrap_err().to_string();
        assert!(e.contains("--count <N>"), "{e}");
        let e = resolve(&["--on=maybe"]).unwrap_err().to_string();
        assert!(e.contains("--on"), "{e}");
    }
}
