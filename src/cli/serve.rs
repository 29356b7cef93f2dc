//! `vakt serve`: the configuration (a file, or the embedded default) with the data
//! directory and ports of the command line, the open-file limit, the runtime, the server's
//! start and the addresses it listens on, `--demo` ([`crate::sim::serve_demo`]), and a
//! graceful stop on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::EX_USAGE;
use super::commands::report;
use crate::config::{Config, Ports, StoreBackend};
use crate::server::ServerError;
use crate::sim::serve_demo::Demo;

/// Runs the server until SIGTERM or SIGINT: exit 0 after a graceful stop, 64 for a bad
/// configuration or port flag, 1 when it cannot start (a port in use is named once, with
/// the flag that moves it).
pub(super) fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    ports: Ports,
    demo: bool,
) -> ExitCode {
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
    let mut cfg = Config {
        data_dir: data_dir.unwrap_or(cfg.data_dir.clone()),
        ..cfg
    };
    if let Err(e) = cfg.set_ports(ports) {
        eprintln!("vakt: --{}-port: {e}", e.protocol);
        return ExitCode::from(EX_USAGE);
    }
    let r = run(cfg, demo);
    if let Err(e) = &r {
        let in_use = e
            .downcast_ref::<ServerError>()
            .and_then(ServerError::address_in_use);
        if let Some(what) = in_use {
            eprintln!("vakt: {e:#}");
            eprintln!("vakt: {}", port_hint(what));
            return ExitCode::FAILURE;
        }
    }
    report(r)
}

fn run(cfg: Config, demo: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    if cfg.store.backend == StoreBackend::Postgres {
        if demo {
            anyhow::bail!(
                "--demo runs on the embedded store only; start it without [store] backend = \"postgres\""
            );
        }
        return run_node(cfg);
    }
    let demo = if demo {
        Some(Demo::prepare(&cfg.data_dir)?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vakt")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let running = crate::server::start(cfg).await?;
        print_addresses(&running);
        if let Some(demo) = &demo {
            demo.start(&running);
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

/// One node of a cluster on PostgreSQL ([`crate::server::node`]): a standby until it leads.
/// A lost lease ends it with an error (exit 1), for its supervisor to start it again as a
/// standby.
fn run_node(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vakt")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        let node = cfg.store.node.clone();
        let standby_node = node.clone();
        let end = crate::server::node::run(
            cfg,
            stop,
            |http| match http {
                Some(a) => eprintln!(
                    "vakt: node {standby_node} on standby (HTTP on {a}: /ready answers 503 until it leads)"
                ),
                None => eprintln!("vakt: node {standby_node} on standby"),
            },
            |running| {
                eprintln!("vakt: node {node} leads");
                print_addresses(running);
            },
        )
        .await?;
        tracing::info!(?end, "stopped");
        anyhow::Ok(())
    })
}

fn print_addresses(running: &crate::server::Running) {
    if let Some(a) = running.dc09_tcp {
        eprintln!("vakt: DC-09 TCP on {a}");
    }
    if let Some(a) = running.dc09_udp {
        eprintln!("vakt: DC-09 UDP on {a}");
    }
    if let Some(a) = running.http {
        eprintln!(
            "vakt: operator console on http://{a}/ (API: /api/openapi.json; /live /ready /metrics)"
        );
    }
    if let Some(a) = running.patrol_quic {
        match &running.patrol_fingerprint {
            Some(fp) => eprintln!(
                "vakt: patrol link (QUIC) on {a}; certificate SHA-256 fingerprint {fp} \
                 (for `vakt patrol --insecure-dev --fingerprint`)"
            ),
            None => eprintln!("vakt: patrol link (QUIC) on {a}"),
        }
    }
}

/// What to do about a listener whose address another program has (`what` as in
/// `ServerError::Bind`).
fn port_hint(what: &str) -> String {
    let (flag, env) = match what {
        "DC-09 TCP" | "DC-09 UDP" => ("--dc09-port", "VAKT_DC09_PORT"),
        "SCAIP UDP" | "SCAIP TCP" => ("--scaip-port", "VAKT_SCAIP_PORT"),
        "HTTP" => ("--http-port", "VAKT_HTTP_PORT"),
        "the patrol link (QUIC)" => ("--patrol-port", "VAKT_PATROL_PORT"),
        _ => {
            return "another program (or another vakt) has it: choose another address in the \
                    configuration"
                .into();
        }
    };
    format!(
        "another program (or another vakt) has it: start with {flag} PORT (or {env}=PORT; 0 \
         picks a free port), or change the address in the configuration"
    )
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
/// (`None` is unlimited.) When it cannot, vakt runs with the limit it has, and the
/// connection caps are fitted to it at start ([`crate::config::open_files`]).
fn raise_fd_limit() {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let below = match (current, maximum) {
        (Some(cur), Some(max)) => cur < max,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: maximum,
                maximum,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        // A soft limit just under the hard one (other tests of this process keep room).
        let maximum = getrlimit(Resource::Nofile).maximum;
        let lower = maximum.map_or(1 << 20, |m| m.saturating_sub(1));
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(lower),
                maximum,
            },
        )
        .unwrap();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(lower));
        raise_fd_limit();
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        assert_eq!(current, maximum);
    }

    #[test]
    fn a_port_in_use_names_the_flag_that_moves_it() {
        let hint = port_hint("SCAIP TCP");
        assert!(
            hint.contains("--scaip-port PORT (or VAKT_SCAIP_PORT=PORT"),
            "{hint}"
        );
        assert!(port_hint("the patrol link (QUIC)").contains("--patrol-port"));
        assert!(port_hint("something else").contains("choose another address"));
    }
}
