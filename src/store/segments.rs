//! The journal's own log for one machine: an append-only log of group commits in segment
//! files, each commit one `write` and one `fdatasync` (issue 20's design: the single-node
//! journal without sled's page cache, flusher thread and per-flush `sync_file_range`).
//!
//! Written by hand: the format is small, and what it must promise (a commit durable only
//! after its one `fdatasync`, a torn tail cut back to the last whole commit, ids that never
//! skip) is the journal's, not a general key-value store's. The write-ahead log crates bring
//! what the journal does not want: `okaywal`, the most complete, calls itself early in
//! development with an unstable file format, and runs its own checkpointing.
//!
//! # Files
//!
//! A directory of segments named by their first id, `{first_id:020}.seg`. Each is a run of
//! commits, one after the other:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic: `VKJ1` (the body as it is) or `VKJ2` (the body LZ4-compressed: its plain length, u32, then one LZ4 block) |
//! | 8 | first id of the commit (little-endian, as every number here) |
//! | 4 | number of records |
//! | 4 | length of the body as stored |
//! | 4 | CRC-32 (IEEE) of the header before it (from the first id on for `VKJ1`, from the magic for `VKJ2`) and the body as stored |
//! | n | the body (plain): per record, the time received (i64, ms since the epoch), a flags byte (bit 0: a dedup key follows), the 16-byte dedup key if any, the payload's length (u32) and the payload |
//!
//! A commit is written compressed when that saves an eighth or more, which for the journal's JSON
//! records it nearly always is; both kinds are read, so segments written before compression
//! read as they are.
//!
//! A commit's ids follow the previous commit's, across segments too; a segment starts with
//! the commit of its first id. A new segment is begun (and the directory synced) when the
//! active one would grow past [`LogOptions::segment_bytes`].
//!
//! # Recovery
//!
//! [`SegmentLog::open`] reads only the newest segment: every commit is checked (magic,
//! lengths, checksum, ids), and the first one that is not whole, a commit torn by a crash
//! during its write, is cut off with everything after it (the file truncated and synced).
//! What was synced before it is kept: no commit was acknowledged before its `fdatasync`, so
//! a torn commit was never acknowledged. Older segments were synced before the newest one was
//! made, so damage there is reported ([`LogError::Corrupt`]), never cut.
//!
//! # Bounds
//!
//! A commit's body, stored and plain, is at most [`MAX_BODY_BYTES`], a record's payload at most
//! [`MAX_PAYLOAD_BYTES`]; a length beyond them reads as damage. Memory is one sparse index
//! per segment read (an entry per [`INDEX_EVERY`] bytes), not the records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The magic at the start of every commit.
pub const MAGIC: [u8; 4] = *b"VKJ1";

/// The magic of a commit whose body is stored LZ4-compressed (the plain body's length, u32,
/// then the LZ4 block).
pub const MAGIC_LZ4: [u8; 4] = *b"VKJ2";

/// Bytes of a commit's header (magic, first id, count, body length, checksum).
pub const HEADER_BYTES: usize = 24;

/// Largest body of one commit.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Largest payload of one record.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A sparse index entry per this many bytes of a segment.
pub const INDEX_EVERY: u64 = 64 * 1024;

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be read, written or synced.
    #[error("journal log: {doing} {path}: {source}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file or directory.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A commit whose first id is not the next id: refused, nothing written.
    #[error("journal log: commit at id {first_id} refused: the next id is {next}")]
    Gap {
        /// The refused commit's first id.
        first_id: u64,
        /// The id the log expected.
        next: u64,
    },
    /// A commit too large for the format ([`MAX_BODY_BYTES`], [`MAX_PAYLOAD_BYTES`]).
    #[error("journal log: a commit of {0} bytes is too large")]
    TooLarge(usize),
    /// A synced part of the log is damaged (not a torn tail): nothing is cut.
    #[error("journal log: {path} at byte {offset}: {detail}")]
    Corrupt {
        /// The segment.
        path: String,
        /// Where.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
}

/// One record as the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its id.
    pub id: u64,
    /// When it was received (ms since the epoch).
    pub received_ms: i64,
    /// Its retransmission key, if any.
    pub dedup: Option<[u8; 16]>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A record to append (its id is the commit's).
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// When it was received (ms since the epoch).
    pub received_ms: i64,
    /// Its retransmission key, if any.
    pub dedup: Option<[u8; 16]>,
    /// The payload.
    pub payload: &'a [u8],
}

/// How the log is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A new segment is begun when a commit would take the active one past this size.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A segment no longer written to, as retention sees it ([`SegmentLog::sealed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Its first record's id (its name).
    pub first_id: u64,
    /// Its last record's id.
    pub last_id: u64,
    /// The newest time received among its last commits (ms since the epoch): records are
    /// appended as they are received, so nothing in it is much newer.
    pub newest_ms: i64,
    /// Its size.
    pub bytes: u64,
}

/// What [`SegmentLog::open`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes of a torn commit cut off the newest segment (0: it ended whole).
    pub cut_bytes: u64,
}

/// A segment: its first id, and its sparse index once read (id of a commit, its offset).
#[derive(Debug)]
struct Segment {
    first_id: u64,
    path: PathBuf,
    index: Option<Vec<(u64, u64)>>,
}

/// The log, open for appending and reading. One owner appends (the journal's committer);
/// readers beside it open their own ([`SegmentLog::open_read`]).
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    opts: LogOptions,
    /// Every segment by first id; the last is the active one.
    segments: BTreeMap<u64, Segment>,
    /// The active segment, open for appending (none while the log is empty).
    active: Option<File>,
    /// Its length.
    active_len: u64,
    /// The id the next commit takes.
    next_id: u64,
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError + use<> {
    let path = path.display().to_string();
    move |source| LogError::Io {
        doing,
        path,
        source,
    }
}

fn segment_name(first_id: u64) -> String {
    format!("{first_id:020}.seg")
}

/// A segment's first id from its file name.
fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Encodes one commit.
pub fn encode_commit(first_id: u64, entries: &[Entry<'_>]) -> Result<Vec<u8>, LogError> {
    let body_len: usize = entries
        .iter()
        .map(|e| 8 + 1 + if e.dedup.is_some() { 16 } else { 0 } + 4 + e.payload.len())
        .sum();
    if body_len > MAX_BODY_BYTES || entries.iter().any(|e| e.payload.len() > MAX_PAYLOAD_BYTES) {
        return Err(LogError::TooLarge(body_len));
    }
    let count = u32::try_from(entries.len()).map_err(|_| LogError::TooLarge(body_len))?;
    let mut body = Vec::with_capacity(body_len);
    for e in entries {
        body.extend_from_slice(&e.received_ms.to_le_bytes());
        match e.dedup {
            Some(k) => {
                body.push(1);
                body.extend_from_slice(&k);
            }
            None => body.push(0),
        }
        // Checked above: at most MAX_PAYLOAD_BYTES.
        body.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        body.extend_from_slice(e.payload);
    }
    // Compressed where that saves an eighth or more (a commit's records repeat their field
    // names and most of their values); the plain length first, as the reader bounds it.
    let packed = lz4_flex::block::compress_prepend_size(&body);
    let (magic, stored) = if packed.len() + packed.len() / 8 < body.len() {
        (MAGIC_LZ4, packed)
    } else {
        (MAGIC, body)
    };
    let stored_u32 = u32::try_from(stored.len()).map_err(|_| LogError::TooLarge(body_len))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + stored.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&first_id.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&stored_u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&stored);
    let crc = checksum(
        &out[checked_from(magic == MAGIC_LZ4)..20],
        &out[HEADER_BYTES..],
    );
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Where a commit's checksum begins in its header: past the magic for `VKJ1` (as it was
/// first written), at the magic for `VKJ2`, so a flipped magic never reads a body as the
/// other kind.
fn checked_from(lz4: bool) -> usize {
    if lz4 { 0 } else { 4 }
}

fn checksum(head: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    h.finalize()
}

/// A commit's header as read.
#[derive(Clone, Copy, Debug)]
struct Head {
    first_id: u64,
    count: u32,
    /// The body's length as stored.
    body_len: usize,
    crc: u32,
    /// The body is stored LZ4-compressed ([`MAGIC_LZ4`]).
    lz4: bool,
}

/// Why bytes are not a whole commit.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// The bytes end before the commit does.
    Short,
    /// They are not a commit.
    Damaged(String),
}

fn parse_head(b: &[u8; HEADER_BYTES]) -> Result<Head, Bad> {
    let lz4 = match [b[0], b[1], b[2], b[3]] {
        MAGIC => false,
        MAGIC_LZ4 => true,
        _ => return Err(Bad::Damaged("no commit begins here".into())),
    };
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[4..12]);
    let head = Head {
        first_id: u64::from_le_bytes(id),
        count: u32_at(12),
        body_len: u32_at(16) as usize,
        crc: u32_at(20),
        lz4,
    };
    if head.body_len > MAX_BODY_BYTES {
        return Err(Bad::Damaged(format!("a body of {} bytes", head.body_len)));
    }
    Ok(head)
}

/// The records of a commit's body (checked against its header).
fn parse_body(
    head: &Head,
    header: &[u8; HEADER_BYTES],
    body: &[u8],
) -> Result<Vec<LogRecord>, Bad> {
    if checksum(&header[checked_from(head.lz4)..20], body) != head.crc {
        return Err(Bad::Damaged("checksum mismatch".into()));
    }
    let plain;
    let body = if head.lz4 {
        let (len, packed) = body
            .split_first_chunk::<4>()
            .ok_or_else(|| Bad::Damaged("a compressed body without its length".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_BODY_BYTES {
            return Err(Bad::Damaged(format!("a body of {len} bytes")));
        }
        plain = lz4_flex::block::decompress(packed, len)
            .map_err(|e| Bad::Damaged(format!("a compressed body: {e}")))?;
        if plain.len() != len {
            return Err(Bad::Damaged("a compressed body of the wrong length".into()));
        }
        plain.as_slice()
    } else {
        body
    };
    let mut out = Vec::with_capacity((head.count as usize).min(body.len() / 13 + 1));
    let mut rest = body;
    let damaged = |what: &str| Bad::Damaged(format!("record {what}"));
    for i in 0..u64::from(head.count) {
        let (ms, r) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| damaged("time"))?;
        let (&flags, r) = r.split_first().ok_or_else(|| damaged("flags"))?;
        let (dedup, r) = if flags & 1 == 1 {
            let (k, r) = r
                .split_first_chunk::<16>()
                .ok_or_else(|| damaged("dedup key"))?;
            (Some(*k), r)
        } else {
            (None, r)
        };
        let (len, r) = r
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_PAYLOAD_BYTES || r.len() < len {
            return Err(damaged("payload"));
        }
        let (payload, r) = r.split_at(len);
        out.push(LogRecord {
            id: head.first_id + i,
            received_ms: i64::from_le_bytes(*ms),
            dedup,
            payload: payload.to_vec(),
        });
        rest = r;
    }
    if !rest.is_empty() {
        return Err(damaged("bytes after the last"));
    }
    Ok(out)
}

/// Reads the commit at the reader's position: `Ok(None)` at a clean end of file.
fn read_commit(f: &mut impl Read) -> Result<Option<(Head, Vec<LogRecord>)>, Bad> {
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        match f.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Bad::Damaged(format!("read: {e}"))),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_BYTES {
        return Err(Bad::Short);
    }
    let head = parse_head(&header)?;
    let mut body = vec![0u8; head.body_len];
    let mut got = 0;
    while got < body.len() {
        match f.read(&mut body[got..]) {
            Ok(0) => return Err(Bad::Short),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Bad::Damaged(format!("read: {e}"))),
        }
    }
    let records = parse_body(&head, &header, &body)?;
    Ok(Some((head, records)))
}

/// Syncs a directory (a new or removed segment's name made durable).
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

impl SegmentLog {
    /// Opens (or makes) the log in `dir`, reading only its newest segment and cutting a torn
    /// commit off its end.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(SegmentLog, Recovered), LogError> {
        std::fs::create_dir_all(dir).map_err(io("making", dir))?;
        let mut log = SegmentLog::open_read(dir, opts)?;
        let mut recovered = Recovered::default();
        let Some((&first_id, seg)) = log.segments.iter().next_back() else {
            log.next_id = 1;
            return Ok((log, recovered));
        };
        let path = seg.path.clone();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let len = f.metadata().map_err(io("reading", &path))?.len();
        let mut index = Vec::new();
        let mut offset = 0u64;
        let mut next = first_id;
        let mut last_indexed: Option<u64> = None;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, &mut f);
        loop {
            match read_commit(&mut reader) {
                Ok(None) => break,
                Ok(Some((head, records))) if head.first_id == next => {
                    if last_indexed.is_none_or(|at| offset >= at + INDEX_EVERY) {
                        index.push((head.first_id, offset));
                        last_indexed = Some(offset);
                    }
                    next += records.len() as u64;
                    offset += (HEADER_BYTES + head.body_len) as u64;
                }
                // A commit out of order, not whole, or damaged: the torn tail.
                Ok(Some(_)) | Err(_) => break,
            }
        }
        drop(reader);
        if offset < len {
            // Torn only if nothing whole follows: a commit after it means damage inside what
            // was synced, which is reported, never cut.
            let mut rest = Vec::new();
            f.seek(SeekFrom::Start(offset))
                .map_err(io("reading", &path))?;
            (&mut f)
                .take(len - offset)
                .read_to_end(&mut rest)
                .map_err(io("reading", &path))?;
            if let Some(at) = later_whole_commit(&rest, next) {
                return Err(LogError::Corrupt {
                    path: path.display().to_string(),
                    offset,
                    detail: format!(
                        "a damaged commit with a whole one after it (at byte {})",
                        offset + at as u64
                    ),
                });
            }
            f.set_len(offset)
                .map_err(io("cutting a torn commit off", &path))?;
            f.sync_data().map_err(io("syncing", &path))?;
            recovered.cut_bytes = len - offset;
            tracing::warn!(
                segment = %path.display(),
                kept_bytes = offset,
                cut_bytes = len - offset,
                "journal log: a commit torn by a crash was cut off (it was never acknowledged)"
            );
        }
        if next == first_id && log.segments.len() > 1 {
            // An empty newest segment (made, then a crash before its first commit): its ids
            // continue the one before, which is whole.
            tracing::debug!(segment = %path.display(), "journal log: newest segment empty");
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(io("opening", &path))?;
        if let Some(seg) = log.segments.get_mut(&first_id) {
            seg.index = Some(index);
        }
        log.active = Some(f);
        log.active_len = offset;
        log.next_id = next;
        Ok((log, recovered))
    }

    /// Opens the log in `dir` for reading only (the segments' names; no file is read yet).
    pub fn open_read(dir: &Path, opts: LogOptions) -> Result<SegmentLog, LogError> {
        let mut segments = BTreeMap::new();
        let listing = match std::fs::read_dir(dir) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("listing", dir)(e)),
        };
        for entry in listing.into_iter().flatten() {
            let entry = entry.map_err(io("listing", dir))?;
            let name = entry.file_name();
            if let Some(first_id) = name.to_str().and_then(segment_id) {
                segments.insert(
                    first_id,
                    Segment {
                        first_id,
                        path: entry.path(),
                        index: None,
                    },
                );
            }
        }
        Ok(SegmentLog {
            dir: dir.to_path_buf(),
            opts,
            segments,
            active: None,
            active_len: 0,
            next_id: 0,
        })
    }

    /// The id the next commit takes (1 for an empty log).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The segments' first ids, oldest first.
    pub fn segment_ids(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Appends one commit as ids `first_id..` and makes it durable (one write, one
    /// `fdatasync`), all or nothing. A failed write or sync is taken back (the file cut to
    /// where it was), so the records are not in the log and must not be acknowledged.
    pub fn append(&mut self, first_id: u64, entries: &[Entry<'_>]) -> Result<(), LogError> {
        if first_id != self.next_id {
            return Err(LogError::Gap {
                first_id,
                next: self.next_id,
            });
        }
        if entries.is_empty() {
            return Ok(());
        }
        let bytes = encode_commit(first_id, entries)?;
        let roll = self.active.is_none()
            || (self.active_len > 0
                && self.active_len + bytes.len() as u64 > self.opts.segment_bytes);
        if roll {
            self.begin_segment(first_id)?;
        }
        let path = self
            .segments
            .values()
            .next_back()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let Some(f) = self.active.as_mut() else {
            return Err(LogError::Io {
                doing: "appending to",
                path: path.display().to_string(),
                source: std::io::Error::other("no active segment"),
            });
        };
        let offset = self.active_len;
        let written = f
            .write_all(&bytes)
            .map_err(io("writing", &path))
            .and_then(|()| f.sync_data().map_err(io("syncing", &path)));
        if let Err(e) = written {
            // Not durable: taken back, so that a later commit's sync cannot make it so.
            let undo = f
                .set_len(offset)
                .and_then(|()| f.seek(SeekFrom::Start(offset)).map(|_| ()));
            if let Err(undo) = undo {
                tracing::error!(error = %undo, segment = %path.display(), "journal log: cannot take back a failed commit");
                // Whatever the file holds now, no later commit is appended to it.
                self.active = None;
            }
            return Err(e);
        }
        if let Some(seg) = self.segments.values_mut().next_back()
            && let Some(index) = seg.index.as_mut()
            && index
                .last()
                .is_none_or(|&(_, at)| offset >= at + INDEX_EVERY)
        {
            index.push((first_id, offset));
        }
        self.active_len = offset + bytes.len() as u64;
        self.next_id = first_id + entries.len() as u64;
        Ok(())
    }

    /// Begins a segment whose first id is `first_id` (its name synced in the directory).
    fn begin_segment(&mut self, first_id: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment_name(first_id));
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("making", &path))?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first_id,
            Segment {
                first_id,
                path,
                index: Some(Vec::new()),
            },
        );
        self.active = Some(f);
        self.active_len = 0;
        Ok(())
    }

    /// Up to `limit` records with an id greater than `after`, in id order.
    pub fn after(&mut self, after: u64, limit: usize) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        let want = after.saturating_add(1);
        // The segment holding `want`: the last whose first id is at most it.
        let start = self
            .segments
            .range(..=want)
            .next_back()
            .map(|(&id, _)| id)
            .or_else(|| self.segments.keys().next().copied());
        let Some(start) = start else {
            return Ok(out);
        };
        let ids: Vec<u64> = self.segments.range(start..).map(|(&id, _)| id).collect();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            let from = self.offset_for(id, want)?;
            let Some(seg) = self.segments.get(&id) else {
                continue;
            };
            let path = seg.path.clone();
            let first_id = seg.first_id;
            let mut f = File::open(&path).map_err(io("opening", &path))?;
            f.seek(SeekFrom::Start(from))
                .map_err(io("reading", &path))?;
            let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
            let mut offset = from;
            let mut expect: Option<u64> = (from == 0).then_some(first_id);
            loop {
                match read_commit(&mut r) {
                    Ok(None) => break,
                    Ok(Some((head, records))) => {
                        if expect.is_some_and(|e| e != head.first_id) {
                            return Err(LogError::Corrupt {
                                path: path.display().to_string(),
                                offset,
                                detail: format!(
                                    "commit of id {} where {} was due",
                                    head.first_id,
                                    expect.unwrap_or_default()
                                ),
                            });
                        }
                        expect = Some(head.first_id + records.len() as u64);
                        self.note(id, head.first_id, offset);
                        offset += (HEADER_BYTES + head.body_len) as u64;
                        for rec in records {
                            if rec.id >= want && out.len() < limit {
                                out.push(rec);
                            }
                        }
                        if out.len() >= limit {
                            break;
                        }
                    }
                    // The active segment may be mid-append (a reader beside the writer): its
                    // end is where this read stops.
                    Err(Bad::Short) if Some(&id) == self.segments.keys().next_back() => break,
                    Err(bad) => return Err(damage(&path, offset, bad)),
                }
            }
        }
        Ok(out)
    }

    /// Notes a commit read at `offset` of segment `id` in its index (past its last entry by
    /// [`INDEX_EVERY`]), so that a segment still growing is not read from its start again.
    fn note(&mut self, id: u64, first_id: u64, offset: u64) {
        if let Some(index) = self.segments.get_mut(&id).and_then(|s| s.index.as_mut())
            && index
                .last()
                .is_none_or(|&(_, at)| offset >= at + INDEX_EVERY)
        {
            index.push((first_id, offset));
        }
    }

    /// Reads segment `id` on from its last index entry, noting commits in the index (the
    /// part a writer appended since).
    fn extend_index(&mut self, id: u64) -> Result<(), LogError> {
        let Some(seg) = self.segments.get(&id) else {
            return Ok(());
        };
        let path = seg.path.clone();
        let (first, from) = seg
            .index
            .as_ref()
            .and_then(|i| i.last().copied())
            .unwrap_or((seg.first_id, 0));
        for (first_id, offset) in scan(&path, first, from)? {
            self.note(id, first_id, offset);
        }
        Ok(())
    }

    /// Lists the directory again for segments begun since (a reader beside the writer) and
    /// forgets those removed; what is known of the others is kept.
    pub fn refresh(&mut self) -> Result<(), LogError> {
        let fresh = SegmentLog::open_read(&self.dir, self.opts)?;
        self.segments
            .retain(|id, _| fresh.segments.contains_key(id));
        for (id, seg) in fresh.segments {
            self.segments.entry(id).or_insert(seg);
        }
        Ok(())
    }

    /// The first ids of the segments no longer written to (all but the newest), oldest
    /// first.
    pub fn sealed_ids(&self) -> Vec<u64> {
        let n = self.segments.len().saturating_sub(1);
        self.segments.keys().take(n).copied().collect()
    }

    /// The sealed segment beginning at `id`: its last id and the newest time received among
    /// its last commits (read from its last index entry on: at most [`INDEX_EVERY`] bytes
    /// and a commit, once its index is known). `None` for the newest segment, one not
    /// known, or an empty one.
    pub fn sealed(&mut self, id: u64) -> Result<Option<Sealed>, LogError> {
        if !self.sealed_ids().contains(&id) {
            return Ok(None);
        }
        let from = self.offset_for(id, u64::MAX)?;
        let Some(seg) = self.segments.get(&id) else {
            return Ok(None);
        };
        let path = seg.path.clone();
        let mut f = File::open(&path).map_err(io("opening", &path))?;
        let bytes = f.metadata().map_err(io("reading", &path))?.len();
        f.seek(SeekFrom::Start(from))
            .map_err(io("reading", &path))?;
        let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
        let mut offset = from;
        let mut last: Option<(u64, i64)> = None;
        loop {
            match read_commit(&mut r) {
                Ok(None) => break,
                Ok(Some((head, records))) => {
                    offset += (HEADER_BYTES + head.body_len) as u64;
                    for rec in records {
                        let newest =
                            last.map_or(rec.received_ms, |(_, ms)| ms.max(rec.received_ms));
                        last = Some((rec.id, newest));
                    }
                }
                Err(bad) => return Err(damage(&path, offset, bad)),
            }
        }
        Ok(last.map(|(last_id, newest_ms)| Sealed {
            first_id: id,
            last_id,
            newest_ms,
            bytes,
        }))
    }

    /// Removes the sealed segment beginning at `first_id` (its file, then the directory
    /// synced). The newest segment is never removed: false, as for one not known.
    pub fn remove(&mut self, first_id: u64) -> Result<bool, LogError> {
        if self.segments.keys().next_back() == Some(&first_id) {
            return Ok(false);
        }
        let Some(seg) = self.segments.remove(&first_id) else {
            return Ok(false);
        };
        match std::fs::remove_file(&seg.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let path = seg.path.clone();
                self.segments.insert(first_id, seg);
                return Err(io("removing", &path)(e));
            }
        }
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Forgets the segment beginning at `first_id` if another handle removed it (the
    /// newest is kept).
    pub fn forget(&mut self, first_id: u64) {
        if self.segments.keys().next_back() != Some(&first_id) {
            self.segments.remove(&first_id);
        }
    }

    /// Calls `f` with the records newest first, until it returns false (reading a stretch of
    /// [`INDEX_EVERY`] bytes at a time).
    pub fn rev(&mut self, mut f: impl FnMut(LogRecord) -> bool) -> Result<(), LogError> {
        let ids: Vec<u64> = self.segments.keys().rev().copied().collect();
        for id in ids {
            self.offset_for(id, 0)?;
            self.extend_index(id)?;
            let Some(seg) = self.segments.get(&id) else {
                continue;
            };
            let path = seg.path.clone();
            let index = seg.index.clone().unwrap_or_default();
            let mut f_file = File::open(&path).map_err(io("opening", &path))?;
            let end = f_file.metadata().map_err(io("reading", &path))?.len();
            // The stretches between index entries, the last one to the end of the file.
            let mut stops: Vec<u64> = index.iter().map(|&(_, o)| o).collect();
            if stops.first() != Some(&0) {
                stops.insert(0, 0);
            }
            for (i, &from) in stops.iter().enumerate().rev() {
                let to = stops.get(i + 1).copied().unwrap_or(end);
                f_file
                    .seek(SeekFrom::Start(from))
                    .map_err(io("reading", &path))?;
                let mut r = std::io::BufReader::new((&mut f_file).take(to.saturating_sub(from)));
                let mut stretch = Vec::new();
                let mut offset = from;
                loop {
                    match read_commit(&mut r) {
                        Ok(None) => break,
                        Ok(Some((head, records))) => {
                            offset += (HEADER_BYTES + head.body_len) as u64;
                            stretch.extend(records);
                        }
                        // The growing end of the newest segment.
                        Err(Bad::Short) if to == end => break,
                        Err(bad) => return Err(damage(&path, offset, bad)),
                    }
                }
                for rec in stretch.into_iter().rev() {
                    if !f(rec) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Where in segment `id` to start reading for records from `want` (its sparse index,
    /// read once).
    fn offset_for(&mut self, id: u64, want: u64) -> Result<u64, LogError> {
        let Some(seg) = self.segments.get(&id) else {
            return Ok(0);
        };
        if seg.index.is_none() {
            let index = index_of(&seg.path, seg.first_id)?;
            if let Some(seg) = self.segments.get_mut(&id) {
                seg.index = Some(index);
            }
        }
        Ok(self
            .segments
            .get(&id)
            .and_then(|s| s.index.as_ref())
            .and_then(|index| {
                let at = index.partition_point(|&(first, _)| first <= want);
                at.checked_sub(1)
                    .and_then(|i| index.get(i))
                    .map(|&(_, o)| o)
            })
            .unwrap_or(0))
    }
}

/// Where in `bytes` (past its first byte) a whole commit of an id from `next` on begins,
/// if anywhere.
fn later_whole_commit(bytes: &[u8], next: u64) -> Option<usize> {
    let mut from = 1;
    while let Some(i) = bytes.get(from..).and_then(|b| {
        b.windows(MAGIC.len())
            .position(|w| w == MAGIC || w == MAGIC_LZ4)
    }) {
        let at = from + i;
        let whole = bytes
            .get(at..at + HEADER_BYTES)
            .and_then(|h| <&[u8; HEADER_BYTES]>::try_from(h).ok())
            .and_then(|header| {
                let head = parse_head(header).ok()?;
                let body = bytes.get(at + HEADER_BYTES..at + HEADER_BYTES + head.body_len)?;
                (head.first_id >= next && parse_body(&head, header, body).is_ok()).then_some(())
            });
        if whole.is_some() {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The sparse index of a segment: the first id and offset of a commit per [`INDEX_EVERY`]
/// bytes (a torn tail ends it).
fn index_of(path: &Path, first_id: u64) -> Result<Vec<(u64, u64)>, LogError> {
    let mut index: Vec<(u64, u64)> = Vec::new();
    for (id, offset) in scan(path, first_id, 0)? {
        if index
            .last()
            .is_none_or(|&(_, at)| offset >= at + INDEX_EVERY)
        {
            index.push((id, offset));
        }
    }
    Ok(index)
}

/// The first id and offset of every whole commit of a segment from `from` on, the first of
/// them `first_id`, as far as they follow each other (a torn tail ends them).
fn scan(path: &Path, first_id: u64, from: u64) -> Result<Vec<(u64, u64)>, LogError> {
    let mut f = File::open(path).map_err(io("opening", path))?;
    f.seek(SeekFrom::Start(from)).map_err(io("reading", path))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
    let mut out = Vec::new();
    let (mut offset, mut next) = (from, first_id);
    while let Ok(Some((head, records))) = read_commit(&mut r) {
        if head.first_id != next {
            break;
        }
        out.push((head.first_id, offset));
        next += records.len() as u64;
        offset += (HEADER_BYTES + head.body_len) as u64;
    }
    Ok(out)
}

/// A commit found not whole where it must be, as an error.
fn damage(path: &Path, offset: u64, bad: Bad) -> LogError {
    LogError::Corrupt {
        path: path.display().to_string(),
        offset,
        detail: match bad {
            Bad::Short => "a commit ends early".into(),
            Bad::Damaged(detail) => detail,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
