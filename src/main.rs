//! The `cedargate` binary: parses the command line, sets up logging and dispatches.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use cedargate::cli::{Cli, Command};
use cedargate::decide::DECISION_LOG_TARGET;

/// Cedar builds and drops many small values per decision; mimalloc serves them about
/// twice as fast as the system allocator (measurements in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    cedargate::cli::run(cli)
}

/// Operational logs go to standard error. The server also writes one JSON line per
/// decision to standard output; the offline commands print their own output there.
fn init_logging(server: bool) {
    // The offline commands print their result on standard output, so by default their
    // log shows only warnings and errors.
    let default_level = if server { "info" } else { "warn" };
    let operational_filter = EnvFilter::try_from_env("CEDARGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .add_directive(
            format!("{DECISION_LOG_TARGET}=off")
                .parse()
                .unwrap_or_default(),
        );
    // Colours only for a terminal, so that logs redirected to a file stay plain text.
    let operational = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(operational_filter);

    let decisions = server.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stdout)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(DECISION_LOG_TARGET, tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(operational)
        .with(decisions)
        .init();
}
