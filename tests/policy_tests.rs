//! `cedargate test`, run as users run it: the real binary on a copy of the default bundle
//! with test files written into a temporary folder.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn cedargate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir)
        .env_remove("CEDARGATE_CONFIG")
        .env_remove("CEDARGATE_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` as `name` into the bundle copy and runs `cedargate test` on it.
fn run_file(name: &str, text: &str, extra: &[&str]) -> (tempfile::TempDir, Output) {
    let (dir, _config) = common::default_bundle_copy("");
    std::fs::write(dir.path().join(name), text).unwrap();
    let mut args = vec!["test", name];
    args.extend_from_slice(extra);
    let output = cedargate(dir.path(), &args);
    (dir, output)
}

/// The suite in `tests/policies` passes on the default bundle, and covers every policy.
#[test]
fn default_bundle_suite_passes() {
    let output = cedargate(&common::repo_dir(), &["test", "--coverage"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(text.contains(" 0 failed"), "{text}");
    assert!(
        text.contains("coverage: 4 of 4 policies were determining in some case"),
        "{text}"
    );
}

const WRONG: &str = r#"
time: "2026-03-02T10:00:00+01:00"
cases:
  - name: editors may read anything
    claims: { sub: bob, department: sales, groups: [crm-editor] }
    action: read
    resource: { type: Crm::Customer, id: c-1002 }
    expect:
      decision: allow
      policies: [update-by-editor-role]
  - name: sales reads its own customer
    claims: { sub: alice, department: sales }
    action: read
    resource: { type: Crm::Customer, id: c-1001 }
    expect:
      decision: allow
      policies: [read-own-department-in-business-hours]
"#;

/// A failing case shows its name, the expected and actual decision and policy sets, and
/// the run exits non-zero.
#[test]
fn failing_case_reported_with_diff() {
    let (_dir, output) = run_file("wrong.yaml", WRONG, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("test editors may read anything (wrong.yaml:4) ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains("test sales reads its own customer (wrong.yaml:11) ... ok"),
        "{text}"
    );
    assert!(
        text.contains("---- editors may read anything (wrong.yaml:4) ----\ndecision:\n  expected: \"allow\"\n    actual: \"deny\"\npolicies:\n  expected: [\"update-by-editor-role\"]\n    actual: []"),
        "{text}"
    );
    assert!(
        text.contains("test result: FAILED. 1 passed; 1 failed"),
        "{text}"
    );
}

/// `--format json` and `--junit` carry the same results for CI systems.
#[test]
fn json_and_junit_reports() {
    let (dir, output) = run_file(
        "wrong.yaml",
        WRONG,
        &["--format", "json", "--junit", "report.xml"],
    );
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let failed = &report["cases"][0];
    assert_eq!(failed["name"], "editors may read anything");
    assert_eq!(failed["line"], 4);
    assert_eq!(failed["checks"][0]["kind"], "decision");
    assert_eq!(failed["checks"][0]["expected"], "allow");
    assert_eq!(failed["checks"][0]["actual"], "deny");
    assert_eq!(failed["checks"][0]["passed"], false);

    let junit = std::fs::read_to_string(dir.path().join("report.xml")).unwrap();
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert!(
        junit.contains("<testsuites name=\"cedargate test\" tests=\"2\" failures=\"1\">"),
        "{junit}"
    );
    assert!(
        junit.contains("<testcase name=\"editors may read anything\" classname=\"wrong.yaml:4\">"),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"decision, policies differs\">"),
        "{junit}"
    );
}

/// The same requests written with token claims and with the explicit principal entity
/// those claims map to reach the same decisions. Both go through `Pdp::decide` and the
/// mapping's request building; the claims form also through the claim mapping.
#[test]
fn claims_and_explicit_principal_agree() {
    let mut cases = String::from("time: \"2026-03-02T10:00:00+01:00\"\ncases:\n");
    let requests = [
        (
            "read",
            "c-1001",
            "allow",
            "[read-own-department-in-business-hours]",
        ),
        ("read", "c-1002", "deny", "[]"),
        ("update", "c-1001", "allow", "[update-by-editor-role]"),
        ("export", "c-1001", "allow", "[export-with-scope]"),
        (
            "export",
            "c-2001",
            "deny",
            "[forbid-export-under-legal-hold]",
        ),
    ];
    for (action, resource, decision, policies) in requests {
        let request = format!(
            "    action: {action}\n    resource: {{ type: Crm::Customer, id: {resource} }}\n    expect: {{ decision: {decision}, policies: {policies} }}\n"
        );
        cases.push_str(&format!(
            "  - name: {action} {resource} with claims\n    claims: {{ sub: bob, department: sales, groups: [crm-editor], scope: customers:export }}\n{request}"
        ));
        cases.push_str(&format!(
            "  - name: {action} {resource} with an entity\n    principal:\n      uid: {{ type: Crm::User, id: bob }}\n      attrs: {{ department: {{ __entity: {{ type: Crm::Department, id: sales }} }}, scopes: [customers:export] }}\n      parents: [{{ type: Crm::Role, id: crm-editor }}]\n{request}"
        ));
    }
    let (_dir, output) = run_file("pairs.yaml", &cases, &["--format", "json"]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["passed"], 10);

    // Each pair has the same determining policies.
    let results = report["cases"].as_array().unwrap();
    for pair in results.chunks(2) {
        assert_eq!(pair[0]["determining"], pair[1]["determining"], "{pair:?}");
    }
}

/// Mistakes in a test file stop it with the file and line, without a panic, and the run
/// fails.
#[test]
fn malformed_files_name_file_and_line() {
    let cases = [
        (
            "syntax.yaml",
            "cases:\n  - name: x\n    action: [read\n",
            "syntax.yaml:3",
        ),
        (
            "unknown.yaml",
            "cases:\n  - name: x\n    claims: { sub: a, department: sales }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n    colour: blue\n",
            "unknown.yaml:7",
        ),
        (
            "missing-policy.yaml",
            "cases:\n  - name: x\n    claims: { sub: a, department: sales }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect:\n      decision: allow\n      policies:\n        - no-such-policy\n",
            "missing-policy.yaml:9",
        ),
        (
            "bad.json",
            "{\"cases\": [ {\"name\": \"x\",, } ]}",
            "bad.json:1",
        ),
        (
            "twice.yaml",
            "cases:\n  - name: x\n    claims: { sub: a }\n    principal: { uid: { type: Crm::User, id: a }, attrs: {}, parents: [] }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n",
            "twice.yaml:2",
        ),
    ];
    for (name, text, location) in cases {
        let (_dir, output) = run_file(name, text, &[]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {out}");
        assert!(
            out.contains(&format!("error: {location}: ")),
            "{name}: expected `{location}` in:\n{out}"
        );
        assert!(!stderr(&output).contains("panicked"), "{name}");
    }
}

/// Unknown fields are errors wherever they are: in the file, a case or `expect`.
#[test]
fn unknown_fields_rejected_everywhere() {
    for (text, field) in [
        ("cases: []\nclock: now\n", "clock"),
        (
            "cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001, extra: 1 }\n    expect: { decision: deny, policies: [] }\n",
            "extra",
        ),
        (
            "cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [], reason: [] }\n",
            "reason",
        ),
    ] {
        let (_dir, output) = run_file("fields.yaml", text, &[]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{out}");
        assert!(out.contains(&format!("unknown field `{field}`")), "{out}");
    }
}

/// A Cedar CLI `run-tests` file runs unchanged, with the Cedar CLI's policy IDs.
#[test]
fn cedar_cli_run_tests_file_unchanged() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let sample = corpus.join("cedar-cli-samples/tiny_sandboxes/sample1");
    let policies = sample.join("policy.cedar");
    let schema = sample.join("schema.cedarschema");
    let tests = sample.join("tests-named.json");
    let output = cedargate(
        &sample,
        &[
            "test",
            "--policies",
            policies.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
            tests.to_str().unwrap(),
        ],
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(text.contains("test good-test ("), "{text}");
    assert!(
        text.contains("test result: ok. 3 passed; 0 failed"),
        "{text}"
    );
}

/// Coverage lists a policy that no case made determining, with its place.
#[test]
fn coverage_lists_untested_policies() {
    let text = "time: \"2026-03-02T10:00:00+01:00\"\ncases:\n  - name: read\n    claims: { sub: alice, department: sales }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: allow, policies: [read-own-department-in-business-hours] }\n";
    let (_dir, output) = run_file("one.yaml", text, &["--coverage"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("coverage: 1 of 4 policies were determining in some case"),
        "{out}"
    );
    assert!(
        out.contains("never determining: export-with-scope (policies/customers.cedar:"),
        "{out}"
    );
}

/// Collections nested past the limit are rejected with the file and line by a scan that
/// runs before the YAML parser, whose time grows with the square of the depth.
#[test]
fn deep_nesting_rejected_before_parsing() {
    let depth = 100_000;
    let text = format!(
        "cases:\n  - name: x\n    context: {{ a: {}{} }}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    for name in ["deep.yaml", "deep.json"] {
        let text = if name.ends_with(".json") {
            format!(
                "{{\"cases\": [{{\"context\": {{\"a\": {}{}}}}}]}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        } else {
            text.clone()
        };
        let (_dir, output) = run_file(name, &text, &[]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{out}");
        let line = if name.ends_with(".json") { 1 } else { 3 };
        assert!(
            out.contains(&format!(
                "error: {name}:{line}: collections are nested more than 128 levels deep"
            )),
            "{out}"
        );
    }
}

/// Files larger than the limit are rejected by size before they are read, naming the file,
/// its size and the limit: test files, and the entities files that `run-tests` files name.
#[test]
fn oversized_files_rejected() {
    let limit = 16 * 1024 * 1024;
    let (dir, _config) = common::default_bundle_copy("");

    let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
    big.set_len(limit + 1).unwrap();
    let output = cedargate(dir.path(), &["test", "big.yaml"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "error: big.yaml: file is too large: {} bytes or more, but at most {limit} bytes",
            limit + 1
        )),
        "{out}"
    );

    let entities = std::fs::File::create(dir.path().join("entities.json")).unwrap();
    entities.set_len(limit + 1).unwrap();
    std::fs::write(
        dir.path().join("run.json"),
        r#"[{"name": "big entities", "request": {"principal": "Crm::User::\"a\"", "action": "Crm::Action::\"read\"", "resource": "Crm::Customer::\"c-1001\"", "context": {"ip": {"__extn": {"fn": "ip", "arg": "127.0.0.1"}}, "region": "eu", "time": {"__extn": {"fn": "datetime", "arg": "2026-03-02T10:00:00Z"}}, "hour": 10, "minute": 0, "weekday": 1, "caller": {}}}, "entities": "entities.json", "decision": "deny", "reason": [], "num_errors": 0}]"#,
    )
    .unwrap();
    let output = cedargate(dir.path(), &["test", "run.json"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("entities.json: file is too large"), "{out}");
}

/// Cases are reported at the line where their item starts, even when their name also
/// appears earlier in the file; entities errors point at the entity's own line.
#[test]
fn case_lines_from_position_not_name() {
    let text = "description: a\ntime: \"2026-03-02T10:00:00+01:00\"\ncases:\n  - name: b\n    claims: { sub: a, department: sales }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: allow, policies: [read-own-department-in-business-hours] }\n  - name: a\n    claims: { sub: a, department: sales }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n";
    let (_dir, output) = run_file("names.yaml", text, &[]);
    let out = stdout(&output);
    assert!(out.contains("test b (names.yaml:4) ... ok"), "{out}");
    assert!(out.contains("test a (names.yaml:9) ... FAILED"), "{out}");

    let json = r#"{"cases": [
  {"name": "a", "claims": {"sub": "a", "department": "sales"}, "action": "read",
   "resource": {"type": "Crm::Customer", "id": "c-1001"},
   "expect": {"decision": "allow", "policies": ["read-own-department-in-business-hours"]}, "time": "2026-03-02T10:00:00+01:00"},
  {"name": "b", "claims": {"sub": "a", "department": "sales"}, "action": "read",
   "resource": {"type": "Crm::Customer", "id": "c-1001"},
   "expect": {"decision": "deny", "policies": []}, "time": "2026-03-02T10:00:00+01:00"}
]}"#;
    let (_dir, output) = run_file("names.json", json, &[]);
    let out = stdout(&output);
    assert!(out.contains("test a (names.json:2) ... ok"), "{out}");
    assert!(out.contains("test b (names.json:5) ... FAILED"), "{out}");

    let entities = "entities:\n  - { uid: { type: Crm::Role, id: entities }, attrs: {}, parents: [] }\n  - { uid: { type: Crm::Nope, id: x }, attrs: {}, parents: [] }\ncases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n";
    let (_dir, output) = run_file("entities.yaml", entities, &[]);
    let out = stdout(&output);
    assert!(out.contains("error: entities.yaml:3: entities[1]"), "{out}");
}

/// A file without cases is an error naming the file, and every file given is counted.
#[test]
fn file_without_cases_fails() {
    for (name, text) in [
        ("empty.json", "[]"),
        ("empty-cases.json", "{\"cases\": []}"),
        ("empty.yaml", "cases: []\n"),
    ] {
        let (_dir, output) = run_file(name, text, &[]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {out}");
        assert!(
            out.contains("running 0 cases from 1 file\n"),
            "{name}: {out}"
        );
        assert!(
            out.contains(&format!("error: {name}:1: the file has no")),
            "{name}: {out}"
        );
    }
}

/// Test files, cases and their parts are read only from mappings, never from positional
/// arrays; a `run-tests` item without `request` is named with the missing field.
#[test]
fn positional_arrays_rejected() {
    let cases = [
        ("top.yaml", "- [x]\n", "top.yaml:1: invalid test file: "),
        (
            "case.json",
            r#"{"cases": [["x", {"sub": "a"}, null, "read", ["Crm::Customer", "c-1001"], {}, null, null, null, {}, null, ["allow", []]]]}"#,
            "case.json:1: invalid test file: invalid type: sequence, expected a mapping",
        ),
        (
            "resource.yaml",
            "cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: [Crm::Customer, c-1001]\n    expect: { decision: deny, policies: [] }\n",
            "resource.yaml:5: invalid test file: cases[0].resource: invalid type: sequence, expected a mapping",
        ),
        (
            "run.json",
            "[\n{\"name\": \"second\", \"entities\": [], \"decision\": \"allow\", \"reason\": [], \"num_errors\": 0}\n]",
            "run.json:2: invalid Cedar `run-tests` file: at `[0]`: missing field `request`",
        ),
    ];
    for (name, text, expected) in cases {
        let (_dir, output) = run_file(name, text, &[]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {out}");
        assert!(
            out.contains(&format!("error: {expected}")),
            "{name}: expected `{expected}` in:\n{out}"
        );
    }
}

/// Files that cannot be read as a test file say why, with the line where it is known.
#[test]
fn unreadable_files_explained() {
    let mut bomb = String::from(
        "cases:\n  - name: x\n    context:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for level in 1..9 {
        let previous = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        let aliases = vec![format!("*{previous}"); 10].join(", ");
        bomb.push_str(&format!("      {name}: &{name} [{aliases}]\n"));
    }
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "latin1.yaml",
            b"cases:\n  - name: caf\xe9\n".to_vec(),
            "latin1.yaml:2: invalid UTF-8 at byte offset 20",
        ),
        (
            "bomb.yaml",
            bomb.into_bytes(),
            "anchors and aliases expand too far",
        ),
        (
            "two.yaml",
            b"cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n---\ncases: []\n".to_vec(),
            "two.yaml:7: invalid test file: a second YAML document starts here",
        ),
        (
            "deny.yaml",
            b"cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [], deny: forbidden }\n".to_vec(),
            "deny.yaml:2: case `x`: `expect.deny` is `forbidden`, but must be one of forbid, no_permit",
        ),
        (
            "code.yaml",
            b"cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [], error: invalid_claim }\n".to_vec(),
            "code.yaml:2: case `x`: `expect.error` is `invalid_claim`, but must be one of invalid_request, invalid_claims",
        ),
    ];
    for (name, bytes, expected) in cases {
        let (dir, _config) = common::default_bundle_copy("");
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let output = cedargate(dir.path(), &["test", name]);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {out}");
        assert!(
            out.contains(expected),
            "{name}: expected `{expected}` in:\n{out}"
        );
    }
}

/// The summary line counts one case and one file in the singular.
#[test]
fn summary_pluralization() {
    let text = "cases:\n  - name: x\n    claims: { sub: a }\n    action: read\n    resource: { type: Crm::Customer, id: c-1001 }\n    expect: { decision: deny, policies: [] }\n";
    let (_dir, output) = run_file("one.yaml", text, &[]);
    let out = stdout(&output);
    assert!(out.starts_with("running 1 case from 1 file\n"), "{out}");
}
