//! Figures of a run: latency histograms (µs), answered frames, errors by kind, the live
//! counters behind the progress bar, and the summary line / JSON helpers.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Why a frame was not answered with a good ACK (or why a device could not work at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The device could not connect (after its bounded retries).
    Connect,
    /// No answer within the per-frame timeout.
    Timeout,
    /// The server closed the connection (or reset it) with the frame unanswered.
    Closed,
    /// A socket error while sending.
    Io,
    /// The answer was a NAK.
    Nak,
    /// The answer was a DUH.
    Duh,
    /// The answer had a bad CRC.
    ReplyBadCrc,
    /// The answer did not parse (bad length, grammar, too long).
    ReplyMalformed,
    /// The answer was a well-formed frame but not ACK/NAK/DUH (or an `*ACK` to a plain frame).
    UnexpectedReply,
    /// The ACK echoed another sequence number than the frame's.
    WrongSeq,
    /// The ACK echoed another account than the frame's.
    WrongAccount,
    /// A plain `ACK` to an encrypted frame (an `*ACK` is required).
    AckNotEncrypted,
    /// An `*ACK` that does not decrypt with the device's key.
    AckUndecryptable,
    /// An answer with nothing in flight it could belong to (TCP), or a UDP answer whose
    /// sequence number matches no frame in flight (e.g. after its timeout).
    Unmatched,
}

impl ErrorKind {
    /// Every kind, in the order of [`ErrorKind::index`].
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::Nak,
        ErrorKind::Duh,
        ErrorKind::ReplyBadCrc,
        ErrorKind::ReplyMalformed,
        ErrorKind::UnexpectedReply,
        ErrorKind::WrongSeq,
        ErrorKind::WrongAccount,
        ErrorKind::AckNotEncrypted,
        ErrorKind::AckUndecryptable,
        ErrorKind::Unmatched,
    ];

    /// Stable label used in the JSON report.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Nak => "nak",
            ErrorKind::Duh => "duh",
            ErrorKind::ReplyBadCrc => "reply_bad_crc",
            ErrorKind::ReplyMalformed => "reply_malformed",
            ErrorKind::UnexpectedReply => "unexpected_reply",
            ErrorKind::WrongSeq => "wrong_seq",
            ErrorKind::WrongAccount => "wrong_account",
            ErrorKind::AckNotEncrypted => "ack_not_encrypted",
            ErrorKind::AckUndecryptable => "ack_undecryptable",
            ErrorKind::Unmatched => "unmatched_reply",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Highest latency the histograms hold (60 s, in µs); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in µs, 3 significant digits.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "the bounds are constants that hdrhistogram accepts"
)]
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// The run's latency histogram, shared by the device tasks (each one fills it through the
/// small buffer of its [`Stats`], so a run of 10,000 devices holds one histogram, not 10,000).
pub type Sink = Arc<Mutex<Histogram<u64>>>;

/// A new, empty [`Sink`].
#[must_use]
pub fn sink() -> Sink {
    Arc::new(Mutex::new(histogram()))
}

/// Latencies a device buffers before it takes the sink's lock.
const FLUSH_EVERY: usize = 256;

/// What one simulated device (or a whole run, after [`Stats::merge`]) counted.
#[derive(Debug)]
pub struct Stats {
    /// Frames answered with a good ACK (inside the measured window).
    pub frames: u64,
    /// Errors by kind (indexed like [`ErrorKind::ALL`]).
    pub errors: [u64; ErrorKind::ALL.len()],
    sink: Sink,
    /// Latencies (µs) not yet in the sink.
    pending: Vec<u32>,
}

impl Drop for Stats {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Stats {
    /// Empty counts whose latencies go to `sink`.
    #[must_use]
    pub fn new(sink: &Sink) -> Stats {
        Stats {
            frames: 0,
            errors: [0; ErrorKind::ALL.len()],
            sink: sink.clone(),
            pending: Vec::new(),
        }
    }

    /// A good ACK after `latency`.
    pub fn record(&mut self, latency: Duration) {
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.pending.push(us);
        self.frames += 1;
        if self.pending.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Moves the buffered latencies into the sink.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut h = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        for &us in &self.pending {
            h.saturating_record(u64::from(us).clamp(1, MAX_LATENCY_US));
        }
        drop(h);
        self.pending.clear();
    }

    /// One error of `kind`.
    pub fn error(&mut self, kind: ErrorKind) {
        if let Some(c) = self.errors.get_mut(kind.index()) {
            *c += 1;
        }
    }

    /// Adds the counts of `other` into `self` (its latencies go to its own sink).
    pub fn merge(&mut self, other: &Stats) {
        self.frames += other.frames;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
    }

    /// Total errors.
    #[must_use]
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Errors by kind as a JSON object (only kinds that occurred).
    #[must_use]
    pub fn errors_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for k in ErrorKind::ALL {
            let n = self.errors.get(k.index()).copied().unwrap_or(0);
            if n > 0 {
                m.insert(k.as_str().to_string(), n.into());
            }
        }
        serde_json::Value::Object(m)
    }

    /// The latency figures so far (flushes this device's buffer first).
    #[must_use]
    pub fn latency(&mut self) -> Latency {
        self.flush();
        Latency(
            self.sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A snapshot of a latency histogram.
#[derive(Debug, Clone)]
pub struct Latency(pub Histogram<u64>);

impl Latency {
    /// Latency at quantile `q` in ms (0 when nothing was recorded).
    #[must_use]
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        us_to_ms(self.0.value_at_quantile(q))
    }

    /// Highest latency in ms.
    #[must_use]
    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        us_to_ms(self.0.max())
    }

    /// Summary as JSON (ms): p50, p90, p99, p999, max, mean.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50_ms": round3(self.quantile_ms(0.50)),
            "p90_ms": round3(self.quantile_ms(0.90)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "p999_ms": round3(self.quantile_ms(0.999)),
            "max_ms": round3(self.max_ms()),
            "mean_ms": round3(if self.0.is_empty() { 0.0 } else { self.0.mean() / 1000.0 }),
        })
    }
}

#[allow(clippy::cast_precision_loss)]
fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Rounds to 3 decimals (for JSON; the summary line formats with `{:.3}`).
#[must_use]
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Counters shared by all device tasks, read by the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Good ACKs (measured window only).
    pub frames: AtomicU64,
    /// Errors.
    pub errors: AtomicU64,
    /// Devices connected (storm) / connections up (dc09).
    pub connected: AtomicU64,
    /// Devices whose backlog is fully ACKed (storm).
    pub done: AtomicU64,
}

impl Live {
    /// Counts one good ACK.
    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error, in `stats` and here.
    pub fn error(&self, stats: &mut Stats, kind: ErrorKind) {
        stats.error(kind);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[must_use]
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
#[must_use]
pub fn progress_bar(len: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {msg}") {
        pb.set_style(style);
    }
    pb
}

/// Soft limit on open files of this process (Linux: `/proc/self/limits`), if known.
#[must_use]
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// File descriptors kept free for the runtime, stdio, output files.
pub const FD_RESERVE: u64 = 256;

/// Refuses more sockets than this process may open (one per simulated TCP device).
///
/// # Errors
/// When `sockets + FD_RESERVE` exceeds the soft open-files limit.
pub fn check_fd_budget(sockets: u64) -> anyhow::Result<()> {
    if let Some(limit) = open_files_limit() {
        let budget = limit.saturating_sub(FD_RESERVE);
        anyhow::ensure!(
            sockets <= budget,
            "{sockets} sockets exceed this process's open-files limit ({limit}, of which \
             {FD_RESERVE} are kept for the runtime): lower the count or raise `ulimit -n` \
             (the server on the same machine needs as many under its own limit)"
        );
    }
    Ok(())
}

/// Writes `value` pretty-printed to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_quantiles() {
        let sink = sink();
        let mut a = Stats::new(&sink);
        a.record(Duration::from_micros(1000));
        a.error(ErrorKind::Nak);
        let mut b = Stats::new(&sink);
        b.record(Duration::from_micros(3000));
        b.error(ErrorKind::Nak);
        b.error(ErrorKind::Timeout);
        a.merge(&b);
        drop(b);
        assert_eq!(a.frames, 2);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.errors_json()["nak"], 2);
        let lat = a.latency();
        assert_eq!(lat.0.len(), 2);
        assert!((lat.quantile_ms(1.0) - 3.0).abs() < 0.01);
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
