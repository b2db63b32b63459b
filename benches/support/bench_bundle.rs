//! Synthetic bundles for benchmarks and scale tests.
//!
//! The policies and schema are the Cedar side of the peer comparison in
//! `../shared/bench/cedar-equivalent` (20 ABAC policies over users in groups and
//! documents in folders), with one change: cedargate keeps the caller's context under
//! `context.caller`, so `context.mfa` becomes `context.caller.mfa`. On top of those, a
//! bundle can hold any number of per-user grants linked from one template, and any
//! number of users and documents.
//!
//! The request every benchmark sends is the one in `../shared/bench/cerbos/check-body.json`:
//! user `u42` of engineering (level 3, clearance 2, group `dept-engineering`) reads
//! document `d7` of engineering, from 10.1.2.3 at 11:00 with MFA. It is allowed by
//! `p01-dept-read-office-hours`.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Size of a generated bundle.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Users and documents together; at least 200.
    pub entities: usize,
    /// Template-linked grants on top of the 20 base policies.
    pub grants: usize,
}

/// Departments cycled through users and documents; index 0 is the benchmark request's.
const DEPARTMENTS: [&str; 4] = ["engineering", "sales", "support", "finance"];

/// Returns the folder of the shared benchmark material, from `CEDARGATE_BENCH_SHARED`
/// or `../shared/bench` beside the repository.
pub fn shared_bench_dir() -> PathBuf {
    std::env::var_os("CEDARGATE_BENCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench"))
}

/// Writes a bundle of `size` into `dir`: `cedargate.toml`, the schema, the policies, the
/// template links and the entities. `issuer_keys` is the TOML value of the issuer's
/// `keys`, and `development` marks it as a development issuer.
pub fn write(dir: &Path, size: Size, issuer_keys: &str, development: bool) -> std::io::Result<()> {
    let source = shared_bench_dir().join("cedar-equivalent");
    let schema = std::fs::read_to_string(source.join("schema.cedarschema"))?
        .replace("mfa: Bool }", "caller: { mfa: Bool } }");
    let policies = std::fs::read_to_string(source.join("policies.cedar"))?
        .replace("context.mfa", "context.caller.mfa");
    if !schema.contains("caller: { mfa: Bool }") || !policies.contains("context.caller.mfa") {
        return Err(std::io::Error::other(format!(
            "{} changed shape: the context no longer ends in `mfa: Bool }}`",
            source.display()
        )));
    }

    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::create_dir_all(dir.join("entities"))?;
    std::fs::write(dir.join("schema.cedarschema"), schema)?;
    std::fs::write(dir.join("policies/base.cedar"), policies)?;
    // A template without links only draws a warning, so it is written only with links.
    if size.grants > 0 {
        std::fs::write(
            dir.join("policies/grants.cedar"),
            "@id(\"grant\")\npermit(principal == ?principal, action == Action::\"write\", resource in ?resource);\n",
        )?;
    }
    std::fs::write(dir.join("links.json"), links(size).to_string())?;
    std::fs::write(
        dir.join("entities/generated.json"),
        entities(size).to_string(),
    )?;
    std::fs::write(dir.join("cedargate.toml"), config(issuer_keys, development))?;
    Ok(())
}

fn config(issuer_keys: &str, development: bool) -> String {
    let mut text = String::new();
    let _ = write!(
        text,
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
forwarded_header = "x-forwarded-for"
max_connections = 4096

[bundle]
policies = "policies"
schema = "schema.cedarschema"
entities = "entities"
links = "links.json"
watch = false

[decision]
action_type = "Action"
time_zone = "UTC"

[[issuer]]
name = "bench"
issuer = "https://bench.cedargate.invalid"
audiences = ["bench-api"]
algorithms = ["ES256"]
keys = {issuer_keys}
development = {development}

[principal]
type = "User"
id_claim = "sub"
[principal.attributes]
department = "department"
level = "level"
clearance = "clearance"
[[principal.parents]]
claim = "groups"
type = "Group"
"#
    );
    text
}

fn uid(entity_type: &str, id: &str) -> Value {
    json!({ "type": entity_type, "id": id })
}

fn users(size: Size) -> usize {
    (size.entities / 2).max(100)
}

fn documents(size: Size) -> usize {
    (size.entities - size.entities / 2).max(100)
}

fn folders(size: Size) -> usize {
    (documents(size) / 100).max(2)
}

fn entities(size: Size) -> Value {
    let mut all = Vec::new();
    for group in [
        "admins",
        "auditors",
        "managers",
        "dept-engineering",
        "dept-sales",
        "dept-support",
        "dept-finance",
    ] {
        all.push(json!({ "uid": uid("Group", group), "attrs": {}, "parents": [] }));
    }
    all.push(json!({ "uid": uid("Folder", "root"), "attrs": {}, "parents": [] }));
    for folder in ["public", "eng-shared"] {
        all.push(
            json!({ "uid": uid("Folder", folder), "attrs": {}, "parents": [uid("Folder", "root")] }),
        );
    }
    for i in 0..folders(size) {
        all.push(json!({
            "uid": uid("Folder", &format!("f{i}")),
            "attrs": {},
            "parents": [uid("Folder", "root")],
        }));
    }

    let user_count = users(size);
    for i in 0..user_count {
        let department = DEPARTMENTS[i % DEPARTMENTS.len()];
        let mut parents = vec![uid("Group", &format!("dept-{department}"))];
        if i % 50 == 1 {
            parents.push(uid("Group", "managers"));
        }
        all.push(json!({
            "uid": uid("User", &format!("u{i}")),
            "attrs": { "department": department, "level": i % 6, "clearance": i % 4 },
            "parents": parents,
        }));
    }

    let folder_count = folders(size);
    for i in 0..documents(size) {
        let department = DEPARTMENTS[i % DEPARTMENTS.len()];
        let document = if i == 7 {
            // The benchmark request's resource, as in the peer's check body.
            json!({
                "uid": uid("Document", "d7"),
                "attrs": {
                    "department": "engineering", "owner": uid("User", "u77"),
                    "classification": 1, "public": false, "locked": false,
                    "editors": [], "readers": [],
                },
                "parents": [uid("Folder", "f1")],
            })
        } else {
            json!({
                "uid": uid("Document", &format!("d{i}")),
                "attrs": {
                    "department": department,
                    "owner": uid("User", &format!("u{}", (i * 7) % user_count)),
                    "classification": i % 4,
                    "public": i % 10 == 0,
                    "locked": i % 13 == 0,
                    "editors": [uid("User", &format!("u{}", (i * 11) % user_count))],
                    "readers": [DEPARTMENTS[(i + 1) % DEPARTMENTS.len()]],
                },
                "parents": [uid("Folder", &format!("f{}", i % folder_count))],
            })
        };
        all.push(document);
    }
    Value::Array(all)
}

fn links(size: Size) -> Value {
    let user_count = users(size);
    let folder_count = folders(size);
    let links: Vec<Value> = (0..size.grants)
        .map(|i| {
            json!({
                "template_id": "grant",
                "link_id": format!("grant-{i}"),
                "args": {
                    "?principal": format!("User::\"u{}\"", (i * 13 + 100) % user_count),
                    "?resource": format!("Folder::\"f{}\"", i % folder_count),
                },
            })
        })
        .collect();
    Value::Array(links)
}

/// Returns the request body of the benchmark request.
pub fn request_body() -> &'static str {
    r#"{"action":"read","resource":{"type":"Document","id":"d7"},"context":{"mfa":true}}"#
}

/// Returns the claims of the benchmark request's token, without the time claims.
pub fn claims() -> serde_json::Map<String, Value> {
    let value = json!({
        "iss": "https://bench.cedargate.invalid",
        "aud": "bench-api",
        "sub": "u42",
        "department": "engineering",
        "level": 3,
        "clearance": 2,
        "groups": ["dept-engineering"],
    });
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}
