//! What retention of a subscriber's data ([`crate::model::retention`]) writes, over several
//! trees, each step atomic and durable when it returns and each safe to repeat, so a sweep
//! cut short is finished by the next:
//!
//! 1. [`Store::begin_retention`]: the subscriber's pseudonym, chosen once, in tree `life`
//!    under `a` + subscriber (the only place the two are together, removed at the end);
//! 2. each closed Call of the subscriber rewritten whole with its review
//!    ([`Store::rewrite_closed_call`], one batch): once it names the pseudonym, it is done;
//! 3. the life, its orders and key receipts moved to the pseudonym in one transaction
//!    ([`Store::move_life`]);
//! 4. the card and the response plans deleted ([`Store::delete_subscriber`],
//!    [`Store::delete_plans`]);
//! 5. [`Store::end_retention`]: the pseudonym forgotten.
//!
//! The undelivered care-system events about the subscriber are withdrawn through
//! [`Store::outbox_withdraw`] (their bodies hold the personal number).

use super::kv::TxError;
use super::{Store, StoreError, id_key};
use crate::model::keys::Receipt;
use crate::model::life::Life;
use crate::model::order::Order;
use crate::model::review::Review;
use crate::model::{Call, CallState};

/// `a` + subscriber -> the pseudonym (UTF-8), while the subscriber's retention is under way.
const UNDER_WAY: u8 = b'a';

fn corrupt(tree: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    }
}

fn prefixed(prefix: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.len() + 1);
    k.push(prefix);
    k.extend_from_slice(s.as_bytes());
    k
}

/// The life tree's keys of a subscriber (see `store::life`).
fn by_subscriber(subscriber: &str, what: u8, id: u64) -> Vec<u8> {
    let mut k = prefixed(b's', subscriber);
    k.push(0);
    k.push(what);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// A Call's timeline line key (see `store::calls`).
fn line_key(id: u64, index: u32) -> [u8; 13] {
    let mut k = [b't'; 13];
    k[1..9].copy_from_slice(&id.to_be_bytes());
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

impl Store {
    /// The subscriber's pseudonym for retention: the one chosen before if a retention of
    /// theirs is under way, otherwise `fresh`, stored (durable) before it is returned.
    pub fn begin_retention(&self, subscriber: &str, fresh: &str) -> Result<String, StoreError> {
        let k = prefixed(UNDER_WAY, subscriber);
        loop {
            if let Some(v) = self.life.get(&k)? {
                return String::from_utf8(v.to_vec()).map_err(|e| corrupt("life", e));
            }
            let swapped =
                self.life
                    .compare_and_swap(&k, None::<&[u8]>, Some(fresh.as_bytes().to_vec()))?;
            if swapped.is_ok() {
                self.sync()?;
                return Ok(fresh.to_owned());
            }
        }
    }

    /// The retentions under way (cut short): subscriber and pseudonym.
    pub fn retentions_under_way(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.life.scan_prefix([UNDER_WAY]) {
            let (k, v) = item?;
            let sub = std::str::from_utf8(&k[1..]).map_err(|e| corrupt("life", e))?;
            let pseudonym = std::str::from_utf8(&v).map_err(|e| corrupt("life", e))?;
            out.push((sub.to_owned(), pseudonym.to_owned()));
        }
        Ok(out)
    }

    /// Forgets the subscriber's pseudonym (their retention is done). Durable.
    pub fn end_retention(&self, subscriber: &str) -> Result<(), StoreError> {
        self.life.remove(prefixed(UNDER_WAY, subscriber))?;
        self.sync()
    }

    /// Every Call's head (without its timeline), open and closed, in id order: for a sweep
    /// that looks for one person's Calls.
    pub fn call_heads(&self) -> Result<Vec<Call>, StoreError> {
        let mut out = Vec::new();
        for prefix in [b'o', b'c'] {
            for item in self.calls.scan_prefix([prefix]) {
                let (k, v) = item?;
                if k.len() != 9 {
                    // `cursor` also starts with `c`.
                    continue;
                }
                out.push(serde_json::from_slice(&v).map_err(|e| corrupt("calls", e))?);
            }
        }
        out.sort_unstable_by_key(|c: &Call| c.id);
        Ok(out)
    }

    /// Rewrites a closed Call whole (its head and every timeline line under its index) and,
    /// if given, its review, in one atomic batch. Refused for a Call that is not closed, or
    /// that is no longer closed in the store (the Call writer owns open Calls). Durable.
    pub fn rewrite_closed_call(
        &self,
        call: &Call,
        review: Option<&Review>,
    ) -> Result<(), StoreError> {
        if call.state != CallState::Closed || !self.calls.contains_key(id_key(b'c', call.id))? {
            return Err(corrupt(
                "calls",
                format!("Call {} is not closed: not rewritten", call.id),
            ));
        }
        let mut batch = super::kv::Batch::default();
        for (i, line) in call.timeline.iter().enumerate() {
            let index = u32::try_from(i).map_err(|e| corrupt("calls", e))?;
            let v = serde_json::to_vec(line).map_err(|e| corrupt("calls", e))?;
            batch.insert(line_key(call.id, index), v);
        }
        let head = Call {
            timeline: Vec::new(),
            ..call.clone()
        };
        let v = serde_json::to_vec(&head).map_err(|e| corrupt("calls", e))?;
        batch.insert(id_key(b'c', call.id), v);
        if let Some(r) = review {
            let v = serde_json::to_vec(r).map_err(|e| corrupt("calls", e))?;
            batch.insert(id_key(b'r', r.call), v);
        }
        self.calls.apply_batch(batch)?;
        self.sync()
    }

    /// Moves `subscriber`'s life, orders and key receipts to `life.subscriber` (their
    /// pseudonym) as given, in one transaction: the new records and indexes written, the old
    /// ones and the orders' care-system ids removed. Refused (nothing written) when the
    /// stored life is no longer `before` (it changed meanwhile). Durable.
    pub fn move_life(
        &self,
        subscriber: &str,
        before: &Life,
        life: &Life,
        orders: &[Order],
        old_external: &[String],
        receipts: &[Receipt],
    ) -> Result<(), StoreError> {
        let old_key = prefixed(b'l', subscriber);
        let expected = serde_json::to_vec(before).map_err(|e| corrupt("life", e))?;
        let new_life = serde_json::to_vec(life).map_err(|e| corrupt("life", e))?;
        let to = life.subscriber.as_str();
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for o in orders {
            let v = serde_json::to_vec(o).map_err(|e| corrupt("life", e))?;
            writes.push((id_key(b'o', o.id).to_vec(), Some(v)));
            writes.push((by_subscriber(subscriber, b'o', o.id), None));
            writes.push((by_subscriber(to, b'o', o.id), Some(Vec::new())));
        }
        for ext in old_external {
            writes.push((prefixed(b'x', ext), None));
        }
        for r in receipts {
            let v = serde_json::to_vec(r).map_err(|e| corrupt("life", e))?;
            writes.push((id_key(b'r', r.id).to_vec(), Some(v)));
            writes.push((by_subscriber(subscriber, b'r', r.id), None));
            writes.push((by_subscriber(to, b'r', r.id), Some(Vec::new())));
        }
        writes.push((old_key.clone(), None));
        writes.push((prefixed(b'l', to), Some(new_life)));
        self.life.transaction(|tx| {
            let now = tx.get(&old_key)?;
            if now.as_deref() != Some(expected.as_slice()) {
                return Err(TxError::Abort(
                    "the life changed during its retention".into(),
                ));
            }
            for (k, v) in &writes {
                match v {
                    Some(v) => tx.insert(k, v)?,
                    None => tx.remove(k)?,
                }
            }
            Ok(())
        })?;
        self.sync()
    }

    /// The trees (by name) in which `needle` appears in a key or a value as stored now: a
    /// check that a person's words are gone after their retention. The journal is not
    /// searched (its entries are compressed; its Signals carry the device's account, the
    /// frame and the subscriber's id, never a name). Reads every record: slow on a large
    /// store. (On sled a removed value may stay in the log files until sled rewrites their
    /// segment; on PostgreSQL a dead row until it is vacuumed.)
    pub fn trees_holding(&self, needle: &[u8]) -> Result<Vec<&'static str>, StoreError> {
        let found = |v: &[u8]| !needle.is_empty() && v.windows(needle.len()).any(|w| w == needle);
        let trees = [
            ("devices", &self.devices),
            ("last_heard", &self.last_heard),
            ("subscribers", &self.subscribers),
            ("users", &self.users),
            ("sessions", &self.sessions),
            ("audit", &self.audit),
            ("calls", &self.calls),
            ("conversations", &self.conversations),
            ("directory", &self.directory),
            ("dispatches", &self.dispatches),
            ("incidents", &self.incidents),
            ("integrations", &self.integrations),
            ("outbox", &self.outbox),
            ("work_orders", &self.work_orders),
            ("plans", &self.plans),
            ("life", &self.life),
        ];
        let mut out = Vec::new();
        for (name, tree) in trees {
            for item in tree.iter() {
                let (k, v) = item?;
                if found(&k) || found(&v) {
                    out.push(name);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Deletes subscriber `id`'s card from the register. Whether there was one. Durable.
    pub fn delete_subscriber(&self, id: &str) -> Result<bool, StoreError> {
        let had = self.subscribers.contains_key(id.as_bytes())?;
        if had {
            self.subscribers.remove(id.as_bytes())?;
            self.sync()?;
        }
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::CallState;
    use crate::model::life::{Life, LifeStatus};
    use crate::store::calls::tests::call;
    use crate::store::outbox::tests::rec;
    use crate::store::testing::on_each_backend;

    on_each_backend! {
    fn only_a_closed_call_is_rewritten_and_a_life_moves_only_as_it_was(b) {
        let store = b.open();
        let open = call(1, 100, CallState::Claimed);
        let mut closed = call(2, 100, CallState::Closed);
        store.save_calls(&[open.clone(), closed.clone()], None).unwrap();
        // The Call writer owns open Calls: never rewritten here.
        assert!(store.rewrite_closed_call(&open, None).is_err());
        closed.subscriber = Some("anon-1".into());
        store.rewrite_closed_call(&closed, None).unwrap();
        assert_eq!(store.call(2).unwrap().unwrap(), closed);
        assert_eq!(store.call(1).unwrap().unwrap(), open);
        assert_eq!(store.call_heads().unwrap().len(), 2);

        let t = jiff::Timestamp::UNIX_EPOCH;
        let mut life = Life::ordered("S-1", None, t, "t");
        life.status = LifeStatus::Ended;
        store
            .update_life::<crate::store::StoreError>("S-1", |_| Ok(life.clone()))
            .unwrap();
        let mut moved = life.clone();
        moved.subscriber = "anon-1".into();
        // Changed since it was read: nothing moves.
        let mut stale = life.clone();
        stale.note(t, "t", "something else");
        assert!(store.move_life("S-1", &stale, &moved, &[], &[], &[]).is_err());
        assert_eq!(store.life("S-1").unwrap(), Some(life.clone()));
        store.move_life("S-1", &life, &moved, &[], &[], &[]).unwrap();
        assert_eq!(store.life("S-1").unwrap(), None);
        assert_eq!(store.life("anon-1").unwrap(), Some(moved));
    }
    }

    on_each_backend! {
    fn an_undelivered_delivery_is_withdrawn_once_and_a_delivered_one_never(b) {
        let store = b.open();
        let mut delivered = rec(2, "care", "call/7");
        delivered.delivered_at = Some(jiff::Timestamp::UNIX_EPOCH);
        store
            .outbox_add(&[
                (rec(1, "care", "call/7"), b"pnr".to_vec()),
                (delivered, b"pnr".to_vec()),
            ])
            .unwrap();
        assert!(store.outbox_withdraw(1, "withdrawn: retention").unwrap());
        assert!(!store.outbox_withdraw(1, "withdrawn: retention").unwrap());
        assert!(!store.outbox_withdraw(2, "withdrawn: retention").unwrap());
        assert!(!store.outbox_withdraw(3, "withdrawn: retention").unwrap());
        assert_eq!(store.outbox_next_pending("care").unwrap(), None);
        assert_eq!(store.outbox_body(1).unwrap(), None);
        assert_eq!(store.outbox_body(2).unwrap(), Some(b"pnr".to_vec()));
        let r = store.outbox_record(1).unwrap().unwrap();
        assert_eq!(r.last_error.as_deref(), Some("withdrawn: retention"));
        assert_eq!(store.outbox_of_subject("call/7", 10).unwrap().len(), 2);
    }
    }

    on_each_backend! {
    fn a_retention_keeps_its_pseudonym_until_it_ends(b) {
        let store = b.open();
        assert_eq!(store.begin_retention("S-1", "anon-1").unwrap(), "anon-1");
        // Begun again after a crash: the same pseudonym, never a second one.
        assert_eq!(store.begin_retention("S-1", "anon-2").unwrap(), "anon-1");
        assert_eq!(
            store.retentions_under_way().unwrap(),
            [("S-1".to_owned(), "anon-1".to_owned())]
        );
        store.end_retention("S-1").unwrap();
        assert!(store.retentions_under_way().unwrap().is_empty());
        // The life tree's other keys are not taken for retentions.
        assert!(store.lives().unwrap().is_empty());
    }
    }
}
