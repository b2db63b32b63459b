//! Hot reload end to end: a real server watches a temporary copy of the default bundle,
//! the tests change files on disk, and notify's events bring the change in. A broken
//! change must leave the last good bundle serving and show up on `/status`.
//!
//! `SIGHUP` is not tested here because the watcher runs inside the test process, so the
//! signal would reach the test harness too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use common::TestServer;

/// How long a change on disk may take to show up on `/status`.
const RELOAD_DEADLINE: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Longer than the 50 ms debounce of `default_bundle_copy`, so a quiet spell this long
/// means no reload is pending.
const QUIET_SPELL: Duration = Duration::from_millis(200);

/// Starts a watching server on a fresh copy of the default bundle, with the clock fixed
/// inside business hours, and returns once its file watcher reacts to changes.
async fn start() -> (TempDir, TestServer) {
    let (dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    wait_for_watcher(&server, dir.path()).await;
    (dir, server)
}

/// Waits until the watcher reacts to file events and no reload is pending, so the reload
/// counters on `/status` change only because of the test's own edits. Writing a hidden
/// file triggers a reload without changing the bundle, because the loader skips hidden
/// files.
async fn wait_for_watcher(server: &TestServer, dir: &Path) {
    let probe = dir.join("policies/.watcher-probe");
    let deadline = Instant::now() + RELOAD_DEADLINE;
    let mut attempt = 0;
    loop {
        let before = succeeded_reloads(server).await;
        attempt += 1;
        std::fs::write(&probe, attempt.to_string()).unwrap();

        let retry_at = Instant::now() + QUIET_SPELL;
        while Instant::now() < retry_at {
            if succeeded_reloads(server).await > before {
                wait_for_quiet(server).await;
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        assert!(
            Instant::now() < deadline,
            "the file watcher did not react to {attempt} probe writes within {RELOAD_DEADLINE:?}"
        );
    }
}

/// Waits until the reload counters stop changing, so no probe reload overlaps the test's
/// own edit.
async fn wait_for_quiet(server: &TestServer) {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    let mut last = status(server).await["reloads"].clone();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET_SPELL {
        assert!(Instant::now() < deadline, "reloads kept happening: {last}");
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = status(server).await["reloads"].clone();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
}

async fn status(server: &TestServer) -> Value {
    let response = server
        .client
        .get(server.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn succeeded_reloads(server: &TestServer) -> u64 {
    status(server).await["reloads"]["succeeded"]
        .as_u64()
        .unwrap()
}

fn revision(status: &Value) -> String {
    status["bundle"]["revision"].as_str().unwrap().to_owned()
}

/// Polls `/status` until `done` holds, and returns that status.
async fn wait_for_status(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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

/// Waits for a reload that publishes a revision other than `old`.
async fn wait_for_new_revision(server: &TestServer, old: &str) -> Value {
    wait_for_status(server, "a new revision", |status| {
        status["bundle"]["revision"] != old
    })
    .await
}

/// Waits for a failed reload.
async fn wait_for_stale(server: &TestServer) -> Value {
    wait_for_status(server, "a failed reload", |status| status["stale"] == true).await
}

/// Replaces a file the way editors save: write a temporary file outside the watched
/// folders, then rename it over the target, so no reload can read a half-written file.
fn replace_atomically(dir: &Path, relative: &str, contents: &[u8]) {
    let staging = dir.join(".staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, dir.join(relative)).unwrap();
}

fn read(dir: &Path, relative: &str) -> String {
    std::fs::read_to_string(dir.join(relative)).unwrap()
}

/// Sends one decision request with a fresh token and returns the body of the 200 response.
async fn decide(server: &TestServer, claims: Value, action: &str, customer: &str) -> Value {
    let sub = claims["sub"].as_str().unwrap().to_owned();
    let token = common::mint(&common::user_claims(&sub, claims));
    let body = json!({ "action": action, "resource": { "type": "Crm::Customer", "id": customer } });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn sales_user() -> Value {
    json!({ "sub": "alice", "department": "sales" })
}

fn exporter() -> Value {
    json!({ "sub": "erin", "department": "sales", "scope": ["customers:export"] })
}

/// Returns the first error diagnostic of the last failed reload.
fn last_error(status: &Value) -> &Value {
    let diagnostics = &status["last_reload_error"]["diagnostics"];
    diagnostics
        .as_array()
        .and_then(|all| all.iter().find(|d| d["severity"] == "error"))
        .unwrap_or_else(|| panic!("no error diagnostic in {status:#}"))
}

fn file_of(diagnostic: &Value) -> &str {
    diagnostic["file"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn broken_edit_keeps_old_bundle_until_fixed() {
    let (dir, server) = start().await;
    let before = status(&server).await;
    let old_revision = revision(&before);
    let original = read(dir.path(), "policies/customers.cedar");

    // Line 13 of the default policy contains the business-hours condition. Cutting its
    // right operand makes the parser stop at the `&&` after `<`.
    let good_line = "  context.hour >= 8 && context.hour < 18 &&";
    let broken_line = "  context.hour >= 8 && context.hour < &&";
    assert_eq!(original.lines().nth(12), Some(good_line));
    let broken = original.replacen(good_line, broken_line, 1);
    std::fs::write(dir.path().join("policies/customers.cedar"), &broken).unwrap();

    let stale = wait_for_stale(&server).await;
    assert_eq!(stale["reloads"]["failed"], 1, "{stale:#}");
    assert_eq!(revision(&stale), old_revision, "{stale:#}");
    let error = last_error(&stale);
    assert!(
        file_of(error).ends_with("policies/customers.cedar"),
        "{error:#}"
    );
    assert_eq!(error["line"], 13, "{error:#}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));

    let answer = decide(&server, sales_user(), "read", "c-1001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["revision"], old_revision.as_str());

    // The fix also moves the end of business hours to 21:00, which shows at 20:00.
    server.pdp.set_fixed_time(Some(common::after_hours()));
    let answer = decide(&server, sales_user(), "read", "c-1001").await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    let fixed = original.replacen("context.hour < 18", "context.hour < 21", 1);
    assert_ne!(fixed, original);
    std::fs::write(dir.path().join("policies/customers.cedar"), &fixed).unwrap();

    let recovered = wait_for_new_revision(&server, &old_revision).await;
    assert_eq!(recovered["stale"], false, "{recovered:#}");
    assert_eq!(recovered["last_reload_error"], Value::Null, "{recovered:#}");
    assert_eq!(recovered["reloads"]["failed"], 1, "{recovered:#}");
    let answer = decide(&server, sales_user(), "read", "c-1001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["read-own-department-in-business-hours"])
    );
    assert_eq!(answer["revision"], revision(&recovered).as_str());
    server.stop().await;
}

#[tokio::test]
async fn edit_during_startup_is_picked_up() {
    let (dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;
    // Read without awaiting, so that the watcher task gets no chance to run first.
    let old_revision = server.pdp.snapshot().unwrap().bundle.revision.clone();

    // The server has loaded the bundle, but its watcher task may not have registered
    // any watch yet, so this deletion can happen before notify could see it.
    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();

    let after = wait_for_new_revision(&server, &old_revision).await;
    assert_eq!(after["bundle"]["policies"], 3, "{after:#}");
    assert_eq!(after["stale"], false, "{after:#}");
    server.stop().await;
}

#[tokio::test]
async fn deleted_policy_file_stops_applying() {
    let (dir, server) = start().await;
    let old_revision = revision(&status(&server).await);

    let answer = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["forbid-export-under-legal-hold"])
    );

    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    let after = wait_for_new_revision(&server, &old_revision).await;
    assert_eq!(after["stale"], false, "{after:#}");
    assert_eq!(after["bundle"]["policies"], 3, "{after:#}");

    let answer = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["policies"], json!(["export-with-scope"]));
    assert_eq!(answer["revision"], revision(&after).as_str());
    server.stop().await;
}

#[tokio::test]
async fn new_policy_file_is_picked_up() {
    let (dir, server) = start().await;
    let old_revision = revision(&status(&server).await);
    let bob = json!({ "sub": "bob", "department": "support" });

    let answer = decide(&server, bob.clone(), "export", "c-1001").await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["policies"], json!([]));

    let policy = r#"// Bob may export one record without the export scope.
@id("bob-exports-acme")
permit (
  principal == Crm::User::"bob",
  action == Crm::Action::"export",
  resource == Crm::Customer::"c-1001"
);
"#;
    replace_atomically(dir.path(), "policies/partners.cedar", policy.as_bytes());
    let after = wait_for_new_revision(&server, &old_revision).await;
    assert_eq!(after["bundle"]["policies"], 5, "{after:#}");

    let answer = decide(&server, bob, "export", "c-1001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["policies"], json!(["bob-exports-acme"]));
    server.stop().await;
}

#[tokio::test]
async fn schema_change_breaking_policies_keeps_old_bundle() {
    let (dir, server) = start().await;
    let old_revision = revision(&status(&server).await);

    // An optional attribute must be guarded with `has` under strict validation, so the
    // legal-hold policy's plain `resource.legal_hold` becomes invalid. The entities still
    // conform, because they set the attribute.
    let schema = read(dir.path(), "schema/crm.cedarschema");
    let optional = schema.replacen("legal_hold: Bool", "legal_hold?: Bool", 1);
    assert_ne!(optional, schema);
    replace_atomically(dir.path(), "schema/crm.cedarschema", optional.as_bytes());

    let stale = wait_for_stale(&server).await;
    assert_eq!(stale["reloads"]["failed"], 1, "{stale:#}");
    assert_eq!(revision(&stale), old_revision);
    let error = last_error(&stale);
    assert!(
        file_of(error).ends_with("policies/legal-hold.cedar"),
        "{error:#}"
    );
    assert_eq!(error["line"], 9, "{error:#}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("forbid-export-under-legal-hold")),
        "{error:#}"
    );

    let answer = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["forbid-export-under-legal-hold"])
    );
    assert_eq!(answer["revision"], old_revision.as_str());
    server.stop().await;
}

#[tokio::test]
async fn entity_change_applies() {
    let (dir, server) = start().await;
    let old_revision = revision(&status(&server).await);

    let answer = decide(&server, sales_user(), "read", "c-1002").await;
    assert_eq!(answer["decision"], "deny", "{answer}");

    // c-1002 moves from the support department to sales.
    let entities = read(dir.path(), "entities/crm.json");
    let support_parent = r#""parents": [{ "type": "Crm::Department", "id": "support" }]"#;
    let sales_parent = r#""parents": [{ "type": "Crm::Department", "id": "sales" }]"#;
    assert_eq!(entities.matches(support_parent).count(), 1);
    let moved = entities.replacen(support_parent, sales_parent, 1);
    std::fs::write(dir.path().join("entities/crm.json"), moved).unwrap();

    let after = wait_for_new_revision(&server, &old_revision).await;
    assert_eq!(after["stale"], false, "{after:#}");
    let answer = decide(&server, sales_user(), "read", "c-1002").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["read-own-department-in-business-hours"])
    );
    assert_eq!(answer["revision"], revision(&after).as_str());
    server.stop().await;
}

#[tokio::test]
async fn non_utf8_file_reports_error() {
    let (dir, server) = start().await;
    let old_revision = revision(&status(&server).await);
    let original = read(dir.path(), "policies/customers.cedar");

    // A Latin-1 `ü` (0xFC) in the comment on line 17 is not valid UTF-8.
    let comment = "// Editors may update";
    assert!(original.lines().nth(16).unwrap().starts_with(comment));
    let offset = original.find(comment).unwrap() + "// Editors".len();
    let mut bytes = original.as_bytes().to_vec();
    bytes.splice(offset..offset, [b' ', 0xFC, b'b', b'e', b'r']);
    std::fs::write(dir.path().join("policies/customers.cedar"), &bytes).unwrap();

    let stale = wait_for_stale(&server).await;
    assert_eq!(revision(&stale), old_revision);
    let error = last_error(&stale);
    assert!(
        file_of(error).ends_with("policies/customers.cedar"),
        "{error:#}"
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8")),
        "{error:#}"
    );
    assert_eq!(error["line"], 17, "{error:#}");

    let answer = decide(&server, sales_user(), "read", "c-1001").await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["revision"], old_revision.as_str());
    server.stop().await;
}

#[tokio::test]
async fn invalid_start_serves_503_until_fixed() {
    let (dir, config) = common::default_bundle_copy("start_without_bundle = true");
    let original = read(dir.path(), "policies/customers.cedar");
    std::fs::write(dir.path().join("policies/customers.cedar"), "permit (").unwrap();
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));

    let token = common::mint(&common::user_claims("alice", sales_user()));
    let body = json!({ "action": "read", "resource": { "type": "Crm::Customer", "id": "c-1001" } });
    let (code, _, unavailable) = server.authorize(Some(&token), &body).await;
    assert_eq!(code, 503, "{unavailable}");
    assert_eq!(unavailable["deny"], "unavailable");
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(status(&server).await["stale"], true);

    replace_atomically(dir.path(), "policies/customers.cedar", original.as_bytes());
    wait_for_status(&server, "a first valid bundle", |status| {
        status["bundle"]["revision"].is_string()
    })
    .await;
    let (code, _, allowed) = server.authorize(Some(&token), &body).await;
    assert_eq!(code, 200, "{allowed}");
    assert_eq!(allowed["decision"], "allow");
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    server.stop().await;
}
