//! The audit log: who did what, when.
//!
//! Key = sequence number (u64 big-endian, below 2^56 so its first byte is 0), value = JSON
//! [`AuditEntry`]. The last sequence number given out is kept under the key [`COUNTER`] (4
//! bytes, so it never reads as an entry); an entry and the counter are written in one
//! transaction, so concurrent writers never get the same number and an entry is visible
//! before a later number is given out.
//!
//! # Indexes
//!
//! Beside each entry, in the same transaction, up to three empty index keys: `p` + the
//! person's (subscriber's) id, `u` + the user, `c` + the Call (each name as a u16 big-endian
//! length and its bytes, a Call as its u64; then the entry's sequence number, by which the
//! entry is read: a copy under each key would cost the log four times its size). So
//! one person's, one user's or one Call's entries are one range scan, newest first, however
//! long the log is: the review's filters and the extract for one person never read the rest
//! of the log. An entry that names a Call but no person is indexed (and stored) under the
//! Call's subscriber, so a person's extract holds what was done in their Calls too (a
//! dispatch, a recording). The entries written before the indexes existed are indexed by
//! [`Store::index_audit_log`] when the server starts; [`INDEXED`] holds the sequence number
//! up to which every entry is indexed, moved on by each new entry once the log is caught up.
//!
//! Dates are not indexed: entries are numbered in the order they are written, and their
//! times (`at`, the writer's clock when it acted) follow that order within [`TIME_SLACK`]. A
//! search to a date first finds where the date (plus the slack) falls by a binary search
//! over the numbers (about 20 reads for a million entries), then walks back, in the log or
//! in an index, until the times are a slack below its from date.
//!
//! Measured on one million entries (`million_entries_stay_quick`: sled, a debug build on two
//! shared cores, 2,000 users, 50,000 people): written with their indexes in 393 s (0.4 ms an
//! entry, syncs left out), 1.1 GB on disk with the indexes (2.1 GB when each index key held a
//! copy of the entry); one person's 100 entries read in 17 ms (100 entries read, nothing
//! else); a day of the whole log by date (86,400 entries, pages of 1,000) in 2.6 s; the
//! newest 100 before a date in 80 ms (3,700 read: the slack hour); the backfill of the whole
//! log in 66 s, once.

use jiff::{SignedDuration, Timestamp};

use super::kv::{Batch, TxError};

use super::{Store, StoreError};
use crate::model::AuditEntry;

/// Key of the last sequence number given out.
const COUNTER: &[u8] = b"next";
/// Key of the sequence number up to which every entry is indexed.
const INDEXED: &[u8] = b"indexed";
/// Index prefixes: by person, by user, by Call.
const BY_PERSON: u8 = b'p';
const BY_USER: u8 = b'u';
const BY_CALL: u8 = b'c';
/// Every entry's key is below this one (sequence numbers below 2^56).
const ENTRIES_END: [u8; 1] = [1];
const MAX_SEQ: u64 = 1 << 56;
/// How far an entry's time may be before an earlier-numbered one's (concurrent writers
/// numbered in another order than their clocks read, a clock step).
pub const TIME_SLACK: SignedDuration = SignedDuration::from_hours(1);
/// How many entries the backfill indexes in one batch.
const BACKFILL_BATCH: usize = 1000;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "audit",
        detail: e.to_string(),
    }
}

fn seq_of(k: &[u8]) -> Option<u64> {
    k.try_into().ok().map(u64::from_be_bytes)
}

/// The sequence number at the end of an index key.
fn seq_at_end(k: &[u8]) -> Option<u64> {
    let at = k.len().checked_sub(8)?;
    k.get(at..).and_then(seq_of)
}

/// The prefix of a name's index (`None`: a name too long to index, never written).
fn name_prefix(tag: u8, name: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(name.len()).ok()?;
    let mut k = Vec::with_capacity(3 + name.len() + 8);
    k.push(tag);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    Some(k)
}

fn call_prefix(call: u64) -> Vec<u8> {
    let mut k = vec![BY_CALL];
    k.extend_from_slice(&call.to_be_bytes());
    k
}

fn with_seq(mut prefix: Vec<u8>, seq: u64) -> Vec<u8> {
    prefix.extend_from_slice(&seq.to_be_bytes());
    prefix
}

/// The index keys of an entry.
fn index_keys(e: &AuditEntry, seq: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(3);
    if let Some(p) = e
        .subscriber
        .as_deref()
        .and_then(|s| name_prefix(BY_PERSON, s))
    {
        out.push(with_seq(p, seq));
    }
    if let Some(p) = name_prefix(BY_USER, &e.user) {
        out.push(with_seq(p, seq));
    }
    if let Some(c) = e.call {
        out.push(with_seq(call_prefix(c), seq));
    }
    out
}

/// What to look for in the audit log; every part given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The person concerned (subscriber id).
    pub subscriber: Option<String>,
    /// Who.
    pub user: Option<String>,
    /// The Call concerned.
    pub call: Option<u64>,
    /// The action starts with this (`subscriber.`, `call.view`).
    pub action_prefix: Option<String>,
    /// At or after.
    pub from: Option<Timestamp>,
    /// Before.
    pub to: Option<Timestamp>,
}

impl AuditFilter {
    /// Whether `e` matches.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.subscriber
            .as_ref()
            .is_none_or(|s| e.subscriber.as_ref() == Some(s))
            && self.user.as_ref().is_none_or(|u| &e.user == u)
            && self.call.is_none_or(|c| e.call == Some(c))
            && self
                .action_prefix
                .as_ref()
                .is_none_or(|a| e.action.starts_with(a.as_str()))
            && self.from.is_none_or(|f| e.at >= f)
            && self.to.is_none_or(|t| e.at < t)
    }
}

/// One page of a search, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditPage {
    /// The entries found, newest (highest number) first.
    pub entries: Vec<AuditEntry>,
    /// Where to go on (`before` of the next search) when there may be more; `None`: the
    /// search has seen every entry that could match.
    pub next_before: Option<u64>,
    /// How many entries the search read.
    pub read: usize,
}

impl Store {
    /// Appends an entry and returns its sequence number (from 1, one more than the last).
    /// The entry's own `seq` is ignored; an entry that names a Call but no person gets the
    /// Call's subscriber. Durable when it returns.
    pub fn audit(&self, mut e: AuditEntry) -> Result<u64, StoreError> {
        if e.subscriber.is_none()
            && let Some(call) = e.call
        {
            e.subscriber = self.call_head(call)?.and_then(|c| c.subscriber);
        }
        // Normally the counter says where to go on; the last key is a floor should the
        // counter ever be missing.
        let floor = self.last_audit_seq()?;

        let seq = self.audit.transaction(|tx| {
            let counter = match tx.get(COUNTER)? {
                Some(v) => seq_of(&v).ok_or(TxError::Abort(
                    "the sequence counter is not 8 bytes".to_string(),
                ))?,
                None => 0,
            };
            let last = counter.max(floor);
            let seq = last + 1;
            if seq >= MAX_SEQ {
                return Err(TxError::Abort("the audit log is full".into()));
            }
            let v = serde_json::to_vec(&AuditEntry { seq, ..e.clone() })
                .map_err(|err| TxError::Abort(err.to_string()))?;
            tx.insert(COUNTER, seq.to_be_bytes())?;
            tx.insert(seq.to_be_bytes(), &v)?;
            for k in index_keys(&e, seq) {
                tx.insert(k, [])?;
            }
            let indexed = tx.get(INDEXED)?.as_deref().and_then(seq_of).unwrap_or(0);
            if indexed >= last {
                tx.insert(INDEXED, seq.to_be_bytes())?;
            }
            Ok(seq)
        })?;
        self.sync()?;
        Ok(seq)
    }

    /// Indexes the entries written before the indexes existed (module doc), a batch at a time;
    /// returns how many it indexed. Cheap once done: it reads [`INDEXED`] and the last entry.
    pub fn index_audit_log(&self) -> Result<u64, StoreError> {
        let mut done = 0;
        loop {
            let indexed = self
                .audit
                .get(INDEXED)?
                .as_deref()
                .and_then(seq_of)
                .unwrap_or(0);
            if indexed >= self.last_audit_seq()? {
                break;
            }
            let entries = self.audit_after(indexed, BACKFILL_BATCH)?;
            let Some(upto) = entries.last().map(|e| e.seq) else {
                break;
            };
            let mut batch = Batch::default();
            for mut e in entries {
                if e.subscriber.is_none()
                    && let Some(call) = e.call
                {
                    // Stored with the Call's person, as a new entry is.
                    e.subscriber = self.call_head(call)?.and_then(|c| c.subscriber);
                    if e.subscriber.is_some() {
                        let v = serde_json::to_vec(&e).map_err(corrupt)?;
                        batch.insert(e.seq.to_be_bytes(), v);
                    }
                }
                for k in index_keys(&e, e.seq) {
                    batch.insert(k, []);
                }
                done += 1;
            }
            self.audit.apply_batch(batch)?;
            self.audit.transaction(|tx| {
                let now = tx.get(INDEXED)?.as_deref().and_then(seq_of).unwrap_or(0);
                if now < upto {
                    tx.insert(INDEXED, upto.to_be_bytes())?;
                }
                Ok(())
            })?;
            self.sync()?;
        }
        Ok(done)
    }

    /// Up to `limit` entries that match `f`, newest first, with a number below `before`
    /// (`None`: from the newest), reading at most `budget` entries (then
    /// [`AuditPage::next_before`] says where to go on). Reads the index of the person, the
    /// Call or the user when the filter names one (in that order), else the log.
    pub fn audit_search(
        &self,
        f: &AuditFilter,
        before: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> Result<AuditPage, StoreError> {
        let prefix = if let Some(s) = &f.subscriber {
            name_prefix(BY_PERSON, s)
        } else if let Some(c) = f.call {
            Some(call_prefix(c))
        } else if let Some(u) = &f.user {
            name_prefix(BY_USER, u)
        } else {
            None
        };
        let named = f.subscriber.is_some() || f.call.is_some() || f.user.is_some();
        if named && prefix.is_none() {
            return Ok(AuditPage::default()); // a name too long to have been written
        }
        // The highest number worth reading: below `before`, and below where the `to` date
        // falls in the log (numbers are the log's, in every index).
        let mut upper = before.unwrap_or(MAX_SEQ).min(MAX_SEQ);
        if let Some(to) = f.to {
            upper = upper.min(
                self.first_seq_at_or_after(to.checked_add(TIME_SLACK).unwrap_or(Timestamp::MAX))?,
            );
        }
        let stop = f
            .from
            .map(|t| t.checked_sub(TIME_SLACK).unwrap_or(Timestamp::MIN));
        let iter = match &prefix {
            Some(p) => self
                .audit
                .range(with_seq(p.clone(), 0)..with_seq(p.clone(), upper)),
            None => self.audit.range(0u64.to_be_bytes()..upper.to_be_bytes()),
        };
        let mut page = AuditPage::default();
        for item in iter.rev() {
            let (k, v) = item?;
            let seq = match &prefix {
                Some(_) => seq_at_end(&k),
                None => seq_of(&k),
            };
            let Some(seq) = seq else { continue };
            let v = match &prefix {
                // An index key: the entry under its number.
                Some(_) => match self.audit.get(seq.to_be_bytes())? {
                    Some(v) => v,
                    None => continue,
                },
                None => v,
            };
            let mut e: AuditEntry = serde_json::from_slice(&v).map_err(corrupt)?;
            e.seq = seq;
            page.read += 1;
            if stop.is_some_and(|s| e.at < s) {
                page.next_before = None;
                return Ok(page);
            }
            if f.matches(&e) {
                page.entries.push(e);
            }
            if page.entries.len() >= limit || page.read >= budget {
                page.next_before = Some(seq);
                return Ok(page);
            }
        }
        Ok(page)
    }

    /// The lowest sequence number whose entry is at or after `t` (one past the last when
    /// none is), by a binary search over the numbers; exact when times grow with numbers.
    fn first_seq_at_or_after(&self, t: Timestamp) -> Result<u64, StoreError> {
        let last = self.last_audit_seq()?;
        let (mut lo, mut hi) = (1u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // The entry at `mid`, or the next one there is.
            let found = match self
                .audit
                .range(&mid.to_be_bytes()[..]..&ENTRIES_END[..])
                .next()
                .transpose()?
            {
                Some((k, v)) => match seq_of(&k) {
                    Some(seq) => {
                        let e: AuditEntry = serde_json::from_slice(&v).map_err(corrupt)?;
                        Some((seq, e.at))
                    }
                    None => None,
                },
                None => None,
            };
            match found {
                Some((_, at)) if at >= t => hi = mid,
                Some((seq, _)) => lo = seq + 1,
                None => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Up to `limit` entries with a sequence number greater than `after`, oldest first.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(start) = after.checked_add(1).filter(|s| *s < MAX_SEQ) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.audit.range(&start.to_be_bytes()[..]..&ENTRIES_END[..]) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some(seq) = seq_of(&k) else { continue };
            let mut e: AuditEntry = serde_json::from_slice(&v).map_err(corrupt)?;
            e.seq = seq;
            out.push(e);
        }
        Ok(out)
    }

    /// The newest `limit` entries, oldest first.
    pub fn audit_latest(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.audit.range(..ENTRIES_END).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some(seq) = seq_of(&k) else { continue };
            let mut e: AuditEntry = serde_json::from_slice(&v).map_err(corrupt)?;
            e.seq = seq;
            out.push(e);
        }
        out.reverse();
        Ok(out)
    }

    /// The highest sequence number stored (0 if none).
    fn last_audit_seq(&self) -> Result<u64, StoreError> {
        for item in self.audit.range(..ENTRIES_END).rev() {
            let (k, _) = item?;
            if let Some(seq) = seq_of(&k) {
                return Ok(seq);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_each_backend;

    fn entry(user: &str, action: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            user: user.into(),
            action: action.into(),
            call: Some(7),
            subscriber: Some("S-1".into()),
            detail: String::new(),
        }
    }

    on_each_backend! {
    fn sequence_starts_at_one_and_pages(b) {
        let store = b.open();
        assert!(store.audit_after(0, 10).unwrap().is_empty());
        for i in 1..=5 {
            let mut e = entry("åsa", "call.claim");
            e.seq = 99; // ignored
            assert_eq!(store.audit(e).unwrap(), i);
        }
        let all = store.audit_after(0, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(all[0].user, "åsa");
        assert_eq!(all[0].call, Some(7));
        let page = store.audit_after(2, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(store.audit_after(5, 10).unwrap().is_empty());
        assert!(store.audit_after(u64::MAX, 10).unwrap().is_empty());
        assert!(store.audit_after(0, 0).unwrap().is_empty());
        drop(store);
        let store = b.open();
        assert_eq!(store.audit(entry("bo", "session.login")).unwrap(), 6);
    }
    }

    on_each_backend! {
    fn concurrent_auditors_never_collide(b) {
        let store = b.open();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| store.audit(entry(&format!("u{t}"), "call.note")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        assert_eq!(store.audit_after(0, 1000).unwrap().len(), 400);
    }
    }

    fn at(e: AuditEntry, secs: i64) -> AuditEntry {
        AuditEntry {
            at: jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap(),
            ..e
        }
    }

    fn about(user: &str, action: &str, person: Option<&str>, call: Option<u64>) -> AuditEntry {
        AuditEntry {
            subscriber: person.map(str::to_owned),
            call,
            ..entry(user, action)
        }
    }

    fn seqs(p: &AuditPage) -> Vec<u64> {
        p.entries.iter().map(|e| e.seq).collect()
    }

    on_each_backend! {
    fn one_persons_users_and_calls_entries_are_found_by_their_index(b) {
        let store = b.open();
        // Call 7 is S-2's.
        let mut c = crate::store::calls::tests::call(7, 1_700_000_000, crate::model::CallState::Queued);
        c.subscriber = Some("S-2".into());
        store.save_calls(&[c], None).unwrap();
        let log = [
            about("anna", "subscriber.view", Some("S-1"), None), // 1
            about("anna", "call.claim", Some("S-2"), Some(7)),   // 2
            about("bo", "subscriber.view", Some("S-2"), None),   // 3
            about("anna", "session.login", None, None),          // 4
            about("bo", "call.dispatch", None, Some(7)),         // 5: S-2's, by its Call
            about("bo", "subscriber.view", Some("S-10"), None),  // 6: not S-1's
            about("anna", "subscriber.edit", Some("S-1"), None), // 7
        ];
        for (i, e) in log.into_iter().enumerate() {
            store.audit(at(e, i as i64 * 60)).unwrap();
        }
        let find = |f: AuditFilter| store.audit_search(&f, None, 100, 1000).unwrap();
        let person = |s: &str| AuditFilter { subscriber: Some(s.into()), ..Default::default() };
        assert_eq!(seqs(&find(person("S-1"))), [7, 1]);
        assert_eq!(seqs(&find(person("S-2"))), [5, 3, 2]);
        assert_eq!(find(person("S-2")).entries[0].subscriber.as_deref(), Some("S-2"));
        assert_eq!(seqs(&find(person("S-10"))), [6]);
        assert!(find(person("S-")).entries.is_empty());
        // The person's index reads that person's entries only.
        assert_eq!(find(person("S-1")).read, 2);
        let user = AuditFilter { user: Some("anna".into()), ..Default::default() };
        assert_eq!(seqs(&find(user.clone())), [7, 4, 2, 1]);
        assert_eq!(find(user.clone()).read, 4);
        let call = AuditFilter { call: Some(7), ..Default::default() };
        assert_eq!(seqs(&find(call)), [5, 2]);
        let views = AuditFilter { action_prefix: Some("subscriber.".into()), ..Default::default() };
        assert_eq!(seqs(&find(views)), [7, 6, 3, 1]);
        let both = AuditFilter { subscriber: Some("S-1".into()), action_prefix: Some("subscriber.view".into()), ..user };
        assert_eq!(seqs(&find(both)), [1]);
        // Dates: minutes 2 to 4 (entries 3 and 4), over the log and over an index.
        let t = |m: i64| jiff::Timestamp::from_second(1_700_000_000 + m * 60).unwrap();
        let dates = AuditFilter { from: Some(t(2)), to: Some(t(4)), ..Default::default() };
        assert_eq!(seqs(&find(dates.clone())), [4, 3]);
        let bo = AuditFilter { user: Some("bo".into()), ..dates };
        assert_eq!(seqs(&find(bo)), [3]);
        // Pages: two at a time, then on from where the last stopped.
        let all = AuditFilter::default();
        let p1 = store.audit_search(&all, None, 2, 1000).unwrap();
        assert_eq!((seqs(&p1), p1.next_before), (vec![7, 6], Some(6)));
        let p2 = store.audit_search(&all, p1.next_before, 2, 1000).unwrap();
        assert_eq!(seqs(&p2), [5, 4]);
        let last = store.audit_search(&all, Some(2), 2, 1000).unwrap();
        assert_eq!((seqs(&last), last.next_before), (vec![1], None));
        // A budget: at most so many read, and where to go on.
        let login = AuditFilter { action_prefix: Some("session.".into()), ..Default::default() };
        let p = store.audit_search(&login, None, 10, 2).unwrap();
        assert_eq!((seqs(&p), p.next_before, p.read), (vec![], Some(6), 2));
        let p = store.audit_search(&login, p.next_before, 10, 2).unwrap();
        assert_eq!((seqs(&p), p.next_before), (vec![4], Some(4)));
        // The old reads see the entries only.
        assert_eq!(store.audit_after(0, 100).unwrap().len(), 7);
        assert_eq!(store.audit_latest(100).unwrap().len(), 7);
        assert_eq!(store.audit_latest(1).unwrap()[0].seq, 7);
        assert_eq!(store.index_audit_log().unwrap(), 0, "nothing to backfill");
    }
    }

    on_each_backend! {
    fn entries_from_before_the_indexes_are_indexed_at_start(b) {
        let store = b.open();
        // The log as it was written before the indexes: entries and the counter only.
        for seq in 1..=2500u64 {
            let person = format!("S-{}", seq % 50);
            let e = AuditEntry { seq, ..about("anna", "subscriber.view", Some(&person), None) };
            store.audit.insert(seq.to_be_bytes(), serde_json::to_vec(&e).unwrap()).unwrap();
        }
        store.audit.insert(COUNTER, 2500u64.to_be_bytes()).unwrap();
        let f = AuditFilter { subscriber: Some("S-7".into()), ..Default::default() };
        // A new entry before the backfill is indexed, but does not mark the log indexed.
        assert_eq!(store.audit(about("bo", "subscriber.view", Some("S-7"), None)).unwrap(), 2501);
        assert_eq!(seqs(&store.audit_search(&f, None, 100, 10_000).unwrap()), [2501]);
        assert_eq!(store.index_audit_log().unwrap(), 2501);
        let found = store.audit_search(&f, None, 100, 10_000).unwrap();
        assert_eq!(found.entries.len(), 51);
        assert!(found.entries.iter().all(|e| e.subscriber.as_deref() == Some("S-7")));
        assert_eq!(found.read, 51);
        // Done once: the next entries keep it indexed.
        store.audit(about("bo", "subscriber.view", Some("S-7"), None)).unwrap();
        assert_eq!(store.index_audit_log().unwrap(), 0);
        drop(store);
        let store = b.open();
        assert_eq!(store.index_audit_log().unwrap(), 0);
        assert_eq!(store.audit_search(&f, None, 100, 10_000).unwrap().entries.len(), 52);
    }
    }

    /// One million entries (sled): how long the writes, the backfill and the searches take,
    /// and what the indexes cost on disk. `cargo test --lib -- --ignored million --nocapture`.
    #[test]
    #[ignore]
    fn million_entries_stay_quick() {
        use std::time::Instant;
        const N: u64 = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = Instant::now();
        // 2,000 users, 50,000 people; person S-42 gets every 10,000th access (100).
        for chunk in (1..=N).collect::<Vec<_>>().chunks(10_000) {
            store
                .together(|st| {
                    for &i in chunk {
                        let person = if i % 10_000 == 0 {
                            "S-42".to_string()
                        } else {
                            format!("S-{}", 100 + i % 50_000)
                        };
                        let e = at(
                            about(
                                &format!("u{}", i % 2000),
                                "subscriber.view",
                                Some(&person),
                                (i % 3 == 0).then_some(i / 3),
                            ),
                            i as i64,
                        );
                        st.audit(e)?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        println!("write {N} entries with their indexes: {:?}", t.elapsed());
        let size = |d: &std::path::Path| -> u64 { walk(d) };
        fn walk(d: &std::path::Path) -> u64 {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    if m.is_dir() { walk(&e.path()) } else { m.len() }
                })
                .sum()
        }
        println!("on disk: {} MB", size(dir.path()) / 1_000_000);
        let person = AuditFilter {
            subscriber: Some("S-42".into()),
            ..Default::default()
        };
        let t = Instant::now();
        let p = store.audit_search(&person, None, 1000, 100_000).unwrap();
        println!(
            "one person's {} entries: {:?} ({} read)",
            p.entries.len(),
            t.elapsed(),
            p.read
        );
        assert_eq!(p.entries.len(), 100);
        assert_eq!(p.read, 100);
        let day = |d: i64| jiff::Timestamp::from_second(1_700_000_000 + d * 86_400).unwrap();
        let dates = AuditFilter {
            from: Some(day(5)),
            to: Some(day(6)),
            ..Default::default()
        };
        let t = Instant::now();
        let mut n = 0;
        let mut before = None;
        loop {
            let p = store.audit_search(&dates, before, 1000, 100_000).unwrap();
            n += p.entries.len();
            match p.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        println!(
            "a day of the whole log by date ({n} entries, pages of 1000): {:?}",
            t.elapsed()
        );
        assert_eq!(n, 86_400);
        let t = Instant::now();
        let p = store
            .audit_search(
                &AuditFilter {
                    to: Some(day(2)),
                    ..Default::default()
                },
                None,
                100,
                100_000,
            )
            .unwrap();
        println!(
            "the newest 100 before a date: {:?} ({} read)",
            t.elapsed(),
            p.read
        );
        // The backfill of the whole log, as on the first start after an upgrade.
        store.audit.insert(INDEXED, 0u64.to_be_bytes()).unwrap();
        let t = Instant::now();
        assert_eq!(store.index_audit_log().unwrap(), N);
        println!("backfill of {N} entries: {:?}", t.elapsed());
    }
}
