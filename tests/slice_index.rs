//! The entity slice and the scope index on small hand-written bundles where the token's
//! principal differs from the stored entity with the same UID. Expected answers follow
//! Cedar's semantics for a store in which the token's principal replaces the stored one:
//! `resource in G` holds when the resource is the principal, or lies below it, and the
//! token puts the principal in `G`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};

use cedargate::config::{Config, OnForbidError};
use cedargate::decide::load_snapshot;
use cedargate::mapping::{AuthorizeInput, RequestMeta};
use serde_json::json;

const SCHEMA: &str = r#"
namespace T {
  entity Group;
  entity User in [Group];
  entity Doc in [User, Group] { size: Long };
  entity Node { next?: Node };
  action view appliesTo { principal: [User], resource: [User, Doc, Node] };
}
"#;

const ENTITIES: &str = r#"[
  { "uid": { "type": "T::Group", "id": "g" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "T::Group", "id": "admins" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "T::User", "id": "alice" }, "attrs": {},
    "parents": [{ "type": "T::Group", "id": "admins" }] },
  { "uid": { "type": "T::User", "id": "carol" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "T::Doc", "id": "d9" }, "attrs": { "size": 1 },
    "parents": [{ "type": "T::User", "id": "carol" }] }
]"#;

/// Loads a bundle with `policies` and the scope index `index`, and decides `view` on
/// `resource` for a token with `claims`.
fn decide(policies: &str, index: &str, claims: serde_json::Value, resource: (&str, &str)) -> bool {
    decide_with(policies, index, ENTITIES, claims, resource).expect("evaluation")
}

fn decide_with(
    policies: &str,
    index: &str,
    entities: &str,
    claims: serde_json::Value,
    resource: (&str, &str),
) -> Result<bool, cedargate::mapping::MappingError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("entities")).unwrap();
    std::fs::write(dir.path().join("policies/p.cedar"), policies).unwrap();
    std::fs::write(dir.path().join("entities/e.json"), entities).unwrap();
    std::fs::write(dir.path().join("schema.cedarschema"), SCHEMA).unwrap();
    std::fs::write(
        dir.path().join("cedargate.toml"),
        format!(
            r#"
[bundle]
policies = "policies"
schema = "schema.cedarschema"
entities = "entities"
watch = false
policy_index = "{index}"

[decision]
action_type = "T::Action"

[principal]
type = "T::User"
id_claim = "sub"
[[principal.parents]]
claim = "groups"
type = "T::Group"
"#
        ),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("cedargate.toml")).unwrap();
    let (snapshot, diagnostics) = load_snapshot(&config);
    let snapshot = snapshot.unwrap_or_else(|| panic!("bundle did not load: {diagnostics:?}"));
    let input: AuthorizeInput = serde_json::from_value(json!({
        "action": "view",
        "resource": { "type": resource.0, "id": resource.1 },
    }))
    .unwrap();
    let meta = RequestMeta {
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        time: "2026-03-02T11:00:00Z".parse().unwrap(),
        method: None,
        path: None,
    };
    let mapped = snapshot.mapping.map(
        &snapshot.bundle,
        &config.decision.time_zone,
        claims.as_object().unwrap(),
        &meta,
        &input,
    )?;
    cedargate::engine::evaluate(&snapshot.bundle, mapped, OnForbidError::Deny)
        .map(|evaluation| evaluation.allowed)
}

const FORBID_IN_G: &str = r#"
permit(principal, action, resource);
forbid(principal, action == T::Action::"view", resource in T::Group::"g");
"#;

#[test]
fn forbid_applies_when_resource_is_principal() {
    for index in ["on", "off"] {
        let allowed = decide(
            FORBID_IN_G,
            index,
            json!({ "sub": "alice", "groups": ["g"] }),
            ("T::User", "alice"),
        );
        assert!(!allowed, "index {index}: alice is in g through her token");
    }
}

#[test]
fn forbid_applies_below_principal() {
    for index in ["on", "off"] {
        let allowed = decide(
            FORBID_IN_G,
            index,
            json!({ "sub": "carol", "groups": ["g"] }),
            ("T::Doc", "d9"),
        );
        assert!(!allowed, "index {index}: d9 is in carol, who is in g");
    }
}

#[test]
fn permit_applies_when_resource_is_principal() {
    let policies = r#"permit(principal, action, resource in T::Group::"g");"#;
    for index in ["on", "off"] {
        let allowed = decide(
            policies,
            index,
            json!({ "sub": "alice", "groups": ["g"] }),
            ("T::User", "alice"),
        );
        assert!(allowed, "index {index}");
    }
}

#[test]
fn stored_groups_do_not_apply_to_principal() {
    // The stored alice is in admins; her token names no groups.
    let policies = r#"permit(principal, action, resource in T::Group::"admins");"#;
    for index in ["on", "off"] {
        let allowed = decide(
            policies,
            index,
            json!({ "sub": "alice", "groups": [] }),
            ("T::User", "alice"),
        );
        assert!(!allowed, "index {index}");
    }
}

#[test]
fn oversized_slice_is_request_error() {
    // A chain of nodes longer than the slice limit, each pointing to the next.
    let count = cedargate::engine::slice::MAX_SLICE_ENTITIES + 5;
    let mut entities =
        vec![json!({ "uid": { "type": "T::User", "id": "alice" }, "attrs": {}, "parents": [] })];
    for i in 0..count {
        let mut attrs = serde_json::Map::new();
        if i + 1 < count {
            attrs.insert(
                "next".into(),
                json!({ "__entity": { "type": "T::Node", "id": format!("n{}", i + 1) } }),
            );
        }
        entities.push(json!({
            "uid": { "type": "T::Node", "id": format!("n{i}") },
            "attrs": attrs,
            "parents": [],
        }));
    }
    let result = decide_with(
        "permit(principal, action, resource);",
        "off",
        &serde_json::Value::Array(entities).to_string(),
        json!({ "sub": "alice" }),
        ("T::Node", "n0"),
    );
    match result {
        Err(cedargate::mapping::MappingError::Request { field, message }) => {
            assert_eq!(field, "resource");
            assert!(message.contains("entities"), "{message}");
        }
        other => panic!("expected a request error, got {other:?}"),
    }
}
