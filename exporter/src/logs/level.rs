//! Classifies one application log line by level, for the winston JSON lines
//! the guide's backend writes (`{"level":"error",...}`, also pino's numeric
//! levels) and for plain lines, where the guide's own check is
//! `grep -c "ERROR"`: a plain line containing `ERROR` is an error line.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Other = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Other => "other",
        }
    }

    /// Maps a level name from winston, NestJS, pino, syslog or log4j.
    pub fn from_name(name: &str) -> Level {
        let name = strip_ansi(name);
        match name.trim().to_ascii_lowercase().as_str() {
            "error" | "err" | "fatal" | "crit" | "critical" | "alert" | "emerg" | "emergency"
            | "panic" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" | "log" | "notice" | "http" | "information" => Level::Info,
            "debug" | "verbose" | "silly" | "trace" => Level::Debug,
            _ => Level::Other,
        }
    }

    /// pino's numeric levels: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
    pub fn from_number(n: f64) -> Level {
        match n {
            n if n >= 50.0 => Level::Error,
            n if n >= 40.0 => Level::Warn,
            n if n >= 30.0 => Level::Info,
            n if n >= 10.0 => Level::Debug,
            _ => Level::Other,
        }
    }
}

fn strip_ansi(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\x1b') {
        return s.into();
    }
    // winston's colorize() wraps the level in SGR sequences: ESC [ ... m
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[derive(Deserialize)]
struct LevelOnly<'a> {
    #[serde(borrow, default)]
    level: Option<LevelField<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LevelField<'a> {
    Name(std::borrow::Cow<'a, str>),
    Number(f64),
}

/// Level of a JSON log line, or `None` when the line is not a JSON object
/// with a `level` field.
pub fn json_level(line: &[u8]) -> Option<Level> {
    let parsed: LevelOnly = serde_json::from_slice(line).ok()?;
    Some(match parsed.level? {
        LevelField::Name(n) => Level::from_name(&n),
        LevelField::Number(n) => Level::from_number(n),
    })
}

const PLAIN_PATTERNS: [(&str, Level); 7] = [
    ("ERROR", Level::Error),
    ("FATAL", Level::Error),
    ("WARN", Level::Warn),
    ("INFO", Level::Info),
    ("DEBUG", Level::Debug),
    ("VERBOSE", Level::Debug),
    ("TRACE", Level::Debug),
];

static PLAIN: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new(PLAIN_PATTERNS.iter().map(|(p, _)| p)).expect("static patterns")
});

/// Level of a plain line: the most severe upper-case marker it contains.
pub fn plain_level(line: &[u8]) -> Level {
    let mut level = Level::Other;
    for m in PLAIN.find_iter(line) {
        let found = PLAIN_PATTERNS[m.pattern().as_usize()].1;
        if found == Level::Error {
            return found;
        }
        level = level.max(found);
    }
    level
}

/// Level of any application log line.
pub fn classify(line: &[u8]) -> Level {
    if line.trim_ascii_start().first() == Some(&b'{') {
        if let Some(level) = json_level(line) {
            return level;
        }
    }
    plain_level(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winston_json_lines() {
        assert_eq!(
            classify(
                br#"{"level":"error","message":"db down","timestamp":"2026-11-26T10:00:00Z"}"#
            ),
            Level::Error
        );
        assert_eq!(classify(br#"{"message":"x","level":"warn"}"#), Level::Warn);
        assert_eq!(
            classify(br#"{"level":"http","message":"GET /"}"#),
            Level::Info
        );
        assert_eq!(classify(br#"{"level":"silly"}"#), Level::Debug);
        assert_eq!(
            classify(br#"{"level":"\u001b[31merror\u001b[39m"}"#),
            Level::Error
        );
        assert_eq!(classify(br#"{"level":50,"msg":"pino"}"#), Level::Error);
        assert_eq!(classify(br#"{"level":"custom"}"#), Level::Other);
    }

    #[test]
    fn json_message_text_does_not_override_the_level_field() {
        assert_eq!(
            classify(br#"{"level":"info","message":"retrying after ERROR"}"#),
            Level::Info
        );
    }

    #[test]
    fn plain_lines_follow_the_guides_grep() {
        assert_eq!(classify(b"2026-11-26 ERROR something failed"), Level::Error);
        assert_eq!(classify(b"[Nest] 1 - WARN [X] slow"), Level::Warn);
        assert_eq!(classify(b"INFO then ERROR"), Level::Error);
        assert_eq!(classify(b"INFO ok"), Level::Info);
        assert_eq!(classify(b"DEBUG x"), Level::Debug);
        assert_eq!(
            classify(b"an error in lower case is not the guide's marker"),
            Level::Other
        );
        assert_eq!(classify(b"nothing here"), Level::Other);
        assert_eq!(classify(b""), Level::Other);
    }

    #[test]
    fn invalid_utf8_and_broken_json_fall_back_to_plain() {
        assert_eq!(classify(b"\xff\xfe ERROR \xc3"), Level::Error);
        assert_eq!(classify(b"{\"level\":\"err\xff"), Level::Other);
        assert_eq!(classify(b"{ not json WARN"), Level::Warn);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn any_bytes_classify_without_panicking(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = classify(&line);
        }

        #[test]
        fn json_level_field_wins_over_message_text(level in "[a-zA-Z]{0,10}", msg in "[ -~]{0,40}") {
            let line = serde_json::json!({"level": level, "message": msg}).to_string();
            prop_assert_eq!(classify(line.as_bytes()), Level::from_name(&level));
        }
    }
}
