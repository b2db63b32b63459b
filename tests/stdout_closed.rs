//! Every command that writes to standard output ends quietly, with its usual exit code,
//! when the reader has closed the pipe, as `cedargate validate --format json | head -1`
//! does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `cedargate` with a standard output pipe whose read end is already closed.
fn run_with_closed_stdout(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir)
        .env_remove("CEDARGATE_CONFIG")
        .env_remove("CEDARGATE_LOG")
        .args(args)
        .stdout(writer)
        .output()
        .unwrap()
}

#[test]
fn closed_stdout_ends_quietly() {
    let (dir, _config) = common::default_bundle_copy("");
    std::fs::write(
        dir.path().join("claims.json"),
        r#"{"sub": "alice", "department": "sales"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("decisions.log"), "").unwrap();
    std::fs::create_dir(dir.path().join("suite")).unwrap();
    std::fs::copy(
        common::repo_dir().join("tests/policies/export.yaml"),
        dir.path().join("suite/export.yaml"),
    )
    .unwrap();

    let commands: [(&[&str], &[i32]); 8] = [
        (&["validate"], &[0]),
        (&["validate", "--format", "json"], &[0]),
        (
            &[
                "authorize",
                "--claims",
                "claims.json",
                "--action",
                "read",
                "--resource",
                "Crm::Customer::c-1001",
                "--at",
                "2026-03-02T10:00:00+01:00",
            ],
            &[0, 2],
        ),
        (&["test", "suite"], &[0]),
        (&["test", "suite", "--format", "json"], &[0]),
        (&["api-key", "--principal", "Crm::Service::billing"], &[0]),
        (&["replay", "--log", "decisions.log", "--bundle", "."], &[0]),
        (
            &[
                "replay",
                "--log",
                "decisions.log",
                "--bundle",
                ".",
                "--format",
                "json",
            ],
            &[0],
        ),
    ];
    for (args, codes) in commands {
        let output = run_with_closed_stdout(dir.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let code = output.status.code();
        assert!(
            code.is_some_and(|code| codes.contains(&code)),
            "{args:?}: exit code {code:?}, expected one of {codes:?}: {stderr}"
        );
    }
}
