//! The `cedargate` binary as users run it: `validate`, `token`, `authorize` and `serve`
//! on temporary copies of the default bundle, checked by exit code and output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// A Monday at 10:00 in Berlin, the default bundle's time zone: inside business hours.
const BUSINESS_HOURS: &str = "2026-03-02T10:00:00+01:00";
/// The same Monday at 20:00 in Berlin: outside business hours.
const AFTER_HOURS: &str = "2026-03-02T20:00:00+01:00";

/// Exit code of `authorize` for a deny.
const EXIT_DENY: i32 = 2;

/// Copies the default bundle and the repository's `cedargate.toml`, unchanged, into a new
/// temporary folder. The development issuer's keys are then generated in that folder.
fn repo_copy() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["policies", "schema", "entities", "data"] {
        common::copy_dir(&common::repo_dir().join(folder), &dir.path().join(folder));
    }
    std::fs::copy(
        common::repo_dir().join("cedargate.toml"),
        dir.path().join("cedargate.toml"),
    )
    .unwrap();
    dir
}

/// Builds a `cedargate` command that runs in `dir` with its `cedargate.toml`. The
/// `CEDARGATE_*` variables of the calling environment are removed.
fn cedargate(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cedargate"));
    command
        .current_dir(dir)
        .env_remove("CEDARGATE_CONFIG")
        .env_remove("CEDARGATE_TOKEN")
        .env_remove("CEDARGATE_LOG")
        .env("NO_COLOR", "1");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cedargate(dir).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Formats the exit code and both streams, for assertion messages.
fn describe(output: &Output) -> String {
    format!(
        "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

/// Replaces `old` with `new` in a file of `dir`, failing when `old` is not there.
fn edit(dir: &Path, relative: &str, old: &str, new: &str) {
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "`{old}` not found in {relative}");
    std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
}

/// Returns the 1-based column of the last `needle` in `line`.
fn column_of(line: &str, needle: &str) -> usize {
    line.rfind(needle).unwrap() + 1
}

// `cedargate validate`

#[test]
fn validate_default_bundle_passes() {
    let dir = repo_copy();
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout(&output).starts_with("valid: 4 policies"),
        "{}",
        describe(&output)
    );
    // The development issuer's key pair is created beside the copied config.
    assert!(dir.path().join(".cedargate-dev/jwks.json").is_file());
}

#[test]
fn validate_syntax_error_shows_position() {
    let dir = repo_copy();
    // Line 13 of customers.cedar loses the right operand of `<`, so the parser stops at
    // the `&&` that follows.
    let broken_line = "  context.hour >= 8 && context.hour < &&";
    edit(
        dir.path(),
        "policies/customers.cedar",
        "  context.hour >= 8 && context.hour < 18 &&",
        broken_line,
    );
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let position = format!(
        "policies/customers.cedar:13:{}",
        column_of(broken_line, "&&")
    );
    let text = stderr(&output);
    assert!(text.contains(&position), "no `{position}` in\n{text}");
    assert!(
        text.contains(&format!(" 13 | {broken_line}")),
        "no source line in\n{text}"
    );
    assert!(text.contains("^^"), "no marker in\n{text}");
}

#[test]
fn validate_strict_error_shows_position() {
    let dir = repo_copy();
    let policy = r#"// Uses an attribute that the schema does not declare.
@id("reads-nonexistent")
permit (
  principal,
  action == Crm::Action::"read",
  resource
)
when { principal.nonexistent == "x" };
"#;
    std::fs::write(dir.path().join("policies/bad.cedar"), policy).unwrap();
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let line = policy.lines().nth(7).unwrap();
    let position = format!(
        "policies/bad.cedar:8:{}",
        column_of(line, "principal.nonexistent")
    );
    let text = stderr(&output);
    assert!(text.contains(&position), "no `{position}` in\n{text}");
    assert!(
        text.contains("reads-nonexistent"),
        "no policy ID in\n{text}"
    );
    assert!(text.contains("`nonexistent`"), "no attribute in\n{text}");
    assert!(text.contains(line), "no source line in\n{text}");
}

#[test]
fn validate_duplicate_id_names_both_files() {
    let dir = repo_copy();
    let policy = r#"@id("export-with-scope")
permit (principal, action == Crm::Action::"export", resource);
"#;
    std::fs::write(dir.path().join("policies/copy.cedar"), policy).unwrap();
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("`export-with-scope`"), "no ID in\n{text}");
    assert!(
        text.contains("policies/copy.cedar"),
        "no new file in\n{text}"
    );
    assert!(
        text.contains("policies/customers.cedar"),
        "no first file in\n{text}"
    );
}

#[test]
fn validate_invalid_entities_json_names_file() {
    let dir = repo_copy();
    // A trailing comma on line 7 of crm.json.
    edit(
        dir.path(),
        "entities/crm.json",
        r#""legal_hold": false }"#,
        r#""legal_hold": false, }"#,
    );
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("entities/crm.json:7:"),
        "no position in\n{text}"
    );
}

#[test]
fn validate_nonconforming_entity_names_attribute() {
    let dir = repo_copy();
    edit(
        dir.path(),
        "entities/crm.json",
        r#""legal_hold": false }"#,
        r#""legal_hold": "no" }"#,
    );
    let output = run(dir.path(), &["validate"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("entities/crm.json:"), "no file in\n{text}");
    assert!(text.contains("c-1001"), "no entity in\n{text}");
    assert!(text.contains("`legal_hold`"), "no attribute in\n{text}");
}

#[test]
fn validate_json_output_has_positions() {
    let dir = repo_copy();
    let broken_line = "  context.hour >= 8 && context.hour < &&";
    edit(
        dir.path(),
        "policies/customers.cedar",
        "  context.hour >= 8 && context.hour < 18 &&",
        broken_line,
    );
    let output = run(dir.path(), &["validate", "--format", "json"]);

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON: {err}\n{}", describe(&output)));
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    let diagnostic = &report["diagnostics"][0];
    assert_eq!(diagnostic["severity"], "error");
    assert!(
        diagnostic["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("policies/customers.cedar")),
        "{diagnostic:#}"
    );
    assert_eq!(diagnostic["line"], 13);
    assert_eq!(diagnostic["column"], column_of(broken_line, "&&"));
}

#[test]
fn validate_deny_warnings_fails_on_warning() {
    let dir = repo_copy();
    // `when { false }` never matches, which Cedar's validator reports as an impossible
    // policy: a warning, not an error.
    let policy = r#"@id("never-matches")
permit (principal, action == Crm::Action::"read", resource)
when { false };
"#;
    std::fs::write(dir.path().join("policies/impossible.cedar"), policy).unwrap();

    let lenient = run(dir.path(), &["validate"]);
    assert_eq!(lenient.status.code(), Some(0), "{}", describe(&lenient));
    assert!(
        stderr(&lenient).contains("warning: "),
        "{}",
        describe(&lenient)
    );
    assert!(
        stderr(&lenient).contains("policies/impossible.cedar"),
        "{}",
        describe(&lenient)
    );

    let strict = run(dir.path(), &["validate", "--deny-warnings"]);
    assert_eq!(strict.status.code(), Some(1), "{}", describe(&strict));

    let json = run(
        dir.path(),
        &["validate", "--deny-warnings", "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(1), "{}", describe(&json));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 1);
}

#[test]
fn config_unknown_key_names_key_and_line() {
    let dir = repo_copy();
    let config = std::fs::read_to_string(dir.path().join("cedargate.toml")).unwrap();
    let line = config
        .lines()
        .position(|l| l == "leeway_seconds = 30")
        .unwrap()
        + 1;
    edit(
        dir.path(),
        "cedargate.toml",
        "leeway_seconds = 30\n",
        "leeway_seconds = 30\nleeway_minutes = 1\n",
    );
    let expected_line = format!("line {}", line + 1);

    for args in [&["validate"][..], &["serve", "--listen", "127.0.0.1:0"][..]] {
        let output = run(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        let text = stderr(&output);
        assert!(
            text.contains("`leeway_minutes`"),
            "{args:?}: no key in\n{text}"
        );
        assert!(
            text.contains(&expected_line),
            "{args:?}: no `{expected_line}` in\n{text}"
        );
    }
}

// `cedargate token` and `cedargate authorize`

/// Mints a development token with `cedargate token`.
fn mint_token(dir: &Path, sub: &str, claims: &[&str]) -> String {
    let mut args = vec!["token", "--sub", sub];
    for claim in claims {
        args.extend(["--claim", claim]);
    }
    let output = run(dir, &args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let token = stdout(&output).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    token
}

/// Runs `cedargate authorize` for a read of c-1001 and returns the exit code and the
/// parsed JSON output.
fn authorize_read(dir: &Path, credential: &[&str], at: &str) -> (Option<i32>, Value) {
    let mut args = vec![
        "authorize",
        "--action",
        "read",
        "--resource",
        "Crm::Customer::c-1001",
        "--at",
        at,
    ];
    args.extend(credential);
    let output = run(dir, &args);
    let answer = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON: {err}\n{}", describe(&output)));
    (output.status.code(), answer)
}

#[test]
fn authorize_dev_token_follows_business_hours() {
    let dir = repo_copy();
    let token = mint_token(dir.path(), "alice", &["department=sales"]);

    let (code, answer) = authorize_read(dir.path(), &["--token", &token], BUSINESS_HOURS);
    assert_eq!(code, Some(0), "{answer:#}");
    assert_eq!(answer["decision"], "allow");
    assert_eq!(
        answer["policies"],
        json!(["read-own-department-in-business-hours"])
    );
    assert!(answer["revision"].is_string(), "{answer:#}");
    assert!(answer["request_id"].is_string(), "{answer:#}");

    let (code, answer) = authorize_read(dir.path(), &["--token", &token], AFTER_HOURS);
    assert_eq!(code, Some(EXIT_DENY), "{answer:#}");
    assert_eq!(answer["decision"], "deny");
    assert_eq!(answer["policies"], json!([]));
}

#[test]
fn authorize_claims_file_matches_token() {
    let dir = repo_copy();
    let token = mint_token(dir.path(), "alice", &["department=sales"]);
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        json!({ "sub": "alice", "department": "sales" }).to_string(),
    )
    .unwrap();
    let claims = claims.to_str().unwrap();

    for at in [BUSINESS_HOURS, AFTER_HOURS] {
        let (token_code, by_token) = authorize_read(dir.path(), &["--token", &token], at);
        let (claims_code, by_claims) = authorize_read(dir.path(), &["--claims", claims], at);
        assert_eq!(claims_code, token_code, "at {at}: {by_claims:#}");
        assert_eq!(by_claims["decision"], by_token["decision"], "at {at}");
        assert_eq!(by_claims["policies"], by_token["policies"], "at {at}");
    }
}

// `cedargate serve`

/// A child process that is killed if the test ends before it exits.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns a loopback port that was free a moment ago. Another process could take it
/// before the server binds it, which would fail the test with a bind error.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `/readyz` until it returns 200, failing if the server exits first.
async fn wait_until_ready(server: &mut Server, client: &reqwest::Client, address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.child.stderr.take() {
                pipe.read_to_string(&mut stderr).unwrap();
            }
            panic!("server exited with {status} before it was ready:\n{stderr}");
        }
        let ready = client
            .get(format!("http://{address}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "server not ready within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM with the `kill` command and waits up to `limit` for the exit code.
fn terminate(server: &mut Server, limit: Duration) -> Option<i32> {
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid} failed: {status}");

    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "server still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serve_logs_decisions_and_stops_cleanly() {
    let dir = repo_copy();
    let token = mint_token(
        dir.path(),
        "erin",
        &["department=sales", "scope=customers:export"],
    );
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = cedargate(dir.path())
        .args(["serve", "--listen", &address.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server { child };
    let client = reqwest::Client::new();
    wait_until_ready(&mut server, &client, address).await;

    // Exports depend only on the scope, not on the time of day, so the real clock is fine.
    let response = client
        .post(format!("http://{address}/authorize"))
        .bearer_auth(&token)
        .json(
            &json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": "c-1001" } }),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["decision"], "allow", "{answer:#}");
    assert_eq!(answer["policies"], json!(["export-with-scope"]));

    let code = terminate(&mut server, Duration::from_secs(5));
    let mut out = String::new();
    server
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(0), "--- stdout\n{out}\n--- stderr\n{err}");

    assert!(
        err.contains("development issuer enabled"),
        "no development-issuer warning in\n{err}"
    );
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        for segment in token.split('.') {
            assert!(!text.contains(segment), "{name} contains part of the token");
        }
        assert!(
            !text.contains("Bearer"),
            "{name} contains `Bearer`:\n{text}"
        );
    }

    let lines: Vec<Value> = out
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("stdout line is not JSON: {err}: {line}"))
        })
        .collect();
    assert_eq!(lines.len(), 1, "one decision, one line:\n{out}");
    let log = &lines[0];
    assert_eq!(log["decision"], "allow", "{log:#}");
    assert_eq!(log["request_id"], answer["request_id"], "{log:#}");
    assert_eq!(log["revision"], answer["revision"], "{log:#}");
}

#[tokio::test]
async fn sighup_reloads_without_watcher() {
    let dir = repo_copy();
    edit(
        dir.path(),
        "cedargate.toml",
        "watch = true",
        "watch = false",
    );
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = cedargate(dir.path())
        .args(["serve", "--listen", &address.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server { child };
    let client = reqwest::Client::new();
    wait_until_ready(&mut server, &client, address).await;
    let revision = |client: reqwest::Client| async move {
        let status: Value = client
            .get(format!("http://{address}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["bundle"]["revision"].clone()
    };
    let before = revision(client.clone()).await;

    std::fs::remove_file(dir.path().join("policies/legal-hold.cedar")).unwrap();
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "server exited on SIGHUP"
        );
        if revision(client.clone()).await != before {
            break;
        }
        assert!(Instant::now() < deadline, "no reload within 5 s of SIGHUP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(terminate(&mut server, Duration::from_secs(5)), Some(0));
}

#[test]
fn revision_independent_of_config_spelling() {
    let dir = repo_copy();
    let absolute = dir.path().join("cedargate.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    let revision = |output: Output| {
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        json["revision"].as_str().unwrap().to_owned()
    };

    let plain = revision(run(dir.path(), &["validate", "--format", "json"]));
    let dotted = revision(run(
        dir.path(),
        &["validate", "--format", "json", "-c", "./cedargate.toml"],
    ));
    let from_elsewhere = revision(run(
        elsewhere.path(),
        &[
            "validate",
            "--format",
            "json",
            "-c",
            absolute.to_str().unwrap(),
        ],
    ));
    assert_eq!(plain, dotted);
    assert_eq!(plain, from_elsewhere);
}

#[test]
fn authorize_context_duplicate_key_rejected() {
    let dir = repo_copy();
    let claims = dir.path().join("claims.json");
    std::fs::write(&claims, r#"{"sub": "alice", "department": "sales"}"#).unwrap();
    let output = run(
        dir.path(),
        &[
            "authorize",
            "--claims",
            claims.to_str().unwrap(),
            "--action",
            "read",
            "--resource",
            "Crm::Customer::c-1001",
            "--context",
            r#"{"purpose": "a", "purpose": "b"}"#,
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("duplicate key"),
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn serve_never_logs_api_keys() {
    let dir = repo_copy();
    // A reporting bot that may export, with a key generated by the CLI.
    std::fs::write(
        dir.path().join("entities/bots.json"),
        r#"[{ "uid": { "type": "Crm::User", "id": "report-bot" },
              "attrs": { "department": { "__entity": { "type": "Crm::Department", "id": "sales" } },
                         "scopes": ["customers:export"] },
              "parents": [] }]"#,
    )
    .unwrap();
    let output = run(
        dir.path(),
        &[
            "api-key",
            "--principal",
            "Crm::User::report-bot",
            "--id",
            "report-1",
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let printed = stdout(&output);
    let (key, entry) = printed.trim().split_once('\n').unwrap();
    std::fs::write(dir.path().join("data/api-keys.json"), format!("[{entry}]")).unwrap();
    edit(
        dir.path(),
        "cedargate.toml",
        "[bundle]\n",
        "[bundle]\napi_keys = \"data/api-keys.json\"\n",
    );

    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = cedargate(dir.path())
        .args(["serve", "--listen", &address.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server { child };
    let client = reqwest::Client::new();
    wait_until_ready(&mut server, &client, address).await;

    // One allowed request per header, then a near miss of the key in each.
    let near_miss = format!("{}x", &key[..key.len() - 1]);
    let export =
        json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": "c-1001" } });
    let mut answers = Vec::new();
    for (name, value) in [
        ("x-api-key", key.to_owned()),
        ("authorization", format!("ApiKey {key}")),
        ("x-api-key", near_miss.clone()),
        ("authorization", format!("ApiKey {near_miss}")),
    ] {
        let response = client
            .post(format!("http://{address}/authorize"))
            .header(name, value)
            .json(&export)
            .send()
            .await
            .unwrap();
        answers.push((
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        ));
    }
    for (status, answer) in &answers[..2] {
        assert_eq!(*status, 200, "{answer:#}");
        assert_eq!(
            answer["policies"],
            json!(["export-with-scope"]),
            "{answer:#}"
        );
    }
    for (status, answer) in &answers[2..] {
        assert_eq!(*status, 401, "{answer:#}");
        assert_eq!(answer["error"]["code"], "invalid_api_key", "{answer:#}");
    }

    let code = terminate(&mut server, Duration::from_secs(5));
    let mut out = String::new();
    server
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(0), "--- stdout\n{out}\n--- stderr\n{err}");
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        // The shared prefix `cgk_` may appear; no longer part of either key may.
        for secret in [key, near_miss.as_str()] {
            assert!(
                !text.contains(&secret[..12]),
                "{name} contains part of an API key:\n{text}"
            );
        }
    }

    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one line per decision:\n{out}");
    for log in &lines[..2] {
        assert_eq!(log["api_key"], "report-1", "{log:#}");
        assert_eq!(log["principal"], "Crm::User::\"report-bot\"", "{log:#}");
    }
    for log in &lines[2..] {
        assert_eq!(log["error"]["code"], "invalid_api_key", "{log:#}");
    }
}
