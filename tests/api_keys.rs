//! API keys over HTTP: a keys file of hashes beside the entities, keys presented in
//! `X-API-Key` or `Authorization: ApiKey`, their principals taken from the entity store,
//! and revocation by editing the file while the server runs.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const SCHEMA: &str = r#"
namespace App {
  entity Team;
  entity Thing;
  entity User = { email?: String };
  entity Service in [Team] = { scopes: Set<String> };
  action read, delete appliesTo { principal: [User, Service], resource: [Thing], context: {} };
}
"#;

const POLICIES: &str = r#"
@id("billing-team-reads")
permit (principal in App::Team::"billing", action == App::Action::"read", resource);

@id("deleters-delete")
permit (principal is App::Service, action == App::Action::"delete", resource)
when { principal.scopes.contains("things:delete") };
"#;

const ENTITIES: &str = r#"[
  { "uid": { "type": "App::Team", "id": "billing" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "App::Service", "id": "billing-sync" }, "attrs": { "scopes": [] },
    "parents": [{ "type": "App::Team", "id": "billing" }] },
  { "uid": { "type": "App::Service", "id": "cleaner" }, "attrs": { "scopes": ["things:delete"] },
    "parents": [] }
]"#;

/// Keys of the tests. They are made up for these tests only.
const BILLING_KEY: &str = "cgk_billing-test-key-0123456789abcdefghijklmnopqr";
const CLEANER_KEY: &str = "cgk_cleaner-test-key-0123456789abcdefghijklmnopqr";

/// Hashes a key as the keys file stores it: SHA-256 of its bytes, in lowercase hex.
fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn entry(id: &str, key: &str, service: &str) -> Value {
    json!({
        "id": id,
        "sha256": sha256_hex(key),
        "principal": { "type": "App::Service", "id": service },
    })
}

fn standard_keys() -> Value {
    json!([
        entry("billing-1", BILLING_KEY, "billing-sync"),
        entry("cleaner-1", CLEANER_KEY, "cleaner"),
    ])
}

/// Writes the bundle with `keys` as `api-keys.json` beside the entities folder, and a
/// config that names it.
fn bundle_with_keys(keys: &str, watch: bool) -> (TempDir, cedargate::config::Config) {
    let extra = "[server]\nlisten = \"127.0.0.1:0\"\n";
    let (dir, _) = common::write_config(extra, &[("schema.cedarschema", SCHEMA.as_bytes())]);
    write(&dir.path().join("policies/app.cedar"), POLICIES);
    write(&dir.path().join("entities/app.json"), ENTITIES);
    write(&dir.path().join("api-keys.json"), keys);

    // The common config has no keys file and watches the bundle.
    let path = dir.path().join("cedargate.toml");
    let settings =
        format!("[bundle]\napi_keys = \"api-keys.json\"\nwatch = {watch}\ndebounce_ms = 50\n");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("[bundle]\n", &settings, 1);
    std::fs::write(&path, &text).unwrap();
    let config = cedargate::config::Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("test config is invalid: {err}\n{text}"));
    (dir, config)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn start(keys: &Value) -> (TempDir, TestServer) {
    let (dir, config) = bundle_with_keys(&keys.to_string(), false);
    (dir, TestServer::start(config).await)
}

fn body(action: &str) -> Value {
    json!({ "action": action, "resource": { "type": "App::Thing", "id": "t-1" } })
}

/// Sends `POST /authorize` with the given headers; returns the status, the
/// `WWW-Authenticate` header and the body.
async fn send(
    server: &TestServer,
    headers: &[(&str, &str)],
    action: &str,
) -> (u16, Option<String>, Value) {
    let mut request = server
        .client
        .post(server.url("/authorize"))
        .json(&body(action));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, challenge, response.json().await.unwrap())
}

async fn with_key(server: &TestServer, key: &str, action: &str) -> (u16, Value) {
    let (status, _, body) = send(server, &[("x-api-key", key)], action).await;
    (status, body)
}

#[tokio::test]
async fn x_api_key_header_allows() {
    let (_dir, server) = start(&standard_keys()).await;

    // The principal's parent comes from the entity store.
    let (status, body) = with_key(&server, BILLING_KEY, "read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["policies"], json!(["billing-team-reads"]));

    // And so do its attributes.
    let (status, body) = with_key(&server, CLEANER_KEY, "delete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policies"], json!(["deleters-delete"]));
    let (status, body) = with_key(&server, BILLING_KEY, "delete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "deny", "{body}");

    let status: Value = server
        .client
        .get(server.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["bundle"]["api_keys"], 2, "{status}");

    server.stop().await;
}

#[tokio::test]
async fn authorization_apikey_scheme_allows() {
    let (_dir, server) = start(&standard_keys()).await;

    for scheme in ["ApiKey", "apikey", "APIKEY"] {
        let value = format!("{scheme} {BILLING_KEY}");
        let (status, _, body) = send(&server, &[("authorization", &value)], "read").await;
        assert_eq!(status, 200, "{scheme}: {body}");
        assert_eq!(body["decision"], "allow", "{scheme}: {body}");
    }

    server.stop().await;
}

#[tokio::test]
async fn unknown_key_rejected() {
    let (_dir, server) = start(&standard_keys()).await;

    // A key that differs from a stored one only in its last character.
    let mut near = BILLING_KEY.to_owned();
    near.pop();
    near.push('s');
    for key in [near.as_str(), "cgk_unknown", "short"] {
        let (status, challenge, body) = send(&server, &[("x-api-key", key)], "read").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["decision"], "deny", "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        assert_eq!(challenge.as_deref(), Some("ApiKey realm=\"cedargate\""));
        assert!(
            !body.to_string().contains(key),
            "the answer repeats the key: {body}"
        );
    }

    server.stop().await;
}

#[tokio::test]
async fn malformed_key_rejected() {
    let (_dir, server) = start(&standard_keys()).await;

    let long = "k".repeat(257);
    for key in ["two words", long.as_str(), ""] {
        let (status, _, body) = send(&server, &[("x-api-key", key)], "read").await;
        assert_eq!(status, 401, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "malformed", "{key:?}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn two_credentials_rejected() {
    let (_dir, server) = start(&standard_keys()).await;
    let token = common::mint(&common::user_claims("alice", json!({})));
    let bearer = format!("Bearer {token}");

    let cases: [&[(&str, &str)]; 2] = [
        &[("authorization", &bearer), ("x-api-key", BILLING_KEY)],
        &[("x-api-key", BILLING_KEY), ("x-api-key", CLEANER_KEY)],
    ];
    for headers in cases {
        let (status, _, body) = send(&server, headers, "read").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "malformed", "{body}");
    }

    server.stop().await;
}

#[tokio::test]
async fn expired_key_rejected() {
    let mut keys = standard_keys();
    keys[0]["expires"] = json!("2020-01-01T00:00:00Z");
    keys[1]["expires"] = json!("2999-01-01T00:00:00Z");
    let (_dir, server) = start(&keys).await;

    let (status, body) = with_key(&server, BILLING_KEY, "read").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "expired_api_key", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`billing-1`"), "{message}");

    let (status, body) = with_key(&server, CLEANER_KEY, "delete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");

    server.stop().await;
}

#[tokio::test]
async fn keys_need_a_keys_file() {
    let (dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;

    let (status, body) = with_key(&server, BILLING_KEY, "read").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`bundle.api_keys`"), "{message}");

    server.stop().await;
    drop(dir);
}

/// Polls `/status` until the bundle revision differs from `old`.
async fn wait_for_new_revision(server: &TestServer, old: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Value = server
            .client
            .get(server.url("/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["bundle"]["revision"] != old {
            return;
        }
        assert!(Instant::now() < deadline, "no reload within 20 s: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn current_revision(server: &TestServer) -> String {
    server.pdp.snapshot().unwrap().bundle.revision.clone()
}

/// Replaces a file the way editors save: write aside, then rename over the target.
fn replace(dir: &Path, name: &str, text: &str) {
    let staging = dir.join(".staging");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

#[tokio::test]
async fn revoked_key_stops_after_reload() {
    let (dir, config) = bundle_with_keys(&standard_keys().to_string(), true);
    let server = TestServer::start(config).await;
    let (status, body) = with_key(&server, BILLING_KEY, "read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");

    // Revoke the billing key and add a second key for the cleaner.
    let old = current_revision(&server);
    let second = "cgk_cleaner-second-key-0123456789abcdefghijklmn";
    let keys = json!([
        entry("cleaner-1", CLEANER_KEY, "cleaner"),
        entry("cleaner-2", second, "cleaner"),
    ]);
    replace(dir.path(), "api-keys.json", &keys.to_string());
    wait_for_new_revision(&server, &old).await;

    let (status, body) = with_key(&server, BILLING_KEY, "read").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    for key in [CLEANER_KEY, second] {
        let (status, body) = with_key(&server, key, "delete").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["decision"], "allow", "{body}");
    }

    server.stop().await;
}

#[tokio::test]
async fn broken_keys_file_keeps_old_keys() {
    let (dir, config) = bundle_with_keys(&standard_keys().to_string(), true);
    let server = TestServer::start(config).await;

    // Someone pastes a key where its hash belongs.
    let mut keys = standard_keys();
    keys[1]["sha256"] = json!(CLEANER_KEY);
    replace(dir.path(), "api-keys.json", &format!("{keys:#}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.pdp.reload_status().last_error.is_none() {
        assert!(
            Instant::now() < deadline,
            "the broken keys file was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let failure = server.pdp.reload_status().last_error.unwrap();
    let messages: Vec<String> = failure
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{:?}: {} {:?}",
                d.file.as_ref().unwrap().display(),
                d.line,
                d.message,
                d.snippet
            )
        })
        .collect();
    let keys_error = failure
        .diagnostics
        .iter()
        .find(|d| d.file.as_deref() == Some(dir.path().join("api-keys.json").as_path()))
        .unwrap_or_else(|| panic!("no diagnostic for the keys file: {messages:?}"));
    assert!(
        keys_error
            .message
            .starts_with("API key [1] `cleaner-1`: `sha256` must be 64 hexadecimal digits"),
        "{messages:?}"
    );
    assert!(keys_error.line.is_some(), "{messages:?}");
    for message in &messages {
        assert!(
            !message.contains(CLEANER_KEY),
            "a diagnostic repeats the key: {message}"
        );
    }

    // The previous keys keep serving.
    let (status, body) = with_key(&server, CLEANER_KEY, "delete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");

    server.stop().await;
}

/// Loads the bundle with `keys` and returns the error messages.
fn load_errors(keys: &str) -> Vec<String> {
    let (_dir, config) = bundle_with_keys(keys, false);
    let outcome = cedargate::bundle::load(&config.bundle);
    assert!(
        outcome.bundle.is_none(),
        "the bundle loaded with keys {keys}"
    );
    outcome.errors().map(|d| d.message.clone()).collect()
}

#[test]
fn invalid_keys_files_rejected() {
    let billing = entry("billing-1", BILLING_KEY, "billing-sync");
    let cases = [
        (
            json!([entry("ghost-1", BILLING_KEY, "ghost")]).to_string(),
            "API key [0] `ghost-1`: principal `App::Service::\"ghost\"` is not an entity of the entities files; add it there with its attributes and parents",
        ),
        (
            json!([billing, entry("billing-1", CLEANER_KEY, "cleaner")]).to_string(),
            "API key [1] `billing-1`: the id is also used by key [0]",
        ),
        (
            json!([billing, entry("billing-2", BILLING_KEY, "cleaner")]).to_string(),
            "API key [1] `billing-2`: has the same hash as key `billing-1`, so both are the same key; remove one",
        ),
        (
            json!([{ "id": "x", "sha256": sha256_hex("x"), "principal": { "type": "not a type", "id": "x" } }])
                .to_string(),
            "API key [0] `x`: principal type `not a type` is not a Cedar entity type name such as `Crm::Service`",
        ),
        (
            json!([{ "id": "x", "sha256": sha256_hex("x"), "principal": { "type": "App::Service", "id": "cleaner" }, "expires": "soon" }])
                .to_string(),
            "API key [0] `x`: `expires` is not an RFC 3339 time such as `2027-01-31T00:00:00Z`",
        ),
    ];
    for (keys, expected) in cases {
        let errors = load_errors(&keys);
        assert!(
            errors.iter().any(|message| message.starts_with(expected)),
            "expected `{expected}` in {errors:?}"
        );
    }
}

#[test]
fn keys_file_syntax_errors_located() {
    let (_dir, config) =
        bundle_with_keys("[\n  { \"id\": \"a\", \"key\": \"cgk_secret\" }\n]", false);
    let outcome = cedargate::bundle::load(&config.bundle);
    let errors: Vec<_> = outcome.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("unknown field `key`"),
        "{errors:?}"
    );
    assert_eq!(errors[0].line, Some(2), "{errors:?}");
    assert!(!errors[0].message.contains("cgk_secret"), "{errors:?}");
}

#[test]
fn keys_file_inside_entities_rejected() {
    let (dir, _) = bundle_with_keys("[]", false);
    let path = dir.path().join("cedargate.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "api_keys = \"api-keys.json\"",
        "api_keys = \"entities/keys.json\"",
    );
    let err = cedargate::config::Config::from_toml(&path, &text).err();
    let message = err.map(|err| err.to_string()).unwrap_or_default();
    assert!(message.contains("bundle.api_keys: "), "{message}");
    assert!(message.contains("inside the entities folder"), "{message}");
}

#[test]
fn expired_key_warned_at_load() {
    let mut keys = standard_keys();
    keys[0]["expires"] = json!("2020-01-01T00:00:00Z");
    let (_dir, config) = bundle_with_keys(&keys.to_string(), false);
    let outcome = cedargate::bundle::load(&config.bundle);
    assert!(
        outcome.bundle.is_some(),
        "an expired key must not stop the load"
    );
    let warnings: Vec<&str> = outcome
        .diagnostics
        .iter()
        .filter(|d| d.severity == cedargate::bundle::Severity::Warning)
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        warnings.contains(&"API key [0] `billing-1`: expired at 2020-01-01T00:00:00Z, so it no longer works; remove it"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn generated_key_works() {
    let (dir, config) = bundle_with_keys("[]", false);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args([
            "api-key",
            "--principal",
            "App::Service::cleaner",
            "--id",
            "cli-1",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let key = lines[0];
    let entry: Value = serde_json::from_str(lines[1]).unwrap();
    assert!(key.starts_with("cgk_"), "{key}");
    assert_eq!(key.len(), 47, "{key}");
    assert_eq!(entry["id"], "cli-1");
    assert_eq!(entry["sha256"], sha256_hex(key));
    assert_eq!(
        entry["principal"],
        json!({ "type": "App::Service", "id": "cleaner" })
    );
    assert!(!lines[1].contains(key), "the entry contains the key");

    write(
        &dir.path().join("api-keys.json"),
        &json!([entry]).to_string(),
    );
    let server = TestServer::start(config).await;
    let (status, body) = with_key(&server, key, "delete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");

    server.stop().await;
}

#[test]
fn existing_key_hashed_from_stdin() {
    use std::io::Write as _;

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args([
            "api-key",
            "--principal",
            "App::Service::cleaner",
            "--id",
            "old-1",
            "--key-from-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{CLEANER_KEY}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let entry: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(entry["sha256"], sha256_hex(CLEANER_KEY));
    assert!(!stdout.contains(CLEANER_KEY), "{stdout}");
}

#[test]
fn authorize_command_takes_api_key() {
    let (dir, _) = bundle_with_keys(&standard_keys().to_string(), false);
    let config = dir.path().join("cedargate.toml");
    let authorize = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .env_remove("CEDARGATE_TOKEN")
            .env_remove("CEDARGATE_API_KEY")
            .env_remove("CEDARGATE_CONFIG")
            .arg("authorize")
            .arg("--config")
            .arg(&config)
            .args([
                "--api-key",
                key,
                "--action",
                "read",
                "--resource",
                "App::Thing::t-1",
            ])
            .output()
            .unwrap()
    };

    let output = authorize(BILLING_KEY);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["policies"],
        json!(["billing-team-reads"]),
        "{answer}"
    );

    let output = authorize("cgk_unknown");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "invalid_api_key", "{answer}");
}
