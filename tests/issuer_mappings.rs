//! Per-issuer principal mappings over HTTP: a user issuer, a machine-to-machine issuer and
//! an issuer that falls back on the top-level `[principal]`, each with its own key, served
//! by the real server.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::TestServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SCHEMA: &str = r#"
namespace App {
  entity Role;
  entity Thing;
  entity User in [Role] = { email?: String };
  entity Service = { scopes: Set<String> };
  action call appliesTo { principal: [User, Service], resource: [Thing], context: {} };
}
"#;

const POLICIES: &str = r#"
@id("staff-users")
permit(principal is App::User, action, resource) when { principal in App::Role::"staff" };

@id("sync-services")
permit(principal is App::Service, action, resource) when { principal.scopes.contains("sync") };

@id("billing-service")
permit(principal == App::Service::"billing", action, resource);

@id("alice")
permit(principal == App::User::"alice", action, resource);
"#;

const ISSUERS: &str = r#"
[server]
listen = "127.0.0.1:0"

[[issuer]]
name = "users"
issuer = "https://users.test"
algorithms = ["ES256"]
keys = [{ pem = "users.pem", kid = "users" }]
[issuer.principal]
type = "App::User"
[issuer.principal.attributes]
email = "email"
[[issuer.principal.parents]]
claim = "groups"
type = "App::Role"

[[issuer]]
name = "machines"
issuer = "https://machines.test"
algorithms = ["RS256"]
keys = [{ pem = "machines.pem", kid = "machines" }]
[issuer.principal]
type = "App::Service"
id_claim = "client_id"
[issuer.principal.attributes]
scopes = "scope"

# No mapping of its own: the top-level [principal] (`App::User` named by `sub`) applies.
[[issuer]]
name = "legacy"
issuer = "https://legacy.test"
algorithms = ["EdDSA"]
keys = [{ pem = "legacy.pem", kid = "legacy" }]
"#;

/// Writes the bundle and the config into a temporary folder, with `policies` as the
/// policy file.
fn bundle_config(issuers: &str, policies: &str) -> (tempfile::TempDir, cedargate::config::Config) {
    let (dir, config) = common::write_config(
        issuers,
        &[
            ("schema.cedarschema", SCHEMA.as_bytes()),
            ("users.pem", &common::test_key("ec-p256-public.pem")),
            ("machines.pem", &common::test_key("rsa-public.pem")),
            ("legacy.pem", &common::test_key("ed25519-public.pem")),
        ],
    );
    write(&dir.path().join("policies/app.cedar"), policies);
    write(&dir.path().join("entities/none.json"), "[]");
    (dir, config)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Signs `claims` for one of the three issuers, adding `iss` and a future `exp`.
fn token(issuer: &str, mut claims: Value) -> String {
    let (algorithm, key) = match issuer {
        "users" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&common::test_key("ec-p256-private.pem")).unwrap(),
        ),
        "machines" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&common::test_key("rsa-private.pem")).unwrap(),
        ),
        "legacy" => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&common::test_key("ed25519-private.pem")).unwrap(),
        ),
        other => unreachable!("no test issuer `{other}`"),
    };
    claims["iss"] = json!(format!("https://{issuer}.test"));
    claims["exp"] = json!(jiff::Timestamp::now().as_second() + 3600);
    let header = Header {
        kid: Some(issuer.to_owned()),
        ..Header::new(algorithm)
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn call() -> Value {
    json!({ "action": "call", "resource": { "type": "App::Thing", "id": "t1" } })
}

/// Returns the determining policies of an answer, sorted.
fn policies(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("no policies in {body}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn user_issuer_maps_to_user() {
    let (_dir, config) = bundle_config(ISSUERS, POLICIES);
    let server = TestServer::start(config).await;

    let user = token("users", json!({ "sub": "bob", "groups": ["staff"] }));
    let (status, _, body) = server.authorize(Some(&user), &call()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(policies(&body), ["staff-users"]);

    server.stop().await;
}

#[tokio::test]
async fn machine_issuer_maps_to_service() {
    let (_dir, config) = bundle_config(ISSUERS, POLICIES);
    let server = TestServer::start(config).await;

    // A client-credentials token: no user, the client in `client_id`.
    let machine = token(
        "machines",
        json!({ "sub": "alice", "client_id": "billing", "scope": "sync report", "groups": ["staff"] }),
    );
    let (status, _, body) = server.authorize(Some(&machine), &call()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    // Its `sub` and `groups` make no user of it: only the service policies apply.
    assert_eq!(policies(&body), ["billing-service", "sync-services"]);

    server.stop().await;
}

#[tokio::test]
async fn machine_issuer_needs_its_id_claim() {
    let (_dir, config) = bundle_config(ISSUERS, POLICIES);
    let server = TestServer::start(config).await;

    let machine = token("machines", json!({ "sub": "alice", "scope": "sync" }));
    let (status, _, body) = server.authorize(Some(&machine), &call()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_claims", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`client_id`"), "{message}");

    server.stop().await;
}

#[tokio::test]
async fn issuer_without_mapping_uses_default() {
    let (_dir, config) = bundle_config(ISSUERS, POLICIES);
    let server = TestServer::start(config).await;

    // The top-level mapping has no parents, so `groups` gives no role.
    let legacy = token("legacy", json!({ "sub": "alice", "groups": ["staff"] }));
    let (status, _, body) = server.authorize(Some(&legacy), &call()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(policies(&body), ["alice"]);

    let other = token("legacy", json!({ "sub": "carol", "groups": ["staff"] }));
    let (status, _, body) = server.authorize(Some(&other), &call()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "deny", "{body}");

    server.stop().await;
}

#[tokio::test]
async fn issuer_mapping_checked_against_schema() {
    let issuers = ISSUERS.replace("scopes = \"scope\"", "scopes = \"scope\"\nteam = \"team\"");
    let (_dir, config) = bundle_config(&issuers, POLICIES);

    let Err(cedargate::server::StartError::Bundle(diagnostics)) =
        cedargate::server::prepare(config)
    else {
        panic!("a mapping to an undeclared attribute must stop the start");
    };
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages.contains(
            &"issuer[1] (`machines`).principal.attributes.team: `App::Service` has no attribute `team` in the schema"
        ),
        "{messages:?}"
    );
}

#[tokio::test]
async fn issuer_mapping_type_must_be_declared() {
    let issuers = ISSUERS.replace("type = \"App::Service\"", "type = \"App::Robot\"");
    let (_dir, config) = bundle_config(&issuers, POLICIES);

    let Err(cedargate::server::StartError::Bundle(diagnostics)) =
        cedargate::server::prepare(config)
    else {
        panic!("a mapping to an undeclared entity type must stop the start");
    };
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages.contains(
            &"issuer[1] (`machines`).principal.type: entity type `App::Robot` is not declared in the schema"
        ),
        "{messages:?}"
    );
}
