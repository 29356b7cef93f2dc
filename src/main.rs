//! The `vakt` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vakt::config::Config;

/// Exit code for an invalid configuration or command line (EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for invalid input data, e.g. a bad import file (EX_DATAERR).
const EX_DATAERR: u8 = 65;

#[derive(Parser, Debug)]
#[command(
    name = "vakt",
    version,
    about = "Alarm receiving centre server for social alarms"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (with the embedded default configuration unless --config is given).
    Serve {
        /// Configuration file (TOML); see config/vakt.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data_dir` of the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Load the demo devices (config/demo-devices.csv) if the registry is empty.
        #[arg(long)]
        demo: bool,
    },
    /// Check a configuration file: print what is wrong and exit 64, or exit 0.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// The device registry.
    Devices {
        #[command(subcommand)]
        cmd: DevicesCmd,
    },
    /// The journal of received Signals.
    Journal {
        #[command(subcommand)]
        cmd: JournalCmd,
    },
}

#[derive(Subcommand, Debug)]
enum DevicesCmd {
    /// Import devices from CSV (with the server stopped). All rows are checked first; a file
    /// with any bad row imports nothing. Header:
    /// account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area
    Import {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum JournalCmd {
    /// Print the journal as JSON lines (with the server stopped).
    Export {
        /// Data directory.
        #[arg(long, default_value = "vakt-data")]
        data_dir: PathBuf,
        /// Only Signals with an id greater than this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vakt::telemetry::init_tracing(cli.log_json);
    match cli.cmd {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EX_USAGE)
            }
        },
        Cmd::Serve {
            config,
            data_dir,
            demo,
        } => {
            let cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::from(EX_USAGE);
                    }
                },
                None => Config::embedded(),
            };
            let cfg = Config {
                data_dir: data_dir.unwrap_or(cfg.data_dir.clone()),
                ..cfg
            };
            report(serve(cfg, demo))
        }
        Cmd::Devices {
            cmd: DevicesCmd::Import { data_dir, file },
        } => {
            let f = match std::fs::File::open(&file) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(EX_DATAERR);
                }
            };
            match vakt::cli::import_devices(&data_dir, std::io::BufReader::new(f)) {
                Ok(s) => {
                    println!(
                        "imported {} devices ({} new, {} updated) into {}",
                        s.total,
                        s.new,
                        s.total - s.new,
                        data_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(vakt::cli::CliError::Import(e)) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::from(EX_DATAERR)
                }
                Err(e) => report(Err(e.into())),
            }
        }
        Cmd::Journal {
            cmd: JournalCmd::Export { data_dir, after },
        } => {
            if !data_dir.is_dir() {
                eprintln!("{}: no such data directory", data_dir.display());
                return ExitCode::from(EX_USAGE);
            }
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            report(
                vakt::cli::export_journal(&data_dir, after, out)
                    .map(|_| ())
                    .map_err(Into::into),
            )
        }
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: Config, demo: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    if demo {
        load_demo(&cfg)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vakt")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let running = vakt::server::start(cfg).await?;
        if let Some(a) = running.dc09_tcp {
            eprintln!("vakt: DC-09 TCP on {a}");
        }
        if let Some(a) = running.dc09_udp {
            eprintln!("vakt: DC-09 UDP on {a}");
        }
        if let Some(a) = running.http {
            eprintln!("vakt: HTTP on http://{a}/ (/live /ready /metrics /api/signals)");
        }
        let token = running.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        running.done.await.context("server task")??;
        anyhow::Ok(())
    })
}

fn load_demo(cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = vakt::store::Store::open(&cfg.data_dir)?;
    if store.devices()?.is_empty() {
        let devices = vakt::registry::parse_csv(vakt::registry::DEMO_CSV.as_bytes())?;
        store.upsert_devices(&devices)?;
        eprintln!(
            "vakt: loaded {} demo devices (config/demo-devices.csv)",
            devices.len()
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM received"),
                _ = i.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Raises the soft open-file limit to the hard limit: every device connection is a file.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
