//! Reports of a test run: text that reads like `cargo test`, JSON, and JUnit XML for CI
//! systems, plus policy coverage.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::{CaseResult, FileError};
use crate::bundle::Bundle;

/// Everything a run produced.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    /// Test files run, including those that stopped with an error.
    pub files: usize,
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
    /// Files that could not run, each counted as one failure.
    pub file_errors: Vec<FileError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// Policies that no case made determining.
#[derive(Debug, Serialize)]
pub struct Coverage {
    pub policies: usize,
    pub covered: usize,
    pub uncovered: Vec<UncoveredPolicy>,
}

#[derive(Debug, Serialize)]
pub struct UncoveredPolicy {
    pub id: String,
    /// `file:line` of the policy.
    pub location: String,
}

impl RunReport {
    /// Adds the results of one file.
    pub fn add_cases(&mut self, cases: Vec<CaseResult>) {
        self.files += 1;
        self.cases.extend(cases);
    }

    /// Adds a file that stopped with an error.
    pub fn add_file_error(&mut self, error: FileError) {
        self.files += 1;
        self.file_errors.push(error);
    }

    /// Counts the results; call once every file has run.
    pub fn finish(&mut self) {
        self.passed = self.cases.iter().filter(|case| case.passed()).count();
        self.failed = self.cases.len() - self.passed + self.file_errors.len();
    }

    pub fn success(&self) -> bool {
        self.failed == 0
    }

    /// Lists the bundle's policies that no case had among its determining policies.
    pub fn compute_coverage(&mut self, bundle: &Bundle) {
        let determining: BTreeSet<&str> = self
            .cases
            .iter()
            .flat_map(|case| case.determining.iter().map(String::as_str))
            .collect();
        let mut all: Vec<String> = bundle
            .policies
            .policies()
            .map(|policy| policy.id().to_string())
            .collect();
        all.sort();
        let uncovered: Vec<UncoveredPolicy> = all
            .iter()
            .filter(|id| !determining.contains(id.as_str()))
            .map(|id| UncoveredPolicy {
                id: id.clone(),
                location: bundle
                    .policy_info
                    .get(&cedar_policy::PolicyId::new(id))
                    .map(|info| format!("{}:{}", info.file.display(), info.line))
                    .unwrap_or_default(),
            })
            .collect();
        self.coverage = Some(Coverage {
            policies: all.len(),
            covered: all.len() - uncovered.len(),
            uncovered,
        });
    }

    /// Renders the report as text: one line per case, the failures with expected and
    /// actual values, and a summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "running {} from {}",
            plural(self.cases.len(), "case"),
            plural(self.files, "file")
        );
        for case in &self.cases {
            let status = if case.passed() { "ok" } else { "FAILED" };
            let _ = writeln!(out, "test {} ({}) ... {status}", case.name, case.location());
        }
        for error in &self.file_errors {
            let _ = writeln!(out, "error: {error}");
        }

        let failures: Vec<&CaseResult> = self.cases.iter().filter(|c| !c.passed()).collect();
        if !failures.is_empty() {
            out.push_str("\nfailures:\n");
            for case in failures {
                let _ = writeln!(out, "\n---- {} ({}) ----", case.name, case.location());
                out.push_str(&failure_text(case));
            }
        }

        if let Some(coverage) = &self.coverage {
            let _ = writeln!(
                out,
                "\ncoverage: {} of {} policies were determining in some case",
                coverage.covered, coverage.policies
            );
            for policy in &coverage.uncovered {
                let _ = writeln!(
                    out,
                    "    never determining: {} ({})",
                    policy.id, policy.location
                );
            }
        }

        let result = if self.success() { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "\ntest result: {result}. {} passed; {} failed",
            self.passed, self.failed
        );
        out
    }

    /// Renders the report as JUnit XML, one test suite per file.
    pub fn to_junit(&self) -> String {
        let mut by_file: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
        for case in &self.cases {
            by_file
                .entry(case.file.display().to_string())
                .or_default()
                .push(case);
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"cedargate test\" tests=\"{}\" failures=\"{}\">",
            self.cases.len() + self.file_errors.len(),
            self.failed
        );
        for (file, cases) in &by_file {
            let failures = cases.iter().filter(|case| !case.passed()).count();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
                xml(file),
                cases.len()
            );
            for case in cases {
                let _ = write!(
                    out,
                    "    <testcase name=\"{}\" classname=\"{}\"",
                    xml(&case.name),
                    xml(&case.location())
                );
                if case.passed() {
                    out.push_str("/>\n");
                } else {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(&failure_summary(case)),
                        xml(&failure_text(case))
                    );
                }
            }
            out.push_str("  </testsuite>\n");
        }
        for error in &self.file_errors {
            let file = error.file.display().to_string();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"1\" errors=\"1\">\n    <testcase name=\"(file)\" classname=\"{}\">\n      <error message=\"{}\"/>\n    </testcase>\n  </testsuite>",
                xml(&file),
                xml(&file),
                xml(&error.to_string())
            );
        }
        out.push_str("</testsuites>\n");
        out
    }
}

/// Returns one line that names what failed.
fn failure_summary(case: &CaseResult) -> String {
    if let Some(error) = &case.error {
        return error.clone();
    }
    let failed: Vec<&str> = case
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| check.kind.as_str())
        .collect();
    format!("{} differs", failed.join(", "))
}

/// Returns the expected and actual value of every failed check.
fn failure_text(case: &CaseResult) -> String {
    let mut out = String::new();
    if let Some(error) = &case.error {
        let _ = writeln!(out, "error: {error}");
    }
    for check in case.checks.iter().filter(|check| !check.passed) {
        let _ = writeln!(
            out,
            "{}:\n  expected: {}\n    actual: {}",
            check.kind.as_str(),
            check.expected,
            check.actual
        );
    }
    if let Some(detail) = &case.detail {
        let _ = writeln!(out, "answer: {detail}");
    }
    out
}

/// Escapes text for an XML attribute or element.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            // XML 1.0 cannot carry other control characters, even escaped.
            c if c.is_control() && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Returns `count` and `noun`, with an `s` unless `count` is 1.
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
