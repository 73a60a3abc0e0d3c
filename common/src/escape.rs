//! Text from outside (alert labels, URLs, header values, file names, a
//! server's error text) on its way into a text log line: control
//! characters are shown escaped (`\n`, `\r`, `\t`, `\u{1b}`), so that no
//! value can end a log line and start a forged one, or send a terminal
//! escape sequence to whoever reads the log.
//!
//! [`crate::logging`] applies it to every line the binaries log; the
//! [`Escaped`] wrapper is for text that leaves by another way (an HTTP
//! error body, an audit row's detail).

use std::fmt;

/// Whether `c` is shown escaped: C0 and C1 controls, DEL, and the Unicode
/// line and paragraph separators (which some log viewers break on).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Writes `s` with every character that [`needs_escape`] escaped.
pub fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(needs_escape) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `s` escaped, as a new string.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_escaped(&mut out, s);
    out
}

/// Displays a value with its control characters escaped.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_escaped_and_the_rest_is_kept() {
        assert_eq!(
            escaped("a\nb\rc\td\u{1b}[31me\u{7f}f\u{85}g\u{2028}h 中文"),
            "a\\nb\\rc\\td\\u{1b}[31me\\u{7f}f\\u{85}g\\u{2028}h 中文"
        );
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(Escaped("x\ny").to_string(), "x\\ny");
    }
}
