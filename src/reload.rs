//! Hot reload: watches the bundle's files, debounces bursts of events, loads and
//! validates the whole bundle aside, and publishes it only when it is valid and new.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bundle::Severity;
use crate::decide::{Pdp, load_snapshot};

/// Outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// The files on disk give the revision already serving.
    Unchanged,
    /// A new revision is serving.
    Published { revision: String },
    /// The files on disk are invalid; the previous revision keeps serving.
    Failed,
}

/// Loads the bundle from disk and publishes it when it is valid and differs from the
/// current one. Blocks on file I/O: call it from a blocking context.
pub fn reload_once(pdp: &Pdp) -> ReloadResult {
    let (snapshot, diagnostics) = load_snapshot(&pdp.config);
    let Some(snapshot) = snapshot else {
        for diagnostic in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
            tracing::error!(
                file = diagnostic.file.as_ref().map(|f| f.display().to_string()),
                line = diagnostic.line,
                column = diagnostic.column,
                error = %diagnostic.message,
                "reload failed; the previous bundle keeps serving"
            );
        }
        pdp.record_reload_failure(diagnostics);
        return ReloadResult::Failed;
    };

    let current = pdp.snapshot().map(|s| s.bundle.revision.clone());
    let revision = snapshot.bundle.revision.clone();
    pdp.record_reload_success();
    if current.as_deref() == Some(revision.as_str()) {
        tracing::debug!(%revision, "bundle files unchanged");
        return ReloadResult::Unchanged;
    }
    let policies = snapshot.bundle.policy_info.len();
    pdp.publish(snapshot);
    tracing::info!(%revision, policies, "bundle reloaded");
    ReloadResult::Published { revision }
}

/// Watches the bundle until `shutdown` is cancelled, reloading after each burst of file
/// events and on `SIGHUP`.
pub async fn watch(pdp: Arc<Pdp>, shutdown: CancellationToken) -> notify::Result<()> {
    // One pending signal is enough: a reload reads every file anyway.
    let (sender, mut events) = mpsc::channel::<()>(1);
    let catch_up = sender.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reading files (our own reload included) must not trigger another reload, but
            // closing a file after writing it marks the end of a write.
            Ok(event)
                if matches!(event.kind, EventKind::Access(kind)
                    if kind != AccessKind::Close(AccessMode::Write)) => {}
            Ok(_) => {
                let _ = sender.try_send(());
            }
            Err(err) => tracing::warn!(error = %err, "file watcher error"),
        }
    })?;
    for (path, mode) in watch_targets(&pdp) {
        watcher.watch(&path, mode)?;
        tracing::debug!(path = %path.display(), "watching");
    }
    // A change made after the initial load but before the watches existed raised no
    // event, so one reload runs now to catch up with the files on disk.
    let _ = catch_up.try_send(());
    drop(catch_up);
    let debounce = pdp.config.bundle.debounce;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = events.recv() => {}
        }
        settle(&mut events, debounce).await;
        reload_in_background(&pdp).await;
    }
    drop(watcher);
    Ok(())
}

/// Reloads on every `SIGHUP` until `shutdown` is cancelled, whether or not the watcher
/// runs. Takes the signal listener, so that it is installed before the server listens:
/// an unhandled `SIGHUP` would end the process.
pub async fn reload_on_hangup(pdp: Arc<Pdp>, mut hangup: Hangup, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = recv_signal(&mut hangup) => tracing::info!("SIGHUP received; reloading"),
        }
        reload_in_background(&pdp).await;
    }
}

async fn reload_in_background(pdp: &Arc<Pdp>) {
    let pdp = Arc::clone(pdp);
    if let Err(err) = tokio::task::spawn_blocking(move || reload_once(&pdp)).await {
        tracing::error!(error = %err, "reload task failed");
    }
}

/// Waits until no event has arrived for `debounce`, so a burst causes one reload.
async fn settle(events: &mut mpsc::Receiver<()>, debounce: Duration) {
    while let Ok(Some(())) = tokio::time::timeout(debounce, events.recv()).await {}
}

/// Folders are watched recursively; for a single file its folder is watched, because
/// editors replace files by renaming over them.
fn watch_targets(pdp: &Pdp) -> Vec<(PathBuf, RecursiveMode)> {
    let mut targets: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for path in pdp.config.bundle.paths() {
        let target = if path.is_dir() {
            (path.to_owned(), RecursiveMode::Recursive)
        } else {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            (
                parent.map_or_else(|| PathBuf::from("."), ToOwned::to_owned),
                RecursiveMode::NonRecursive,
            )
        };
        if !targets.iter().any(|(existing, _)| existing == &target.0) {
            targets.push(target);
        }
    }
    targets
}

/// A listener for `SIGHUP`, if the platform has the signal and the listener could be set up.
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// Installs the `SIGHUP` listener.
#[cfg(unix)]
pub fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| tracing::warn!(error = %err, "cannot listen for SIGHUP"))
        .ok()
}

#[cfg(not(unix))]
pub fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv_signal(signal: &mut Hangup) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_signal(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}
