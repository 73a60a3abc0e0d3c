//! Cuts a byte stream into lines for the tailer, whatever the read
//! boundaries, keeping at most `logs.max_line_bytes` of an unfinished line
//! so one endless line cannot grow memory.

/// Cuts a byte stream into lines, whatever the chunk boundaries, keeping at
/// most `max` bytes of an unfinished line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Bytes after the last `\n`, at most `max` of them.
    partial: Vec<u8>,
    /// The unfinished line was longer than `partial` holds.
    truncated: bool,
}

impl LineSplitter {
    /// Emits every line that `chunk` completes, as `(line, truncated)`.
    pub fn feed(&mut self, chunk: &[u8], max: usize, mut emit: impl FnMut(&[u8], bool)) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            let piece = &chunk[start..nl];
            if self.partial.is_empty() && !self.truncated {
                if piece.len() > max {
                    emit(&piece[..max], true);
                } else {
                    emit(piece, false);
                }
            } else {
                self.append(piece, max);
                emit(&self.partial, self.truncated);
                self.partial.clear();
                self.truncated = false;
            }
            start = nl + 1;
        }
        if start < chunk.len() {
            self.append(&chunk[start..], max);
        }
    }

    /// Emits the unfinished line, if any, as complete: its file will get
    /// no more bytes.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() || self.truncated {
            emit(&self.partial, self.truncated);
            self.partial.clear();
            self.truncated = false;
        }
    }

    fn append(&mut self, bytes: &[u8], max: usize) {
        let room = max.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            self.truncated = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests: any byte stream, cut into any chunks, gives the same
    //! lines as splitting it whole.
    use super::LineSplitter;
    use proptest::prelude::*;

    fn reference(data: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out: Vec<(Vec<u8>, bool)> = data
            .split(|b| *b == b'\n')
            .map(|l| (l[..l.len().min(max)].to_vec(), l.len() > max))
            .collect();
        // The last piece has no newline yet; `finish` completes it if any.
        if out.last().is_some_and(|(l, t)| l.is_empty() && !t) {
            out.pop();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn chunking_never_changes_the_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..600),
            cuts in proptest::collection::vec(1usize..50, 1..40),
            max in 1usize..40,
        ) {
            let mut splitter = LineSplitter::default();
            let mut got = Vec::new();
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                splitter.feed(&rest[..n], max, |l, t| got.push((l.to_vec(), t)));
                rest = &rest[n..];
                i += 1;
            }
            splitter.finish(|l, t| got.push((l.to_vec(), t)));
            prop_assert_eq!(got, reference(&data, max));
        }
    }
}
