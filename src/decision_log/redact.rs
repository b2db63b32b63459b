//! Redaction of principal attributes and context keys in decision log lines.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::DecisionRecord;
use crate::config::{FieldPath, FieldRoot};

/// The configured fields to remove and to hash.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    remove: Vec<FieldPath>,
    hash: Vec<FieldPath>,
}

impl Redaction {
    pub fn new(remove: &[FieldPath], hash: &[FieldPath]) -> Self {
        Self {
            remove: remove.to_vec(),
            hash: hash.to_vec(),
        }
    }

    /// Removes or hashes the configured fields of the record's Cedar request, and lists
    /// each one that was present in `redacted`.
    pub fn apply(&self, record: &mut DecisionRecord) {
        let Some(request) = record.request.as_mut() else {
            return;
        };
        for (paths, hash) in [(&self.remove, false), (&self.hash, true)] {
            for path in paths {
                let root = match path.root {
                    FieldRoot::Principal => request.principal.get_mut("attrs"),
                    FieldRoot::Context => Some(&mut request.context),
                };
                let Some(Value::Object(root)) = root else {
                    continue;
                };
                if redact_in(root, &path.keys, hash) {
                    record.redacted.push(path.to_string());
                }
            }
        }
    }
}

/// Lists the `redact` and `hash` entries whose first key the schema declares neither as
/// an attribute of any entity type (for `principal.`) nor as a context key of any action
/// (for `context.`). Such an entry is most likely misspelt, and the field it means to
/// hide would be logged.
pub fn unknown_redactions(
    config: &crate::config::DecisionLogConfig,
    bundle: &crate::bundle::Bundle,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, path) in config
        .redact
        .iter()
        .map(|path| ("redact", path))
        .chain(config.hash.iter().map(|path| ("hash", path)))
    {
        let Some(first) = path.keys.first() else {
            continue;
        };
        let declared = match path.root {
            FieldRoot::Principal => bundle.schema.entity_types().any(|name| {
                bundle
                    .types
                    .entity_shape(&name.to_string())
                    .is_some_and(|shape| shape.attributes.contains_key(first))
            }),
            FieldRoot::Context => bundle
                .types
                .action_contexts()
                .any(|(_, context)| context.attributes.contains_key(first)),
        };
        if !declared {
            problems.push(format!(
                "decision_log.{key}: `{path}` names no attribute or context key that the schema declares; check its spelling, or the field it means would be logged"
            ));
        }
    }
    problems
}

/// Follows `keys` down nested records and removes or hashes the last one. Returns
/// whether it was present.
fn redact_in(object: &mut Map<String, Value>, keys: &[String], hash: bool) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut current = object;
    for key in parents {
        // Cedar's JSON writes a record as a plain object, so nested keys are plain keys.
        match current.get_mut(key) {
            Some(Value::Object(inner)) => current = inner,
            _ => return false,
        }
    }
    if hash {
        match current.get_mut(last) {
            Some(value) => {
                *value = Value::String(hash_value(value));
                true
            }
            None => false,
        }
    } else {
        current.remove(last).is_some()
    }
}

/// Returns `sha256:<hex>` of the value's JSON text, whose object keys serde_json sorts,
/// so equal values give equal hashes.
// NOTE: the hash has no key, so a value from a small set (a department, a short number)
// can be found by hashing every candidate; remove such fields instead.
fn hash_value(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_field_path;
    use crate::decision_log::CedarRequest;
    use serde_json::json;

    fn record() -> DecisionRecord {
        serde_json::from_value(json!({
            "time": "2026-03-02T09:00:00Z",
            "request_id": "r",
            "revision": null,
            "decision": "allow",
            "request": {
                "principal": { "uid": { "type": "App::User", "id": "alice" },
                               "attrs": { "email": "a@example.com", "address": { "zip": "10115" } },
                               "parents": [] },
                "action": { "type": "App::Action", "id": "read" },
                "resource": { "type": "App::Doc", "id": "d" },
                "context": { "caller": { "ssn": "123-45-6789", "purpose": "x" } }
            }
        }))
        .unwrap()
    }

    fn request(record: &DecisionRecord) -> &CedarRequest {
        record.request.as_ref().unwrap()
    }

    #[test]
    fn remove_and_hash_nested_fields() {
        let remove = [parse_field_path("principal.email").unwrap()];
        let hash = [
            parse_field_path("context.caller.ssn").unwrap(),
            parse_field_path("principal.address.zip").unwrap(),
        ];
        let mut record = record();
        Redaction::new(&remove, &hash).apply(&mut record);

        let request = request(&record);
        assert!(request.principal["attrs"].get("email").is_none());
        let ssn = request.context["caller"]["ssn"].as_str().unwrap();
        assert!(ssn.starts_with("sha256:"), "{ssn}");
        assert_eq!(ssn.len(), "sha256:".len() + 64);
        assert!(!record.redacted.is_empty());
        assert_eq!(
            record.redacted,
            [
                "principal.email",
                "context.caller.ssn",
                "principal.address.zip"
            ]
        );
        assert_eq!(request.context["caller"]["purpose"], "x");
    }

    #[test]
    fn absent_field_not_listed() {
        let remove = [parse_field_path("context.caller.missing").unwrap()];
        let mut record = record();
        Redaction::new(&remove, &[]).apply(&mut record);
        assert!(record.redacted.is_empty());
    }

    #[test]
    fn hash_of_known_value() {
        // SHA-256 of the JSON text `"a"` (three bytes), computed independently with
        // `printf '"a"' | sha256sum`.
        assert_eq!(
            hash_value(&json!("a")),
            "sha256:ac8d8342bbb2362d13f0a559a3621bb407011368895164b628a54f7fc33fc43c"
        );
    }
}
