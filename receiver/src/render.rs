//! `llmchat-receiver render`: what the receiver would send for an
//! Alertmanager webhook payload, through the configured templates, routes
//! and links, without sending anything. For template authors, as
//! `amtool template render` is for Alertmanager's.

use std::path::PathBuf;

use crate::channels::{ChannelError, ChannelKind};
use crate::config::{Config, RenderArgs};
use crate::payload::{self, PayloadError};
use crate::templates::Language;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("--payload {path}: cannot read it")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--payload {path}: {source}")]
    Payload {
        path: PathBuf,
        #[source]
        source: PayloadError,
    },
    #[error("cannot build the channel")]
    Channel(#[source] ChannelError),
}

/// Every message the payload makes on the channel, each under a header
/// line naming it.
pub fn render(mut config: Config, args: &RenderArgs) -> Result<String, RenderError> {
    let body = std::fs::read(&args.payload).map_err(|source| RenderError::Read {
        path: args.payload.clone(),
        source,
    })?;
    let hook = payload::parse(&body).map_err(|source| RenderError::Payload {
        path: args.payload.clone(),
        source,
    })?;
    let channel = ChannelKind::parse(&args.channel).unwrap_or(ChannelKind::Webhook);
    if let Some(language) = args.language.as_deref().and_then(Language::parse) {
        config.notify.language = language;
        for route in &mut config.routing.routes {
            route.language = None;
        }
    }
    // A channel that is not configured is rendered with its placeholder
    // for what only sending needs (a relay, a URL): the templates are the
    // same.
    config.channels.with_placeholder(channel);
    let senders = config
        .senders(Default::default())
        .map_err(RenderError::Channel)?;
    let Some(sender) = senders.get(channel) else {
        return Ok(String::new());
    };
    let mut planned = crate::routing::plan(&hook, &config.routing, &senders, Some(channel));
    // A payload can only say what a notice is by its alertname: one named
    // as the receiver names its recovery outcomes renders as one.
    for n in planned
        .iter_mut()
        .flat_map(|p| p.delivery.notices.iter_mut())
    {
        if n.alertname == crate::recovery::NOTICE_ALERTNAME {
            n.kind = crate::payload::NoticeKind::RecoveryOutcome;
        }
    }
    let total = planned.len();
    let mut out = String::new();
    for (i, p) in planned.iter().enumerate() {
        let text = sender
            .render(&p.delivery)
            .unwrap_or_else(|e| format!("(cannot render: {e})"));
        out.push_str(&format!(
            "=== {} message {} of {total}: {} alert(s), {} ===\n{}\n",
            channel.as_str(),
            i + 1,
            p.delivery.notices.len(),
            p.status,
            text.trim_end()
        ));
    }
    Ok(out)
}
