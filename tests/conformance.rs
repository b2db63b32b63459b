//! Conformance with Cedar: runs Cedar's own test corpus (`../shared/corpus`) through
//! cedargate's decision path (the bundle loader, request building with the schema, and
//! the engine) and expects every decision, determining-policy set, erroring-policy set and
//! validation verdict that the corpus states.
//!
//! - `cedar-integration/` and `cedar-corpus/`: Cedar's integration-test files, with
//!   positional policy IDs (`policy0`, ...).
//! - `cedar-cli-samples/`: the Cedar CLI's `run-tests` files, with the CLI's policy IDs.
//! - `cedar-examples/`: every ALLOW and DENY request file of the example apps; upstream
//!   stores only the decision for them.
//!
//! The policy scope index is switched on (`bundle.policy_index = "on"`), so the corpus
//! checks the index and the request-scoped entity slice too.
//!
//! The engine runs in Cedar's plain setting (`decision.on_forbid_error = "skip"`). The
//! server's default fails closed when a `forbid` errors, a deliberate difference that the
//! README describes.
//!
//! Counts are printed per folder. Set `CEDARGATE_CONFORMANCE_DIR` to a folder of
//! integration-test files (paths inside them relative to that folder) to run those too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cedargate::bundle::{self, EntityLoading, LoadOptions, PolicyIds};
use cedargate::cedar_request::{self, CedarRequest};
use cedargate::config::{BundleConfig, OnForbidError, PolicyIndexMode};
use cedargate::suite::{CaseResult, Check, CheckKind, integration, run_tests};
use serde_json::Value;

/// Environment variable naming an extra folder of integration-test files.
const EXTRA_DIR_ENV: &str = "CEDARGATE_CONFORMANCE_DIR";

#[test]
fn cedar_integration_tests() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let tally = run_integration_folder("cedar-integration", &corpus.join("cedar-integration"));
    // The corpus README states these numbers; a different count means the corpus changed.
    tally.assert_all_passed(22, 74);
}

#[test]
fn cedar_corpus_tests() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let tally = run_integration_folder("cedar-corpus", &corpus.join("cedar-corpus"));
    tally.assert_all_passed(300, 2400);
}

/// Runs the integration-test files of the folder named by `CEDARGATE_CONFORMANCE_DIR`.
#[test]
fn extra_conformance_folder() {
    let Some(dir) = std::env::var_os(EXTRA_DIR_ENV) else {
        report_line(&format!(
            "conformance: {EXTRA_DIR_ENV} is not set; no extra folder of cases to run"
        ));
        return;
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.is_dir(),
        "{EXTRA_DIR_ENV}=`{}` is not a folder",
        dir.display()
    );
    let tally = run_integration_folder(&dir.display().to_string(), &dir);
    assert!(
        tally.files > 0,
        "no integration-test files under `{}`",
        dir.display()
    );
    tally.assert_all_passed(tally.files, tally.requests);
}

#[test]
fn cedar_cli_run_tests_files() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let samples = corpus.join("cedar-cli-samples/tiny_sandboxes");
    let mut tally = Tally::new("cedar-cli-samples");
    for sample in sorted_entries(&samples) {
        let test_files: Vec<PathBuf> = sorted_entries(&sample)
            .into_iter()
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                name.starts_with("tests-") && name.ends_with(".json")
            })
            .collect();
        if test_files.is_empty() {
            continue;
        }
        // Each sample's schema comes in Cedar and JSON syntax; both must give the same results.
        for schema in ["schema.cedarschema", "schema.cedarschema.json"] {
            let config = BundleConfig {
                policy_index: PolicyIndexMode::On,
                ..BundleConfig::new(
                    sample.join("policy.cedar"),
                    sample.join(schema),
                    sample.join("entity.json"),
                )
            };
            // Each test brings its own entities, so the sample's entity file is not read.
            let options = LoadOptions {
                ids: PolicyIds::CedarCli,
                entities: EntityLoading::Skip,
                ..LoadOptions::default()
            };
            let outcome = bundle::load_with(&config, options);
            let errors: Vec<String> = outcome.errors().map(|d| d.render()).collect();
            let bundle = outcome
                .bundle
                .unwrap_or_else(|| panic!("{}: {}", sample.display(), errors.join("\n")));
            for file in &test_files {
                tally.files += 1;
                let text = std::fs::read_to_string(file).unwrap();
                assert!(run_tests::is_run_tests_file(&text), "{}", file.display());
                let results = run_tests::run_file(
                    file,
                    &text,
                    &bundle,
                    &outcome.validation,
                    OnForbidError::Skip,
                )
                .unwrap_or_else(|err| panic!("{err}"));
                tally.add_all(results);
            }
        }
    }
    // 7 samples have `tests-combined.json`, sample1 also `tests-named.json`: 31 tests, each
    // run with both schema syntaxes.
    tally.assert_all_passed(16, 62);
}

/// One example app of `cedar-examples/`, and whether upstream decides its requests with
/// the schema.
struct App {
    folder: &'static str,
    policies: &'static str,
    schema: &'static str,
    entities: &'static str,
    with_schema: bool,
}

const fn app(folder: &'static str, with_schema: bool) -> App {
    App {
        folder,
        policies: "policies.cedar",
        schema: "policies.cedarschema",
        entities: "entities.json",
        with_schema,
    }
}

/// The apps as the corpus README lists them. Upstream checks `github_example`,
/// `document_cloud`, `PhotoApp` and `GitApp` without the schema.
const APPS: [App; 11] = [
    app("cedar-example-use-cases/document_cloud", false),
    app("cedar-example-use-cases/github_example", false),
    app("cedar-example-use-cases/hotel_chains/static", true),
    app("cedar-example-use-cases/hotel_chains/templated", true),
    app("cedar-example-use-cases/sales_orgs/static", true),
    app("cedar-example-use-cases/sales_orgs/templated", true),
    app("cedar-example-use-cases/streaming_service", true),
    app("cedar-example-use-cases/tags_n_roles", true),
    app("cedar-example-use-cases/tax_preparer", true),
    App {
        folder: "cedar-policy-language-in-action/PhotoApp",
        policies: "photoapp.cedar",
        schema: "photoapp.cedarschema",
        entities: "photoapp.cedarentities.json",
        with_schema: false,
    },
    App {
        folder: "cedar-policy-language-in-action/GitApp",
        policies: "gitapp.cedar",
        schema: "gitapp.cedarschema",
        entities: "gitapp.cedarentities.json",
        with_schema: false,
    },
];

#[test]
fn cedar_examples_requests() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let root = corpus.join("cedar-examples");
    let mut tally = Tally::new("cedar-examples");
    for app in &APPS {
        let dir = root.join(app.folder);
        let links = dir.join("linked");
        let config = BundleConfig {
            links: links.is_file().then_some(links),
            policy_index: PolicyIndexMode::On,
            ..BundleConfig::new(
                dir.join(app.policies),
                dir.join(app.schema),
                dir.join(app.entities),
            )
        };
        let options = LoadOptions {
            ids: PolicyIds::CedarCli,
            enforce_validation: true,
            entities: if app.with_schema {
                EntityLoading::WithSchema
            } else {
                EntityLoading::WithoutSchema
            },
        };
        let outcome = bundle::load_with(&config, options);
        let errors: Vec<String> = outcome.errors().map(|d| d.render()).collect();
        let bundle = outcome
            .bundle
            .unwrap_or_else(|| panic!("{}: {}", app.folder, errors.join("\n")));
        tally.files += 1;

        for (expected, file) in request_files(&dir) {
            let name = file.strip_prefix(&root).unwrap().display().to_string();
            let mut case = CaseResult::new(name, &file, Some(1));
            let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
            let schema = app.with_schema.then_some(&bundle.schema);
            let request = CedarRequest::from_uid_strings(
                json["principal"].as_str().unwrap(),
                json["action"].as_str().unwrap(),
                json["resource"].as_str().unwrap(),
                json.get("context")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default())),
            )
            .and_then(|request| request.build(schema, app.with_schema));
            match request {
                Ok(request) => {
                    let evaluation =
                        cedar_request::evaluate(&bundle, request, None, OnForbidError::Skip)
                            .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
                    let actual = if evaluation.allowed { "allow" } else { "deny" };
                    case.checks.push(Check::equal(
                        CheckKind::Decision,
                        Value::from(expected),
                        Value::from(actual),
                    ));
                }
                Err(err) => case = case.failed_with(format!("invalid request: {err}")),
            }
            tally.add(case);
        }
    }
    // The corpus README: 72 ALLOW and DENY request files in 11 apps.
    tally.assert_all_passed(11, 72);
}

/// Lists `ALLOW/*.json` and `DENY/*.json` of an app with the decision each expects.
fn request_files(app_dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut found = Vec::new();
    for (folder, decision) in [("ALLOW", "allow"), ("DENY", "deny")] {
        let dir = app_dir.join(folder);
        if !dir.is_dir() {
            continue;
        }
        for path in sorted_entries(&dir) {
            if path.extension().is_some_and(|ext| ext == "json") {
                found.push((decision, path));
            }
        }
    }
    found
}

/// Every app folder with request files is in [`APPS`], so a new app in the corpus cannot
/// go unchecked.
#[test]
fn every_example_app_listed() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let root = corpus.join("cedar-examples");
    let mut found = Vec::new();
    find_app_folders(&root, &root, &mut found);
    found.sort();
    let mut listed: Vec<String> = APPS.iter().map(|app| app.folder.to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

fn find_app_folders(root: &Path, dir: &Path, found: &mut Vec<String>) {
    for path in sorted_entries(dir) {
        if !path.is_dir() {
            continue;
        }
        if path.join("ALLOW").is_dir() || path.join("DENY").is_dir() {
            found.push(path.strip_prefix(root).unwrap().display().to_string());
        }
        find_app_folders(root, &path, found);
    }
}

/// Runs every integration-test file under `root`, recursively.
fn run_integration_folder(label: &str, root: &Path) -> Tally {
    let mut files = Vec::new();
    collect_json(root, &mut files);
    let mut tally = Tally::new(label);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if !integration::is_test_file(&text) {
            continue;
        }
        tally.files += 1;
        match integration::run_file(root, &file, PolicyIndexMode::On) {
            Ok(results) => tally.add_all(results),
            Err(err) => tally.file_errors.push(err.to_string()),
        }
    }
    tally
}

fn collect_json(dir: &Path, found: &mut Vec<PathBuf>) {
    for path in sorted_entries(dir) {
        if path.is_dir() {
            collect_json(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            found.push(path);
        }
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// Counts of one folder: files, requests, and per kind of check how many passed.
struct Tally {
    label: String,
    files: usize,
    requests: usize,
    checks: BTreeMap<CheckKind, (usize, usize)>,
    failures: Vec<String>,
    file_errors: Vec<String>,
}

impl Tally {
    fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            files: 0,
            requests: 0,
            checks: BTreeMap::new(),
            failures: Vec::new(),
            file_errors: Vec::new(),
        }
    }

    fn add_all(&mut self, results: Vec<CaseResult>) {
        for result in results {
            self.add(result);
        }
    }

    fn add(&mut self, result: CaseResult) {
        // The validation verdict of an integration-test file is a result of its own, not a
        // request.
        let is_request = !result
            .checks
            .iter()
            .any(|check| check.kind == CheckKind::Validation);
        if is_request {
            self.requests += 1;
        }
        for check in &result.checks {
            let (passed, total) = self.checks.entry(check.kind).or_default();
            *total += 1;
            if check.passed {
                *passed += 1;
            }
        }
        if !result.passed() {
            let mut message = format!("{} ({})", result.location(), result.name);
            if let Some(error) = &result.error {
                message.push_str(&format!(": {error}"));
            }
            for check in result.checks.iter().filter(|check| !check.passed) {
                message.push_str(&format!(
                    "\n    {}: expected {}, actual {}",
                    check.kind.as_str(),
                    check.expected,
                    check.actual
                ));
            }
            self.failures.push(message);
        }
    }

    /// Prints the counts, then asserts that nothing failed and that the numbers of files
    /// and requests are the ones the corpus states.
    fn assert_all_passed(&self, files: usize, requests: usize) {
        let counts: Vec<String> = self
            .checks
            .iter()
            .map(|(kind, (passed, total))| format!("{} {passed}/{total}", kind.as_str()))
            .collect();
        report_line(&format!(
            "conformance {}: {} files, {} requests; {}; {} failed",
            self.label,
            self.files,
            self.requests,
            counts.join(", "),
            self.failures.len() + self.file_errors.len()
        ));
        assert!(
            self.file_errors.is_empty() && self.failures.is_empty(),
            "{}: {} files could not run, {} cases failed:\n{}\n{}",
            self.label,
            self.file_errors.len(),
            self.failures.len(),
            self.file_errors.join("\n"),
            self.failures.join("\n")
        );
        assert_eq!(self.files, files, "{}: number of files", self.label);
        assert_eq!(
            self.requests, requests,
            "{}: number of requests",
            self.label
        );
    }
}

/// Writes a line to stderr that shows even when the test passes, because the harness
/// captures only the print macros.
fn report_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A file whose expectations are wrong fails each wrong check, so the counts above can fail.
#[test]
fn wrong_expectations_fail() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "schema.cedarschema",
        "entity User; entity Doc; action read appliesTo { principal: User, resource: Doc };",
    );
    write(
        "policies.cedar",
        "permit(principal == User::\"alice\", action, resource);\nforbid(principal, action, resource) when { principal.nope };",
    );
    write("entities.json", "[]");
    write(
        "test.json",
        r#"{
  "policies": "policies.cedar",
  "entities": "entities.json",
  "schema": "schema.cedarschema",
  "shouldValidate": true,
  "requests": [
    {
      "description": "alice reads",
      "principal": {"type": "User", "id": "alice"},
      "action": {"type": "Action", "id": "read"},
      "resource": {"type": "Doc", "id": "d"},
      "context": {},
      "decision": "deny",
      "reason": ["policy1"],
      "errors": []
    }
  ]
}"#,
    );

    let results = integration::run_file(
        dir.path(),
        &dir.path().join("test.json"),
        PolicyIndexMode::On,
    )
    .unwrap();
    let failed: Vec<(CheckKind, Value)> = results
        .iter()
        .flat_map(|result| &result.checks)
        .filter(|check| !check.passed)
        .map(|check| (check.kind, check.actual.clone()))
        .collect();
    // The forbid reads an attribute `User` does not have: strict validation rejects it, and
    // its evaluation errors, so Cedar skips it and the permit allows.
    assert_eq!(
        failed,
        vec![
            (CheckKind::Validation, Value::Bool(false)),
            (CheckKind::Decision, Value::from("allow")),
            (CheckKind::Policies, serde_json::json!(["policy0"])),
            (CheckKind::Errors, serde_json::json!(["policy1"])),
        ]
    );
    assert_eq!(
        results[1].line,
        Some(8),
        "line of the request's description"
    );
}
