//! Sub-commands that work on a stopped server's data directory: device import and journal
//! export. (sled locks the directory, so they refuse to run beside a live server.)

use std::io::Write;
use std::path::Path;

use crate::registry::{self, ImportError};
use crate::store::{Store, StoreError};

/// Why a sub-command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The import file is invalid; nothing was imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Summary of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Devices in the file.
    pub total: usize,
    /// Of them, new to the registry (the rest replaced existing entries).
    pub new: usize,
}

/// Imports a devices CSV into the registry of `data_dir`. All or nothing.
pub fn import_devices(data_dir: &Path, csv: impl std::io::Read) -> Result<ImportSummary, CliError> {
    let devices = registry::parse_csv(csv)?;
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(data_dir)?;
    let new = store.upsert_devices(&devices)?;
    Ok(ImportSummary {
        total: devices.len(),
        new,
    })
}

/// Writes the journal (Signals with id > `after`) as JSON lines.
pub fn export_journal(data_dir: &Path, after: u64, mut out: impl Write) -> Result<u64, CliError> {
    let store = Store::open(data_dir)?;
    let mut next = after;
    let mut n = 0;
    loop {
        let batch = store.journal_after(next, 1000)?;
        let Some(last) = batch.last() else { break };
        next = last.signal.id;
        for r in &batch {
            serde_json::to_writer(&mut out, &r.signal).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}
