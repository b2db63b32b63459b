//! The JWT attack suite, run over HTTP against a real server whose issuer takes its keys
//! from a JWK Set provider on 127.0.0.1. Each hostile token is assembled by hand and must
//! be rejected with its exact reason code.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use common::jwks_server::{JwksServer, ec_p256_jwk, key_set, sign_es256};
use common::{TEST_AUDIENCE, TestServer, default_bundle_with_issuers, test_key};

/// `tokens.max_token_bytes` of the server under attack.
const MAX_TOKEN_BYTES: usize = 4096;

/// Returns a request that the default bundle allows for a sales editor at any time of day.
fn update_request() -> Value {
    json!({ "action": "update", "resource": { "type": "Crm::Customer", "id": "c-1001" } })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

/// Signs `header` and `payload` as given, with the private key `tests/keys/{name}-private.pem`.
fn sign_raw(header: &Value, payload: &Value, name: &str, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(payload));
    let pem = test_key(&format!("{name}-private.pem"));
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        other => panic!("no test key for {other:?}"),
    };
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{signature}")
}

/// Signs with HMAC-SHA256 using `secret` as the key.
fn sign_hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(payload));
    let key = EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// The server under attack, its provider, and a second provider that an attacker runs.
struct Target {
    server: TestServer,
    provider: JwksServer,
    attacker: JwksServer,
    _dir: tempfile::TempDir,
}

impl Target {
    /// Starts the server and both providers. The provider publishes the RSA, EC and Ed25519 test keys of `tests/keys/jwks.json`.
    async fn start() -> Self {
        let jwks: Value = serde_json::from_slice(&test_key("jwks.json")).unwrap();
        let provider = JwksServer::start(jwks).await;
        let attacker =
            JwksServer::start(key_set(&[ec_p256_jwk("ec-p256-other", "attacker")])).await;
        let toml = format!(
            "[tokens]\nmax_token_bytes = {MAX_TOKEN_BYTES}\njwks_refresh_min_seconds = 1\n\
             jwks_refresh_max_seconds = 1\njwks_refetch_interval_seconds = 1\njwks_max_age_seconds = 60\n\n\
             [[issuer]]\nname = \"provider\"\nissuer = \"{iss}\"\naudiences = [\"{TEST_AUDIENCE}\"]\n\
             algorithms = [\"RS256\", \"ES256\"]\nkeys = [{{ jwks_url = \"{url}\" }}]\n",
            iss = provider.base_url(),
            url = provider.jwks_url(),
        );
        let (dir, config) = default_bundle_with_issuers("", &toml);
        let server = TestServer::start(config).await;
        Self {
            server,
            provider,
            attacker,
            _dir: dir,
        }
    }

    /// Claims of a valid sales editor token of the provider, valid for an hour.
    fn claims(&self) -> Value {
        let now = jiff::Timestamp::now().as_second();
        json!({
            "iss": self.provider.base_url(),
            "aud": TEST_AUDIENCE,
            "sub": "alice",
            "department": "sales",
            "groups": ["crm-editor"],
            "iat": now,
            "exp": now + 3600,
        })
    }

    fn claims_with(&self, name: &str, value: Value) -> Value {
        let mut claims = self.claims();
        claims[name] = value;
        claims
    }

    fn claims_without(&self, name: &str) -> Value {
        let mut claims = self.claims();
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    /// Sends `token`; returns the HTTP status and the error code and message, if any.
    async fn send(&self, token: &str) -> (u16, Option<String>, String) {
        let (status, _, body) = self.server.authorize(Some(token), &update_request()).await;
        let code = body["error"]["code"].as_str().map(str::to_owned);
        let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
        (status.as_u16(), code, message)
    }

    async fn assert_rejected(&self, case: &str, token: &str, expected: &str) {
        let (status, code, message) = self.send(token).await;
        assert_eq!(status, 401, "{case}: status (error {code:?}: {message})");
        assert_eq!(
            code.as_deref(),
            Some(expected),
            "{case}: reason ({message})"
        );
    }
}

const ES256_HEADER: &str = r#"{"alg":"ES256","typ":"JWT","kid":"ec-p256"}"#;

fn es256_header() -> Value {
    serde_json::from_str(ES256_HEADER).unwrap()
}

#[tokio::test]
async fn valid_token_allowed() {
    let target = Target::start().await;
    let token = sign_raw(
        &es256_header(),
        &target.claims(),
        "ec-p256",
        Algorithm::ES256,
    );
    let (status, code, message) = target.send(&token).await;
    assert_eq!(status, 200, "{code:?}: {message}");
    let rsa = sign_raw(
        &json!({"alg": "RS256", "kid": "rsa"}),
        &target.claims(),
        "rsa",
        Algorithm::RS256,
    );
    assert_eq!(target.send(&rsa).await.0, 200);
}

#[tokio::test]
async fn alg_none_every_spelling() {
    let target = Target::start().await;
    let payload = b64_json(&target.claims());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64_json(&json!({ "alg": alg, "typ": "JWT" }));
        let unsigned = format!("{header}.{payload}.");
        target
            .assert_rejected(
                &format!("alg {alg}, no signature"),
                &unsigned,
                "disallowed_algorithm",
            )
            .await;
        // A signature copied from a real token changes nothing.
        let real = sign_raw(
            &es256_header(),
            &target.claims(),
            "ec-p256",
            Algorithm::ES256,
        );
        let signature = real.rsplit('.').next().unwrap();
        let signed = format!("{header}.{payload}.{signature}");
        target
            .assert_rejected(
                &format!("alg {alg}, copied signature"),
                &signed,
                "disallowed_algorithm",
            )
            .await;
    }
}

#[tokio::test]
async fn hs256_keyed_with_rsa_public_key() {
    let target = Target::start().await;
    let public_pem = test_key("rsa-public.pem");
    for header in [
        json!({"alg": "HS256", "kid": "rsa"}),
        json!({"alg": "HS256"}),
    ] {
        let token = sign_hs256(&header, &target.claims(), &public_pem);
        target
            .assert_rejected(&format!("{header}"), &token, "disallowed_algorithm")
            .await;
    }
}

#[tokio::test]
async fn hostile_kid_values() {
    let target = Target::start().await;
    let long_kid = "k".repeat(2000);
    for kid in [
        "../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1' --",
        "ec-p256\u{0}",
        "ec-p256\nforged log line",
        long_kid.as_str(),
    ] {
        let header = json!({ "alg": "ES256", "kid": kid });
        let token = sign_raw(&header, &target.claims(), "ec-p256", Algorithm::ES256);
        assert!(token.len() <= MAX_TOKEN_BYTES);
        target
            .assert_rejected(&format!("kid {kid:.40?}"), &token, "unknown_key")
            .await;
        let (_, _, message) = target.send(&token).await;
        assert!(message.len() < 300, "message of {} bytes", message.len());
        assert!(!message.contains('\n'), "{message}");
    }
    let numeric = sign_raw(
        &json!({ "alg": "ES256", "kid": 7 }),
        &target.claims(),
        "ec-p256",
        Algorithm::ES256,
    );
    target
        .assert_rejected("numeric kid", &numeric, "malformed")
        .await;
}

#[tokio::test]
async fn attacker_key_headers_ignored() {
    let target = Target::start().await;
    let attacker_jwk = ec_p256_jwk("ec-p256-other", "attacker");
    let claims = target.claims();
    let cases = [
        (
            "jku",
            json!({ "alg": "ES256", "kid": "attacker", "jku": target.attacker.jwks_url() }),
            "unknown_key",
        ),
        (
            "x5u",
            json!({ "alg": "ES256", "kid": "attacker", "x5u": format!("{}/cert.pem", target.attacker.base_url()) }),
            "unknown_key",
        ),
        (
            "jwk with its kid",
            json!({ "alg": "ES256", "kid": "attacker", "jwk": attacker_jwk }),
            "unknown_key",
        ),
        (
            "jwk with a trusted kid",
            json!({ "alg": "ES256", "kid": "ec-p256", "jwk": attacker_jwk }),
            "bad_signature",
        ),
        (
            "jwk without kid",
            json!({ "alg": "ES256", "jwk": attacker_jwk }),
            "bad_signature",
        ),
        (
            "jku with a trusted kid",
            json!({ "alg": "ES256", "kid": "ec-p256", "jku": target.attacker.jwks_url() }),
            "bad_signature",
        ),
    ];
    for (case, header, expected) in cases {
        let token = sign_raw(&header, &claims, "ec-p256-other", Algorithm::ES256);
        target.assert_rejected(case, &token, expected).await;
    }
    assert_eq!(
        target.attacker.jwks_requests(),
        0,
        "the attacker's key set was fetched"
    );
    assert_eq!(target.attacker.discovery_requests(), 0);
}

#[tokio::test]
async fn unknown_crit_header() {
    let target = Target::start().await;
    let header = json!({ "alg": "ES256", "kid": "ec-p256", "crit": ["exp-ext"], "exp-ext": 1 });
    let token = sign_raw(&header, &target.claims(), "ec-p256", Algorithm::ES256);
    target.assert_rejected("crit", &token, "malformed").await;
}

#[tokio::test]
async fn time_claims() {
    let target = Target::start().await;
    let now = jiff::Timestamp::now().as_second();
    let cases = [
        ("missing exp", target.claims_without("exp"), "malformed"),
        (
            "string exp",
            target.claims_with("exp", json!("tomorrow")),
            "malformed",
        ),
        (
            "null exp",
            target.claims_with("exp", Value::Null),
            "malformed",
        ),
        (
            "expired",
            target.claims_with("exp", json!(now - 3600)),
            "expired",
        ),
        (
            "nbf in the future",
            target.claims_with("nbf", json!(now + 3600)),
            "not_yet_valid",
        ),
        (
            "string nbf",
            target.claims_with("nbf", json!("now")),
            "malformed",
        ),
        (
            "iat in the future",
            target.claims_with("iat", json!(now + 3600)),
            "issued_in_future",
        ),
        (
            "string iat",
            target.claims_with("iat", json!("now")),
            "malformed",
        ),
    ];
    for (case, claims, expected) in cases {
        let token = sign_raw(&es256_header(), &claims, "ec-p256", Algorithm::ES256);
        target.assert_rejected(case, &token, expected).await;
    }
}

#[tokio::test]
async fn oversized_token_rejected_before_parsing() {
    let target = Target::start().await;
    // Garbage that would be malformed if it were parsed at all.
    let garbage = "x".repeat(MAX_TOKEN_BYTES + 1);
    target
        .assert_rejected("garbage", &garbage, "token_too_large")
        .await;

    // A well-formed, correctly signed token just over the limit. Each byte of padding
    // adds 4/3 characters of base64url, so the search starts a little below the length
    // that fills the limit.
    let base = sign_raw(
        &es256_header(),
        &target.claims_with("pad", json!("")),
        "ec-p256",
        Algorithm::ES256,
    );
    let mut pad_len = (MAX_TOKEN_BYTES - base.len()) * 3 / 4 - 8;
    let padded = loop {
        let claims = target.claims_with("pad", json!("p".repeat(pad_len)));
        let token = sign_raw(&es256_header(), &claims, "ec-p256", Algorithm::ES256);
        if token.len() > MAX_TOKEN_BYTES {
            break token;
        }
        pad_len += 1;
    };
    assert!(
        padded.len() <= MAX_TOKEN_BYTES + 4,
        "{} bytes",
        padded.len()
    );
    target
        .assert_rejected("padded", &padded, "token_too_large")
        .await;
}

#[tokio::test]
async fn broken_encoding_in_each_part() {
    let target = Target::start().await;
    let valid = sign_raw(
        &es256_header(),
        &target.claims(),
        "ec-p256",
        Algorithm::ES256,
    );
    let [header, payload, signature]: [&str; 3] =
        valid.split('.').collect::<Vec<_>>().try_into().unwrap();
    let not_json = b64(b"{\"alg\": \"ES256\",");
    let cases = [
        ("header not base64url", format!("!!!.{payload}.{signature}")),
        ("payload not base64url", format!("{header}.***.{signature}")),
        ("signature not base64url", format!("{header}.{payload}.$$$")),
        (
            "header padded base64",
            format!("{header}=.{payload}.{signature}"),
        ),
        (
            "header not JSON",
            format!("{not_json}.{payload}.{signature}"),
        ),
        (
            "payload not JSON",
            format!("{header}.{not_json}.{signature}"),
        ),
        (
            "payload a JSON array",
            format!("{header}.{}.{signature}", b64(b"[1,2]")),
        ),
        ("empty signature", format!("{header}.{payload}.")),
        ("two parts", format!("{header}.{payload}")),
        ("five parts", format!("{header}.{payload}.{signature}.x.y")),
    ];
    for (case, token) in cases {
        target.assert_rejected(case, &token, "malformed").await;
    }
}

#[tokio::test]
async fn tampered_payload_bad_signature() {
    let target = Target::start().await;
    let valid = sign_raw(
        &es256_header(),
        &target.claims(),
        "ec-p256",
        Algorithm::ES256,
    );
    let signature = valid.rsplit('.').next().unwrap();
    let forged = b64_json(&target.claims_with("groups", json!(["crm-admin"])));
    let token = format!("{}.{forged}.{signature}", b64_json(&es256_header()));
    target
        .assert_rejected("tampered", &token, "bad_signature")
        .await;
}

#[tokio::test]
async fn other_audience_of_same_issuer() {
    let target = Target::start().await;
    for aud in [json!("billing-api"), json!(["billing-api", "reports-api"])] {
        let claims = target.claims_with("aud", aud.clone());
        let token = sign_raw(&es256_header(), &claims, "ec-p256", Algorithm::ES256);
        target
            .assert_rejected(&format!("aud {aud}"), &token, "bad_audience")
            .await;
    }
    let token = sign_raw(
        &es256_header(),
        &target.claims_without("aud"),
        "ec-p256",
        Algorithm::ES256,
    );
    target
        .assert_rejected("no aud", &token, "bad_audience")
        .await;
}

/// A token that verified, and so sits in the verification cache, stops verifying once
/// the provider no longer publishes its key.
#[tokio::test]
async fn replay_after_key_removal() {
    let target = Target::start().await;
    let token = sign_raw(
        &es256_header(),
        &target.claims(),
        "ec-p256",
        Algorithm::ES256,
    );
    assert_eq!(target.send(&token).await.0, 200);
    assert_eq!(target.send(&token).await.0, 200);

    let mut jwks: Value = serde_json::from_slice(&test_key("jwks.json")).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["kid"] != "ec-p256");
    target.provider.set_keys(jwks);

    let deadline = Instant::now() + Duration::from_secs(10);
    while target.send(&token).await.0 == 200 {
        assert!(Instant::now() < deadline, "the removed key still verifies");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    target
        .assert_rejected("replayed", &token, "unknown_key")
        .await;
}

#[tokio::test]
async fn failures_counted_by_reason() {
    let target = Target::start().await;
    let now = jiff::Timestamp::now().as_second();
    let expired = sign_raw(
        &es256_header(),
        &target.claims_with("exp", json!(now - 3600)),
        "ec-p256",
        Algorithm::ES256,
    );
    for _ in 0..3 {
        target.send(&expired).await;
    }
    target.send("not-a-token").await;
    let (_, _, body) = target.server.authorize(None, &update_request()).await;
    assert_eq!(body["error"]["code"], "missing_token");

    let response = target
        .server
        .client
        .get(target.server.url("/status"))
        .send()
        .await
        .unwrap();
    let status: Value = response.json().await.unwrap();
    let failures = &status["tokens"]["failures"];
    assert_eq!(failures["expired"], 3);
    assert_eq!(failures["malformed"], 1);
    assert_eq!(failures["missing_token"], 1);
}

/// Two issuers with their own key sets and audiences: a token is checked only against
/// the issuer its `iss` names.
#[tokio::test]
async fn issuer_keys_not_shared() {
    let alpha = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let beta = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256-other", "b")])).await;
    let toml = format!(
        "[[issuer]]\nname = \"alpha\"\nissuer = \"{a}\"\naudiences = [\"{TEST_AUDIENCE}\"]\n\
         algorithms = [\"ES256\"]\nkeys = [{{ jwks_url = \"{a}/jwks.json\" }}]\n\n\
         [[issuer]]\nname = \"beta\"\nissuer = \"{b}\"\naudiences = [\"beta-api\"]\n\
         algorithms = [\"ES256\"]\nkeys = [{{ jwks_url = \"{b}/jwks.json\" }}]\n",
        a = alpha.base_url(),
        b = beta.base_url(),
    );
    let (_dir, config) = default_bundle_with_issuers("", &toml);
    let server = TestServer::start(config).await;
    let now = jiff::Timestamp::now().as_second();
    let claims = |iss: &str, aud: &str| {
        json!({
            "iss": iss, "aud": aud, "sub": "alice", "department": "sales",
            "groups": ["crm-editor"], "exp": now + 3600,
        })
    };
    let send = |token: String| {
        let server = &server;
        async move {
            let (status, _, body) = server.authorize(Some(&token), &update_request()).await;
            (
                status.as_u16(),
                body["error"]["code"].as_str().map(str::to_owned),
            )
        }
    };

    let own = sign_es256("ec-p256", "a", &claims(alpha.base_url(), TEST_AUDIENCE));
    assert_eq!(send(own).await, (200, None));
    let beta_own = sign_es256("ec-p256-other", "b", &claims(beta.base_url(), "beta-api"));
    assert_eq!(send(beta_own).await, (200, None));

    // Signed with alpha's key, claiming beta.
    let cases = [
        (Some("a"), "unknown_key"),
        (Some("b"), "bad_signature"),
        (None, "bad_signature"),
    ];
    for (kid, expected) in cases {
        let header = match kid {
            Some(kid) => json!({ "alg": "ES256", "kid": kid }),
            None => json!({ "alg": "ES256" }),
        };
        let token = sign_raw(
            &header,
            &claims(beta.base_url(), "beta-api"),
            "ec-p256",
            Algorithm::ES256,
        );
        assert_eq!(
            send(token).await,
            (401, Some(expected.to_owned())),
            "kid {kid:?}"
        );
    }

    // Beta's own token for alpha's audience: beta accepts only its own.
    let wrong_audience = sign_es256(
        "ec-p256-other",
        "b",
        &claims(beta.base_url(), TEST_AUDIENCE),
    );
    assert_eq!(
        send(wrong_audience).await,
        (401, Some("bad_audience".to_owned()))
    );
}
