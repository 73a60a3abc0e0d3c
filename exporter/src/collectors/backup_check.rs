//! Whether each backup file can be read back, checked once per file in a
//! background task, never on the scrape path: a plain SQL dump must end
//! with pg_dump's completion trailer; a custom-format dump (`PGDMP`) is
//! read to its end by `pg_restore` when installed (otherwise its header,
//! table of contents and data blocks' framing by [`pg_custom_dump`]); a `.tar.gz` is decompressed to its end (so gzip's CRC and
//! length are checked) and its tar entries listed to the end. A file whose
//! size or modification time still changes, or changed within `settle`,
//! is being written and is not judged. Reads go through a byte-rate
//! budget, so checking a 50 GB archive cannot starve the host's disk.

use llmchat_common::lock;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::pg_custom_dump::{self, CustomDumpError};

/// What is wrong with a backup file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// It ends before its end: a dump or archive cut short.
    Truncated,
    /// It is whole but wrong inside: a CRC, a header, a stream that does
    /// not decode.
    Corrupt,
    /// It cannot be opened or read.
    Unreadable,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Truncated => "truncated",
            Invalid::Corrupt => "corrupt",
            Invalid::Unreadable => "unreadable",
        }
    }
}

/// pg_dump's last line in plain format.
const PLAIN_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";
/// The custom format's first bytes.
const CUSTOM_MAGIC: &[u8] = b"PGDMP";

/// A reader that keeps to `bytes_per_second`, counting what it read.
pub struct Budgeted<R> {
    inner: R,
    bytes_per_second: u64,
    started: Instant,
    pub read: u64,
    /// Whether reading the file itself failed (an I/O error, not what
    /// the decoder made of the bytes).
    pub io_failed: bool,
}

impl<R: Read> Budgeted<R> {
    pub fn new(inner: R, bytes_per_second: u64) -> Self {
        Budgeted {
            inner,
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            read: 0,
            io_failed: false,
        }
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // At most a tenth of a second's worth at once, so the pace is even.
        let chunk = ((self.bytes_per_second / 10).max(4096) as usize).min(buf.len());
        let n = self
            .inner
            .read(&mut buf[..chunk])
            .inspect_err(|_| self.io_failed = true)?;
        self.read += n as u64;
        let due = Duration::from_secs_f64(self.read as f64 / self.bytes_per_second as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        Ok(n)
    }
}

/// A decoder's error: the file ended early, or its bytes are wrong (a
/// CRC, a header checksum, a deflate stream); `io_failed` when the file
/// itself could not be read.
fn io_reason(e: &std::io::Error, io_failed: bool) -> Invalid {
    match e.kind() {
        _ if io_failed => Invalid::Unreadable,
        std::io::ErrorKind::UnexpectedEof => Invalid::Truncated,
        _ => Invalid::Corrupt,
    }
}

/// How a file was judged: its verdict and the bytes read to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Result<(), Invalid>,
    pub bytes: u64,
}

/// Judges one file; `pg_restore` is the program to read custom-format
/// dumps with (`None`: not installed, read by [`pg_custom_dump`]).
pub fn check_file(path: &Path, bytes_per_second: u64, pg_restore: Option<&Path>) -> Checked {
    let unreadable = Checked {
        verdict: Err(Invalid::Unreadable),
        bytes: 0,
    };
    let Ok(mut file) = std::fs::File::open(path) else {
        return unreadable;
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return check_tar_gz(file, bytes_per_second);
    }
    let mut head = [0u8; 5];
    let head_len = match read_up_to(&mut file, &mut head) {
        Ok(n) => n,
        Err(_) => return unreadable,
    };
    if head[..head_len] == *CUSTOM_MAGIC {
        return match pg_restore {
            Some(program) => check_custom(path, program, bytes_per_second),
            None => check_custom_without_pg_restore(path, bytes_per_second),
        };
    }
    check_plain(&mut file)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A plain dump is complete when its last lines hold the trailer, the
/// file ends with a whole line, and a dump that opened with `\restrict
/// KEY` (pg_dump since 17.6, 16.10...) closes with `\unrestrict KEY`.
fn check_plain(file: &mut std::fs::File) -> Checked {
    let mut head = vec![0u8; 4096];
    let head_len = match file
        .seek(SeekFrom::Start(0))
        .and_then(|_| read_up_to(file, &mut head))
    {
        Ok(n) => n,
        Err(_) => {
            return Checked {
                verdict: Err(Invalid::Unreadable),
                bytes: 0,
            }
        }
    };
    let key = head[..head_len]
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"\\restrict "))
        .map(|k| k.to_vec());
    let mut c = check_plain_tail(file, key.as_deref());
    c.bytes += head_len as u64;
    c
}

fn check_plain_tail(file: &mut std::fs::File, key: Option<&[u8]>) -> Checked {
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(_) => {
            return Checked {
                verdict: Err(Invalid::Unreadable),
                bytes: 0,
            }
        }
    };
    let tail_len = size.min(4096);
    let mut tail = vec![0u8; tail_len as usize];
    let read = file
        .seek(SeekFrom::Start(size - tail_len))
        .and_then(|_| file.read_exact(&mut tail));
    if read.is_err() {
        return Checked {
            verdict: Err(Invalid::Unreadable),
            bytes: 0,
        };
    }
    let has = |needle: &[u8]| tail.windows(needle.len()).any(|w| w == needle);
    let unrestricted = key.is_none_or(|k| has(&[b"\\unrestrict ", k, b"\n"].concat()));
    let complete = has(PLAIN_TRAILER) && tail.ends_with(b"\n") && unrestricted;
    Checked {
        verdict: if complete {
            Ok(())
        } else {
            Err(Invalid::Truncated)
        },
        bytes: tail_len,
    }
}

/// gzip read to its end (CRC and length), and every tar entry read.
fn check_tar_gz(file: std::fs::File, bytes_per_second: u64) -> Checked {
    let mut budgeted = Budgeted::new(std::io::BufReader::new(file), bytes_per_second);
    let verdict = (|| -> std::io::Result<()> {
        // flate2 and tar, not hand-written: gzip members, CRC32 and ISIZE,
        // and ustar/GNU/pax headers are theirs to get right.
        let gz = flate2::read::MultiGzDecoder::new(&mut budgeted);
        let mut archive = tar::Archive::new(gz);
        for entry in archive.entries()? {
            let mut entry = entry?;
            std::io::copy(&mut entry, &mut std::io::sink())?;
        }
        // Whatever follows the archive's end blocks must decode too.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())?;
        Ok(())
    })()
    .map_err(|e| io_reason(&e, budgeted.io_failed));
    Checked {
        verdict,
        bytes: budgeted.read,
    }
}

/// `pg_restore --file=/dev/null` fed the dump through the budget: it
/// reads every table of contents entry and every data block.
fn check_custom(path: &Path, program: &Path, bytes_per_second: u64) -> Checked {
    let unreadable = Checked {
        verdict: Err(Invalid::Unreadable),
        bytes: 0,
    };
    let Ok(file) = std::fs::File::open(path) else {
        return unreadable;
    };
    let child = Command::new(program)
        .arg("--file=/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return unreadable;
    };
    let mut budgeted = Budgeted::new(std::io::BufReader::new(file), bytes_per_second);
    let copied = child
        .stdin
        .take()
        .map(|mut stdin| {
            let r = std::io::copy(&mut budgeted, &mut stdin);
            let _ = stdin.flush();
            r
        })
        .unwrap_or_else(|| Err(std::io::Error::other("no stdin")));
    let Ok(output) = child.wait_with_output() else {
        return unreadable;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdict = match (&copied, output.status.success()) {
        (Err(e), _) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Invalid::Unreadable),
        (_, true) => Ok(()),
        _ if stderr.contains("end of file") || stderr.contains("could not read") => {
            Err(Invalid::Truncated)
        }
        _ => Err(Invalid::Corrupt),
    };
    Checked {
        verdict,
        bytes: budgeted.read,
    }
}

/// Without pg_restore: the header, the table of contents and every data
/// block's framing, read by [`pg_custom_dump`]. An archive version newer
/// than the reader knows passes on its header alone (pg_restore, when
/// installed, judges it whole).
fn check_custom_without_pg_restore(path: &Path, bytes_per_second: u64) -> Checked {
    let Ok(file) = std::fs::File::open(path) else {
        return Checked {
            verdict: Err(Invalid::Unreadable),
            bytes: 0,
        };
    };
    let mut budgeted = Budgeted::new(std::io::BufReader::new(file), bytes_per_second);
    let verdict = match pg_custom_dump::check(&mut budgeted) {
        Ok(_) | Err(CustomDumpError::UnknownVersion(_)) => Ok(()),
        Err(CustomDumpError::Truncated(_)) => Err(Invalid::Truncated),
        Err(CustomDumpError::Corrupt(_)) => Err(Invalid::Corrupt),
        Err(CustomDumpError::Io(_)) => Err(Invalid::Unreadable),
    };
    Checked {
        verdict,
        bytes: budgeted.read,
    }
}

/// One file as listed: what makes it the same file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub size: u64,
    pub modified: f64,
}

/// A judged file.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    pub seen: Seen,
    pub checked: Checked,
    /// When its check finished, Unix time.
    pub at: f64,
}

/// What the checker knows, shared with the collector.
#[derive(Debug, Default)]
pub struct CheckState {
    /// Files as listed at the previous pass: a file must be seen the same
    /// twice (and older than `settle`) to be judged.
    pub listed: HashMap<PathBuf, Seen>,
    pub judged: HashMap<PathBuf, Judged>,
    /// Per kind: bytes read by checks, and invalid files by reason.
    pub checked_bytes: HashMap<&'static str, u64>,
    pub invalid: HashMap<(&'static str, Invalid), u64>,
}

pub type SharedState = Arc<Mutex<CheckState>>;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One pass over `files` (path, kind, what the listing saw): judges each
/// file that is new or changed, stable since the last pass and untouched
/// for `settle`; forgets files that are gone. Returns what it judged now.
pub fn pass(
    state: &SharedState,
    files: &[(PathBuf, &'static str, Seen)],
    settle: Duration,
    bytes_per_second: u64,
    pg_restore: Option<&Path>,
) -> Vec<(PathBuf, &'static str, Checked)> {
    let mut to_check = Vec::new();
    {
        let mut s = lock(state);
        let t = now();
        for (path, kind, seen) in files {
            let stable = s.listed.get(path) == Some(seen);
            let settled = t - seen.modified >= settle.as_secs_f64();
            let known = s.judged.get(path).is_some_and(|j| j.seen == *seen);
            if stable && settled && !known {
                to_check.push((path.clone(), *kind, *seen));
            }
        }
        s.listed = files
            .iter()
            .map(|(p, _, seen)| (p.clone(), *seen))
            .collect();
        let present: std::collections::HashSet<&PathBuf> = files.iter().map(|(p, ..)| p).collect();
        s.judged.retain(|p, _| present.contains(p));
    }
    let mut out = Vec::new();
    for (path, kind, seen) in to_check {
        let checked = check_file(&path, bytes_per_second, pg_restore);
        let mut s = lock(state);
        *s.checked_bytes.entry(kind).or_default() += checked.bytes;
        if let Err(reason) = checked.verdict {
            *s.invalid.entry((kind, reason)).or_default() += 1;
        }
        s.judged.insert(
            path.clone(),
            Judged {
                seen,
                checked,
                at: now(),
            },
        );
        out.push((path, kind, checked));
    }
    out
}

/// `pg_restore` on the PATH, or at the configured path.
pub fn find_program(configured: &Path) -> Option<PathBuf> {
    if configured.components().count() > 1 {
        return configured.is_file().then(|| configured.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(configured))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(dir: &Path, name: &str, payload: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(payload.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "uploads/a.bin", payload)
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_whole_archive_passes_and_a_cut_or_flipped_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let good = tar_gz(dir.path(), "uploads_1.tar.gz", &noise(300_000));
        let c = check_file(&good, u64::MAX / 2, None);
        assert_eq!(c.verdict, Ok(()));
        assert_eq!(c.bytes, std::fs::metadata(&good).unwrap().len());
        let bytes = std::fs::read(&good).unwrap();
        for cut in [10, bytes.len() / 2, bytes.len() - 4] {
            let p = dir.path().join(format!("uploads_cut{cut}.tar.gz"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert_eq!(
                check_file(&p, u64::MAX / 2, None).verdict,
                Err(Invalid::Truncated),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        let p = dir.path().join("uploads_flipped.tar.gz");
        std::fs::write(&p, &flipped).unwrap();
        assert_eq!(
            check_file(&p, u64::MAX / 2, None).verdict,
            Err(Invalid::Corrupt)
        );
    }

    #[test]
    fn a_plain_dump_needs_its_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("database_1.sql");
        std::fs::write(&p, "--\n-- PostgreSQL database dump\n--\nCOPY x FROM stdin;\n1\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n").unwrap();
        assert_eq!(check_file(&p, 1 << 20, None).verdict, Ok(()));
        std::fs::write(
            &p,
            "--\n-- PostgreSQL database dump\n--\nCOPY x FROM stdin;\n1\n",
        )
        .unwrap();
        assert_eq!(
            check_file(&p, 1 << 20, None).verdict,
            Err(Invalid::Truncated)
        );
        // pg_dump since 17.6 opens with \restrict KEY and closes with
        // \unrestrict KEY after the trailer: cut before it, it is cut.
        let restricted = "\\restrict k3y\n--\n-- PostgreSQL database dump\n--\nSELECT 1;\n--\n-- PostgreSQL database dump complete\n--\n\n";
        std::fs::write(&p, format!("{restricted}\\unrestrict k3y\n")).unwrap();
        assert_eq!(check_file(&p, 1 << 20, None).verdict, Ok(()));
        std::fs::write(&p, format!("{restricted}\\unrestrict k3")).unwrap();
        assert_eq!(
            check_file(&p, 1 << 20, None).verdict,
            Err(Invalid::Truncated)
        );
        std::fs::write(&p, restricted).unwrap();
        assert_eq!(
            check_file(&p, 1 << 20, None).verdict,
            Err(Invalid::Truncated)
        );
        let missing = dir.path().join("database_2.sql");
        assert_eq!(
            check_file(&missing, 1 << 20, None).verdict,
            Err(Invalid::Unreadable)
        );
    }

    #[test]
    fn the_budget_holds_the_read_rate() {
        let data = noise(400_000);
        let started = Instant::now();
        let mut r = Budgeted::new(&data[..], 1_000_000);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.read, 400_000);
        assert!(
            started.elapsed() >= Duration::from_millis(390),
            "{:?}",
            started.elapsed()
        );
    }
}
