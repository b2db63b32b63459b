//! Starting and stopping the server: initial load, the listener, the watcher and a
//! bounded graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt as _;

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
    #[error(transparent)]
    DecisionLog(#[from] crate::decision_log::StartError),
    #[error("failed to listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
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
    for issuer in config
        .issuers
        .iter()
        .filter(|issuer| issuer.audiences.is_empty())
    {
        tracing::warn!(
            issuer = %issuer.name,
            "issuer has no `audiences`: its tokens for any other API are accepted too; list this API's audience"
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
    pdp.reload_shadow();
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
///
/// Connections are served with hyper directly rather than `axum::serve`, because that
/// sets no limits. Here a connection must send a complete request head within
/// `request_timeout_ms`, which also closes idle keep-alive connections. A response write
/// that the client does not take within the same time closes the connection. At most
/// `max_connections` are open at once, so slow or idle clients cannot exhaust the
/// server's file descriptors.
pub async fn run(
    pdp: Arc<Pdp>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    pdp.decision_log.start()?;
    let reloads = tokio::spawn(crate::reload::run(
        Arc::clone(&pdp),
        crate::reload::hangup_signal(),
        shutdown.clone(),
    ));
    let verifier_tasks = tokio::spawn(pdp.verifier().run_background_tasks(shutdown.clone()));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "listening");
    }

    let server = &pdp.config.server;
    let app = crate::http::app(Arc::clone(&pdp));
    let connections = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let write_timeout = server.request_timeout;
    let full_warnings = Throttle::default();
    let timeout_warnings = Arc::new(Throttle::default());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.request_timeout);

    loop {
        if connections.available_permits() == 0 {
            full_warnings.warn(|skipped| {
                tracing::warn!(
                    max_connections = server.max_connections,
                    skipped,
                    "all connection slots are in use; new clients wait"
                );
            });
        }
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually a transient lack of file descriptors; wait instead of spinning.
                    tracing::warn!(error = %err, "failed to accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };

        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        // A client that stops reading its responses would block a write forever.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(write_timeout));
        let io = TokioIo::new(Box::pin(stream));
        let connection = graceful.watch(builder.serve_connection(io, service));
        let timeouts = Arc::clone(&timeout_warnings);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                if is_timeout(&err) {
                    timeouts.warn(|skipped| {
                        tracing::warn!(%peer, skipped, "connection closed: no request head sent or no response read in time");
                    });
                } else {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }

    drop(listener);
    let drain_limit = pdp.config.server.shutdown_timeout;
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain_limit) => {
            let open = pdp.config.server.max_connections.saturating_sub(connections.available_permits());
            tracing::warn!(limit_ms = drain_limit.as_millis(), open, "shutdown timed out; dropping open connections without an answer");
        }
    }
    shutdown.cancel();
    // A reload in progress finishes on its own; stopping does not wait for it for long.
    let background = async {
        let _ = reloads.await;
        let _ = verifier_tasks.await;
    };
    if tokio::time::timeout(BACKGROUND_STOP_LIMIT, background)
        .await
        .is_err()
    {
        tracing::warn!("a reload was still running at shutdown");
    }
    pdp.decision_log.close(BACKGROUND_STOP_LIMIT);
    tracing::info!("server stopped");
    Ok(())
}

/// Returns whether a connection ended because of the head-read or write timeout.
fn is_timeout(err: &hyper::Error) -> bool {
    if err.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// Rate limit for a repeated warning: at most one line per interval, with a count of the
/// warnings left out since the last line.
#[derive(Default)]
struct Throttle {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    const INTERVAL: Duration = Duration::from_secs(10);

    /// Calls `log` with the number of warnings skipped since the last one, unless one was
    /// logged less than the interval ago.
    fn warn(&self, log: impl FnOnce(u64)) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (last, skipped) = &mut *state;
        let due = last.is_none_or(|at| at.elapsed() >= Self::INTERVAL);
        if due {
            log(*skipped);
            *last = Some(std::time::Instant::now());
            *skipped = 0;
        } else {
            *skipped += 1;
        }
    }
}

/// How long stopping waits for the reload task to end.
const BACKGROUND_STOP_LIMIT: Duration = Duration::from_secs(2);

/// Pause after a failed `accept`, such as one for lack of file descriptors.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

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
