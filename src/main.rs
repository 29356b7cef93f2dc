//! The `vakt` command: parses the command line, sets up tracing and runs the sub-command
//! ([`vakt::cli::run`]), whose exit code it returns: 0 done, 1 failed, 64 a bad
//! configuration or argument (EX_USAGE), 65 bad input data (EX_DATAERR); 2 from clap for a
//! command line it cannot parse.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use vakt::cli::Cli;

fn main() -> ExitCode {
    // Everything vakt writes (the data directory, its database, certificates, the demo's
    // passwords) is for its own user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    vakt::telemetry::init_tracing(cli.log_json);
    vakt::cli::run(cli)
}
