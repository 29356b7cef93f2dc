//! The recording of a conversation: one WAV file per conversation (8 kHz, 16-bit, two
//! channels: 1 the person, 2 the operator), from answer to hang-up, written as it goes.
//!
//! # Files
//!
//! In the recordings folder ([`RecordingOptions::dir`], `recordings/` in the data directory,
//! made 0700), one file per conversation, made 0600 and named by its Call, its conversation and
//! its start time ([`RecordingId::file_name`]: `call-42_conv-1_20261206T210301Z.wav`). While
//! it is being written the name ends in `.wav.part`; a finished recording is renamed to
//! `.wav`, so a `.part` file at start is one a crash left, which [`recover`] repairs, renames
//! and reports. Retention (`super::retention`) judges a recording's age by the start time in
//! its name.
//!
//! # Alignment
//!
//! Both channels stay on one 8 kHz sample clock that starts at the answer: sample `n` of the
//! file is `n / 8000` seconds after it. A channel's packet goes where its RTP timestamp puts
//! it, relative to the stream's previous packet, as long as that agrees with its arrival
//! within [`MAX_SKEW`]; the first packet of a stream, a new SSRC, and a timestamp that jumps
//! (forward, or back further than a reordered packet could be) are placed by their arrival
//! and the stream goes on from there. So the other channel never moves, a channel without
//! packets (muted, lost, on hold) is silence, a late or repeated packet lands on its own
//! place (or is dropped when that part is written), and a timestamp jump writes no more than
//! the time that really passed: the file grows with the clock, never with a peer's numbers.
//! Samples are held back [`JITTER_DELAY`] for late packets, then written.
//!
//! # Durability and failures
//!
//! Each recording has its own writer thread (the number of calls is bounded by the SIP layer's
//! cap) fed by a bounded queue ([`RecordingOptions::queue_frames`]): [`Recorder::frame`] (or
//! a leg's [`Tap`]) never blocks, and a frame the writer has no room for is dropped (its
//! place stays silent) and counted. The writer wakes every 100 ms (not per frame: the frames
//! wait in the queue), takes what is queued, writes the samples due and, every
//! [`SYNC_EVERY`], the two sizes in the header, then `fdatasync`s: a kill -9 loses what was
//! held back (under half a second), a power cut at most about a second, and both leave a
//! playable file. A write that fails (the disk full) leaves a hole that reads as silence, is
//! counted and reported ([`Recorder::status`], [`Finished`]), and the writer goes on; nothing
//! here ends a call.
//!
//! # Use
//!
//! At start, before any call: [`recover`] on [`RecordingOptions::dir`] (blocking), and the
//! conversations it reports marked ended; `super::retention::run` as a task. At the answer:
//! [`Recorder::start`] with the [`RecordingId`] (Call, conversation, the answer's
//! timestamp) and the answer's `Instant`; an error is logged on the Call and the call goes
//! on. Each leg's task gets a [`Tap`] and hands it every G.711 payload as a [`Packet`]:
//! [`Channel::Person`] what came from the person, [`Channel::Operator`] what was sent to
//! them (the operator's voice, the hold tone). At hang-up: [`Recorder::finish`] with the
//! hang-up's `Instant`; the [`Finished`] (its `file_name`, duration, failures) goes on the
//! Call's timeline. For playback: [`open_name`] with that file name (or [`open`] by Call and
//! conversation, [`list`] for a Call's recordings), then stream [`Playback::len`] bytes of
//! [`Playback::file`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use vakt_proto::g711::Law;

use super::wav;
use crate::telemetry::RecordingMetrics;

/// The recordings' folder in the data directory.
pub const FOLDER: &str = "recordings";
/// Days a recording is kept by default: six months, as Tunstall's Örebro centre keeps them.
pub const DEFAULT_RETENTION_DAYS: u32 = 183;
/// Frames a writer may have queued by default (both channels; 20 ms frames: 2.5 s).
pub const DEFAULT_QUEUE_FRAMES: usize = 256;
/// How long samples are held back for late packets before they are written.
pub const JITTER_DELAY: Duration = Duration::from_millis(200);
/// How often the header's sizes are rewritten and the file `fdatasync`ed.
pub const SYNC_EVERY: Duration = Duration::from_millis(700);
/// The most samples one frame may carry (200 ms); a larger one is dropped.
pub const MAX_FRAME_SAMPLES: usize = 1_600;
/// How far (in samples: 1 s) a stream's RTP clock may stray from its packets' arrival before
/// the stream is placed by arrival again.
pub const MAX_SKEW: i64 = 8_000;
/// How far back (in samples: 1 s) a timestamp may go and still be a late or repeated packet
/// of its stream rather than a jump.
const MAX_REORDER: i64 = 8_000;
/// The most samples held in memory per recording (3 s); a packet placed further ahead first
/// has what lies before it written.
const MAX_PENDING: u64 = 24_000;
/// The most samples handed to the disk in one write (1 s).
const CHUNK: u64 = 8_000;
/// How often the writer writes what is due.
const TICK: Duration = Duration::from_millis(100);
/// Extensions of a finished recording and of one being written.
const WAV: &str = ".wav";
const PART: &str = ".wav.part";

/// The recordings' options (wired into `[voice]` by the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingOptions {
    /// The recordings' folder (`recordings/` in the data directory), made 0700.
    pub dir: PathBuf,
    /// Days a recording is kept, judged by its start time (default
    /// [`DEFAULT_RETENTION_DAYS`]; at least 1).
    pub retention_days: u32,
    /// Frames (of both channels) a recording's writer may have queued; beyond, frames are
    /// dropped and counted (default [`DEFAULT_QUEUE_FRAMES`]).
    pub queue_frames: usize,
    /// Where a recording past its retention is copied, gzip-compressed, before it is
    /// deleted ([`super::retention`]); `None`: not archived.
    pub archive_dir: Option<PathBuf>,
}

impl RecordingOptions {
    /// The defaults, with the folder in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> RecordingOptions {
        RecordingOptions {
            dir: data_dir.join(FOLDER),
            retention_days: DEFAULT_RETENTION_DAYS,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            archive_dir: None,
        }
    }

    /// The retention as a duration (days of 24 hours).
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// Which recording: the Call, the conversation (a leg's id within its Call) and the start
/// time (the answer, to the second), all in the file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId {
    call: u64,
    conversation: u64,
    started: Timestamp,
}

impl RecordingId {
    /// The id of conversation `conversation` of Call `call`, answered at `started` (kept to
    /// the second, as the name keeps it).
    pub fn new(call: u64, conversation: u64, started: Timestamp) -> RecordingId {
        let started = Timestamp::from_second(started.as_second()).unwrap_or(started);
        RecordingId {
            call,
            conversation,
            started,
        }
    }

    /// The Call.
    pub fn call(&self) -> u64 {
        self.call
    }

    /// The conversation.
    pub fn conversation(&self) -> u64 {
        self.conversation
    }

    /// The start (the answer), to the second.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// The finished recording's file name: `call-42_conv-1_20261206T210301Z.wav`.
    pub fn file_name(&self) -> String {
        format!("{}{WAV}", self.stem())
    }

    /// The name while it is being written (`.wav.part`).
    pub fn part_name(&self) -> String {
        format!("{}{PART}", self.stem())
    }

    fn stem(&self) -> String {
        format!(
            "{}{}",
            self.prefix(),
            self.started.strftime("%Y%m%dT%H%M%SZ")
        )
    }

    /// What the names of this conversation's recordings start with.
    fn prefix(&self) -> String {
        prefix(self.call, self.conversation)
    }

    /// The id in a file name, and whether the name is of a recording being written (or left
    /// by a crash: `.wav.part`). `None` for any other name.
    pub fn parse_file_name(name: &str) -> Option<(RecordingId, bool)> {
        let (stem, part) = if let Some(s) = name.strip_suffix(PART) {
            (s, true)
        } else {
            (name.strip_suffix(WAV)?, false)
        };
        let rest = stem.strip_prefix("call-")?;
        let (call, rest) = rest.split_once("_conv-")?;
        let (conversation, start) = rest.split_once('_')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(call) || !digits(conversation) {
            return None;
        }
        let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", start).ok()?;
        let started = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        let id = RecordingId::new(call.parse().ok()?, conversation.parse().ok()?, started);
        // Only the one spelling vakt writes (no leading zeros, no other digits).
        let canonical = if part { id.part_name() } else { id.file_name() };
        (canonical == name).then_some((id, part))
    }
}

fn prefix(call: u64, conversation: u64) -> String {
    format!("call-{call}_conv-{conversation}_")
}

/// The two channels of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Channel 1: the person (the far end: the alarm unit, a relative's phone).
    Person,
    /// Channel 2: the operator (what the person hears, the hold tone included).
    Operator,
}

impl Channel {
    /// The index of the channel in a sample frame (0 or 1).
    pub fn index(self) -> usize {
        match self {
            Channel::Person => 0,
            Channel::Operator => 1,
        }
    }
}

/// One G.711 RTP payload of a channel, as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The payload's law (from its payload type).
    pub law: Law,
    /// The RTP stream's SSRC (a new one starts a new stream).
    pub ssrc: u32,
    /// The RTP timestamp of the first sample.
    pub timestamp: u32,
    /// The G.711 bytes, one per sample (at most [`MAX_FRAME_SAMPLES`]).
    pub payload: &'a [u8],
    /// When it arrived (or, for audio vakt sends, when it was sent).
    pub arrival: Instant,
}

/// What went wrong while recording (the label of `vakt_recording_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The file could not be made.
    Create,
    /// Writing samples failed (the disk full, an I/O error): they read as silence.
    Write,
    /// Rewriting the header or `fdatasync` failed.
    Sync,
    /// A frame was dropped: the writer was behind.
    QueueFull,
    /// Audio beyond the WAV size limit (about 37 hours) was dropped.
    TooLong,
    /// Finishing (the last sync, the rename) failed; [`recover`] repairs the file at the next
    /// start.
    Finish,
}

impl Failure {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Create => "create",
            Failure::Write => "write",
            Failure::Sync => "sync",
            Failure::QueueFull => "queue_full",
            Failure::TooLong => "too_long",
            Failure::Finish => "finish",
        }
    }
}

/// Why a recording could not be made, found or opened.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Storage (vakt's): the folder or a file could not be made, read, written or renamed.
    #[error("recording storage: {op} {path}: {source}")]
    Storage {
        /// What was done.
        op: &'static str,
        /// On which file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The caller's: no such recording.
    #[error("no recording of call {call}, conversation {conversation}")]
    NotFound {
        /// The Call asked for.
        call: u64,
        /// The conversation asked for.
        conversation: u64,
    },
    /// The caller's: the name is not a recording's, or the file is not a plain file in the
    /// recordings' folder.
    #[error("not a recording")]
    NotARecording,
    /// Internal: the writer thread could not start or stopped without an answer.
    #[error("the recording's writer stopped: {0}")]
    Writer(String),
}

fn storage<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecordError + 'a {
    move |source| RecordError::Storage {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A recording's state, as its writer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordingStatus {
    /// Audio bytes in the file (after the header).
    pub bytes_written: u64,
    /// Audio bytes the header covers and `fdatasync` made durable.
    pub bytes_durable: u64,
    /// Frames dropped (the writer behind, or a frame too large).
    pub frames_dropped: u64,
    /// Failures counted (every kind).
    pub failures: u64,
    /// The latest failure.
    pub last_failure: Option<Failure>,
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Which.
    pub id: RecordingId,
    /// Its file name in the recordings' folder.
    pub file_name: String,
    /// Its length (from answer to hang-up).
    pub duration: Duration,
    /// Audio bytes in the file.
    pub bytes: u64,
    /// Frames dropped (the writer behind, or too large).
    pub frames_dropped: u64,
    /// Packets that came after their place was written.
    pub late_packets: u64,
    /// Times a stream was placed by arrival again (new SSRC, timestamp jump).
    pub jumps: u64,
    /// Failures counted while recording.
    pub failures: u64,
}

/// What the writer shares with the [`Recorder`].
#[derive(Default)]
struct Shared {
    bytes_written: AtomicU64,
    bytes_durable: AtomicU64,
    frames_dropped: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
    hangup: Mutex<Option<Instant>>,
    /// Set at the hang-up (after `hangup`): the writer ends whoever still holds a [`Tap`].
    ending: AtomicBool,
    /// The writer's thread, woken at the hang-up (otherwise it wakes on its tick).
    writer: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    /// The hang-up at `at` (the first one counts).
    fn hang_up(&self, at: Instant) {
        if let Ok(mut h) = self.hangup.lock() {
            h.get_or_insert(at);
        }
        self.ending.store(true, Ordering::Release);
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    fn status(&self) -> RecordingStatus {
        RecordingStatus {
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            bytes_durable: self.bytes_durable.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().ok().and_then(|l| *l),
        }
    }

    fn fail(&self, metrics: &RecordingMetrics, failure: Failure) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics.failure(failure.as_str());
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(failure);
        }
    }
}

/// A frame on its way to the writer.
struct Frame {
    channel: Channel,
    law: Law,
    ssrc: u32,
    timestamp: u32,
    arrival: Instant,
    payload: Vec<u8>,
}

/// The handle of one conversation's recording. Frames go in with [`Recorder::frame`], or
/// through a [`Tap`] per leg (never blocking); [`Recorder::finish`] at hang-up. Dropped
/// without `finish`, the recording is finished at the moment of the drop.
pub struct Recorder {
    id: RecordingId,
    tap: Tap,
    done: Option<tokio::sync::oneshot::Receiver<Result<Finished, RecordError>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("id", &self.id).finish()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.tap.shared.hang_up(Instant::now());
    }
}

/// Feeds one recording's frames (a clone for each leg's task); it does not keep the
/// recording open: after the hang-up its frames are refused.
#[derive(Clone)]
pub struct Tap {
    tx: mpsc::SyncSender<Frame>,
    shared: Arc<Shared>,
    metrics: RecordingMetrics,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl Tap {
    /// Hands a channel's frame to the writer; never blocks. Returns whether it was taken:
    /// a frame the writer has no room for, an empty one or one of more than
    /// [`MAX_FRAME_SAMPLES`] is dropped and counted (its place stays silent), and after the
    /// hang-up none is taken.
    pub fn frame(&self, channel: Channel, packet: &Packet<'_>) -> bool {
        if self.shared.ending.load(Ordering::Acquire) {
            return false;
        }
        if packet.payload.is_empty() || packet.payload.len() > MAX_FRAME_SAMPLES {
            self.shared.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let frame = Frame {
            channel,
            law: packet.law,
            ssrc: packet.ssrc,
            timestamp: packet.timestamp,
            arrival: packet.arrival,
            payload: packet.payload.to_vec(),
        };
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(_)) => {
                self.shared.frames_dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.fail(&self.metrics, Failure::QueueFull);
                false
            }
            // The writer has ended: nothing to record into.
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        }
    }

    /// The recording's state now (as [`Recorder::status`]).
    pub fn status(&self) -> RecordingStatus {
        self.shared.status()
    }
}

/// The file operations of the writer (a seam for tests that fill the disk).
trait Disk: Send {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
}

impl Disk for File {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

type WrapDisk = fn(File) -> Box<dyn Disk>;

impl Recorder {
    /// Starts recording conversation `id`, answered at `answered` (sample 0 of the file):
    /// makes the folder and the file (with its header, durable) on the recording's own writer
    /// thread, and returns once they exist. An error is counted (`create`) and leaves the
    /// call as it is.
    pub async fn start(
        options: &RecordingOptions,
        id: RecordingId,
        answered: Instant,
        metrics: &RecordingMetrics,
    ) -> Result<Recorder, RecordError> {
        Self::start_with(options, id, answered, metrics, |f| Box::new(f)).await
    }

    async fn start_with(
        options: &RecordingOptions,
        id: RecordingId,
        answered: Instant,
        metrics: &RecordingMetrics,
        wrap: WrapDisk,
    ) -> Result<Recorder, RecordError> {
        let queue = options.queue_frames.max(1);
        let (tx, rx) = mpsc::sync_channel(queue);
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared::default());
        let dir = options.dir.clone();
        let thread_shared = shared.clone();
        let thread_metrics = metrics.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vakt-rec-{}", id.call))
            // It decodes and writes: a small stack, as there is one per conversation.
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = thread_shared.writer.set(std::thread::current());
                let writer = match create(&dir, &id) {
                    Ok(file) => {
                        let _ = created_tx.send(Ok(()));
                        Writer::new(dir, id, wrap(file), answered, thread_shared, thread_metrics)
                    }
                    Err(e) => {
                        thread_shared.fail(&thread_metrics, Failure::Create);
                        let _ = created_tx.send(Err(e));
                        return;
                    }
                };
                let _ = done_tx.send(writer.run(rx, queue));
            });
        if let Err(e) = spawned {
            shared.fail(metrics, Failure::Create);
            return Err(RecordError::Writer(e.to_string()));
        }
        match created_rx.await {
            Ok(Ok(())) => Ok(Recorder {
                id,
                tap: Tap {
                    tx,
                    shared,
                    metrics: metrics.clone(),
                },
                done: Some(done),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RecordError::Writer("ended before the file was made".into())),
        }
    }

    /// The recording's id.
    pub fn id(&self) -> RecordingId {
        self.id
    }

    /// A handle that feeds this recording, for a leg's task.
    pub fn tap(&self) -> Tap {
        self.tap.clone()
    }

    /// Hands a channel's frame to the writer ([`Tap::frame`]); never blocks.
    pub fn frame(&self, channel: Channel, packet: &Packet<'_>) -> bool {
        self.tap.frame(channel, packet)
    }

    /// The recording's state now: bytes written and durable, drops and failures.
    pub fn status(&self) -> RecordingStatus {
        self.tap.shared.status()
    }

    /// Ends the recording at `hangup`: the frames queued before it and the samples held
    /// back are written, silence up to the hang-up, the header's sizes, `fdatasync`, and the
    /// file is renamed to its finished name. Taps still held get no more frames in. Waits
    /// for the writer without blocking the runtime.
    pub async fn finish(mut self, hangup: Instant) -> Result<Finished, RecordError> {
        self.tap.shared.hang_up(hangup);
        let done = self.done.take();
        drop(self);
        match done {
            Some(done) => done
                .await
                .map_err(|_| RecordError::Writer("ended without an answer".into()))?,
            None => Err(RecordError::Writer("finished already".into())),
        }
    }
}

/// Makes the folder (0700) and the recording's file (0600, with its header, durable).
fn create(dir: &Path, id: &RecordingId) -> Result<File, RecordError> {
    ensure_dir(dir)?;
    let path = dir.join(id.part_name());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(storage("create", &path))?;
    file.write_all_at(&wav::header(0), 0)
        .and_then(|()| file.sync_data())
        .map_err(storage("write the header of", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes the recordings' folder if it is missing (0700).
fn ensure_dir(dir: &Path) -> Result<(), RecordError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(storage("use as the recordings' folder", dir)(
            io::Error::new(io::ErrorKind::AlreadyExists, "not a folder"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(storage("create", dir))?;
            // The mode is masked by the umask; make sure.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(storage("set the mode of", dir))
        }
        Err(e) => Err(storage("look at", dir)(e)),
    }
}

/// Makes the folder's entries (a new file, a rename) durable.
fn sync_dir(dir: &Path) -> Result<(), RecordError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage("sync", dir))
}

/// The writer thread's state: the mixer, the file and what has reached it.
struct Writer {
    dir: PathBuf,
    id: RecordingId,
    disk: Box<dyn Disk>,
    mixer: Mixer,
    /// Audio bytes handed to the file so far (where the next write goes).
    cursor: u64,
    /// Audio bytes the file holds: the end of the last successful write.
    len: u64,
    /// Audio bytes covered by the last successful sync.
    synced: u64,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    metrics: RecordingMetrics,
    /// Failures already logged (each kind once per recording).
    logged: Vec<Failure>,
}

impl Writer {
    fn new(
        dir: PathBuf,
        id: RecordingId,
        disk: Box<dyn Disk>,
        answered: Instant,
        shared: Arc<Shared>,
        metrics: RecordingMetrics,
    ) -> Writer {
        metrics.active.increment(1.0);
        Writer {
            dir,
            id,
            disk,
            mixer: Mixer::new(answered),
            cursor: 0,
            len: 0,
            synced: 0,
            buf: Vec::with_capacity(CHUNK as usize * 4),
            shared,
            metrics,
            logged: Vec::new(),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Frame>, queue: usize) -> Result<Finished, RecordError> {
        let mut next_write = Instant::now() + TICK;
        let mut next_sync = Instant::now() + SYNC_EVERY;
        loop {
            // The frames wait in the queue until the tick (or the hang-up): the writer wakes
            // ten times a second, not once per frame.
            let ending = self.shared.ending.load(Ordering::Acquire);
            let now = Instant::now();
            if !ending && now < next_write {
                std::thread::park_timeout(next_write - now);
                continue;
            }
            // What is queued (at most a queue's worth, whatever a tap still sends).
            let mut gone = false;
            for _ in 0..queue {
                match rx.try_recv() {
                    Ok(frame) => self.push(&frame),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if ending || gone {
                break;
            }
            let now = Instant::now();
            self.advance(self.mixer.due(now));
            next_write = now + TICK;
            if now >= next_sync {
                self.sync();
                next_sync = now + SYNC_EVERY;
            }
        }
        let hangup = self
            .shared
            .hangup
            .lock()
            .ok()
            .and_then(|h| *h)
            .unwrap_or_else(Instant::now);
        self.finish(hangup)
    }

    fn push(&mut self, f: &Frame) {
        let frame = (f.channel, f.law, f.ssrc, f.timestamp, f.arrival);
        if let Err(NeedRoom(upto)) = self.mixer.push(frame, &f.payload) {
            self.advance(upto);
            // There is room now.
            let _ = self.mixer.push(frame, &f.payload);
        }
    }

    /// Writes everything up to sample `upto`, a chunk at a time.
    fn advance(&mut self, upto: u64) {
        while self.mixer.emit(upto, CHUNK, &mut self.buf) {
            self.write_out();
        }
        self.write_out();
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let room = wav::MAX_DATA_BYTES.saturating_sub(self.cursor);
        let n = (self.buf.len() as u64).min(room);
        if n < self.buf.len() as u64 && !self.logged.contains(&Failure::TooLong) {
            // Counted once: every later write would be cut as well.
            self.fail(Failure::TooLong, None);
        }
        if n > 0 {
            let at = wav::HEADER_BYTES + self.cursor;
            match self.disk.write_at(&self.buf[..n as usize], at) {
                Ok(()) => {
                    self.len = self.len.max(self.cursor + n);
                    self.metrics.bytes.increment(n);
                    self.shared.bytes_written.store(self.len, Ordering::Relaxed);
                }
                Err(e) => self.fail(Failure::Write, Some(e)),
            }
        }
        // A failed write leaves a hole (silence) and the next goes after it: the clock holds.
        self.cursor += n;
        self.buf.clear();
    }

    /// Rewrites the header's sizes for what the file holds and `fdatasync`s.
    fn sync(&mut self) {
        if self.len == self.synced {
            return;
        }
        let (riff, data) = wav::sizes(self.len);
        let result = self
            .disk
            .write_at(&riff, wav::RIFF_SIZE_AT)
            .and_then(|()| self.disk.write_at(&data, wav::DATA_SIZE_AT))
            .and_then(|()| self.disk.sync());
        match result {
            Ok(()) => {
                self.synced = self.len;
                self.shared.bytes_durable.store(self.len, Ordering::Relaxed);
            }
            Err(e) => self.fail(Failure::Sync, Some(e)),
        }
    }

    fn fail(&mut self, failure: Failure, error: Option<io::Error>) {
        self.shared.fail(&self.metrics, failure);
        if !self.logged.contains(&failure) {
            self.logged.push(failure);
            tracing::warn!(
                call = self.id.call,
                conversation = self.id.conversation,
                failure = failure.as_str(),
                error = ?error,
                "recording failure; the call goes on"
            );
        }
    }

    fn finish(mut self, hangup: Instant) -> Result<Finished, RecordError> {
        let end = self.mixer.end(hangup);
        self.advance(end);
        self.sync();
        let part = self.dir.join(self.id.part_name());
        let done = self.dir.join(self.id.file_name());
        let renamed = if self.len == self.synced {
            std::fs::rename(&part, &done)
                .map_err(storage("rename", &part))
                .and_then(|()| sync_dir(&self.dir))
        } else {
            Err(RecordError::Storage {
                op: "make durable",
                path: part,
                source: io::Error::other("the last sync failed"),
            })
        };
        if renamed.is_err() {
            self.fail(Failure::Finish, None);
        }
        renamed?;
        Ok(Finished {
            id: self.id,
            file_name: self.id.file_name(),
            duration: Duration::from_secs_f64(self.len as f64 / f64::from(wav::BYTES_PER_SECOND)),
            bytes: self.len,
            frames_dropped: self.shared.frames_dropped.load(Ordering::Relaxed),
            late_packets: self.mixer.late,
            jumps: self.mixer.jumps,
            failures: self.shared.failures.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.metrics.active.decrement(1.0);
    }
}

/// Where the last packet of a stream went.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    timestamp: u32,
    at: i64,
}

/// A packet placed further ahead than the memory bound allows: write up to this sample first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NeedRoom(u64);

/// The two channels on one sample clock (pure: the times are parameters). Samples from
/// `written` on are held in `pending` until they are due.
struct Mixer {
    start: Instant,
    written: u64,
    pending: VecDeque<[i16; 2]>,
    lanes: [Option<Anchor>; 2],
    late: u64,
    jumps: u64,
}

impl Mixer {
    fn new(start: Instant) -> Mixer {
        Mixer {
            start,
            written: 0,
            pending: VecDeque::new(),
            lanes: [None; 2],
            late: 0,
            jumps: 0,
        }
    }

    /// The sample at `t` (0 before the start).
    fn sample_at(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        d.as_secs() * 8_000 + u64::from(d.subsec_nanos()) * 8_000 / 1_000_000_000
    }

    /// Where a stream's packet goes (see the module doc).
    fn place(&mut self, channel: Channel, ssrc: u32, timestamp: u32, arrival: i64) -> i64 {
        let lane = channel.index();
        match self.lanes[lane] {
            Some(a) if a.ssrc == ssrc => {
                let d = i64::from(timestamp.wrapping_sub(a.timestamp) as i32);
                let at = a.at + d;
                if d > 0 && (at - arrival).abs() <= MAX_SKEW {
                    self.lanes[lane] = Some(Anchor {
                        ssrc,
                        timestamp,
                        at,
                    });
                    return at;
                }
                if (-MAX_REORDER..=0).contains(&d) {
                    // A repeated or reordered packet: its own place; the stream goes on.
                    return at;
                }
                self.jumps += 1;
            }
            Some(_) => self.jumps += 1,
            None => {}
        }
        self.lanes[lane] = Some(Anchor {
            ssrc,
            timestamp,
            at: arrival,
        });
        arrival
    }

    /// Places a packet. `Err(NeedRoom(n))` when it lies beyond the memory bound: write up to
    /// sample `n`, then push it again.
    fn push(
        &mut self,
        (channel, law, ssrc, timestamp, arrival): (Channel, Law, u32, u32, Instant),
        payload: &[u8],
    ) -> Result<(), NeedRoom> {
        let arrival = i64::try_from(self.sample_at(arrival)).unwrap_or(i64::MAX / 2);
        let at = self.place(channel, ssrc, timestamp, arrival);
        let end = at.saturating_add(payload.len() as i64);
        let written = i64::try_from(self.written).unwrap_or(i64::MAX);
        if end <= written {
            self.late += 1;
            return Ok(());
        }
        // `end > written >= 0`.
        let end = end as u64;
        if end - self.written > MAX_PENDING {
            return Err(NeedRoom(end - MAX_PENDING));
        }
        let needed = (end - self.written) as usize;
        if self.pending.len() < needed {
            self.pending.resize(needed, [0, 0]);
        }
        let skip = (written - at).max(0) as usize;
        let first = (at.max(written) - written) as usize;
        let c = channel.index();
        for (slot, &code) in self
            .pending
            .range_mut(first..)
            .zip(payload.iter().skip(skip))
        {
            slot[c] = law.decode(code);
        }
        Ok(())
    }

    /// The sample up to which audio is due at `now` (held back [`JITTER_DELAY`]).
    fn due(&self, now: Instant) -> u64 {
        let delay = JITTER_DELAY.as_millis() as u64 * 8;
        self.sample_at(now).saturating_sub(delay)
    }

    /// The last sample of a recording hung up at `hangup`: the hang-up, or the end of the
    /// audio already placed if that is later.
    fn end(&self, hangup: Instant) -> u64 {
        self.sample_at(hangup)
            .max(self.written + self.pending.len() as u64)
    }

    /// Appends the samples from `written` up to `upto` (at most `max` of them) to `out` as
    /// little-endian interleaved pairs, silence where nothing was placed. Returns whether
    /// more remain before `upto`.
    fn emit(&mut self, upto: u64, max: u64, out: &mut Vec<u8>) -> bool {
        let n = upto.saturating_sub(self.written).min(max);
        out.reserve(n as usize * 4);
        for _ in 0..n {
            let [a, b] = self.pending.pop_front().unwrap_or([0, 0]);
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        self.written += n;
        self.written < upto
    }
}

/// A recording a crash left (a `.wav.part` file), repaired by [`recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Which conversation.
    pub id: RecordingId,
    /// Its file name now (finished: `.wav`).
    pub file_name: String,
    /// Audio bytes kept (whole sample frames).
    pub bytes: u64,
    /// The audio's length.
    pub duration: Duration,
    /// Whether the header's sizes or the file's length had to change.
    pub repaired: bool,
}

/// Repairs the recordings a crash left in `dir` and reports which conversations they were:
/// each `.wav.part` file gets the sizes of the whole sample frames it holds (from its
/// length; a partly written frame at the end is cut off, a torn header rewritten), is made
/// durable and renamed to its finished name. Blocking; call at start, before any
/// [`Recorder`]. A file it cannot repair is logged and left for the next start.
pub fn recover(dir: &Path) -> Result<Vec<Recovered>, RecordError> {
    let mut out = Vec::new();
    for (name, id, part) in entries(dir)? {
        if !part {
            continue;
        }
        match recover_one(dir, &name, id) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(
                call = id.call,
                conversation = id.conversation,
                error = %e,
                "a recording a crash left could not be repaired"
            ),
        }
    }
    if !out.is_empty() {
        sync_dir(dir)?;
    }
    Ok(out)
}

fn recover_one(dir: &Path, name: &str, id: RecordingId) -> Result<Recovered, RecordError> {
    let path = dir.join(name);
    let file = open_plain(&path, true)?;
    let len = file.metadata().map_err(storage("look at", &path))?.len();
    let mut head = [0u8; wav::HEADER_BYTES as usize];
    let header_ok = len >= wav::HEADER_BYTES
        && file.read_exact_at(&mut head, 0).is_ok()
        && wav::is_recording_header(&head);
    let data = if len >= wav::HEADER_BYTES {
        let whole =
            (len - wav::HEADER_BYTES) / u64::from(wav::BLOCK_ALIGN) * u64::from(wav::BLOCK_ALIGN);
        whole.min(wav::MAX_DATA_BYTES)
    } else {
        0
    };
    let fixed = wav::header(data);
    let repaired = !header_ok || head != fixed || len != wav::HEADER_BYTES + data;
    if repaired {
        file.set_len(wav::HEADER_BYTES + data)
            .and_then(|()| file.write_all_at(&fixed, 0))
            .and_then(|()| file.sync_data())
            .map_err(storage("repair", &path))?;
    }
    let done = dir.join(id.file_name());
    std::fs::rename(&path, &done).map_err(storage("rename", &path))?;
    tracing::info!(
        call = id.call,
        conversation = id.conversation,
        bytes = data,
        repaired,
        "recovered a recording a crash left"
    );
    Ok(Recovered {
        id,
        file_name: id.file_name(),
        bytes: data,
        duration: Duration::from_secs_f64(data as f64 / f64::from(wav::BYTES_PER_SECOND)),
        repaired,
    })
}

/// The recordings in `dir` (name, id, being written), sorted by name; other files are
/// skipped. A missing folder has none.
pub(crate) fn entries(dir: &Path) -> Result<Vec<(String, RecordingId, bool)>, RecordError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(storage("read", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(storage("read", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((id, part)) = RecordingId::parse_file_name(&name) {
            out.push((name, id, part));
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a plain file (no symlink followed), refusing anything else.
fn open_plain(path: &Path, write: bool) -> Result<File, RecordError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // The name is a symlink.
            Some(n) if n == rustix::io::Errno::LOOP.raw_os_error() => RecordError::NotARecording,
            _ => storage("open", path)(e),
        })?;
    let meta = file.metadata().map_err(storage("look at", path))?;
    if !meta.is_file() {
        return Err(RecordError::NotARecording);
    }
    Ok(file)
}

/// A recording opened for playback or download.
#[derive(Debug)]
pub struct Playback {
    /// Which.
    pub id: RecordingId,
    /// Its file name.
    pub file_name: String,
    /// The file, at its start (a WAV file: header and samples).
    pub file: File,
    /// Its length in bytes when opened (stream this many).
    pub len: u64,
    /// Whether the conversation is still being recorded (its header's sizes may lag behind
    /// the length by up to a second).
    pub in_progress: bool,
}

/// A recording of a Call, as listed for its Call view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Which.
    pub id: RecordingId,
    /// Its file name.
    pub file_name: String,
    /// Its length in bytes.
    pub len: u64,
    /// Its audio's length.
    pub duration: Duration,
    /// Whether it is still being recorded.
    pub in_progress: bool,
}

/// Opens the recording of conversation `conversation` of Call `call` in `dir` for streaming
/// (the finished one; the one being written if it is not finished). Scans the folder; with a
/// file name at hand (the Call's timeline keeps it) [`open_name`] goes straight to it.
pub fn open(dir: &Path, call: u64, conversation: u64) -> Result<Playback, RecordError> {
    let prefix = prefix(call, conversation);
    let found = entries(dir)?
        .into_iter()
        .filter(|(name, _, _)| name.starts_with(&prefix))
        // Finished before in progress, then the earliest.
        .min_by_key(|(name, id, part)| (*part, id.started, name.clone()));
    match found {
        Some((name, _, _)) => open_name(dir, &name),
        None => Err(RecordError::NotFound { call, conversation }),
    }
}

/// Opens the recording named `name` in `dir` for streaming. Refuses any name that is not a
/// recording's (a path, `..`, another file) and anything that is not a plain file in the
/// folder (a symlink, a folder), so nothing outside the recordings' folder can be read.
pub fn open_name(dir: &Path, name: &str) -> Result<Playback, RecordError> {
    let (id, in_progress) = RecordingId::parse_file_name(name).ok_or(RecordError::NotARecording)?;
    let path = dir.join(name);
    let file = open_plain(&path, false).map_err(|e| match e {
        RecordError::Storage { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            RecordError::NotFound {
                call: id.call,
                conversation: id.conversation,
            }
        }
        e => e,
    })?;
    let len = file.metadata().map_err(storage("look at", &path))?.len();
    Ok(Playback {
        id,
        file_name: name.to_string(),
        file,
        len,
        in_progress,
    })
}

/// The recordings of Call `call` in `dir`, oldest first.
pub fn list(dir: &Path, call: u64) -> Result<Vec<RecordingInfo>, RecordError> {
    let prefix = format!("call-{call}_conv-");
    let mut out = Vec::new();
    for (name, id, part) in entries(dir)? {
        if !name.starts_with(&prefix) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(dir.join(&name)) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let len = meta.len();
        let data = len.saturating_sub(wav::HEADER_BYTES);
        out.push(RecordingInfo {
            id,
            file_name: name,
            len,
            duration: Duration::from_secs_f64(data as f64 / f64::from(wav::BYTES_PER_SECOND)),
            in_progress: part,
        });
    }
    out.sort_by_key(|r| (r.id.started, r.id.conversation));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::voice::tone::{ToneGen, analyse};

    const MS: Duration = Duration::from_millis(1);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn file_names_round_trip_and_nothing_else_parses() {
        let id = RecordingId::new(42, 1, ts("2026-12-06T21:03:01.75Z"));
        assert_eq!(id.started(), ts("2026-12-06T21:03:01Z"));
        assert_eq!(id.file_name(), "call-42_conv-1_20261206T210301Z.wav");
        assert_eq!(id.part_name(), "call-42_conv-1_20261206T210301Z.wav.part");
        assert_eq!(
            RecordingId::parse_file_name(&id.file_name()),
            Some((id, false))
        );
        assert_eq!(
            RecordingId::parse_file_name(&id.part_name()),
            Some((id, true))
        );
        let max = RecordingId::new(u64::MAX, u64::MAX, ts("1999-01-01T00:00:00Z"));
        assert_eq!(
            RecordingId::parse_file_name(&max.file_name()),
            Some((max, false))
        );
        for bad in [
            "",
            ".wav",
            "call-42_conv-1_20261206T210301Z.WAV",
            "call-042_conv-1_20261206T210301Z.wav",
            "call-42_conv-1_20261206T210301.wav",
            "call-42_conv-1_20261306T210301Z.wav",
            "call-42_conv-1_2026126T210301Z.wav",
            "call-42_conv-_20261206T210301Z.wav",
            "call--1_conv-1_20261206T210301Z.wav",
            "call-42_conv-1_20261206T210301Z.wav.bak",
            "call-42_conv-1_20261206T210301Z.part",
            "../call-42_conv-1_20261206T210301Z.wav",
            "call-42_conv-1_20261206T210301Z.wav/../../etc/passwd",
            "call-99999999999999999999_conv-1_20261206T210301Z.wav",
        ] {
            assert_eq!(RecordingId::parse_file_name(bad), None, "{bad}");
        }
    }

    /// A mixer test bench: the writer's ticks as `emit(due(arrival))` before each packet.
    struct Bench {
        base: Instant,
        mixer: Mixer,
        out: Vec<u8>,
    }

    impl Bench {
        fn new() -> Bench {
            let base = Instant::now();
            Bench {
                base,
                mixer: Mixer::new(base),
                out: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.base + MS * ms as u32
        }

        fn push(&mut self, ch: Channel, law: Law, ssrc: u32, ts: u32, payload: &[u8], ms: u64) {
            let arrival = self.at(ms);
            let due = self.mixer.due(arrival);
            self.advance(due);
            let f = (ch, law, ssrc, ts, arrival);
            if let Err(NeedRoom(n)) = self.mixer.push(f, payload) {
                self.advance(n);
                self.mixer.push(f, payload).unwrap();
            }
            assert!(self.mixer.pending.len() as u64 <= MAX_PENDING);
        }

        fn advance(&mut self, upto: u64) {
            while self.mixer.emit(upto, CHUNK, &mut self.out) {}
        }

        fn finish(&mut self, ms: u64) -> [Vec<i16>; 2] {
            let end = self.mixer.end(self.at(ms));
            self.advance(end);
            let s: Vec<i16> = self
                .out
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            [
                s.iter().step_by(2).copied().collect(),
                s.iter().skip(1).step_by(2).copied().collect(),
            ]
        }
    }

    fn frames(tone: &mut ToneGen, law: Law, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| tone.frame(law)).collect()
    }

    fn decoded(law: Law, frames: &[Vec<u8>]) -> Vec<i16> {
        let mut v = Vec::new();
        for f in frames {
            law.decode_into(f, &mut v);
        }
        v
    }

    fn dominant(samples: &[i16], from_ms: usize, to_ms: usize) -> Option<f64> {
        analyse(&samples[from_ms * 8..to_ms * 8], 8_000, &[440.0, 1_000.0]).dominant()
    }

    #[test]
    fn two_channels_with_tones_at_different_times_stay_aligned() {
        let mut b = Bench::new();
        let person = frames(&mut ToneGen::new(440.0, -10.0), Law::Alaw, 50);
        let operator = frames(&mut ToneGen::new(1_000.0, -10.0), Law::Ulaw, 50);
        // Arrivals jitter by up to 49 ms (the first of each stream on time); the RTP
        // timestamps place them. The operator's timestamps wrap around.
        let jitter = |k: u64| if k == 0 { 0 } else { k * 37 % 50 };
        let mut events: Vec<(u64, Channel, u32, usize)> = Vec::new();
        for k in 0..50u64 {
            events.push((
                k * 20 + jitter(k),
                Channel::Person,
                1_000 + 160 * k as u32,
                k as usize,
            ));
            events.push((
                1_000 + k * 20 + jitter(k),
                Channel::Operator,
                0xFFFF_FF00u32.wrapping_add(160 * k as u32),
                k as usize,
            ));
        }
        events.sort_by_key(|e| e.0);
        for (ms, ch, ts, k) in events {
            match ch {
                Channel::Person => b.push(ch, Law::Alaw, 7, ts, &person[k], ms),
                Channel::Operator => b.push(ch, Law::Ulaw, 9, ts, &operator[k], ms),
            }
        }
        let [p, o] = b.finish(2_000);
        assert_eq!((p.len(), o.len()), (16_000, 16_000));
        // Sample for sample where the timestamps say, whatever the jitter.
        assert_eq!(p[..8_000], decoded(Law::Alaw, &person)[..]);
        assert_eq!(o[8_000..], decoded(Law::Ulaw, &operator)[..]);
        assert!(p[8_000..].iter().all(|&s| s == 0));
        assert!(o[..8_000].iter().all(|&s| s == 0));
        // And by frequency, window by window.
        assert_eq!(dominant(&p, 50, 950), Some(440.0));
        assert_eq!(dominant(&p, 1_050, 1_950), None);
        assert_eq!(dominant(&o, 50, 950), None);
        assert_eq!(dominant(&o, 1_050, 1_950), Some(1_000.0));
        assert_eq!(b.mixer.late, 0);
        assert_eq!(b.mixer.jumps, 0);
    }

    #[test]
    fn late_and_repeated_packets_never_shift_a_channel() {
        let mut b = Bench::new();
        let tone = frames(&mut ToneGen::new(440.0, -10.0), Law::Alaw, 100);
        // Operator frame k is all one code, so its place shows.
        let code = |k: usize| (0x80 + k) as u8;
        let marked: Vec<Vec<u8>> = (0..100).map(|k| vec![code(k); 160]).collect();
        let mut events: Vec<(u64, Channel, usize)> = Vec::new();
        for k in 0..100usize {
            let ms = k as u64 * 20;
            events.push((ms, Channel::Person, k));
            match k {
                20 => events.push((ms + 70, Channel::Operator, k)), // reordered, in time
                30 => events.push((ms + 600, Channel::Operator, k)), // after its place is written
                _ => events.push((ms, Channel::Operator, k)),
            }
            if k == 10 {
                events.push((ms + 30, Channel::Operator, 10)); // repeated at once
            }
            if k == 40 {
                events.push((ms + 900, Channel::Operator, 40)); // repeated much later
            }
        }
        events.sort_by_key(|e| e.0);
        for (ms, ch, k) in events {
            let ts = 5_000 + 160 * k as u32;
            match ch {
                Channel::Person => b.push(ch, Law::Alaw, 1, ts, &tone[k], ms),
                Channel::Operator => b.push(ch, Law::Alaw, 2, ts, &marked[k], ms),
            }
        }
        let [p, o] = b.finish(2_000);
        assert_eq!(p, decoded(Law::Alaw, &tone));
        for k in 0..100 {
            let block = &o[k * 160..(k + 1) * 160];
            let want = if k == 30 {
                0
            } else {
                Law::Alaw.decode(code(k))
            };
            assert!(
                block.iter().all(|&s| s == want),
                "frame {k}: {:?}",
                &block[..4]
            );
        }
        assert_eq!(b.mixer.late, 2);
        assert_eq!(b.mixer.jumps, 0);
    }

    #[test]
    fn a_timestamp_jump_or_a_new_stream_writes_only_the_time_that_passed() {
        let mut b = Bench::new();
        let tone = frames(&mut ToneGen::new(440.0, -10.0), Law::Ulaw, 250);
        for (k, frame) in tone.iter().enumerate() {
            let (ssrc, ts) = match k {
                // 0..1 s: one stream.
                0..50 => (1, 160 * k as u32),
                // 1..2 s: the timestamps leap half their range (2^31 samples: three days).
                50..100 => (1, 0x8000_0000u32.wrapping_add(160 * k as u32)),
                // 2..3 s: a new SSRC from a random point.
                100..150 => (2, 0x1234_5678u32.wrapping_add(160 * k as u32)),
                // 3..4 s: the same SSRC, ten seconds back.
                150..200 => (
                    2,
                    0x1234_5678u32
                        .wrapping_add(160 * k as u32)
                        .wrapping_sub(80_000),
                ),
                // 4..7 s nothing (on hold), 7..8 s the stream goes on as the clock went.
                _ => (
                    2,
                    0x1234_5678u32
                        .wrapping_add(160 * (k as u32 + 150))
                        .wrapping_sub(80_000),
                ),
            };
            let ms = if k < 200 {
                k as u64 * 20
            } else {
                (k as u64 + 150) * 20
            };
            b.push(Channel::Person, Law::Ulaw, ssrc, ts, frame, ms);
        }
        let [p, o] = b.finish(8_000);
        // Eight seconds, not three days.
        assert_eq!(p.len(), 64_000);
        let want = decoded(Law::Ulaw, &tone);
        assert_eq!(p[..32_000], want[..32_000]);
        assert!(p[32_000..56_000].iter().all(|&s| s == 0));
        assert_eq!(p[56_000..], want[32_000..]);
        assert!(o.iter().all(|&s| s == 0));
        assert_eq!(b.mixer.jumps, 3);
        assert_eq!(b.mixer.late, 0);
    }

    #[test]
    fn memory_stays_bounded_whatever_the_arrivals() {
        let mut b = Bench::new();
        b.push(Channel::Person, Law::Alaw, 1, 0, &[0xAA; 160], 0);
        // A packet ten minutes on (vakt's own clock; a peer cannot say when a packet came):
        // what lies before it is written out a chunk at a time first.
        let mut chunks = 0;
        let f = (Channel::Person, Law::Alaw, 1, 160, b.at(600_000));
        let Err(NeedRoom(upto)) = b.mixer.push(f, &[0x2A; 160]) else {
            panic!("no room needed");
        };
        assert_eq!(upto, 600 * 8_000 + 160 - MAX_PENDING);
        let mut out = Vec::new();
        while b.mixer.emit(upto, CHUNK, &mut out) {
            assert!(out.len() as u64 <= CHUNK * 4);
            out.clear();
            chunks += 1;
        }
        assert_eq!(chunks, (upto - 1) / CHUNK);
        b.mixer.push(f, &[0x2A; 160]).unwrap();
        assert_eq!(b.mixer.pending.len() as u64, MAX_PENDING);
        assert_eq!(b.mixer.jumps, 1);
    }

    /// A disk that is full for the writes between two offsets.
    struct FullBetween(File);

    const FULL_FROM: u64 = wav::HEADER_BYTES + 32_000; // after the first second
    const FULL_TO: u64 = wav::HEADER_BYTES + 64_000; // until the second

    impl Disk for FullBetween {
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            let end = offset + buf.len() as u64;
            if end > FULL_FROM && offset < FULL_TO {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space"));
            }
            self.0.write_all_at(buf, offset)
        }

        fn sync(&mut self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    fn options(dir: &Path) -> RecordingOptions {
        RecordingOptions::in_data_dir(dir)
    }

    #[tokio::test]
    async fn a_full_disk_is_counted_and_reported_and_the_recording_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(tmp.path());
        let metrics = RecordingMetrics::new();
        let id = RecordingId::new(3, 1, ts("2026-12-06T10:00:00Z"));
        // The answer ten seconds from now: nothing is due before `finish`.
        let answered = Instant::now() + Duration::from_secs(10);
        let rec = Recorder::start_with(&opts, id, answered, &metrics, |f| Box::new(FullBetween(f)))
            .await
            .unwrap();
        let mut tone = ToneGen::new(440.0, -10.0);
        for k in 0..150u32 {
            let payload = tone.frame(Law::Alaw);
            let p = Packet {
                law: Law::Alaw,
                ssrc: 1,
                timestamp: k * 160,
                payload: &payload,
                arrival: answered + MS * (k * 20),
            };
            assert!(rec.frame(Channel::Person, &p));
        }
        let done = rec.finish(answered + Duration::from_secs(3)).await.unwrap();
        assert!(done.failures >= 1, "{done:?}");
        // The second that could not be written reads as silence; the third is in place.
        assert_eq!(done.bytes, 96_000);
        let wav = wav::read(&opts.dir.join(&done.file_name)).unwrap();
        let p = wav.channel(0);
        assert_eq!(p.len(), 24_000);
        assert_eq!(dominant(&p, 0, 1_000), Some(440.0));
        assert!(p[8_000..16_000].iter().all(|&s| s == 0));
        assert_eq!(dominant(&p, 2_000, 3_000), Some(440.0));
    }

    /// Holds the writer in its first write until the test lets go.
    static GATE: Mutex<()> = Mutex::new(());

    struct Gated(File);

    impl Disk for Gated {
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            drop(GATE.lock());
            self.0.write_all_at(buf, offset)
        }

        fn sync(&mut self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    #[tokio::test]
    async fn a_writer_behind_drops_frames_and_counts_them_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = options(tmp.path());
        opts.queue_frames = 4;
        let metrics = RecordingMetrics::new();
        let id = RecordingId::new(4, 1, ts("2026-12-06T10:00:00Z"));
        // The writer's first write (a tick after a second, when the first samples are due)
        // waits at the gate; the queue fills and frames are dropped, each at once.
        let answered = Instant::now() + Duration::from_secs(1);
        let rec = Recorder::start_with(&opts, id, answered, &metrics, |f| Box::new(Gated(f)))
            .await
            .unwrap();
        let gate = GATE.lock().unwrap();
        let mut dropped = 0;
        for k in 0..10_000u32 {
            let p = Packet {
                law: Law::Ulaw,
                ssrc: 1,
                timestamp: k * 160,
                payload: &[0x80; 160],
                arrival: Instant::now(),
            };
            if !rec.frame(Channel::Operator, &p) {
                dropped += 1;
                if dropped == 10 {
                    break;
                }
            }
            std::thread::sleep(MS);
        }
        assert_eq!(dropped, 10);
        let status = rec.status();
        assert_eq!(status.frames_dropped, 10);
        assert!(status.failures >= 10);
        assert_eq!(status.last_failure, Some(Failure::QueueFull));
        // Too large or empty frames are dropped too (not failures: the peer's).
        let big = [0u8; MAX_FRAME_SAMPLES + 1];
        let p = Packet {
            law: Law::Ulaw,
            ssrc: 1,
            timestamp: 0,
            payload: &big,
            arrival: Instant::now(),
        };
        assert!(!rec.frame(Channel::Person, &p));
        assert_eq!(rec.status().frames_dropped, 11);
        drop(gate);
        let done = rec.finish(Instant::now()).await.unwrap();
        assert_eq!(done.frames_dropped, 11);
        assert!(opts.dir.join(done.file_name).is_file());
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_made_is_an_error_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(tmp.path());
        let metrics = RecordingMetrics::new();
        let id = RecordingId::new(5, 1, ts("2026-12-06T10:00:00Z"));
        let first = Recorder::start(&opts, id, Instant::now(), &metrics)
            .await
            .unwrap();
        // The same conversation again: the file exists, nothing is overwritten.
        let again = Recorder::start(&opts, id, Instant::now(), &metrics).await;
        assert!(
            matches!(again, Err(RecordError::Storage { op: "create", .. })),
            "{again:?}"
        );
        first.finish(Instant::now()).await.unwrap();
        // The folder is a file.
        let mut blocked = options(tmp.path());
        blocked.dir = tmp.path().join("not-a-folder");
        std::fs::write(&blocked.dir, b"x").unwrap();
        assert!(
            Recorder::start(&blocked, id, Instant::now(), &metrics)
                .await
                .is_err()
        );
    }
}
