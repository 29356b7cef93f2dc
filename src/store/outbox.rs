//! The escalation outbox: webhook deliveries waiting for, or given, an acknowledgement.
//!
//! Keys (ids are u64 big-endian, given in enqueue order, so key order is age order):
//! - `b"d"` + id -> JSON of an [`OutboxRecord`] (the delivery's state, rewritten after every
//!   attempt; no body, no secret);
//! - `b"b"` + id -> the body, the exact bytes sent at every attempt (written once, so the
//!   signature over it is stable; removed some time after delivery, see
//!   [`Store::outbox_prune_bodies`]);
//! - `b"p"` + endpoint + `0x00` + id -> nothing: the endpoint's pending deliveries, oldest
//!   first (removed in the same batch that marks the delivery delivered);
//! - `b"s"` + subject + `0x00` + id -> nothing: the deliveries about one subject (an incident,
//!   a work order);
//! - `b"r"` + delivered-at ms (i64 big-endian, offset to sort) + id -> nothing: delivered
//!   deliveries whose body is still kept, oldest first.
//!
//! Endpoint names and subjects contain no NUL byte (checked by the outbox). Writes are atomic
//! batches, durable when they return.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

const RECORD: u8 = b'd';
const BODY: u8 = b'b';
const PENDING: u8 = b'p';
const SUBJECT: u8 = b's';
const RETAINED: u8 = b'r';

/// One delivery of one event to one endpoint, as stored (without its body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Delivery id (sent as `X-Vakt-Delivery`), from 1.
    pub id: u64,
    /// The endpoint's configured name.
    pub endpoint: String,
    /// The kind of recipient (`telecom`, `care_provider`, `installer`).
    pub recipient_kind: String,
    /// The recipient's key (telecom operator, care provider id, installer).
    pub recipient: String,
    /// Event name (sent as `X-Vakt-Event`), e.g. `incident.opened`.
    pub event: String,
    /// What it is about, e.g. `incident/12` (for the console's lists).
    pub subject: String,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the last attempt was made.
    #[serde(default)]
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (`None`: at once, or delivered).
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed (short; no secret, no body).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the endpoint acknowledged it (2xx). Never sent again after that.
    #[serde(default)]
    pub delivered_at: Option<Timestamp>,
    /// Size of the body in bytes.
    pub body_bytes: u32,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "outbox",
        detail: e.to_string(),
    }
}

use super::id_key as key;

/// `tag` + name + NUL (the prefix of an index).
fn prefix(tag: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(tag);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn named_key(tag: u8, name: &str, id: u64) -> Vec<u8> {
    let mut k = prefix(tag, name);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn retained_key(delivered_at: Timestamp, id: u64) -> [u8; 17] {
    let mut k = [RETAINED; 17];
    // Flip the sign bit so that negative times sort before positive ones.
    let ms = (delivered_at.as_millisecond() as u64) ^ (1 << 63);
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The id at the end of an index key.
fn tail_id(k: &[u8]) -> Result<u64, StoreError> {
    super::id_at_end(k).ok_or_else(|| corrupt("short index key"))
}

fn decode(v: &[u8]) -> Result<OutboxRecord, StoreError> {
    serde_json::from_slice(v).map_err(corrupt)
}

impl Store {
    /// Adds new deliveries (each with its body) in one atomic batch, durable when it returns.
    pub fn outbox_add(&self, deliveries: &[(OutboxRecord, Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        for (r, body) in deliveries {
            batch.insert(key(RECORD, r.id), serde_json::to_vec(r).map_err(corrupt)?);
            batch.insert(key(BODY, r.id), body.as_slice());
            if r.delivered_at.is_none() {
                batch.insert(named_key(PENDING, &r.endpoint, r.id), []);
            }
            batch.insert(named_key(SUBJECT, &r.subject, r.id), []);
        }
        self.outbox.apply_batch(batch)?;
        self.sync()
    }

    /// Writes a delivery's new state (after an attempt). A delivery with `delivered_at`
    /// leaves the pending index in the same atomic batch. Durable when it returns.
    pub fn outbox_save(&self, r: &OutboxRecord) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.insert(key(RECORD, r.id), serde_json::to_vec(r).map_err(corrupt)?);
        if let Some(at) = r.delivered_at {
            batch.remove(named_key(PENDING, &r.endpoint, r.id));
            batch.insert(retained_key(at, r.id), []);
        }
        self.outbox.apply_batch(batch)?;
        self.sync()
    }

    /// One delivery.
    pub fn outbox_record(&self, id: u64) -> Result<Option<OutboxRecord>, StoreError> {
        self.outbox
            .get(key(RECORD, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The body of a delivery (the exact bytes sent), if it is still kept.
    pub fn outbox_body(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.outbox.get(key(BODY, id))?.map(|v| v.to_vec()))
    }

    /// The oldest delivery of `endpoint` not yet acknowledged.
    pub fn outbox_next_pending(&self, endpoint: &str) -> Result<Option<OutboxRecord>, StoreError> {
        match self.outbox.scan_prefix(prefix(PENDING, endpoint)).next() {
            Some(item) => {
                let (k, _) = item?;
                let id = tail_id(&k)?;
                self.outbox_record(id)?
                    .map(Some)
                    .ok_or_else(|| corrupt(format!("pending delivery {id} has no record")))
            }
            None => Ok(None),
        }
    }

    /// Every delivery not yet acknowledged, by endpoint, oldest first (at most `limit`).
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.scan_prefix([PENDING]).take(limit) {
            let (k, _) = item?;
            if let Some(r) = self.outbox_record(tail_id(&k)?)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// How many deliveries each endpoint has not had acknowledged (endpoints with none are
    /// left out).
    pub fn outbox_pending_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for item in self.outbox.scan_prefix([PENDING]) {
            let (k, _) = item?;
            let name = k
                .len()
                .checked_sub(9)
                .and_then(|end| k.get(1..end))
                .ok_or_else(|| corrupt("short pending key"))?;
            let name = String::from_utf8_lossy(name);
            match out.last_mut() {
                Some((n, c)) if *n == name => *c += 1,
                _ => out.push((name.into_owned(), 1)),
            }
        }
        Ok(out)
    }

    /// The deliveries about `subject`, oldest first (at most `limit`).
    pub fn outbox_of_subject(
        &self,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .outbox
            .scan_prefix(prefix(SUBJECT, subject))
            .take(limit)
        {
            let (k, _) = item?;
            if let Some(r) = self.outbox_record(tail_id(&k)?)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Deliveries newest first that `keep` accepts: at most `limit` of them, looking at no
    /// more than `max_scan` records.
    pub fn outbox_newest(
        &self,
        mut keep: impl FnMut(&OutboxRecord) -> bool,
        limit: usize,
        max_scan: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.scan_prefix([RECORD]).rev().take(max_scan) {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item?;
            let r = decode(&v)?;
            if keep(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Withdraws an undelivered delivery: it leaves its endpoint's pending list and its body
    /// (the event, with the personal data) is removed; the record stays, with `why` as its
    /// last error and no next attempt. A delivered one is left as it is. Whether it was
    /// withdrawn now. Durable.
    pub fn outbox_withdraw(&self, id: u64, why: &str) -> Result<bool, StoreError> {
        // One transaction: a delivery acknowledged at the same moment is never withdrawn
        // (nor its acknowledgement overwritten).
        let withdrawn = self.outbox.transaction(|tx| {
            let Some(v) = tx.get(key(RECORD, id))? else {
                return Ok(false);
            };
            let mut r = decode(&v).map_err(super::kv::TxError::Store)?;
            let pending = named_key(PENDING, &r.endpoint, id);
            if r.delivered_at.is_some() || tx.get(&pending)?.is_none() {
                return Ok(false);
            }
            r.next_attempt_at = None;
            r.last_error = Some(why.to_owned());
            let v = serde_json::to_vec(&r).map_err(|e| super::kv::TxError::Store(corrupt(e)))?;
            tx.remove(&pending)?;
            tx.remove(key(BODY, id))?;
            tx.insert(key(RECORD, id), v)?;
            Ok(true)
        })?;
        if withdrawn {
            self.sync()?;
        }
        Ok(withdrawn)
    }

    /// Whether the delivery is still waiting to be delivered (not delivered, given up or
    /// withdrawn).
    pub fn outbox_is_pending(&self, r: &OutboxRecord) -> Result<bool, StoreError> {
        Ok(r.delivered_at.is_none()
            && self
                .outbox
                .contains_key(named_key(PENDING, &r.endpoint, r.id))?)
    }

    /// The highest delivery id stored (0 if none).
    pub fn outbox_max_id(&self) -> Result<u64, StoreError> {
        super::max_id(&self.outbox, RECORD)
    }

    /// Removes the bodies (they hold personal data) of at most `max` deliveries acknowledged
    /// before `before`, oldest first; the records stay. Returns how many were removed,
    /// durably.
    pub fn outbox_prune_bodies(&self, before: Timestamp, max: usize) -> Result<usize, StoreError> {
        let end = retained_key(before, 0);
        let mut batch = super::kv::Batch::default();
        let mut n = 0;
        for item in self.outbox.range(&[RETAINED][..]..&end[..]).take(max) {
            let (k, _) = item?;
            batch.remove(key(BODY, tail_id(&k)?));
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            self.outbox.apply_batch(batch)?;
            self.sync()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::testing::on_each_backend;

    pub(crate) fn rec(id: u64, endpoint: &str, subject: &str) -> OutboxRecord {
        OutboxRecord {
            id,
            endpoint: endpoint.into(),
            recipient_kind: "telecom".into(),
            recipient: "Telia".into(),
            event: "incident.opened".into(),
            subject: subject.into(),
            created_at: Timestamp::from_second(1_800_000_000 + id as i64).unwrap(),
            attempts: 0,
            last_attempt_at: None,
            next_attempt_at: None,
            last_error: None,
            delivered_at: None,
            body_bytes: 2,
        }
    }

    on_each_backend! {
    fn pending_index_follows_deliveries(b) {
        let store = b.open();
        assert_eq!(store.outbox_max_id().unwrap(), 0);
        assert_eq!(store.outbox_next_pending("a").unwrap(), None);
        store
            .outbox_add(&[
                (rec(1, "a", "incident/1"), b"{1}".to_vec()),
                (rec(2, "ab", "incident/1"), b"{2}".to_vec()),
                (rec(3, "a", "incident/2"), b"{3}".to_vec()),
            ])
            .unwrap();
        assert_eq!(store.outbox_max_id().unwrap(), 3);
        // "a" is not a prefix match for "ab".
        assert_eq!(store.outbox_next_pending("a").unwrap().unwrap().id, 1);
        assert_eq!(store.outbox_next_pending("ab").unwrap().unwrap().id, 2);
        assert_eq!(
            store.outbox_pending_counts().unwrap(),
            vec![("a".to_string(), 2), ("ab".to_string(), 1)]
        );
        assert_eq!(store.outbox_body(3).unwrap().unwrap(), b"{3}");

        let mut r = rec(1, "a", "incident/1");
        r.attempts = 1;
        r.last_error = Some("HTTP 500".into());
        store.outbox_save(&r).unwrap();
        assert_eq!(store.outbox_next_pending("a").unwrap(), Some(r.clone()));
        r.attempts = 2;
        r.delivered_at = Some(Timestamp::from_second(1_800_000_100).unwrap());
        store.outbox_save(&r).unwrap();
        assert_eq!(store.outbox_next_pending("a").unwrap().unwrap().id, 3);
        assert_eq!(store.outbox_pending(10).unwrap().len(), 2);

        let of1: Vec<u64> = store
            .outbox_of_subject("incident/1", 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(of1, [1, 2]);
        let newest: Vec<u64> = store
            .outbox_newest(|r| r.delivered_at.is_none(), 10, 100)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(newest, [3, 2]);
        assert_eq!(store.outbox_newest(|_| true, 1, 100).unwrap()[0].id, 3);

        // Bodies of delivered deliveries go after their time; pending ones stay.
        let before = Timestamp::from_second(1_800_000_100).unwrap();
        assert_eq!(store.outbox_prune_bodies(before, 10).unwrap(), 0);
        let later = Timestamp::from_second(1_800_000_101).unwrap();
        assert_eq!(store.outbox_prune_bodies(later, 10).unwrap(), 1);
        assert_eq!(store.outbox_body(1).unwrap(), None);
        assert!(
            store.outbox_record(1).unwrap().is_some(),
            "the record stays"
        );
        assert!(store.outbox_body(2).unwrap().is_some());
        assert_eq!(store.outbox_prune_bodies(later, 10).unwrap(), 0);

        drop(store);
        let store = b.open();
        assert_eq!(store.outbox_max_id().unwrap(), 3);
        assert_eq!(store.outbox_next_pending("a").unwrap().unwrap().id, 3);
    }
    }

    #[test]
    fn negative_times_sort_first() {
        let a = retained_key(Timestamp::from_second(-5).unwrap(), 9);
        let b = retained_key(Timestamp::from_second(5).unwrap(), 1);
        assert!(a < b);
    }
}
