//! The journal: every accepted Signal is appended to the store by one committer thread, in
//! group commits (write everything waiting, flush once, then answer all of them). A frame is
//! ACKed only after the commit that holds it has been flushed: no ACK before durable.
//!
//! The committer is also the one place that decides whether a frame is a retransmission: it
//! keeps the dedup window (key -> journal id) in memory and rebuilds it from the journal's
//! recent records at start, so the window survives a restart without a second tree that could
//! disagree with the journal after a crash.
//!
//! Where the records go is [`JournalStore`]'s: sled on one machine, or PostgreSQL with a
//! synchronous standby. A commit that fails is answered [`Commit::Failed`] (no ACK; the device
//! retries), and so is one whose outcome is unknown (the database's connection broke during
//! its commit). After any failure the committer reads the next id from the store again before
//! it numbers more records, and where the failed batch landed after all (an unknown commit
//! that did commit) it takes it as committed: its dedup keys come back, so a retransmission is
//! a [`Commit::Duplicate`] of the journaled record, and triage gets its Signals once.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::model::Signal;
use crate::store::{JournalRecord, JournalStore, NewRecord, StoreError, encode_record};
use crate::telemetry::Metrics;

mod dedup;
pub mod retention;

use dedup::Dedup;

/// A 128-bit retransmission key.
pub type DedupKey = [u8; 16];

/// Builds the retransmission key of a frame from the fields that identify it: account, line,
/// receiver, sequence number, ID token and the (decrypted) payload with its xdata. The pad and
/// the timestamp are left out, since a device may re-encrypt a retransmission with a new pad
/// and a corrected time.
pub fn dedup_key(parts: &[&[u8]]) -> DedupKey {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The outcome of a submitted Signal, sent only after the flush that made it durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Journaled under this id and flushed.
    Stored(u64),
    /// A retransmission of the Signal journaled under this id (which is durable).
    Duplicate(u64),
    /// The journal could not write: do not ACK.
    Failed,
}

/// Why the journal could not start.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading the journal for the dedup window failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The committer thread could not be started.
    #[error("cannot start the journal committer thread: {0}")]
    Thread(std::io::Error),
}

/// Why a Signal could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The Signal could not be encoded (a bug; the frame gets no ACK).
    #[error(transparent)]
    Encode(#[from] StoreError),
    /// The queue is full (only from [`Journal::try_submit`]).
    #[error("journal queue full")]
    Full,
    /// The journal has shut down.
    #[error("journal closed")]
    Closed,
}

/// A Signal on its way to the committer, already encoded by the submitting task so that the
/// one committer thread only checks dedup, concatenates and writes.
struct Entry {
    record: NewRecord,
    signal: Signal,
    dedup: Option<DedupKey>,
    reply: oneshot::Sender<Commit>,
}

enum Msg {
    Append(Box<Entry>),
    Close,
}

/// Encodes a Signal for the journal, off the committer thread.
fn entry(
    signal: Signal,
    dedup: Option<DedupKey>,
) -> Result<(Entry, oneshot::Receiver<Commit>), StoreError> {
    let (reply, rx) = oneshot::channel();
    let mut record = JournalRecord {
        signal,
        dedup: dedup.map(hex::encode),
    };
    record.signal.id = 0;
    let json = encode_record(&record)?;
    Ok((
        Entry {
            record: NewRecord {
                json,
                received_at: record.signal.received_at,
                dedup,
            },
            signal: record.signal,
            dedup,
            reply,
        },
        rx,
    ))
}

/// Tuning of the committer.
#[derive(Clone, Copy, Debug)]
pub struct JournalOptions {
    /// Most Signals per commit.
    pub max_batch: usize,
    /// Queue bound.
    pub queue_capacity: usize,
    /// Retransmission window in seconds.
    pub dedup_window_secs: u64,
    /// Bound on the dedup table.
    pub dedup_max_entries: usize,
}

/// Where committed Signals go next (triage): every Signal of a successful commit, with its
/// id, in id order, sent after the flush. The channel is bounded: when triage falls behind,
/// the committer waits, and so do the devices' ACKs (back-pressure instead of loss).
pub type Feed = mpsc::Sender<Vec<Signal>>;

/// Handle to the committer.
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Starts the committer on its own thread, over the journal's storage (a [`crate::store::Store`]
    /// for sled, or a [`JournalStore`]). `now` is the current time, used once to decide which
    /// journal records are still inside the dedup window.
    pub fn start(
        store: impl Into<JournalStore>,
        opts: JournalOptions,
        metrics: Metrics,
        now: jiff::Timestamp,
        feed: Option<Feed>,
    ) -> Result<Journal, JournalError> {
        let store = store.into();
        let next_id = store.next_id()?;
        let window = jiff::SignedDuration::from_secs(opts.dedup_window_secs as i64);
        let mut dedup = Dedup::new(window, opts.dedup_max_entries);
        // Newest first, as many as the table holds; inserted oldest first, so the eviction
        // order matches the order of arrival.
        let recent = store.recent_keys(now - window, opts.dedup_max_entries)?;
        for r in recent.iter().rev() {
            dedup.insert(r.key, r.id, r.at);
        }
        tracing::info!(next_id, dedup_entries = dedup.len(), "journal opened");
        let (tx, rx) = mpsc::channel(opts.queue_capacity);
        let committer = Committer {
            store,
            rx,
            next_id,
            dedup,
            max_batch: opts.max_batch,
            metrics,
            feed,
            resync: false,
            unsure: None,
        };
        let thread = std::thread::Builder::new()
            .name("vakt-journal".into())
            .spawn(move || committer.run())
            .map_err(JournalError::Thread)?;
        Ok(Journal {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Submits a Signal, waiting for room in the queue (back-pressure). The receiver yields
    /// the outcome after the flush.
    pub async fn submit(
        &self,
        signal: Signal,
        dedup: Option<DedupKey>,
    ) -> Result<oneshot::Receiver<Commit>, SubmitError> {
        let (e, rx) = entry(signal, dedup)?;
        self.tx
            .send(Msg::Append(Box::new(e)))
            .await
            .map_err(|_| SubmitError::Closed)?;
        Ok(rx)
    }

    /// Submits a Signal without waiting; fails with [`SubmitError::Full`] when the queue is full.
    pub fn try_submit(
        &self,
        signal: Signal,
        dedup: Option<DedupKey>,
    ) -> Result<oneshot::Receiver<Commit>, SubmitError> {
        let (e, rx) = entry(signal, dedup)?;
        self.tx
            .try_send(Msg::Append(Box::new(e)))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        Ok(rx)
    }

    /// Commits everything submitted so far, flushes, and stops the committer. Later
    /// submissions fail. Blocks until the committer has finished.
    pub async fn close(&self) {
        // Everything queued before Close is committed first (the queue is FIFO).
        let _ = self.tx.send(Msg::Close).await;
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn parse_key(h: &str) -> Option<DedupKey> {
    let mut k = [0u8; 16];
    hex::decode_to_slice(h, &mut k).ok()?;
    Some(k)
}

struct Committer {
    store: JournalStore,
    rx: mpsc::Receiver<Msg>,
    next_id: u64,
    dedup: Dedup,
    max_batch: usize,
    metrics: Metrics,
    feed: Option<Feed>,
    /// A commit failed: read the next id from the store before numbering more records.
    resync: bool,
    /// The last failed batch, until the store says whether it landed after all.
    unsure: Option<Unsure>,
}

/// A batch answered [`Commit::Failed`] that may be in the journal anyway (a commit whose
/// outcome was unknown).
struct Unsure {
    first_id: u64,
    signals: Vec<Signal>,
    keys: Vec<Option<DedupKey>>,
}

/// One group commit being gathered.
#[derive(Default)]
struct Batch {
    /// Encoded records, ids `first_id..`.
    records: Vec<NewRecord>,
    /// The same Signals decoded, for triage once they are durable.
    signals: Vec<Signal>,
    /// Every answer owed after the flush (records and duplicates).
    replies: Vec<(oneshot::Sender<Commit>, Commit)>,
}

impl Committer {
    fn run(mut self) {
        let mut batch = Batch::default();
        let mut closing = false;
        while !closing {
            let Some(first) = self.rx.blocking_recv() else {
                break;
            };
            if self.resync {
                self.resync();
            }
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Close => {
                        closing = true;
                        break;
                    }
                    Msg::Append(e) => self.stage(*e, &mut batch),
                }
                if batch.replies.len() < self.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
        }
        self.rx.close();
        // Anything that raced in after Close gets no ACK (the device will retry elsewhere or later).
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Append(e) = msg {
                let _ = e.reply.send(Commit::Failed);
            }
        }
        if let Err(e) = self.store.commit(self.next_id, &[]) {
            tracing::error!(error = %e, "final journal flush failed");
        }
        tracing::info!(next_id = self.next_id, "journal closed");
    }

    fn stage(&mut self, e: Entry, batch: &mut Batch) {
        if let Some(k) = e.dedup {
            if let Some(id) = self.dedup.get(&k, e.signal.received_at) {
                batch.replies.push((e.reply, Commit::Duplicate(id)));
                return;
            }
        }
        let id = self.next_id + batch.records.len() as u64;
        if let Some(k) = e.dedup {
            let evicted = self.dedup.insert(k, id, e.signal.received_at);
            if evicted > 0 {
                self.metrics.dedup_evicted.increment(evicted);
            }
        }
        batch.replies.push((e.reply, Commit::Stored(id)));
        batch.records.push(e.record);
        batch.signals.push(e.signal);
    }

    fn commit(&mut self, batch: &mut Batch) {
        if batch.replies.is_empty() {
            return;
        }
        let started = Instant::now();
        // With no records (only duplicates), the commit makes sure that what earlier commits
        // reported is durable. While the next id is not known again after a failure, nothing
        // is written (the ids staged may be taken).
        let result = if self.resync {
            Err(None)
        } else {
            self.store
                .commit(self.next_id, &batch.records)
                .map_err(Some)
        };
        match result {
            Ok(()) => {
                self.next_id += batch.records.len() as u64;
                for f in batch.signals.iter().map(|s| s.flags) {
                    let c = if f.unauthenticated {
                        &self.metrics.journaled_unauthenticated
                    } else if f.undecryptable {
                        &self.metrics.journaled_undecryptable
                    } else if f.unknown_device {
                        &self.metrics.journaled_unknown
                    } else if f.bad_payload {
                        &self.metrics.journaled_bad_payload
                    } else {
                        &self.metrics.journaled_none
                    };
                    c.increment(1);
                }
                self.metrics.batch_frames.record(batch.replies.len() as f64);
                self.metrics
                    .commit_seconds
                    .record(started.elapsed().as_secs_f64());
                for (tx, c) in batch.replies.drain(..) {
                    let _ = tx.send(c);
                }
                self.forward(batch);
            }
            Err(e) => {
                match e {
                    Some(e) => {
                        tracing::error!(error = %e, frames = batch.replies.len(), "journal commit failed; no ACK sent")
                    }
                    None => {
                        tracing::error!(
                            frames = batch.replies.len(),
                            "journal unavailable; no ACK sent"
                        )
                    }
                }
                self.metrics.journal_errors.increment(1);
                // The ids of this batch count as not taken: forget the dedup entries that
                // point at them, and ask the store for the next id before the next commit.
                let failed = self.next_id..self.next_id + batch.records.len() as u64;
                self.dedup.forget_ids(failed);
                for (tx, _) in batch.replies.drain(..) {
                    let _ = tx.send(Commit::Failed);
                }
                if !batch.records.is_empty() && self.unsure.is_none() {
                    self.unsure = Some(Unsure {
                        first_id: self.next_id,
                        signals: std::mem::take(&mut batch.signals),
                        keys: batch.records.iter().map(|r| r.dedup).collect(),
                    });
                }
                self.resync = true;
            }
        }
        batch.records.clear();
        batch.signals.clear();
    }

    /// After a failed commit: the next id from the store, and whether the failed batch is in
    /// the journal after all (its records at its ids, same Signals, same keys). Stays due
    /// while the store does not answer.
    fn resync(&mut self) {
        let next = match self.store.next_id() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "journal store unavailable");
                return;
            }
        };
        if let Some(u) = self.unsure.take() {
            let len = u.signals.len();
            if next >= u.first_id + len as u64 {
                match self.store.after(u.first_id - 1, len) {
                    Ok(found) => self.landed(u, &found),
                    Err(e) => {
                        tracing::warn!(error = %e, "journal store unavailable");
                        self.unsure = Some(u);
                        return;
                    }
                }
            }
        }
        if next != self.next_id {
            tracing::warn!(
                was = self.next_id,
                next,
                "the journal's next id moved after a failed commit"
            );
        }
        self.next_id = next;
        self.resync = false;
    }

    /// Takes a batch that was answered Failed as committed when `found` holds it.
    fn landed(&mut self, u: Unsure, found: &[JournalRecord]) {
        let same = found.len() == u.signals.len()
            && found
                .iter()
                .zip(&u.signals)
                .zip(&u.keys)
                .all(|((r, s), k)| {
                    r.signal.received_at == s.received_at
                        && r.signal.raw == s.raw
                        && r.dedup.as_deref().and_then(parse_key) == *k
                });
        if !same {
            return;
        }
        tracing::warn!(
            first_id = u.first_id,
            records = found.len(),
            "a commit whose outcome was unknown is in the journal; retransmissions will be ACKed as duplicates"
        );
        for (r, k) in found.iter().zip(&u.keys) {
            if let Some(k) = k {
                self.dedup.insert(*k, r.signal.id, r.signal.received_at);
            }
        }
        if let Some(feed) = &self.feed {
            let signals = found.iter().map(|r| r.signal.clone()).collect();
            if feed.blocking_send(signals).is_err() {
                self.feed = None;
            }
        }
    }

    /// Hands the Signals of a durable commit to triage (ids assigned here). Waits while
    /// triage's queue is full; if triage has stopped, the Signals stay in the journal and are
    /// triaged from it at the next start.
    fn forward(&mut self, batch: &mut Batch) {
        let Some(feed) = &self.feed else {
            return;
        };
        if batch.signals.is_empty() {
            return;
        }
        let first = self.next_id - batch.signals.len() as u64;
        let mut signals = std::mem::take(&mut batch.signals);
        for (i, s) in signals.iter_mut().enumerate() {
            s.id = first + i as u64;
        }
        if feed.blocking_send(signals).is_err() {
            tracing::warn!("triage has stopped; committed Signals wait in the journal");
            self.feed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_separates_fields() {
        assert_ne!(dedup_key(&[b"ab", b"c"]), dedup_key(&[b"a", b"bc"]));
        assert_eq!(dedup_key(&[b"ab", b"c"]), dedup_key(&[b"ab", b"c"]));
    }
}
