//! The ways a reload is triggered and what `/status` shows about them: file system events,
//! poll mode, the fallback to polling when the event watcher fails, and the rule for a
//! bundle without policies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use common::TestServer;
use common::reload::{
    decide, exporter, last_error, reload_count, revision, status, wait_for_first_reload,
    wait_for_new_revision, wait_for_quiet, wait_for_stale,
};

/// Copies the default bundle and starts a server with `bundle_settings` added to the
/// default bundle's `[bundle]` table.
async fn start(bundle_settings: &str) -> (TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let bundle = format!("{}\n{bundle_settings}", common::DEFAULT_TEST_BUNDLE);
    let config = common::write_test_config(dir.path(), "", &bundle);
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    wait_for_first_reload(&server).await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_mode_in_status() {
    let (dir, server) = start("").await;
    let first = status(&server).await;
    assert_eq!(first["watch"], json!({ "mode": "notify" }), "{first:#}");
    assert!(first["reloads"]["last_at"].is_string(), "{first:#}");
    let old = revision(&first);

    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["stale"], false, "{after:#}");
    let files: Vec<&str> = after["bundle"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file.as_str().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .any(|file| file.ends_with("policies/customers.cedar")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|file| file.ends_with("legal-hold.cedar")),
        "{files:?}"
    );
    let loaded_at: jiff::Timestamp = after["bundle"]["loaded_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let first_loaded: jiff::Timestamp = first["bundle"]["loaded_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(loaded_at > first_loaded, "{after:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_picks_up_changes() {
    let (dir, server) = start("poll = true\npoll_interval_ms = 50").await;
    let first = status(&server).await;
    assert_eq!(
        first["watch"],
        json!({ "mode": "poll", "poll_interval_ms": 50 }),
        "{first:#}"
    );
    let old = revision(&first);

    // Scans that find the same files do not reload.
    let quiet = wait_for_quiet(&server, Duration::from_millis(400)).await;
    assert_eq!(reload_count(&quiet), 1, "{quiet:#}");

    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["bundle"]["policies"], 3, "{after:#}");
    let held = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(held["decision"], "allow", "{held}");
    assert_eq!(held["revision"], revision(&after).as_str());

    // A broken file is reported once, not at every scan.
    std::fs::write(dir.path().join("policies/customers.cedar"), "permit (").unwrap();
    let stale = wait_for_stale(&server).await;
    let settled = wait_for_quiet(&server, Duration::from_millis(400)).await;
    assert_eq!(settled["reloads"]["failed"], 1, "{settled:#}");
    assert_eq!(revision(&stale), revision(&after));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_policy_set_rejected() {
    let (dir, server) = start("").await;
    let old = revision(&status(&server).await);

    for name in ["customers.cedar", "legal-hold.cedar"] {
        std::fs::remove_file(dir.path().join("policies").join(name)).unwrap();
    }
    let stale = wait_for_stale(&server).await;
    assert_eq!(revision(&stale), old, "the old bundle keeps serving");
    let error = last_error(&stale);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("no policies found"),
        "{error:#}"
    );
    assert!(
        error["file"].as_str().unwrap().ends_with("policies"),
        "{error:#}"
    );
    let answer = decide(&server, exporter(), "export", "c-1001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_only_policy_file_not_reported_empty() {
    let (dir, server) = start("").await;
    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    std::fs::write(dir.path().join("policies/customers.cedar"), "permit (").unwrap();

    // The set is empty only because the file did not parse; the parse error is the one
    // to report.
    let stale = wait_for_stale(&server).await;
    let errors: Vec<&Value> = stale["last_reload_error"]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{stale:#}");
    assert!(
        errors[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/customers.cedar"),
        "{stale:#}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_policy_set_allowed_denies_all() {
    let (dir, server) = start("allow_empty_policies = true").await;
    let old = revision(&status(&server).await);

    for name in ["customers.cedar", "legal-hold.cedar"] {
        std::fs::remove_file(dir.path().join("policies").join(name)).unwrap();
    }
    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["stale"], false, "{after:#}");
    assert_eq!(after["bundle"]["policies"], 0, "{after:#}");
    let answer = decide(&server, exporter(), "export", "c-1001").await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "no_permit", "{answer}");
    assert_eq!(answer["revision"], revision(&after).as_str());
    server.stop().await;
}

/// A `cedargate serve` process, killed when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback port that was free a moment ago. Another process could take it
/// before the server binds it, which would fail the test with a bind error.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Returns whether this machine lets an unprivileged process create a user namespace
/// and set its own inotify limits there.
fn user_namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_inotify_watches")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts `cedargate serve` in a user namespace whose inotify watch limit is zero, so
/// inotify starts but cannot watch anything, as when a machine's limit is used up.
fn serve_without_inotify_watches(dir: &Path, address: SocketAddr) -> Server {
    let child = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg(r#"echo 0 > /proc/sys/user/max_inotify_watches && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_cedargate"))
        .args(["serve", "--config"])
        .arg(dir.join("cedargate.toml"))
        .args(["--listen", &address.to_string()])
        .env_remove("CEDARGATE_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Server { child }
}

/// Polls `GET /status` of a server process until `done` holds.
async fn wait_for_process_status(
    server: &mut Server,
    address: SocketAddr,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + common::reload::RELOAD_DEADLINE;
    loop {
        if let Some(code) = server.child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
            }
            panic!("server exited with {code}:\n{stderr}");
        }
        let response = client.get(format!("http://{address}/status")).send().await;
        if let Ok(response) = response {
            let status: Value = response.json().await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status:#}"
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watcher_failure_falls_back_to_polling() {
    if !user_namespaces_work() {
        let _ = writeln!(
            std::io::stderr(),
            "!!! watcher failure test SKIPPED: `unshare --user` cannot create a user namespace here"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let bundle = format!("{}\npoll_interval_ms = 50", common::DEFAULT_TEST_BUNDLE);
    common::write_test_config(dir.path(), "", &bundle);
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut server = serve_without_inotify_watches(dir.path(), address);

    let first = wait_for_process_status(&mut server, address, "the fallback", |status| {
        status["watch"]["mode"] == "poll" && reload_count(status) >= 1
    })
    .await;
    assert_eq!(first["watch"]["poll_interval_ms"], 50, "{first:#}");
    let error = first["watch"]["error"].as_str().unwrap();
    assert!(error.contains("watch limit"), "{error}");
    assert!(error.contains("fs.inotify.max_user_watches"), "{error}");
    let old = revision(&first);

    // Polling serves changes from now on.
    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    let after = wait_for_process_status(&mut server, address, "a new revision", |status| {
        status["bundle"]["revision"] != old.as_str()
    })
    .await;
    assert_eq!(after["bundle"]["policies"], 3, "{after:#}");

    // The log says what happened and what to do, once.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut log).unwrap();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("falling back to polling"))
        .collect();
    assert_eq!(failures.len(), 1, "{log}");
    assert!(failures[0].contains("max_user_watches"), "{log}");
}
