//! Starting and stopping the server: initial load, the listener, the watcher and a
//! bounded graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bundle::{Diagnostic, Severity};
use crate::config::Config;
use crate::decide::{Pdp, load_snapshot};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DevKey(#[from] crate::dev::DevKeyError),
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    #[error("the bundle is invalid ({} errors); run `cedargate validate` for details", .0.iter().filter(|d| d.severity == Severity::Error).count())]
    Bundle(Vec<Diagnostic>),
    #[error("failed to listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Prepares the decision point: development keys, verification keys and the first
/// bundle, which must be valid.
pub fn prepare(config: Config) -> Result<Arc<Pdp>, StartError> {
    crate::dev::ensure_keys(&config)?;
    for issuer in config.development_issuers() {
        tracing::warn!(
            issuer = %issuer.name,
            iss = %issuer.issuer,
            "development issuer enabled: anyone with its private key file can mint accepted tokens; remove it in production"
        );
    }
    let pdp = Pdp::new(config)?;
    let (snapshot, diagnostics) = load_snapshot(&pdp.config);
    for warning in diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        tracing::warn!(warning = %warning.render(), "bundle warning");
    }
    let Some(snapshot) = snapshot else {
        if !pdp.config.server.start_without_bundle {
            return Err(StartError::Bundle(diagnostics));
        }
        for error in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
            tracing::error!(error = %error.render(), "bundle invalid");
        }
        tracing::warn!("starting without a bundle: requests get 503 until a valid bundle loads");
        pdp.record_reload_failure(diagnostics);
        return Ok(Arc::new(pdp));
    };
    tracing::info!(
        revision = %snapshot.bundle.revision,
        policies = snapshot.bundle.policy_info.len(),
        "bundle loaded"
    );
    pdp.publish(snapshot);
    Ok(Arc::new(pdp))
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let address = config.server.listen;
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish for at most
/// the configured shutdown timeout. The watcher stops with the server.
pub async fn run(
    pdp: Arc<Pdp>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let watcher = pdp.config.bundle.watch.then(|| {
        let pdp = Arc::clone(&pdp);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = crate::reload::watch(pdp, shutdown).await {
                tracing::error!(error = %err, "file watcher stopped; hot reload is off");
            }
        })
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "listening");
    }

    let drain_limit = pdp.config.server.shutdown_timeout;
    let app =
        crate::http::app(Arc::clone(&pdp)).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain_limit).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(StartError::Serve),
        () = deadline => {
            tracing::warn!(limit_ms = drain_limit.as_millis(), "shutdown timed out; dropping open connections");
            Ok(())
        }
    };
    shutdown.cancel();
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    tracing::info!("server stopped");
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested");
}
