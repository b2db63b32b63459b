//! The entity slice and the scope index must not change any decision. These tests generate
//! a bundle with thousands of entities and hundreds of template-linked grants, then
//! compare the engine's result for many requests with Cedar's own result over the whole
//! store and the whole policy set: same decision, same determining policies, same
//! erroring policies.
//!
//! The bundle is the benchmark bundle (`benches/support/bench_bundle.rs`), built from
//! `../shared/bench/cedar-equivalent`. Where that folder is missing, the tests are
//! skipped with a loud line, or fail when `CEDARGATE_REQUIRE_CORPUS` is set, as in CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

#[path = "../benches/support/bench_bundle.rs"]
mod bench_bundle;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use cedar_policy::{Authorizer, Decision, PolicyId};
use cedargate::config::{Config, OnForbidError};
use cedargate::decide::load_snapshot;
use cedargate::mapping::{AuthorizeInput, RequestMeta};
use serde_json::json;

fn shared_bench_present() -> bool {
    let dir = bench_bundle::shared_bench_dir();
    if dir.join("cedar-equivalent").is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CEDARGATE_REQUIRE_CORPUS").is_none(),
        "benchmark material `{}` is missing and CEDARGATE_REQUIRE_CORPUS is set",
        dir.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "!!! scale tests SKIPPED: `{}` does not exist; set CEDARGATE_BENCH_SHARED to the shared bench folder",
        dir.display()
    );
    false
}

/// Returns Cedar's result with every stored entity and every policy, the way the engine worked
/// before it sliced and indexed: the token's principal replaces the stored one.
fn cedar_answer(
    bundle: &cedargate::bundle::Bundle,
    entities: &cedar_policy::Entities,
    mapped: &cedargate::mapping::MappedRequest,
) -> (bool, Vec<String>, Vec<String>) {
    let response = Authorizer::new().is_authorized(&mapped.request, &bundle.policies, entities);
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(PolicyId::to_string)
        .collect();
    reasons.sort();
    let mut errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|error| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            error.policy_id().to_string()
        })
        .collect();
    errors.sort();
    (response.decision() == Decision::Allow, reasons, errors)
}

fn compare_with_cedar(index: &str, grants: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("issuer.pem"),
        common::test_key("ec-p256-public.pem"),
    )
    .unwrap();
    bench_bundle::write(
        dir.path(),
        bench_bundle::Size {
            entities: 1_500,
            grants,
        },
        r#"[{ pem = "issuer.pem" }]"#,
        false,
    )
    .unwrap();
    let path = dir.path().join("cedargate.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "watch = false",
        &format!("watch = false\npolicy_index = \"{index}\""),
    );
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let (snapshot, diagnostics) = load_snapshot(&config);
    let snapshot = snapshot.unwrap_or_else(|| panic!("bundle did not load: {diagnostics:?}"));
    assert_eq!(
        snapshot.bundle.index.enabled(),
        index == "on",
        "index mode `{index}`"
    );

    let mut checked = 0;
    let mut allowed = 0;
    let mut by_grant = 0;
    for user in (0..750).step_by(61).chain([42, 77, 101, 114, 127]) {
        let department = ["engineering", "sales", "support", "finance"][user % 4];
        let claims = json!({
            "sub": format!("u{user}"),
            "department": department,
            "level": user % 7,
            "clearance": user % 5,
            "groups": match user % 5 {
                0 => json!(["dept-engineering", "managers"]),
                1 => json!(["admins"]),
                2 => json!(["auditors"]),
                _ => json!([]),
            },
        });
        let claims = claims.as_object().unwrap();
        // The whole store with this token's principal in place of the stored one.
        let mut entities = None;
        for document in (0..750).step_by(97).chain([7, 1, 13]) {
            for action in ["read", "write", "delete", "share", "list"] {
                for (ip, mfa) in [([10, 1, 2, 3], true), ([203, 0, 113, 9], false)] {
                    let input: AuthorizeInput = serde_json::from_value(json!({
                        "action": action,
                        "resource": { "type": "Document", "id": format!("d{document}") },
                        "context": { "mfa": mfa },
                    }))
                    .unwrap();
                    let meta = RequestMeta {
                        client_ip: IpAddr::V4(Ipv4Addr::from(ip)),
                        time: "2026-03-02T11:00:00Z".parse().unwrap(),
                        method: None,
                        path: None,
                    };
                    let map = || {
                        snapshot
                            .mapping
                            .map(
                                &snapshot.bundle,
                                &config.decision.time_zone,
                                claims,
                                &meta,
                                &input,
                            )
                            .unwrap()
                    };
                    let reference = map();
                    let entities = entities.get_or_insert_with(|| {
                        snapshot
                            .bundle
                            .entities
                            .clone()
                            .upsert_entities([reference.principal.clone()], None)
                            .unwrap()
                    });
                    let expected = cedar_answer(&snapshot.bundle, entities, &reference);
                    let actual =
                        cedargate::engine::evaluate(&snapshot.bundle, map(), OnForbidError::Skip)
                            .unwrap();
                    let actual_errors: Vec<String> =
                        actual.errors.iter().map(|e| e.policy.clone()).collect();
                    assert_eq!(
                        (actual.allowed, actual.policies.clone(), actual_errors),
                        expected,
                        "u{user} {action} d{document} from {ip:?} (index {index})"
                    );
                    checked += 1;
                    allowed += usize::from(expected.0);
                    by_grant += usize::from(expected.1.iter().any(|id| id.starts_with("grant-")));
                }
            }
        }
    }
    // The comparison means something only if both decisions occur, and the grants decide.
    assert!(
        allowed > 20 && checked - allowed > 20,
        "{allowed} of {checked} allowed"
    );
    if grants > 0 {
        assert!(by_grant > 0, "no request was decided by a linked grant");
    }
    let _ = writeln!(
        std::io::stderr(),
        "scale (index {index}, {grants} grants): {checked} requests match Cedar, {allowed} allowed, {by_grant} by a grant"
    );
}

#[test]
fn indexed_and_sliced_answers_match_cedar_over_the_whole_store() {
    if shared_bench_present() {
        compare_with_cedar("on", 600);
    }
}

#[test]
fn sliced_answers_without_index_match_cedar_over_the_whole_store() {
    if shared_bench_present() {
        compare_with_cedar("off", 0);
    }
}
