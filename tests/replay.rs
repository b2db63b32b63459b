//! `cedargate replay` on decision logs that a real server wrote.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::TestServer;
use serde_json::{Value, json};

fn request(action: &str, id: &str) -> Value {
    json!({ "action": action, "resource": { "type": "Crm::Customer", "id": id } })
}

/// Serves the default bundle with the decision log in `decisions.log` (plus `log_toml` in
/// `[decision_log]`), makes a mix of decisions and returns the folder.
async fn record_decisions(log_toml: &str) -> tempfile::TempDir {
    let server_toml =
        format!("\n[decision_log]\noutput = \"file\"\npath = \"decisions.log\"\n{log_toml}\n");
    let (dir, config) = common::default_bundle_copy(&server_toml);
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let editor = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales", "groups": ["crm-editor"], "scope": "customers:export",
                "email": "alice@example.com" }),
    ));
    let reader = common::mint(&common::user_claims(
        "bob",
        json!({ "department": "sales", "email": "bob@example.com" }),
    ));
    for (token, action, id) in [
        (&editor, "update", "c-1001"),
        (&editor, "update", "c-2001"),
        (&editor, "update", "c-1002"),
        (&reader, "update", "c-1001"),
        (&editor, "export", "c-1001"),
        (&editor, "export", "c-2001"),
        (&reader, "read", "c-1001"),
        (&reader, "read", "c-1002"),
    ] {
        let (status, _, answer) = server.authorize(Some(token), &request(action, id)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, _, _) = server
        .authorize(Some("not-a-token"), &request("read", "c-1001"))
        .await;
    assert_eq!(status, 401);
    server.stop().await;
    dir
}

fn replay(dir: &Path, bundle: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir)
        .args([
            "replay",
            "--log",
            "decisions.log",
            "--format",
            "json",
            "--bundle",
        ])
        .arg(bundle)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "report is not JSON: {err}\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn log_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("decisions.log"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Copies the bundle into `candidate/` with the policy `id` removed from its file.
fn candidate_without(dir: &Path, file: &str, id: &str) -> std::path::PathBuf {
    let candidate = dir.join("candidate");
    for folder in ["policies", "schema", "entities", "data"] {
        common::copy_dir(&dir.join(folder), &candidate.join(folder));
    }
    let path = candidate.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    // Policies in the default bundle are separated by blank lines.
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(|block| !block.contains(&format!("@id(\"{id}\")")))
        .collect();
    assert_eq!(
        kept.len() + 1,
        text.split("\n\n").count(),
        "policy `{id}` not found"
    );
    std::fs::write(&path, kept.join("\n\n")).unwrap();
    candidate
}

#[tokio::test]
async fn same_bundle_no_changes() {
    let dir = record_decisions("").await;
    let (code, report) = replay(dir.path(), Path::new("."), &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["lines"], 9);
    assert_eq!(report["replayed"], 8);
    assert_eq!(
        report["skipped"], 1,
        "the invalid token line has no request"
    );
    assert_eq!(report["changed"], 0, "{report:#}");
    assert_eq!(report["policies_changed"], 0, "{report:#}");
    assert_eq!(report["unreplayable"], 0, "{report:#}");
    assert_eq!(report["changes"], json!([]));
}

#[tokio::test]
async fn removed_policy_changes_its_decisions() {
    let dir = record_decisions("").await;
    let candidate = candidate_without(
        dir.path(),
        "policies/customers.cedar",
        "update-by-editor-role",
    );

    // The requests that the removed policy decided, from the log itself.
    let decided: Vec<String> = log_lines(dir.path())
        .iter()
        .filter(|line| line["policies"] == json!(["update-by-editor-role"]))
        .map(|line| line["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        decided.len(),
        2,
        "two updates within the editor's department"
    );

    let (code, report) = replay(dir.path(), &candidate, &[]);
    assert_eq!(code, Some(2), "changes fail the run: {report:#}");
    assert_eq!(report["changed"], 2, "{report:#}");
    assert_eq!(report["replayed"], 8);
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{report:#}");
    let group = &changes[0];
    assert_eq!(group["action"], r#"Crm::Action::"update""#);
    assert_eq!(group["from"], "allow");
    assert_eq!(group["to"], "deny");
    assert_eq!(group["before"], json!(["update-by-editor-role"]));
    assert_eq!(group["after"], json!([]));
    assert_eq!(group["count"], 2);
    let mut examples: Vec<String> = group["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|example| example["request_id"].as_str().unwrap().to_owned())
        .collect();
    examples.sort();
    let mut decided = decided;
    decided.sort();
    assert_eq!(examples, decided);

    let (code, _) = replay(dir.path(), &candidate, &["--accept-changes"]);
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn removed_forbid_allows() {
    let dir = record_decisions("").await;
    let candidate = candidate_without(
        dir.path(),
        "policies/legal-hold.cedar",
        "forbid-export-under-legal-hold",
    );
    let (code, report) = replay(dir.path(), &candidate, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["changed"], 1);
    let group = &report["changes"][0];
    assert_eq!(group["from"], "deny");
    assert_eq!(group["to"], "allow");
    assert_eq!(group["before"], json!(["forbid-export-under-legal-hold"]));
    assert_eq!(group["after"], json!(["export-with-scope"]));
    assert_eq!(
        group["examples"][0]["resource"],
        r#"Crm::Customer::"c-2001""#
    );
}

#[tokio::test]
async fn redacted_fields_replay_or_report() {
    // No policy reads `email`; every `read` and `update` policy reads `department`.
    let dir =
        record_decisions("redact = [\"principal.email\"]\nhash = [\"principal.department\"]").await;
    let log = std::fs::read_to_string(dir.path().join("decisions.log")).unwrap();
    assert!(!log.contains("alice@example.com"));

    let (code, report) = replay(dir.path(), Path::new("."), &[]);
    assert_eq!(code, Some(0), "no decision changes: {report:#}");
    assert_eq!(report["changed"], 0, "{report:#}");
    // The two exports replay, and so does the non-editor's update, whose only policy in
    // scope is out of reach of its principal. The two reads and the editor's three
    // updates evaluate a condition on the department.
    assert_eq!(report["replayed"], 3, "{report:#}");
    assert_eq!(report["unreplayable"], 5, "{report:#}");
    for line in report["unreplayable_lines"].as_array().unwrap() {
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains("principal.department"), "{reason}");
        assert!(
            line["location"]
                .as_str()
                .unwrap()
                .starts_with("decisions.log:")
        );
    }
}

#[test]
fn invalid_line_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle_dir, _) = common::default_bundle_copy("");
    std::fs::write(dir.path().join("decisions.log"), "not json\n\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(bundle_dir.path())
        .args(["replay", "--format", "json", "--bundle", ".", "--log"])
        .arg(dir.path().join("decisions.log"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["lines"], 1);
    assert_eq!(report["unreplayable"], 1);
    let reason = report["unreplayable_lines"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("not a decision log line"), "{reason}");
}
