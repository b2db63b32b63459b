//! Cedar's integration-test files, as Cedar's own test corpus writes them: one JSON object
//! that names a policy file, a schema and an entities file (paths relative to a root
//! folder), states whether the policies pass strict validation, and lists requests with
//! their expected decision, determining policies and erroring policies.
//!
//! The bundle is loaded by the bundle loader with Cedar's positional policy IDs
//! (`policy0`, `policy1`, ...), without failing on validation errors, since some files
//! expect them. Requests are built with the schema and decided by the engine with
//! Cedar's plain handling of erroring policies.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{CaseResult, Check, CheckKind, FileError, nth_line, read_file};
use crate::bundle::{self, EntityLoading, LoadOptions, PolicyIds, Severity};
use crate::cedar_request::{self, CedarRequest};
use crate::config::{BundleConfig, OnForbidError, PolicyIndexMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestFile {
    policies: PathBuf,
    entities: PathBuf,
    schema: PathBuf,
    should_validate: bool,
    requests: Vec<TestRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestRequest {
    description: String,
    principal: Value,
    action: Value,
    resource: Value,
    context: Value,
    #[serde(default = "yes")]
    validate_request: bool,
    decision: ExpectedDecision,
    reason: Vec<String>,
    errors: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExpectedDecision {
    Allow,
    Deny,
}

impl ExpectedDecision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Returns whether `text` looks like an integration-test file: a JSON object with
/// `requests` and `policies`. Entities files (arrays) and other JSON files do not.
pub fn is_test_file(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|value| {
        value.get("requests").is_some_and(Value::is_array)
            && value.get("policies").is_some_and(Value::is_string)
    })
}

/// Runs one integration-test file. Paths inside it are relative to `root`. The first
/// result is the validation verdict, named `validation`; one result per request follows.
/// `policy_index` chooses whether the engine's scope index is used.
pub fn run_file(
    root: &Path,
    file: &Path,
    policy_index: PolicyIndexMode,
) -> Result<Vec<CaseResult>, FileError> {
    let text = read_file(file)?;
    let test: TestFile = serde_json::from_str(&text).map_err(|err| {
        FileError::new(
            file,
            Some(err.line()),
            format!("not a Cedar integration-test file: {err}"),
        )
    })?;

    let config = BundleConfig {
        policy_index,
        ..BundleConfig::new(
            root.join(&test.policies),
            root.join(&test.schema),
            root.join(&test.entities),
        )
    };
    let options = LoadOptions {
        ids: PolicyIds::Positional,
        enforce_validation: false,
        entities: EntityLoading::WithSchema,
    };
    let outcome = bundle::load_with(&config, options);
    let Some(bundle) = outcome.bundle else {
        let errors: Vec<String> = outcome.errors().map(|d| d.render()).collect();
        return Err(FileError::new(
            file,
            None,
            format!("the bundle failed to load:\n{}", errors.join("\n")),
        ));
    };

    let mut results = Vec::with_capacity(test.requests.len() + 1);
    let validated = !outcome
        .validation
        .iter()
        .any(|d| d.severity == Severity::Error);
    let mut verdict = CaseResult::new("validation", file, nth_line(&text, "shouldValidate", 0));
    verdict.checks.push(Check::equal(
        CheckKind::Validation,
        Value::Bool(test.should_validate),
        Value::Bool(validated),
    ));
    results.push(verdict);

    for (index, request) in test.requests.into_iter().enumerate() {
        let line = nth_line(&text, "\"description\"", index);
        let case = CaseResult::new(request.description.clone(), file, line);
        results.push(run_request(&bundle, request, case));
    }
    Ok(results)
}

fn run_request(bundle: &bundle::Bundle, request: TestRequest, mut case: CaseResult) -> CaseResult {
    let built = CedarRequest::from_uid_objects(
        request.principal,
        request.action,
        request.resource,
        request.context,
    )
    .and_then(|cedar| cedar.build(Some(&bundle.schema), request.validate_request));
    let built = match built {
        Ok(built) => built,
        Err(err) => return case.failed_with(format!("invalid request: {err}")),
    };

    let evaluation = match cedar_request::evaluate(bundle, built, None, OnForbidError::Skip) {
        Ok(evaluation) => evaluation,
        Err(err) => return case.failed_with(format!("evaluation failed: {err}")),
    };
    let decision = if evaluation.allowed { "allow" } else { "deny" };
    let erroring: Vec<String> = evaluation
        .errors
        .iter()
        .map(|error| error.policy.clone())
        .collect();
    case.checks.push(Check::equal(
        CheckKind::Decision,
        Value::from(request.decision.as_str()),
        Value::from(decision),
    ));
    case.checks.push(Check::same_set(
        CheckKind::Policies,
        &request.reason,
        &evaluation.policies,
    ));
    case.checks.push(Check::same_set(
        CheckKind::Errors,
        &request.errors,
        &erroring,
    ));
    case.determining = evaluation.policies;
    case
}
