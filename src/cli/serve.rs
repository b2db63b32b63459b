//! `cedargate serve`

use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{ConfigArgs, EXIT_ERROR};
use crate::server::{self, StartError};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Listen on this address instead of `server.listen`, such as `127.0.0.1:0`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(args: &ServeArgs) -> ExitCode {
    let mut config = match args.config.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(serve(config));
    // A reload stuck on a file must not keep the process alive after the server stopped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Bundle(diagnostics)) => {
            for diagnostic in &diagnostics {
                eprintln!("{}", diagnostic.render());
            }
            eprintln!("error: the bundle is invalid; the server did not start");
            ExitCode::from(EXIT_ERROR)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn serve(config: crate::config::Config) -> Result<(), StartError> {
    let pdp = server::prepare(config)?;
    let listener = server::bind(&pdp.config).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        trigger.cancel();
    });
    server::run(pdp, listener, shutdown).await
}
