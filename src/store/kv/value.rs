//! What the trees' two backends exchange with their callers: values, a failed
//! compare-and-swap, why a transaction stopped, the bounds of a scan. In a file of its own so
//! that the PostgreSQL backend ([`crate::store::pg::kv`]) and the trees over it
//! ([`super`]) both depend on it, and not on each other.

use std::ops::{Bound, Deref};

use crate::store::StoreError;

/// A value (or key) read from a tree: sled's own buffer, or bytes from PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(Inner);

#[derive(Clone, PartialEq, Eq)]
enum Inner {
    Sled(sled::IVec),
    Owned(Vec<u8>),
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Sled(v) => v,
            Inner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value(Inner::Owned(v))
    }
}

impl From<sled::IVec> for Value {
    fn from(v: sled::IVec) -> Value {
        Value(Inner::Sled(v))
    }
}

/// A compare-and-swap that found another value than the one expected.
#[derive(Debug)]
pub struct CasFailed {
    /// The value found.
    pub current: Option<Value>,
}

/// Why a transaction's closure stopped.
#[derive(Debug)]
pub enum TxError {
    /// The closure gave up: the transaction writes nothing and its caller gets
    /// [`StoreError::Corrupt`] with this text.
    Abort(String),
    /// A read or write of the transaction failed, or (sled) conflicted and is retried.
    Sled(sled::transaction::UnabortableTransactionError),
    /// A read failed.
    Store(StoreError),
}

impl From<sled::transaction::UnabortableTransactionError> for TxError {
    fn from(e: sled::transaction::UnabortableTransactionError) -> TxError {
        TxError::Sled(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> TxError {
        TxError::Store(e)
    }
}

/// A bound of a scan, owned.
pub type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);
