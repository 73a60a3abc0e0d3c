//! What one decision stands for in its post: the alerts it covers and
//! the channels they went to. A post of 7,000 alerts that all call for
//! one action on one scope is one decision, one audit row and one log
//! line, not 7,000 of each.

use crate::channels::ChannelSet;

/// One decision's share of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Where its alerts went: the outcome follows them to the channels
    /// that reply where the alert went (Slack's thread).
    pub went: ChannelSet,
    /// Alerts of the post this decision was made for (at least 1).
    pub covers: usize,
}

impl Share {
    pub fn one(went: ChannelSet) -> Self {
        Share { went, covers: 1 }
    }

    /// An audit detail with how many alerts the decision covered, when
    /// more than one.
    pub fn note(self, detail: Option<String>) -> Option<String> {
        if self.covers <= 1 {
            return detail;
        }
        let covered = format!("one decision for {} alerts of this post", self.covers);
        Some(match detail {
            Some(d) => format!("{d}; {covered}"),
            None => covered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_says_how_many_alerts_a_decision_covered() {
        assert_eq!(Share::one(ChannelSet::default()).note(None), None);
        assert_eq!(
            Share::one(ChannelSet::default()).note(Some("x".into())),
            Some("x".to_string())
        );
        let many = Share {
            went: ChannelSet::default(),
            covers: 7000,
        };
        assert_eq!(
            many.note(None).unwrap(),
            "one decision for 7000 alerts of this post"
        );
    }
}
