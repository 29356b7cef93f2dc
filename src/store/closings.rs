//! Closings to hand on: a Call's closing that what listens for closed Calls (the care
//! system's journal note) has not taken yet, kept in the `calls` tree beside the Calls so
//! that a closing and its mark are written in ONE atomic batch: `b"h"` + call id (u64
//! big-endian) -> the closing line's index (u32 big-endian), and `b"n"` + call id -> the
//! index of the last closing handed on.
//!
//! A mark is written when a change of a closed Call carries a `Closed` line at an index
//! other than the one last handed on (so writing the same lines again, as a retried batch
//! does, never hands a closing on twice). Taking a mark is one transaction. Without marks a
//! crash between the closing and the note would lose the note; with them the next start
//! (or the next minute) finds it.

use super::kv::TxError;
use super::{CallChange, Store, StoreError, id_key as key};
use crate::model::{CallState, TimelineEvent};

pub(super) const OWED: u8 = b'h';
pub(super) const HANDED: u8 = b'n';

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "calls",
        detail: format!("closing: {e}"),
    }
}

fn index_of(v: &[u8]) -> Option<u32> {
    v.try_into().ok().map(u32::from_be_bytes)
}

impl Store {
    /// Adds to `batch` the mark of `ch`'s closing, if the change closes the Call with a line
    /// not handed on yet.
    pub(super) fn closing_of_change(
        &self,
        batch: &mut super::kv::Batch,
        ch: &CallChange,
    ) -> Result<(), StoreError> {
        let c = &ch.call;
        if c.state != CallState::Closed {
            return Ok(());
        }
        let newest = c
            .timeline
            .iter()
            .rposition(|e| matches!(e.what, TimelineEvent::Closed { .. }))
            .map(|i| ch.first_line.saturating_add(i as u32));
        let Some(line) = newest else {
            return Ok(());
        };
        let handed = self.calls.get(key(HANDED, c.id))?;
        if handed.as_deref().and_then(index_of) == Some(line) {
            return Ok(());
        }
        batch.insert(key(OWED, c.id), line.to_be_bytes());
        Ok(())
    }

    /// The Calls whose closing is still to be handed on, by id.
    pub fn closings_owed(&self) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.scan_prefix([OWED]) {
            let (k, _) = item?;
            let id = k
                .get(1..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("short key"))?;
            out.push(id);
        }
        Ok(out)
    }

    /// Whether Call `id`'s closing is still to be handed on.
    pub fn closing_owed(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.calls.get(key(OWED, id))?.is_some())
    }

    /// Call `id`'s closing was handed on: the mark goes, once. False if there was none.
    /// Durable when it returns.
    pub fn closing_handed_on(&self, id: u64) -> Result<bool, StoreError> {
        let took = self.calls.transaction(|tx| {
            let Some(v) = tx.get(key(OWED, id))? else {
                return Ok(false);
            };
            let line =
                index_of(&v).ok_or_else(|| TxError::Abort("the mark is not 4 bytes".into()))?;
            tx.insert(key(HANDED, id), line.to_be_bytes())?;
            tx.remove(key(OWED, id))?;
            Ok(true)
        })?;
        if took {
            self.sync()?;
        }
        Ok(took)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reviews::tests::{call, closing};
    use crate::model::CallState;
    use crate::store::testing::on_each_backend;

    on_each_backend! {
    fn a_closing_is_owed_until_handed_on_once_and_a_rewrite_does_not_owe_it_again(b) {
        let store = b.open();
        let closed = call(1, 0, CallState::Closed, vec![closing(60, false)]);
        store
            .save_calls(
                &[closed.clone(), call(2, 20, CallState::Queued, Vec::new())],
                None,
            )
            .unwrap();
        assert_eq!(store.closings_owed().unwrap(), vec![1]);
        assert!(store.closing_owed(1).unwrap());
        assert!(!store.closing_owed(2).unwrap());
        assert!(store.closing_handed_on(1).unwrap());
        assert!(!store.closing_handed_on(1).unwrap(), "once");
        assert!(store.closings_owed().unwrap().is_empty());
        // The same lines written again (a retried batch): still handed on.
        store.save_calls(std::slice::from_ref(&closed), None).unwrap();
        assert!(store.closings_owed().unwrap().is_empty());
        // Reopened and closed again: a new closing, owed.
        let mut again = closed.clone();
        again.timeline.push(closing(120, false));
        store.save_calls(std::slice::from_ref(&again), None).unwrap();
        assert_eq!(store.closings_owed().unwrap(), vec![1]);
        // Still there after a reopen of the store.
        drop(store);
        let store = b.open();
        assert_eq!(store.closings_owed().unwrap(), vec![1]);
    }
    }
}
