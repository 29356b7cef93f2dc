//! The engine under the store's domain operations: ordered trees of byte keys and byte values,
//! on sled or on PostgreSQL ([`PgKv`]).
//!
//! Every domain module of the store (Calls, users, the directory, the outbox...) keeps its
//! records in one or more named [`Tree`]s, with keys built so that they sort as the module
//! needs (ids big-endian, prefixes). A [`Tree`] offers what those modules use, with sled's
//! meaning: point reads and writes, ordered scans in both directions, atomic batches,
//! compare-and-swap, and small read-modify-write transactions. On sled it is a `sled::Tree`;
//! on PostgreSQL it is the rows of one `tree` in the `kv` table (migration 0002), so the same
//! domain code, with the same tests, runs on both, and a node that opens the database finds
//! every record the last leader wrote. Nothing of this module leaves the store.
//!
//! Durability differs, and is the backend's: on sled a write of a [`Tree`] is in memory until
//! [`Engine::sync`] (sled's flush and one `fdatasync` of its log for everything written
//! before it, coalesced by a [`Syncer`]), which every domain operation of the store calls
//! before it returns; on PostgreSQL every write is its own committed transaction, on the
//! primary and its synchronous standby, before it returns, and fenced by the lease's epoch
//! when one is set, so that a node that lost the lease writes nothing. A key-value table rather than a table per
//! record kind: the records stay in the JSON the embedded store has always kept (one codec,
//! one set of tests), and a schema of columns can grow under the domain operations later
//! without any caller noticing.

use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Condvar, Mutex};

use super::StoreError;
use super::pg::kv::{PgKv, PgTxRead};

pub(crate) mod value;
pub use value::{Bounds, CasFailed, TxError, Value};

/// The database under a store: sled's, or a PostgreSQL connection pool.
#[derive(Clone)]
pub(crate) enum Engine {
    /// sled, with its log file opened by us to make a flush a full barrier.
    Sled {
        /// The database.
        db: sled::Db,
        /// sled's log file ([`Engine::sync`]).
        log: Arc<std::fs::File>,
        /// The syncs of this database, shared by every handle on it.
        syncer: Arc<Syncer>,
    },
    /// PostgreSQL.
    Pg(PgKv),
}

impl Engine {
    /// The tree called `name` (created on first write).
    pub(crate) fn tree(&self, name: &'static str) -> Result<Tree, StoreError> {
        Ok(match self {
            Engine::Sled { db, .. } => Tree::Sled(db.open_tree(name)?),
            Engine::Pg(kv) => Tree::Pg {
                kv: kv.clone(),
                name,
            },
        })
    }

    /// sled opened in `dir`, its log file opened beside it for the syncs.
    pub(crate) fn sled(db: sled::Db, log: std::fs::File) -> Engine {
        Engine::Sled {
            db,
            log: Arc::new(log),
            syncer: Arc::new(Syncer::default()),
        }
    }

    /// Makes everything written before the call durable, with a sync that starts after it
    /// (shared with the callers that wait at the same time, [`Syncer`]). sled 0.34's flush
    /// writes its log and waits with `sync_file_range` on Linux, which puts the bytes on the
    /// way to the disk (enough to survive a killed process) but neither flushes the drive's
    /// write cache nor the file's size; an `fdatasync` of the same file then makes the writes
    /// survive a power loss too. On PostgreSQL every write was committed before it returned:
    /// nothing to do.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        match self {
            Engine::Sled { db, log, syncer } => syncer
                .sync(|| {
                    db.flush().map_err(|e| match e {
                        sled::Error::Io(e) => e,
                        e => std::io::Error::other(e.to_string()),
                    })?;
                    log.sync_data()
                })
                .map_err(StoreError::Sync),
            Engine::Pg(_) => Ok(()),
        }
    }

    /// How many syncs this engine has started and finished (none on PostgreSQL), for the
    /// tests.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> (u64, u64) {
        match self {
            Engine::Sled { syncer, .. } => syncer.counts(),
            Engine::Pg(_) => (0, 0),
        }
    }
}

impl Engine {
    /// Every tree of a sled database by name, sled's own default tree among them, for a copy
    /// of the whole database (`vakt store migrate`, [`super::copy`]): the trees the store
    /// opens and any other a database may hold. `None` on PostgreSQL, whose trees are only
    /// the rows of `kv`.
    pub(crate) fn sled_trees(&self) -> Result<Option<Vec<(String, Tree)>>, StoreError> {
        let Engine::Sled { db, .. } = self else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in db.tree_names() {
            let tree = Tree::Sled(db.open_tree(&name)?);
            out.push((String::from_utf8_lossy(&name).into_owned(), tree));
        }
        Ok(Some(out))
    }
}

/// Coalesces the syncs of one database: a caller is answered by the first sync that started
/// after it called (so everything it wrote before is in it), and only one sync runs at a
/// time. A caller that comes while a sync runs waits for it to end and then for the next,
/// which the first of the waiting callers leads for all of them: N callers at once cost about
/// two syncs, not N. Written by hand: it is twenty lines over a mutex and a condition
/// variable, the group commit of a database, and no crate offers it for a closure.
#[derive(Default)]
pub(crate) struct Syncer {
    state: Mutex<SyncState>,
    ended: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// How many syncs have started; the running one, if any, is number `started`.
    started: u64,
    /// How many have ended.
    done: u64,
    /// Whether one runs now.
    running: bool,
    /// The number of the last sync that succeeded.
    last_ok: u64,
    /// The error of the last sync that failed (its kind and text).
    last_err: Option<(std::io::ErrorKind, String)>,
}

impl Syncer {
    /// Returns once a run of `f` that started after this call has ended: its result.
    pub(crate) fn sync(&self, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The first sync to start from now on.
        let want = st.started + 1;
        loop {
            if st.done >= want {
                // Syncs end in the order they start: the one numbered `done` ended last,
                // and started after this call.
                if st.last_ok >= want {
                    return Ok(());
                }
                let (kind, text) = st
                    .last_err
                    .clone()
                    .unwrap_or((std::io::ErrorKind::Other, "sync failed".to_string()));
                return Err(std::io::Error::new(kind, text));
            }
            if !st.running {
                break;
            }
            st = self.ended.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        // This caller leads sync number `want`, for itself and everyone waiting for it.
        st.started = want;
        st.running = true;
        drop(st);
        let result = f();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.running = false;
        st.done = want;
        match &result {
            Ok(()) => st.last_ok = want,
            Err(e) => st.last_err = Some((e.kind(), e.to_string())),
        }
        drop(st);
        self.ended.notify_all();
        result
    }

    /// How many syncs have started, and how many have ended.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.started, st.done)
    }
}

/// A batch of writes to one tree, applied atomically by [`Tree::apply_batch`]; a later write
/// to a key replaces an earlier one in the same batch.
#[derive(Default, Debug)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().to_vec(), None));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes, the last one of each key only, in key order.
    pub(crate) fn into_final(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let map: std::collections::BTreeMap<_, _> = self.ops.into_iter().collect();
        map.into_iter().collect()
    }
}

/// The reads and writes of one transaction ([`Tree::transaction`]).
pub enum Tx<'a> {
    /// sled's own transaction.
    Sled(&'a sled::transaction::TransactionalTree),
    /// PostgreSQL: reads go to the database and are remembered, writes wait for the commit,
    /// which checks that nothing read has changed since (and otherwise runs the closure again).
    Pg(&'a mut PgTxRead),
}

impl Tx<'_> {
    /// The value of `key`, as the transaction sees it.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Value>, TxError> {
        match self {
            Tx::Sled(t) => Ok(t.get(key)?.map(Value::from)),
            Tx::Pg(t) => Ok(t.get(key.as_ref())?),
        }
    }

    /// Sets `key` to `value` when the transaction commits.
    pub fn insert(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), TxError> {
        match self {
            Tx::Sled(t) => {
                t.insert(key.as_ref(), value.as_ref())?;
            }
            Tx::Pg(t) => t.write(key.as_ref(), Some(value.as_ref())),
        }
        Ok(())
    }

    /// Removes `key` when the transaction commits.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Result<(), TxError> {
        match self {
            Tx::Sled(t) => {
                t.remove(key.as_ref())?;
            }
            Tx::Pg(t) => t.write(key.as_ref(), None),
        }
        Ok(())
    }
}

/// One tree of a store.
#[derive(Clone)]
pub enum Tree {
    /// A sled tree.
    Sled(sled::Tree),
    /// The rows of tree `name` in PostgreSQL's `kv` table.
    Pg {
        /// The connections.
        kv: PgKv,
        /// The tree's name.
        name: &'static str,
    },
}

fn owned_bounds<K: AsRef<[u8]>, R: RangeBounds<K>>(range: &R) -> Bounds {
    let own = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (own(range.start_bound()), own(range.end_bound()))
}

/// The smallest key greater than every key starting with `prefix` (`None`: there is none,
/// the prefix is all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Tree {
    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, StoreError> {
        match self {
            Tree::Sled(t) => Ok(t.get(key)?.map(Value::from)),
            Tree::Pg { kv, name } => kv.get(name, key.as_ref()),
        }
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` to `value`.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => {
                t.insert(key.as_ref(), value.as_ref())?;
                Ok(())
            }
            Tree::Pg { kv, name } => kv.write(
                name,
                vec![(key.as_ref().to_vec(), Some(value.as_ref().to_vec()))],
            ),
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => {
                t.remove(key.as_ref())?;
                Ok(())
            }
            Tree::Pg { kv, name } => kv.write(name, vec![(key.as_ref().to_vec(), None)]),
        }
    }

    /// Applies every write of `batch` at once, or none.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Tree::Sled(t) => {
                let mut b = sled::Batch::default();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => b.insert(k, v),
                        None => b.remove(k),
                    }
                }
                t.apply_batch(b)?;
                Ok(())
            }
            Tree::Pg { kv, name } => kv.write(name, batch.into_final()),
        }
    }

    /// Sets `key` to `new` (`None`: removes it) only if its value is `old` (`None`: absent).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<impl AsRef<[u8]>>,
        new: Option<impl AsRef<[u8]>>,
    ) -> Result<Result<(), CasFailed>, StoreError> {
        match self {
            Tree::Sled(t) => Ok(t
                .compare_and_swap(
                    key.as_ref(),
                    old.as_ref().map(|v| v.as_ref()),
                    new.as_ref().map(|v| v.as_ref()),
                )?
                .map_err(|e| CasFailed {
                    current: e.current.map(Value::from),
                })),
            Tree::Pg { kv, name } => kv.compare_and_swap(
                name,
                key.as_ref(),
                old.as_ref().map(|v| v.as_ref()),
                new.as_ref().map(|v| v.as_ref()),
            ),
        }
    }

    /// Replaces the value of `key` by `f` of it (`None` removes), atomically (retried on a
    /// concurrent write); returns the new value.
    pub fn update_and_fetch<V: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> Result<Option<Value>, StoreError> {
        if let Tree::Sled(t) = self {
            return Ok(t
                .update_and_fetch(key, |old| f(old).map(|v| v.as_ref().to_vec()))?
                .map(Value::from));
        }
        self.update(key.as_ref(), &mut f).map(|(_, new)| new)
    }

    /// As [`Tree::update_and_fetch`], returning the value before.
    pub fn fetch_and_update<V: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> Result<Option<Value>, StoreError> {
        if let Tree::Sled(t) = self {
            return Ok(t
                .fetch_and_update(key, |old| f(old).map(|v| v.as_ref().to_vec()))?
                .map(Value::from));
        }
        self.update(key.as_ref(), &mut f).map(|(old, _)| old)
    }

    /// The compare-and-swap loop of the updates on PostgreSQL.
    fn update<V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        f: &mut impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> Result<(Option<Value>, Option<Value>), StoreError> {
        let mut old = self.get(key)?;
        loop {
            let new = f(old.as_deref()).map(|v| Value::from(v.as_ref().to_vec()));
            match self.compare_and_swap(key, old.as_ref(), new.as_ref())? {
                Ok(()) => return Ok((old, new)),
                Err(e) => old = e.current,
            }
        }
    }

    /// Runs `f` as one transaction over this tree: its reads see one state, and its writes
    /// happen together if and only if nothing it read changed meanwhile (otherwise it runs
    /// again). [`TxError::Abort`] gives up, writing nothing.
    pub fn transaction<R>(
        &self,
        f: impl Fn(&mut Tx<'_>) -> Result<R, TxError>,
    ) -> Result<R, StoreError> {
        match self {
            Tree::Sled(t) => {
                use sled::transaction::{ConflictableTransactionError as C, TransactionError};
                let result = t.transaction(|tx| {
                    f(&mut Tx::Sled(tx)).map_err(|e| match e {
                        TxError::Abort(s) => C::Abort(s),
                        TxError::Sled(e) => e.into(),
                        TxError::Store(e) => C::Abort(e.to_string()),
                    })
                });
                result.map_err(|e| match e {
                    TransactionError::Abort(detail) => StoreError::Corrupt {
                        tree: "transaction",
                        detail,
                    },
                    TransactionError::Storage(e) => StoreError::Engine(e),
                })
            }
            Tree::Pg { kv, name } => kv.transaction(name, |read| f(&mut Tx::Pg(read))),
        }
    }

    /// Every entry, in key order (reversible).
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    /// The entries in `range`, in key order (reversible).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.range(range)),
            Tree::Pg { kv, name } => Iter::Pg(kv.scan(name, owned_bounds(&range))),
        }
    }

    /// The entries whose key starts with `prefix`, in key order (reversible).
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.scan_prefix(prefix)),
            Tree::Pg { kv, name } => {
                let start = Bound::Included(prefix.as_ref().to_vec());
                let end = match prefix_end(prefix.as_ref()) {
                    Some(end) => Bound::Excluded(end),
                    None => Bound::Unbounded,
                };
                Iter::Pg(kv.scan(name, (start, end)))
            }
        }
    }

    /// The entry with the greatest key.
    pub fn last(&self) -> Result<Option<(Value, Value)>, StoreError> {
        self.iter().next_back().transpose()
    }

    /// How many entries the tree holds (reads them all on sled).
    pub fn len(&self) -> Result<usize, StoreError> {
        match self {
            Tree::Sled(t) => Ok(t.len()),
            Tree::Pg { kv, name } => kv.len(name),
        }
    }
}

/// The entries of a scan, read from either end.
pub enum Iter {
    /// sled's iterator.
    Sled(sled::Iter),
    /// Pages read from PostgreSQL as they are needed.
    Pg(super::pg::kv::PgIter),
}

impl Iterator for Iter {
    type Item = Result<(Value, Value), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(it) => it
                .next()
                .map(|r| r.map(|(k, v)| (k.into(), v.into())).map_err(Into::into)),
            Iter::Pg(it) => it.next(),
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(it) => it
                .next_back()
                .map(|r| r.map(|(k, v)| (k.into(), v.into())).map_err(Into::into)),
            Iter::Pg(it) => it.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn a_batch_keeps_the_last_write_of_each_key() {
        let mut b = Batch::default();
        b.insert("b", "1");
        b.insert("a", "1");
        b.remove("b");
        b.insert("a", "2");
        assert_eq!(
            b.into_final(),
            vec![(b"a".to_vec(), Some(b"2".to_vec())), (b"b".to_vec(), None)]
        );
    }

    /// N threads that wrote at the same moment call the syncer together: fewer syncs than
    /// threads run, one at a time, and each thread returns only after a sync that started
    /// after its write has ended.
    #[test]
    fn concurrent_syncs_coalesce_and_each_covers_its_caller() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        const N: usize = 16;
        let syncer = Syncer::default();
        // One logical clock for writes, syncs' starts and ends, and returns.
        let clock = AtomicU64::new(0);
        let tick = || clock.fetch_add(1, Ordering::SeqCst);
        let running = AtomicBool::new(false);
        let syncs: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
        let barrier = std::sync::Barrier::new(N);
        let calls: Vec<(u64, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let wrote = tick();
                        syncer
                            .sync(|| {
                                assert!(!running.swap(true, Ordering::SeqCst), "one at a time");
                                let start = tick();
                                std::thread::sleep(std::time::Duration::from_millis(20));
                                running.store(false, Ordering::SeqCst);
                                let end = tick();
                                syncs.lock().unwrap().push((start, end));
                                Ok(())
                            })
                            .unwrap();
                        (wrote, tick())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let syncs = syncs.into_inner().unwrap();
        assert!(syncs.len() < N / 2, "{} syncs for {N} callers", syncs.len());
        assert_eq!(syncer.counts(), (syncs.len() as u64, syncs.len() as u64));
        for (wrote, returned) in calls {
            assert!(
                syncs
                    .iter()
                    .any(|&(start, end)| start > wrote && end < returned),
                "a caller that wrote at {wrote} returned at {returned} with no sync between: {syncs:?}"
            );
        }
    }

    /// A failed sync fails the callers it was for, and the next one starts afresh.
    #[test]
    fn a_failed_sync_fails_its_callers_and_the_next_one_runs() {
        let syncer = Syncer::default();
        let err = syncer
            .sync(|| Err(std::io::Error::other("disk gone")))
            .unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
        let mut ran = false;
        syncer
            .sync(|| {
                ran = true;
                Ok(())
            })
            .unwrap();
        assert!(ran, "a caller after a failure gets a sync of its own");
        assert_eq!(syncer.counts(), (2, 2));
    }

    use crate::store::testing::on_each_backend;

    /// Every key of [`fill`], sorted: more than three pages of PostgreSQL's scan (`PAGE`), and
    /// keys under prefixes that end in 0xff.
    fn keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = (0..700u16)
            .map(|i| [&[1u8][..], &i.to_be_bytes()].concat())
            .collect();
        for i in 0..40u8 {
            keys.push(vec![0xff, i]);
            keys.push(vec![0xff, 0xff, i]);
            keys.push(vec![1, 0xff, 0xff, i]);
        }
        keys.push(vec![0xff]);
        keys.push(vec![0xff, 0xff]);
        keys.push(vec![0xff, 0xff, 0xff]);
        keys.push(vec![0]);
        keys.sort();
        keys
    }

    fn fill(tree: &Tree) {
        let mut batch = Batch::default();
        for k in keys() {
            batch.insert(&k, [&b"v"[..], &k].concat());
        }
        tree.apply_batch(batch).unwrap();
    }

    fn key_list(it: impl Iterator<Item = Result<(Value, Value), StoreError>>) -> Vec<Vec<u8>> {
        it.map(|r| {
            let (k, v) = r.unwrap();
            assert_eq!(&v[..], [&b"v"[..], &k].concat(), "each key's own value");
            k.to_vec()
        })
        .collect()
    }

    /// `it` read from both ends, `front` items from the front for every `back` from the
    /// back, until they meet: the front's part ascending, the back's descending, together
    /// every item once.
    fn from_both_ends(mut it: Iter, front: usize, back: usize) -> Vec<Vec<u8>> {
        let (mut low, mut high) = (Vec::new(), Vec::new());
        'outer: loop {
            for _ in 0..front {
                match it.next() {
                    Some(r) => low.push(r.unwrap().0.to_vec()),
                    None => break 'outer,
                }
            }
            for _ in 0..back {
                match it.next_back() {
                    Some(r) => high.push(r.unwrap().0.to_vec()),
                    None => break 'outer,
                }
            }
        }
        assert!(it.next().is_none() && it.next_back().is_none(), "met");
        high.reverse();
        low.extend(high);
        low
    }

    on_each_backend! {
    fn scans_read_every_key_once_forward_backward_and_from_both_ends(b) {
        let store = b.open();
        let tree = store.engine.tree("kv_test").unwrap();
        fill(&tree);
        let all = keys();
        assert!(all.len() > 3 * crate::store::pg::kv::PAGE as usize);
        assert_eq!(tree.len().unwrap(), all.len());
        assert_eq!(key_list(tree.iter()), all, "forward");
        let mut back = key_list(tree.iter().rev());
        back.reverse();
        assert_eq!(back, all, "backward");
        for (front, back) in [(1, 1), (3, 1), (1, 3), (100, 1), (1, 300), (257, 255)] {
            assert_eq!(from_both_ends(tree.iter(), front, back), all, "{front}:{back}");
        }
        assert_eq!(tree.last().unwrap().unwrap().0.to_vec(), vec![0xff, 0xff, 0xff]);

        // Ranges, bounds included and excluded, across pages.
        let (a, z) = (vec![1, 0, 10], vec![1, 2, 100]);
        let inside = |lo: Bound<&Vec<u8>>, hi: Bound<&Vec<u8>>| -> Vec<Vec<u8>> {
            all.iter().filter(|k| RangeBounds::<Vec<u8>>::contains(&(lo, hi), *k)).cloned().collect()
        };
        let want = inside(Bound::Included(&a), Bound::Excluded(&z));
        assert!(want.len() > 2 * crate::store::pg::kv::PAGE as usize);
        assert_eq!(key_list(tree.range(a.clone()..z.clone())), want);
        assert_eq!(from_both_ends(tree.range(a.clone()..z.clone()), 2, 1), want);
        let want = inside(Bound::Excluded(&a), Bound::Included(&z));
        let range = (Bound::Excluded(a.clone()), Bound::Included(z.clone()));
        let mut back = key_list(tree.range::<Vec<u8>, _>(range.clone()).rev());
        back.reverse();
        assert_eq!(back, want);
        assert_eq!(from_both_ends(tree.range::<Vec<u8>, _>(range), 1, 2), want);
        assert_eq!(key_list(tree.range(z.clone()..a.clone())), Vec::<Vec<u8>>::new());

        // Prefixes, those ending in 0xff too.
        for prefix in [&[1u8][..], &[1, 0xff], &[1, 0xff, 0xff], &[0xff], &[0xff, 0xff], &[0xff, 0xff, 0xff], &[0], &[2]] {
            let want: Vec<Vec<u8>> = all.iter().filter(|k| k.starts_with(prefix)).cloned().collect();
            assert_eq!(key_list(tree.scan_prefix(prefix)), want, "{prefix:?}");
            let mut back = key_list(tree.scan_prefix(prefix).rev());
            back.reverse();
            assert_eq!(back, want, "{prefix:?} backward");
            assert_eq!(from_both_ends(tree.scan_prefix(prefix), 5, 3), want, "{prefix:?} both ends");
        }
    }
    }

    on_each_backend! {
    fn compare_and_swap_lets_one_writer_win_each_race(b) {
        let store = b.open();
        let other = b.second(&store);
        let trees = [
            store.engine.tree("kv_test").unwrap(),
            other.engine.tree("kv_test").unwrap(),
        ];
        // Eight writers insert the same absent key: one wins, the others see its value.
        let won: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|t| {
                    let tree = &trees[usize::from(t % 2)];
                    s.spawn(move || {
                        match tree.compare_and_swap("k", None::<&[u8]>, Some([t])).unwrap() {
                            Ok(()) => true,
                            Err(e) => {
                                assert!(e.current.is_some(), "lost to a value");
                                false
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let winner = won.iter().position(|w| *w).unwrap() as u8;
        assert_eq!(trees[1].get("k").unwrap().unwrap().to_vec(), vec![winner]);

        // A counter counted up by compare-and-swap from eight threads: every swap that
        // succeeded took a value nobody else took, and none is lost.
        let counter = |v: Option<&[u8]>| v.map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
        let mut taken: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let tree = &trees[t % 2];
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        let mut old = tree.get("n").unwrap();
                        while mine.len() < 25 {
                            let next = counter(old.as_deref()) + 1;
                            match tree.compare_and_swap("n", old.as_ref(), Some(next.to_be_bytes())).unwrap() {
                                Ok(()) => {
                                    mine.push(next);
                                    old = Some(Value::from(next.to_be_bytes().to_vec()));
                                }
                                Err(e) => old = e.current,
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        taken.sort_unstable();
        assert_eq!(taken, (1..=200).collect::<Vec<_>>());
        assert_eq!(counter(trees[0].get("n").unwrap().as_deref()), 200);

        // Removing where the value is as expected, and only then.
        let now = trees[0].get("k").unwrap();
        assert!(trees[0].compare_and_swap("k", Some([99u8]), None::<&[u8]>).unwrap().is_err());
        trees[1].compare_and_swap("k", now.as_ref(), None::<&[u8]>).unwrap().unwrap();
        assert_eq!(trees[0].get("k").unwrap(), None);
        trees[0].compare_and_swap("k", None::<&[u8]>, None::<&[u8]>).unwrap().unwrap();
    }
    }

    on_each_backend! {
    fn updates_from_many_threads_give_every_value_once(b) {
        let store = b.open();
        let other = b.second(&store);
        let trees = [
            store.engine.tree("kv_test").unwrap(),
            other.engine.tree("kv_test").unwrap(),
        ];
        let plus_one = |v: Option<&[u8]>| {
            let n = v.map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
            Some((n + 1).to_be_bytes())
        };
        let read = |v: Option<Value>| u64::from_be_bytes(v.unwrap().as_ref().try_into().unwrap());
        let mut got: Vec<(u64, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let tree = &trees[t % 2];
                    s.spawn(move || {
                        (0..25)
                            .map(|_| {
                                let before = tree.fetch_and_update("n", plus_one).unwrap();
                                let before = before.map_or(0, |v| read(Some(v)));
                                let after = read(tree.update_and_fetch("m", plus_one).unwrap());
                                (before, after)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut before: Vec<u64> = got.iter().map(|g| g.0).collect();
        got.sort_unstable_by_key(|g| g.1);
        before.sort_unstable();
        assert_eq!(before, (0..200).collect::<Vec<_>>(), "fetch_and_update: the values before");
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>(),
            "update_and_fetch: the values after"
        );
        assert_eq!(read(trees[0].get("n").unwrap()), 200);
        // `None` removes.
        assert_eq!(trees[1].update_and_fetch("m", |_| None::<Vec<u8>>).unwrap(), None);
        assert_eq!(trees[0].get("m").unwrap(), None);
    }
    }
}
