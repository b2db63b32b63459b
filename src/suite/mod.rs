//! Policy test suites: test files that state requests and the decisions expected for them,
//! run through the same code that decides the server's requests.
//!
//! Three file formats are read:
//!
//! - [`cases`]: cedargate's own test files (YAML or JSON). A case gives token claims, which
//!   go through the claim mapping, or an explicit principal entity; `cedargate test` runs them.
//! - [`run_tests`]: the Cedar CLI's `run-tests` files, read unchanged.
//! - [`integration`]: Cedar's integration-test files, each with its own policies, schema and
//!   entities, as Cedar's test corpus writes them; the conformance tests run them.
//!
//! Every runner returns one [`CaseResult`] per case, with the checks that were made, so the
//! reports ([`report`]) and the conformance counts read the same data.

pub mod cases;
pub mod integration;
pub mod limits;
pub mod lines;
pub mod object;
pub mod report;
pub mod run_tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// The value one check of a case compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Allow or deny.
    Decision,
    /// The determining policies, as an exact set.
    Policies,
    /// The expected determining policies are among the actual ones (Cedar CLI `run-tests`).
    PoliciesIncluded,
    /// The policies whose evaluation raised an error, as an exact set.
    Errors,
    /// The number of policies whose evaluation raised an error (Cedar CLI `run-tests`).
    ErrorCount,
    /// The kind of deny (`forbid`, `no_permit`, `token_invalid`, ...).
    Deny,
    /// The error code of a rejected request (`invalid_claims`, `invalid_request`, ...).
    ErrorCode,
    /// Whether the policies pass strict validation against the schema.
    Validation,
}

impl CheckKind {
    /// Returns the name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Policies => "policies",
            Self::PoliciesIncluded => "policies (included)",
            Self::Errors => "errors",
            Self::ErrorCount => "number of errors",
            Self::Deny => "deny",
            Self::ErrorCode => "error code",
            Self::Validation => "validation",
        }
    }
}

/// One comparison of an expected value with the actual one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub kind: CheckKind,
    pub expected: Value,
    pub actual: Value,
    pub passed: bool,
}

impl Check {
    /// Compares two values for equality.
    pub fn equal(kind: CheckKind, expected: Value, actual: Value) -> Self {
        let passed = expected == actual;
        Self {
            kind,
            expected,
            actual,
            passed,
        }
    }

    /// Compares two sets of names, ignoring order and repetition.
    pub fn same_set(kind: CheckKind, expected: &[String], actual: &[String]) -> Self {
        let expected = sorted(expected);
        let actual = sorted(actual);
        let passed = expected == actual;
        Self {
            kind,
            expected: Value::from(expected),
            actual: Value::from(actual),
            passed,
        }
    }

    /// Checks that every expected name is among the actual ones.
    pub fn subset(kind: CheckKind, expected: &[String], actual: &[String]) -> Self {
        let passed = expected.iter().all(|name| actual.contains(name));
        Self {
            kind,
            expected: Value::from(sorted(expected)),
            actual: Value::from(sorted(actual)),
            passed,
        }
    }
}

fn sorted(names: &[String]) -> Vec<String> {
    names
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub file: PathBuf,
    /// 1-based line of the case in its file, when it could be found.
    pub line: Option<usize>,
    pub checks: Vec<Check>,
    /// The error that stopped the case before its checks could run, such as a request that does not
    /// fit the schema in a Cedar test file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Details of the actual response, such as the message of a rejected request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The determining policies of the actual decision, for coverage.
    pub determining: Vec<String>,
}

impl CaseResult {
    pub fn new(name: impl Into<String>, file: &Path, line: Option<usize>) -> Self {
        Self {
            name: name.into(),
            file: file.to_owned(),
            line,
            checks: Vec::new(),
            error: None,
            detail: None,
            determining: Vec::new(),
        }
    }

    /// Returns the case with `error` set.
    pub fn failed_with(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|check| check.passed)
    }

    /// Returns `file:line`, or the file alone when the line is unknown.
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

/// Error that stops a whole test file: it cannot be read, is not valid YAML or JSON, does
/// not have the expected shape, or names something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}: {message}", location(.file, *.line))]
pub struct FileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl FileError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

fn location(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

/// Reads a test file as UTF-8 text, within [`limits::MAX_FILE_BYTES`]. Only regular files
/// are read, so a FIFO or a device given by mistake cannot block the run.
pub fn read_file(path: &Path) -> Result<String, FileError> {
    limits::read_bounded(path)
}

/// Returns the 1-based line of the byte offset `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Finds the line of the `index`-th occurrence of `needle` in `text`, a good enough anchor
/// for the n-th case of a file whose cases each have the key `needle` once.
pub fn nth_line(text: &str, needle: &str, index: usize) -> Option<usize> {
    text.match_indices(needle)
        .nth(index)
        .map(|(offset, _)| line_at(text, offset))
}

/// Finds the first line at or after `from_line` that contains `needle`.
pub fn line_from(text: &str, from_line: usize, needle: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
}
