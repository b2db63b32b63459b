//! A first end-to-end check of the real server on a loopback port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::json;

#[tokio::test]
async fn read_allowed_in_business_hours() {
    let (_dir, config) = common::default_bundle_copy("");
    let server = common::TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));

    let token = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales" }),
    ));
    let body = json!({ "action": "read", "resource": { "type": "Crm::Customer", "id": "c-1001" } });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow");
    assert_eq!(
        answer["policies"],
        json!(["read-own-department-in-business-hours"])
    );
    server.stop().await;
}
