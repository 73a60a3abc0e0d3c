//! Follows log files the way `tail -F` does, but counts every line exactly
//! once through rotation, truncation, deletion and re-creation.
//!
//! `linemux::MuxedEvents` tells us *when* to look (inotify, including files
//! whose directory exists but the file not yet); a poll tick covers lost
//! events. *What* to read is decided here, on bytes, because counting needs
//! guarantees that a line-string stream cannot give:
//!
//! - a line counts once its `\n` arrives, never as two halves;
//! - the old file of a rename+create rotation is drained to its end, and
//!   kept open for `rotate_wait` after its last write for late writers;
//! - a file that shrinks (copytruncate) is re-read from its start, and so
//!   is one that was truncated and grew back past our offset before we
//!   looked: the last bytes read are no longer where they were read;
//! - a file that appears after start-up is read from its start;
//! - a line longer than `max_line_bytes` is counted once, classified on its
//!   first bytes, and the rest dropped, so memory stays bounded;
//! - invalid UTF-8 is just bytes;
//! - only regular files are opened, and without blocking (`O_NONBLOCK`,
//!   then `fstat`): a FIFO, socket, device or directory at a path is
//!   refused, never waited on, so the exporter starts whatever sits there;
//! - what a path holds ([`PathState`]) is logged when it changes, not on
//!   every poll, and the sink is told whether the path is readable.

#![forbid(unsafe_code)]

use llmchat_common::lock;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod lines;

pub use lines::LineSplitter;

/// Receives what the tailer reads. Calls for one file arrive in file order.
pub trait Sink {
    /// One complete line, without its `\n`. `truncated` says the line was
    /// longer than `max_line_bytes` and `line` holds only its first bytes.
    fn line(&mut self, file: usize, line: &[u8], truncated: bool);
    /// Bytes read from the file (lines and partial lines alike).
    fn bytes_read(&mut self, file: usize, n: u64);
    /// The file at the path was replaced (rename/delete+create) or truncated.
    fn rotated(&mut self, file: usize, kind: Rotation);
    /// End of one read pass over `file`; a sink may publish batched counts.
    fn flush(&mut self, file: usize);
    /// Whether the path now holds a file the tailer reads; called when
    /// that changes (and once at start).
    fn readable(&mut self, _file: usize, _readable: bool) {}
}

/// What sits at a followed path, as far as reading it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    /// Nothing there (yet).
    Missing,
    /// A regular file, read.
    Readable,
    /// Not a regular file, so never opened: `directory`, `fifo`, `socket`,
    /// `device`.
    NotRegular(&'static str),
    /// A path that cannot be opened or read: permissions, a symlink loop,
    /// an I/O error.
    Unreadable(String),
}

impl PathState {
    fn of_error(e: &io::Error) -> PathState {
        if e.kind() == io::ErrorKind::NotFound {
            PathState::Missing
        } else {
            PathState::Unreadable(e.to_string())
        }
    }

    fn of_type(t: std::fs::FileType) -> PathState {
        use std::os::unix::fs::FileTypeExt;
        if t.is_file() {
            PathState::Readable
        } else if t.is_dir() {
            PathState::NotRegular("directory")
        } else if t.is_fifo() {
            PathState::NotRegular("fifo")
        } else if t.is_socket() {
            PathState::NotRegular("socket")
        } else {
            PathState::NotRegular("device")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// A new file took the path (rename+create, delete+create).
    Replaced,
    /// The file got shorter than what was already read (copytruncate).
    Truncated,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Start files that exist at start-up at their beginning, not their end.
    pub from_beginning: bool,
    /// Keep reading a replaced file until it has been idle this long.
    pub rotate_wait: Duration,
    pub max_line_bytes: usize,
}

const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// How many of the last bytes read a reader keeps to recognise its file's
/// content: enough for a timestamp and then some, cheap to re-read.
const FINGERPRINT_BYTES: usize = 64;

/// One open file (inode) and where we are in it.
struct Reader {
    file: File,
    id: FileId,
    offset: u64,
    lines: LineSplitter,
    /// The bytes just before `offset`, as read (at most
    /// [`FINGERPRINT_BYTES`]). A copytruncate whose file grows back past
    /// `offset` between two looks leaves the length no shorter, so the
    /// length alone cannot tell; these bytes can.
    fingerprint: Vec<u8>,
}

impl Reader {
    /// Whether the file still holds, just before `offset`, the bytes we read
    /// there. False means it was rewritten from its start under us.
    fn still_holds_what_was_read(&self) -> io::Result<bool> {
        if self.fingerprint.is_empty() {
            return Ok(true);
        }
        let mut now = vec![0u8; self.fingerprint.len()];
        let at = self.offset - self.fingerprint.len() as u64;
        match self.file.read_exact_at(&mut now, at) {
            Ok(()) => Ok(now == self.fingerprint),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keeps the last [`FINGERPRINT_BYTES`] of what has been read.
    fn remember(&mut self, chunk: &[u8]) {
        if chunk.len() >= FINGERPRINT_BYTES {
            self.fingerprint.clear();
            self.fingerprint
                .extend_from_slice(&chunk[chunk.len() - FINGERPRINT_BYTES..]);
        } else {
            self.fingerprint.extend_from_slice(chunk);
            let excess = self.fingerprint.len().saturating_sub(FINGERPRINT_BYTES);
            self.fingerprint.drain(..excess);
        }
    }
}

struct Retired {
    reader: Reader,
    idle_since: Instant,
}

struct Followed {
    path: PathBuf,
    current: Option<Reader>,
    retired: Vec<Retired>,
    exists: bool,
    /// A file was open at this path before: the next one replaces it.
    had_file: bool,
    /// What the path held at the last sync; None before the first.
    state: Option<PathState>,
}

impl Followed {
    /// Records what the path holds; logs and tells the sink only on change.
    fn set_state<S: Sink>(&mut self, index: usize, sink: &mut S, state: PathState) {
        if self.state.as_ref() == Some(&state) {
            return;
        }
        let path = self.path.display();
        let was_problem = matches!(
            self.state,
            Some(PathState::NotRegular(_) | PathState::Unreadable(_))
        );
        match &state {
            PathState::NotRegular(kind) => tracing::warn!(
                path = %path, kind,
                "log path is not a regular file; it is not read until a regular file takes its place"
            ),
            PathState::Unreadable(error) => {
                tracing::warn!(path = %path, error = %error, "cannot read log file")
            }
            PathState::Readable if was_problem => {
                tracing::info!(path = %path, "log file readable again")
            }
            // A rotation passes through Missing: not worth a line.
            PathState::Missing | PathState::Readable => {
                tracing::debug!(path = %path, state = ?state, "log path state")
            }
        }
        sink.readable(index, state == PathState::Readable);
        self.state = Some(state);
    }
}

/// Follows a fixed list of paths; `file` indexes in [`Sink`] calls are
/// positions in that list.
pub struct Tailer<S> {
    files: Vec<Followed>,
    sink: S,
    options: Options,
    buf: Vec<u8>,
}

impl<S: Sink> Tailer<S> {
    pub fn new(paths: Vec<PathBuf>, options: Options, sink: S) -> Self {
        Tailer {
            files: paths
                .into_iter()
                .map(|path| Followed {
                    path,
                    current: None,
                    retired: Vec::new(),
                    exists: false,
                    had_file: false,
                    state: None,
                })
                .collect(),
            sink,
            options,
            buf: vec![0; READ_CHUNK],
        }
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Opens the files that exist now, at their end unless `from_beginning`.
    pub fn start(&mut self) {
        for index in 0..self.files.len() {
            let at_end = !self.options.from_beginning;
            let followed = &mut self.files[index];
            if let Ok(Some(reader)) = open_at(&followed.path, at_end) {
                followed.current = Some(reader);
                followed.exists = true;
                followed.had_file = true;
            }
            // The sync says what the path holds, whatever the open found.
            self.sync(index);
        }
    }

    /// Reads whatever is new in every file.
    pub fn sync_all(&mut self) {
        for index in 0..self.files.len() {
            self.sync(index);
        }
    }

    /// Whether the path exists, as of the last sync.
    pub fn exists(&self, index: usize) -> bool {
        self.files[index].exists
    }

    /// Reads whatever is new for one path: first what is left in the files
    /// we hold (so lines written before a rotation are not lost), then the
    /// file now at the path if it is a new one.
    pub fn sync(&mut self, index: usize) {
        self.sync_at(index, Instant::now());
    }

    /// [`Tailer::sync`] as of `now`, which decides when a replaced file has
    /// been idle for `rotate_wait` (a parameter so tests set the clock).
    fn sync_at(&mut self, index: usize, now: Instant) {
        let Self {
            files,
            sink,
            options,
            buf,
        } = self;
        let followed = &mut files[index];

        let mut read_error = None;
        if let Some(reader) = followed.current.as_mut() {
            if let Err(e) = drain(reader, index, sink, options, buf) {
                read_error = Some(PathState::Unreadable(e.to_string()));
            }
        }

        // stat() never blocks on what it finds; only regular files are opened.
        let state = match std::fs::metadata(&followed.path) {
            Ok(meta) if meta.is_file() => {
                followed.exists = true;
                let id = FileId::of(&meta);
                let replaced = followed.current.as_ref().is_some_and(|r| r.id != id);
                if replaced {
                    let old = followed.current.take().expect("checked above");
                    followed.retired.push(Retired {
                        reader: old,
                        idle_since: now,
                    });
                }
                if followed.current.is_none() {
                    // Appeared (or re-appeared) after start-up: all of it is new.
                    match open_at(&followed.path, false) {
                        Ok(Some(mut reader)) => {
                            // Counted here, not when the old file went: a
                            // rename and a create may fall into one sync or
                            // two, and either way it is one rotation.
                            if followed.had_file {
                                sink.rotated(index, Rotation::Replaced);
                            }
                            followed.had_file = true;
                            if let Err(e) = drain(&mut reader, index, sink, options, buf) {
                                read_error = Some(PathState::Unreadable(e.to_string()));
                            }
                            followed.current = Some(reader);
                        }
                        Ok(None) => followed.exists = false,
                        Err(e) => read_error = Some(PathState::of_error(&e)),
                    }
                }
                read_error.unwrap_or(PathState::Readable)
            }
            other => {
                // Gone (deleted or renamed away) or not a regular file. Keep
                // draining what we hold until it goes idle.
                followed.exists = false;
                if let Some(old) = followed.current.take() {
                    followed.retired.push(Retired {
                        reader: old,
                        idle_since: now,
                    });
                }
                match other {
                    Ok(meta) => PathState::of_type(meta.file_type()),
                    Err(e) => PathState::of_error(&e),
                }
            }
        };
        followed.set_state(index, sink, state);

        let rotate_wait = options.rotate_wait;
        followed.retired.retain_mut(|r| {
            match drain(&mut r.reader, index, sink, options, buf) {
                Ok(0) => {}
                Ok(_) => r.idle_since = now,
                Err(e) => {
                    tracing::debug!(error = %e, "read of rotated log file failed");
                }
            }
            if now.duration_since(r.idle_since) < rotate_wait {
                return true;
            }
            // Nobody writes here any more: an unterminated last line is
            // complete now.
            r.reader
                .lines
                .finish(|line, truncated| sink.line(index, line, truncated));
            false
        });
        sink.flush(index);
    }
}

/// A running tailer thread.
pub struct Handle {
    alive: Arc<AtomicBool>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Handle {
    /// False once the thread has ended, panic included.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `tailer` on its own thread: a small single-threaded runtime that
/// waits for a file event or the poll tick, and reads on each. Reads are
/// plain blocking reads, which is why the thread is its own.
pub fn spawn<S: Sink + Send + 'static>(
    mut tailer: Tailer<S>,
    poll_interval: Duration,
) -> io::Result<Handle> {
    // Fix the starting offsets now, before the exporter answers: a line
    // written after start-up must count even if the thread is slow to run.
    tailer.start();
    let alive = Arc::new(AtomicBool::new(true));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread_alive = alive.clone();
    std::thread::Builder::new()
        .name("llmchat-tailer".into())
        .spawn(move || {
            struct Alive(Arc<AtomicBool>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::SeqCst);
                }
            }
            let _alive = Alive(thread_alive);
            run(tailer, poll_interval, stop_rx);
        })?;
    Ok(Handle {
        alive,
        stop: Mutex::new(Some(stop_tx)),
    })
}

fn run<S: Sink>(
    mut tailer: Tailer<S>,
    poll_interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the tailer runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let mut events = match linemux::MuxedEvents::new() {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(error = %e, "file events unavailable; polling log files only");
                None
            }
        };
        if let Some(ev) = events.as_mut() {
            let paths: Vec<PathBuf> = tailer.paths().map(PathBuf::from).collect();
            for path in paths {
                // Debug only: the poll covers the path, and what is wrong
                // with it (if anything) is logged once by its state.
                if let Err(e) = ev.add_file(&path).await {
                    tracing::debug!(path = %path.display(), error = %e,
                        "cannot watch log file; it is polled instead");
                }
            }
        }
        // Whatever was written while the watches were being set up.
        tailer.sync_all();
        let mut tick = tokio::time::interval(poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = next_event(&mut events) => {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "file event error; polling continues");
                        events = None;
                    }
                    tailer.sync_all();
                }
                _ = tick.tick() => tailer.sync_all(),
            }
        }
    });
}

async fn next_event(events: &mut Option<linemux::MuxedEvents>) -> io::Result<()> {
    match events {
        Some(ev) => match ev.next_event().await? {
            Some(_) => Ok(()),
            // Nothing left to watch: rely on the poll tick from now on.
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Opens `path` if it is a regular file; `Ok(None)` when it does not
/// exist. `O_NONBLOCK` because opening a FIFO for reading otherwise waits
/// for a writer; the type is then checked on the open file itself (the
/// path may have changed since it was stat'ed). On a regular file the
/// flag changes nothing.
fn open_at(path: &Path, at_end: bool) -> io::Result<Option<Reader>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let offset = if at_end {
        file.seek(SeekFrom::End(0))?
    } else {
        0
    };
    let kept = (offset as usize).min(FINGERPRINT_BYTES);
    let mut fingerprint = vec![0u8; kept];
    file.read_exact_at(&mut fingerprint, offset - kept as u64)?;
    Ok(Some(Reader {
        file,
        id: FileId::of(&meta),
        offset,
        lines: LineSplitter::default(),
        fingerprint,
    }))
}

/// Reads a file from its offset to its end, handing complete lines to the
/// sink. Returns the number of bytes read.
fn drain<S: Sink>(
    reader: &mut Reader,
    index: usize,
    sink: &mut S,
    options: &Options,
    buf: &mut [u8],
) -> io::Result<u64> {
    let len = reader.file.metadata()?.len();
    if len < reader.offset || !reader.still_holds_what_was_read()? {
        // copytruncate: the file was emptied under us (and may have grown
        // back since). A partial line is kept: its end will be the first
        // bytes written after truncation.
        reader.file.seek(SeekFrom::Start(0))?;
        reader.offset = 0;
        reader.fingerprint.clear();
        sink.rotated(index, Rotation::Truncated);
    }
    let mut total = 0u64;
    loop {
        let n = match reader.file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        reader.offset += n as u64;
        reader.remember(&buf[..n]);
        reader
            .lines
            .feed(&buf[..n], options.max_line_bytes, |line, truncated| {
                sink.line(index, line, truncated)
            });
    }
    if total > 0 {
        sink.bytes_read(index, total);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Default)]
    struct Collect {
        lines: Vec<(Vec<u8>, bool)>,
        bytes: u64,
        rotations: Vec<Rotation>,
    }

    impl Sink for Collect {
        fn line(&mut self, _: usize, line: &[u8], truncated: bool) {
            self.lines.push((line.to_vec(), truncated));
        }
        fn bytes_read(&mut self, _: usize, n: u64) {
            self.bytes += n;
        }
        fn rotated(&mut self, _: usize, kind: Rotation) {
            self.rotations.push(kind);
        }
        fn flush(&mut self, _: usize) {}
    }

    fn opts() -> Options {
        Options {
            from_beginning: false,
            rotate_wait: Duration::ZERO,
            max_line_bytes: 16,
        }
    }

    fn append(path: &Path, data: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(data).unwrap();
    }

    fn lines(t: &Tailer<Collect>) -> Vec<&[u8]> {
        t.sink.lines.iter().map(|(l, _)| l.as_slice()).collect()
    }

    #[test]
    fn existing_content_is_skipped_and_partial_lines_wait_for_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"old\n");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, b"hel");
        t.sync_all();
        assert!(t.sink.lines.is_empty());
        append(&p, b"lo\nworld\n");
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"hello"[..], b"world"]);
        assert_eq!(t.sink.bytes, 12);
    }

    #[test]
    fn rename_and_create_drains_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, b"one\n");
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        append(&dir.path().join("a.log.1"), b"two\n");
        append(&p, b"three\n");
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"one"[..], b"two", b"three"]);
        assert_eq!(t.sink.rotations, vec![Rotation::Replaced]);
    }

    #[test]
    fn rename_and_create_seen_in_two_syncs_count_one_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        t.sync_all();
        assert!(!t.exists(0));
        append(&p, b"new\n");
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"new"[..]]);
        assert_eq!(t.sink.rotations, vec![Rotation::Replaced]);
    }

    /// Shares what it reads, for a tailer running on its own thread.
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Sink for Shared {
        fn line(&mut self, _: usize, line: &[u8], _: bool) {
            self.0.lock().unwrap().push(line.to_vec());
        }
        fn bytes_read(&mut self, _: usize, _: u64) {}
        fn rotated(&mut self, _: usize, _: Rotation) {}
        fn flush(&mut self, _: usize) {}
    }

    #[test]
    fn a_line_written_right_after_spawn_is_counted_however_late_the_thread_starts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"before\n");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tailer = Tailer::new(vec![p.clone()], opts(), Shared(seen.clone()));
        let handle = spawn(tailer, Duration::from_millis(20)).unwrap();
        // The thread may not have run yet: the offset must already be fixed.
        append(&p, b"after\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was lost");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*seen.lock().unwrap(), vec![b"after".to_vec()]);
        handle.stop();
    }

    #[test]
    fn truncation_rereads_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, b"aaaa\nbbbb\n");
        t.sync_all();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, b"c\n");
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"aaaa"[..], b"bbbb", b"c"]);
        assert_eq!(t.sink.rotations, vec![Rotation::Truncated]);
    }

    #[test]
    fn truncation_that_grew_back_past_the_offset_before_a_look_rereads_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, b"aaaa\nbbbb\n");
        t.sync_all();
        // Truncated and rewritten, longer than before, between two syncs:
        // the length never looked shorter.
        std::fs::write(&p, b"cccccccccc\ndd\n").unwrap();
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"aaaa"[..], b"bbbb", b"cccccccccc", b"dd"]);
        assert_eq!(t.sink.rotations, vec![Rotation::Truncated]);
        // Rewritten to exactly the length already read.
        std::fs::write(&p, b"eeeeeeeeeeeeee\n").unwrap();
        t.sync_all();
        assert_eq!(lines(&t)[4..], [&b"eeeeeeeeeeeeee"[..]]);
        assert_eq!(t.sink.rotations.len(), 2);
        // Plain appends are not mistaken for a rewrite.
        append(&p, b"ff\n");
        t.sync_all();
        assert_eq!(lines(&t)[5..], [&b"ff"[..]]);
        assert_eq!(t.sink.rotations.len(), 2);
    }

    #[test]
    fn a_file_opened_at_its_end_still_notices_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"written before start-up\n");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        // No shorter than what was skipped, so only the content tells.
        std::fs::write(&p, b"rewritten\nafter start\nup\n").unwrap();
        t.sync_all();
        assert_eq!(lines(&t), vec![&b"rewritten"[..], b"after start", b"up"]);
        assert_eq!(t.sink.rotations, vec![Rotation::Truncated]);
    }

    #[test]
    fn a_replaced_file_is_read_until_idle_for_rotate_wait_then_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let old = dir.path().join("a.log.1");
        append(&p, b"");
        let wait = Duration::from_secs(10);
        let options = Options {
            rotate_wait: wait,
            ..opts()
        };
        let mut t = Tailer::new(vec![p.clone()], options, Collect::default());
        t.start();
        let t0 = Instant::now();
        append(&p, b"one\n");
        std::fs::rename(&p, &old).unwrap();
        append(&p, b"two\n");
        t.sync_at(0, t0);
        assert_eq!(lines(&t), vec![&b"one"[..], b"two"]);
        // A late writer still holding the old file, within rotate_wait.
        append(&old, b"late\nunterminated");
        t.sync_at(0, t0 + wait / 2);
        assert_eq!(lines(&t), vec![&b"one"[..], b"two", b"late"]);
        // Idle (no new bytes) for just under rotate_wait: still held.
        t.sync_at(0, t0 + wait / 2 + wait - Duration::from_millis(1));
        assert_eq!(t.sink.lines.len(), 3);
        // Idle for rotate_wait: let go, its unterminated line complete.
        t.sync_at(0, t0 + wait / 2 + wait);
        assert_eq!(lines(&t)[3..], [&b"unterminated"[..]]);
        // Written after it was let go: no longer read.
        append(&old, b"\ntoo late\n");
        t.sync_at(0, t0 + 3 * wait);
        assert_eq!(t.sink.lines.len(), 4);
        assert_eq!(t.sink.rotations, vec![Rotation::Replaced]);
    }

    #[test]
    fn long_lines_are_counted_once_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, &[b'x'; 40]);
        t.sync_all();
        append(&p, &[b'y'; 40]);
        append(&p, b"\nshort\n");
        t.sync_all();
        assert_eq!(t.sink.lines.len(), 2);
        assert_eq!(t.sink.lines[0], (vec![b'x'; 16], true));
        assert_eq!(t.sink.lines[1], (b"short".to_vec(), false));
    }

    #[test]
    fn deleted_file_with_unterminated_line_flushes_it_once_idle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, b"");
        let mut t = Tailer::new(vec![p.clone()], opts(), Collect::default());
        t.start();
        append(&p, b"last words");
        std::fs::remove_file(&p).unwrap();
        t.sync_all();
        assert!(!t.exists(0));
        assert_eq!(lines(&t), vec![&b"last words"[..]]);
        append(&p, b"reborn\n");
        t.sync_all();
        assert!(t.exists(0));
        assert_eq!(lines(&t), vec![&b"last words"[..], b"reborn"]);
    }
}
