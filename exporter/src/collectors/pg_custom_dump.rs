//! Reads a pg_dump custom-format archive (`pg_dump -Fc`) without
//! pg_restore: the header, every table-of-contents entry, and every data
//! block's framing to the end of the file. Serves the backup check on
//! hosts where pg_restore is not installed (the exporter's image has no
//! PostgreSQL client), so a dump cut short by a full disk or a killed
//! pg_dump is still caught.
//!
//! The layout is pg_dump's own (src/bin/pg_dump/pg_backup_archiver.c,
//! `ReadHead`/`ReadToc`, and pg_backup_custom.c): integers are a sign
//! byte and `intSize` little-endian bytes, strings a length (−1: null)
//! and bytes. Archive versions 1.12 (PostgreSQL 9.0) to 1.16 (17+) are
//! read; a newer version is reported as such, not judged. Compressed data
//! is not inflated: what is checked is that every entry the table of
//! contents says has data has a whole block, at its recorded offset when
//! pg_dump could record one.

use std::collections::HashSet;
use std::io::Read;

/// What reading the archive found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomDumpError {
    /// The file ends inside the header, the table of contents or a block,
    /// or before every entry's data.
    #[error("archive ends early: {0}")]
    Truncated(&'static str),
    /// Bytes that pg_dump does not write.
    #[error("archive is malformed: {0}")]
    Corrupt(&'static str),
    /// A format version newer than this reader knows.
    #[error("archive version 1.{0} is newer than this reader knows")]
    UnknownVersion(u8),
    /// The file could not be read.
    #[error("archive could not be read: {0}")]
    Io(std::io::ErrorKind),
}

/// What a whole archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The archive format's minor version (1.x).
    pub version: u8,
    pub toc_entries: usize,
    pub data_blocks: usize,
}

const MAGIC: &[u8] = b"PGDMP";
/// pg_backup.h's archCustom.
const FORMAT_CUSTOM: u8 = 1;
const OLDEST_MINOR: u8 = 12;
const NEWEST_MINOR: u8 = 16;
/// pg_backup_custom.c's block types.
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// pg_backup_archiver.h's offset flags.
const OFFSET_NOT_SET: u8 = 1;
const OFFSET_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;
/// Longest string accepted in a header or TOC entry: a view's or a
/// function's definition can be long, but not this long.
const MAX_STRING: u64 = 256 << 20;

/// A reader that counts its position and tells a clean end of file from
/// one inside a value.
struct Archive<R> {
    inner: R,
    position: u64,
    int_size: u8,
    off_size: u8,
}

impl<R: Read> Archive<R> {
    fn bytes(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), CustomDumpError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => CustomDumpError::Truncated(what),
            kind => CustomDumpError::Io(kind),
        })?;
        self.position += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, CustomDumpError> {
        let mut b = [0u8; 1];
        self.bytes(&mut b, what)?;
        Ok(b[0])
    }

    /// `None` at a clean end of file (before the first byte).
    fn byte_or_end(&mut self) -> Result<Option<u8>, CustomDumpError> {
        let mut b = [0u8; 1];
        loop {
            return match self.inner.read(&mut b) {
                Ok(0) => Ok(None),
                Ok(_) => {
                    self.position += 1;
                    Ok(Some(b[0]))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(CustomDumpError::Io(e.kind())),
            };
        }
    }

    /// `ReadInt`: a sign byte, then `intSize` bytes, least significant
    /// first.
    fn int(&mut self, what: &'static str) -> Result<i64, CustomDumpError> {
        let negative = self.byte(what)? != 0;
        let mut value: u64 = 0;
        for i in 0..self.int_size {
            let b = u64::from(self.byte(what)?);
            if i < 8 {
                value |= b << (8 * u32::from(i));
            } else if b != 0 {
                return Err(CustomDumpError::Corrupt("integer wider than 64 bits"));
            }
        }
        let value = i64::try_from(value).map_err(|_| CustomDumpError::Corrupt(what))?;
        Ok(if negative { -value } else { value })
    }

    /// `ReadStr`: `None` for pg_dump's null string (length −1).
    fn string(&mut self, what: &'static str) -> Result<Option<Vec<u8>>, CustomDumpError> {
        let len = self.int(what)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as u64;
        if len > MAX_STRING {
            return Err(CustomDumpError::Corrupt(what));
        }
        let mut s = vec![0u8; len as usize];
        self.bytes(&mut s, what)?;
        Ok(Some(s))
    }

    /// Skips `len` bytes by reading them (so every byte is read back).
    fn skip(&mut self, len: u64, what: &'static str) -> Result<(), CustomDumpError> {
        let copied = std::io::copy(&mut (&mut self.inner).take(len), &mut std::io::sink())
            .map_err(|e| CustomDumpError::Io(e.kind()))?;
        self.position += copied;
        if copied < len {
            return Err(CustomDumpError::Truncated(what));
        }
        Ok(())
    }

    /// `ReadOffset`: a flag byte, then `offSize` bytes.
    fn offset(&mut self) -> Result<(u8, u64), CustomDumpError> {
        let flag = self.byte("a data offset")?;
        if !matches!(flag, OFFSET_NOT_SET | OFFSET_SET | OFFSET_NO_DATA) {
            return Err(CustomDumpError::Corrupt("unknown data offset flag"));
        }
        let mut value = 0u64;
        for i in 0..self.off_size {
            let b = u64::from(self.byte("a data offset")?);
            if i < 8 {
                value |= b << (8 * u32::from(i));
            } else if b != 0 {
                return Err(CustomDumpError::Corrupt("offset wider than 64 bits"));
            }
        }
        Ok((flag, value))
    }
}

/// Reads a whole custom-format archive from its first byte.
pub fn check(reader: impl Read) -> Result<Summary, CustomDumpError> {
    let mut a = Archive {
        inner: reader,
        position: 0,
        int_size: 4,
        off_size: 8,
    };
    let mut magic = [0u8; 5];
    a.bytes(&mut magic, "the header")?;
    if magic != MAGIC {
        return Err(CustomDumpError::Corrupt("not a custom-format archive"));
    }
    let major = a.byte("the header")?;
    let minor = a.byte("the header")?;
    let _revision = a.byte("the header")?;
    if major != 1 || minor < OLDEST_MINOR {
        return Err(CustomDumpError::Corrupt("unsupported archive version"));
    }
    if minor > NEWEST_MINOR {
        return Err(CustomDumpError::UnknownVersion(minor));
    }
    a.int_size = a.byte("the header")?;
    a.off_size = a.byte("the header")?;
    if !(1..=32).contains(&a.int_size) || !(1..=32).contains(&a.off_size) {
        return Err(CustomDumpError::Corrupt(
            "integer or offset size out of range",
        ));
    }
    if a.byte("the header")? != FORMAT_CUSTOM {
        return Err(CustomDumpError::Corrupt("not the custom format"));
    }
    if minor >= 15 {
        // The compression algorithm: none, gzip, lz4, zstd.
        if a.byte("the header")? > 3 {
            return Err(CustomDumpError::Corrupt("unknown compression algorithm"));
        }
    } else {
        a.int("the header")?; // the compression level
    }
    for _ in 0..7 {
        a.int("the header")?; // the creation time, as struct tm fields
    }
    a.string("the header")?; // the database name
    a.string("the header")?; // the server's version
    a.string("the header")?; // pg_dump's version

    let entries = a.int("the table of contents")?;
    if entries < 0 {
        return Err(CustomDumpError::Corrupt("negative table of contents size"));
    }
    let toc = "the table of contents";
    // Entries whose data is in the file: dump id and offset when known.
    let mut with_data: Vec<(i64, Option<u64>)> = Vec::new();
    for _ in 0..entries {
        let dump_id = a.int(toc)?;
        if dump_id <= 0 {
            return Err(CustomDumpError::Corrupt("entry id out of range"));
        }
        a.int(toc)?; // hadDumper
        a.string(toc)?; // table oid
        a.string(toc)?; // oid
        a.string(toc)?; // tag
        a.string(toc)?; // desc
        a.int(toc)?; // section
        a.string(toc)?; // definition
        a.string(toc)?; // drop statement
        a.string(toc)?; // copy statement
        a.string(toc)?; // namespace
        a.string(toc)?; // tablespace
        if minor >= 14 {
            a.string(toc)?; // table access method
        }
        if minor >= 16 {
            a.int(toc)?; // relkind
        }
        a.string(toc)?; // owner
        a.string(toc)?; // "with oids"
                        // Dependencies, ended by a null string.
        let mut dependencies = 0u32;
        while a.string(toc)?.is_some() {
            dependencies += 1;
            if dependencies > 1_000_000 {
                return Err(CustomDumpError::Corrupt("too many dependencies"));
            }
        }
        match a.offset()? {
            (OFFSET_SET, at) => with_data.push((dump_id, Some(at))),
            (OFFSET_NOT_SET, _) => with_data.push((dump_id, None)),
            _ => {}
        }
    }

    // The data blocks, in any order, to the end of the file.
    let mut expected: HashSet<i64> = with_data.iter().map(|(id, _)| *id).collect();
    let offsets: std::collections::HashMap<i64, u64> = with_data
        .iter()
        .filter_map(|(id, at)| at.map(|at| (*id, at)))
        .collect();
    let mut blocks = 0usize;
    let block = "a data block";
    loop {
        let start = a.position;
        let Some(kind) = a.byte_or_end()? else { break };
        let id = a.int(block)?;
        if !expected.remove(&id) {
            return Err(CustomDumpError::Corrupt("a data block no entry expects"));
        }
        if offsets.get(&id).is_some_and(|&at| at != start) {
            return Err(CustomDumpError::Corrupt(
                "a data block away from its offset",
            ));
        }
        match kind {
            BLK_DATA => skip_chunks(&mut a)?,
            BLK_BLOBS => loop {
                // Large objects: an oid, its chunks; oid 0 ends them.
                if a.int(block)? == 0 {
                    break;
                }
                skip_chunks(&mut a)?;
            },
            _ => return Err(CustomDumpError::Corrupt("unknown block type")),
        }
        blocks += 1;
    }
    if !expected.is_empty() {
        return Err(CustomDumpError::Truncated(
            "entries' data missing at the end",
        ));
    }
    Ok(Summary {
        version: minor,
        toc_entries: entries as usize,
        data_blocks: blocks,
    })
}

/// A block's chunks: a length and that many bytes; length 0 ends them.
fn skip_chunks<R: Read>(a: &mut Archive<R>) -> Result<(), CustomDumpError> {
    loop {
        let len = a.int("a data block")?;
        if len == 0 {
            return Ok(());
        }
        if len < 0 {
            return Err(CustomDumpError::Corrupt("negative chunk length"));
        }
        a.skip(len as u64, "a data block")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real pg_dump 15 archives (stdout, so no offsets, and a file) and
    /// their mutations: never a panic.
    #[test]
    fn the_fuzz_corpus_and_its_mutations_never_panic() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pg_custom_dump");
        for seed in std::fs::read_dir(&corpus).unwrap() {
            let bytes = std::fs::read(seed.unwrap().path()).unwrap();
            assert!(check(&bytes[..]).is_ok(), "a real dump reads whole");
        }
        let ran =
            llmchat_tests::fuzz::run_corpus(&corpus, std::time::Duration::from_secs(3), |data| {
                let _ = check(data);
            });
        assert!(ran > 100, "{ran} inputs");
    }

    /// Writes an archive as pg_dump 15 does (version 1.14, 4-byte ints,
    /// 8-byte offsets): two entries with data, one without.
    fn archive(offsets: bool) -> Vec<u8> {
        fn int(out: &mut Vec<u8>, v: i64) {
            out.push(u8::from(v < 0));
            out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn string(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                None => int(out, -1),
                Some(s) => {
                    int(out, s.len() as i64);
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_CUSTOM]);
        int(&mut out, -1); // compression level
        for v in [1, 2, 3, 4, 5, 126, 0] {
            int(&mut out, v);
        }
        for s in ["llmchat", "15.8", "15.8"] {
            string(&mut out, Some(s));
        }
        int(&mut out, 3);
        // Offsets are filled in once the blocks are written, as pg_dump
        // rewrites its TOC; remember where each goes.
        let mut offset_at = Vec::new();
        for (id, data) in [(1, false), (2, true), (3, true)] {
            int(&mut out, id);
            int(&mut out, i64::from(data));
            for s in [Some("1259"), Some("16384"), Some("messages"), Some("TABLE")] {
                string(&mut out, s);
            }
            int(&mut out, 2);
            for s in [
                "CREATE TABLE m ();",
                "DROP TABLE m;",
                "",
                "public",
                "",
                "heap",
            ] {
                string(&mut out, Some(s));
            }
            string(&mut out, Some("postgres"));
            string(&mut out, Some("false"));
            string(&mut out, Some("1"));
            string(&mut out, None);
            out.push(if data { OFFSET_NOT_SET } else { OFFSET_NO_DATA });
            offset_at.push((data, out.len()));
            out.extend_from_slice(&[0; 8]);
        }
        let mut block_starts = Vec::new();
        block_starts.push(out.len());
        out.push(BLK_DATA);
        int(&mut out, 2);
        for chunk in [&b"hello"[..], &b"world!"[..]] {
            int(&mut out, chunk.len() as i64);
            out.extend_from_slice(chunk);
        }
        int(&mut out, 0);
        block_starts.push(out.len());
        out.push(BLK_BLOBS);
        int(&mut out, 3);
        int(&mut out, 16400); // a large object's oid
        int(&mut out, 3);
        out.extend_from_slice(b"abc");
        int(&mut out, 0);
        int(&mut out, 0); // no more large objects
        if offsets {
            let mut starts = block_starts.into_iter();
            for (data, at) in offset_at {
                if data {
                    out[at - 1] = OFFSET_SET;
                    let start = starts.next().unwrap() as u64;
                    out[at..at + 8].copy_from_slice(&start.to_le_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn a_whole_archive_is_read_to_its_end() {
        for offsets in [true, false] {
            let bytes = archive(offsets);
            assert_eq!(
                check(&bytes[..]),
                Ok(Summary {
                    version: 14,
                    toc_entries: 3,
                    data_blocks: 2
                })
            );
        }
    }

    #[test]
    fn every_cut_is_truncated() {
        for offsets in [true, false] {
            let bytes = archive(offsets);
            for cut in 0..bytes.len() {
                assert!(
                    matches!(check(&bytes[..cut]), Err(CustomDumpError::Truncated(_))),
                    "cut at {cut} of {} (offsets {offsets}): {:?}",
                    bytes.len(),
                    check(&bytes[..cut])
                );
            }
        }
    }

    #[test]
    fn wrong_bytes_are_corrupt_and_a_newer_version_is_not_judged() {
        let bytes = archive(true);
        let mut not_custom = bytes.clone();
        not_custom[10] = 3; // the tar format
        assert_eq!(
            check(&not_custom[..]),
            Err(CustomDumpError::Corrupt("not the custom format"))
        );
        let mut newer = bytes.clone();
        newer[6] = 17;
        assert_eq!(check(&newer[..]), Err(CustomDumpError::UnknownVersion(17)));
        // A TOC whose recorded offset misses its block by one byte.
        let mut shifted = bytes.clone();
        let blobs_at = (bytes.len() - 29) as u64;
        let at = bytes
            .windows(8)
            .position(|w| w == blobs_at.to_le_bytes())
            .unwrap();
        shifted[at] += 1;
        assert_eq!(
            check(&shifted[..]),
            Err(CustomDumpError::Corrupt(
                "a data block away from its offset"
            ))
        );
        // A huge string length inside the TOC is refused, not allocated.
        let mut huge = bytes;
        let definition = huge.windows(12).position(|w| w == b"CREATE TABLE").unwrap();
        huge[definition - 4..definition].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check(&huge[..]),
            Err(CustomDumpError::Corrupt("the table of contents"))
        );
    }
}
