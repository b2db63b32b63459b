//! The HTTP floor for load benchmarks: a bare axum handler that parses a JSON body and
//! answers with a small JSON object, on the same runtime and allocator as cedargate.
//! Whatever cedargate does per request beyond this is the cost of deciding.
//!
//! Usage: `cargo run --release --example bench-floor -- 127.0.0.1:8182`

#![allow(clippy::expect_used)]

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn answer(Json(body): Json<Value>) -> Json<Value> {
    let action = body.get("action").cloned().unwrap_or(Value::Null);
    Json(json!({ "decision": "allow", "action": action }))
}

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8182".to_owned());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .expect("bind the floor's address");
    let app = axum::Router::new().route("/authorize", post(answer));
    axum::serve(listener, app).await.expect("serve");
}
