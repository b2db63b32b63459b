//! The decision log: one JSON line per decision, written by a background thread to
//! standard output or to a size-rotated file, apart from the operational log (standard
//! error).
//!
//! A line carries the full Cedar request (the principal entity with its attributes and
//! parents, the action, the resource and the context), so `cedargate replay` can
//! evaluate it again. It never carries the token, the `Authorization` header or a key.
//! Configured principal attributes and context keys are removed or hashed before the
//! line is written.
//!
//! Logging never blocks or fails a decision: lines go through a bounded queue, and a line
//! that finds the queue full, or that the writer fails to write, is dropped and counted.

mod record;
mod redact;
mod rotate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::config::{DecisionLogConfig, LogOutput};
pub use record::{CedarRequest, DecisionRecord, ShadowOutcome};
pub use redact::{Redaction, unknown_redactions};
use rotate::RotatingFile;

/// The decision log of one server: the queue, the writer thread and the drop count.
pub struct DecisionLog {
    config: DecisionLogConfig,
    redaction: Redaction,
    /// The queue to the writer, present while the log runs.
    sender: ArcSwapOption<SyncSender<String>>,
    /// Signals that the writer thread has written its last line.
    finished: Mutex<Option<Receiver<()>>>,
    dropped: Arc<AtomicU64>,
}

/// Error that stops the decision log from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to open the decision log file `{path}`: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start the decision log writer thread: {0}")]
    Thread(std::io::Error),
}

impl DecisionLog {
    /// Builds a log that writes nothing until [`DecisionLog::start`] is called.
    pub fn new(config: &DecisionLogConfig) -> Self {
        Self {
            config: config.clone(),
            redaction: Redaction::new(&config.redact, &config.hash),
            sender: ArcSwapOption::empty(),
            finished: Mutex::new(None),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Opens the configured output and starts the writer thread. Does nothing when the
    /// output is `off` or the log already runs.
    pub fn start(&self) -> Result<(), StartError> {
        if self.is_running() {
            return Ok(());
        }
        let output = match &self.config.output {
            LogOutput::Off => return Ok(()),
            LogOutput::Stdout => Output::Stdout,
            LogOutput::File(path) => Output::File(
                RotatingFile::open(path, self.config.max_file_bytes, self.config.max_files)
                    .map_err(|source| StartError::Open {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel(self.config.buffer_lines);
        let (done, finished) = std::sync::mpsc::channel();
        let dropped = Arc::clone(&self.dropped);
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                write_lines(&receiver, output, &dropped);
                let _ = done.send(());
            })
            .map_err(StartError::Thread)?;
        if let Ok(mut slot) = self.finished.lock() {
            *slot = Some(finished);
        }
        self.sender.store(Some(Arc::new(sender)));
        Ok(())
    }

    /// Returns whether lines are being written; while not, building a record is wasted work.
    pub fn is_running(&self) -> bool {
        self.sender.load().is_some()
    }

    /// Redacts `record` and queues it as one line. Never blocks: a full queue drops the
    /// line and counts it.
    pub fn write(&self, mut record: DecisionRecord) {
        let guard = self.sender.load();
        let Some(sender) = guard.as_ref() else {
            return;
        };
        self.redaction.apply(&mut record);
        let line = match serde_json::to_string(&record) {
            Ok(line) => line,
            Err(err) => {
                tracing::warn!(error = %err, request_id = %record.request_id, "failed to serialize a decision log line");
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Returns the number of lines dropped because the queue was full or writing failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking lines and waits up to `limit` for the writer to write and flush the
    /// queued ones.
    pub fn close(&self, limit: Duration) {
        // Dropping the last sender ends the writer's loop once the queue is empty.
        self.sender.store(None);
        let finished = self.finished.lock().ok().and_then(|mut slot| slot.take());
        if let Some(finished) = finished
            && finished.recv_timeout(limit).is_err()
        {
            tracing::warn!(
                limit_ms = limit.as_millis(),
                "decision log writer did not finish in time; queued lines may be lost"
            );
        }
    }
}

enum Output {
    Stdout,
    File(RotatingFile),
}

impl Output {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        match self {
            Self::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(line.as_bytes())?;
                stdout.write_all(b"\n")
            }
            Self::File(file) => file.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        match self {
            Self::Stdout => std::io::stdout().flush(),
            Self::File(file) => file.flush(),
        }
    }
}

/// Writes queued lines until every sender is gone, flushing whenever the queue is empty.
fn write_lines(receiver: &Receiver<String>, mut output: Output, dropped: &AtomicU64) {
    let mut failures = FailureLog::default();
    while let Ok(line) = receiver.recv() {
        let mut pending = Some(line);
        while let Some(line) = pending {
            if let Err(err) = output.write_line(&line) {
                dropped.fetch_add(1, Ordering::Relaxed);
                failures.warn(&err);
            }
            pending = receiver.try_recv().ok();
        }
        if let Err(err) = output.flush() {
            failures.warn(&err);
        }
    }
    if let Err(err) = output.flush() {
        failures.warn(&err);
    }
}

/// Logs write failures at most once a minute, with the count of the ones left out.
#[derive(Default)]
struct FailureLog {
    last: Option<std::time::Instant>,
    skipped: u64,
}

impl FailureLog {
    const INTERVAL: Duration = Duration::from_secs(60);

    fn warn(&mut self, err: &std::io::Error) {
        if self.last.is_some_and(|at| at.elapsed() < Self::INTERVAL) {
            self.skipped += 1;
            return;
        }
        tracing::warn!(error = %err, skipped = self.skipped, "failed to write the decision log; lines are dropped");
        self.last = Some(std::time::Instant::now());
        self.skipped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn record(id: &str) -> DecisionRecord {
        serde_json::from_value(serde_json::json!({
            "time": "2026-03-02T09:00:00Z", "request_id": id, "revision": null, "decision": "deny"
        }))
        .unwrap()
    }

    fn log_config(extra: &str) -> DecisionLogConfig {
        let text = format!(
            "[bundle]\npolicies = \"p\"\nschema = \"s\"\nentities = \"e\"\n[decision]\naction_type = \"A::Action\"\n[principal]\ntype = \"A::User\"\n[decision_log]\n{extra}"
        );
        Config::from_toml(std::path::Path::new("/tmp/c.toml"), &text)
            .unwrap()
            .decision_log
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let log = DecisionLog::new(&log_config("buffer_lines = 1"));
        // A queue whose reader never reads stands for a writer stuck on a slow disk.
        let (sender, _receiver) = std::sync::mpsc::sync_channel(1);
        log.sender.store(Some(Arc::new(sender)));
        for id in ["a", "b", "c"] {
            log.write(record(id));
        }
        assert_eq!(log.dropped(), 2);
    }

    #[test]
    fn file_output_written_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let log = DecisionLog::new(&log_config(&format!(
            "output = \"file\"\npath = \"{}\"",
            path.display()
        )));
        log.start().unwrap();
        log.write(record("a"));
        log.write(record("b"));
        log.close(Duration::from_secs(5));
        log.write(record("after-close"));

        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<DecisionRecord>(line)
                    .unwrap()
                    .request_id
            })
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(log.dropped(), 0);
    }
}
