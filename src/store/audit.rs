//! The audit log: who did what, when.
//!
//! Key = sequence number (u64 big-endian), value = JSON [`AuditEntry`]. The last sequence
//! number given out is kept under the key [`COUNTER`] (4 bytes, so it never reads as an
//! entry); an entry and the counter are written in one transaction, so concurrent writers
//! never get the same number and an entry is visible before a later number is given out.

use super::kv::TxError;

use super::{Store, StoreError};
use crate::model::AuditEntry;

/// Key of the last sequence number given out.
const COUNTER: &[u8] = b"next";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "audit",
        detail: e.to_string(),
    }
}

fn seq_of(k: &[u8]) -> Option<u64> {
    k.try_into().ok().map(u64::from_be_bytes)
}

impl Store {
    /// Appends an entry and returns its sequence number (from 1, one more than the last).
    /// The entry's own `seq` is ignored. Durable when it returns.
    pub fn audit(&self, e: AuditEntry) -> Result<u64, StoreError> {
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
            let seq = counter.max(floor) + 1;
            let v = serde_json::to_vec(&AuditEntry { seq, ..e.clone() })
                .map_err(|err| TxError::Abort(err.to_string()))?;
            tx.insert(COUNTER, seq.to_be_bytes())?;
            tx.insert(seq.to_be_bytes(), v)?;
            Ok(seq)
        })?;
        self.sync()?;
        Ok(seq)
    }

    /// Up to `limit` entries with a sequence number greater than `after`, oldest first.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.audit.range(start.to_be_bytes()..) {
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
        for item in self.audit.iter().rev() {
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
        for item in self.audit.iter().rev() {
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
}
