//! cedargate's own test files, in YAML (`.yaml`, `.yml`) or JSON (`.json`) with one
//! schema. A file may fix the clock and add entities; each case gives token claims or an
//! explicit principal entity, the request, and the expected response:
//!
//! ```yaml
//! time: "2026-03-02T10:00:00+01:00"
//! cases:
//!   - name: sales reads its own customer in business hours
//!     claims: { sub: alice, department: sales }
//!     action: read
//!     resource: { type: Crm::Customer, id: c-1001 }
//!     expect:
//!       decision: allow
//!       policies: [read-own-department-in-business-hours]
//! ```
//!
//! Every case runs through [`Pdp::decide`], the function behind `POST /authorize`: claims
//! go through the claim mapping as a verified token's would, and request metadata
//! (client address, forwarding headers, time) is read by [`crate::http::request_meta`].
//! Unknown fields are errors, and errors name the file and line.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use cedar_policy::Entity;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::lines::sequence_items;
use super::object::{Object, object, objects};
use super::{CaseResult, Check, CheckKind, FileError, line_from};
use crate::bundle::diagnostics::error_chain;
use crate::decide::{Credential, Pdp, Snapshot};

/// A whole test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// Free text about the file, for readers.
    #[serde(default)]
    pub description: Option<String>,
    /// The decision time of every case, in RFC 3339; cases may set their own. Without
    /// one, cases run at the current time.
    #[serde(default)]
    pub time: Option<String>,
    /// The client address of every case; cases may set their own. `127.0.0.1` by default.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Entities added to the bundle's store for this file's cases, in Cedar's entities
    /// JSON format.
    #[serde(default)]
    pub entities: Vec<Value>,
    #[serde(deserialize_with = "objects")]
    pub cases: Vec<Case>,
}

/// One test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Claims of a verified token, mapped to the principal by the config.
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// An explicit principal entity in Cedar's entity JSON format, instead of claims.
    #[serde(default)]
    pub principal: Option<Value>,
    pub action: String,
    #[serde(deserialize_with = "object")]
    pub resource: Resource,
    /// The caller's context, as in the `POST /authorize` body.
    #[serde(default)]
    pub context: Map<String, Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// The socket peer address; with `headers` from a trusted proxy the client address
    /// comes from the forwarding header, as on the server.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(deserialize_with = "object")]
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub id: String,
}

/// The expected response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: ExpectedDecision,
    /// The determining policies, as an exact set; empty for a deny that no policy decided.
    pub policies: Vec<String>,
    /// The policies whose evaluation raised an error, as an exact set; not checked when
    /// left out.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
    /// The kind of deny: `forbid`, `no_permit`, `forbid_errored`, `token_invalid`,
    /// `request_invalid`.
    #[serde(default)]
    pub deny: Option<String>,
    /// The error code of a rejected request, such as `invalid_claims`.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedDecision {
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

/// Parses a test file: YAML unless the name ends in `.json`.
pub fn parse(file: &Path, text: &str) -> Result<SuiteFile, FileError> {
    let is_json = file.extension().is_some_and(|ext| ext == "json");
    if is_json {
        serde_json::from_str(text)
            .map(|Object(suite)| suite)
            .map_err(|err| {
                FileError::new(file, Some(err.line()), format!("invalid test file: {err}"))
            })
    } else {
        serde_norway::from_str(text)
            .map(|Object(suite)| suite)
            .map_err(|err| yaml_error(file, text, &err))
    }
}

/// Turns a YAML error into a file error with a line and, for the errors whose own text
/// does not say it, what went wrong.
fn yaml_error(file: &Path, text: &str, err: &serde_norway::Error) -> FileError {
    let message = err.to_string();
    if message.starts_with("repetition limit exceeded") {
        return FileError::new(
            file,
            err.location().map(|location| location.line()),
            "invalid test file: anchors and aliases expand too far (the YAML parser's repetition limit); write the repeated values out or use fewer aliases",
        );
    }
    if message.starts_with("deserializing from YAML containing more than one document") {
        // The second document starts at the second `---` marker, or at the first one after
        // content.
        let mut seen_content = false;
        let line = text.lines().enumerate().find_map(|(index, line)| {
            let is_marker = line == "---" || line.starts_with("--- ");
            if is_marker && seen_content {
                return Some(index + 1);
            }
            let content = line.trim();
            seen_content |= is_marker || !(content.is_empty() || content.starts_with('#'));
            None
        });
        return FileError::new(
            file,
            line,
            "invalid test file: a second YAML document starts here; a test file is one document, so remove the `---` or move the cases into another file",
        );
    }
    let line = err.location().map(|location| location.line());
    FileError::new(file, line, format!("invalid test file: {message}"))
}

/// Runs every case of a parsed file on `pdp`, whose snapshot contains the bundle (with the
/// file's entities added). `policy_ids` are the bundle's policy IDs, to catch expected
/// policies that do not exist.
pub fn run(
    file: &Path,
    text: &str,
    suite: SuiteFile,
    pdp: &Pdp,
    snapshot: &Snapshot,
) -> Result<Vec<CaseResult>, FileError> {
    let file_time = parse_time(file, text, 1, suite.time.as_deref())?;
    let policy_ids: HashSet<String> = snapshot
        .bundle
        .policies
        .policies()
        .map(|policy| policy.id().to_string())
        .collect();

    // Check every case before running any, so a mistake in the file stops the run with
    // its line instead of showing up as a failed case.
    let is_json = file.extension().is_some_and(|ext| ext == "json");
    let case_lines = sequence_items(text, is_json, "cases");
    if suite.cases.is_empty() {
        return Err(FileError::new(
            file,
            case_lines.key,
            "the file has no cases; add at least one under `cases`",
        ));
    }
    let mut lines = Vec::with_capacity(suite.cases.len());
    let mut names = HashSet::new();
    for (index, case) in suite.cases.iter().enumerate() {
        let line = case_lines.item(index).unwrap_or(1);
        lines.push(line);
        let fail = |message: String| FileError::new(file, Some(line), message);
        if !names.insert(case.name.as_str()) {
            return Err(fail(format!("case name `{}` is used twice", case.name)));
        }
        match (&case.claims, &case.principal) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(fail(format!(
                    "case {index} (`{}`): give either `claims` or `principal`",
                    case.name
                )));
            }
        }
        let expected = case
            .expect
            .policies
            .iter()
            .chain(case.expect.errors.iter().flatten());
        for id in expected {
            if !policy_ids.contains(id) {
                let at = line_from(text, line, id).unwrap_or(line);
                return Err(FileError::new(
                    file,
                    Some(at),
                    format!(
                        "case `{}` expects policy `{id}`, which the bundle does not have",
                        case.name
                    ),
                ));
            }
        }
        check_expect(&case.expect)
            .map_err(|message| fail(format!("case `{}`: {message}", case.name)))?;
        parse_time(file, text, line, case.time.as_deref())?;
    }

    let mut results = Vec::with_capacity(suite.cases.len());
    for (case, line) in suite.cases.into_iter().zip(lines) {
        let time = parse_time(file, text, line, case.time.as_deref())?.or(file_time);
        let ip = case
            .ip
            .or(suite.ip)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let result = CaseResult::new(case.name.clone(), file, Some(line));
        results.push(run_case(pdp, snapshot, case, time, ip, result));
    }
    Ok(results)
}

/// Values of `expect.deny`: the kinds of deny a case can reach.
pub const DENY_KINDS: [&str; 5] = [
    "forbid",
    "no_permit",
    "forbid_errored",
    "token_invalid",
    "request_invalid",
];

/// Values of `expect.error`: the error codes of a request that the decision path rejects.
/// Cases give trusted claims or a principal, so token error codes cannot occur.
pub const ERROR_CODES: [&str; 2] = ["invalid_request", "invalid_claims"];

/// Checks `expect.deny` and `expect.error` against the values a case can produce, so a
/// typo fails the file instead of every run of the case.
fn check_expect(expect: &Expect) -> Result<(), String> {
    if let Some(deny) = &expect.deny
        && !DENY_KINDS.contains(&deny.as_str())
    {
        return Err(format!(
            "`expect.deny` is `{deny}`, but must be one of {}",
            DENY_KINDS.join(", ")
        ));
    }
    if let Some(code) = &expect.error
        && !ERROR_CODES.contains(&code.as_str())
    {
        return Err(format!(
            "`expect.error` is `{code}`, but must be one of {}",
            ERROR_CODES.join(", ")
        ));
    }
    Ok(())
}

fn parse_time(
    file: &Path,
    text: &str,
    line: usize,
    time: Option<&str>,
) -> Result<Option<jiff::Timestamp>, FileError> {
    let Some(time) = time else {
        return Ok(None);
    };
    jiff::Timestamp::from_str(time).map(Some).map_err(|err| {
        let at = line_from(text, line, time).unwrap_or(line);
        FileError::new(
            file,
            Some(at),
            format!("`{time}` is not an RFC 3339 time such as `2026-03-02T10:00:00+01:00`: {err}"),
        )
    })
}

fn run_case(
    pdp: &Pdp,
    snapshot: &Snapshot,
    case: Case,
    time: Option<jiff::Timestamp>,
    ip: IpAddr,
    mut result: CaseResult,
) -> CaseResult {
    let headers = match header_map(&case.headers) {
        Ok(headers) => headers,
        Err(message) => return result.failed_with(message),
    };
    let principal = match &case.principal {
        Some(json) => match Entity::from_json_value(json.clone(), Some(&snapshot.bundle.schema)) {
            Ok(entity) => Some(entity),
            Err(err) => {
                return result.failed_with(format!("invalid `principal`: {}", error_chain(&err)));
            }
        },
        None => None,
    };
    let mut body = json!({
        "action": case.action,
        "resource": { "type": case.resource.entity_type, "id": case.resource.id },
        "context": case.context,
    });
    if let Some(object) = body.as_object_mut() {
        if let Some(method) = case.method {
            object.insert("method".into(), Value::from(method));
        }
        if let Some(path) = case.path {
            object.insert("path".into(), Value::from(path));
        }
    }
    let body = body.to_string().into_bytes();

    pdp.set_fixed_time(time);
    let answer = match crate::http::request_meta(pdp, SocketAddr::new(ip, 0), &headers) {
        Ok(meta) => {
            let claims = case.claims.unwrap_or_default();
            let credential = match &principal {
                Some(entity) => Credential::TrustedPrincipal(entity),
                None => Credential::TrustedClaims(&claims),
            };
            pdp.decide(credential, &body, &meta)
        }
        Err(error) => pdp.reject(crate::engine::DenyKind::RequestInvalid, error, Some(ip)),
    };
    pdp.set_fixed_time(None);

    let expect = case.expect;
    result.checks.push(Check::equal(
        CheckKind::Decision,
        Value::from(expect.decision.as_str()),
        Value::from(answer.decision),
    ));
    result.checks.push(Check::same_set(
        CheckKind::Policies,
        &expect.policies,
        &answer.policies,
    ));
    if let Some(errors) = &expect.errors {
        let actual: Vec<String> = answer.errors.iter().map(|e| e.policy.clone()).collect();
        result
            .checks
            .push(Check::same_set(CheckKind::Errors, errors, &actual));
    }
    if let Some(deny) = expect.deny {
        let actual = answer.deny.map(|kind| kind.as_str());
        result.checks.push(Check::equal(
            CheckKind::Deny,
            Value::from(deny),
            actual.map_or(Value::Null, Value::from),
        ));
    }
    if let Some(code) = expect.error {
        let actual = answer.error.as_ref().map(|error| error.code.clone());
        result.checks.push(Check::equal(
            CheckKind::ErrorCode,
            Value::from(code),
            actual.map_or(Value::Null, Value::from),
        ));
    }
    if let Some(error) = &answer.error {
        result.detail = Some(format!("{}: {}", error.code, error.message));
    }
    result.determining = answer.policies;
    result
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_str(name)
            .map_err(|err| format!("header name `{name}` is invalid: {err}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|err| format!("header `{name}` has an invalid value: {err}"))?;
        map.append(name, value);
    }
    Ok(map)
}
