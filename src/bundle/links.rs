//! Template links: the file that fills the `?principal` and `?resource` slots of policy
//! templates, in the format of the Cedar CLI's `--template-linked` file: a JSON array of
//! `{"template_id": .., "link_id": .., "args": {"?principal": "User::\"alice\"", ..}}`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{EntityUid, PolicyId, PolicySet, SlotId};
use serde_json::Value;

use super::diagnostics::{Diagnostic, error_chain};
use super::{PolicyInfo, Severity};

/// Links every entry of the file into `set` and records where each linked policy came from.
pub fn link_all(
    path: &Path,
    text: &str,
    set: &mut PolicySet,
    info: &mut HashMap<PolicyId, PolicyInfo>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let entries = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(entries)) => entries,
        Ok(_) => {
            diagnostics.push(Diagnostic::error(
                Some(path),
                "expected a JSON array of template links",
            ));
            return;
        }
        Err(err) => {
            let mut diagnostic = Diagnostic::error(Some(path), format!("invalid JSON: {err}"));
            diagnostic.line = Some(err.line());
            diagnostic.column = Some(err.column());
            diagnostics.push(diagnostic);
            return;
        }
    };

    // Each entry's link ID is searched for after the previous entry's, so that a repeated
    // ID is placed at its own entry and not at the first one that took it.
    // NOTE: an equal string between the two IDs, such as an entity id in the previous
    // entry's `args`, is found first, which puts the entry's line a few lines early.
    let mut search_from = 0;
    for (index, entry) in entries.iter().enumerate() {
        let anchor = entry
            .get("link_id")
            .and_then(Value::as_str)
            .and_then(|id| find_json_string(text, search_from, id));
        if let Some((offset, _)) = anchor {
            search_from = offset + 1;
        }

        match link_one(entry, set) {
            Ok((link_id, template_id)) => {
                let template = set.template(&template_id);
                let offset = anchor.map_or(0, |(offset, _)| offset);
                let line = text.get(..offset).unwrap_or_default().matches('\n').count() + 1;
                info.insert(
                    link_id,
                    PolicyInfo {
                        file: path.to_owned(),
                        line,
                        effect: template.map_or(cedar_policy::Effect::Permit, |t| t.effect()),
                        reason: template
                            .and_then(|t| t.annotation("reason"))
                            .map(str::to_owned),
                    },
                );
            }
            Err(message) => {
                let mut diagnostic =
                    Diagnostic::error(Some(path), format!("link [{index}]: {message}"));
                if let Some((offset, len)) = anchor {
                    diagnostic.place(text, offset, len);
                }
                diagnostics.push(diagnostic);
            }
        }
    }
}

/// Finds `value`, written as a JSON string, at or after byte `from`, and returns its byte
/// offset and length. A string written with `\u` escapes where serde_json writes plain
/// characters is not found.
fn find_json_string(text: &str, from: usize, value: &str) -> Option<(usize, usize)> {
    let quoted = serde_json::to_string(value).ok()?;
    let found = text.get(from..)?.find(&quoted)?;
    Some((from + found, quoted.len()))
}

fn link_one(entry: &Value, set: &mut PolicySet) -> Result<(PolicyId, PolicyId), String> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing string `{name}`"))
    };
    let template_id = PolicyId::new(field("template_id")?);
    let link_id = PolicyId::new(field("link_id")?);

    let mut slots = HashMap::new();
    let args = entry
        .get("args")
        .and_then(Value::as_object)
        .ok_or("missing object `args`")?;
    for (slot, value) in args {
        let slot_id = match slot.as_str() {
            "?principal" => SlotId::principal(),
            "?resource" => SlotId::resource(),
            other => {
                return Err(format!(
                    "unknown slot `{other}`; use `?principal` or `?resource`"
                ));
            }
        };
        slots.insert(
            slot_id,
            entity_uid(value).map_err(|message| format!("`{slot}`: {message}"))?,
        );
    }

    set.link(template_id.clone(), link_id.clone(), slots)
        .map_err(|err| {
            format!(
                "cannot link template `{template_id}` as `{link_id}`: {}",
                error_chain(&err)
            )
        })?;
    Ok((link_id, template_id))
}

/// Reads an entity UID written as `Type::"id"` (operator-written data, as the Cedar CLI
/// takes it) or as `{"type": .., "id": ..}`.
fn entity_uid(value: &Value) -> Result<EntityUid, String> {
    match value {
        Value::String(text) => EntityUid::from_str(text).map_err(|err| {
            format!("`{text}` is not an entity UID such as `User::\"alice\"`: {err}")
        }),
        Value::Object(_) => EntityUid::from_json(value.clone())
            .map_err(|err| format!("invalid entity UID: {}", error_chain(&err))),
        _ => Err("expected an entity UID string or object".into()),
    }
}

/// Warns about templates that no link fills: they never apply.
pub fn unlinked_templates(
    set: &PolicySet,
    info: &HashMap<PolicyId, PolicyInfo>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let linked: std::collections::HashSet<PolicyId> = set
        .policies()
        .filter_map(|policy| policy.template_id().cloned())
        .collect();
    let mut unlinked: Vec<&PolicyId> = set
        .templates()
        .map(|t| t.id())
        .filter(|id| !linked.contains(*id))
        .collect();
    unlinked.sort_by_key(|id| id.to_string());
    for id in unlinked {
        let file = info.get(id).map(|i| i.file.as_path());
        let mut diagnostic = Diagnostic::error(
            file,
            format!("template `{id}` has no links, so it never applies"),
        )
        .with_help(Some("link it in the file that `bundle.links` names".into()));
        diagnostic.severity = Severity::Warning;
        diagnostic.line = info.get(id).map(|i| i.line);
        diagnostics.push(diagnostic);
    }
}
