//! A per-channel budget of messages per minute for the paced channels
//! that send one message per alert (Slack, at about one a second). A
//! storm's post of a thousand warnings would otherwise queue a thousand
//! Slack messages, seventeen minutes at Slack's pace; past the budget, a
//! post's remaining alerts of a channel go as one digest message that
//! lists the first of them and counts the rest, with a link to
//! Alertmanager; at most one digest a minute, later overflow in that
//! minute only counted (its link shows them). Critical alerts are never folded (they still use up the
//! budget). Grouping channels (email) send one message per group already,
//! and unpaced ones (a webhook, read by a program) drain at network speed
//! and get every alert.

use llmchat_common::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::payload::{Delivery, Status};
use crate::routing::Planned;
use crate::templates::context::MAX_LISTED;

/// Messages taken per channel in the current minute.
pub struct Budget {
    per_minute: usize,
    used: Mutex<HashMap<&'static str, Window>>,
}

/// One channel's current minute.
struct Window {
    started: Instant,
    used: usize,
    /// A digest went out in this minute: later overflow is only counted
    /// (Alertmanager sends a storm as many posts, and a digest per post
    /// would be a message per alert again). Its link shows them all.
    digested: bool,
}

impl Budget {
    pub fn new(per_minute: usize) -> Self {
        Budget {
            per_minute: per_minute.max(1),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Takes up to `wanted` messages of `channel`'s minute: how many, and
    /// whether the rest may still go as this minute's digest. `forced`
    /// are taken whatever is left (critical alerts).
    fn take(&self, channel: &'static str, wanted: usize, forced: usize) -> (usize, bool) {
        let mut used = lock(&self.used);
        let w = used.entry(channel).or_insert(Window {
            started: Instant::now(),
            used: 0,
            digested: false,
        });
        if w.started.elapsed() >= Duration::from_secs(60) {
            *w = Window {
                started: Instant::now(),
                used: 0,
                digested: false,
            };
        }
        let left = self.per_minute.saturating_sub(w.used + forced);
        let granted = wanted.min(left);
        w.used += forced + granted;
        let digest = granted < wanted && !w.digested;
        if granted < wanted {
            w.digested = true;
        }
        (granted, digest)
    }

    /// The post's rows with each paced channel's rows beyond the budget
    /// folded into one digest row; and how many alerts were folded.
    /// `paced` says which channels the budget applies to.
    pub fn apply(
        &self,
        planned: Vec<Planned>,
        paced: impl Fn(crate::channels::ChannelKind) -> bool,
    ) -> (Vec<Planned>, usize) {
        let mut out = Vec::new();
        let mut by_channel: HashMap<&'static str, Vec<Planned>> = HashMap::new();
        for p in planned {
            // Grouping channels' rows (email's) and unpaced channels' pass.
            if p.dedup_key.starts_with("group|")
                || p.delivery.notices.len() != 1
                || !paced(p.channel)
            {
                out.push(p);
            } else {
                by_channel.entry(p.channel.as_str()).or_default().push(p);
            }
        }
        let mut folded_total = 0;
        for (channel, rows) in by_channel {
            let (critical, rest): (Vec<Planned>, Vec<Planned>) =
                rows.into_iter().partition(|p| p.severity == "critical");
            let (granted, may_digest) = self.take(channel, rest.len(), critical.len());
            out.extend(critical);
            let mut rest = rest.into_iter();
            out.extend(rest.by_ref().take(granted));
            let folded: Vec<Planned> = rest.collect();
            if folded.is_empty() {
                continue;
            }
            folded_total += folded.len();
            if may_digest {
                out.push(digest(folded));
            }
        }
        (out, folded_total)
    }
}

/// One row for `folded` (all of one channel): the first [`MAX_LISTED`]
/// alerts as its notices, the rest counted in their left-out alerts.
fn digest(folded: Vec<Planned>) -> Planned {
    let channel = folded[0].channel;
    let mut states: Vec<String> = folded
        .iter()
        .map(|p| {
            let n = p.delivery.first();
            format!("{}|{}|{}", n.fingerprint, n.status.as_str(), n.starts_at)
        })
        .collect();
    states.sort();
    let key = hex::encode(Sha256::digest(states.join("\0").as_bytes()));
    let firing = folded
        .iter()
        .any(|p| p.delivery.first().status == Status::Firing);
    let rank = |s: &str| match s {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    };
    let severity = folded
        .iter()
        .map(|p| p.severity.clone())
        .max_by_key(|s| rank(s))
        .unwrap_or_default();
    let unlisted = folded.len().saturating_sub(MAX_LISTED) as u64;
    let mut notices: Vec<_> = folded
        .into_iter()
        .take(MAX_LISTED)
        .map(|p| p.delivery.notices.into_iter().next().expect("one notice"))
        .collect();
    for n in &mut notices {
        n.truncated_alerts += unlisted;
    }
    Planned {
        channel,
        dedup_key: format!("digest|{key}|{}", channel.as_str()),
        severity,
        status: if firing { "firing" } else { "resolved" },
        delivery: Delivery {
            route: None,
            notices,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_takes_its_budget_then_one_digest_then_only_counts() {
        let b = Budget::new(10);
        assert_eq!(b.take("slack", 4, 0), (4, false));
        assert_eq!(b.take("slack", 4, 2), (4, false));
        // Budget spent: the first overflow digests, later ones do not.
        assert_eq!(b.take("slack", 5, 0), (0, true));
        assert_eq!(b.take("slack", 5, 0), (0, false));
        // Critical alerts are taken whatever is left.
        assert_eq!(b.take("slack", 0, 3), (0, false));
        // Another channel has a minute of its own.
        assert_eq!(b.take("webhook", 3, 0), (3, false));
    }
}
