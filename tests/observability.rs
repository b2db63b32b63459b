//! Metrics, the policy inventory, `debug` explanations and shadow mode, over real HTTP.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cedargate::config::Config;
use common::TestServer;
use serde_json::{Value, json};

fn token() -> String {
    common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales", "scope": "customers:export", "groups": ["crm-editor"] }),
    ))
}

fn request(action: &str, id: &str) -> Value {
    json!({ "action": action, "resource": { "type": "Crm::Customer", "id": id } })
}

/// Rewrites the config file of a test folder and parses it again.
fn edit_config(dir: &Path, edit: impl FnOnce(String) -> String) -> Config {
    let path = dir.join("cedargate.toml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, &text).unwrap();
    Config::from_toml(&path, &text).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

/// One sample of the text format: the metric name, its labels and its value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the Prometheus text exposition format (version 0.0.4) strictly: every line is
/// a `# HELP`, a `# TYPE`, another comment or a sample, every sample belongs to a family
/// declared by a `# TYPE` line before it, and names, labels and values are well formed.
fn parse_prometheus(text: &str) -> Samples {
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    for (number, line) in text.lines().enumerate() {
        let context = format!("line {}: `{line}`", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&context);
            assert!(valid_name(name), "{context}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{context}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{context}: declared twice"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect(&context);
            assert!(valid_name(name), "{context}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }

        let (name, rest) = match line.find('{') {
            Some(brace) => (&line[..brace], &line[brace..]),
            None => line.split_at(line.find(' ').expect(&context)),
        };
        assert!(valid_name(name), "{context}");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let mut end = None;
            while let Some((start, c)) = chars.next() {
                if c == '}' {
                    end = Some(start);
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq = inner[start..].find("=\"").expect(&context) + start;
                let key = &inner[start..eq];
                assert!(valid_name(key), "{context}: label `{key}`");
                while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().expect(&context);
                    match c {
                        '\\' => match chars.next().expect(&context).1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("{context}: bad escape `\\{other}`"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(key.to_owned(), value).is_none(), "{context}");
            }
            let end = end.expect(&context);
            rest = &inner[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().expect(&context);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("{context}: bad value")),
        };
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().expect(&context);
        }
        assert!(fields.next().is_none(), "{context}");

        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{context}: no `# TYPE` line before the sample"
        );
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "{context}: duplicate sample"
        );
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples.get(&(name.to_owned(), labels)).copied()
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    server
        .client
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_count_decisions() {
    let (_dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let token = token();
    for (action, id, expected) in [
        ("update", "c-1001", "allow"),
        ("update", "c-1001", "allow"),
        ("export", "c-1001", "allow"),
        ("export", "c-2001", "deny"),
    ] {
        let (_, _, answer) = server.authorize(Some(&token), &request(action, id)).await;
        assert_eq!(answer["decision"], expected, "{answer}");
    }
    let (status, _, _) = server
        .authorize(Some(&format!("{token}x")), &request("read", "c-1001"))
        .await;
    assert_eq!(status, 401);

    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let samples = parse_prometheus(&text);

    let hits = "cedargate_policy_hits_total";
    assert_eq!(
        sample(&samples, hits, &[("policy", "update-by-editor-role")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&samples, hits, &[("policy", "export-with-scope")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            hits,
            &[("policy", "forbid-export-under-legal-hold")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            hits,
            &[("policy", "read-own-department-in-business-hours")]
        ),
        None
    );

    let decisions = "cedargate_decisions_total";
    let allow = [("action", "update"), ("decision", "allow"), ("deny", "")];
    assert_eq!(sample(&samples, decisions, &allow), Some(2.0), "{text}");
    let forbid = [
        ("action", "export"),
        ("decision", "deny"),
        ("deny", "forbid"),
    ];
    assert_eq!(sample(&samples, decisions, &forbid), Some(1.0));
    // A request rejected before mapping has no action label value.
    let rejected = [
        ("action", ""),
        ("decision", "deny"),
        ("deny", "token_invalid"),
    ];
    assert_eq!(sample(&samples, decisions, &rejected), Some(1.0));

    let latency = "cedargate_decision_latency_seconds";
    assert_eq!(
        sample(&samples, &format!("{latency}_count"), &[]),
        Some(5.0)
    );
    assert_eq!(
        sample(&samples, &format!("{latency}_bucket"), &[("le", "+Inf")]),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &samples,
            "cedargate_token_failures_total",
            &[("reason", "malformed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&samples, "cedargate_policies", &[]), Some(4.0));
    let entities: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(common::repo_dir().join("entities/crm.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sample(&samples, "cedargate_entities", &[]),
        Some(entities.len() as f64)
    );
    let revision = get_json(&server, "/readyz").await["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sample(
            &samples,
            "cedargate_bundle_revision",
            &[("bundle", "active"), ("revision", &revision)]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "cedargate_decision_log_dropped_total", &[]),
        Some(0.0)
    );
    assert!(
        sample(&samples, "cedargate_reloads_total", &[("result", "failed")]).is_some(),
        "{text}"
    );
    server.stop().await;
}

/// Returns the 1-based line of `needle` in a file of the default bundle.
fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(common::repo_dir().join(file)).unwrap();
    text.lines().position(|line| line.contains(needle)).unwrap() + 1
}

#[tokio::test]
async fn inventory_lists_policies_and_hits() {
    let (_dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let token = token();
    for _ in 0..3 {
        server
            .authorize(Some(&token), &request("update", "c-1001"))
            .await;
    }

    let listing = get_json(&server, "/policies").await;
    let policies = listing["policies"].as_array().unwrap();
    let ids: Vec<&str> = policies.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "read-own-department-in-business-hours",
            "update-by-editor-role",
            "export-with-scope",
            "forbid-export-under-legal-hold"
        ],
        "sorted by file and line: {listing:#}"
    );
    let update = &policies[1];
    assert!(
        update["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/customers.cedar")
    );
    assert_eq!(
        update["line"],
        line_of(
            "policies/customers.cedar",
            r#"@id("update-by-editor-role")"#
        )
    );
    assert_eq!(update["effect"], "permit");
    assert_eq!(
        update["annotations"],
        json!({ "id": "update-by-editor-role" })
    );
    assert_eq!(update["hits"], 3);
    assert_eq!(update["last_hit"], "2026-03-02T09:00:00Z");

    let forbid = &policies[3];
    assert_eq!(forbid["effect"], "forbid");
    assert_eq!(
        forbid["annotations"]["reason"],
        "records under legal hold cannot be exported"
    );
    assert_eq!(forbid["hits"], 0);
    assert_eq!(forbid["last_hit"], Value::Null);
    assert_eq!(
        listing["revision"],
        get_json(&server, "/readyz").await["revision"]
    );
    server.stop().await;
}

#[tokio::test]
async fn debug_rejected_unless_enabled() {
    let (_dir, config) = common::default_bundle_copy("");
    let server = TestServer::start(config).await;
    let mut body = request("export", "c-1001");
    body["debug"] = json!(true);
    let (status, _, answer) = server.authorize(Some(&token()), &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["decision"], "deny");
    assert_eq!(answer["error"]["field"], "debug");
    assert!(answer.get("debug").is_none());
    server.stop().await;
}

const ERRORING_FORBID: &str = r#"// A forbid whose condition raises an overflow error.
@id("forbid-overflowing-hour")
forbid (principal, action == Crm::Action::"export", resource)
when { context.hour * 9223372036854775807 > 0 };
"#;

#[tokio::test]
async fn debug_lists_policies_in_scope() {
    let (dir, _) = common::default_bundle_copy("");
    std::fs::write(dir.path().join("policies/erroring.cedar"), ERRORING_FORBID).unwrap();
    let config = edit_config(dir.path(), |text| {
        text.replacen(
            "[decision]\n",
            "[decision]\ndebug = true\non_forbid_error = \"skip\"\n",
            1,
        )
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));

    let mut body = request("export", "c-2001");
    body["debug"] = json!(true);
    let (status, _, answer) = server.authorize(Some(&token()), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny");
    assert_eq!(
        answer["debug"],
        json!([
            { "policy": "export-with-scope", "effect": "permit", "condition": "true" },
            { "policy": "forbid-export-under-legal-hold", "effect": "forbid", "condition": "true" },
            { "policy": "forbid-overflowing-hour", "effect": "forbid", "condition": "error",
              "error": answer["errors"][0]["message"] },
        ]),
        "only the export policies are in scope: {answer:#}"
    );
    assert_eq!(answer["errors"][0]["policy"], "forbid-overflowing-hour");

    body["resource"]["id"] = json!("c-1001");
    let (_, _, answer) = server.authorize(Some(&token()), &body).await;
    assert_eq!(answer["decision"], "allow", "{answer:#}");
    assert_eq!(
        answer["debug"][1]["policy"],
        "forbid-export-under-legal-hold"
    );
    assert_eq!(answer["debug"][1]["condition"], "false");

    // Without the option the answer has no `debug` member.
    let (_, _, answer) = server
        .authorize(Some(&token()), &request("export", "c-1001"))
        .await;
    assert!(answer.get("debug").is_none(), "{answer:#}");
    server.stop().await;
}

#[tokio::test]
async fn shadow_differences_counted() {
    let (dir, _) = common::default_bundle_copy("");
    // The candidate is the same bundle without the legal-hold forbid.
    let candidate = dir.path().join("candidate");
    for folder in ["policies", "schema", "entities", "data"] {
        common::copy_dir(&dir.path().join(folder), &candidate.join(folder));
    }
    std::fs::remove_file(candidate.join("policies/legal-hold.cedar")).unwrap();
    let config = edit_config(dir.path(), |text| {
        format!(
            "{text}\n[shadow]\nbundle = \"candidate\"\n[decision_log]\noutput = \"file\"\npath = \"decisions.log\"\n"
        )
    });
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let token = token();

    let (_, _, held) = server
        .authorize(Some(&token), &request("export", "c-2001"))
        .await;
    assert_eq!(
        held["decision"], "deny",
        "the active bundle answers: {held:#}"
    );
    assert_eq!(held["policies"], json!(["forbid-export-under-legal-hold"]));
    let (_, _, same) = server
        .authorize(Some(&token), &request("export", "c-1001"))
        .await;
    assert_eq!(same["decision"], "allow");

    let samples = parse_prometheus(
        &server
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let differences = [
        ("action", "export"),
        ("active", "deny"),
        ("candidate", "allow"),
    ];
    assert_eq!(
        sample(&samples, "cedargate_shadow_differences_total", &differences),
        Some(1.0)
    );
    let shadow_revision = server.pdp.shadow().unwrap().bundle.revision.clone();
    assert_ne!(
        Some(&shadow_revision),
        held["revision"].as_str().map(str::to_owned).as_ref()
    );
    assert_eq!(
        sample(
            &samples,
            "cedargate_bundle_revision",
            &[("bundle", "shadow"), ("revision", &shadow_revision)]
        ),
        Some(1.0)
    );
    server.stop().await;

    let log = std::fs::read_to_string(dir.path().join("decisions.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = lines
        .iter()
        .find(|l| l["request_id"] == held["request_id"])
        .unwrap();
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["shadow"]["decision"], "allow", "{line:#}");
    assert_eq!(line["shadow"]["policies"], json!(["export-with-scope"]));
    assert_eq!(line["shadow"]["differs"], true);
    assert_eq!(line["shadow"]["revision"], shadow_revision);
    let line = lines
        .iter()
        .find(|l| l["request_id"] == same["request_id"])
        .unwrap();
    assert_eq!(line["shadow"]["differs"], false, "{line:#}");
}

#[test]
fn validate_warns_never_applying_policy() {
    let (dir, _) = common::default_bundle_copy("");
    // Roles are never principals of any action in the schema.
    std::fs::write(
        dir.path().join("policies/never.cedar"),
        "@id(\"roles-read\")\npermit (principal is Crm::Role, action == Crm::Action::\"read\", resource);\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .current_dir(dir.path())
            .args(["validate", "--format", "json"])
            .args(extra)
            .output()
            .unwrap()
    };

    let output = run(&[]);
    assert_eq!(output.status.code(), Some(0), "a warning alone passes");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let warnings: Vec<&Value> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "warning")
        .collect();
    let warning = warnings
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("applicable action"))
        .unwrap_or_else(|| panic!("no warning about the scope: {report:#}"));
    assert!(warning["message"].as_str().unwrap().contains("roles-read"));
    assert!(
        warning["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/never.cedar")
    );
    assert_eq!(warning["line"], 1);

    assert_eq!(run(&["--deny-warnings"]).status.code(), Some(1));
}
