//! Impact analysis: evaluates the Cedar requests of a decision log again against a
//! candidate bundle and reports the decisions that would change.
//!
//! A line is replayed from its `request` field (the principal entity, action, resource
//! and context as evaluated), against the candidate's policies and entities. Lines
//! without a request (rejected before evaluation) are skipped. Fields that redaction
//! removed or hashed are left out. A line whose replay then fails, or makes a policy
//! raise an error it did not raise before, is reported as not replayable.
// NOTE: a policy that tests a redacted field with `has` sees it as absent, so such a
// replay can differ from the original without being reported as not replayable.

use std::collections::BTreeMap;
use std::io::BufRead;

use cedar_policy::{Context, Entity, EntityUid, Request};
use serde::Serialize;
use serde_json::Value;

use crate::config::{OnForbidError, parse_field_path};
use crate::decide::Snapshot;
use crate::decision_log::DecisionRecord;
use crate::engine;
use crate::mapping::MappedRequest;

/// Examples kept for each group of changes.
const EXAMPLES: usize = 3;
/// Unreplayable lines listed in the report; more are only counted.
const LISTED_FAILURES: usize = 20;

/// The result of a replay.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Revision of the candidate bundle.
    pub revision: String,
    /// Decision log lines read.
    pub lines: u64,
    pub replayed: u64,
    pub unchanged: u64,
    /// Decisions that would change from allow to deny or back.
    pub changed: u64,
    /// Decisions that stay the same but with other determining policies.
    pub policies_changed: u64,
    /// Lines without a Cedar request: rejected before the policies could decide.
    pub skipped: u64,
    pub unreplayable: u64,
    pub changes: Vec<ChangeGroup>,
    /// The first unreplayable lines, with the reason.
    pub unreplayable_lines: Vec<Unreplayable>,
}

/// Changed decisions with the same action, direction and policies.
#[derive(Debug, Serialize)]
pub struct ChangeGroup {
    pub action: String,
    pub from: String,
    pub to: String,
    /// The determining policies in the log.
    pub before: Vec<String>,
    /// The determining policies with the candidate bundle.
    pub after: Vec<String>,
    pub count: u64,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub request_id: String,
    pub time: String,
    pub principal: Option<String>,
    pub resource: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Unreplayable {
    /// The file and 1-based line.
    pub location: String,
    pub request_id: Option<String>,
    pub reason: String,
}

type GroupKey = (String, String, String, Vec<String>, Vec<String>);

/// Collects replay results line by line.
pub struct Replay<'a> {
    candidate: &'a Snapshot,
    on_forbid_error: OnForbidError,
    report: Report,
    groups: BTreeMap<GroupKey, ChangeGroup>,
}

impl<'a> Replay<'a> {
    pub fn new(candidate: &'a Snapshot, on_forbid_error: OnForbidError) -> Self {
        Self {
            candidate,
            on_forbid_error,
            report: Report {
                revision: candidate.bundle.revision.clone(),
                ..Report::default()
            },
            groups: BTreeMap::new(),
        }
    }

    /// Replays every line of a decision log. `name` names the source in the report.
    pub fn read(&mut self, name: &str, reader: impl BufRead) -> std::io::Result<()> {
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let location = format!("{name}:{}", index + 1);
            self.line(&location, &line);
        }
        Ok(())
    }

    fn line(&mut self, location: &str, line: &str) {
        self.report.lines += 1;
        let record: DecisionRecord = match serde_json::from_str(line) {
            Ok(record) => record,
            Err(err) => {
                self.unreplayable(location, None, format!("not a decision log line: {err}"));
                return;
            }
        };
        if record.request.is_none() {
            self.report.skipped += 1;
            return;
        }
        match self.evaluate(&record) {
            Ok(evaluation) => self.compare(&record, &evaluation),
            Err(reason) => {
                let reason = if record.redacted.is_empty() {
                    reason
                } else {
                    format!("{reason} (redacted fields: {})", record.redacted.join(", "))
                };
                self.unreplayable(location, Some(record.request_id.clone()), reason);
            }
        }
    }

    fn evaluate(&self, record: &DecisionRecord) -> Result<engine::Evaluation, String> {
        let mapped = rebuild(record, self.candidate)?;
        let evaluation = engine::evaluate(&self.candidate.bundle, mapped, self.on_forbid_error)
            .map_err(|err| format!("the candidate bundle rejects the request: {err}"))?;
        if !record.redacted.is_empty() {
            let new_errors: Vec<&str> = evaluation
                .errors
                .iter()
                .filter(|error| !record.errors.iter().any(|old| old.policy == error.policy))
                .map(|error| error.policy.as_str())
                .collect();
            if !new_errors.is_empty() {
                return Err(format!(
                    "policies {} raised errors without the redacted fields",
                    new_errors.join(", ")
                ));
            }
        }
        Ok(evaluation)
    }

    fn compare(&mut self, record: &DecisionRecord, evaluation: &engine::Evaluation) {
        self.report.replayed += 1;
        let after = if evaluation.allowed { "allow" } else { "deny" };
        if after == record.decision {
            self.report.unchanged += 1;
            if evaluation.policies != record.policies {
                self.report.policies_changed += 1;
            }
            return;
        }

        self.report.changed += 1;
        let action = record.action.clone().unwrap_or_default();
        let key = (
            action.clone(),
            record.decision.clone(),
            after.to_owned(),
            record.policies.clone(),
            evaluation.policies.clone(),
        );
        let group = self.groups.entry(key).or_insert_with(|| ChangeGroup {
            action,
            from: record.decision.clone(),
            to: after.to_owned(),
            before: record.policies.clone(),
            after: evaluation.policies.clone(),
            count: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(Example {
                request_id: record.request_id.clone(),
                time: record.time.clone(),
                principal: record.principal.clone(),
                resource: record.resource.clone(),
            });
        }
    }

    fn unreplayable(&mut self, location: &str, request_id: Option<String>, reason: String) {
        self.report.unreplayable += 1;
        if self.report.unreplayable_lines.len() < LISTED_FAILURES {
            self.report.unreplayable_lines.push(Unreplayable {
                location: location.to_owned(),
                request_id,
                reason,
            });
        }
    }

    /// Returns the report, with the largest groups of changes first.
    pub fn finish(mut self) -> Report {
        let mut changes: Vec<ChangeGroup> = self.groups.into_values().collect();
        changes.sort_by_key(|group| std::cmp::Reverse(group.count));
        self.report.changes = changes;
        self.report
    }
}

/// Builds the Cedar request of a log line again, without its redacted fields.
fn rebuild(record: &DecisionRecord, candidate: &Snapshot) -> Result<MappedRequest, String> {
    let Some(logged) = &record.request else {
        return Err("the line has no request".into());
    };
    let mut principal = logged.principal.clone();
    let mut context = logged.context.clone();
    for field in &record.redacted {
        let Ok(path) = parse_field_path(field) else {
            continue;
        };
        let root = match path.root {
            crate::config::FieldRoot::Principal => principal.get_mut("attrs"),
            crate::config::FieldRoot::Context => Some(&mut context),
        };
        if let Some(root) = root {
            remove_path(root, &path.keys);
        }
    }

    let schema = &candidate.bundle.schema;
    let entity = Entity::from_json_value(principal.clone(), None)
        .map_err(|err| format!("invalid principal: {err}"))?;
    let mut parents = Vec::new();
    for parent in principal
        .get("parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let uid = EntityUid::from_json(parent.clone())
            .map_err(|err| format!("invalid principal parent: {err}"))?;
        parents.push(uid);
    }
    let action = EntityUid::from_json(logged.action.clone())
        .map_err(|err| format!("invalid action: {err}"))?;
    let resource = EntityUid::from_json(logged.resource.clone())
        .map_err(|err| format!("invalid resource: {err}"))?;
    let keys: Vec<String> = context
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    let context = Context::from_json_value(context, Some((schema, &action)))
        .map_err(|err| format!("the context does not fit the candidate schema: {err}"))?;
    let mut context_entities = Vec::new();
    for key in &keys {
        if let Some(value) = context.get(key) {
            crate::mapping::entity_references(&value, &mut context_entities);
        }
    }
    let request = Request::new(entity.uid(), action, resource, context, Some(schema))
        .map_err(|err| format!("the request does not fit the candidate schema: {err}"))?;
    Ok(MappedRequest {
        request,
        principal: entity,
        principal_parents: parents,
        context_entities,
    })
}

fn remove_path(value: &mut Value, keys: &[String]) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = value;
    for key in parents {
        match current.get_mut(key) {
            Some(inner) => current = inner,
            None => return,
        }
    }
    if let Some(object) = current.as_object_mut() {
        object.remove(last);
    }
}
