//! The Cedar CLI's `run-tests` files, read unchanged: a JSON array of
//! `{"name"?, "request": {principal, action, resource, context}, "entities", "decision",
//! "reason", "num_errors"}`, with entity UIDs written as strings (`User::"alice"`).
//!
//! The checks are the Cedar CLI's: the decision is equal, the expected `reason` policies
//! are among the determining ones (not an exact set), the number of erroring policies is
//! equal, and the policies pass strict validation without warnings. Each test brings its
//! own entities, which replace the bundle's entity store for that test.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::lines::json_items;
use super::object::{Object, object};
use super::{CaseResult, Check, CheckKind, FileError, line_from};
use crate::bundle::{Bundle, Diagnostic};
use crate::cedar_request::{self, CedarRequest};
use crate::config::OnForbidError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTest {
    #[serde(default)]
    name: Option<String>,
    #[serde(deserialize_with = "object")]
    request: RunTestRequest,
    entities: Value,
    decision: Decision,
    reason: Vec<String>,
    num_errors: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTestRequest {
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    context: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Allow,
    Deny,
}

/// Returns whether `text` is a `run-tests` file: JSON whose top level is an array.
/// cedargate's own test files are objects, so any array is read as `run-tests` and its
/// mistakes are reported against that format.
pub fn is_run_tests_file(text: &str) -> bool {
    text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}')
        .starts_with('[')
}

/// Runs every test of a `run-tests` file against `bundle`. `validation` contains the strict
/// validation findings of the bundle's policies; any of them fails every test, as in the
/// Cedar CLI.
pub fn run_file(
    file: &Path,
    text: &str,
    bundle: &Bundle,
    validation: &[Diagnostic],
    on_forbid_error: OnForbidError,
) -> Result<Vec<CaseResult>, FileError> {
    // The path names the test (`[2]`) and the field of a mistake.
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let tests: Vec<Object<RunTest>> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            FileError::new(
                file,
                Some(err.inner().line()),
                format!(
                    "invalid Cedar `run-tests` file: at `{}`: {}",
                    err.path(),
                    err.inner()
                ),
            )
        })?;
    deserializer.end().map_err(|err| {
        FileError::new(
            file,
            Some(err.line()),
            format!("invalid Cedar `run-tests` file: {err}"),
        )
    })?;
    let tests: Vec<RunTest> = tests.into_iter().map(|Object(test)| test).collect();

    // A policy ID that the bundle does not have can never be determining: that is a
    // mistake in the file, reported with its line before anything runs.
    let test_lines = json_items(text, None);
    if tests.is_empty() {
        return Err(FileError::new(
            file,
            test_lines.key,
            "the file has no tests; a `run-tests` file is a JSON array of at least one test",
        ));
    }
    for (index, test) in tests.iter().enumerate() {
        let case_line = test_lines.item(index).unwrap_or(1);
        for id in &test.reason {
            if bundle
                .policies
                .policy(&cedar_policy::PolicyId::new(id))
                .is_none()
            {
                let line = line_from(text, case_line, &format!("\"{id}\"")).or(Some(case_line));
                return Err(FileError::new(
                    file,
                    line,
                    format!(
                        "test {index}: `reason` names policy `{id}`, which the bundle does not have"
                    ),
                ));
            }
        }
    }

    let problems: Vec<String> = validation.iter().map(Diagnostic::render).collect();

    let mut results = Vec::with_capacity(tests.len());
    for (index, test) in tests.into_iter().enumerate() {
        let name = test.name.clone().unwrap_or_else(|| format!("test {index}"));
        let line = test_lines.item(index);
        let case = CaseResult::new(name, file, line);
        if !problems.is_empty() {
            results.push(case.failed_with(format!(
                "policy set validation failed (the Cedar CLI requires no errors and no warnings):\n{}",
                problems.join("\n")
            )));
            continue;
        }
        results.push(run_one(file, bundle, test, case, on_forbid_error));
    }
    Ok(results)
}

fn run_one(
    file: &Path,
    bundle: &Bundle,
    test: RunTest,
    mut case: CaseResult,
    on_forbid_error: OnForbidError,
) -> CaseResult {
    let request = CedarRequest::from_uid_strings(
        &test.request.principal,
        &test.request.action,
        &test.request.resource,
        Value::Object(test.request.context),
    )
    .and_then(|request| request.build(Some(&bundle.schema), true));
    let request = match request {
        Ok(request) => request,
        Err(err) => return case.failed_with(format!("invalid request: {err}")),
    };
    let entities = match entities_of(file, test.entities) {
        Ok(entities) => entities,
        Err(message) => return case.failed_with(message),
    };
    let entities = match cedar_request::parse_entities(entities, Some(&bundle.schema)) {
        Ok(entities) => entities,
        Err(err) => return case.failed_with(format!("invalid entities: {err}")),
    };

    let evaluation =
        match cedar_request::evaluate(bundle, request, Some(&entities), on_forbid_error) {
            Ok(evaluation) => evaluation,
            Err(err) => return case.failed_with(format!("evaluation failed: {err}")),
        };
    let expected = match test.decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    };
    case.checks.push(Check::equal(
        CheckKind::Decision,
        Value::from(expected),
        Value::from(if evaluation.allowed { "allow" } else { "deny" }),
    ));
    case.checks.push(Check::subset(
        CheckKind::PoliciesIncluded,
        &test.reason,
        &evaluation.policies,
    ));
    case.checks.push(Check::equal(
        CheckKind::ErrorCount,
        Value::from(test.num_errors),
        Value::from(evaluation.errors.len()),
    ));
    case.determining = evaluation.policies;
    case
}

/// Returns the test's entities: the JSON array itself, or the array in the file that a
/// string names, relative to the test file's folder and not outside it (as the Cedar CLI
/// reads it).
fn entities_of(file: &Path, entities: Value) -> Result<Value, String> {
    let Value::String(name) = entities else {
        return Ok(entities);
    };
    // A file name without a folder has an empty parent, which cannot be canonicalized.
    let folder = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = folder.join(&name);
    let (Ok(real), Ok(real_folder)) = (path.canonicalize(), folder.canonicalize()) else {
        return Err(format!("entities file `{}` not found", path.display()));
    };
    if !real.starts_with(&real_folder) {
        return Err(format!(
            "entities file `{name}` is outside the test file's folder `{}`",
            folder.display()
        ));
    }
    let text = super::read_file(&real).map_err(|err| err.to_string())?;
    serde_json::from_str(&text)
        .map_err(|err| format!("entities file `{}`: invalid JSON: {err}", path.display()))
}
