//! Writes a synthetic bundle for load benchmarks (see `benches/support/bench_bundle.rs`).
//!
//! Usage:
//! - `bench-bundle DIR ENTITIES GRANTS` writes the bundle.
//! - `bench-bundle tokens DIR COUNT FILE` writes COUNT distinct tokens for the benchmark
//!   request, one per line, signed with the bundle's development key (which `cedargate
//!   validate --config DIR/cedargate.toml` generates).

#![allow(clippy::expect_used, clippy::indexing_slicing)]

#[path = "../benches/support/bench_bundle.rs"]
mod bench_bundle;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("tokens") {
        let (Some(dir), Some(count), Some(file)) = (args.get(2), args.get(3), args.get(4)) else {
            eprintln!("usage: bench-bundle tokens DIR COUNT FILE");
            std::process::exit(2);
        };
        tokens(
            std::path::Path::new(dir),
            count.parse().expect("COUNT is a number"),
            std::path::Path::new(file),
        );
        return;
    }
    let (Some(dir), Some(entities), Some(grants)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: bench-bundle DIR ENTITIES GRANTS");
        std::process::exit(2);
    };
    let size = bench_bundle::Size {
        entities: entities.parse().expect("ENTITIES is a number"),
        grants: grants.parse().expect("GRANTS is a number"),
    };
    bench_bundle::write(
        std::path::Path::new(dir),
        size,
        r#"[{ jwks = ".cedargate-dev/jwks.json" }]"#,
        true,
    )
    .expect("write the bundle");
}

/// Mints `count` tokens that differ only in `jti`, valid for a day.
fn tokens(dir: &std::path::Path, count: usize, file: &std::path::Path) {
    let dev = dir.join(".cedargate-dev");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        &std::fs::read(dev.join("dev-private-key.pem")).expect("read the development key"),
    )
    .expect("development key");
    let jwks: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dev.join("jwks.json")).expect("read the development JWKS"),
    )
    .expect("JWKS is JSON");
    let kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let header = jsonwebtoken::Header {
        kid,
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
    };
    let now = jiff::Timestamp::now().as_second();
    let mut out = String::new();
    for i in 0..count {
        let mut claims = bench_bundle::claims();
        claims.insert("jti".into(), format!("bench-{i}").into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 86_400).into());
        out.push_str(&jsonwebtoken::encode(&header, &claims, &key).expect("sign"));
        out.push('\n');
    }
    std::fs::write(file, out).expect("write the tokens");
}
