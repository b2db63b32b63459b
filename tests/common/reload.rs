//! Helpers for hot-reload tests: reading `/status`, waiting on it with a deadline, and
//! recording every revision the server serves while files change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::TestServer;

/// How long a change on disk may take to show up. Generous, because the tests run on
/// loaded machines; a passing test never waits this long.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two looks at `/status`.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Returns the body of `GET /status`.
pub async fn status(server: &TestServer) -> Value {
    let response = server
        .client
        .get(server.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Returns the serving revision from a `/status` body.
pub fn revision(status: &Value) -> String {
    status["bundle"]["revision"]
        .as_str()
        .unwrap_or_else(|| panic!("no revision in {status:#}"))
        .to_owned()
}

/// Returns the number of finished reloads, successful or not.
pub fn reload_count(status: &Value) -> u64 {
    status["reloads"]["succeeded"].as_u64().unwrap() + status["reloads"]["failed"].as_u64().unwrap()
}

/// Polls `/status` until `done` holds, and returns that status.
pub async fn wait_for_status(
    server: &TestServer,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let current = status(server).await;
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {RELOAD_DEADLINE:?} waiting for {what}; last status: {current:#}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits for the reload that the reload task runs when it starts. Its watches are in place
/// once that reload has finished, so every later change raises an event.
pub async fn wait_for_first_reload(server: &TestServer) -> Value {
    wait_for_status(server, "the first reload", |status| {
        reload_count(status) >= 1
    })
    .await
}

/// Waits for a published revision other than `old`.
pub async fn wait_for_new_revision(server: &TestServer, old: &str) -> Value {
    wait_for_status(server, "a new revision", |status| {
        status["bundle"]["revision"] != old
    })
    .await
}

/// Waits for a failed reload that leaves the server stale.
pub async fn wait_for_stale(server: &TestServer) -> Value {
    wait_for_status(server, "a failed reload", |status| status["stale"] == true).await
}

/// Waits until the reload counters have not changed for `quiet`, so no reload is pending.
pub async fn wait_for_quiet(server: &TestServer, quiet: Duration) -> Value {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    let mut last = status(server).await;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "reloads kept happening: {last:#}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = status(server).await;
        if now["reloads"] != last["reloads"] {
            quiet_since = Instant::now();
        }
        last = now;
    }
    last
}

/// Returns the first error diagnostic of the last failed reload.
pub fn last_error(status: &Value) -> &Value {
    status["last_reload_error"]["diagnostics"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["severity"] == "error"))
        .unwrap_or_else(|| panic!("no error diagnostic in {status:#}"))
}

/// Sends one decision request with a fresh token and returns the body of the 200 answer.
pub async fn decide(server: &TestServer, claims: Value, action: &str, customer: &str) -> Value {
    let sub = claims["sub"].as_str().unwrap().to_owned();
    let token = super::mint(&super::user_claims(&sub, claims));
    let body = json!({ "action": action, "resource": { "type": "Crm::Customer", "id": customer } });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Returns the claims of a sales user with the export scope: the default bundle allows their exports, except of
/// records under legal hold.
pub fn exporter() -> Value {
    json!({ "sub": "erin", "department": "sales", "scope": ["customers:export"] })
}

/// Returns the claims of a sales user without special rights.
pub fn sales_user() -> Value {
    json!({ "sub": "alice", "department": "sales" })
}

/// Records each revision the server serves, in order, by looking at its current snapshot
/// every millisecond on a thread of its own. A revision served for less than that can go
/// unseen, so an empty report proves little, but a revision in it was served.
pub struct ServedRevisions {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ServedRevisions {
    pub fn start(server: &TestServer) -> Self {
        let pdp = Arc::clone(&server.pdp);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                if let Some(snapshot) = pdp.snapshot() {
                    let revision = &snapshot.bundle.revision;
                    if seen.last() != Some(revision) {
                        seen.push(revision.clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops recording and returns the revisions seen, each change once.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|thread| thread.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for ServedRevisions {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
