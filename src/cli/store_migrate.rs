//! `vakt store migrate --from sled DIR --to postgresql://…`: a single node's data directory
//! moved to PostgreSQL ([`crate::store::copy`]), with a progress line on standard error as it
//! goes and a summary (records per tree, journal records) on standard output once the copy is
//! verified. The URL's password is never printed: the target is shown as
//! [`DatabaseUrl::redacted`] and any message is cleaned of the password before it is shown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};

use super::EX_USAGE;
use crate::config::DatabaseUrl;
use crate::store::copy::{self, CopyError, Progress};

/// `vakt store ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum StoreCmd {
    /// Copy a stopped single node's store (every record and the whole journal, with its ids)
    /// into an empty PostgreSQL database, then verify the copy (counts and digests on both
    /// sides). Refused while a vakt runs on DIR, when the database already holds a store
    /// (drop it and create it again to start over), or when DIR is not a data directory.
    Migrate {
        /// What the store is on now.
        #[arg(long, value_enum)]
        from: Source,
        /// The data directory (`data_dir` of the configuration).
        dir: PathBuf,
        /// The target database, `postgresql://user:password@host:port/database` (a
        /// `key=value` string works too). From the environment, the password stays out of
        /// the process list.
        #[arg(
            long,
            env = "VAKT_STORE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        to: String,
    },
}

/// The backends a store can be migrated from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Source {
    /// The embedded store of a single node.
    Sled,
}

/// How often the progress line is printed at most.
const EVERY: Duration = Duration::from_secs(1);

pub(super) fn run(cmd: StoreCmd) -> ExitCode {
    match cmd {
        StoreCmd::Migrate {
            from: Source::Sled,
            dir,
            to,
        } => migrate(&dir, &DatabaseUrl::new(to)),
    }
}

fn migrate(dir: &Path, url: &DatabaseUrl) -> ExitCode {
    let clean = Cleaner::new(url);
    if url.parse().is_err() {
        eprintln!("--to: not a PostgreSQL URL (postgresql://user@host:port/database)");
        return ExitCode::from(EX_USAGE);
    }
    eprintln!(
        "migrating {} to PostgreSQL at {}",
        dir.display(),
        url.redacted()
    );
    // Each stage's last count always, the counts between at most once a second.
    let mut last = Instant::now();
    let mut previous: Option<Progress> = None;
    let result = copy::migrate(dir, url.expose(), |p| {
        let same_stage = match (&previous, &p) {
            (Some(Progress::Tree { tree: a, .. }), Progress::Tree { tree: b, .. }) => a == b,
            (Some(Progress::Journal { .. }), Progress::Journal { .. }) => true,
            _ => false,
        };
        if let Some(before) = previous.take().filter(|_| !same_stage) {
            print_progress(&before);
        }
        if let Progress::Verifying { .. } = p {
            print_progress(&p);
        } else {
            if last.elapsed() >= EVERY {
                last = Instant::now();
                print_progress(&p);
            }
            previous = Some(p);
        }
    });
    match result {
        Ok(summary) => {
            println!("{:<16} {:>12}", "tree", "entries");
            for (tree, n) in &summary.trees {
                println!("{tree:<16} {n:>12}");
            }
            println!(
                "{:<16} {:>12}   (last id {})",
                "journal", summary.journal_records, summary.journal_last_id
            );
            println!("verified");
            eprintln!(
                "done: start vakt with [store] backend = \"postgres\" and this url; keep {} until the new set-up has run a while",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vakt store migrate: {}", clean.text(&e.to_string()));
            match e {
                CopyError::NotADataDirectory { .. }
                | CopyError::InUse { .. }
                | CopyError::TargetNotEmpty { .. }
                | CopyError::LeaseHeld { .. } => ExitCode::from(EX_USAGE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn print_progress(p: &Progress) {
    match p {
        Progress::Tree { tree, copied } => eprintln!("  {tree}: {copied} entries"),
        Progress::Journal { copied, total } => eprintln!("  journal: {copied} of {total} records"),
        Progress::Verifying { step } => eprintln!("  verifying {step}"),
    }
}

/// Takes the URL's password out of a message, should a driver's error ever quote it.
struct Cleaner(Option<String>);

impl Cleaner {
    fn new(url: &DatabaseUrl) -> Cleaner {
        let password = url
            .parse()
            .ok()
            .and_then(|c| {
                c.get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            })
            .filter(|p| !p.is_empty());
        Cleaner(password)
    }

    fn text(&self, s: &str) -> String {
        match &self.0 {
            Some(p) => s.replace(p.as_str(), "********"),
            None => s.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_a_message() {
        let url = DatabaseUrl::new("postgresql://vakt:s3cret-pw@127.0.0.1:5432/vakt");
        let clean = Cleaner::new(&url);
        assert_eq!(
            clean.text("failed for vakt:s3cret-pw@127.0.0.1"),
            "failed for vakt:********@127.0.0.1"
        );
        assert!(!url.redacted().contains("s3cret-pw"));
        let none = Cleaner::new(&DatabaseUrl::new("postgresql://vakt@127.0.0.1/vakt"));
        assert_eq!(none.text("as it is"), "as it is");
    }
}
