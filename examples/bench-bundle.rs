//! Writes a synthetic bundle for load benchmarks (see `benches/support/bench_bundle.rs`).
//!
//! Usage: `cargo run --release --example bench-bundle -- DIR ENTITIES GRANTS`
//!
//! The bundle's issuer is a development issuer, so `cedargate token --config
//! DIR/cedargate.toml` mints tokens for it once `cedargate serve` or `validate` has
//! generated its key pair.

#![allow(clippy::expect_used, clippy::indexing_slicing)]

#[path = "../benches/support/bench_bundle.rs"]
mod bench_bundle;

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
