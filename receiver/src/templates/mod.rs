//! Message templates: the email's subject, text and HTML, the Slack
//! message and thread reply, and the generic webhook's optional body and
//! headers, rendered with minijinja.
//!
//! Why minijinja: it is Jinja2, which Ansible- and Helm-era operators
//! already write; it is maintained by the author of Jinja2 itself (Armin
//! Ronacher), has no unsafe dependencies worth naming, reports a syntax
//! error with its line, and lets each template choose its escaping, which
//! is the part that matters here: an alert's text is untrusted input.
//!
//! Built-in templates exist in English and Chinese (`[notify] language`).
//! Any of them can be replaced from a file, for every message
//! (`[notify.templates]`) or for the alerts of one route
//! (`routing.routes[i].templates`, with its own `language`). A template
//! that does not compile stops the start (exit 64, naming the file and the
//! line); one that fails while rendering is replaced by the built-in one
//! for that message and counted in
//! `llmchat_receiver_template_errors_total{channel}`. The message goes out
//! either way.
//!
//! Escaping is chosen by the template's kind, never left to the author:
//! HTML for the HTML email, JSON for the webhook body, Slack's escaping of
//! `&`, `<` and `>` (then JSON) for Slack. `|safe` opts out.

pub mod context;

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::{AutoEscape, Environment, Value};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;

pub use context::{AlertContext, MessageContext};

use crate::metrics::ChannelLabels;
use crate::payload::Notice;

/// `[notify] language`: the language of the built-in templates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Zh,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "en" => Some(Language::En),
            "zh" => Some(Language::Zh),
            _ => None,
        }
    }
}

/// One template a channel renders, declared by the channel's module: its
/// key under `[notify.templates]` and a route's `templates`, the suffix
/// that picks its escaping (`escaping` below), and its built-in text per
/// language; none where the channel has a default of its own (the
/// webhook's body is the alert document).
#[derive(Debug)]
pub struct TemplateSpec {
    pub name: &'static str,
    pub suffix: &'static str,
    pub builtin: &'static [(Language, &'static str)],
}

/// A template written in a channel's section (the webhook's header
/// templates): the key it is reported under, its id, its source.
#[derive(Debug, Clone)]
pub struct InlineTemplate {
    pub key: String,
    pub id: String,
    pub source: String,
}

/// `[notify]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub language: Language,
    /// Where the rules' relative `runbook_url`s point, e.g.
    /// `https://git.example.com/ops/llmchat-monitor/blob/main/`.
    pub runbook_base_url: String,
    /// Grafana's base URL; with a rule's `dashboard` annotation (a
    /// dashboard uid) it makes the dashboard link.
    pub grafana_url: String,
    /// Files replacing built-in templates for every message, by template
    /// name (the channels' [`TemplateSpec::name`]s).
    pub templates: BTreeMap<String, PathBuf>,
}

/// The configured base URLs the links are made from.
#[derive(Debug, Clone, Default)]
pub struct LinkConfig {
    pub runbook_base_url: String,
    pub grafana_url: String,
}

/// Per-route choices: `routing.routes[i]`'s language and template files.
#[derive(Debug, Clone, Default)]
pub struct RouteTemplates {
    pub language: Option<Language>,
    pub templates: BTreeMap<String, PathBuf>,
}

/// A template that cannot be used; the key and file it came from, and the
/// line where minijinja found the problem.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{key}: cannot read {path}")]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: unknown template {name:?} (known: {known})")]
    Unknown {
        key: String,
        name: String,
        known: String,
    },
    #[error("{key}: {path}, line {line}: {detail}")]
    Compile {
        key: String,
        path: String,
        line: usize,
        detail: String,
        #[source]
        source: minijinja::Error,
    },
}

impl TemplateError {
    pub fn key(&self) -> &str {
        match self {
            TemplateError::Read { key, .. }
            | TemplateError::Unknown { key, .. }
            | TemplateError::Compile { key, .. } => key,
        }
    }
}

/// The escaping of a template, from its name's suffix.
fn escaping(name: &str) -> AutoEscape {
    if name.ends_with(".html") {
        AutoEscape::Html
    } else if name.ends_with(".slack.json") {
        AutoEscape::Custom("slack_json")
    } else if name.ends_with(".slack") {
        AutoEscape::Custom("slack")
    } else if name.ends_with(".json") {
        AutoEscape::Json
    } else {
        AutoEscape::None
    }
}

/// Writes a value under its template's escaping; Slack's escapings are
/// ours, the rest minijinja's.
fn format_value(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let slack = match state.auto_escape() {
        AutoEscape::Custom("slack") => false,
        AutoEscape::Custom("slack_json") => true,
        _ => return minijinja::escape_formatter(out, state, value),
    };
    if value.is_safe() || value.is_undefined() || value.is_none() && !slack {
        return minijinja::escape_formatter(out, state, value);
    }
    let write = |out: &mut minijinja::Output<'_>, s: &str| {
        out.write_str(s)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
    };
    match (slack, value.as_str()) {
        (false, Some(s)) => write(out, &context::slack_escape(s)),
        (false, None) => write(out, &context::slack_escape(&value.to_string())),
        (true, Some(s)) => write(
            out,
            &serde_json::to_string(&context::slack_escape(s)).unwrap_or_default(),
        ),
        (true, None) => write(out, &serde_json::to_string(value).unwrap_or_default()),
    }
}

/// The compiled templates and what picks one for a message.
pub struct Templates {
    /// Shared with the thread a file template renders on.
    env: std::sync::Arc<Environment<'static>>,
    language: Language,
    routes: Vec<Option<Language>>,
    links: LinkConfig,
    errors: Family<ChannelLabels, Counter>,
}

/// The instructions one render may take: a loop of 10^10 in a custom
/// template ends here instead of running until the process is killed.
/// The built-in templates take about 1% of it for the largest group an
/// email lists (tested).
pub const FUEL: u64 = 5_000_000;

/// How long a template file may render; past it the built-in template is
/// used (the file's render stops when its fuel runs out).
pub const RENDER_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(escaping);
    env.set_formatter(format_value);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("cut", |s: String, n: usize| context::cut(&s, n));
    // An attribute value (a link's href) escaped as HTML needs it, and
    // no more: `/` stays `/`, so links read as links in the source too.
    env.add_filter("attr", |s: String| {
        Value::from_safe_string(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
        )
    });
    env
}

/// Adds one template from a file as `{scope}/{name}.{suffix}`.
fn add_file(
    env: &mut Environment<'static>,
    key: String,
    scope: &str,
    spec: &TemplateSpec,
    path: &PathBuf,
) -> Result<(), TemplateError> {
    let source = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        key: key.clone(),
        path: path.clone(),
        source,
    })?;
    add_source(
        env,
        key,
        &format!("{scope}/{}.{}", spec.name, spec.suffix),
        &path.display().to_string(),
        source,
    )
}

fn add_source(
    env: &mut Environment<'static>,
    key: String,
    id: &str,
    shown_path: &str,
    source: String,
) -> Result<(), TemplateError> {
    env.add_template_owned(id.to_string(), source)
        .map_err(|source| TemplateError::Compile {
            key,
            path: shown_path.to_string(),
            line: source.line().unwrap_or(0),
            detail: source
                .detail()
                .unwrap_or(&source.kind().to_string())
                .to_string(),
            source,
        })
}

impl Templates {
    /// Compiles the channels' templates (`specs`: their built-ins), the
    /// `[notify.templates]` files, each route's files and the templates
    /// written in the channels' sections (`inline`).
    pub fn new(
        notify: &NotifyConfig,
        routes: &[RouteTemplates],
        specs: &[&'static TemplateSpec],
        inline: &[InlineTemplate],
        errors: Family<ChannelLabels, Counter>,
    ) -> Result<Self, TemplateError> {
        let mut env = new_env();
        for spec in specs {
            for (language, source) in spec.builtin {
                add_source(
                    &mut env,
                    format!("builtin {}", spec.name),
                    &format!(
                        "builtin.{}/{}.{}",
                        language.as_str(),
                        spec.name,
                        spec.suffix
                    ),
                    &format!("templates/{}/{}", language.as_str(), spec.name),
                    source.to_string(),
                )?;
            }
        }
        let spec_of = |key: String, name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .copied()
                .ok_or_else(|| TemplateError::Unknown {
                    key,
                    name: name.to_string(),
                    known: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                })
        };
        for (name, path) in &notify.templates {
            let spec = spec_of("notify.templates".into(), name)?;
            add_file(
                &mut env,
                format!("notify.templates.{name}"),
                "global",
                spec,
                path,
            )?;
        }
        for (i, route) in routes.iter().enumerate() {
            for (name, path) in &route.templates {
                let spec = spec_of(format!("routing.routes[{i}].templates"), name)?;
                add_file(
                    &mut env,
                    format!("routing.routes[{i}].templates.{name}"),
                    &format!("route{i}"),
                    spec,
                    path,
                )?;
            }
        }
        for t in inline {
            add_source(&mut env, t.key.clone(), &t.id, "(inline)", t.source.clone())?;
        }
        Ok(Templates {
            env: std::sync::Arc::new(env),
            language: notify.language,
            routes: routes.iter().map(|r| r.language).collect(),
            links: LinkConfig {
                runbook_base_url: notify.runbook_base_url.clone(),
                grafana_url: notify.grafana_url.clone(),
            },
            errors,
        })
    }

    /// The language of a route's messages.
    pub fn language(&self, route: Option<usize>) -> Language {
        route
            .and_then(|i| self.routes.get(i).copied().flatten())
            .unwrap_or(self.language)
    }

    /// The context of a message in its route's language.
    pub fn context(&self, notices: &[Notice], route: Option<usize>) -> MessageContext {
        MessageContext::new(notices, self.language(route), &self.links)
    }

    /// The same, in a given language (`llmchat-receiver render`).
    pub fn context_in(&self, notices: &[Notice], language: Language) -> MessageContext {
        MessageContext::new(notices, language, &self.links)
    }

    /// Whether a file replaces `name` for this route (or for all).
    pub fn has_override(&self, spec: &TemplateSpec, route: Option<usize>) -> bool {
        self.candidates(spec, route, Language::En)
            .iter()
            .take(2)
            .any(|id| !id.starts_with("builtin.") && self.env.get_template(id).is_ok())
    }

    fn candidates(
        &self,
        spec: &TemplateSpec,
        route: Option<usize>,
        language: Language,
    ) -> Vec<String> {
        let file = format!("{}.{}", spec.name, spec.suffix);
        let mut ids = Vec::with_capacity(3);
        if let Some(i) = route {
            ids.push(format!("route{i}/{file}"));
        }
        ids.push(format!("global/{file}"));
        ids.push(format!("builtin.{}/{file}", language.as_str()));
        ids
    }

    /// Renders `spec` for a message: the route's file, else the global
    /// file, else the built-in one. A file that fails to render (or whose
    /// output `check` refuses) is counted and the built-in one used
    /// instead. `None` only when no template exists (the webhook body).
    pub fn render(
        &self,
        spec: &TemplateSpec,
        route: Option<usize>,
        channel: &'static str,
        ctx: &MessageContext,
        check: impl Fn(&str) -> Result<(), OutputError>,
    ) -> Option<String> {
        let language = Language::parse(ctx.language).unwrap_or(self.language);
        for id in self.candidates(spec, route, language) {
            if self.env.get_template(&id).is_err() {
                continue;
            }
            match self
                .render_one(&id, ctx)
                .and_then(|out| check(&out).map(|()| out).map_err(RenderFailure::Output))
            {
                Ok(out) => return Some(out),
                Err(error) => {
                    self.errors.get_or_create(&ChannelLabels { channel }).inc();
                    tracing::warn!(template = %id, channel, %error, "template failed; using the built-in one");
                }
            }
        }
        None
    }

    /// One template rendered. A built-in one renders here; a file, on a
    /// thread of its own that it has [`RENDER_TIME_LIMIT`] to finish (its
    /// fuel ends it soon after, if it does not).
    fn render_one(&self, id: &str, ctx: &MessageContext) -> Result<String, RenderFailure> {
        let render = |env: &Environment<'static>, id: &str, ctx: Value| {
            env.get_template(id)
                .and_then(|t| t.render(ctx))
                .map_err(RenderFailure::Template)
        };
        let ctx = Value::from_serialize(ctx);
        if id.starts_with("builtin.") {
            return render(&self.env, id, ctx);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let env = self.env.clone();
        let owned = id.to_string();
        std::thread::Builder::new()
            .name("template".into())
            .spawn(move || {
                let _ = tx.send(render(&env, &owned, ctx));
            })
            .map_err(RenderFailure::Spawn)?;
        rx.recv_timeout(RENDER_TIME_LIMIT)
            .unwrap_or(Err(RenderFailure::TimedOut))
    }

    /// Renders a template written in a channel's section (an
    /// [`InlineTemplate`]'s id); a failure is counted against `channel`.
    pub fn render_inline(
        &self,
        id: &str,
        channel: &'static str,
        ctx: &MessageContext,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(id)
            .and_then(|t| t.render(ctx))
            .inspect_err(|_| {
                self.errors.get_or_create(&ChannelLabels { channel }).inc();
            })
    }
}

/// Why one template gave no message (the built-in one is used instead).
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// With minijinja's detail (`{:#}`): the template, the line, the cause.
    #[error("{0:#}")]
    Template(#[source] minijinja::Error),
    #[error("cannot start the render: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("render took over {} s", RENDER_TIME_LIMIT.as_secs())]
    TimedOut,
    #[error(transparent)]
    Output(OutputError),
}

/// A rendered message the channel cannot send as it is (Slack's must be
/// JSON).
#[derive(Debug, thiserror::Error)]
#[error("the {channel} template's output is not {expected}: {source}")]
pub struct OutputError {
    pub channel: &'static str,
    pub expected: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[cfg(test)]
mod tests;
