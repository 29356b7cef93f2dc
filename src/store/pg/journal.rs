//! The journal on PostgreSQL: the `journal` table of migration 0001, one row per record.
//!
//! A group commit is one statement, `INSERT ... SELECT FROM unnest(...)` of the whole batch,
//! which inserts only where its first id is one past the table's last
//! (`coalesce(max(id), 0) + 1`, an index lookup), so ids stay consecutive and a second writer
//! cannot interleave: a refused batch writes nothing. It runs as one implicit transaction, one
//! round trip. With a lease epoch ([`PgJournal::set_epoch`]) the same statement first locks
//! the lease row and compares its epoch, as [`lease::fenced`] does in its transaction, so a
//! node that lost the lease cannot commit; written into the one statement rather than through
//! [`lease::fenced`] (begin, check, insert, commit: four round trips) because this is the
//! commit every alarm waits for, and the three round trips more cost 0.2-0.3 ms a commit
//! (`commit_through_the_interface` in tests/journal_contract.rs). Whether the commit waits
//! for the synchronous standby is the cluster's setting (`synchronous_standby_names`,
//! `synchronous_commit`), which this module never lowers. No `statement_timeout` and no
//! cancellation is ever put on it: PostgreSQL answers a cancelled wait for the standby with a
//! commit on the primary alone. A commit whose answer never came is
//! [`PgError::CommitUnknown`]: the journal does not acknowledge it, and learns afterwards from
//! [`PgJournal::next_id`] and [`PgJournal::after`] whether it landed.
//!
//! The dedup window is read back from the journal's own `dedup_key` and `received_at` at start
//! ([`PgJournal::recent`]), as on sled; the `dedup_window` table of migration 0001 is left
//! unused, so there is no second table that could disagree with the journal.
//!
//! The journal's committer is a plain OS thread, and the readers run in blocking tasks, as
//! with sled. So [`PgJournal`] owns a small current-thread tokio runtime and drives its
//! clients with that runtime's `block_on` on the caller's thread: the committer thread does
//! its own socket I/O, with no hand-off to a worker of the server's runtime and back on every
//! commit, and no burst of device connections on the server's runtime can delay a commit's
//! answer; it also needs no runtime around it, so the tests drive it from plain threads. It
//! must not be called from an async task (`block_on` panics there). Two connections, one for
//! the committer's writes and one for the readers, each opened again on its next use after it
//! broke (a failover: with several hosts and `target_session_attrs=read-write` in the URL the
//! new primary is found); until then every operation fails and no record is acknowledged.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, Config, Statement};

use super::super::{JournalRecord, NewRecord, StoreError, decode_record};
use super::{PgError, lease, migrate};

pub(super) const NEXT: &str = "SELECT coalesce(max(id), 0) + 1 FROM journal";

const INSERT: &str = "INSERT INTO journal (id, dedup_key, received_at, payload)
    SELECT $1::bigint + t.n - 1, t.k, 'epoch'::timestamptz + t.us * interval '1 microsecond', t.p
    FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) WITH ORDINALITY AS t(k, us, p, n)
    WHERE (SELECT coalesce(max(id), 0) + 1 FROM journal) = $1::bigint";

/// [`INSERT`] under the lease's epoch `$5`: the lease row locked `FOR KEY SHARE` as
/// [`lease::fenced`] locks it, in the same implicit transaction, so a take-over waits for the
/// commit and a stale epoch inserts nothing (and, inserting nothing, locks no journal row).
const INSERT_FENCED: &str = "INSERT INTO journal (id, dedup_key, received_at, payload)
    SELECT $1::bigint + t.n - 1, t.k, 'epoch'::timestamptz + t.us * interval '1 microsecond', t.p
    FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) WITH ORDINALITY AS t(k, us, p, n)
    WHERE (SELECT epoch FROM leader_lease WHERE id FOR KEY SHARE) = $5::bigint
    AND (SELECT coalesce(max(id), 0) + 1 FROM journal) = $1::bigint";

const EPOCH: &str = "SELECT epoch FROM leader_lease WHERE id";

pub(super) const AFTER: &str = "SELECT id, payload FROM journal WHERE id > $1 ORDER BY id LIMIT $2";

const RECENT: &str = "SELECT id, payload FROM journal
    WHERE received_at >= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'
    ORDER BY id DESC LIMIT $2";

/// How long opening a connection may take when the URL does not say (`connect_timeout`): a
/// host that drops packets must not hold the committer for the kernel's minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The journal on PostgreSQL; clones share the connections.
#[derive(Clone)]
pub struct PgJournal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgJournal {
    // Not the configuration: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// `Some` until dropped (then shut down without waiting: a drop may happen on an async
    /// task, where waiting is not allowed).
    rt: Option<tokio::runtime::Runtime>,
    config: Config,
    writer: Mutex<Option<Conn>>,
    reader: Mutex<Option<Conn>>,
    /// The lease epoch that fences commits; 0: none (epochs start at 1).
    epoch: AtomicI64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    next: Statement,
    insert: Statement,
    insert_fenced: Statement,
    epoch: Statement,
    after: Statement,
    recent: Statement,
}

fn id_to_db(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Corrupt {
        tree: "journal",
        detail: format!("id {id} beyond the database's bigint"),
    })
}

pub(super) fn id_from_db(id: i64) -> Result<u64, StoreError> {
    u64::try_from(id).map_err(|_| StoreError::Corrupt {
        tree: "journal",
        detail: format!("negative id {id}"),
    })
}

impl PgJournal {
    /// Connects to `url` (a `postgresql://` URL or `key=value` string), brings the schema up
    /// to date ([`migrate::migrate`]) and returns the journal, unfenced. Blocks its thread:
    /// not on an async task ([`PgJournal::unconnected`] is for there).
    pub fn open(url: &str) -> Result<PgJournal, StoreError> {
        let journal = PgJournal::unconnected(url)?;
        // The schema first (on a connection of its own: the journal's prepare statements on
        // its tables), then the writer's connection, so that a wrong URL fails here.
        if let Some(rt) = &journal.inner.rt {
            rt.block_on(migrate::migrate_config(&journal.inner.config))?;
        }
        journal.with(&journal.inner.writer, |_| Box::pin(async { Ok(()) }))?;
        Ok(journal)
    }

    /// The journal on `url` without connecting yet (each connection is opened on its first
    /// use, by the committer's thread or a reader's): for a caller that may be on an async
    /// task and has brought the schema up to date itself ([`crate::store::Store::open_postgres`]).
    pub fn unconnected(url: &str) -> Result<PgJournal, StoreError> {
        let mut config: Config = url.parse().map_err(PgError::Db)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        Ok(PgJournal {
            inner: Arc::new(Inner {
                rt: Some(rt),
                config,
                writer: Mutex::new(None),
                reader: Mutex::new(None),
                epoch: AtomicI64::new(0),
            }),
        })
    }

    /// Fences every later commit by the lease's `epoch` (`None`: unfenced, a single node).
    pub fn set_epoch(&self, epoch: Option<i64>) {
        self.inner
            .epoch
            .store(epoch.unwrap_or(0), Ordering::Release);
    }

    /// The epoch commits are fenced by.
    pub fn epoch(&self) -> Option<i64> {
        Some(self.inner.epoch.load(Ordering::Acquire)).filter(|e| *e != 0)
    }

    /// Runs `work` on the connection in `slot`, opening it first if it is missing or broken;
    /// a connection that broke during `work` is dropped, to be opened again next time.
    fn with<T>(
        &self,
        slot: &Mutex<Option<Conn>>,
        work: impl for<'c> FnOnce(&'c mut Conn) -> lease::Work<'c, T>,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.inner.rt else {
            return Err(PgError::Closed.into());
        };
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        let config = &self.inner.config;
        let out = rt.block_on(async {
            if guard.is_none() {
                *guard = Some(connect(config).await?);
            }
            match guard.as_mut() {
                Some(conn) => work(conn).await,
                None => Err(PgError::Closed),
            }
        });
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        Ok(out?)
    }

    /// The id the next commit's first record gets, read on the writer's connection.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        let next = self.with(&self.inner.writer, |c| {
            Box::pin(async move {
                let row = c.client.query_one(&c.next, &[]).await?;
                Ok(row.try_get::<_, i64>(0)?)
            })
        })?;
        id_from_db(next)
    }

    /// Commits `records` as ids `first_id..` in one transaction, fenced when an epoch is set;
    /// see the module doc. With no records, nothing to do: a commit that returned is durable.
    pub fn commit(&self, first_id: u64, records: &[NewRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let first = id_to_db(first_id)?;
        let keys: Vec<Option<Vec<u8>>> = records.iter().map(|r| r.dedup.map(Vec::from)).collect();
        let micros: Vec<i64> = records
            .iter()
            .map(|r| r.received_at.as_microsecond())
            .collect();
        let json: Vec<Vec<u8>> = records.iter().map(|r| r.json.clone()).collect();
        let want = records.len() as u64;
        let epoch = self.epoch();
        let inserted = self.with(&self.inner.writer, move |c| {
            Box::pin(async move {
                let inserted = match epoch {
                    None => c
                        .client
                        .execute(&c.insert, &[&first, &keys, &micros, &json])
                        .await
                        .map_err(lease::commit_error)?,
                    Some(epoch) => c
                        .client
                        .execute(&c.insert_fenced, &[&first, &keys, &micros, &json, &epoch])
                        .await
                        .map_err(lease::commit_error)?,
                };
                // Refused as a whole (the WHERE): nothing was written. Fenced, or a gap?
                if let (Some(ours), false) = (epoch, inserted == want) {
                    let current: i64 = c.client.query_one(&c.epoch, &[]).await?.try_get(0)?;
                    if current != ours {
                        return Err(PgError::Fenced { ours, current });
                    }
                }
                Ok(inserted)
            })
        })?;
        if inserted != want {
            return Err(StoreError::JournalGap {
                first_id,
                next: self.next_id()?,
            });
        }
        Ok(())
    }

    /// Up to `limit` records with an id greater than `after`, in id order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>, StoreError> {
        let after = id_to_db(after)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with(&self.inner.reader, |c| {
            Box::pin(async move { Ok(c.client.query(&c.after, &[&after, &limit]).await?) })
        })?;
        decode_rows(&rows)
    }

    /// The records received at or after `since`, newest first, at most `limit`.
    pub fn recent(
        &self,
        since: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        let since = since.as_microsecond();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with(&self.inner.reader, |c| {
            Box::pin(async move { Ok(c.client.query(&c.recent, &[&since, &limit]).await?) })
        })?;
        decode_rows(&rows)
    }
}

fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<JournalRecord>, StoreError> {
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0).map_err(PgError::Db)?;
            let payload: &[u8] = row.try_get(1).map_err(PgError::Db)?;
            decode_record(id_from_db(id)?, payload)
        })
        .collect()
}

/// Opens a connection (its driver a task on the journal's runtime) and prepares the
/// statements.
async fn connect(config: &Config) -> Result<Conn, PgError> {
    let client = super::connect(config, "journal").await?;
    Ok(Conn {
        next: client.prepare(NEXT).await?,
        insert: client.prepare(INSERT).await?,
        insert_fenced: client.prepare(INSERT_FENCED).await?,
        epoch: client.prepare(EPOCH).await?,
        after: client.prepare(AFTER).await?,
        recent: client.prepare(RECENT).await?,
        client,
    })
}
