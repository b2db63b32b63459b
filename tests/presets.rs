//! The identity-provider presets in `examples/idp/` over HTTP. Each test serves a copy of
//! one preset with the test RSA key as its issuers' JWKS file. It signs a token with a provider's
//! documented claim set from the corpus (`jwt/idp-claims/`), and checks the Cedar
//! principal that the server builds from it.
//!
//! The principal is checked with probe policies added to the copy: each probe is a
//! `permit` whose condition states one fact about the principal, such as `principal in
//! App::RealmRole::"editor"`. Cedar lists every satisfied `permit` among the determining
//! policies of an allow, so the facts that hold are exactly the probes in the answer.
//! Expected values are read from the corpus claims, never from the server.

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
use serde_json::{Map, Value, json};
use tempfile::TempDir;

/// One fact about the principal, and whether the token's claims make it true.
struct Probe {
    id: String,
    condition: String,
    holds: bool,
}

impl Probe {
    fn holds(id: &str, condition: impl Into<String>) -> Self {
        Self {
            id: format!("probe: {id}"),
            condition: condition.into(),
            holds: true,
        }
    }

    fn fails(id: &str, condition: impl Into<String>) -> Self {
        Self {
            holds: false,
            ..Self::holds(id, condition)
        }
    }
}

/// Reads the claims of a corpus claim set, or `None` when the corpus is absent.
fn corpus_claims(file: &str) -> Option<Map<String, Value>> {
    let path = common::corpus_dir()?.join("jwt/idp-claims").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()));
    let document: Value = serde_json::from_str(&text).unwrap();
    let claims = document
        .get("claims")
        .or_else(|| document.get("claims_fragment"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("`{}` has no claims object", path.display()));
    Some(claims.clone())
}

/// Returns the claim at a path of object keys.
fn claim<'a>(claims: &'a Map<String, Value>, path: &[&str]) -> &'a Value {
    let (first, rest) = path.split_first().unwrap();
    let mut value = &claims[*first];
    for key in rest {
        value = &value[*key];
    }
    assert!(
        !value.is_null(),
        "the corpus claims have no `{}`",
        path.join(".")
    );
    value
}

fn claim_str<'a>(claims: &'a Map<String, Value>, path: &[&str]) -> &'a str {
    claim(claims, path).as_str().unwrap()
}

/// Returns the strings of an array claim, or the words of a space-separated string claim.
fn claim_strings(claims: &Map<String, Value>, path: &[&str]) -> Vec<String> {
    match claim(claims, path) {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap().to_owned())
            .collect(),
        Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        other => panic!(
            "claim `{}` is neither a string nor an array: {other}",
            path.join(".")
        ),
    }
}

/// Writes `text` as a Cedar string literal.
fn cedar_string(text: &str) -> String {
    assert!(
        text.chars().all(|c| (' '..='~').contains(&c)),
        "the test writes only printable ASCII into policies: {text:?}"
    );
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes a condition that the set attribute `attribute` of the principal equals `items`.
/// Strict validation rejects an empty set literal, so an empty set is `isEmpty()`.
fn set_is(attribute: &str, items: &[String]) -> String {
    if items.is_empty() {
        return format!("principal.{attribute}.isEmpty()");
    }
    let items: Vec<String> = items.iter().map(|item| cedar_string(item)).collect();
    format!("principal.{attribute} == [{}]", items.join(", "))
}

/// Serves a copy of `examples/idp/<preset>` with `probes` as an extra policy file. `edit`
/// changes the config text before it is read.
async fn serve_preset(
    preset: &str,
    probes: &[Probe],
    edit: impl FnOnce(String) -> String,
) -> (TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(
        &common::repo_dir().join("examples/idp").join(preset),
        dir.path(),
    );
    // The provider's JWKS: the test RSA key, `kid` `rsa`, from `tests/keys/jwks.json`.
    let mut jwks: Value = serde_json::from_slice(&common::test_key("jwks.json")).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["kid"] == "rsa");
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    write_probes(&dir.path().join("policies/probes.cedar"), probes);

    // The presets fetch the provider's keys; here every issuer reads the local file.
    let path = dir.path().join("cedargate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut replaced = 0;
    let lines: Vec<&str> = text
        .lines()
        .map(|line| {
            if line.starts_with("keys = ") {
                replaced += 1;
                "keys = [{ jwks = \"jwks.json\" }]"
            } else {
                line
            }
        })
        .collect();
    assert!(replaced > 0, "preset `{preset}` has no `keys = ` line");
    let text = edit(lines.join("\n"));
    std::fs::write(&path, &text).unwrap();
    let mut config = cedargate::config::Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("preset `{preset}`: invalid config: {err}"));
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.bundle.reload.watch = false;
    (dir, TestServer::start(config).await)
}

fn write_probes(path: &Path, probes: &[Probe]) {
    let mut text = String::new();
    for probe in probes {
        text.push_str(&format!(
            "@id({})\npermit (principal is App::User, action, resource)\nwhen {{ {} }};\n\n",
            cedar_string(&probe.id),
            probe.condition
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Signs `claims` with the test RSA key, valid for an hour from now.
fn sign(claims: &Map<String, Value>) -> String {
    let mut claims = claims.clone();
    claims.insert(
        "exp".into(),
        json!(jiff::Timestamp::now().as_second() + 3600),
    );
    let key = EncodingKey::from_rsa_pem(&common::test_key("rsa-private.pem")).unwrap();
    let header = Header {
        kid: Some("rsa".into()),
        ..Header::new(Algorithm::RS256)
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Sends one request and returns the status and the body.
async fn decide(
    server: &TestServer,
    token: &str,
    action: &str,
    resource: (&str, &str),
) -> (u16, Value) {
    let body = json!({
        "action": action,
        "resource": { "type": resource.0, "id": resource.1 },
    });
    let (status, _, answer) = server.authorize(Some(token), &body).await;
    (status.as_u16(), answer)
}

fn determining(answer: &Value) -> Vec<&str> {
    answer["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("no policies in {answer}"))
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect()
}

/// Checks that exactly the probes that should hold are among the determining policies.
fn assert_probes(answer: &Value, probes: &[Probe]) {
    assert_eq!(answer["decision"], "allow", "{answer}");
    let found = determining(answer);
    for probe in probes {
        assert_eq!(
            found.contains(&probe.id.as_str()),
            probe.holds,
            "`{}` should {}: {}\nanswer: {answer}",
            probe.id,
            if probe.holds { "hold" } else { "not hold" },
            probe.condition
        );
    }
}

#[test]
fn presets_load_as_shipped() {
    for preset in ["keycloak", "auth0", "cognito", "entra", "okta"] {
        let path = common::repo_dir()
            .join("examples/idp")
            .join(preset)
            .join("cedargate.toml");
        if let Err(err) = cedargate::config::Config::load(&path) {
            panic!("preset `{preset}`: {err}");
        }
    }
}

// Keycloak

fn keycloak_probes(claims: &Map<String, Value>) -> Vec<Probe> {
    let realm_roles = claim_strings(claims, &["realm_access", "roles"]);
    let api_roles = claim_strings(claims, &["resource_access", "demo-api", "roles"]);
    let account_roles = claim_strings(claims, &["resource_access", "account", "roles"]);
    let mut probes = vec![
        Probe::holds(
            "id is sub",
            format!(
                "principal == App::User::{}",
                cedar_string(claim_str(claims, &["sub"]))
            ),
        ),
        Probe::holds(
            "username",
            format!(
                "principal has username && principal.username == {}",
                cedar_string(claim_str(claims, &["preferred_username"]))
            ),
        ),
        Probe::holds(
            "email",
            format!(
                "principal has email && principal.email == {}",
                cedar_string(claim_str(claims, &["email"]))
            ),
        ),
        Probe::holds(
            "client is azp",
            format!(
                "principal.client_id == {}",
                cedar_string(claim_str(claims, &["azp"]))
            ),
        ),
        Probe::holds(
            "scopes",
            set_is("scopes", &claim_strings(claims, &["scope"])),
        ),
        Probe::holds("realm roles", set_is("realm_roles", &realm_roles)),
        Probe::holds("client roles", set_is("client_roles", &api_roles)),
    ];
    for role in &realm_roles {
        probes.push(Probe::holds(
            &format!("in realm role {role}"),
            format!("principal in App::RealmRole::{}", cedar_string(role)),
        ));
        // A realm role is no client role.
        probes.push(Probe::fails(
            &format!("in client role {role}"),
            format!("principal in App::ClientRole::{}", cedar_string(role)),
        ));
    }
    for role in &api_roles {
        probes.push(Probe::holds(
            &format!("in client role {role}"),
            format!("principal in App::ClientRole::{}", cedar_string(role)),
        ));
    }
    // Roles of other clients (here Keycloak's `account` client) are not this API's.
    for role in &account_roles {
        probes.push(Probe::fails(
            &format!("in account role {role}"),
            format!(
                "principal in App::ClientRole::{} || principal.client_roles.contains({})",
                cedar_string(role),
                cedar_string(role)
            ),
        ));
    }
    probes
}

#[tokio::test]
async fn keycloak_access_token_mapped() {
    let Some(claims) = corpus_claims("keycloak-access-token.composite.json") else {
        return;
    };
    let probes = keycloak_probes(&claims);
    let (_dir, server) = serve_preset("keycloak", &probes, |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "read", ("App::Document", "d-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"read-with-client-role"),
        "{answer}"
    );

    let (status, answer) = decide(&server, &token, "write", ("App::Document", "d-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        determining(&answer).contains(&"write-as-editor"),
        "{answer}"
    );

    server.stop().await;
}

#[tokio::test]
async fn keycloak_preset_policies_need_roles() {
    let Some(mut claims) = corpus_claims("keycloak-access-token.composite.json") else {
        return;
    };
    // The same user without the realm role `editor`.
    let roles = claims["realm_access"]["roles"].as_array_mut().unwrap();
    roles.retain(|role| role != "editor");
    let (_dir, server) = serve_preset("keycloak", &[], |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "read", ("App::Document", "d-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
    let (status, answer) = decide(&server, &token, "write", ("App::Document", "d-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");

    server.stop().await;
}

// Auth0

#[tokio::test]
async fn auth0_rbac_token_mapped() {
    let Some(claims) = corpus_claims("auth0-rbac-and-namespaced-roles.composite.json") else {
        return;
    };
    let roles = claim_strings(&claims, &["https://myDomain.com/roles"]);
    let mut probes = vec![
        Probe::holds(
            "id is sub",
            format!(
                "principal == App::User::{}",
                cedar_string(claim_str(&claims, &["sub"]))
            ),
        ),
        Probe::holds(
            "permissions",
            set_is("permissions", &claim_strings(&claims, &["permissions"])),
        ),
        Probe::holds("roles", set_is("roles", &roles)),
        Probe::holds(
            "scopes",
            set_is("scopes", &claim_strings(&claims, &["scope"])),
        ),
        Probe::holds(
            "client is azp",
            format!(
                "principal has client_id && principal.client_id == {}",
                cedar_string(claim_str(&claims, &["azp"]))
            ),
        ),
        Probe::holds(
            "grant type",
            format!(
                "principal has grant_type && principal.grant_type == {}",
                cedar_string(claim_str(&claims, &["gty"]))
            ),
        ),
    ];
    for role in &roles {
        probes.push(Probe::holds(
            &format!("in role {role}"),
            format!("principal in App::Role::{}", cedar_string(role)),
        ));
    }
    let (_dir, server) = serve_preset("auth0", &probes, |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "read", ("App::Record", "r-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"read-with-permission"),
        "{answer}"
    );

    // A machine-to-machine token (`gty` is `client-credentials`) is never allowed to write.
    let (status, answer) = decide(&server, &token, "write", ("App::Record", "r-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        determining(&answer),
        ["no-writes-by-applications"],
        "{answer}"
    );

    server.stop().await;
}

#[tokio::test]
async fn auth0_profiles_mapped() {
    for file in [
        "auth0-access-token-auth0-profile.json",
        "auth0-access-token-rfc9068-profile.json",
    ] {
        let Some(claims) = corpus_claims(file) else {
            return;
        };
        // The Auth0 profile names the client in `azp`, the RFC 9068 profile in `client_id`,
        // which this preset does not map.
        let client = match claims.get("azp").and_then(Value::as_str) {
            Some(azp) => Probe::holds(
                "client is azp",
                format!(
                    "principal has client_id && principal.client_id == {}",
                    cedar_string(azp)
                ),
            ),
            None => Probe::fails("client is mapped", "principal has client_id"),
        };
        let probes = vec![
            Probe::holds(
                "id is sub",
                format!(
                    "principal == App::User::{}",
                    cedar_string(claim_str(&claims, &["sub"]))
                ),
            ),
            Probe::holds(
                "scopes",
                set_is("scopes", &claim_strings(&claims, &["scope"])),
            ),
            // Without RBAC claims, both sets are empty.
            Probe::holds("no permissions", "principal.permissions.isEmpty()"),
            Probe::holds("no roles", "principal.roles.isEmpty()"),
            Probe::fails("grant type", "principal has grant_type"),
            client,
        ];
        let (_dir, server) = serve_preset("auth0", &probes, |text| text).await;
        let token = sign(&claims);

        let (status, answer) = decide(&server, &token, "read", ("App::Record", "r-1")).await;
        assert_eq!(status, 200, "{file}: {answer}");
        assert_probes(&answer, &probes);
        assert!(
            !determining(&answer).contains(&"read-with-permission"),
            "{answer}"
        );

        server.stop().await;
    }
}

// Amazon Cognito

#[tokio::test]
async fn cognito_access_token_mapped() {
    let Some(claims) = corpus_claims("cognito-access-token.json") else {
        return;
    };
    let groups = claim_strings(&claims, &["cognito:groups"]);
    let mut probes = vec![
        Probe::holds(
            "id is sub",
            format!(
                "principal == App::User::{}",
                cedar_string(claim_str(&claims, &["sub"]))
            ),
        ),
        Probe::holds(
            "username",
            format!(
                "principal has username && principal.username == {}",
                cedar_string(claim_str(&claims, &["username"]))
            ),
        ),
        Probe::holds("groups", set_is("groups", &groups)),
        Probe::holds(
            "scopes",
            set_is("scopes", &claim_strings(&claims, &["scope"])),
        ),
        Probe::holds(
            "client id",
            format!(
                "principal has client_id && principal.client_id == {}",
                cedar_string(claim_str(&claims, &["client_id"]))
            ),
        ),
        Probe::holds(
            "token use",
            format!(
                "principal.token_use == {}",
                cedar_string(claim_str(&claims, &["token_use"]))
            ),
        ),
    ];
    for group in &groups {
        probes.push(Probe::holds(
            &format!("in group {group}"),
            format!("principal in App::Group::{}", cedar_string(group)),
        ));
    }
    let (_dir, server) = serve_preset("cognito", &probes, |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "write", ("App::Order", "o-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"admins-read-and-write"),
        "{answer}"
    );

    server.stop().await;
}

#[tokio::test]
async fn cognito_rejects_other_tokens() {
    let (Some(access), Some(mut id_token)) = (
        corpus_claims("cognito-access-token.json"),
        corpus_claims("cognito-id-token.json"),
    ) else {
        return;
    };
    // The documented ID token comes from another pool; here it is one of the configured pool.
    id_token.insert("iss".into(), access["iss"].clone());
    let mut other_client = access.clone();
    other_client.insert("client_id".into(), json!("another-app-client"));
    let (_dir, server) = serve_preset("cognito", &[], |text| text).await;

    for (case, claims) in [("ID token", &id_token), ("other client", &other_client)] {
        let (status, answer) = decide(&server, &sign(claims), "read", ("App::Order", "o-1")).await;
        assert_eq!(status, 200, "{case}: {answer}");
        assert_eq!(answer["decision"], "deny", "{case}: {answer}");
        assert_eq!(
            determining(&answer),
            ["only-access-tokens-of-this-client"],
            "{case}: {answer}"
        );
    }

    server.stop().await;
}

// Microsoft Entra ID

fn entra_probes(claims: &Map<String, Value>) -> Vec<Probe> {
    let strings = |name: &str| {
        if claims.contains_key(name) {
            claim_strings(claims, &[name])
        } else {
            Vec::new()
        }
    };
    let (roles, groups) = (strings("roles"), strings("groups"));
    let username = match claims.get("preferred_username").and_then(Value::as_str) {
        Some(name) => Probe::holds(
            "username",
            format!(
                "principal has username && principal.username == {}",
                cedar_string(name)
            ),
        ),
        None => Probe::fails("username", "principal has username"),
    };
    let mut probes = vec![
        // `oid` names the user for every app of the tenant; `sub` is per app.
        Probe::holds(
            "id is oid",
            format!(
                "principal == App::User::{}",
                cedar_string(claim_str(claims, &["oid"]))
            ),
        ),
        Probe::holds(
            "tenant",
            format!(
                "principal.tenant == {}",
                cedar_string(claim_str(claims, &["tid"]))
            ),
        ),
        Probe::holds(
            "version",
            format!(
                "principal.version == {}",
                cedar_string(claim_str(claims, &["ver"]))
            ),
        ),
        Probe::holds("scopes", set_is("scopes", &claim_strings(claims, &["scp"]))),
        Probe::holds("roles", set_is("roles", &roles)),
        Probe::holds("groups", set_is("groups", &groups)),
        Probe::fails("groups overage", "principal has groups_overage"),
        username,
    ];
    for role in &roles {
        probes.push(Probe::holds(
            &format!("in app role {role}"),
            format!("principal in App::AppRole::{}", cedar_string(role)),
        ));
    }
    for group in &groups {
        probes.push(Probe::holds(
            &format!("in group {group}"),
            format!("principal in App::Group::{}", cedar_string(group)),
        ));
    }
    probes
}

#[tokio::test]
async fn entra_roles_and_groups_mapped() {
    let Some(claims) = corpus_claims("entra-roles-groups.composite.json") else {
        return;
    };
    let probes = entra_probes(&claims);
    let (_dir, server) = serve_preset("entra", &probes, |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "read", ("App::Task", "t-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"read-with-app-role"),
        "{answer}"
    );
    let (status, answer) = decide(&server, &token, "write", ("App::Task", "t-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        determining(&answer).contains(&"write-with-app-role"),
        "{answer}"
    );

    server.stop().await;
}

#[tokio::test]
async fn entra_v1_and_v2_tokens_mapped() {
    for file in ["entra-access-token-v2.json", "entra-access-token-v1.json"] {
        let Some(claims) = corpus_claims(file) else {
            return;
        };
        let probes = entra_probes(&claims);
        let (_dir, server) = serve_preset("entra", &probes, |text| text).await;

        let (status, answer) = decide(&server, &sign(&claims), "read", ("App::Task", "t-1")).await;
        assert_eq!(status, 200, "{file}: {answer}");
        assert_probes(&answer, &probes);
        // Neither sample has app roles, so the preset's own policies do not allow.
        assert!(
            !determining(&answer).contains(&"read-with-app-role"),
            "{answer}"
        );

        server.stop().await;
    }
}

#[tokio::test]
async fn entra_group_overage_denied() {
    let (Some(mut claims), Some(overage)) = (
        corpus_claims("entra-roles-groups.composite.json"),
        corpus_claims("entra-groups-overage.json"),
    ) else {
        return;
    };
    // Overage replaces the `groups` claim with a pointer to where the groups are listed.
    claims.remove("groups");
    claims.extend(overage);
    let (_dir, server) = serve_preset("entra", &[], |text| text).await;

    let (status, answer) = decide(&server, &sign(&claims), "read", ("App::Task", "t-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(determining(&answer), ["deny-group-overage"], "{answer}");

    server.stop().await;
}

// Okta

#[tokio::test]
async fn okta_access_token_mapped() {
    let Some(claims) = corpus_claims("okta-access-token.json") else {
        return;
    };
    let probes = vec![
        Probe::holds(
            "id is sub",
            format!(
                "principal == App::User::{}",
                cedar_string(claim_str(&claims, &["sub"]))
            ),
        ),
        Probe::holds(
            "scopes",
            set_is("scopes", &claim_strings(&claims, &["scp"])),
        ),
        Probe::holds(
            "client id is cid",
            format!(
                "principal.client_id == {}",
                cedar_string(claim_str(&claims, &["cid"]))
            ),
        ),
        Probe::holds(
            "okta user id is uid",
            format!(
                "principal has okta_user_id && principal.okta_user_id == {}",
                cedar_string(claim_str(&claims, &["uid"]))
            ),
        ),
        Probe::holds("no groups", "principal.groups.isEmpty()"),
    ];
    let (_dir, server) = serve_preset("okta", &probes, |text| text).await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "read", ("App::Booking", "b-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"read-with-scope"),
        "{answer}"
    );

    server.stop().await;
}

#[tokio::test]
async fn okta_custom_groups_claim_mapped() {
    let Some(mut claims) = corpus_claims("okta-access-token-custom-groups-claim.json") else {
        return;
    };
    // The documented token was minted for the Okta domain as audience; here it is minted
    // for the audience the preset accepts.
    claims.insert("aud".into(), json!("https://api.example.com"));
    let groups = claim_strings(&claims, &["GroupsClaim"]);
    let mut probes = vec![
        Probe::holds("groups", set_is("groups", &groups)),
        Probe::holds(
            "scopes",
            set_is("scopes", &claim_strings(&claims, &["scp"])),
        ),
    ];
    for group in &groups {
        probes.push(Probe::holds(
            &format!("in group {group}"),
            format!("principal in App::Group::{}", cedar_string(group)),
        ));
    }
    // The admin named the claim `GroupsClaim`, so the preset's claim name changes with it.
    let (_dir, server) = serve_preset("okta", &probes, |text| {
        text.replace("groups = \"groups\"", "groups = \"GroupsClaim\"")
            .replace("claim = \"groups\"", "claim = \"GroupsClaim\"")
    })
    .await;
    let token = sign(&claims);

    let (status, answer) = decide(&server, &token, "write", ("App::Booking", "b-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_probes(&answer, &probes);
    assert!(
        determining(&answer).contains(&"write-as-sales-agent"),
        "{answer}"
    );

    server.stop().await;
}
