//! The subscribers' life with the alarm (tree `life`): orders, key receipts and each
//! subscriber's [`Life`].
//!
//! - `o` + id (u64 big-endian) -> JSON of an [`Order`]; `O` + id -> nothing while it is open;
//!   `x` + the care system's id -> the order id (an order arriving twice is stored once);
//!   `s` + subscriber + `0x00` + `o` + id -> nothing: a subscriber's orders.
//! - `r` + id -> JSON of a [`Receipt`]; `R` + id -> nothing while it is pending;
//!   `s` + subscriber + `0x00` + `r` + id -> nothing: a subscriber's receipts.
//! - `l` + subscriber -> JSON of the subscriber's [`Life`].
//! - `n` + `o` / `r` -> the last order / receipt id given out.
//!
//! Each write is one atomic batch, compare-and-swap or transaction, durable when it returns.

use super::kv::TxError;
use super::{Store, StoreError};
use crate::model::keys::Receipt;
use crate::model::life::Life;
use crate::model::order::Order;

const ORDER: u8 = b'o';
const OPEN_ORDER: u8 = b'O';
const EXTERNAL: u8 = b'x';
const RECEIPT: u8 = b'r';
const PENDING: u8 = b'R';
const BY_SUBSCRIBER: u8 = b's';
const LIFE: u8 = b'l';
const LAST_ID: u8 = b'n';

use super::id_key as key;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "life",
        detail: e.to_string(),
    }
}

fn prefixed(prefix: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.len() + 1);
    k.push(prefix);
    k.extend_from_slice(s.as_bytes());
    k
}

fn subscriber_prefix(subscriber: &str, what: u8) -> Vec<u8> {
    let mut k = prefixed(BY_SUBSCRIBER, subscriber);
    k.push(0);
    k.push(what);
    k
}

fn subscriber_key(subscriber: &str, what: u8, id: u64) -> Vec<u8> {
    let mut k = subscriber_prefix(subscriber, what);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn id_at_end(k: &[u8]) -> Result<u64, StoreError> {
    super::id_at_end(k).ok_or_else(|| corrupt("short index key"))
}

/// Whether an order was new or had arrived before (by the care system's id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New(Order),
    /// The care system sent it before: the order as stored then.
    Known(Order),
}

impl Store {
    fn next_life_id(&self, what: u8) -> Result<u64, StoreError> {
        let next = self.life.update_and_fetch([LAST_ID, what], |old| {
            let last = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some(last.saturating_add(1).to_be_bytes().to_vec())
        })?;
        next.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt("the last id is not 8 bytes"))
    }

    /// Stores a new order made by `make` from its id, once: an order whose care-system id
    /// arrived before is not stored again ([`Stored::Known`]). The order, its indexes and
    /// its care-system id are written in one transaction, so a crash never leaves an id
    /// without its order. Durable when it returns.
    pub fn add_order(&self, make: impl FnOnce(u64) -> Order) -> Result<Stored, StoreError> {
        let id = self.next_life_id(ORDER)?;
        let order = make(id);
        let Some(ext) = order.external_id.clone() else {
            self.save_order(&order)?;
            return Ok(Stored::New(order));
        };
        let ext_key = prefixed(EXTERNAL, &ext);
        let value = serde_json::to_vec(&order).map_err(corrupt)?;
        let known = self.life.transaction(|tx| {
            if let Some(v) = tx.get(&ext_key)? {
                let known = <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| TxError::Abort("a care-system id is not 8 bytes".into()))?;
                return Ok(Some(known));
            }
            tx.insert(&ext_key, id.to_be_bytes())?;
            tx.insert(key(ORDER, id), &value)?;
            tx.insert(subscriber_key(&order.subscriber, ORDER, id), [])?;
            if order.is_open() {
                tx.insert(key(OPEN_ORDER, id), [])?;
            }
            Ok(None)
        })?;
        match known {
            Some(known) => self.order(known)?.map(Stored::Known).ok_or_else(|| {
                corrupt(format!(
                    "order {known} of a known care-system id is missing"
                ))
            }),
            None => {
                self.sync()?;
                Ok(Stored::New(order))
            }
        }
    }

    /// Writes an order (new or changed). Durable when it returns.
    pub fn save_order(&self, o: &Order) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.insert(key(ORDER, o.id), serde_json::to_vec(o).map_err(corrupt)?);
        batch.insert(subscriber_key(&o.subscriber, ORDER, o.id), []);
        if o.is_open() {
            batch.insert(key(OPEN_ORDER, o.id), []);
        } else {
            batch.remove(key(OPEN_ORDER, o.id));
        }
        self.life.apply_batch(batch)?;
        self.sync()
    }

    /// One order.
    pub fn order(&self, id: u64) -> Result<Option<Order>, StoreError> {
        self.life
            .get(key(ORDER, id))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// The open orders, oldest first.
    pub fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        let mut out = Vec::new();
        for item in self.life.scan_prefix([OPEN_ORDER]) {
            let (k, _) = item?;
            if let Some(o) = self.order(id_at_end(&k)?)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// A subscriber's orders, newest first.
    pub fn orders_of(&self, subscriber: &str) -> Result<Vec<Order>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .life
            .scan_prefix(subscriber_prefix(subscriber, ORDER))
            .rev()
        {
            let (k, _) = item?;
            if let Some(o) = self.order(id_at_end(&k)?)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Stores a new receipt made by `make` from its id. Durable when it returns.
    pub fn add_receipt(&self, make: impl FnOnce(u64) -> Receipt) -> Result<Receipt, StoreError> {
        let r = make(self.next_life_id(RECEIPT)?);
        self.save_receipt(&r)?;
        Ok(r)
    }

    /// Writes a receipt (new or changed). Durable when it returns.
    pub fn save_receipt(&self, r: &Receipt) -> Result<(), StoreError> {
        let mut batch = super::kv::Batch::default();
        batch.insert(key(RECEIPT, r.id), serde_json::to_vec(r).map_err(corrupt)?);
        batch.insert(subscriber_key(&r.subscriber, RECEIPT, r.id), []);
        if r.state == crate::model::keys::ReceiptState::Pending {
            batch.insert(key(PENDING, r.id), []);
        } else {
            batch.remove(key(PENDING, r.id));
        }
        self.life.apply_batch(batch)?;
        self.sync()
    }

    /// One receipt.
    pub fn receipt(&self, id: u64) -> Result<Option<Receipt>, StoreError> {
        self.life
            .get(key(RECEIPT, id))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// A subscriber's receipts, oldest first.
    pub fn receipts_of(&self, subscriber: &str) -> Result<Vec<Receipt>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .life
            .scan_prefix(subscriber_prefix(subscriber, RECEIPT))
        {
            let (k, _) = item?;
            if let Some(r) = self.receipt(id_at_end(&k)?)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The pending receipts of every subscriber, oldest first.
    pub fn pending_receipts(&self) -> Result<Vec<Receipt>, StoreError> {
        let mut out = Vec::new();
        for item in self.life.scan_prefix([PENDING]) {
            let (k, _) = item?;
            if let Some(r) = self.receipt(id_at_end(&k)?)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A subscriber's life, if an order ever made one.
    pub fn life(&self, subscriber: &str) -> Result<Option<Life>, StoreError> {
        self.life
            .get(prefixed(LIFE, subscriber))?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// Changes a subscriber's life with `change` (given the life as stored, or none),
    /// atomically against other changes of the same life: `change` may run more than once
    /// and returns the life to store, or an error that stores nothing. Durable when it
    /// returns.
    pub fn update_life<E: From<StoreError>>(
        &self,
        subscriber: &str,
        mut change: impl FnMut(Option<Life>) -> Result<Life, E>,
    ) -> Result<Life, E> {
        let k = prefixed(LIFE, subscriber);
        loop {
            let old = self.life.get(&k).map_err(E::from)?;
            let before = old
                .as_ref()
                .map(|v| serde_json::from_slice::<Life>(v).map_err(corrupt))
                .transpose()
                .map_err(E::from)?;
            let after = change(before)?;
            let bytes = serde_json::to_vec(&after).map_err(|e| E::from(corrupt(e)))?;
            let swapped = self
                .life
                .compare_and_swap(&k, old.as_deref(), Some(bytes))
                .map_err(E::from)?;
            if swapped.is_ok() {
                self.sync().map_err(E::from)?;
                return Ok(after);
            }
        }
    }

    /// Every subscriber's life, in subscriber order (for the billing export).
    pub fn lives(&self) -> Result<Vec<Life>, StoreError> {
        let mut out = Vec::new();
        for item in self.life.scan_prefix([LIFE]) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(corrupt)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(super) mod tests;
