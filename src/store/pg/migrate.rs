//! Schema migrations: SQL files in `src/store/pg/migrations/`, named `NNNN_name.sql`, embedded
//! in the binary and applied at start.
//!
//! Each migration runs in a transaction of its own that first takes a transaction-scoped
//! advisory lock ([`LOCK_KEY`]), so nodes starting at once apply each migration exactly once:
//! the second waits for the first's commit, then finds the migration recorded. What is applied
//! is recorded in `schema_migrations` (version, name, SHA-256 of the SQL, when). A database
//! whose newest version is beyond this binary's is refused ([`PgError::SchemaNewer`]), and so
//! is one whose record of a known version differs from the binary's
//! ([`PgError::MigrationChanged`]): a migration is never edited once released, a new one is
//! added. A migration must be able to run inside a transaction (no
//! `CREATE INDEX CONCURRENTLY`).
//!
//! Written by hand rather than with a migration crate: it is some sixty lines over
//! tokio-postgres, and keeps the lock, the two refusals and the record in one place to read.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::PgError;

/// One migration: a version, a name and its SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The version, from 1, one more than the one before.
    pub version: i32,
    /// The name (the file's, without number and extension).
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

impl Migration {
    /// The hex SHA-256 of the SQL.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// vakt's migrations, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "journal_dedup_lease",
        sql: include_str!("migrations/0001_journal_dedup_lease.sql"),
    },
    Migration {
        version: 2,
        name: "kv",
        sql: include_str!("migrations/0002_kv.sql"),
    },
];

/// The key of the advisory lock taken by each migration's transaction ("vaktmigr").
pub const LOCK_KEY: i64 = i64::from_be_bytes(*b"vaktmigr");

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// [`migrate`] on a connection of its own, closed after: for the openers whose own
/// connections prepare statements on the tables the migrations create.
pub async fn migrate_config(config: &tokio_postgres::Config) -> Result<Vec<i32>, PgError> {
    let mut client = super::connect(config, "migrations").await?;
    migrate(&mut client).await
}

/// Brings the database to vakt's newest schema ([`MIGRATIONS`]); returns the versions this
/// call applied (empty when another node or an earlier start applied them).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, PgError> {
    apply(client, MIGRATIONS).await
}

/// Applies `migrations` (oldest first) that the database has not recorded, one transaction
/// each under the advisory lock; returns the versions applied by this call.
pub async fn apply(client: &mut Client, migrations: &[Migration]) -> Result<Vec<i32>, PgError> {
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let mut applied = Vec::new();
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        tx.batch_execute(CREATE_TABLE).await?;
        let mut recorded = BTreeMap::new();
        for row in tx
            .query("SELECT version, name, checksum FROM schema_migrations", &[])
            .await?
        {
            let version: i32 = row.try_get(0)?;
            let name: String = row.try_get(1)?;
            let checksum: String = row.try_get(2)?;
            recorded.insert(version, format!("{name} {checksum}"));
        }
        if let Some((&newest, _)) = recorded.last_key_value() {
            if newest > known {
                return Err(PgError::SchemaNewer {
                    database: newest,
                    known,
                });
            }
        }
        for (&version, was) in &recorded {
            let ours = migrations
                .iter()
                .find(|m| m.version == version)
                .map(|m| format!("{} {}", m.name, m.checksum()));
            if ours.as_deref() != Some(was.as_str()) {
                return Err(PgError::MigrationChanged {
                    version,
                    recorded: was.clone(),
                    ours: ours.unwrap_or_else(|| "absent".to_owned()),
                });
            }
        }
        let Some(next) = migrations
            .iter()
            .find(|m| !recorded.contains_key(&m.version))
        else {
            tx.commit().await?;
            return Ok(applied);
        };
        tx.batch_execute(next.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&next.version, &next.name, &next.checksum()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = next.version,
            name = next.name,
            "schema migration applied"
        );
        applied.push(next.version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the folder is embedded, in order, under its own number and name.
    #[test]
    fn the_migrations_are_the_folders_files_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/pg/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let ours: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, ours);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/store/pg/migrations")
                .join(&ours[i]);
            assert_eq!(std::fs::read_to_string(file).unwrap(), m.sql);
        }
    }
}
