//! Hot reload: one reload path for every trigger. File system events (debounced), scans
//! in poll mode and `SIGHUP` all end in [`reload_once`]. It loads the whole bundle aside
//! and checks that its files did not change while they were read. Then it validates the
//! bundle as `cedargate validate` does, and publishes it only when it is valid and new. Reloads run
//! one at a time, so a slow reload can never publish older files after a newer one.
//!
//! The reload path knows nothing of the individual files: it reads whatever
//! [`crate::config::BundleConfig::paths`] lists and whatever [`load_snapshot`] loads.

mod watcher;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bundle::{self, Diagnostic, Fingerprint, Severity};
use crate::decide::{Pdp, Snapshot, WatchMode, WatchStatus, load_snapshot};
use watcher::{FileWatcher, WatchSignal};

/// Cause of a reload, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The reload right after the watcher started, which catches changes made between
    /// the first load and the first watch.
    Start,
    /// File system events.
    Events,
    /// A scan in poll mode found changed files.
    Poll,
    /// `SIGHUP`.
    Hangup,
    /// A retry after the files kept changing during a reload.
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Events => "file events",
            Self::Poll => "poll",
            Self::Hangup => "SIGHUP",
            Self::Retry => "retry",
        }
    }
}

/// Outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// The files on disk give the revision already serving.
    Unchanged,
    /// A new revision is serving.
    Published { revision: String },
    /// The files on disk are invalid; the previous revision keeps serving.
    Failed,
    /// The files kept changing while they were read, so nothing was validated; the
    /// previous revision keeps serving and the reload is retried.
    Deferred,
}

/// How many times a reload reads the files before it gives up on them settling.
const MAX_LOAD_ATTEMPTS: u32 = 10;

/// Loads the bundle from disk and publishes it when it is valid and differs from the
/// current one. Logs the result once. Blocks on file I/O: call it from a blocking context.
pub fn reload_once(pdp: &Pdp, trigger: Trigger) -> ReloadResult {
    reload_with_fingerprint(pdp, trigger).0
}

/// Like [`reload_once`], and also returns the fingerprint of the files it validated.
fn reload_with_fingerprint(pdp: &Pdp, trigger: Trigger) -> (ReloadResult, Option<Fingerprint>) {
    // Nothing watches the shadow bundle's files, so it is read again on every reload.
    pdp.reload_shadow();
    let started = std::time::Instant::now();
    let Some((snapshot, diagnostics, fingerprint)) = load_settled(pdp) else {
        tracing::warn!(
            trigger = trigger.as_str(),
            attempts = MAX_LOAD_ATTEMPTS,
            "bundle files kept changing while they were read; the previous bundle keeps serving, and the reload is retried"
        );
        return (ReloadResult::Deferred, None);
    };

    let Some(snapshot) = snapshot else {
        log_failure(trigger, &diagnostics);
        pdp.record_reload_failure(diagnostics);
        return (ReloadResult::Failed, Some(fingerprint));
    };

    let current = pdp.snapshot().map(|s| s.bundle.revision.clone());
    let revision = snapshot.bundle.revision.clone();
    pdp.record_reload_success();
    if current.as_deref() == Some(revision.as_str()) {
        tracing::debug!(trigger = trigger.as_str(), %revision, "bundle files unchanged");
        return (ReloadResult::Unchanged, Some(fingerprint));
    }
    let policies = snapshot.bundle.policy_info.len();
    let files = snapshot.bundle.files.len();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    pdp.publish(snapshot);
    tracing::info!(
        trigger = trigger.as_str(),
        %revision,
        load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        previous = current.as_deref(),
        policies,
        files,
        warnings,
        "bundle reloaded"
    );
    (ReloadResult::Published { revision }, Some(fingerprint))
}

/// Loads the bundle until its files read the same before the load and a settle interval
/// after it, so a file caught in the middle of a write is never validated. Returns the
/// load and the fingerprint of the files it read, or `None` when they kept changing.
fn load_settled(pdp: &Pdp) -> Option<(Option<Snapshot>, Vec<Diagnostic>, Fingerprint)> {
    let settle = pdp.config.bundle.reload.settle;
    let mut before = bundle::fingerprint(&pdp.config.bundle);
    for _ in 0..MAX_LOAD_ATTEMPTS {
        let (snapshot, diagnostics) = load_snapshot(&pdp.config);
        std::thread::sleep(settle);
        let after = bundle::fingerprint(&pdp.config.bundle);
        if after == before {
            return Some((snapshot, diagnostics, after));
        }
        tracing::debug!("bundle files changed while they were read; reading them again");
        before = after;
    }
    None
}

/// Logs a failed reload as one line: the number of errors, where the first one is, and
/// every error rendered.
fn log_failure(trigger: Trigger, diagnostics: &[Diagnostic]) {
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let first = errors.first();
    let details: Vec<String> = errors
        .iter()
        .map(|diagnostic| diagnostic_line(diagnostic))
        .collect();
    tracing::error!(
        trigger = trigger.as_str(),
        errors = errors.len(),
        file = first.and_then(|d| d.file.as_ref()).map(|f| f.display().to_string()),
        line = first.and_then(|d| d.line),
        column = first.and_then(|d| d.column),
        error = first.map(|d| d.message.as_str()),
        details = %details.join("; "),
        "reload failed; the previous bundle keeps serving until the files are fixed"
    );
}

/// Formats a diagnostic as `file:line:column: message` on one line.
fn diagnostic_line(diagnostic: &Diagnostic) -> String {
    let mut place = diagnostic
        .file
        .as_ref()
        .map(|file| file.display().to_string())
        .unwrap_or_default();
    for number in [diagnostic.line, diagnostic.column].into_iter().flatten() {
        place.push_str(&format!(":{number}"));
    }
    if place.is_empty() {
        diagnostic.message.clone()
    } else {
        format!("{place}: {}", diagnostic.message)
    }
}

/// Source of change notices for the reload task.
enum Source {
    /// File system events from notify.
    Events(Arc<Mutex<FileWatcher>>),
    /// Scanning the files every interval. `last` is the fingerprint of the files last
    /// reloaded, so a scan that finds the same files does not reload.
    Poll {
        interval: tokio::time::Interval,
        last: Option<Fingerprint>,
    },
    /// Only `SIGHUP`.
    Off,
}

/// Runs the reload task until `shutdown` is cancelled: watches the bundle's files in the
/// configured mode, reloads after each burst of events, each changed scan and each `SIGHUP`,
/// and falls back to polling when the event watcher fails. Takes the `SIGHUP` listener,
/// so that it is installed before the server listens: an unhandled `SIGHUP` would end the
/// process.
pub async fn run(pdp: Arc<Pdp>, mut hangup: Hangup, shutdown: CancellationToken) {
    let reload = &pdp.config.bundle.reload;
    // One pending event is enough, because a reload reads every file anyway.
    let (event_sender, mut events) = mpsc::channel::<()>(1);
    let (failure_sender, mut failures) = mpsc::channel::<notify::Error>(1);
    let signal = move |signal: WatchSignal| match signal {
        WatchSignal::Changed => {
            let _ = event_sender.try_send(());
        }
        WatchSignal::Failed(err) => {
            let _ = failure_sender.try_send(err);
        }
    };

    let mut source = if !reload.watch {
        tracing::info!("file watching is off (`bundle.watch = false`); SIGHUP reloads");
        Source::Off
    } else if reload.poll {
        poll_source(&pdp, None)
    } else {
        match FileWatcher::new(signal) {
            Ok(watcher) => {
                record_mode(&pdp, WatchMode::Notify, None);
                Source::Events(Arc::new(Mutex::new(watcher)))
            }
            Err(err) => poll_source(&pdp, Some(err)),
        }
    };

    let mut trigger = Some(Trigger::Start);
    loop {
        let current = match trigger.take() {
            Some(current) => current,
            None => tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = events.recv() => {
                    debounce(&mut events, reload.debounce).await;
                    Trigger::Events
                }
                Some(err) = failures.recv() => {
                    source = poll_source(&pdp, Some(err));
                    Trigger::Retry
                }
                Some(()) = recv_signal(&mut hangup) => {
                    tracing::info!("SIGHUP received; reloading");
                    Trigger::Hangup
                }
                changed = scan(&pdp, &mut source) => match changed {
                    true => Trigger::Poll,
                    false => continue,
                },
            },
        };

        let outcome = reload_in_background(&pdp, &source, current).await;
        match outcome {
            Background::Done(result, fingerprint) => {
                if let Source::Poll { last, .. } = &mut source {
                    *last = fingerprint;
                }
                if result == ReloadResult::Deferred {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(reload.debounce.max(reload.settle)) => {}
                    }
                    trigger = Some(Trigger::Retry);
                }
            }
            Background::WatcherFailed(err) => {
                source = poll_source(&pdp, Some(err));
                trigger = Some(Trigger::Retry);
            }
            Background::Panicked => {}
        }
    }
}

/// Switches to poll mode, because the config sets it or because the event watcher failed
/// with `failure`.
fn poll_source(pdp: &Pdp, failure: Option<notify::Error>) -> Source {
    let every = pdp.config.bundle.reload.poll_interval;
    let error = failure.map(|err| {
        let advice = watcher_advice(&err);
        tracing::error!(
            error = %err,
            advice,
            poll_interval_ms = every.as_millis(),
            "file watcher failed; falling back to polling the bundle files"
        );
        format!("{err}; {advice}")
    });
    if error.is_none() {
        tracing::info!(
            poll_interval_ms = every.as_millis(),
            "polling the bundle files"
        );
    }
    record_mode(pdp, WatchMode::Poll, error);

    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Source::Poll {
        interval,
        last: None,
    }
}

/// Says what to do about a watcher failure.
fn watcher_advice(err: &notify::Error) -> &'static str {
    let limit = match &err.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => {
            // inotify_init reports EMFILE when the per-user instance limit is reached.
            io.raw_os_error() == Some(24) || io.kind() == std::io::ErrorKind::StorageFull
        }
        _ => false,
    };
    if limit {
        "the inotify limits are reached: raise `fs.inotify.max_user_watches` and `fs.inotify.max_user_instances` with sysctl, or set `bundle.poll = true` to poll on purpose"
    } else {
        "check that the bundle folders exist and are readable, or set `bundle.poll = true` to poll on purpose"
    }
}

fn record_mode(pdp: &Pdp, mode: WatchMode, error: Option<String>) {
    let poll_interval_ms = (mode == WatchMode::Poll).then(|| {
        u64::try_from(pdp.config.bundle.reload.poll_interval.as_millis()).unwrap_or(u64::MAX)
    });
    pdp.record_watch_status(WatchStatus {
        mode,
        poll_interval_ms,
        error,
    });
}

/// In poll mode, waits for the next tick and returns whether the files differ from the
/// last reload's. In the other modes, never returns.
async fn scan(pdp: &Arc<Pdp>, source: &mut Source) -> bool {
    let Source::Poll { interval, last } = source else {
        return std::future::pending().await;
    };
    interval.tick().await;
    let scanned = Arc::clone(pdp);
    match tokio::task::spawn_blocking(move || bundle::fingerprint(&scanned.config.bundle)).await {
        Ok(now) => Some(now) != *last,
        Err(err) => {
            tracing::error!(error = %err, "bundle scan task failed");
            false
        }
    }
}

enum Background {
    Done(ReloadResult, Option<Fingerprint>),
    WatcherFailed(notify::Error),
    Panicked,
}

/// Brings the watches up to date, then reloads, on a blocking thread. Updating the
/// watches first means that every change after the files were read raises an event.
async fn reload_in_background(pdp: &Arc<Pdp>, source: &Source, trigger: Trigger) -> Background {
    let pdp = Arc::clone(pdp);
    let watcher = match source {
        Source::Events(watcher) => Some(Arc::clone(watcher)),
        _ => None,
    };
    let task = tokio::task::spawn_blocking(move || {
        if let Some(watcher) = watcher {
            let refreshed = match watcher.lock() {
                Ok(mut watcher) => watcher.refresh(&pdp.config.bundle),
                Err(_) => Err(notify::Error::generic("the watcher's lock is poisoned")),
            };
            if let Err(err) = refreshed {
                return Background::WatcherFailed(err);
            }
        }
        let (result, fingerprint) = reload_with_fingerprint(&pdp, trigger);
        Background::Done(result, fingerprint)
    });
    task.await.unwrap_or_else(|err| {
        tracing::error!(error = %err, "reload task failed");
        Background::Panicked
    })
}

/// Waits until no event has arrived for `debounce`, so a burst causes one reload.
async fn debounce(events: &mut mpsc::Receiver<()>, debounce: Duration) {
    while let Ok(Some(())) = tokio::time::timeout(debounce, events.recv()).await {}
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
