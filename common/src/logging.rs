//! The binaries' own log: tracing to stderr, as text or JSON, with every
//! control character in a line shown escaped ([`crate::escape`]). A log
//! line is one line whatever an alert, a URL or a file name holds: a
//! label value with CR/LF cannot start a forged line, and an ANSI escape
//! cannot reach the terminal of whoever tails the log. For the same
//! reason the text format has no colours.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber: `filter` is a tracing filter
/// (`info`, `llmchat_receiver=debug`), `json` picks the format.
pub fn init(filter: &str, json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(EscapingStderr)
        .with_ansi(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Makes a [`LineWriter`] over stderr for each event.
struct EscapingStderr;

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = LineWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(io::stderr())
    }
}

/// tracing-subscriber formats each event into one buffer and writes it
/// with one `write_all`; every control character in it but the final
/// newline is escaped. JSON lines hold none (JSON escapes them itself),
/// so they pass unchanged.
pub struct LineWriter<W>(pub W);

impl<W: Write> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = crate::escape::escaped(body);
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_one_line_without_escape_bytes() {
        let mut w = LineWriter(Vec::new());
        w.write_all(b"WARN alert=Down\nBcc: victim@example.com \x1b[2J attempts=1\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(
            out,
            "WARN alert=Down\\nBcc: victim@example.com \\u{1b}[2J attempts=1\n"
        );
    }
}
