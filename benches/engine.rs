//! Criterion benchmarks of the decision path without HTTP: body parsing, mapping,
//! request building, entity slicing and evaluation (`Pdp::decide` with trusted claims),
//! at several entity-store sizes and policy counts, and token verification for each
//! supported algorithm.
//!
//! `cargo bench --bench engine` runs the full sizes (up to 1,000,000 entities and 20,000
//! policies; generating the largest bundle takes a minute). With
//! `CEDARGATE_BENCH_QUICK=1` only the small sizes run, which is how CI checks that the
//! benchmarks still work. docs/benchmarks.md has the results.

// Benchmark setup may panic: a failed step means the benchmark cannot run.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use cedargate::config::Config;
use cedargate::decide::{Credential, Pdp};
use cedargate::mapping::RequestMeta;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

/// The allocator of the `cedargate` binary, so the numbers match the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/bench_bundle.rs"]
mod bench_bundle;

use bench_bundle::Size;

fn quick() -> bool {
    std::env::var_os("CEDARGATE_BENCH_QUICK").is_some()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Writes a bundle of `size` into a temporary folder and starts a PDP on it, with the
/// scope index set to `index`.
fn pdp(size: Size, index: &str) -> (tempfile::TempDir, Arc<Pdp>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::copy(
        repo().join("tests/keys/ec-p256-public.pem"),
        dir.path().join("issuer.pem"),
    )
    .expect("copy the test key");
    bench_bundle::write(dir.path(), size, r#"[{ pem = "issuer.pem" }]"#, false)
        .expect("write the bundle");
    let config_path = dir.path().join("cedargate.toml");
    let text = std::fs::read_to_string(&config_path).expect("read the config");
    std::fs::write(
        &config_path,
        text.replace(
            "watch = false",
            &format!("watch = false\npolicy_index = \"{index}\""),
        ),
    )
    .expect("write the config");
    let config = Config::load(&config_path).expect("load the config");
    let pdp = cedargate::server::prepare(config).expect("load the bundle");
    (dir, pdp)
}

fn meta() -> RequestMeta {
    RequestMeta {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        time: "2026-03-02T11:00:00Z".parse().expect("timestamp"),
        method: None,
        path: None,
    }
}

/// Benchmarks one decision on `pdp`, after checking that it is the expected allow.
fn bench_decide(c: &mut Criterion, group: &str, id: BenchmarkId, pdp: &Pdp) {
    let claims = bench_bundle::claims();
    let body = bench_bundle::request_body().as_bytes();
    let meta = meta();
    let answer = pdp.decide(Credential::TrustedClaims(&claims), body, &meta);
    assert!(
        answer.is_allow() && answer.policies == ["p01-dept-read-office-hours"],
        "the benchmark request must be allowed by p01, got {answer:?}"
    );
    c.benchmark_group(group).bench_function(id, |b| {
        b.iter(|| black_box(pdp.decide(Credential::TrustedClaims(&claims), body, &meta)))
    });
}

fn store_size(c: &mut Criterion) {
    let sizes: &[usize] = if quick() {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    for &entities in sizes {
        let (_dir, pdp) = pdp(
            Size {
                entities,
                grants: 0,
            },
            "auto",
        );
        bench_decide(
            c,
            "decide_by_store_size",
            BenchmarkId::from_parameter(entities),
            &pdp,
        );
    }
}

fn policy_count(c: &mut Criterion) {
    let grants: &[usize] = if quick() {
        &[0, 200]
    } else {
        &[0, 200, 2_000, 20_000]
    };
    for &grants in grants {
        for index in ["on", "off"] {
            let (_dir, pdp) = pdp(
                Size {
                    entities: 10_000,
                    grants,
                },
                index,
            );
            bench_decide(
                c,
                "decide_by_policy_count",
                BenchmarkId::new(format!("index_{index}"), 20 + grants),
                &pdp,
            );
        }
    }
}

/// Benchmarks token verification with one issuer per algorithm, each with the matching
/// test key. The verification cache is off, so every iteration checks the signature.
fn verification(c: &mut Criterion) {
    use jsonwebtoken::Algorithm::{
        ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let keys = repo().join("tests/keys");
    let read = |file: &str| std::fs::read(keys.join(file)).expect("read the test key");
    let secret = std::fs::read_to_string(keys.join("hmac-secret.txt")).expect("secret");
    let hmac = || jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes());
    let rsa = || jsonwebtoken::EncodingKey::from_rsa_pem(&read("rsa-private.pem")).expect("key");
    // (algorithm, public key file, key kind in the config, signing key)
    let cases = [
        (HS256, "hmac-secret.txt", "secret_file", hmac()),
        (HS384, "hmac-secret.txt", "secret_file", hmac()),
        (HS512, "hmac-secret.txt", "secret_file", hmac()),
        (RS256, "rsa-public.pem", "pem", rsa()),
        (RS384, "rsa-public.pem", "pem", rsa()),
        (RS512, "rsa-public.pem", "pem", rsa()),
        (PS256, "rsa-public.pem", "pem", rsa()),
        (PS384, "rsa-public.pem", "pem", rsa()),
        (PS512, "rsa-public.pem", "pem", rsa()),
        (
            ES256,
            "ec-p256-public.pem",
            "pem",
            jsonwebtoken::EncodingKey::from_ec_pem(&read("ec-p256-private.pem")).expect("key"),
        ),
        (
            ES384,
            "ec-p384-public.pem",
            "pem",
            jsonwebtoken::EncodingKey::from_ec_pem(&read("ec-p384-private.pem")).expect("key"),
        ),
        (
            EdDSA,
            "ed25519-public.pem",
            "pem",
            jsonwebtoken::EncodingKey::from_ed_pem(&read("ed25519-private.pem")).expect("key"),
        ),
    ];
    let mut config = String::from(
        "[bundle]\npolicies = \"p\"\nschema = \"s\"\nentities = \"e\"\n[decision]\naction_type = \"Action\"\n[principal]\ntype = \"User\"\nid_claim = \"sub\"\n[tokens]\ncache_max_entries = 0\n",
    );
    for (algorithm, file, kind, _) in &cases {
        std::fs::copy(keys.join(file), dir.path().join(file)).expect("copy the test key");
        config.push_str(&format!(
            "[[issuer]]\nname = \"{algorithm:?}\"\nissuer = \"https://{algorithm:?}.bench.invalid\"\naudiences = [\"bench-api\"]\nalgorithms = [\"{algorithm:?}\"]\nkeys = [{{ {kind} = \"{file}\" }}]\n"
        ));
    }
    let path = dir.path().join("cedargate.toml");
    std::fs::write(&path, config).expect("write the config");
    let config = Config::load(&path).expect("load the config");
    let verifier = cedargate::token::Verifier::from_config(&config).expect("keys");

    let now = jiff::Timestamp::now().as_second();
    let mut group = c.benchmark_group("verify_token");
    for (algorithm, _, _, key) in &cases {
        let claims = json!({
            "iss": format!("https://{algorithm:?}.bench.invalid"),
            "aud": "bench-api",
            "sub": "u42",
            "exp": now + 3600,
        });
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(*algorithm), &claims, key)
            .expect("mint");
        let now = now as f64;
        verifier
            .verify_at(&token, now)
            .unwrap_or_else(|err| panic!("{algorithm:?} token must verify: {err}"));
        group.bench_function(format!("{algorithm:?}"), |b| {
            b.iter(|| black_box(verifier.verify_at(&token, now)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(if quick() { 10 } else { 50 });
    targets = store_size, policy_count, verification
}
criterion_main!(benches);
