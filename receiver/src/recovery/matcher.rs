//! Alertmanager-style label matchers (`name="v"`, `!=`, `=~`, `!~`; regexes
//! anchored at both ends, as Alertmanager anchors them). A label that is
//! absent counts as the empty string, again as in Alertmanager.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("{0:?}: expected name=\"value\" (or !=, =~, !~)")]
    Syntax(String),
    #[error("{0:?}: the label name must be [a-zA-Z_][a-zA-Z0-9_]*")]
    Name(String),
    #[error("{input:?}: invalid regex: {reason}")]
    Regex { input: String, reason: String },
}

impl Matcher {
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            op: Op::Equal,
            value: value.into(),
            regex: None,
        }
    }

    pub fn parse(input: &str) -> Result<Matcher, MatcherError> {
        let syntax = || MatcherError::Syntax(input.to_string());
        let s = input.trim();
        let at = s.find(['=', '!']).ok_or_else(syntax)?;
        let name = s[..at].trim();
        let rest = &s[at..];
        let (op, value) = [Op::NotEqual, Op::Regex, Op::NotRegex, Op::Equal]
            .into_iter()
            .find_map(|op| rest.strip_prefix(op.as_str()).map(|v| (op, v.trim())))
            .ok_or_else(syntax)?;
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(MatcherError::Name(input.to_string()));
        }
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            serde_json::from_str::<String>(value).map_err(|_| syntax())?
        } else if value.contains(['"', ',', '{', '}']) {
            return Err(syntax());
        } else {
            value.to_string()
        };
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(Regex::new(&format!("^(?:{value})$")).map_err(
                |e| MatcherError::Regex {
                    input: input.to_string(),
                    reason: e.to_string(),
                },
            )?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = serde_json::to_string(&self.value).map_err(|_| fmt::Error)?;
        write!(f, "{}{}{}", self.name, self.op.as_str(), quoted)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_four_operators_as_alertmanager_means_them() {
        let l = labels(&[("fault", "high_error_rate"), ("severity", "critical")]);
        let m = |s: &str| Matcher::parse(s).unwrap().matches(&l);
        assert!(m(r#"fault="high_error_rate""#));
        assert!(m("fault = high_error_rate"));
        assert!(!m(r#"fault="high""#));
        assert!(m(r#"severity=~"critical|warning""#));
        assert!(!m(r#"severity=~"crit""#), "regexes are anchored");
        assert!(m(r#"instance!="canary""#));
        assert!(m(r#"instance="""#), "an absent label is the empty string");
        assert!(m(r#"fault!~"slow_.*""#));
        assert_eq!(
            Matcher::parse(r#"a=~"x""#).unwrap().to_string(),
            r#"a=~"x""#
        );
    }

    #[test]
    fn bad_matchers_are_refused_with_the_input_named() {
        for bad in ["fault", "=x", "1a=\"x\"", "a=~\"(\"", "a=\"x\",b=\"y\""] {
            let e = Matcher::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
