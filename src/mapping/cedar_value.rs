//! Cedar values built straight from JSON, without Cedar's JSON parser.
//!
//! Cedar's entity and context JSON parsers try each form a value could take and build an
//! error for every form that does not fit, which costs more than the rest of a decision.
//! The mapping has already typed every value it produces, so it builds them
//! directly here; the schema still checks the finished request.

use cedar_policy::{EntityUid, RestrictedExpression};
use serde_json::Value;

use crate::bundle::schema_types::AttrType;

/// Converts a value that the mapping produced in Cedar's JSON form: strings, whole
/// numbers, booleans, arrays, records, `{"__entity": ..}` and `{"__extn": ..}`.
pub fn typed(value: &Value) -> Result<RestrictedExpression, String> {
    match value {
        Value::Object(object) => {
            if let Some(reference) = object.get("__entity") {
                return EntityUid::from_json(reference.clone())
                    .map(RestrictedExpression::new_entity_uid)
                    .map_err(|err| format!("invalid entity reference: {err}"));
            }
            if let Some(extension) = object.get("__extn") {
                return extension_call(extension);
            }
            record(object, typed)
        }
        Value::Array(items) => items
            .iter()
            .map(typed)
            .collect::<Result<Vec<_>, _>>()
            .map(RestrictedExpression::new_set),
        other => primitive(other),
    }
}

/// Converts a value of the caller's context, which arrives as plain JSON. Returns `None`
/// for anything Cedar's own parser would read differently from its plain form, an object
/// with a key that starts with `__`, so the caller of this falls back to that parser.
pub fn plain(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::Object(object) => {
            if object.keys().any(|key| key.starts_with("__")) {
                return None;
            }
            record(object, |item| plain(item).ok_or_else(String::new)).ok()
        }
        Value::Array(items) => items
            .iter()
            .map(plain)
            .collect::<Option<Vec<_>>>()
            .map(RestrictedExpression::new_set),
        other => primitive(other).ok(),
    }
}

/// Returns whether values of `ty` read the same from plain JSON with or without the
/// schema. That is true unless the type holds an entity reference or an extension value anywhere, whose
/// plain JSON forms (a string, or an object with `type` and `id`) the schema reinterprets.
pub fn reads_plain(ty: &AttrType) -> bool {
    match ty {
        AttrType::String | AttrType::Long | AttrType::Bool => true,
        AttrType::Set(element) => reads_plain(element),
        AttrType::Record(record) => record
            .attributes
            .values()
            .all(|attribute| reads_plain(&attribute.ty)),
        AttrType::Entity(_) | AttrType::Extension(_) => false,
    }
}

fn primitive(value: &Value) -> Result<RestrictedExpression, String> {
    match value {
        Value::String(text) => Ok(RestrictedExpression::new_string(text.clone())),
        Value::Bool(flag) => Ok(RestrictedExpression::new_bool(*flag)),
        Value::Number(number) => number
            .as_i64()
            .map(RestrictedExpression::new_long)
            .ok_or_else(|| format!("`{number}` is not a whole number in Cedar's Long range")),
        Value::Null => Err("null is not a Cedar value".to_owned()),
        Value::Array(_) | Value::Object(_) => Err("expected a single value".to_owned()),
    }
}

fn record(
    object: &serde_json::Map<String, Value>,
    convert: impl Fn(&Value) -> Result<RestrictedExpression, String>,
) -> Result<RestrictedExpression, String> {
    let fields = object
        .iter()
        .map(|(key, item)| convert(item).map(|value| (key.clone(), value)))
        .collect::<Result<Vec<_>, _>>()?;
    RestrictedExpression::new_record(fields).map_err(|err| err.to_string())
}

fn extension_call(extension: &Value) -> Result<RestrictedExpression, String> {
    let function = extension.get("fn").and_then(Value::as_str);
    let argument = extension.get("arg").and_then(Value::as_str);
    match (function, argument) {
        (Some("ip"), Some(argument)) => Ok(RestrictedExpression::new_ip(argument)),
        (Some("decimal"), Some(argument)) => Ok(RestrictedExpression::new_decimal(argument)),
        (Some("datetime"), Some(argument)) => Ok(RestrictedExpression::new_datetime(argument)),
        (Some("duration"), Some(argument)) => Ok(RestrictedExpression::new_duration(argument)),
        _ => Err(format!("unsupported extension value {extension}")),
    }
}
