//! `vakt-loadtest`: DC-09 device fleet simulator and load generator for vakt.
//!
//! Sub-commands (see `README.md` beside `Cargo.toml`):
//!
//! * `dc09`: C simulated devices sending frames for a fixed time; every answer checked;
//!   throughput, latency percentiles and errors.
//! * `fleet`: writes a devices CSV for `vakt devices import` and `--accounts-file`.
//! * `ceiling`: a server that answers every frame with no processing: the machine's limit.
//! * `storm`: the reconnect-and-drain flood after a telecom outage.
//! * `idle`: memory per idle device connection in the server.
//! * `console`: ACK to Call on the operator console's WebSocket, under a heartbeat load;
//!   `console-setup` registers its devices and subscribers.
//! * `unknown`: NULLs from random unknown accounts, and the server's memory after them.
//! * `slow-http`: slow HTTP clients (slowloris) against the console, probed meanwhile.
//!
//! Every scenario prints exactly one summary line on stdout as its last line; progress goes
//! to stderr. All traffic goes to the given target only, and every loop ends with the run.

#![forbid(unsafe_code)]

mod ceiling;
mod console;
mod dc09;
mod device;
mod fleet;
mod idle;
mod net;
mod registry;
mod slowhttp;
mod stats;
mod storm;
mod unknown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vakt-loadtest",
    version,
    about = "DC-09 device fleet simulator and load generator for vakt"
)]
struct Cli {
    /// Worker threads of the tokio runtime (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// C simulated devices send DC-09 frames for S seconds; prints
    /// `frames/s=N p50_ms=N p99_ms=N p999_ms=N errors=N`.
    Dc09(dc09::Options),
    /// Writes a devices CSV that `vakt devices import` accepts.
    Fleet {
        /// Devices to write.
        #[arg(long)]
        devices: usize,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Share of devices with an AES key (half AES-128, half AES-256).
        #[arg(long, default_value_t = 0.3)]
        aes_share: f64,
        /// Random seed (the same seed writes the same file).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give AES devices the documented test keys (so `dc09 --mode aes128|aes256`
        /// without --accounts-file matches) instead of random keys.
        #[arg(long)]
        test_keys: bool,
        /// supervision_secs of every device.
        #[arg(long, default_value_t = 90)]
        supervision_secs: u32,
    },
    /// A no-processing DC-09 server (TCP and UDP on one port): the machine's ceiling.
    Ceiling {
        /// Address to listen on, HOST:PORT (port 0 picks one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:7200")]
        listen: String,
        /// Test key of the `*ACK` sent to encrypted frames (match `dc09 --mode`).
        #[arg(long, value_enum, default_value_t = ceiling::AckKey::Aes128)]
        aes: ceiling::AckKey,
    },
    /// Recovery flood after a telecom outage: N devices connect, drain K alarms each, then
    /// heartbeat; prints `storm devices=N connect_per_s=N backlog_done_s=N p99_ms=N errors=N`.
    Storm(storm::Options),
    /// What idle device connections cost the server: N devices connect, send one NULL, then
    /// stay silent; prints `idle connections=N ... bytes_per_conn=N` (with --server-pid).
    Idle(idle::Options),
    /// Time from an alarm's ACK to its Call on the console's WebSocket while heartbeats run;
    /// prints a table, then `console alarms=N ... ack_ws_p50_ms=N ack_ws_p99_ms=N ...`.
    Console(console::Options),
    /// Writes and/or imports (admin API) the alarm devices, their subscribers and the
    /// heartbeat devices that `console` uses.
    ConsoleSetup(console::SetupOptions),
    /// NULLs from random unknown accounts, and the server's memory before, right after and
    /// later; prints `unknown frames=N acked=N ... rss_settled_kib=N`.
    Unknown(unknown::Options),
    /// Slow HTTP clients (a header byte every few seconds) against the console, probed from
    /// another address; prints `slow-http clients=N connected=N cut=N still_open=N ...`.
    SlowHttp(slowhttp::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vakt-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Fleet {
        devices,
        out,
        aes_share,
        seed,
        test_keys,
        supervision_secs,
    } = &cli.cmd
    {
        let o = fleet::Options {
            devices: *devices,
            aes_share: *aes_share,
            seed: *seed,
            test_keys: *test_keys,
            supervision_secs: *supervision_secs,
        };
        return fleet::run(&o, out);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build()?;
    let threads = cli.threads;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Dc09(o) => dc09::run(o).await,
            Cmd::Ceiling { listen, aes } => ceiling::run(&listen, aes).await,
            Cmd::Storm(o) => storm::run(o).await,
            Cmd::Idle(o) => idle::run(o).await,
            Cmd::Console(o) => console::run(o, threads).await,
            Cmd::ConsoleSetup(o) => console::setup(o).await,
            Cmd::Unknown(o) => unknown::run(o).await,
            Cmd::SlowHttp(o) => slowhttp::run(o).await,
            Cmd::Fleet { .. } => Ok(()),
        }
    })
}
