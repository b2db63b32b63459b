//! Tests of the token stage (`cedargate::token`): which tokens verify, and the exact reason
//! code of every rejection. Tokens are signed with the keys in `tests/keys`, and hostile
//! tokens are assembled by hand from base64url parts.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cedargate::token::{KeyError, MAX_TOKEN_BYTES, TokenError, VerifiedToken, Verifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::{corpus_dir, test_key, write_config};

/// The clock of most tests, in unix seconds (2023-11-14T22:13:20Z).
const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://issuer.test";
const AUDIENCE: &str = "cedargate";

const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The issuer most tests use: every algorithm, one key of each type with a `kid` named
/// after its file, and one accepted audience.
const MAIN_ISSUER: &str = r#"
[[issuer]]
name = "main"
issuer = "https://issuer.test"
audiences = ["cedargate"]
algorithms = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
keys = [
    { secret_file = "hmac-secret.txt", kid = "hmac" },
    { pem = "rsa-public.pem", kid = "rsa" },
    { pem = "ec-p256-public.pem", kid = "ec-p256" },
    { pem = "ec-p384-public.pem", kid = "ec-p384" },
    { pem = "ed25519-public.pem", kid = "ed25519" },
]
"#;

const MAIN_KEY_FILES: [&str; 5] = [
    "hmac-secret.txt",
    "rsa-public.pem",
    "ec-p256-public.pem",
    "ec-p384-public.pem",
    "ed25519-public.pem",
];

// Verifiers.

/// Loads the keys of the config `toml`, with the named files of `tests/keys` copied beside it.
fn load_verifier(toml: &str, key_files: &[&str]) -> Result<Verifier, KeyError> {
    let contents: Vec<(&str, Vec<u8>)> = key_files
        .iter()
        .map(|name| (*name, test_key(name)))
        .collect();
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(name, bytes)| (*name, bytes.as_slice()))
        .collect();
    let (_dir, config) = write_config(toml, &files);
    Verifier::from_config(&config)
}

fn verifier(toml: &str, key_files: &[&str]) -> Verifier {
    load_verifier(toml, key_files).unwrap_or_else(|err| panic!("keys failed to load: {err}"))
}

fn main_verifier() -> Verifier {
    verifier(MAIN_ISSUER, &MAIN_KEY_FILES)
}

fn main_verifier_with_leeway(seconds: u64) -> Verifier {
    let toml = format!("[tokens]\nleeway_seconds = {seconds}\n{MAIN_ISSUER}");
    verifier(&toml, &MAIN_KEY_FILES)
}

/// Loads an issuer whose only key source is the JWK Set `jwks`.
fn load_jwks_verifier(algorithms: &str, jwks: &Value) -> Result<Verifier, KeyError> {
    let toml = format!(
        "[[issuer]]\nname = \"jwks\"\nissuer = \"{ISS}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = {algorithms}\nkeys = [{{ jwks = \"jwks.json\" }}]\n"
    );
    let text = jwks.to_string();
    let (_dir, config) = write_config(&toml, &[("jwks.json", text.as_bytes())]);
    Verifier::from_config(&config)
}

fn load_error(result: Result<Verifier, KeyError>) -> KeyError {
    match result {
        Ok(_) => panic!("keys loaded, but a load error was expected"),
        Err(err) => err,
    }
}

/// Verifies `token` at the test clock `NOW`.
fn verify(verifier: &Verifier, token: &str) -> Result<VerifiedToken, TokenError> {
    verifier.verify_at(token, NOW as f64)
}

fn assert_reason(err: &TokenError, code: &str) {
    assert_eq!(err.code(), code, "rejected for another reason: {err}");
}

fn assert_message_contains(message: &impl std::fmt::Display, fragment: &str) {
    let message = message.to_string();
    assert!(
        message.contains(fragment),
        "message `{message}` does not contain `{fragment}`"
    );
}

// Claims and tokens.

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 600,
    })
}

fn claims_with(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn claims_without(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

/// Reads the HMAC secret as the verifier does: the text of the file without surrounding
/// whitespace.
fn hmac_secret() -> Vec<u8> {
    let text = String::from_utf8(test_key("hmac-secret.txt")).unwrap();
    text.trim().as_bytes().to_vec()
}

/// Returns the private key in `tests/keys` that signs `alg`, and the `kid` of its public
/// key in `MAIN_ISSUER` and `jwks.json`.
fn signing_key(alg: Algorithm) -> (EncodingKey, &'static str) {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            (EncodingKey::from_secret(&hmac_secret()), "hmac")
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => (private_key(EncodingKey::from_rsa_pem, "rsa"), "rsa"),
        Algorithm::ES256 => (private_key(EncodingKey::from_ec_pem, "ec-p256"), "ec-p256"),
        Algorithm::ES384 => (private_key(EncodingKey::from_ec_pem, "ec-p384"), "ec-p384"),
        Algorithm::EdDSA => (private_key(EncodingKey::from_ed_pem, "ed25519"), "ed25519"),
    }
}

/// Reads `tests/keys/{name}-private.pem` with one of the `EncodingKey::from_*_pem` functions.
fn private_key(
    from_pem: fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>,
    name: &str,
) -> EncodingKey {
    from_pem(&test_key(&format!("{name}-private.pem"))).unwrap()
}

/// Signs `claims` with jsonwebtoken, using the test key for `alg` and the given `kid`.
fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let (key, _) = signing_key(alg);
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Signs `claims` with the test key for `alg`, naming that key's `kid`.
fn token(alg: Algorithm, claims: &Value) -> String {
    let (_, kid) = signing_key(alg);
    sign(alg, Some(kid), claims)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Builds a compact token from raw header and payload bytes, signed by `key`, for parts
/// that `jsonwebtoken::encode` cannot produce.
fn sign_parts(header: &[u8], payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).unwrap();
    format!("{signing_input}.{signature}")
}

/// Splits a compact token into its three parts.
fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    <[&str; 3]>::try_from(parts).unwrap()
}

// Algorithms.

#[test]
fn every_algorithm_verifies_with_kid() {
    let verifier = main_verifier();
    for alg in ALL_ALGORITHMS {
        let token = token(alg, &claims());
        let verified = verify(&verifier, &token).unwrap_or_else(|err| panic!("{alg:?}: {err}"));
        assert_eq!(verified.issuer_name, "main", "{alg:?}");
        assert_eq!(verified.string_claim("sub"), Some("alice"), "{alg:?}");
    }
}

#[test]
fn every_algorithm_verifies_without_kid() {
    let verifier = main_verifier();
    for alg in ALL_ALGORITHMS {
        let token = sign(alg, None, &claims());
        let verified = verify(&verifier, &token).unwrap_or_else(|err| panic!("{alg:?}: {err}"));
        assert_eq!(verified.string_claim("sub"), Some("alice"), "{alg:?}");
    }
}

#[test]
fn jwks_keys_verify_asymmetric_algorithms() {
    let jwks: Value = serde_json::from_slice(&test_key("jwks.json")).unwrap();
    let algorithms =
        r#"["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]"#;
    let verifier = load_jwks_verifier(algorithms, &jwks).unwrap();
    for alg in ALL_ALGORITHMS.into_iter().skip(3) {
        let token = token(alg, &claims());
        let verified = verify(&verifier, &token).unwrap_or_else(|err| panic!("{alg:?}: {err}"));
        assert_eq!(verified.issuer_name, "jwks", "{alg:?}");
    }
}

// Time claims.

#[test]
fn expired_token_rejected() {
    let token = token(Algorithm::RS256, &claims_with("exp", json!(NOW - 60)));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "expired");
    assert_message_contains(&err, &format!("expired at {}", NOW - 60));
}

#[test]
fn expired_token_accepted_within_leeway() {
    let token = token(Algorithm::RS256, &claims_with("exp", json!(NOW - 10)));
    let verifier = main_verifier_with_leeway(30);
    assert!(verify(&verifier, &token).is_ok());
}

/// RFC 7519 section 4.1.4: the current time must be before `exp`, so a token is expired
/// at the instant `exp` names.
#[test]
fn expired_at_exp_instant() {
    let token = token(Algorithm::RS256, &claims_with("exp", json!(NOW)));
    let err = verify(&main_verifier_with_leeway(0), &token).unwrap_err();
    assert_reason(&err, "expired");
}

#[test]
fn future_nbf_not_yet_valid() {
    let token = token(Algorithm::RS256, &claims_with("nbf", json!(NOW + 60)));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "not_yet_valid");
    assert_message_contains(&err, &format!("not valid before {}", NOW + 60));
}

#[test]
fn future_nbf_accepted_within_leeway() {
    let token = token(Algorithm::RS256, &claims_with("nbf", json!(NOW + 10)));
    let verifier = main_verifier_with_leeway(30);
    assert!(verify(&verifier, &token).is_ok());
}

/// RFC 7519 section 4.1.5: the current time must be after or equal to `nbf`.
#[test]
fn valid_at_nbf_instant() {
    let token = token(Algorithm::RS256, &claims_with("nbf", json!(NOW)));
    let verifier = main_verifier_with_leeway(0);
    assert!(verify(&verifier, &token).is_ok());
}

#[test]
fn fractional_exp_compared_exactly() {
    let exp = 1.5e9 + 0.25;
    let token = token(Algorithm::RS256, &claims_with("exp", json!(exp)));
    let verifier = main_verifier_with_leeway(0);

    assert!(verifier.verify_at(&token, 1.5e9).is_ok());
    assert!(verifier.verify_at(&token, 1.5e9 + 0.2).is_ok());
    let err = verifier.verify_at(&token, 1.5e9 + 0.5).unwrap_err();
    assert_reason(&err, "expired");
    assert_message_contains(&err, "expired at 1500000000.25");
}

#[test]
fn missing_exp_malformed() {
    let token = token(Algorithm::RS256, &claims_without("exp"));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "no `exp`");
}

#[test]
fn non_numeric_exp_malformed() {
    let token = token(Algorithm::RS256, &claims_with("exp", json!("2030-01-01")));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "`exp`");
}

// Audience.

#[test]
fn string_aud_accepted() {
    let token = token(Algorithm::RS256, &claims_with("aud", json!(AUDIENCE)));
    assert!(verify(&main_verifier(), &token).is_ok());
}

#[test]
fn array_aud_accepted() {
    let token = token(
        Algorithm::RS256,
        &claims_with("aud", json!(["billing", AUDIENCE])),
    );
    assert!(verify(&main_verifier(), &token).is_ok());
}

#[test]
fn missing_aud_bad_audience() {
    let token = token(Algorithm::RS256, &claims_without("aud"));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "bad_audience");
    assert_message_contains(&err, "no `aud`");
}

#[test]
fn wrong_aud_bad_audience() {
    let verifier = main_verifier();
    for aud in [json!("billing"), json!(["billing", "shipping"]), json!([])] {
        let token = token(Algorithm::RS256, &claims_with("aud", aud.clone()));
        let err = verify(&verifier, &token).unwrap_err();
        assert_reason(&err, "bad_audience");
        assert_message_contains(&err, "none of the accepted audiences");
    }
}

#[test]
fn issuer_without_audiences_accepts_any() {
    let toml = format!(
        "[[issuer]]\nname = \"any-audience\"\nissuer = \"{ISS}\"\nalgorithms = [\"RS256\"]\n\
         keys = [{{ pem = \"rsa-public.pem\", kid = \"rsa\" }}]\n"
    );
    let verifier = verifier(&toml, &["rsa-public.pem"]);
    let cases = [
        claims_with("aud", json!("billing")),
        claims_with("aud", json!(["billing", "shipping"])),
        claims_without("aud"),
    ];
    for claims in cases {
        let token = token(Algorithm::RS256, &claims);
        let result = verify(&verifier, &token);
        assert!(result.is_ok(), "aud {:?}: {result:?}", claims.get("aud"));
    }
}

// Issuer.

#[test]
fn unknown_iss_bad_issuer() {
    let token = token(
        Algorithm::RS256,
        &claims_with("iss", json!("https://attacker.test")),
    );
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "bad_issuer");
    assert_message_contains(&err, "`https://attacker.test` is not configured");
}

#[test]
fn missing_iss_bad_issuer() {
    let token = token(Algorithm::RS256, &claims_without("iss"));
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "bad_issuer");
    assert_message_contains(&err, "no `iss`");
}

#[test]
fn issuer_index_names_verifying_issuer() {
    let toml = format!(
        "{MAIN_ISSUER}\n[[issuer]]\nname = \"second\"\nissuer = \"https://second.test\"\n\
         algorithms = [\"ES256\"]\nkeys = [{{ pem = \"ec-p256-public.pem\", kid = \"ec-p256\" }}]\n"
    );
    let verifier = verifier(&toml, &MAIN_KEY_FILES);
    let first = verify(&verifier, &token(Algorithm::ES256, &claims())).unwrap();
    assert_eq!(
        (first.issuer_index, first.issuer_name.as_str()),
        (0, "main")
    );

    let second_claims = claims_with("iss", json!("https://second.test"));
    let second = verify(&verifier, &token(Algorithm::ES256, &second_claims)).unwrap();
    assert_eq!(
        (second.issuer_index, second.issuer_name.as_str()),
        (1, "second")
    );
}

#[test]
fn cached_token_rechecks_times() {
    let verifier = main_verifier_with_leeway(0);
    let token = token(Algorithm::ES256, &claims());
    assert!(verify(&verifier, &token).is_ok());
    assert!(verify(&verifier, &token).is_ok());
    assert_eq!(verifier.cache_stats().hits, 1);

    // The cached entry does not outlive `exp`.
    let err = verifier.verify_at(&token, (NOW + 600) as f64).unwrap_err();
    assert_reason(&err, "expired");
}

// Key selection.

#[test]
fn unknown_kid_unknown_key() {
    let token = sign(Algorithm::RS256, Some("retired-2019"), &claims());
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "unknown_key");
    assert_message_contains(&err, "`retired-2019`");
}

#[test]
fn kid_of_other_key_type_disallowed() {
    // Signed with the P-256 key, but the kid names the RSA key.
    let token = sign(Algorithm::ES256, Some("rsa"), &claims());
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "disallowed_algorithm");
    assert_message_contains(&err, "does not fit key `rsa`");
}

// Key confusion: an attacker with the issuer's RSA public key uses its PEM bytes as an
// HMAC secret, so a verifier that passed the configured key bytes to HMAC would accept it.

fn hs256_keyed_with_rsa_pem(kid: Option<&str>) -> String {
    let key = EncodingKey::from_secret(&test_key("rsa-public.pem"));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims(), &key).unwrap()
}

#[test]
fn key_confusion_rs256_only_issuer() {
    let toml = format!(
        "[[issuer]]\nname = \"rs256-only\"\nissuer = \"{ISS}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = [\"RS256\"]\nkeys = [{{ pem = \"rsa-public.pem\", kid = \"rsa\" }}]\n"
    );
    let verifier = verifier(&toml, &["rsa-public.pem"]);
    for kid in [Some("rsa"), None] {
        let err = verify(&verifier, &hs256_keyed_with_rsa_pem(kid)).unwrap_err();
        assert_reason(&err, "disallowed_algorithm");
        assert_message_contains(&err, "`HS256` is not allowed");
    }
}

#[test]
fn key_confusion_kid_names_rsa_key() {
    let toml = format!(
        "[[issuer]]\nname = \"mixed\"\nissuer = \"{ISS}\"\naudiences = [\"{AUDIENCE}\"]\n\
         algorithms = [\"HS256\", \"RS256\"]\nkeys = [\n\
         {{ pem = \"rsa-public.pem\", kid = \"rsa\" }},\n\
         {{ secret_file = \"hmac-secret.txt\", kid = \"hmac\" }},\n]\n"
    );
    let verifier = verifier(&toml, &["rsa-public.pem", "hmac-secret.txt"]);

    let err = verify(&verifier, &hs256_keyed_with_rsa_pem(Some("rsa"))).unwrap_err();
    assert_reason(&err, "disallowed_algorithm");
    assert_message_contains(&err, "does not fit key `rsa`");

    // Without a kid only the HMAC secret is a candidate, and it does not match.
    let err = verify(&verifier, &hs256_keyed_with_rsa_pem(None)).unwrap_err();
    assert_reason(&err, "bad_signature");
}

// Unsecured tokens.

#[test]
fn alg_none_rejected_in_every_spelling() {
    let verifier = main_verifier();
    let payload = serde_json::to_vec(&claims()).unwrap();
    for spelling in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": spelling, "typ": "JWT" }).to_string();
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(&payload));
        // An unsecured JWS has an empty signature part; a forged one may carry any bytes.
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = format!("{signing_input}.{signature}");
            let err = verify(&verifier, &token).unwrap_err();
            assert_eq!(
                err.code(),
                "disallowed_algorithm",
                "alg `{spelling}`, signature `{signature}`: {err}"
            );
            assert_message_contains(&err, &format!("`{spelling}` is not supported"));
        }
    }
}

#[test]
fn hs256_empty_signature_malformed() {
    let token = token(Algorithm::HS256, &claims());
    let [header, payload, _] = parts(&token);
    let err = verify(&main_verifier(), &format!("{header}.{payload}.")).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "signature is empty");
}

// Signatures.

#[test]
fn tampered_payload_bad_signature() {
    let verifier = main_verifier();
    let forged = serde_json::to_vec(&claims_with("sub", json!("admin"))).unwrap();
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let token = token(alg, &claims());
        let [header, _, signature] = parts(&token);
        let tampered = format!("{header}.{}.{signature}", b64(&forged));
        let err = verify(&verifier, &tampered).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{alg:?}: {err}");
    }
}

#[test]
fn other_key_bad_signature() {
    let verifier = main_verifier();
    let cases = [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"a different secret of at least 32 bytes"),
            "hmac",
        ),
        (
            Algorithm::RS256,
            private_key(EncodingKey::from_rsa_pem, "rsa-other"),
            "rsa",
        ),
        (
            Algorithm::PS256,
            private_key(EncodingKey::from_rsa_pem, "rsa-other"),
            "rsa",
        ),
        (
            Algorithm::ES256,
            private_key(EncodingKey::from_ec_pem, "ec-p256-other"),
            "ec-p256",
        ),
    ];
    for (alg, key, kid) in cases {
        for kid in [Some(kid), None] {
            let mut header = Header::new(alg);
            header.kid = kid.map(str::to_owned);
            let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
            let err = verify(&verifier, &token).unwrap_err();
            assert_eq!(err.code(), "bad_signature", "{alg:?}, kid {kid:?}: {err}");
        }
    }
}

// Key references in the header. The attacker signs with their own RSA key and points the
// verifier at its public half; every `kid` choice must still be rejected.

/// Signs `claims()` with the attacker's key (`rsa-other`) under a header made by `edit`,
/// once for each `kid` an attacker may choose, and checks each rejection. Without a kid,
/// or with the issuer's own kid, the issuer's keys are tried (`bad_signature`). The
/// attacker's own kid is not among them (`unknown_key`).
fn assert_header_key_ignored(edit: impl Fn(&mut Header)) {
    let verifier = main_verifier();
    let attacker_key = private_key(EncodingKey::from_rsa_pem, "rsa-other");
    let cases = [
        (None, "bad_signature"),
        (Some("rsa"), "bad_signature"),
        (Some("attacker"), "unknown_key"),
    ];
    for (kid, code) in cases {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        edit(&mut header);
        let token = jsonwebtoken::encode(&header, &claims(), &attacker_key).unwrap();
        let err = verify(&verifier, &token).unwrap_err();
        assert_eq!(err.code(), code, "kid {kid:?}: {err}");
    }
}

/// Opens a listener on a free local port for key URLs, so a test can check that the
/// verifier never fetched them.
fn key_url_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    (listener, url)
}

/// Checks that nothing connected to `listener`. Verification is synchronous, so a
/// connection it made would already wait in the accept queue.
fn assert_never_contacted(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the verifier connected to the key URL from {peer}"),
        Err(err) => panic!("failed to poll the key URL listener: {err}"),
    }
}

#[test]
fn jku_header_not_trusted() {
    let (listener, url) = key_url_listener();
    assert_header_key_ignored(|header| header.jku = Some(url.clone()));
    assert_never_contacted(&listener);
}

#[test]
fn x5u_header_not_trusted() {
    let (listener, url) = key_url_listener();
    assert_header_key_ignored(|header| header.x5u = Some(url.clone()));
    assert_never_contacted(&listener);
}

#[test]
fn embedded_jwk_not_trusted() {
    let attacker_key = private_key(EncodingKey::from_rsa_pem, "rsa-other");
    let jwk = Jwk::from_encoding_key(&attacker_key, Algorithm::RS256).unwrap();
    assert_header_key_ignored(|header| header.jwk = Some(jwk.clone()));
}

// Malformed tokens.

#[test]
fn crit_header_malformed() {
    let header = json!({
        "alg": "RS256",
        "kid": "rsa",
        "crit": ["https://example.test/ext"],
        "https://example.test/ext": true,
    });
    let (key, _) = signing_key(Algorithm::RS256);
    let payload = serde_json::to_vec(&claims()).unwrap();
    let token = sign_parts(
        header.to_string().as_bytes(),
        &payload,
        &key,
        Algorithm::RS256,
    );
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "`crit`");
}

#[test]
fn two_part_token_malformed() {
    let token = token(Algorithm::RS256, &claims());
    let [header, payload, _] = parts(&token);
    let err = verify(&main_verifier(), &format!("{header}.{payload}")).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "found 2");
}

#[test]
fn jwe_shaped_token_malformed() {
    let header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa"}"#);
    let token = format!("{header}.a2V5.aXY.Y2lwaGVydGV4dA.dGFn");
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "JWE");
}

#[test]
fn non_base64url_parts_malformed() {
    let verifier = main_verifier();
    let token = token(Algorithm::RS256, &claims());
    let [header, payload, signature] = parts(&token);
    let cases = [
        (format!("{header}!.{payload}.{signature}"), "header"),
        (format!("{header}=.{payload}.{signature}"), "header"),
        (format!("{header}.{payload}*.{signature}"), "payload"),
        (format!("{header}.{payload}.{signature}+/"), "signature"),
    ];
    for (token, part) in cases {
        let err = verify(&verifier, &token).unwrap_err();
        assert_eq!(err.code(), "malformed", "{part}: {err}");
        assert_message_contains(&err, &format!("{part} is not base64url"));
    }
}

#[test]
fn non_json_header_malformed() {
    let (key, _) = signing_key(Algorithm::HS256);
    let payload = serde_json::to_vec(&claims()).unwrap();
    let token = sign_parts(b"alg=HS256", &payload, &key, Algorithm::HS256);
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "header is not JSON");
}

#[test]
fn array_payload_malformed() {
    let (key, _) = signing_key(Algorithm::RS256);
    let header = br#"{"alg":"RS256","kid":"rsa"}"#;
    let payload = serde_json::to_vec(&json!([claims()])).unwrap();
    let token = sign_parts(header, &payload, &key, Algorithm::RS256);
    let err = verify(&main_verifier(), &token).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "payload is not a JSON object");
}

#[test]
fn oversized_token_too_large() {
    let verifier = main_verifier();

    // The same kind of token under the limit verifies, so the size alone decides.
    let below = token(
        Algorithm::RS256,
        &claims_with("padding", json!("x".repeat(11_000))),
    );
    assert!(below.len() < MAX_TOKEN_BYTES, "{} bytes", below.len());
    assert!(verify(&verifier, &below).is_ok());

    let above = token(
        Algorithm::RS256,
        &claims_with("padding", json!("x".repeat(MAX_TOKEN_BYTES))),
    );
    assert!(above.len() > MAX_TOKEN_BYTES);
    let err = verify(&verifier, &above).unwrap_err();
    assert_reason(&err, "token_too_large");
    assert_message_contains(&err, "more than the limit of 16384");
}

// Key loading.

/// An issuer whose keys come from a key set URL, with `tokens` settings before it.
fn remote_issuer_toml(tokens: &str) -> String {
    format!(
        "[tokens]\n{tokens}\n[[issuer]]\nname = \"remote\"\nissuer = \"{ISS}\"\n\
         algorithms = [\"RS256\"]\nkeys = [{{ jwks_url = \"https://issuer.test/keys\" }}]\n"
    )
}

#[test]
fn ca_file_without_certificates_rejected() {
    let toml = remote_issuer_toml("jwks_ca_file = \"rsa-public.pem\"");
    let err = load_error(load_verifier(&toml, &["rsa-public.pem"]));
    assert_message_contains(&err, "`tokens.jwks_ca_file`");
    assert_message_contains(&err, "no `CERTIFICATE` block");
}

#[test]
fn ca_file_missing_rejected() {
    let toml = remote_issuer_toml("jwks_ca_file = \"missing.pem\"");
    let err = load_error(load_verifier(&toml, &[]));
    assert_message_contains(&err, "missing.pem");
}

#[test]
fn remote_keys_unavailable_before_fetch() {
    // No fetch runs here, so the issuer's only key set is never loaded.
    let verifier = verifier(&remote_issuer_toml(""), &[]);
    let err = verify(&verifier, &token(Algorithm::RS256, &claims())).unwrap_err();
    assert_reason(&err, "keys_unavailable");
    assert_message_contains(&err, "has not been fetched yet");
    assert_eq!(verifier.issuers_waiting_for_keys(), ["remote"]);
}

/// Returns the entry with `kid` from `tests/keys/jwks.json`.
fn test_jwk(kid: &str) -> Value {
    let jwks: Value = serde_json::from_slice(&test_key("jwks.json")).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let jwk = keys.iter().find(|jwk| jwk["kid"] == kid);
    jwk.unwrap_or_else(|| panic!("jwks.json has no key `{kid}`"))
        .clone()
}

#[test]
fn jwks_enc_key_skipped() {
    let algorithms = r#"["RS256", "ES256"]"#;
    let mut enc_key = test_jwk("ec-p256");
    enc_key["use"] = json!("enc");
    let jwks = json!({ "keys": [test_jwk("rsa"), enc_key] });
    let verifier = load_jwks_verifier(algorithms, &jwks).unwrap();

    let err = verify(&verifier, &token(Algorithm::ES256, &claims())).unwrap_err();
    assert_reason(&err, "unknown_key");
    assert!(verify(&verifier, &token(Algorithm::RS256, &claims())).is_ok());

    // The same key without `use: enc` verifies, so the skip is what rejected the token.
    let jwks = json!({ "keys": [test_jwk("rsa"), test_jwk("ec-p256")] });
    let verifier = load_jwks_verifier(algorithms, &jwks).unwrap();
    assert!(verify(&verifier, &token(Algorithm::ES256, &claims())).is_ok());
}

#[test]
fn jwk_alg_conflicting_with_kty_rejected() {
    let algorithms =
        r#"["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]"#;
    let cases = [
        ("rsa", "ES256", "RSA"),
        ("ec-p256", "RS256", "EC P-256"),
        ("ec-p384", "ES256", "EC P-384"),
        ("ed25519", "ES256", "Ed25519"),
    ];
    for (kid, alg, key_type) in cases {
        let mut jwk = test_jwk(kid);
        jwk["alg"] = json!(alg);
        let err = load_error(load_jwks_verifier(algorithms, &json!({ "keys": [jwk] })));
        assert_message_contains(&err, &format!("`alg` {alg} does not fit"));
        assert_message_contains(&err, &format!("{key_type} key"));
        assert_message_contains(&err, "jwks.json");
    }
}

#[test]
fn hmac_jwk_with_rsa_alg_rejected() {
    let jwk = json!({
        "kty": "oct",
        "kid": "hmac",
        "alg": "RS256",
        "k": b64(&hmac_secret()),
    });
    let result = load_jwks_verifier(r#"["HS256", "RS256"]"#, &json!({ "keys": [jwk] }));
    let err = load_error(result);
    assert_message_contains(&err, "`hmac`");
}

#[test]
fn jwk_alg_pins_key() {
    let mut jwk = test_jwk("rsa");
    jwk["alg"] = json!("RS256");
    let verifier = load_jwks_verifier(r#"["RS256", "PS256"]"#, &json!({ "keys": [jwk] })).unwrap();

    assert!(verify(&verifier, &token(Algorithm::RS256, &claims())).is_ok());
    let err = verify(&verifier, &token(Algorithm::PS256, &claims())).unwrap_err();
    assert_reason(&err, "disallowed_algorithm");
}

#[test]
fn pem_private_key_rejected() {
    for (name, algorithm) in [
        ("rsa", "RS256"),
        ("ec-p256", "ES256"),
        ("ec-p384", "ES384"),
        ("ed25519", "EdDSA"),
    ] {
        let file = format!("{name}-private.pem");
        let toml = format!(
            "[[issuer]]\nname = \"private\"\nissuer = \"{ISS}\"\nalgorithms = [\"{algorithm}\"]\n\
             keys = [{{ pem = \"{file}\" }}]\n"
        );
        let err = load_error(load_verifier(&toml, &[file.as_str()]));
        assert_message_contains(&err, &file);
        assert_message_contains(&err, "this is a private key");
        assert_message_contains(&err, "openssl pkey -pubout");
    }
}

#[test]
fn short_hmac_secret_rejected() {
    let toml = format!(
        "[[issuer]]\nname = \"hmac\"\nissuer = \"{ISS}\"\nalgorithms = [\"HS256\"]\n\
         keys = [{{ secret_file = \"secret.txt\" }}]\n"
    );
    let load = |secret: &[u8]| {
        let (_dir, config) = write_config(&toml, &[("secret.txt", secret)]);
        Verifier::from_config(&config)
    };

    let err = load_error(load(&[b'k'; 31]));
    assert_message_contains(&err, "secret.txt");
    assert_message_contains(&err, "31 bytes; use at least 32");
    // Whitespace around the secret in the file does not count.
    let err = load_error(load(b"  0123456789abcdef0123456789abcde\n"));
    assert_message_contains(&err, "31 bytes");
    assert!(load(&[b'k'; 32]).is_ok());

    let jwks = json!({ "keys": [{ "kty": "oct", "kid": "short", "k": b64(&[7; 16]) }] });
    let err = load_error(load_jwks_verifier(r#"["HS256"]"#, &jwks));
    assert_message_contains(&err, "16 bytes; use at least 32");
}

#[test]
fn hmac_secret_shorter_than_hs512_hash_rejected() {
    let toml = format!(
        "[[issuer]]\nname = \"hmac\"\nissuer = \"{ISS}\"\nalgorithms = [\"HS256\", \"HS512\"]\n\
         keys = [{{ secret_file = \"secret.txt\", kid = \"shared\" }}]\n"
    );
    let load = |secret: &[u8]| {
        let (_dir, config) = write_config(&toml, &[("secret.txt", secret)]);
        Verifier::from_config(&config)
    };

    let err = load_error(load(&[b'k'; 32]));
    assert_message_contains(&err, "issuer `hmac`");
    assert_message_contains(&err, "key `shared`");
    assert_message_contains(&err, "secret.txt");
    assert_message_contains(&err, "has 32 bytes, but HS512 needs at least 64");
    assert!(load(&[b'k'; 63]).is_err());
    assert!(load(&[b'k'; 64]).is_ok());
}

#[test]
fn hmac_secret_sized_for_largest_allowed_hash() {
    let cases: [(&str, usize, bool); 6] = [
        (r#"["HS256"]"#, 32, true),
        (r#"["HS384"]"#, 47, false),
        (r#"["HS384"]"#, 48, true),
        (r#"["HS256", "HS384"]"#, 40, false),
        (r#"["HS384", "HS512"]"#, 48, false),
        (r#"["RS256", "HS512"]"#, 64, true),
    ];
    for (algorithms, len, loads) in cases {
        let jwks = json!({ "keys": [{ "kty": "oct", "kid": "shared", "k": b64(&vec![7; len]) }] });
        let result = load_jwks_verifier(algorithms, &jwks);
        assert_eq!(
            result.is_ok(),
            loads,
            "{len}-byte unpinned oct key with algorithms {algorithms}: {:?}",
            result.err().map(|err| err.to_string())
        );
    }
}

#[test]
fn hmac_jwk_pinned_to_hs384_needs_48_bytes() {
    let jwk = |len: usize| json!({ "keys": [{ "kty": "oct", "kid": "pinned", "alg": "HS384", "k": b64(&vec![7; len]) }] });

    let err = load_error(load_jwks_verifier(r#"["HS256", "HS384"]"#, &jwk(40)));
    assert_message_contains(&err, "issuer `jwks`");
    assert_message_contains(&err, "key `pinned`");
    assert_message_contains(&err, "has 40 bytes, but HS384 needs at least 48");
    // The pin limits the key to HS384, so HS512 being allowed does not raise its minimum.
    assert!(load_jwks_verifier(r#"["HS384", "HS512"]"#, &jwk(48)).is_ok());
}

// RFC 7515 appendix A and RFC 7517 appendix A vectors from the external corpus. Expected
// values come from the vector files, which transcribe the RFCs.

/// An instant before the RFC 7515 example tokens expire: their `exp` is 1300819380
/// (2011-03-22T18:43:00Z).
const BEFORE_RFC7515_EXP: f64 = 1_300_819_000.0;

/// Reads a vector file of the corpus, or returns `None` when the corpus is skipped.
fn corpus_vector(relative_path: &str) -> Option<Value> {
    let path = corpus_dir()?.join(relative_path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()));
    Some(serde_json::from_str(&text).unwrap())
}

/// Builds a verifier for issuer `joe`, the `iss` of the RFC 7515 examples, with no
/// audiences, the one algorithm `alg` and `jwk` as its only key.
fn rfc7515_verifier(alg: &str, jwk: &Value) -> Verifier {
    let toml = format!(
        "[[issuer]]\nname = \"rfc7515\"\nissuer = \"joe\"\nalgorithms = [\"{alg}\"]\n\
         keys = [{{ jwks = \"jwks.json\" }}]\n"
    );
    let jwks = json!({ "keys": [jwk] }).to_string();
    let (_dir, config) = write_config(&toml, &[("jwks.json", jwks.as_bytes())]);
    Verifier::from_config(&config).unwrap()
}

/// Checks that the vector's token verifies before its `exp` with the key in `key_member`,
/// yields the vector's claims, and is expired at the real time.
fn assert_rfc7515_vector_verifies(file: &str, key_member: &str) {
    let Some(vector) = corpus_vector(&format!("jwt/rfc7515/{file}")) else {
        return;
    };
    assert_eq!(vector["expected"]["signature_valid"], json!(true));
    let alg = vector["alg"].as_str().unwrap();
    let token = vector["compact"].as_str().unwrap();
    let verifier = rfc7515_verifier(alg, &vector[key_member]);

    let verified = verifier.verify_at(token, BEFORE_RFC7515_EXP).unwrap();
    assert_eq!(verified.issuer_name, "rfc7515");
    assert_eq!(Value::Object((*verified.claims).clone()), vector["claims"]);

    let err = verifier.verify(token).unwrap_err();
    assert_reason(&err, "expired");
}

#[test]
fn rfc7515_a1_hs256_verifies() {
    // The HMAC key is symmetric, so the vector has it only in `jwk_private`.
    assert_rfc7515_vector_verifies("A.1_HS256.json", "jwk_private");
}

#[test]
fn rfc7515_a2_rs256_verifies() {
    assert_rfc7515_vector_verifies("A.2_RS256.json", "jwk_public");
}

#[test]
fn rfc7515_a3_es256_verifies() {
    assert_rfc7515_vector_verifies("A.3_ES256.json", "jwk_public");
}

#[test]
fn rfc7515_a4_es512_rejected() {
    let Some(vector) = corpus_vector("jwt/rfc7515/A.4_ES512.json") else {
        return;
    };
    // P-521 keys are skipped when a JWK Set loads, so the issuer is given a P-256 key.
    let Some(es256) = corpus_vector("jwt/rfc7515/A.3_ES256.json") else {
        return;
    };
    let verifier = rfc7515_verifier("ES256", &es256["jwk_public"]);
    let token = vector["compact"].as_str().unwrap();

    let err = verifier.verify_at(token, BEFORE_RFC7515_EXP).unwrap_err();
    assert_reason(&err, "disallowed_algorithm");
    assert_message_contains(&err, "`ES512` is not supported");
}

#[test]
fn rfc7515_a5_alg_none_rejected() {
    let Some(vector) = corpus_vector("jwt/rfc7515/A.5_none.json") else {
        return;
    };
    assert_eq!(vector["expected"]["verifier_must_reject"], json!(true));
    let Some(hs256) = corpus_vector("jwt/rfc7515/A.1_HS256.json") else {
        return;
    };
    let verifier = rfc7515_verifier("HS256", &hs256["jwk_private"]);
    let token = vector["compact"].as_str().unwrap();

    for result in [
        verifier.verify_at(token, BEFORE_RFC7515_EXP),
        verifier.verify(token),
    ] {
        let err = result.unwrap_err();
        assert_reason(&err, "disallowed_algorithm");
        assert_message_contains(&err, "`none` is not supported");
    }
}

#[test]
fn rfc7517_a1_public_keys_load() {
    let Some(jwks) = corpus_vector("jwt/rfc7517/A.1.jwks.json") else {
        return;
    };
    let verifier = load_jwks_verifier(r#"["RS256", "ES256"]"#, &jwks).unwrap();

    // The RSA key loads under kid "2011-04-29": a token naming it reaches the signature
    // check, which fails because the test RSA key signed it.
    let rs256 = sign(Algorithm::RS256, Some("2011-04-29"), &claims());
    let err = verify(&verifier, &rs256).unwrap_err();
    assert_reason(&err, "bad_signature");
    let es256 = sign(Algorithm::ES256, Some("2011-04-29"), &claims());
    let err = verify(&verifier, &es256).unwrap_err();
    assert_reason(&err, "disallowed_algorithm");
    assert_message_contains(&err, "(RSA)");

    // The EC P-256 key with kid "1" is marked `"use": "enc"`, so it is skipped.
    let es256 = sign(Algorithm::ES256, Some("1"), &claims());
    let err = verify(&verifier, &es256).unwrap_err();
    assert_reason(&err, "unknown_key");
}

#[test]
fn aud_array_with_non_string_malformed() {
    let verifier = main_verifier();
    let claims = claims_with("aud", json!([1, AUDIENCE]));
    let err = verify(&verifier, &token(Algorithm::ES256, &claims)).unwrap_err();
    assert_reason(&err, "malformed");
    assert_message_contains(&err, "not a string");
}

#[test]
fn out_of_range_exp_message_short() {
    let verifier = main_verifier();
    let claims = claims_with("exp", json!(-1e308));
    let err = verify(&verifier, &token(Algorithm::ES256, &claims)).unwrap_err();
    assert_reason(&err, "expired");
    assert!(err.to_string().len() < 100, "message too long: {err}");
}
