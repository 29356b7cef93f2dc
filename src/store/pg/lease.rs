//! The leader lease and its fencing epoch.
//!
//! One row, `leader_lease` (holder, epoch, expires_at; migration 0001). [`acquire`] takes it
//! only when it is expired or released, in one `UPDATE ... WHERE expires_at <= now()
//! RETURNING` that also adds one to the epoch; [`renew`] moves the expiry of the epoch we hold
//! while it has not passed; [`release`] gives it up. Every question of time is answered by
//! the database's `now()`, never the host's clock, so nodes whose clocks disagree still agree
//! on who holds it. The expiry (`ttl`) is a parameter of each call, and how often to renew is
//! the caller's loop's. The clock is the current primary's: after a failover of the database
//! it is another machine's, and a skew between the two lengthens or shortens the lease in
//! force by as much (keep them synchronised); the fence does not depend on it.
//!
//! [`fenced`] runs a leader's writes in a transaction that first locks the lease row
//! (`FOR KEY SHARE`) and checks that its epoch is still ours, so a node that lost the lease
//! (paused, partitioned, expired and taken over) cannot commit. The lock is `FOR KEY SHARE`
//! rather than `FOR SHARE` because `epoch` is under a unique constraint: a take-over, which
//! changes it, needs the row's `FOR UPDATE` lock and waits for every fenced transaction in
//! flight (and they for it), while a renewal, which changes only `expires_at`, waits for none.
//! So a write either commits before the take-over that ends its epoch, or fails.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::error::Severity;
use tokio_postgres::{Client, Row, Transaction};

use super::PgError;

/// The lease, held by this node under `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The fencing epoch: one more than the lease's epoch before this take-over.
    pub epoch: i64,
    /// How long it was valid for, by the database's clock, when taken or last renewed. A node
    /// that counts it down on its own monotonic clock should count from before it sent the
    /// request (the database's `now()` was no earlier), so that it steps down no later than
    /// the database thinks; the fence keeps the writes safe either way.
    pub remaining: Duration,
}

/// The lease as the database has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// Who holds it (the node's name), if anyone; kept after expiry until the next take-over.
    pub holder: Option<String>,
    /// The epoch of the last take-over (0: never taken).
    pub epoch: i64,
    /// How long until it expires, by the database's clock; `None` when expired or released.
    pub remaining: Option<Duration>,
}

const ACQUIRE: &str = "UPDATE leader_lease
    SET holder = $1, epoch = epoch + 1, expires_at = now() + $2::bigint * interval '1 millisecond'
    WHERE id AND expires_at <= now()
    RETURNING epoch, (extract(epoch FROM expires_at - now()) * 1000)::bigint";

const RENEW: &str = "UPDATE leader_lease
    SET expires_at = now() + $2::bigint * interval '1 millisecond'
    WHERE id AND epoch = $1 AND expires_at > now()
    RETURNING epoch, (extract(epoch FROM expires_at - now()) * 1000)::bigint";

const RELEASE: &str = "UPDATE leader_lease SET expires_at = '-infinity'
    WHERE id AND epoch = $1 AND expires_at > now()";

const STATE: &str = "SELECT holder, epoch,
    CASE WHEN expires_at > now()
        THEN (extract(epoch FROM expires_at - now()) * 1000)::bigint END
    FROM leader_lease WHERE id";

const FENCE: &str = "SELECT epoch FROM leader_lease WHERE id FOR KEY SHARE";

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn lease(row: &Row) -> Result<Lease, PgError> {
    let epoch: i64 = row.try_get(0)?;
    let ms: i64 = row.try_get(1)?;
    Ok(Lease {
        epoch,
        remaining: Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
    })
}

/// Takes the lease for `holder` for `ttl` if it is expired or released; `None` while another
/// (or this node, under an earlier epoch) holds it.
pub async fn acquire(
    client: &Client,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, PgError> {
    let row = client.query_opt(ACQUIRE, &[&holder, &millis(ttl)]).await?;
    let taken = row.as_ref().map(lease).transpose()?;
    if let Some(l) = &taken {
        tracing::info!(holder, epoch = l.epoch, "leader lease taken");
    }
    Ok(taken)
}

/// Extends `lease` to `ttl` from now; [`PgError::LeaseLost`] when it has expired (even if
/// nobody took it since) or was taken.
pub async fn renew(client: &Client, lease: &Lease, ttl: Duration) -> Result<Lease, PgError> {
    match client
        .query_opt(RENEW, &[&lease.epoch, &millis(ttl)])
        .await?
    {
        Some(row) => self::lease(&row),
        None => Err(PgError::LeaseLost { epoch: lease.epoch }),
    }
}

/// Gives `lease` up so another node may take it at once; `false` when it had already expired
/// or been taken.
pub async fn release(client: &Client, lease: &Lease) -> Result<bool, PgError> {
    let n = client.execute(RELEASE, &[&lease.epoch]).await?;
    Ok(n == 1)
}

/// The lease as it stands.
pub async fn state(client: &Client) -> Result<LeaseState, PgError> {
    let row = client.query_one(STATE, &[]).await?;
    let ms: Option<i64> = row.try_get(2)?;
    Ok(LeaseState {
        holder: row.try_get(0)?,
        epoch: row.try_get(1)?,
        remaining: ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
    })
}

/// The statements of a fenced transaction: a future borrowing the transaction.
pub type Work<'t, T> = Pin<Box<dyn Future<Output = Result<T, PgError>> + Send + 't>>;

/// Runs `work`'s statements in one transaction that commits only while the lease's epoch is
/// `epoch`: the lease row is locked `FOR KEY SHARE` first and its epoch compared with ours
/// ([`PgError::Fenced`], nothing written, when it differs). The lock holds until the commit,
/// so no take-over commits in between. `work` is written as
/// `|tx| Box::pin(async move { tx.execute(...).await?; Ok(...) })`; an error from it rolls
/// back.
///
/// [`PgError::CommitUnknown`] says the commit was sent and no verdict came back (the
/// connection broke, or the server ended it while waiting for its standby): its writes may
/// be committed or not, and must not be acknowledged. Put no timeout around this call (one
/// that fires leaves the outcome as unknown, without saying so) and no cancellation on the
/// session (`statement_timeout`, `pg_cancel_backend`): PostgreSQL answers a cancelled wait
/// for the synchronous standby with a warning and a commit on the primary alone.
pub async fn fenced<T, F>(client: &mut Client, epoch: i64, work: F) -> Result<T, PgError>
where
    F: for<'t> FnOnce(&'t Transaction<'t>) -> Work<'t, T>,
{
    let tx = client.transaction().await?;
    // First, alone: a stale leader's statements must not take row locks the new leader's
    // writes would wait for. Unprepared (`query_typed`): one round trip, not two.
    let current: i64 = tx.query_typed_one(FENCE, &[]).await?.try_get(0)?;
    if current != epoch {
        return Err(PgError::Fenced {
            ours: epoch,
            current,
        });
    }
    let out = work(&tx).await?;
    tx.commit().await.map_err(commit_error)?;
    Ok(out)
}

/// A commit's error: a plain `ERROR` from the server is a verdict (rolled back); anything else
/// (the connection gone, `FATAL` or `PANIC` while waiting for the standby) leaves it unknown.
pub(super) fn commit_error(e: tokio_postgres::Error) -> PgError {
    match e.as_db_error().and_then(|db| db.parsed_severity()) {
        Some(Severity::Error) => PgError::Db(e),
        _ => PgError::CommitUnknown(e),
    }
}
