//! Integration tests of `POST /authorize` and the operational routes over real HTTP: the
//! server runs on a loopback port with a temporary copy of the default bundle, and every
//! token is signed with the keys in `tests/keys`.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cedargate::config::Config;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tempfile::TempDir;

use common::{TestServer, after_hours, business_hours, mint};

const READ_POLICY: &str = "read-own-department-in-business-hours";
const EDITOR_POLICY: &str = "update-by-editor-role";
const EXPORT_POLICY: &str = "export-with-scope";
const LEGAL_HOLD_POLICY: &str = "forbid-export-under-legal-hold";
const LEGAL_HOLD_REASON: &str = "records under legal hold cannot be exported";

// Helpers.

/// Starts a server on a fresh copy of the default bundle with the clock fixed at `time`.
async fn start_at(server_toml: &str, time: jiff::Timestamp) -> (TempDir, TestServer) {
    let (dir, config) = common::default_bundle_copy(server_toml);
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(time));
    (dir, server)
}

/// Applies `edit` to the `cedargate.toml` of a bundle copy, writes it back and parses it.
fn edit_config(dir: &TempDir, edit: impl FnOnce(String) -> String) -> Config {
    let path = dir.path().join("cedargate.toml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, &text).unwrap();
    Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("edited test config is invalid: {err}\n{text}"))
}

/// Writes `contents` to `name` inside a bundle copy, creating folders as needed.
fn write_file(dir: &TempDir, name: &str, contents: &str) {
    let path = dir.path().join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
}

/// Mints a valid token of the test issuer for `sub` with the extra claims.
fn token(sub: &str, extra: Value) -> String {
    mint(&common::user_claims(sub, extra))
}

/// Mints a valid token of a sales user without roles or scopes.
fn sales_token() -> String {
    token("alice", json!({ "department": "sales" }))
}

fn request(action: &str, customer: &str) -> Value {
    json!({ "action": action, "resource": { "type": "Crm::Customer", "id": customer } })
}

/// Sends a prepared request and returns the status, the headers and the JSON body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("response body is not JSON ({err}): {text}"));
    (status, headers, body)
}

/// Sends `POST /authorize` with extra request headers.
async fn authorize_with(
    server: &TestServer,
    token: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = server
        .client
        .post(server.url("/authorize"))
        .bearer_auth(token)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// Sends `POST /authorize` with a raw body.
async fn authorize_raw(server: &TestServer, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = server
        .client
        .post(server.url("/authorize"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    let (status, _, body) = send(request).await;
    (status, body)
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(server.client.get(server.url(path))).await;
    (status, body)
}

/// Asserts a 200 allow decided by exactly `policies`.
fn assert_allowed(status: StatusCode, answer: &Value, policies: &[&str]) {
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["policies"], json!(policies), "{answer}");
    assert!(answer.get("deny").is_none(), "{answer}");
}

/// Asserts a 200 default deny: no permit applied and no policy is named.
fn assert_no_permit(status: StatusCode, answer: &Value) {
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "no_permit", "{answer}");
    assert_eq!(answer["policies"], json!([]), "{answer}");
}

/// Asserts a 400 that names `field`.
fn assert_bad_request(status: StatusCode, answer: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "request_invalid", "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
    assert_eq!(answer["error"]["field"], field, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(field), "{answer}");
}

/// Asserts a 401 for a rejected token with reason code `code`.
fn assert_token_rejected(status: StatusCode, headers: &HeaderMap, answer: &Value, code: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}: {answer}");
    assert_eq!(answer["decision"], "deny", "{code}: {answer}");
    assert_eq!(answer["deny"], "token_invalid", "{code}: {answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    let challenge = headers[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{code}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{code}: {challenge}"
    );
}

/// Joins a header, claims and signature into a compact JWS without signing anything.
fn assemble_token(header: &Value, claims: &Value, signature: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.{signature}")
}

/// Shifts a timestamp by whole seconds.
fn seconds_after(time: jiff::Timestamp, seconds: i64) -> i64 {
    time.as_second() + seconds
}

fn berlin(time: &str) -> jiff::Timestamp {
    time.parse().unwrap()
}

// Read conditions: region, business hours and department.

#[tokio::test]
async fn read_region_outside_allowed() {
    let (_dir, server) = start_at("trusted_proxies = [\"127.0.0.1\"]", business_hours()).await;
    let body = request("read", "c-1001");

    // The forwarded address decides the region, so an eu-central hop is the allowed baseline.
    let (status, _, answer) = authorize_with(
        &server,
        &sales_token(),
        &body,
        &[("x-forwarded-for", "10.10.0.7")],
    )
    .await;
    assert_allowed(status, &answer, &[READ_POLICY]);

    let (status, _, answer) = authorize_with(
        &server,
        &sales_token(),
        &body,
        &[("x-forwarded-for", "10.30.0.7")],
    )
    .await;
    assert_no_permit(status, &answer);

    // An address that no network lists gets the default region `unknown`.
    let (status, _, answer) = authorize_with(
        &server,
        &sales_token(),
        &body,
        &[("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_no_permit(status, &answer);
    server.stop().await;
}

#[tokio::test]
async fn read_outside_business_hours() {
    let (_dir, server) = start_at("", business_hours()).await;
    let body = request("read", "c-1001");
    let (status, _, answer) = server.authorize(Some(&sales_token()), &body).await;
    assert_allowed(status, &answer, &[READ_POLICY]);

    // Business hours are Monday to Friday, 08:00 to 17:59 in Berlin (CET, UTC+1, in early March).
    let cases = [
        ("2026-03-02T20:00:00+01:00", false, "Monday evening"),
        ("2026-03-02T07:59:00+01:00", false, "Monday before 08:00"),
        ("2026-03-02T08:00:00+01:00", true, "Monday at 08:00"),
        ("2026-03-02T17:59:00+01:00", true, "Monday at 17:59"),
        ("2026-03-02T18:00:00+01:00", false, "Monday at 18:00"),
        ("2026-03-06T10:00:00+01:00", true, "Friday morning"),
        ("2026-03-07T10:00:00+01:00", false, "Saturday morning"),
        ("2026-03-08T10:00:00+01:00", false, "Sunday morning"),
    ];
    for (time, allowed, label) in cases {
        server.pdp.set_fixed_time(Some(berlin(time)));
        let (status, _, answer) = server.authorize(Some(&sales_token()), &body).await;
        assert_eq!(status, StatusCode::OK, "{label}: {answer}");
        if allowed {
            assert_eq!(answer["decision"], "allow", "{label}: {answer}");
            assert_eq!(
                answer["policies"],
                json!([READ_POLICY]),
                "{label}: {answer}"
            );
        } else {
            assert_eq!(answer["decision"], "deny", "{label}: {answer}");
            assert_eq!(answer["deny"], "no_permit", "{label}: {answer}");
            assert_eq!(answer["policies"], json!([]), "{label}: {answer}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn read_other_department() {
    let (_dir, server) = start_at("", business_hours()).await;

    // c-1002 belongs to support, the caller to sales.
    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", "c-1002"))
        .await;
    assert_no_permit(status, &answer);

    let support = token("bob", json!({ "department": "support" }));
    let (status, _, answer) = server
        .authorize(Some(&support), &request("read", "c-1002"))
        .await;
    assert_allowed(status, &answer, &[READ_POLICY]);
    server.stop().await;
}

// Update by role and export under legal hold.

#[tokio::test]
async fn update_needs_editor_role() {
    let (_dir, server) = start_at("", business_hours()).await;
    let body = request("update", "c-1001");

    let editor = token(
        "alice",
        json!({ "department": "sales", "groups": ["crm-editor"] }),
    );
    let (status, _, answer) = server.authorize(Some(&editor), &body).await;
    assert_allowed(status, &answer, &[EDITOR_POLICY]);

    // The policy has no time condition, so editors may update after hours too.
    server.pdp.set_fixed_time(Some(after_hours()));
    let (status, _, answer) = server.authorize(Some(&editor), &body).await;
    assert_allowed(status, &answer, &[EDITOR_POLICY]);
    server.pdp.set_fixed_time(Some(business_hours()));

    let (status, _, answer) = server.authorize(Some(&sales_token()), &body).await;
    assert_no_permit(status, &answer);

    let other_role = token(
        "alice",
        json!({ "department": "sales", "groups": ["crm-viewer"] }),
    );
    let (status, _, answer) = server.authorize(Some(&other_role), &body).await;
    assert_no_permit(status, &answer);

    let support_editor = token(
        "bob",
        json!({ "department": "support", "groups": ["crm-editor"] }),
    );
    let (status, _, answer) = server.authorize(Some(&support_editor), &body).await;
    assert_no_permit(status, &answer);
    server.stop().await;
}

#[tokio::test]
async fn forbid_overrides_permit() {
    let (_dir, server) = start_at("", business_hours()).await;
    let exporter = token(
        "alice",
        json!({ "department": "sales", "scope": "customers:read customers:export" }),
    );

    // c-2001 is under legal hold. The export permit applies too, but the forbid wins.
    let (status, _, answer) = server
        .authorize(Some(&exporter), &request("export", "c-2001"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "forbid", "{answer}");
    assert_eq!(answer["policies"], json!([LEGAL_HOLD_POLICY]), "{answer}");
    let reasons = answer["reasons"].as_array().unwrap();
    assert!(reasons.contains(&json!(LEGAL_HOLD_REASON)), "{answer}");

    let (status, _, answer) = server
        .authorize(Some(&exporter), &request("export", "c-1001"))
        .await;
    assert_allowed(status, &answer, &[EXPORT_POLICY]);

    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("export", "c-1001"))
        .await;
    assert_no_permit(status, &answer);
    server.stop().await;
}

// Token failures.

#[tokio::test]
async fn token_rejections_answer_401() {
    let time = business_hours();
    let (_dir, server) = start_at("", time).await;
    let body = request("read", "c-1001");
    let claims = |overrides: Value| {
        let mut claims = common::user_claims("alice", json!({ "department": "sales" }));
        for (key, value) in overrides.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    let sign_with_kid = |claims: &Value, kid: &str| {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&common::test_key("ec-p256-private.pem"))
            .unwrap();
        let header = jsonwebtoken::Header {
            kid: Some(kid.into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };

    // Times are relative to the server's fixed clock, beyond the default leeway of 30 s.
    let expired = mint(&claims(json!({ "exp": seconds_after(time, -120) })));
    let not_yet_valid = mint(&claims(json!({ "nbf": seconds_after(time, 600) })));
    let wrong_audience = mint(&claims(json!({ "aud": "billing-api" })));
    let mut no_audience_claims = claims(json!({}));
    no_audience_claims.as_object_mut().unwrap().remove("aud");
    let no_audience = mint(&no_audience_claims);
    let wrong_issuer = mint(&claims(json!({ "iss": "https://attacker.test" })));
    let unknown_kid = sign_with_kid(&claims(json!({})), "rotated-away");

    // A valid signature over other claims: swap the payload for one naming another user.
    let genuine = mint(&claims(json!({})));
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims(json!({ "sub": "admin" })).to_string());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);

    let cases = [
        (expired, "expired"),
        (not_yet_valid, "not_yet_valid"),
        (wrong_audience, "bad_audience"),
        (no_audience, "bad_audience"),
        (wrong_issuer, "bad_issuer"),
        (unknown_kid, "unknown_key"),
        (tampered, "bad_signature"),
        ("garbage".to_owned(), "malformed"),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (token, code) in cases {
        let (status, headers, answer) = authorize_with(&server, &token, &body, &[]).await;
        assert_token_rejected(status, &headers, &answer, code);
    }
    server.stop().await;
}

#[tokio::test]
async fn disallowed_algorithms_rejected() {
    let (_dir, server) = start_at("", business_hours()).await;
    let body = request("read", "c-1001");
    let claims = common::user_claims("alice", json!({ "department": "sales" }));

    // Key confusion: an HS256 token whose HMAC secret is the issuer's public EC key, which
    // an attacker can read, so the signature is valid if that key is used as a secret.
    let public_pem = common::test_key("ec-p256-public.pem");
    let header = jsonwebtoken::Header {
        kid: Some("test-ec".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let (status, headers, answer) = authorize_with(&server, &confused, &body, &[]).await;
    assert_token_rejected(status, &headers, &answer, "disallowed_algorithm");

    // `alg: none` in any spelling, with and without a signature part.
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "test-ec" });
        for signature in ["", "c2lnbmF0dXJl"] {
            let unsigned = assemble_token(&header, &claims, signature);
            let (status, headers, answer) = authorize_with(&server, &unsigned, &body, &[]).await;
            assert_token_rejected(status, &headers, &answer, "disallowed_algorithm");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn key_confusion_with_hmac_allowed() {
    // Even an issuer that allows HS256 next to ES256 must not use its EC key as a secret.
    let (dir, _) = common::default_bundle_copy("");
    let config = edit_config(&dir, |text| {
        text.replace(
            "algorithms = [\"ES256\"]",
            "algorithms = [\"ES256\", \"HS256\"]",
        )
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(business_hours()));
    let body = request("read", "c-1001");
    let claims = common::user_claims("alice", json!({ "department": "sales" }));
    let public_pem = common::test_key("ec-p256-public.pem");
    let secret = jsonwebtoken::EncodingKey::from_secret(&public_pem);

    // With the EC key's `kid` the key does not fit HS256. Without a `kid` the issuer has
    // no HMAC key to try.
    let cases = [
        (Some("test-ec"), "disallowed_algorithm"),
        (None, "unknown_key"),
    ];
    for (kid, code) in cases {
        let header = jsonwebtoken::Header {
            kid: kid.map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let confused = jsonwebtoken::encode(&header, &claims, &secret).unwrap();
        let (status, headers, answer) = authorize_with(&server, &confused, &body, &[]).await;
        assert_token_rejected(status, &headers, &answer, code);
    }

    // The EC token of the same issuer still verifies.
    let (status, _, answer) = server.authorize(Some(&mint(&claims)), &body).await;
    assert_allowed(status, &answer, &[READ_POLICY]);
    server.stop().await;
}

#[tokio::test]
async fn missing_token_challenge() {
    let (_dir, server) = start_at("", business_hours()).await;
    let body = request("read", "c-1001");

    let (status, headers, answer) = server.authorize(None, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["error"]["code"], "missing_token", "{answer}");
    let challenge = headers[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");

    // Another scheme carries no bearer token either.
    let basic = server
        .client
        .post(server.url("/authorize"))
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .json(&body);
    let (status, headers, answer) = send(basic).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "missing_token", "{answer}");
    let challenge = headers[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(!challenge.contains("error="), "{challenge}");
    server.stop().await;
}

#[tokio::test]
async fn rs256_issuer_verifies() {
    let (dir, _) = common::default_bundle_copy("");
    std::fs::write(
        dir.path().join("rsa-issuer.pem"),
        common::test_key("rsa-public.pem"),
    )
    .unwrap();
    let rsa_issuer = r#"
[[issuer]]
name = "rsa"
issuer = "https://rsa-issuer.test"
audiences = ["customers-api"]
algorithms = ["RS256"]
keys = [{ pem = "rsa-issuer.pem", kid = "test-rsa" }]
"#;
    let config = edit_config(&dir, |text| {
        text.replacen("[principal]", &format!("{rsa_issuer}\n[principal]"), 1)
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(business_hours()));
    let body = request("read", "c-1001");

    let mut claims = common::user_claims("alice", json!({ "department": "sales" }));
    claims["iss"] = json!("https://rsa-issuer.test");
    let sign = |private_key: &str| {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&common::test_key(private_key)).unwrap();
        let header = jsonwebtoken::Header {
            kid: Some("test-rsa".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
        };
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };

    let (status, _, answer) = server
        .authorize(Some(&sign("rsa-private.pem")), &body)
        .await;
    assert_allowed(status, &answer, &[READ_POLICY]);

    let (status, headers, answer) =
        authorize_with(&server, &sign("rsa-other-private.pem"), &body, &[]).await;
    assert_token_rejected(status, &headers, &answer, "bad_signature");

    // Key confusion on the RS256 issuer: an HS256 token whose HMAC secret is the issuer's
    // own RSA public key PEM, with and without the RSA key's kid.
    let public_pem = common::test_key("rsa-public.pem");
    for kid in [Some("test-rsa"), None] {
        let header = jsonwebtoken::Header {
            kid: kid.map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        let (status, headers, answer) = authorize_with(&server, &forged, &body, &[]).await;
        assert_token_rejected(status, &headers, &answer, "disallowed_algorithm");
    }

    // The EC issuer next to it keeps working.
    let (status, _, answer) = server.authorize(Some(&sales_token()), &body).await;
    assert_allowed(status, &answer, &[READ_POLICY]);
    server.stop().await;
}

// Claim values stay literal entity ids.

#[tokio::test]
async fn claim_text_stays_literal() {
    let (dir, _) = common::default_bundle_copy("");
    write_file(
        &dir,
        "policies/admin.cedar",
        r#"// Test only: the user `admin`, and no one else, may update any record.
@id("update-by-admin")
permit (
  principal == Crm::User::"admin",
  action == Crm::Action::"update",
  resource
);
"#,
    );
    let config = Config::load(&dir.path().join("cedargate.toml")).unwrap();
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(business_hours()));

    // c-1002 belongs to support, so no other policy lets a sales user update it.
    let body = request("update", "c-1002");
    let as_user = |sub: &str| token(sub, json!({ "department": "sales" }));

    let (status, _, answer) = server.authorize(Some(&as_user("admin")), &body).await;
    assert_allowed(status, &answer, &["update-by-admin"]);

    let hostile_subjects = [
        r"\u{61}dmin",
        r"\u0061dmin",
        r#"alice" || true || ""#,
        r#"Crm::User::"admin""#,
        r#""admin""#,
        r#"admin\""#,
        "admin ",
        "Admin",
    ];
    for sub in hostile_subjects {
        let (status, _, answer) = server.authorize(Some(&as_user(sub)), &body).await;
        assert_eq!(status, StatusCode::OK, "sub {sub:?}: {answer}");
        assert_eq!(answer["decision"], "deny", "sub {sub:?}: {answer}");
        assert_eq!(answer["deny"], "no_permit", "sub {sub:?}: {answer}");
    }

    // The role test: only the exact group `crm-editor` is the editor role.
    let body = request("update", "c-1001");
    let with_groups =
        |groups: Value| token("alice", json!({ "department": "sales", "groups": groups }));
    let (status, _, answer) = server
        .authorize(Some(&with_groups(json!(["crm-editor"]))), &body)
        .await;
    assert_allowed(status, &answer, &[EDITOR_POLICY]);

    let hostile_groups = [
        r#"crm-editor\""#,
        r#"crm-editor""#,
        r#"Crm::Role::"crm-editor""#,
        r"crm\u{2d}editor",
        "crm-editor ",
    ];
    for group in hostile_groups {
        let (status, _, answer) = server
            .authorize(Some(&with_groups(json!([group]))), &body)
            .await;
        assert_eq!(status, StatusCode::OK, "group {group:?}: {answer}");
        assert_eq!(answer["decision"], "deny", "group {group:?}: {answer}");
        assert_eq!(answer["deny"], "no_permit", "group {group:?}: {answer}");
    }

    // The resource id in the request body is literal too.
    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", r"\u{63}-1001"))
        .await;
    assert_no_permit(status, &answer);
    server.stop().await;
}

// Server-filled context.

#[tokio::test]
async fn caller_context_cannot_override() {
    let (_dir, server) = start_at("", after_hours()).await;
    let token = sales_token();

    // After hours the read is denied. A caller claiming hour 10 from an eu-central address
    // would flip it if its keys replaced the server's.
    let (status, _, answer) = server
        .authorize(Some(&token), &request("read", "c-1001"))
        .await;
    assert_no_permit(status, &answer);

    // The caller's context sits under `context.caller`, whose schema type has only
    // `purpose`, so the other keys make the context invalid.
    let mut body = request("read", "c-1001");
    body["context"] = json!({ "region": "eu-central", "ip": "10.10.0.1", "hour": 10 });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_bad_request(status, &answer, "context");
    assert_ne!(answer["decision"], "allow", "{answer}");

    // A declared caller key is accepted and does not change the decision.
    body["context"] = json!({ "purpose": "support" });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_no_permit(status, &answer);
    server.pdp.set_fixed_time(Some(business_hours()));
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_allowed(status, &answer, &[READ_POLICY]);

    // Nor can the body name a principal: it is an unknown field.
    let mut body = request("update", "c-1001");
    body["principal"] = json!({ "type": "Crm::User", "id": "admin" });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_bad_request(status, &answer, "principal");
    server.stop().await;
}

/// A region table in which loopback is not an allowed region, so only a forwarded
/// eu-central address can make the read allowed.
const REGIONS_WITHOUT_LOOPBACK: &str = r#"
default = "unknown"

[[region]]
name = "eu-central"
networks = ["10.10.0.0/16"]

[[region]]
name = "lab"
networks = ["127.0.0.0/8", "::1/128"]
"#;

#[tokio::test]
async fn forwarded_for_needs_trusted_proxy() {
    let body = request("read", "c-1001");
    let cases = [
        ("", "x-forwarded-for", "forwarded"),
        (
            "forwarded_header = \"forwarded\"",
            "forwarded",
            "x-forwarded-for",
        ),
    ];

    for (header_setting, used, ignored) in cases {
        for trusted in [false, true] {
            let proxies = if trusted {
                "trusted_proxies = [\"127.0.0.1\"]"
            } else {
                ""
            };
            let (dir, _) = common::default_bundle_copy(&format!("{header_setting}\n{proxies}"));
            write_file(&dir, "data/regions.toml", REGIONS_WITHOUT_LOOPBACK);
            let config = Config::load(&dir.path().join("cedargate.toml")).unwrap();
            let server = TestServer::start(config).await;
            server.pdp.set_fixed_time(Some(business_hours()));
            let value = |header: &str| {
                if header == "forwarded" {
                    "for=10.10.0.1"
                } else {
                    "10.10.0.1"
                }
            };

            // Without a forwarded address the client is the loopback peer, in region `lab`.
            let (status, _, answer) = server.authorize(Some(&sales_token()), &body).await;
            assert_no_permit(status, &answer);

            // The configured header moves the client into eu-central, but only from a
            // trusted proxy.
            let (status, _, answer) =
                authorize_with(&server, &sales_token(), &body, &[(used, value(used))]).await;
            if trusted {
                assert_allowed(status, &answer, &[READ_POLICY]);
            } else {
                assert_no_permit(status, &answer);
            }

            // The other header is the client's own text, which a proxy passes through
            // untouched: it never counts, even from a trusted proxy.
            let (status, _, answer) =
                authorize_with(&server, &sales_token(), &body, &[(ignored, value(ignored))]).await;
            assert_no_permit(status, &answer);
            server.stop().await;
        }
    }
}

#[tokio::test]
async fn non_ascii_forwarded_for_rejected() {
    let (_dir, server) = start_at("trusted_proxies = [\"127.0.0.1\"]", business_hours()).await;
    let value = reqwest::header::HeaderValue::from_bytes(b"\xff, 6.6.6.6").unwrap();
    let response = server
        .client
        .post(server.url("/authorize"))
        .bearer_auth(sales_token())
        .header("x-forwarded-for", value)
        .json(&request("read", "c-1001"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["error"]["field"], "x-forwarded-for", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn untrusted_forwarded_for_never_read() {
    let (_dir, server) = start_at("", business_hours()).await;
    let value = reqwest::header::HeaderValue::from_bytes(b"\xff, garbage").unwrap();
    let response = server
        .client
        .post(server.url("/authorize"))
        .bearer_auth(sales_token())
        .header("x-forwarded-for", value)
        .json(&request("read", "c-1001"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["decision"], "allow", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn duplicate_body_field_rejected() {
    let (_dir, server) = start_at("", business_hours()).await;
    let body =
        br#"{"action":"update","action":"read","resource":{"type":"Crm::Customer","id":"c-1001"}}"#;
    let (status, answer) = authorize_raw(&server, &sales_token(), body.to_vec()).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field `action`"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn duplicate_context_key_rejected() {
    let (_dir, server) = start_at("", business_hours()).await;
    let bodies: [&[u8]; 2] = [
        br#"{"action":"read","resource":{"type":"Crm::Customer","id":"c-1001"},"context":{"purpose":"x","purpose":"support"}}"#,
        br#"{"action":"read","resource":{"type":"Crm::Customer","id":"c-1001"},"context":{"purpose":{"a":1,"a":2}}}"#,
    ];
    for body in bodies {
        let (status, answer) = authorize_raw(&server, &sales_token(), body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let field = answer["error"]["field"].as_str().unwrap();
        assert!(field.starts_with("context"), "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{answer}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn rejections_carry_revision() {
    let (_dir, server) = start_at("max_body_bytes = 64", business_hours()).await;
    let (_, ready) = get(&server, "/readyz").await;
    let revision = ready["revision"].clone();
    assert!(revision.is_string(), "{ready}");

    let (status, not_found) = get(&server, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(not_found["revision"], revision, "{not_found}");
    let (status, wrong_method) = get(&server, "/authorize").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method["revision"], revision, "{wrong_method}");
    let (status, too_large) = authorize_raw(&server, &sales_token(), vec![b' '; 65]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large["revision"], revision, "{too_large}");
    server.stop().await;
}

// Invalid requests.

#[tokio::test]
async fn bad_requests_name_field() {
    let (_dir, server) = start_at("", business_hours()).await;
    let token = sales_token();
    let customer = json!({ "type": "Crm::Customer", "id": "c-1001" });

    let cases = [
        (json!({ "resource": customer }), "action"),
        (
            json!({ "action": "read", "resource": { "type": "Crm::Customer", "id": 1001 } }),
            "resource.id",
        ),
        (
            json!({ "action": "read", "resource": { "id": "c-1001" } }),
            "resource.type",
        ),
        (
            json!({ "action": "read", "resource": customer, "subject": "admin" }),
            "subject",
        ),
        (
            json!({ "action": "delete", "resource": customer }),
            "action",
        ),
        (
            json!({ "action": "read", "resource": { "type": "Crm::Invoice", "id": "i-1" } }),
            "resource.type",
        ),
        (
            json!({ "action": "read", "resource": { "type": "not a type", "id": "c-1001" } }),
            "resource.type",
        ),
    ];
    for (body, field) in cases {
        let (status, _, answer) = server.authorize(Some(&token), &body).await;
        assert_bad_request(status, &answer, field);
    }

    // serde would read a struct from an array of its fields in order, which the API does not
    // define, so positional bodies are rejected like any other malformed body.
    let positional = json!(["read", { "type": "Crm::Customer", "id": "c-1001" }]);
    let (status, _, answer) = server.authorize(Some(&token), &positional).await;
    assert_bad_request(status, &answer, "body");
    let positional_resource = json!({ "action": "read", "resource": ["Crm::Customer", "c-1001"] });
    let (status, _, answer) = server.authorize(Some(&token), &positional_resource).await;
    assert_bad_request(status, &answer, "resource");

    let trailing =
        br#"{"action": "read", "resource": {"type": "Crm::Customer", "id": "c-1001"}} {}"#;
    let malformed = [
        &b"not json"[..],
        b"",
        b"[1, 2]",
        b"{\"action\": \"read\"",
        trailing,
    ];
    for raw in malformed {
        let (status, answer) = authorize_raw(&server, &token, raw.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["decision"], "deny", "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
        assert_eq!(answer["error"]["field"], "body", "{answer}");
    }
    server.stop().await;
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let (_dir, server) = start_at("max_body_bytes = 256", business_hours()).await;
    let token = sales_token();

    let mut body = request("read", "c-1001");
    body["context"] = json!({ "purpose": "x".repeat(300) });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["error"]["code"], "body_too_large", "{answer}");

    // A body under the limit on the same server is decided as usual.
    let (status, _, answer) = server
        .authorize(Some(&token), &request("read", "c-1001"))
        .await;
    assert_allowed(status, &answer, &[READ_POLICY]);
    server.stop().await;
}

#[tokio::test]
async fn unknown_route_and_method() {
    let (_dir, server) = start_at("", business_hours()).await;

    let (status, answer) = get(&server, "/decide").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");

    let get_authorize = server.client.get(server.url("/authorize"));
    let (status, headers, answer) = send(get_authorize).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(headers["allow"], "POST");

    let post_health = server.client.post(server.url("/healthz"));
    let (status, _, answer) = send(post_health).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn no_bundle_is_503() {
    let (_dir, mut config) = common::default_bundle_copy("");
    config.decision_log.output = cedargate::config::LogOutput::Off;
    let pdp = cedargate::decide::Pdp::new(config).unwrap();
    let server = TestServer::start_with(Arc::new(pdp)).await;
    server.pdp.set_fixed_time(Some(business_hours()));

    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", "c-1001"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "unavailable", "{answer}");
    assert_eq!(answer["error"]["code"], "no_bundle", "{answer}");

    let (status, answer) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["ready"], false, "{answer}");

    let (status, _) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

// Operational routes.

#[tokio::test]
async fn operational_routes_report_revision() {
    let (_dir, server) = start_at("", business_hours()).await;
    let revision = server.pdp.snapshot().unwrap().bundle.revision.clone();
    assert!(!revision.is_empty());

    let (status, _) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::OK);

    let (status, answer) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ready"], true, "{answer}");
    assert_eq!(answer["revision"], revision.as_str(), "{answer}");

    let (status, answer) = get(&server, "/status").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["bundle"]["revision"], revision.as_str(), "{answer}");
    assert_eq!(answer["reloads"]["failed"], 0, "{answer}");
    assert_eq!(answer["stale"], false, "{answer}");
    assert!(answer["last_reload_error"].is_null(), "{answer}");

    // Decisions name the same revision.
    let (_, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", "c-1001"))
        .await;
    assert_eq!(answer["revision"], revision.as_str(), "{answer}");
    server.stop().await;
}

// A forbid policy that raises an error.

/// A forbid on reads whose condition overflows a Long for every hour from 1 to 23, so it
/// raises an evaluation error at 10:00. It passes strict validation.
const ERRORING_FORBID: &str = r#"// Test only: a forbid whose condition raises an overflow error.
@id("forbid-overflowing-hour")
forbid (
  principal,
  action == Crm::Action::"read",
  resource
)
when { context.hour * 9223372036854775807 > 0 };
"#;

async fn start_with_erroring_forbid(on_forbid_error: Option<&str>) -> (TempDir, TestServer) {
    let (dir, _) = common::default_bundle_copy("");
    write_file(&dir, "policies/erroring.cedar", ERRORING_FORBID);
    let config = edit_config(&dir, |text| match on_forbid_error {
        Some(value) => text.replacen(
            "[decision]\n",
            &format!("[decision]\non_forbid_error = \"{value}\"\n"),
            1,
        ),
        None => text,
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(business_hours()));
    (dir, server)
}

fn erroring_policies(answer: &Value) -> Vec<&str> {
    answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["policy"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn erroring_forbid_fails_closed() {
    let (_dir, server) = start_with_erroring_forbid(None).await;
    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", "c-1001"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["deny"], "forbid_errored", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["forbid-overflowing-hour"]),
        "{answer}"
    );
    assert_eq!(
        erroring_policies(&answer),
        ["forbid-overflowing-hour"],
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn erroring_forbid_skipped() {
    let (_dir, server) = start_with_erroring_forbid(Some("skip")).await;
    let (status, _, answer) = server
        .authorize(Some(&sales_token()), &request("read", "c-1001"))
        .await;
    assert_allowed(status, &answer, &[READ_POLICY]);
    assert_eq!(
        erroring_policies(&answer),
        ["forbid-overflowing-hour"],
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn issuer_in_context_tells_issuers_apart() {
    let (dir, _) = common::default_bundle_copy("");
    std::fs::write(
        dir.path().join("rsa-issuer.pem"),
        common::test_key("rsa-public.pem"),
    )
    .unwrap();
    // Declare `issuer` in the context and let only the EC test issuer update records.
    let schema = std::fs::read_to_string(dir.path().join("schema/crm.cedarschema")).unwrap();
    let schema = schema.replacen("region: String,", "region: String,\n    issuer: String,", 1);
    write_file(&dir, "schema/crm.cedarschema", &schema);
    write_file(
        &dir,
        "policies/issuers.cedar",
        &format!(
            "@id(\"update-only-from-test-issuer\")\nforbid (principal, action == Crm::Action::\"update\", resource)\nunless {{ context.issuer == \"{}\" }};\n",
            common::TEST_ISSUER
        ),
    );
    let config = edit_config(&dir, |text| {
        let rsa_issuer = "[[issuer]]\nname = \"rsa\"\nissuer = \"https://rsa-issuer.test\"\naudiences = [\"customers-api\"]\nalgorithms = [\"RS256\"]\nkeys = [{ pem = \"rsa-issuer.pem\", kid = \"test-rsa\" }]\n";
        text.replacen("[principal]", &format!("{rsa_issuer}\n[principal]"), 1)
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(business_hours()));
    let body = request("update", "c-1001");
    let editor = json!({ "department": "sales", "groups": ["crm-editor"] });

    let ec_token = mint(&common::user_claims("alice", editor.clone()));
    let (status, _, answer) = server.authorize(Some(&ec_token), &body).await;
    assert_allowed(status, &answer, &["update-by-editor-role"]);

    // The same subject and claims from the other issuer: same principal, other issuer.
    let mut claims = common::user_claims("alice", editor);
    claims["iss"] = json!("https://rsa-issuer.test");
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&common::test_key("rsa-private.pem")).unwrap();
    let header = jsonwebtoken::Header {
        kid: Some("test-rsa".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
    };
    let rsa_token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let (status, _, answer) = server.authorize(Some(&rsa_token), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        answer["policies"],
        json!(["update-only-from-test-issuer"]),
        "{answer}"
    );
    server.stop().await;
}
