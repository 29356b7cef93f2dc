//! Moving a single node's store from its sled data directory to PostgreSQL (`vakt store
//! migrate`): [`migrate`].
//!
//! **What is copied.** Every tree of the store, each key and value as it is (the values are
//! the same JSON on both backends, [`super::kv`]), a page at a time through the trees' own
//! batches; then the whole journal, its records with their ids, in batches through the
//! PostgreSQL journal's own commit ([`JournalStore::commit`]), which takes a batch only as
//! the next ids, so the ids stay consecutive and the same as on sled. The payload of each
//! record is copied byte for byte from the sled entry it was packed in, not encoded again.
//! Memory stays bounded by one page ([`PAGE_ENTRIES`], [`PAGE_BYTES`]) whatever the store's
//! size.
//!
//! **What is refused**, before anything is written: a directory that is not a vakt data
//! directory (no sled database in it, or trees vakt does not know holding data); a directory a
//! running vakt holds (sled's lock); a target database that already holds a store (any row in
//! `kv` or `journal`: the copy starts from nothing, and starting over is dropping the
//! database); a target whose leader lease a node holds.
//!
//! **While it copies** it holds the target's leader lease, renewed as it goes, and every
//! write is fenced by its epoch: a `vakt serve` started on the target meanwhile stands by
//! instead of serving a half-copied store, and takes the lease once the copy released it.
//!
//! **At the end it verifies**, from the two databases as they are then: per tree the number
//! of entries and a SHA-256 digest of its keys and values in key order; for the journal the
//! number of records, the last id and a digest of every id and payload.
//!
//! Written here rather than with a crate: the copy is the store's own trees and journal read
//! through the store's own backends; no general-purpose tool knows sled's entries.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest;

use super::journal::NewRecord;
use super::pg::{PgError, lease};
use super::{JournalStore, Store, StoreError, id_of, is_lock_held, kv, split, unpack};

/// Entries (or journal records) written per batch, at most.
pub const PAGE_ENTRIES: usize = 1000;
/// Bytes of keys and values (or journal payloads) per batch, at most (a single larger entry
/// goes alone).
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The lease's holder while a copy runs, as `vakt cluster status` shows it.
pub const LEASE_HOLDER: &str = "vakt store migrate";
/// How long the lease is taken for, and how often it is renewed.
const LEASE_TTL: Duration = Duration::from_secs(30);
const LEASE_RENEW: Duration = Duration::from_secs(5);

/// sled's own tree, which vakt never writes; it must be empty.
const SLED_DEFAULT: &str = "__sled__default";

/// Why a migration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source directory holds no vakt store.
    #[error("{dir} is not a vakt data directory: {why}")]
    NotADataDirectory {
        /// The directory.
        dir: String,
        /// What is missing or foreign.
        why: String,
    },
    /// A vakt holds the directory (sled's lock).
    #[error(
        "vakt is running on {dir} (the database's lock is held): stop it, then migrate; a store that is still written to cannot be copied"
    )]
    InUse {
        /// The directory.
        dir: String,
    },
    /// The target database holds a store already.
    #[error(
        "the target database already holds a vakt store ({kv_rows} records, {journal_rows} journal records): nothing was written; to start over, drop the database and create it again (DROP DATABASE {database}; CREATE DATABASE {database};)"
    )]
    TargetNotEmpty {
        /// Rows in `kv`.
        kv_rows: i64,
        /// Rows in `journal`.
        journal_rows: i64,
        /// The target database's name.
        database: String,
    },
    /// A node holds the target's lease: it runs on the target.
    #[error(
        "the target's leader lease is held by {holder} (epoch {epoch}): a vakt node runs on the target database; stop it first"
    )]
    LeaseHeld {
        /// The holder.
        holder: String,
        /// Its epoch.
        epoch: i64,
    },
    /// The source's journal is not one run of consecutive ids from 1.
    #[error(
        "the source's journal has an entry at id {found} where id {expected} was next (a gap, or a journal that does not start at 1): it cannot be copied with its ids"
    )]
    JournalGap {
        /// The entry's first id.
        found: u64,
        /// The id expected.
        expected: u64,
    },
    /// The copy differs from the source.
    #[error("verification failed: {0}")]
    Mismatch(String),
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something failed after the target was first written to.
    #[error(
        "{0}; the target database holds part of the store now: drop it and create it again before the next attempt"
    )]
    Partial(Box<CopyError>),
}

impl From<PgError> for CopyError {
    fn from(e: PgError) -> CopyError {
        CopyError::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> CopyError {
        PgError::Db(e).into()
    }
}

/// How far a migration is, for a progress line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `copied` entries of `tree` written so far.
    Tree {
        /// The tree.
        tree: &'static str,
        /// Entries written.
        copied: u64,
    },
    /// `copied` journal records of `total` committed so far.
    Journal {
        /// Records committed.
        copied: u64,
        /// Records in the source's journal.
        total: u64,
    },
    /// Verifying: `step` (a tree, or "journal").
    Verifying {
        /// What is compared now.
        step: &'static str,
    },
}

/// What a migration copied, verified on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Entries per tree, in the order copied.
    pub trees: Vec<(&'static str, u64)>,
    /// Journal records.
    pub journal_records: u64,
    /// The last journal id (0: empty).
    pub journal_last_id: u64,
}

/// The store's trees but the journal, by the names the store opens them under.
fn trees(s: &Store) -> [(&'static str, &kv::Tree); 16] {
    [
        ("devices", &s.devices),
        ("last_heard", &s.last_heard),
        ("subscribers", &s.subscribers),
        ("users", &s.users),
        ("sessions", &s.sessions),
        ("audit", &s.audit),
        ("calls", &s.calls),
        ("conversations", &s.conversations),
        ("directory", &s.directory),
        ("dispatches", &s.dispatches),
        ("incidents", &s.incidents),
        ("integrations", &s.integrations),
        ("outbox", &s.outbox),
        ("work_orders", &s.work_orders),
        ("plans", &s.plans),
        ("life", &s.life),
    ]
}

/// Copies the store in the sled data directory `dir` to the empty PostgreSQL database at
/// `url`, then verifies the copy (the module doc). `progress` hears each page written.
pub fn migrate(
    dir: &Path,
    url: &str,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, CopyError> {
    let source = open_source(dir)?;
    let target = Store::open_postgres(url)?;
    let mut lease = Held::take(url)?;
    let result = (|| {
        // Again under the lease: nothing wrote in between.
        lease.target_is_empty()?;
        target.set_epoch(Some(lease.lease.epoch));
        let copied = copy(&source, &target, &mut lease, &mut progress)
            .and_then(|()| verify(&source, &target, &mut progress))
            .map_err(|e| CopyError::Partial(Box::new(e)))?;
        Ok(copied)
    })();
    lease.release();
    result
}

/// Opens the sled store in `dir`, refusing a directory that is not vakt's or that a running
/// vakt holds.
fn open_source(dir: &Path) -> Result<Store, CopyError> {
    let shown = dir.display().to_string();
    let not = |why: String| CopyError::NotADataDirectory {
        dir: shown.clone(),
        why,
    };
    if !dir.is_dir() {
        return Err(not("no such directory".into()));
    }
    // sled's files: checked before opening, which would create a database anywhere.
    for file in ["conf", "db"] {
        if !dir.join(file).is_file() {
            return Err(not(format!("no sled database in it (no `{file}` file)")));
        }
    }
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(StoreError::Open {
            source: sled::Error::Io(e),
            ..
        }) if is_lock_held(&e) => return Err(CopyError::InUse { dir: shown }),
        Err(e) => return Err(e.into()),
    };
    let known: Vec<&str> = trees(&store).iter().map(|(n, _)| *n).collect();
    for (name, tree) in store.engine.sled_trees()?.unwrap_or_default() {
        let ours = name == "journal" || known.contains(&name.as_str());
        if !ours && tree.iter().next().is_some() {
            return Err(not(format!(
                "it holds a tree vakt does not know: {name:?}{}",
                if name == SLED_DEFAULT {
                    " (sled's default tree, which vakt never writes)"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(store)
}

/// The target's lease, held while the copy runs, on a connection of its own.
struct Held {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    lease: lease::Lease,
    renewed: Instant,
    database: String,
}

impl Held {
    /// Refuses a target that holds a store, then takes the lease, or says who holds it.
    fn take(url: &str) -> Result<Held, CopyError> {
        let config: tokio_postgres::Config = url.parse()?;
        let database = config.get_dbname().unwrap_or("postgres").to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let client = rt.block_on(super::pg::connect(&config, "store migrate"))?;
        // Refused before the lease is touched: a refusal changes nothing.
        empty(&rt, &client, &database)?;
        let asked = Instant::now();
        let taken = rt.block_on(lease::acquire(&client, LEASE_HOLDER, LEASE_TTL))?;
        let Some(lease) = taken else {
            let state = rt.block_on(lease::state(&client))?;
            return Err(CopyError::LeaseHeld {
                holder: state.holder.unwrap_or_else(|| "nobody named".into()),
                epoch: state.epoch,
            });
        };
        Ok(Held {
            rt,
            client,
            lease,
            renewed: asked,
            database,
        })
    }

    /// Refuses a target that holds any record.
    fn target_is_empty(&self) -> Result<(), CopyError> {
        empty(&self.rt, &self.client, &self.database)
    }

    /// Renews the lease when it is due.
    fn keep(&mut self) -> Result<(), CopyError> {
        if self.renewed.elapsed() < LEASE_RENEW {
            return Ok(());
        }
        let asked = Instant::now();
        self.lease = self
            .rt
            .block_on(lease::renew(&self.client, &self.lease, LEASE_TTL))?;
        self.renewed = asked;
        Ok(())
    }

    /// Gives the lease up, so that a node may take it at once.
    fn release(self) {
        if let Err(e) = self.rt.block_on(lease::release(&self.client, &self.lease)) {
            tracing::warn!(error = %e, "cannot release the lease; it expires by itself");
        }
    }
}

/// Refuses a target that holds any record.
fn empty(
    rt: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<(), CopyError> {
    let row = rt.block_on(client.query_one(
        "SELECT (SELECT count(*) FROM kv), (SELECT count(*) FROM journal)",
        &[],
    ))?;
    let (kv_rows, journal_rows): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if kv_rows > 0 || journal_rows > 0 {
        return Err(CopyError::TargetNotEmpty {
            kv_rows,
            journal_rows,
            database: database.to_owned(),
        });
    }
    Ok(())
}

/// Copies every tree, then the journal.
fn copy(
    source: &Store,
    target: &Store,
    lease: &mut Held,
    progress: &mut impl FnMut(Progress),
) -> Result<(), CopyError> {
    for ((name, from), (_, to)) in trees(source).into_iter().zip(trees(target)) {
        let (mut batch, mut entries, mut bytes, mut copied) = (kv::Batch::default(), 0, 0, 0u64);
        let mut write = |batch: kv::Batch, entries: usize, copied: &mut u64| {
            lease.keep()?;
            to.apply_batch(batch)?;
            *copied += entries as u64;
            progress(Progress::Tree {
                tree: name,
                copied: *copied,
            });
            Ok::<_, CopyError>(())
        };
        for item in from.iter() {
            let (k, v) = item?;
            bytes += k.len() + v.len();
            batch.insert(k, v);
            entries += 1;
            if entries >= PAGE_ENTRIES || bytes >= PAGE_BYTES {
                write(std::mem::take(&mut batch), entries, &mut copied)?;
                (entries, bytes) = (0, 0);
            }
        }
        if entries > 0 || copied == 0 {
            write(batch, entries, &mut copied)?;
        }
    }
    copy_journal(source, target.journal_store(), lease, progress)
}

/// Copies the journal's records, in id order, in batches of consecutive ids.
fn copy_journal(
    source: &Store,
    target: JournalStore,
    lease: &mut Held,
    progress: &mut impl FnMut(Progress),
) -> Result<(), CopyError> {
    let total = source.next_journal_id()?.saturating_sub(1);
    let next = target.next_id()?;
    let mut pages = Pages {
        target,
        lease,
        progress,
        total,
        batch: Vec::new(),
        bytes: 0,
        first: next,
        next,
        copied: 0,
    };
    if let Some(log) = &source.log {
        // The journal's own log: its records as they are, a page at a time.
        loop {
            let page = log.raw_after(pages.next.saturating_sub(1), PAGE_ENTRIES)?;
            if page.is_empty() {
                break;
            }
            for r in page {
                pages.expect(r.id)?;
                let received_at =
                    jiff::Timestamp::from_millisecond(r.received_ms).map_err(|e| {
                        StoreError::Corrupt {
                            tree: "journal",
                            detail: e.to_string(),
                        }
                    })?;
                pages.push(NewRecord {
                    received_at,
                    dedup: r.dedup,
                    json: r.payload,
                })?;
            }
        }
        return pages.finish();
    }
    source.each_tree_commit(|first_id, records| {
        pages.expect(first_id)?;
        records.into_iter().try_for_each(|r| pages.push(r))
    })?;
    pages.finish()
}

/// The journal's records on their way to the target, a page ([`PAGE_ENTRIES`],
/// [`PAGE_BYTES`]) at a time, each page one commit.
struct Pages<'a, P: FnMut(Progress)> {
    target: JournalStore,
    lease: &'a mut Held,
    progress: &'a mut P,
    total: u64,
    batch: Vec<NewRecord>,
    bytes: usize,
    /// The first id of the page being gathered.
    first: u64,
    /// The id the next record must have.
    next: u64,
    copied: u64,
}

impl<P: FnMut(Progress)> Pages<'_, P> {
    /// Refuses a record (or an entry) that does not start at the next id.
    fn expect(&self, id: u64) -> Result<(), CopyError> {
        if id == self.next {
            Ok(())
        } else {
            Err(CopyError::JournalGap {
                found: id,
                expected: self.next,
            })
        }
    }

    fn push(&mut self, r: NewRecord) -> Result<(), CopyError> {
        self.bytes += r.json.len();
        self.batch.push(r);
        self.next += 1;
        if self.batch.len() >= PAGE_ENTRIES || self.bytes >= PAGE_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), CopyError> {
        self.lease.keep()?;
        self.target.commit(self.first, &self.batch)?;
        self.first += self.batch.len() as u64;
        self.copied += self.batch.len() as u64;
        self.batch.clear();
        self.bytes = 0;
        (self.progress)(Progress::Journal {
            copied: self.copied,
            total: self.total,
        });
        Ok(())
    }

    /// The last page (also an empty one when nothing was copied, which makes the target's
    /// empty journal durable).
    fn finish(mut self) -> Result<(), CopyError> {
        if !self.batch.is_empty() || self.copied == 0 {
            self.commit()?;
        }
        Ok(())
    }
}

/// The number of entries and a digest of each key and value, in key order.
fn tree_digest(tree: &kv::Tree) -> Result<(u64, [u8; 32]), StoreError> {
    let mut d = sha2::Sha256::new();
    let mut n = 0;
    for item in tree.iter() {
        let (k, v) = item?;
        absorb(&mut d, &k);
        absorb(&mut d, &v);
        n += 1;
    }
    Ok((n, d.finalize().into()))
}

/// Length-prefixed, so that no two different sequences digest the same.
fn absorb(d: &mut sha2::Sha256, bytes: &[u8]) {
    d.update((bytes.len() as u64).to_be_bytes());
    d.update(bytes);
}

/// The journal's records (count, last id, digest of ids and payloads) on sled.
fn sled_journal_digest(store: &Store) -> Result<(u64, u64, [u8; 32]), StoreError> {
    let (mut d, mut n, mut last) = (sha2::Sha256::new(), 0, 0);
    if let Some(log) = &store.log {
        loop {
            let page = log.raw_after(last, PAGE_ENTRIES)?;
            if page.is_empty() {
                break;
            }
            for r in page {
                last = r.id;
                d.update(last.to_be_bytes());
                absorb(&mut d, &r.payload);
                n += 1;
            }
        }
        return Ok((n, last, d.finalize().into()));
    }
    for item in store.journal.iter() {
        let (k, v) = item?;
        let first = id_of(&k)?;
        for (i, json) in split(&unpack(&v)?)?.into_iter().enumerate() {
            last = first + i as u64;
            d.update(last.to_be_bytes());
            absorb(&mut d, json);
            n += 1;
        }
    }
    Ok((n, last, d.finalize().into()))
}

/// The same on PostgreSQL, a page at a time.
fn pg_journal_digest(store: &Store) -> Result<(u64, u64, [u8; 32]), StoreError> {
    let kv::Engine::Pg(pg) = &store.engine else {
        return Err(StoreError::Corrupt {
            tree: "journal",
            detail: "the target is not on PostgreSQL".into(),
        });
    };
    let (mut d, mut n, mut last) = (sha2::Sha256::new(), 0, 0);
    loop {
        let page = pg.journal_after(last, PAGE_ENTRIES)?;
        if page.is_empty() {
            return Ok((n, last, d.finalize().into()));
        }
        for (id, payload) in page {
            d.update(id.to_be_bytes());
            absorb(&mut d, &payload);
            (n, last) = (n + 1, id);
        }
    }
}

/// Compares both sides (the module doc); the summary when they are equal.
fn verify(
    source: &Store,
    target: &Store,
    progress: &mut impl FnMut(Progress),
) -> Result<Summary, CopyError> {
    let mut summary = Summary {
        trees: Vec::new(),
        journal_records: 0,
        journal_last_id: 0,
    };
    for ((name, from), (_, to)) in trees(source).into_iter().zip(trees(target)) {
        progress(Progress::Verifying { step: name });
        let (a, b) = (tree_digest(from)?, tree_digest(to)?);
        if a != b {
            return Err(CopyError::Mismatch(format!(
                "tree {name}: {} entries on sled, {} on PostgreSQL{}",
                a.0,
                b.0,
                if a.0 == b.0 {
                    ", their digests differ"
                } else {
                    ""
                }
            )));
        }
        summary.trees.push((name, a.0));
    }
    progress(Progress::Verifying { step: "journal" });
    let (a, b) = (sled_journal_digest(source)?, pg_journal_digest(target)?);
    if a != b {
        return Err(CopyError::Mismatch(format!(
            "journal: {} records up to id {} on sled, {} up to id {} on PostgreSQL{}",
            a.0,
            a.1,
            b.0,
            b.1,
            if (a.0, a.1) == (b.0, b.1) {
                ", their digests differ"
            } else {
                ""
            }
        )));
    }
    (summary.journal_records, summary.journal_last_id) = (a.0, a.1);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list of trees the copy takes is every tree the store opens: a tree added to the
    /// store and not here fails this test, not a migration.
    #[test]
    fn the_copy_takes_every_tree_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut opened: Vec<String> = store
            .engine
            .sled_trees()
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n != SLED_DEFAULT && n != "journal")
            .collect();
        let mut listed: Vec<String> = trees(&store).iter().map(|(n, _)| n.to_string()).collect();
        opened.sort();
        listed.sort();
        assert_eq!(opened, listed);
        // And each name is that of the tree beside it.
        for (name, tree) in trees(&store) {
            let kv::Tree::Sled(t) = tree else {
                panic!("sled")
            };
            assert_eq!(&t.name()[..], name.as_bytes());
        }
    }

    /// A sled database of another program (a tree vakt does not know, or sled's default tree,
    /// holding data) is not taken for a data directory; an empty directory is left as it was.
    #[test]
    fn a_foreign_sled_database_is_not_a_data_directory() {
        for tree in ["inventory", SLED_DEFAULT] {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = sled::open(dir.path()).unwrap();
                db.open_tree(tree).unwrap().insert("k", "v").unwrap();
                db.flush().unwrap();
            }
            match open_source(dir.path()) {
                Err(CopyError::NotADataDirectory { why, .. }) => {
                    assert!(why.contains(tree), "{why}")
                }
                other => panic!("{tree}: {:?}", other.map(|_| ())),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let err = open_source(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no sled database"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
