//! Work orders (tree `work_orders`):
//!
//! - `w` + id (u64 big-endian) -> JSON of a [`WorkOrder`], written whole at every change;
//! - `o` + id -> nothing, while the order is open (new or started): the open orders are
//!   loaded at start without reading the closed ones;
//! - `a` + account + `0x00` + id -> nothing: a device's orders;
//! - `s` + account + `0x00` + fault name -> u64 big-endian: the highest journal id of a
//!   Signal of that device and fault already taken into an order, so a Signal triaged again
//!   after a crash (the journal is replayed from the triage cursor) is not counted twice.
//!
//! A change (orders and marks) is one atomic batch, durable when it returns.

use super::{Store, StoreError};
use crate::model::{FaultKind, WorkOrder};

const ORDER: u8 = b'w';
const OPEN: u8 = b'o';
const BY_ACCOUNT: u8 = b'a';
const SEEN: u8 = b's';

use super::id_key as key;

fn account_prefix(account: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 2);
    k.push(BY_ACCOUNT);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k
}

fn account_key(account: &str, id: u64) -> Vec<u8> {
    let mut k = account_prefix(account);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn seen_key(account: &str, fault: FaultKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + 16);
    k.push(SEEN);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.extend_from_slice(fault.as_str().as_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "work_orders",
        detail: e.to_string(),
    }
}

fn decode(v: &[u8]) -> Result<WorkOrder, StoreError> {
    serde_json::from_slice(v).map_err(corrupt)
}

/// The id at the end of an index key.
fn id_at_end(k: &[u8]) -> Result<u64, StoreError> {
    super::id_at_end(k).ok_or_else(|| corrupt("short index key"))
}

/// A Signal taken into an order: the device, the fault and the Signal's journal id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSeen<'a> {
    /// The device's account.
    pub account: &'a str,
    /// The fault.
    pub fault: FaultKind,
    /// The Signal's journal id.
    pub signal: u64,
}

impl Store {
    /// Writes orders (new or changed) and the Signals they took, in one atomic batch,
    /// durably.
    pub fn save_work_orders(
        &self,
        orders: &[WorkOrder],
        seen: Option<FaultSeen<'_>>,
    ) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        for o in orders {
            batch.insert(key(ORDER, o.id), serde_json::to_vec(o).map_err(corrupt)?);
            batch.insert(account_key(&o.account, o.id), []);
            if o.state.is_open() {
                batch.insert(key(OPEN, o.id), []);
            } else {
                batch.remove(key(OPEN, o.id));
            }
        }
        if let Some(s) = seen {
            batch.insert(seen_key(s.account, s.fault), s.signal.to_be_bytes());
        }
        self.work_orders.apply_batch(batch)?;
        self.sync()
    }

    /// One order.
    pub fn work_order(&self, id: u64) -> Result<Option<WorkOrder>, StoreError> {
        self.work_orders
            .get(key(ORDER, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The open orders (new or started), oldest first.
    pub fn open_work_orders(&self) -> Result<Vec<WorkOrder>, StoreError> {
        let mut out = Vec::new();
        for item in self.work_orders.scan_prefix([OPEN]) {
            let (k, _) = item?;
            if let Some(o) = self.work_order(id_at_end(&k)?)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Up to `limit` orders of one device that `keep` accepts, newest first.
    pub fn work_orders_of_account(
        &self,
        account: &str,
        limit: usize,
        mut keep: impl FnMut(&WorkOrder) -> bool,
    ) -> Result<Vec<WorkOrder>, StoreError> {
        let mut out = Vec::new();
        for item in self.work_orders.scan_prefix(account_prefix(account)).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            if let Some(o) = self.work_order(id_at_end(&k)?)? {
                if keep(&o) {
                    out.push(o);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` orders that `keep` accepts, newest first, looking at no more than the
    /// newest `scan` orders.
    pub fn newest_work_orders(
        &self,
        limit: usize,
        scan: usize,
        mut keep: impl FnMut(&WorkOrder) -> bool,
    ) -> Result<Vec<WorkOrder>, StoreError> {
        let mut out = Vec::new();
        for item in self.work_orders.scan_prefix([ORDER]).rev().take(scan) {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item?;
            let o = decode(&v)?;
            if keep(&o) {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The orders made in `[from, to)`, by id (for the statistics of a period): found by a
    /// bisection over the ids (an order's id and making grow together) and read from there
    /// on, not the whole history.
    pub fn work_orders_created_between(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<Vec<WorkOrder>, StoreError> {
        let slack = jiff::SignedDuration::from_hours(1);
        let start = super::first_id_from(
            &self.work_orders,
            ORDER,
            from.checked_sub(slack).unwrap_or(jiff::Timestamp::MIN),
            |v| decode(v).map(|o| o.created_at),
        )?;
        let stop = to.checked_add(slack).unwrap_or(jiff::Timestamp::MAX);
        let mut out = Vec::new();
        for item in self
            .work_orders
            .range(key(ORDER, start)..=key(ORDER, u64::MAX))
        {
            let (_, v) = item?;
            let o = decode(&v)?;
            if o.created_at >= stop {
                break;
            }
            if o.created_at >= from && o.created_at < to {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The highest order id stored (0 if none).
    pub fn max_work_order_id(&self) -> Result<u64, StoreError> {
        super::max_id(&self.work_orders, ORDER)
    }

    /// The highest journal id of a Signal of this device and fault taken into an order (0 if
    /// none).
    pub fn work_order_fault_seen(
        &self,
        account: &str,
        fault: FaultKind,
    ) -> Result<u64, StoreError> {
        match self.work_orders.get(seen_key(account, fault))? {
            Some(v) => id_at_end(&v),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::model::WorkOrderState;
    use crate::store::testing::on_each_backend;

    pub(crate) fn o(id: u64, account: &str, state: WorkOrderState) -> WorkOrder {
        let t = Timestamp::from_second(1_780_000_000).unwrap();
        WorkOrder {
            id,
            account: account.into(),
            subscriber: Some("s1".into()),
            installer: "i".into(),
            fault: FaultKind::LowBattery,
            state,
            created_at: t,
            start_by: t,
            done_by: t,
            started_at: None,
            done_at: None,
            cancelled_at: None,
            cancel_reason: None,
            replaces: None,
            replaced_by: None,
            call: None,
            signal_ids: vec![7],
            repeats: 0,
            restores: 0,
            restored_at: None,
            timeline: Vec::new(),
        }
    }

    on_each_backend! {
    fn created_between_reads_the_period_only(b) {
        let store = b.open();
        let t0 = Timestamp::from_second(1_780_000_000).unwrap();
        let day = jiff::SignedDuration::from_hours(24);
        let orders: Vec<WorkOrder> = (1..=40u64)
            .map(|id| {
                let mut w = o(id, &format!("acc{}", id % 3), WorkOrderState::New);
                w.created_at = t0 + day * (id as i32);
                w
            })
            .collect();
        store.save_work_orders(&orders, None).unwrap();
        let ids = |from: i32, to: i32| -> Vec<u64> {
            store
                .work_orders_created_between(t0 + day * from, t0 + day * to)
                .unwrap()
                .iter()
                .map(|w| w.id)
                .collect()
        };
        assert_eq!(ids(5, 8), [5, 6, 7]);
        assert_eq!(ids(0, 2), [1]);
        assert_eq!(ids(39, 50), [39, 40]);
        assert!(ids(41, 50).is_empty());
        assert_eq!(ids(0, 100).len(), 40);
    }
    }

    on_each_backend! {
    fn orders_round_trip_and_indexes(b) {
        let store = b.open();
        assert_eq!(store.max_work_order_id().unwrap(), 0);
        assert_eq!(
            store
                .work_order_fault_seen("12", FaultKind::LowBattery)
                .unwrap(),
            0
        );
        store
            .save_work_orders(
                &[
                    o(1, "12", WorkOrderState::New),
                    o(2, "123", WorkOrderState::Started),
                    o(3, "12", WorkOrderState::Done),
                ],
                Some(FaultSeen {
                    account: "12",
                    fault: FaultKind::LowBattery,
                    signal: 99,
                }),
            )
            .unwrap();
        assert_eq!(store.max_work_order_id().unwrap(), 3);
        let open: Vec<u64> = store
            .open_work_orders()
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(open, [1, 2]);
        // Account "12" is not a prefix match of "123".
        let of12: Vec<u64> = store
            .work_orders_of_account("12", 10, |_| true)
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(of12, [3, 1]);
        assert_eq!(
            store
                .work_order_fault_seen("12", FaultKind::LowBattery)
                .unwrap(),
            99
        );
        assert_eq!(
            store
                .work_order_fault_seen("12", FaultKind::Tamper)
                .unwrap(),
            0
        );
        // Closing removes it from the open index.
        let mut done = o(1, "12", WorkOrderState::Done);
        done.done_at = Some(done.created_at);
        store
            .save_work_orders(std::slice::from_ref(&done), None)
            .unwrap();
        assert_eq!(store.open_work_orders().unwrap().len(), 1);
        assert_eq!(store.work_order(1).unwrap(), Some(done));
        assert_eq!(store.work_order(9).unwrap(), None);
        let newest: Vec<u64> = store
            .newest_work_orders(2, 100, |o| o.state == WorkOrderState::Done)
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(newest, [3, 1]);
        let bounded = store.newest_work_orders(10, 1, |_| true).unwrap();
        assert_eq!(bounded.len(), 1, "the scan bound holds");
        assert_eq!(
            store.max_work_order_id().unwrap(),
            3,
            "indexes are not orders"
        );
    }
    }
}
