//! The `cedargate` binary: parses the command line, sets up logging and dispatches.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use cedargate::cli::{Cli, Command};

/// Cedar builds and drops many small values per decision; mimalloc serves them about
/// twice as fast as the system allocator (measurements in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    cedargate::cli::run(cli)
}

/// Operational logs go to standard error. The server's decision log has a writer of its
/// own (see `cedargate::decision_log`); the offline commands print their output on
/// standard output.
fn init_logging(server: bool) {
    // The offline commands print their result on standard output, so by default their
    // log shows only warnings and errors.
    let default_level = if server { "info" } else { "warn" };
    let operational_filter =
        EnvFilter::try_from_env("CEDARGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only for a terminal, so that logs redirected to a file stay plain text.
    let operational = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(operational_filter);

    tracing_subscriber::registry().with(operational).init();
}
