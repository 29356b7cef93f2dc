//! `vakt serve --demo`: before the server starts, [`Demo::prepare`] seeds an empty data
//! directory with the demo municipality ([`super::seed()`]) and keeps the users' passwords
//! ([`DEMO_USERS_FILE`]) and the patrols' logins ([`super::PATROL_LOGINS_FILE`]) there; once
//! it listens, [`Demo::start`] tells the newcomer how to log in and runs the simulators
//! ([`super::simulate`], [`super::simulate_patrols`]) against its own ports until it stops.

use std::path::{Path, PathBuf};

use super::{
    DemoError, OFFLINE_PATROL, PATROL_LOGINS_FILE, PatrolSimOptions, SimOptions,
    load_patrol_logins, loopback, save_patrol_logins, seed, simulate, simulate_patrols,
};
use crate::server::Running;
use crate::store::{Store, StoreError};
use crate::transport::quic::parse_fingerprint;

/// Where `serve --demo` keeps the demo users' passwords, so a later `--demo` start can show
/// them again (demo data only: real users are made with `vakt users add`).
pub const DEMO_USERS_FILE: &str = "demo-users.txt";

/// Why `serve --demo` could not prepare its data directory.
#[derive(Debug, thiserror::Error)]
pub enum ServeDemoError {
    /// The data directory, or a file in it, could not be made or written.
    #[error("{doing} {}", path.display())]
    Io {
        /// `creating` or `writing`.
        doing: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The demo could not be seeded.
    #[error(transparent)]
    Seed(#[from] DemoError),
}

/// The demo of one `serve --demo` start: the text that tells how to log in, and the data
/// directory (where the patrols' logins are).
#[derive(Debug)]
pub struct Demo {
    data_dir: PathBuf,
    login_text: String,
}

impl Demo {
    /// Seeds the demo municipality into `data_dir` if it is empty (making it if need be),
    /// before the server opens it. The users' passwords go to [`DEMO_USERS_FILE`] (mode
    /// 0600) and the patrols' logins to [`PATROL_LOGINS_FILE`]. A data directory already in
    /// use is left alone: its [`DEMO_USERS_FILE`], if any, is shown again.
    ///
    /// # Errors
    /// [`ServeDemoError`] when the directory, its store or a file cannot be made or written.
    pub fn prepare(data_dir: &Path) -> Result<Demo, ServeDemoError> {
        let io = |doing: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ServeDemoError::Io {
                doing,
                path,
                source,
            }
        };
        std::fs::create_dir_all(data_dir).map_err(io("creating", data_dir))?;
        let file = data_dir.join(DEMO_USERS_FILE);
        let store = Store::open(data_dir)?;
        let login_text = match seed(&store, jiff::Timestamp::now())? {
            Some(users) => {
                save_patrol_logins(data_dir, &users.patrols)
                    .map_err(io("writing", &data_dir.join(PATROL_LOGINS_FILE)))?;
                let text = format!(
                    "vakt: demo municipality loaded. Log in to the console as\n\
                     vakt:   {} / {}   (operator)\n\
                     vakt:   {} / {}   (supervisor)\n\
                     vakt:   {} / {}   ({}'s staff: its people, their alarms and reports)\n\
                     vakt: (also in {}; make an admin with `vakt users add NAME --role admin`)",
                    users.operator.0,
                    users.operator.1,
                    users.supervisor.0,
                    users.supervisor.1,
                    users.municipality.0,
                    users.municipality.1,
                    super::seed::DEMO_MUNICIPALITY,
                    file.display()
                );
                write_private(&file, &text).map_err(io("writing", &file))?;
                text
            }
            None => match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(_) => "vakt: the data directory is not empty, so no demo data was loaded; \
                     log in with your own users"
                    .to_string(),
            },
        };
        Ok(Demo {
            data_dir: data_dir.to_path_buf(),
            login_text,
        })
    }

    /// Once the server of `running` listens: prints how to log in and where the
    /// simulators send, and spawns them on the current Tokio runtime: the DC-09 devices and
    /// SCAIP homes, and the patrols (from the logins [`Demo::prepare`] kept). Each stops
    /// with the server's shutdown token. A listener that is off leaves its simulator out,
    /// said so.
    pub fn start(&self, running: &Running) {
        eprintln!("{}", self.login_text);
        // The simulator talks to vakt's own ports, over loopback.
        match running.dc09_tcp.map(loopback) {
            Some(a) => eprintln!("vakt: demo devices send alarms to {a} every minute or so"),
            None => eprintln!("vakt: DC-09 TCP is off, so the demo devices cannot send"),
        }
        match running.scaip_udp.map(loopback) {
            Some(a) => eprintln!(
                "vakt: demo SCAIP homes send alarms to {a} (SIP over UDP) every few minutes, \
                 and call back once you take their Call: answer to hear the person"
            ),
            None => eprintln!("vakt: SCAIP UDP is off, so the demo's SCAIP homes stay silent"),
        }
        tokio::spawn(simulate(
            running.dc09_tcp,
            running.scaip_udp,
            SimOptions::default(),
            running.shutdown.clone(),
        ));
        let fp = running
            .patrol_fingerprint
            .as_deref()
            .and_then(parse_fingerprint);
        match (running.patrol_quic, fp) {
            (Some(addr), Some(fp)) => match load_patrol_logins(&self.data_dir) {
                Ok(logins) => {
                    eprintln!(
                        "vakt: demo patrols log in to {addr} and take the assignments \
                         you dispatch ({} stays offline; tokens in {})",
                        OFFLINE_PATROL,
                        self.data_dir.join(PATROL_LOGINS_FILE).display()
                    );
                    tokio::spawn(simulate_patrols(
                        addr,
                        fp,
                        logins,
                        PatrolSimOptions::default(),
                        running.shutdown.clone(),
                    ));
                }
                Err(e) => eprintln!(
                    "vakt: no demo patrols ({e}); they are seeded only into an empty data directory"
                ),
            },
            _ => eprintln!("vakt: the patrol link is off, so the demo patrols cannot connect"),
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The first `--demo` start seeds and keeps the passwords for the owner only; a later
    /// start shows the same text again and seeds nothing.
    #[test]
    fn prepare_seeds_once_and_shows_the_same_logins_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new").join("data");
        let first = Demo::prepare(&data).unwrap();
        assert!(
            first.login_text.contains("demo municipality loaded"),
            "{}",
            first.login_text
        );
        let file = data.join(DEMO_USERS_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{}\n", first.login_text)
        );
        assert!(!load_patrol_logins(&data).unwrap().is_empty());
        let again = Demo::prepare(&data).unwrap();
        assert_eq!(again.login_text, format!("{}\n", first.login_text));
        std::fs::remove_file(&file).unwrap();
        let used = Demo::prepare(&data).unwrap();
        assert!(
            used.login_text
                .contains("not empty, so no demo data was loaded"),
            "{}",
            used.login_text
        );
    }

    #[test]
    fn a_data_directory_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let e = Demo::prepare(&blocker.join("data")).unwrap_err();
        let msg = format!("{:#}", anyhow::Error::from(e));
        assert!(
            msg.starts_with(&format!("creating {}: ", blocker.join("data").display())),
            "{msg}"
        );
    }
}
