//! The store's trees on PostgreSQL: the `kv` table of migration 0002, one row per key of each
//! tree, behind [`crate::store::kv::Tree`].
//!
//! **Threads.** The store's callers are synchronous (sled's API always was) and many run on
//! the server's async runtime, where a `block_on` of our own would panic. So the connections
//! live on a few worker threads of their own ([`WORKERS`]), each with a current-thread
//! runtime and one connection; an operation is a job sent to them, and its caller waits for
//! the answer on a channel, as it waited for sled's `fdatasync`. A broken connection is
//! opened again by its worker on its next job (with several hosts and
//! `target_session_attrs=read-write` in the URL, on the new primary).
//!
//! **Writes.** Each write (a key, a batch, a compare-and-swap, a transaction's writes) is one
//! transaction, committed (on the synchronous standby too, as the cluster is configured)
//! before it returns. With a lease epoch set ([`PgKv::set_epoch`]) every write statement
//! first locks the lease row `FOR KEY SHARE` and compares its epoch, in the same statement,
//! as the journal's commit does ([`super::journal`]): a node that lost the lease writes
//! nothing ([`PgError::Fenced`]). A write whose answer never came is
//! [`PgError::CommitUnknown`].
//!
//! **Transactions** ([`PgKv::transaction`]) are optimistic: the closure runs on the caller's
//! thread, its reads go to the database and are remembered, its writes are held; the commit
//! then locks the rows it read (`FOR UPDATE`, under a per-tree advisory lock that serialises
//! the transactions of one tree), checks that none changed, and writes. Otherwise the closure
//! runs again, as sled's does. Keys the closure read as absent are not locked against a plain
//! write of the same key outside a transaction; the store's transactions (the audit counter,
//! a review's decision) never share keys with plain writes.
//!
//! **Scans** read pages of [`PAGE`] rows in key order from either end, as they are consumed,
//! so a scan that stops early (the newest ten) reads one page, and none holds a whole tree.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, Statement};

use super::super::StoreError;
use super::super::kv::value::{Bounds, CasFailed, TxError, Value};
use super::{PgError, lease, migrate};

/// Worker threads, each with one connection: enough that a slow scan does not hold up the
/// writes of a console action, few enough for a database's `max_connections` with several
/// nodes.
pub const WORKERS: usize = 4;

/// Rows read per page of a scan.
pub const PAGE: i64 = 256;

/// How long opening a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a transaction runs again after finding what it read changed.
const TX_ATTEMPTS: usize = 1000;

/// The fence of a write statement: true when unfenced (`$n` = 0) or when the lease's epoch,
/// locked `FOR KEY SHARE`, is still `$n`.
macro_rules! fence {
    ($n:literal) => {
        concat!(
            "f AS (SELECT epoch FROM leader_lease WHERE id FOR KEY SHARE), ",
            "go AS (SELECT $",
            $n,
            "::bigint = 0 OR (SELECT epoch FROM f) = $",
            $n,
            "::bigint AS ok)"
        )
    };
}

const GET: &str = "SELECT value FROM kv WHERE tree = $1 AND key = $2";

/// Upserts (`$2`, `$3`) and deletes (`$4`) of one tree, fenced by `$5`; returns the lease's
/// epoch.
const WRITE: &str = concat!(
    "WITH ",
    fence!(5),
    ", i AS (INSERT INTO kv (tree, key, value) SELECT $1, t.k, t.v
        FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v) WHERE (SELECT ok FROM go)
        ON CONFLICT (tree, key) DO UPDATE SET value = excluded.value RETURNING 1),
    d AS (DELETE FROM kv WHERE tree = $1 AND key = ANY($4::bytea[]) AND (SELECT ok FROM go)
        RETURNING 1)
    SELECT (SELECT epoch FROM f), (SELECT count(*) FROM i), (SELECT count(*) FROM d)"
);

/// `$2` from `$3` to `$4`, fenced by `$5`; returns the epoch and whether it was swapped.
const CAS_UPDATE: &str = concat!(
    "WITH ",
    fence!(5),
    ", u AS (UPDATE kv SET value = $4 WHERE tree = $1 AND key = $2 AND value = $3
        AND (SELECT ok FROM go) RETURNING 1)
    SELECT (SELECT epoch FROM f), (SELECT count(*) FROM u)"
);

/// `$2` removed where it is `$3`, fenced by `$4`.
const CAS_DELETE: &str = concat!(
    "WITH ",
    fence!(4),
    ", u AS (DELETE FROM kv WHERE tree = $1 AND key = $2 AND value = $3
        AND (SELECT ok FROM go) RETURNING 1)
    SELECT (SELECT epoch FROM f), (SELECT count(*) FROM u)"
);

/// `$2` set to `$3` where absent, fenced by `$4`.
const CAS_INSERT: &str = concat!(
    "WITH ",
    fence!(4),
    ", u AS (INSERT INTO kv (tree, key, value) SELECT $1, $2, $3 WHERE (SELECT ok FROM go)
        ON CONFLICT (tree, key) DO NOTHING RETURNING 1)
    SELECT (SELECT epoch FROM f), (SELECT count(*) FROM u)"
);

const LEN: &str = "SELECT count(*) FROM kv WHERE tree = $1";

const FENCE: &str = "SELECT epoch FROM leader_lease WHERE id FOR KEY SHARE";
const TREE_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('kv:' || $1, 0))";
const LOCK_ROW: &str = "SELECT value FROM kv WHERE tree = $1 AND key = $2 FOR UPDATE";
const UPSERT: &str = "INSERT INTO kv (tree, key, value)
    SELECT $1, t.k, t.v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v)
    ON CONFLICT (tree, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM kv WHERE tree = $1 AND key = ANY($2::bytea[])";

/// The store's trees on PostgreSQL; clones share the worker threads, which end when the last
/// clone is dropped.
#[derive(Clone)]
pub struct PgKv {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// The lease epoch that fences writes; 0: none (epochs start at 1).
    epoch: AtomicI64,
}

impl std::fmt::Debug for PgKv {
    // Not the configuration: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKv")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// One worker thread's runtime and connection.
struct Worker {
    rt: tokio::runtime::Runtime,
    config: Arc<Config>,
    conn: Option<Conn>,
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    write: Statement,
    cas_update: Statement,
    cas_delete: Statement,
    cas_insert: Statement,
}

async fn connect(config: &Config) -> Result<Conn, PgError> {
    let client = super::connect(config, "store").await?;
    Ok(Conn {
        get: client.prepare(GET).await?,
        write: client.prepare(WRITE).await?,
        cas_update: client.prepare(CAS_UPDATE).await?,
        cas_delete: client.prepare(CAS_DELETE).await?,
        cas_insert: client.prepare(CAS_INSERT).await?,
        client,
    })
}

impl Worker {
    /// Runs `work` on the connection, opening it first if it is missing or broken; a
    /// connection that broke during `work` is dropped, to be opened again next time.
    fn with<T>(
        &mut self,
        work: impl for<'c> FnOnce(&'c mut Conn) -> lease::Work<'c, T>,
    ) -> Result<T, PgError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        let (rt, slot, config) = (&self.rt, &mut self.conn, &self.config);
        let out = rt.block_on(async {
            if slot.is_none() {
                *slot = Some(connect(config).await?);
            }
            match slot.as_mut() {
                Some(conn) => work(conn).await,
                None => Err(PgError::Closed),
            }
        });
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        out
    }
}

/// The answer of a fenced write statement: the lease's epoch and the rows it changed.
fn fenced_count(row: &tokio_postgres::Row, ours: i64) -> Result<i64, PgError> {
    let current: i64 = row.try_get(0)?;
    if ours != 0 && current != ours {
        return Err(PgError::Fenced { ours, current });
    }
    let mut n = 0;
    for i in 1..row.len() {
        n += row.try_get::<_, i64>(i)?;
    }
    Ok(n)
}

/// A write statement's error: a plain `ERROR` is a verdict (nothing written), anything else
/// leaves the outcome unknown.
fn write_error(e: PgError) -> PgError {
    match e {
        PgError::Db(e) => lease::commit_error(e),
        e => e,
    }
}

impl PgKv {
    /// Connects to `url` (a `postgresql://` URL or `key=value` string), brings the schema up
    /// to date and starts the workers; unfenced until [`PgKv::set_epoch`].
    pub fn open(url: &str) -> Result<PgKv, StoreError> {
        let mut config: Config = url.parse().map_err(PgError::Db)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let config = Arc::new(config);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(PgError::Runtime)?;
            let mut worker = Worker {
                rt,
                config: config.clone(),
                conn: None,
            };
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("vakt-pg-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(&mut worker),
                            Err(_) => break,
                        }
                    }
                    worker.conn = None;
                    worker.rt.shutdown_background();
                })
                .map_err(PgError::Runtime)?;
        }
        let kv = PgKv {
            shared: Arc::new(Shared {
                jobs: Mutex::new(tx),
                epoch: AtomicI64::new(0),
            }),
        };
        // The schema first, so that a wrong URL or a newer schema fails here.
        // On a connection of its own: the workers' connections prepare statements on the
        // tables the migrations create.
        kv.run(|w| {
            let config = w.config.clone();
            w.rt.block_on(async move { migrate::migrate_config(&config).await.map(|_| ()) })
        })?;
        Ok(kv)
    }

    /// Fences every later write by the lease's `epoch` (`None`: unfenced, a single node).
    pub fn set_epoch(&self, epoch: Option<i64>) {
        self.shared
            .epoch
            .store(epoch.unwrap_or(0), Ordering::Release);
    }

    /// The epoch writes are fenced by.
    pub fn epoch(&self) -> Option<i64> {
        Some(self.ours()).filter(|e| *e != 0)
    }

    fn ours(&self) -> i64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Runs `job` on a worker and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Worker) -> Result<T, PgError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |w| {
            let _ = tx.send(job(w));
        });
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| PgError::Closed)?;
        Ok(rx.recv().map_err(|_| PgError::Closed)??)
    }

    /// The value of `key` in `tree`.
    pub(crate) fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Value>, StoreError> {
        let key = key.to_vec();
        self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let row = c.client.query_opt(&c.get, &[&tree, &key]).await?;
                    Ok(row
                        .map(|r| r.try_get::<_, Vec<u8>>(0))
                        .transpose()?
                        .map(Value::from))
                })
            })
        })
    }

    /// Writes `ops` (key, value or `None` to remove; each key once) to `tree` in one
    /// transaction.
    pub(crate) fn write(
        &self,
        tree: &'static str,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let ours = self.ours();
        let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in ops {
            match v {
                Some(v) => {
                    keys.push(k);
                    values.push(v);
                }
                None => gone.push(k),
            }
        }
        self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let row = c
                        .client
                        .query_one(&c.write, &[&tree, &keys, &values, &gone, &ours])
                        .await
                        .map_err(|e| write_error(e.into()))?;
                    fenced_count(&row, ours)?;
                    Ok(())
                })
            })
        })
    }

    /// Sets `key` to `new` where it is `old` (`None`: absent / remove).
    pub(crate) fn compare_and_swap(
        &self,
        tree: &'static str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasFailed>, StoreError> {
        loop {
            let ours = self.ours();
            let (k, o, n) = (
                key.to_vec(),
                old.map(<[u8]>::to_vec),
                new.map(<[u8]>::to_vec),
            );
            let swapped = self.run(move |w| {
                w.with(|c| {
                    Box::pin(async move {
                        let row = match (&o, &n) {
                            (Some(o), Some(n)) => {
                                c.client
                                    .query_one(&c.cas_update, &[&tree, &k, o, n, &ours])
                                    .await
                            }
                            (Some(o), None) => {
                                c.client
                                    .query_one(&c.cas_delete, &[&tree, &k, o, &ours])
                                    .await
                            }
                            (None, Some(n)) => {
                                c.client
                                    .query_one(&c.cas_insert, &[&tree, &k, n, &ours])
                                    .await
                            }
                            (None, None) => {
                                let found = c.client.query_opt(&c.get, &[&tree, &k]).await?;
                                return Ok(found.is_none());
                            }
                        }
                        .map_err(|e| write_error(e.into()))?;
                        Ok(fenced_count(&row, ours)? == 1)
                    })
                })
            })?;
            if swapped {
                return Ok(Ok(()));
            }
            let current = self.get(tree, key)?;
            // Changed and changed back between the two statements: try again.
            if current.as_deref() != old {
                return Ok(Err(CasFailed { current }));
            }
        }
    }

    /// Runs `f` as an optimistic transaction over `tree` (the module's doc).
    pub(crate) fn transaction<R>(
        &self,
        tree: &'static str,
        f: impl Fn(&mut PgTxRead) -> Result<R, TxError>,
    ) -> Result<R, StoreError> {
        for _ in 0..TX_ATTEMPTS {
            let mut tx = PgTxRead {
                kv: self.clone(),
                tree,
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            };
            let out = match f(&mut tx) {
                Ok(out) => out,
                Err(TxError::Abort(detail)) => {
                    return Err(StoreError::Corrupt {
                        tree: "transaction",
                        detail,
                    });
                }
                Err(TxError::Store(e)) => return Err(e),
                Err(TxError::Sled(e)) => {
                    return Err(StoreError::Corrupt {
                        tree: "transaction",
                        detail: e.to_string(),
                    });
                }
            };
            if tx.writes.is_empty() {
                return Ok(out);
            }
            if self.commit(tree, tx.reads, tx.writes)? {
                return Ok(out);
            }
        }
        Err(StoreError::Corrupt {
            tree: "transaction",
            detail: format!("{tree}: still conflicting after {TX_ATTEMPTS} attempts"),
        })
    }

    /// Commits a transaction's writes if what it read is unchanged; false when it changed.
    fn commit(
        &self,
        tree: &'static str,
        reads: BTreeMap<Vec<u8>, Option<Value>>,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<bool, StoreError> {
        let ours = self.ours();
        self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let tx = c.client.transaction().await?;
                    // Ended here on every path: a transaction dropped open only queues its
                    // rollback, and this worker's runtime sends it when its next job comes,
                    // holding the tree's lock (and the lease row's) until then.
                    match checked_writes(&tx, tree, ours, &reads, writes).await {
                        Ok(true) => {
                            tx.commit().await.map_err(lease::commit_error)?;
                            Ok(true)
                        }
                        Ok(false) => {
                            tx.rollback().await?;
                            Ok(false)
                        }
                        Err(e) => {
                            let _ = tx.rollback().await;
                            Err(e)
                        }
                    }
                })
            })
        })
    }

    /// How many keys `tree` holds.
    pub(crate) fn len(&self, tree: &'static str) -> Result<usize, StoreError> {
        let n = self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let row = c
                        .client
                        .query_typed_one(LEN, &[(&tree, Type::TEXT)])
                        .await?;
                    Ok(row.try_get::<_, i64>(0)?)
                })
            })
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The entries of `tree` within `bounds`, read a page at a time from either end.
    pub(crate) fn scan(&self, tree: &'static str, bounds: Bounds) -> PgIter {
        PgIter {
            kv: self.clone(),
            tree,
            lower: bounds.0,
            upper: bounds.1,
            front: VecDeque::new(),
            back: VecDeque::new(),
            front_done: false,
            back_done: false,
            failed: false,
        }
    }

    /// One page of `tree` within the bounds, ascending (`back` false) or descending.
    fn page(
        &self,
        tree: &'static str,
        lower: &Bound<Vec<u8>>,
        upper: &Bound<Vec<u8>>,
        back: bool,
    ) -> Result<Page, StoreError> {
        let mut sql = String::from("SELECT key, value FROM kv WHERE tree = $1");
        let mut params: Vec<Vec<u8>> = Vec::new();
        for (bound, below) in [(lower, false), (upper, true)] {
            let (op, k) = match (bound, below) {
                (Bound::Included(k), false) => (">=", k),
                (Bound::Excluded(k), false) => (">", k),
                (Bound::Included(k), true) => ("<=", k),
                (Bound::Excluded(k), true) => ("<", k),
                (Bound::Unbounded, _) => continue,
            };
            params.push(k.clone());
            sql.push_str(&format!(" AND key {op} ${}", params.len() + 1));
        }
        sql.push_str(if back {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key"
        });
        sql.push_str(&format!(" LIMIT {PAGE}"));
        self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let mut typed: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&tree, Type::TEXT)];
                    for p in &params {
                        typed.push((p, Type::BYTEA));
                    }
                    let rows = c.client.query_typed(&sql, &typed).await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect::<Result<Vec<_>, PgError>>()
                })
            })
        })
    }
}

/// A transaction's commit up to the `COMMIT`: the fence, the tree's lock, the check that what
/// it read is unchanged (false when not), and its writes.
async fn checked_writes(
    tx: &tokio_postgres::Transaction<'_>,
    tree: &'static str,
    ours: i64,
    reads: &BTreeMap<Vec<u8>, Option<Value>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<bool, PgError> {
    if ours != 0 {
        let current: i64 = tx.query_typed_one(FENCE, &[]).await?.try_get(0)?;
        if current != ours {
            return Err(PgError::Fenced { ours, current });
        }
    }
    tx.query_typed(TREE_LOCK, &[(&tree, Type::TEXT)]).await?;
    for (k, expected) in reads {
        let row = tx
            .query_typed_opt(LOCK_ROW, &[(&tree, Type::TEXT), (k, Type::BYTEA)])
            .await?;
        let found = row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?;
        if found.as_deref() != expected.as_deref() {
            return Ok(false);
        }
    }
    let (mut keys, mut values, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in writes {
        match v {
            Some(v) => {
                keys.push(k);
                values.push(v);
            }
            None => gone.push(k),
        }
    }
    if !keys.is_empty() {
        tx.execute(UPSERT, &[&tree, &keys, &values]).await?;
    }
    if !gone.is_empty() {
        tx.execute(DELETE, &[&tree, &gone]).await?;
    }
    Ok(true)
}

impl PgKv {
    /// The id the journal's next record takes (the journal's own connections,
    /// [`super::journal::PgJournal`], belong to its committer's thread; the store's readers of
    /// the journal may run anywhere, so they read on the workers).
    pub(crate) fn journal_next(&self) -> Result<u64, StoreError> {
        let next = self.run(|w| {
            w.with(|c| {
                Box::pin(async move {
                    let row = c.client.query_typed_one(super::journal::NEXT, &[]).await?;
                    Ok(row.try_get::<_, i64>(0)?)
                })
            })
        })?;
        super::journal::id_from_db(next)
    }

    /// Up to `limit` journal records (id, payload) after `after`, ascending.
    pub(crate) fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.journal_page(super::journal::AFTER, after, limit)
    }

    /// Up to `limit` journal records (id, payload) before `before`, descending.
    pub(crate) fn journal_before(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.journal_page(JOURNAL_BEFORE, before, limit)
    }

    fn journal_page(
        &self,
        sql: &'static str,
        id: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.run(move |w| {
            w.with(|c| {
                Box::pin(async move {
                    let rows = c
                        .client
                        .query_typed(sql, &[(&id, Type::INT8), (&limit, Type::INT8)])
                        .await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, Vec<u8>>(1)?)))
                        .collect::<Result<Vec<_>, PgError>>()
                })
            })
        })?;
        rows.into_iter()
            .map(|(id, p)| Ok((super::journal::id_from_db(id)?, p)))
            .collect()
    }
}

const JOURNAL_BEFORE: &str =
    "SELECT id, payload FROM journal WHERE id < $1 ORDER BY id DESC LIMIT $2";

/// A transaction's reads and held writes on PostgreSQL.
pub struct PgTxRead {
    kv: PgKv,
    tree: &'static str,
    reads: BTreeMap<Vec<u8>, Option<Value>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl PgTxRead {
    /// The value of `key`: the transaction's own write, else what it read before, else the
    /// database's (remembered for the commit's check).
    pub(crate) fn get(&mut self, key: &[u8]) -> Result<Option<Value>, StoreError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone().map(Value::from));
        }
        if let Some(r) = self.reads.get(key) {
            return Ok(r.clone());
        }
        let v = self.kv.get(self.tree, key)?;
        self.reads.insert(key.to_vec(), v.clone());
        Ok(v)
    }

    /// Holds a write for the commit.
    pub(crate) fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.writes.insert(key.to_vec(), value.map(<[u8]>::to_vec));
    }
}

/// A scan of one tree on PostgreSQL, read a page at a time from whichever end is consumed.
pub struct PgIter {
    kv: PgKv,
    tree: &'static str,
    /// What is left to read from the database: the keys between these bounds.
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// Read ascending, not yet yielded.
    front: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Read descending, not yet yielded (the greatest first).
    back: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The database has nothing left between the bounds.
    front_done: bool,
    back_done: bool,
    failed: bool,
}

/// Rows of a scan: key, value.
type Page = Vec<(Vec<u8>, Vec<u8>)>;

type Entry = Result<(Value, Value), StoreError>;

impl PgIter {
    fn fill(&mut self, back: bool) -> Result<(), StoreError> {
        if self.front_done || self.back_done {
            return Ok(());
        }
        let page = self.kv.page(self.tree, &self.lower, &self.upper, back)?;
        let full = page.len() as i64 == PAGE;
        if let Some((k, _)) = page.last() {
            if back {
                self.upper = Bound::Excluded(k.clone());
            } else {
                self.lower = Bound::Excluded(k.clone());
            }
        }
        if back {
            self.back.extend(page);
        } else {
            self.front.extend(page);
        }
        if !full {
            // Everything between the bounds is read; both ends now share the buffers.
            self.front_done = true;
            self.back_done = true;
        }
        Ok(())
    }

    fn yield_item(item: Option<(Vec<u8>, Vec<u8>)>) -> Option<Entry> {
        item.map(|(k, v)| Ok((Value::from(k), Value::from(v))))
    }
}

impl Iterator for PgIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.failed {
            return None;
        }
        if self.front.is_empty() {
            if let Err(e) = self.fill(false) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if let Some(item) = self.front.pop_front() {
            return Self::yield_item(Some(item));
        }
        // Nothing left below what the back end has read: its smallest comes next.
        Self::yield_item(self.back.pop_back())
    }
}

impl DoubleEndedIterator for PgIter {
    fn next_back(&mut self) -> Option<Entry> {
        if self.failed {
            return None;
        }
        if self.back.is_empty() {
            if let Err(e) = self.fill(true) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if let Some(item) = self.back.pop_front() {
            return Self::yield_item(Some(item));
        }
        Self::yield_item(self.front.pop_back())
    }
}
