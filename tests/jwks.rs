//! Remote key sets over HTTP: a test provider on 127.0.0.1 serves JWK Sets and a discovery
//! document to a real cedargate server, and the tests rotate keys, change `Cache-Control`,
//! take the provider down and flood it with unknown `kid` values.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use common::jwks_server::{JwksServer, ec_p256_jwk, key_set, sign_es256};
use common::{TEST_AUDIENCE, TestServer, default_bundle_with_issuers};

/// Returns a request that the default bundle allows for a sales editor at any time of day.
fn update_request() -> Value {
    json!({ "action": "update", "resource": { "type": "Crm::Customer", "id": "c-1001" } })
}

/// Claims of a sales editor's token from issuer `iss`, valid for an hour.
fn editor_claims(iss: &str) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({
        "iss": iss,
        "aud": TEST_AUDIENCE,
        "sub": "alice",
        "department": "sales",
        "groups": ["crm-editor"],
        "iat": now,
        "exp": now + 3600,
    })
}

/// `[tokens]` settings with short intervals, so the tests see refreshes within seconds.
fn tokens_toml(refresh_min: u64, refresh_max: u64, refetch: u64, max_age: u64) -> String {
    format!(
        "[tokens]\njwks_refresh_min_seconds = {refresh_min}\njwks_refresh_max_seconds = {refresh_max}\n\
         jwks_refetch_interval_seconds = {refetch}\njwks_max_age_seconds = {max_age}\njwks_timeout_ms = 2000\n"
    )
}

/// Returns an issuer named `name` whose keys come from `key_source` (the inside of `keys = [...]`).
fn remote_issuer(name: &str, iss: &str, key_source: &str) -> String {
    format!(
        "[[issuer]]\nname = \"{name}\"\nissuer = \"{iss}\"\naudiences = [\"{TEST_AUDIENCE}\"]\n\
         algorithms = [\"ES256\"]\nkeys = [{key_source}]\n"
    )
}

/// Starts cedargate with one issuer whose key set is at `provider`'s `jwks_url`.
async fn start_with_provider(
    provider: &JwksServer,
    tokens: &str,
) -> (tempfile::TempDir, TestServer) {
    let issuer = remote_issuer(
        "remote",
        provider.base_url(),
        &format!("{{ jwks_url = \"{}\" }}", provider.jwks_url()),
    );
    let (dir, config) = default_bundle_with_issuers("", &format!("{tokens}\n{issuer}"));
    (dir, TestServer::start(config).await)
}

/// Sends the update request with `token`; returns the status and the error code, if any.
async fn send(server: &TestServer, token: &str) -> (StatusCode, Option<String>) {
    let (status, _, body) = server.authorize(Some(token), &update_request()).await;
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (StatusCode::from_u16(status.as_u16()).unwrap(), code)
}

async fn get_json(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

/// Returns the status route's entry of the first remote source of the first issuer.
async fn remote_status(server: &TestServer) -> Value {
    let (_, status) = get_json(server, "/status").await;
    status["tokens"]["issuers"][0]["remote"][0].clone()
}

/// Polls `check` every 100 ms until it returns true; fails after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn jwks_url_key_verifies() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(60, 3600, 30, 86400)).await;

    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));

    let other = sign_es256("ec-p256-other", "a", &editor_claims(provider.base_url()));
    let (status, code) = send(&server, &other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code.as_deref(), Some("bad_signature"));
}

#[tokio::test]
async fn discovery_finds_key_set() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let issuer = remote_issuer("discovered", provider.base_url(), "{ discovery = true }");
    let tokens = tokens_toml(60, 3600, 30, 86400);
    let (_dir, config) = default_bundle_with_issuers("", &format!("{tokens}\n{issuer}"));
    let server = TestServer::start(config).await;

    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));
    assert!(provider.discovery_requests() >= 1);

    let status = remote_status(&server).await;
    assert_eq!(status["source"], "discovery");
    assert_eq!(status["jwks_url"], provider.jwks_url());
}

#[tokio::test]
async fn discovery_of_other_issuer_rejected() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    // The document names the provider's URL as its issuer, which this issuer is not.
    let discovery = format!(
        "{{ discovery = \"{}/.well-known/openid-configuration\" }}",
        provider.base_url()
    );
    let issuer = remote_issuer("mismatch", "https://issuer.test", &discovery);
    let tokens = tokens_toml(60, 3600, 30, 86400);
    let (_dir, config) = default_bundle_with_issuers("", &format!("{tokens}\n{issuer}"));
    let server = TestServer::start(config).await;

    let token = sign_es256("ec-p256", "a", &editor_claims("https://issuer.test"));
    let (status, code) = send(&server, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("keys_unavailable"));
    assert_eq!(provider.jwks_requests(), 0);
    let status = remote_status(&server).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("not the configured"), "{error}");
}

/// The rotation scenario: the provider publishes a new key next to the old one, then
/// drops the old one. Tokens with the new `kid` verify once a refresh has seen it, and
/// tokens with the old `kid` verify while it is published, the cached ones included, and
/// fail after it is removed.
#[tokio::test]
async fn key_rotation() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "old")])).await;
    provider.set_cache_control(Some("max-age=1"));
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(1, 2, 1, 10)).await;
    let claims = editor_claims(provider.base_url());
    let old_token = sign_es256("ec-p256", "old", &claims);
    let new_token = sign_es256("ec-p256-other", "new", &claims);

    assert_eq!(send(&server, &old_token).await, (StatusCode::OK, None));
    let (status, code) = send(&server, &new_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code.as_deref(), Some("unknown_key"));

    provider.set_keys(key_set(&[
        ec_p256_jwk("ec-p256", "old"),
        ec_p256_jwk("ec-p256-other", "new"),
    ]));
    wait_until(Duration::from_secs(10), "the new key verifies", || async {
        send(&server, &new_token).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(send(&server, &old_token).await, (StatusCode::OK, None));

    provider.set_keys(key_set(&[ec_p256_jwk("ec-p256-other", "new")]));
    wait_until(
        Duration::from_secs(10),
        "the old key is removed",
        || async { send(&server, &old_token).await.0 == StatusCode::UNAUTHORIZED },
    )
    .await;
    let (_, code) = send(&server, &old_token).await;
    assert_eq!(code.as_deref(), Some("unknown_key"));
    assert_eq!(send(&server, &new_token).await, (StatusCode::OK, None));
    assert_eq!(remote_status(&server).await["kids"], json!(["new"]));
}

#[tokio::test]
async fn unknown_kid_refetches_once_per_interval() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    // Long intervals: after the first fetch, only unknown `kid` values cause fetches.
    let (_dir, server) =
        start_with_provider(&provider, &tokens_toml(3600, 3600, 3600, 86400)).await;
    let claims = editor_claims(provider.base_url());
    assert_eq!(
        send(&server, &sign_es256("ec-p256", "a", &claims)).await,
        (StatusCode::OK, None)
    );
    assert_eq!(provider.jwks_requests(), 1);

    // A key published after the last fetch is found by the fetch its first token causes.
    provider.set_keys(key_set(&[
        ec_p256_jwk("ec-p256", "a"),
        ec_p256_jwk("ec-p256-other", "b"),
    ]));
    let token_b = sign_es256("ec-p256-other", "b", &claims);
    assert_eq!(send(&server, &token_b).await, (StatusCode::OK, None));
    assert_eq!(provider.jwks_requests(), 2);

    // Within the interval, made-up `kid` values cause no further fetch.
    for index in 0..30 {
        let forged = sign_es256("ec-p256-other", &format!("forged-{index}"), &claims);
        let (status, code) = send(&server, &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code.as_deref(), Some("unknown_key"));
    }
    assert_eq!(provider.jwks_requests(), 2);
}

#[tokio::test]
async fn cache_control_sets_refresh_interval() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    provider.set_cache_control(Some("public, max-age=1"));
    let (_dir, _server) = start_with_provider(&provider, &tokens_toml(1, 3600, 30, 86400)).await;

    wait_until(Duration::from_secs(10), "three fetches", || async {
        provider.jwks_requests() >= 3
    })
    .await;
}

#[tokio::test]
async fn cache_control_clamped_to_maximum() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    provider.set_cache_control(Some("max-age=86400"));
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(1, 2, 30, 86400)).await;

    wait_until(Duration::from_secs(10), "two fetches", || async {
        provider.jwks_requests() >= 2
    })
    .await;
    assert_eq!(remote_status(&server).await["refresh_interval_seconds"], 2);
}

#[tokio::test]
async fn cache_control_clamped_to_minimum() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    provider.set_cache_control(Some("no-store"));
    let (_dir, server) =
        start_with_provider(&provider, &tokens_toml(3600, 3600, 3600, 86400)).await;

    wait_until(Duration::from_secs(10), "the first fetch", || async {
        provider.jwks_requests() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(provider.jwks_requests(), 1);
    assert_eq!(
        remote_status(&server).await["refresh_interval_seconds"],
        3600
    );
}

/// While the provider is down, the cached keys keep verifying until they are older than
/// `jwks_max_age_seconds`; then tokens get 503 until the provider is back.
#[tokio::test]
async fn provider_outage_served_until_max_age() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(1, 1, 1, 6)).await;
    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));

    provider.set_down(Some(StatusCode::SERVICE_UNAVAILABLE));
    wait_until(Duration::from_secs(10), "a fetch failed", || async {
        remote_status(&server).await["state"] == "stale"
    })
    .await;
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));
    let status = remote_status(&server).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("503"), "{error}");

    wait_until(Duration::from_secs(10), "the keys expired", || async {
        send(&server, &token).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (_, code) = send(&server, &token).await;
    assert_eq!(code.as_deref(), Some("keys_unavailable"));
    assert_eq!(remote_status(&server).await["state"], "expired");
    // Keys that expired later do not make the server unready.
    assert_eq!(get_json(&server, "/readyz").await.0, StatusCode::OK);

    provider.set_down(None);
    wait_until(Duration::from_secs(10), "the provider is back", || async {
        send(&server, &token).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(remote_status(&server).await["state"], "fresh");
}

/// The documented start-up choice: the server starts while the provider is unreachable,
/// is not ready and responds with 503 to that issuer's tokens until the first fetch succeeds.
#[tokio::test]
async fn startup_with_provider_down() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    provider.set_down(Some(StatusCode::BAD_GATEWAY));
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(1, 1, 1, 10)).await;
    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));

    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["issuers_waiting_for_keys"], json!(["remote"]));
    let (status, code) = send(&server, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("keys_unavailable"));
    assert_eq!(remote_status(&server).await["state"], "pending");

    provider.set_down(None);
    wait_until(Duration::from_secs(10), "the server is ready", || async {
        get_json(&server, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));
}

#[tokio::test]
async fn startup_with_provider_unreachable() {
    // A port that was free a moment ago; nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iss = format!("http://127.0.0.1:{port}");
    let issuer = remote_issuer(
        "unreachable",
        &iss,
        &format!("{{ jwks_url = \"{iss}/jwks.json\" }}"),
    );
    let tokens = tokens_toml(60, 3600, 30, 86400);
    let (_dir, config) = default_bundle_with_issuers("", &format!("{tokens}\n{issuer}"));
    let server = TestServer::start(config).await;

    let token = sign_es256("ec-p256", "a", &editor_claims(&iss));
    let (status, code) = send(&server, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("keys_unavailable"));
    assert_eq!(
        get_json(&server, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    wait_until(
        Duration::from_secs(10),
        "a failed fetch is shown",
        || async { remote_status(&server).await["fetches_failed"].as_u64() >= Some(1) },
    )
    .await;
}

#[tokio::test]
async fn status_counts_failures_and_cache() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(60, 3600, 30, 86400)).await;
    let claims = editor_claims(provider.base_url());
    let token = sign_es256("ec-p256", "a", &claims);
    for _ in 0..3 {
        assert_eq!(send(&server, &token).await, (StatusCode::OK, None));
    }
    let forged = sign_es256("ec-p256-other", "a", &claims);
    for _ in 0..2 {
        send(&server, &forged).await;
    }
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(1_000_000);
    send(&server, &sign_es256("ec-p256", "a", &expired_claims)).await;

    let (_, status) = get_json(&server, "/status").await;
    let tokens = &status["tokens"];
    assert_eq!(tokens["failures"]["bad_signature"], 2);
    assert_eq!(tokens["failures"]["expired"], 1);
    assert_eq!(tokens["cache"]["hits"], 2);
    let remote = &tokens["issuers"][0]["remote"][0];
    assert_eq!(remote["state"], "fresh");
    assert_eq!(remote["kids"], json!(["a"]));
    assert_eq!(remote["url"], provider.jwks_url());
    assert_eq!(remote["fetches_succeeded"], 1);
}

/// Runs `cedargate authorize` for the update request with `token` and the config in
/// `dir`; returns the exit code and the printed answer.
async fn authorize_offline(dir: &std::path::Path, token: &str) -> (Option<i32>, Value) {
    let config = dir.join("cedargate.toml");
    let token = token.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .arg("authorize")
            .arg("--config")
            .arg(&config)
            .args(["--token", &token, "--action", "update"])
            .args(["--resource", "Crm::Customer::c-1001"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let answer = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no JSON answer ({err}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), answer)
}

#[tokio::test]
async fn authorize_command_fetches_keys() {
    let provider = JwksServer::start(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let issuer = remote_issuer(
        "remote",
        provider.base_url(),
        &format!("{{ jwks_url = \"{}\" }}", provider.jwks_url()),
    );
    let (dir, _) = default_bundle_with_issuers("", &issuer);
    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));

    let (code, answer) = authorize_offline(dir.path(), &token).await;
    assert_eq!(code, Some(0), "{answer:#}");
    assert_eq!(answer["decision"], "allow");
    assert_eq!(provider.jwks_requests(), 1);

    provider.set_down(Some(StatusCode::SERVICE_UNAVAILABLE));
    let (code, answer) = authorize_offline(dir.path(), &token).await;
    assert_eq!(code, Some(2), "{answer:#}");
    assert_eq!(answer["error"]["code"], "keys_unavailable");
}

#[tokio::test]
async fn https_provider_with_ca_file() {
    let (provider, certificate) =
        JwksServer::start_tls(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let issuer = remote_issuer(
        "tls",
        provider.base_url(),
        &format!("{{ jwks_url = \"{}\" }}", provider.jwks_url()),
    );
    let tokens = format!(
        "{}jwks_ca_file = \"ca.pem\"\n",
        tokens_toml(60, 3600, 30, 86400)
    );
    let (dir, config) = default_bundle_with_issuers("", &format!("{tokens}\n{issuer}"));
    // The CA file is read when the server starts, not when the config is parsed.
    std::fs::write(dir.path().join("ca.pem"), &certificate).unwrap();
    let server = TestServer::start(config).await;

    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));
    assert_eq!(send(&server, &token).await, (StatusCode::OK, None));
    assert_eq!(remote_status(&server).await["state"], "fresh");
}

#[tokio::test]
async fn https_provider_untrusted_certificate() {
    let (provider, _) = JwksServer::start_tls(key_set(&[ec_p256_jwk("ec-p256", "a")])).await;
    let (_dir, server) = start_with_provider(&provider, &tokens_toml(60, 3600, 30, 86400)).await;

    let token = sign_es256("ec-p256", "a", &editor_claims(provider.base_url()));
    let (status, code) = send(&server, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("keys_unavailable"));
    assert_eq!(provider.jwks_requests(), 0);
    let status = remote_status(&server).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
}
