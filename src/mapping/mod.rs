//! Mapping stage: turns verified claims, the request's metadata and the caller's request
//! into a Cedar request plus the principal entity.
//!
//! The principal is built from claims as the config declares, with each value converted
//! to the type the schema declares for its attribute. The context contains what the
//! server fills in (client IP, time, region, method, path, issuer) for each key that the
//! action's context type declares. The caller's own context goes under `caller`, so it
//! can never override a server-filled key. Every entity UID is built with the Cedar API from a type
//! and an id, so no claim text is ever parsed as Cedar syntax.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, Request};
use serde_json::{Map, Value, json};

use crate::bundle::Bundle;
use crate::bundle::diagnostics::error_chain;

mod cedar_value;
mod client_ip;
mod principal;
mod unique_json;

use crate::bundle::schema_types::{AttrType, RecordType};
use crate::config::Config;
pub use client_ip::{client_ip, is_trusted};
pub use principal::{PrincipalEntity, PrincipalMapping};
pub use unique_json::parse_context;
use unique_json::unique_object;

/// The context key that contains the caller's own context.
pub const CALLER_KEY: &str = "caller";

/// Error that stops a request from being mapped. Claim errors come from the token;
/// request errors come from the caller and name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{0}")]
    Claims(String),
    #[error("{field}: {message}")]
    Request { field: String, message: String },
}

impl MappingError {
    pub(crate) fn request(field: &str, message: impl Into<String>) -> Self {
        Self::Request {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Request metadata that the server, not the caller, vouches for.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub client_ip: IpAddr,
    pub time: jiff::Timestamp,
    pub method: Option<String>,
    pub path: Option<String>,
}

/// Body of `POST /authorize`: may the principal do `action` on `resource`?
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeInput {
    pub action: String,
    pub resource: ResourceRef,
    #[serde(default, deserialize_with = "unique_object")]
    pub context: Map<String, Value>,
    /// HTTP method of the API call being authorized, when a proxy forwards it.
    #[serde(default)]
    pub method: Option<String>,
    /// Path of the API call being authorized.
    #[serde(default)]
    pub path: Option<String>,
    /// Asks for how each policy evaluated, when the config allows it.
    #[serde(default)]
    pub debug: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub id: String,
}

/// A Cedar request and the principal entity that goes with it.
#[derive(Clone)]
pub struct MappedRequest {
    pub request: Request,
    pub principal: Entity,
    /// The principal's direct parents, as the token names them.
    pub principal_parents: Vec<EntityUid>,
    /// Entity UIDs found in context values, so the engine can include their entities.
    pub context_entities: Vec<EntityUid>,
}

/// The principal mappings and the action type, checked against the schema of one bundle.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The top-level `[principal]` mapping, for issuers without their own.
    default: Option<PrincipalMapping>,
    /// The issuers' own mappings, by the exact `iss` value of the issuer.
    by_issuer: HashMap<String, PrincipalMapping>,
    action_type: EntityTypeName,
    /// The schema's entity types by name. Parsing a type name takes Cedar's parser, which
    /// costs a few microseconds on every request; a lookup does not.
    entity_types: HashMap<String, EntityTypeName>,
}

/// The keys the server fills in, with the type each must have in the schema.
const SERVER_KEYS: [(&str, &str); 9] = [
    ("ip", "ipaddr"),
    ("region", "String"),
    ("time", "datetime"),
    ("hour", "Long"),
    ("minute", "Long"),
    ("weekday", "Long"),
    ("method", "String"),
    ("path", "String"),
    ("issuer", "String"),
];

impl Mapping {
    /// Checks every principal mapping of `config` and the server-filled context keys
    /// against the bundle's schema, reporting every problem at once.
    pub fn new(config: &Config, bundle: &Bundle) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let action_type = parse_type(
            &config.decision.action_type,
            "decision.action_type",
            &mut problems,
        );
        let mut check = |principal, key: &str| {
            PrincipalMapping::new(principal, key, bundle)
                .map_err(|found| problems.extend(found))
                .ok()
        };

        let default = config
            .principal
            .as_ref()
            .and_then(|principal| check(principal, "principal"));
        let mut by_issuer = HashMap::new();
        for (index, issuer) in config.issuers.iter().enumerate() {
            let Some(principal) = &issuer.principal else {
                continue;
            };
            if let Some(mapping) = check(principal, &issuer.principal_key(index)) {
                by_issuer.insert(issuer.issuer.clone(), mapping);
            }
        }
        check_context_types(bundle, &mut problems);

        match action_type {
            Some(action_type) if problems.is_empty() => Ok(Self {
                default,
                by_issuer,
                action_type,
                entity_types: bundle
                    .schema
                    .entity_types()
                    .map(|name| (name.to_string(), name.clone()))
                    .collect(),
            }),
            _ => Err(problems),
        }
    }

    /// Builds the Cedar request for one call from verified claims. The principal mapping
    /// is the one of the issuer that the `iss` claim names, or else the default one.
    pub fn map(
        &self,
        bundle: &Bundle,
        time_zone: &jiff::tz::TimeZone,
        claims: &Map<String, Value>,
        meta: &RequestMeta,
        input: &AuthorizeInput,
    ) -> Result<MappedRequest, MappingError> {
        let issuer = claims.get("iss").and_then(Value::as_str);
        let mapping = issuer
            .and_then(|iss| self.by_issuer.get(iss))
            .or(self.default.as_ref())
            .ok_or_else(|| {
                // The config check makes this reachable only for claims that no issuer
                // verified, such as those given to `cedargate authorize --claims`.
                MappingError::Claims(format!(
                    "no principal mapping applies to issuer {}; add a top-level `[principal]`, or an issuer with this `iss` and its own `principal`",
                    issuer.map_or("(no `iss` claim)".to_owned(), |iss| format!("`{iss}`"))
                ))
            })?;
        let principal = mapping.principal(claims)?;
        self.map_entity(bundle, time_zone, principal, issuer, meta, input)
    }

    /// Builds the Cedar request for one call whose principal entity is already built.
    /// `issuer` fills the context key `issuer`, when the action declares it.
    pub fn map_entity(
        &self,
        bundle: &Bundle,
        time_zone: &jiff::tz::TimeZone,
        principal: PrincipalEntity,
        issuer: Option<&str>,
        meta: &RequestMeta,
        input: &AuthorizeInput,
    ) -> Result<MappedRequest, MappingError> {
        let principal_uid = principal.entity.uid();

        let action_id = EntityId::from_str(&input.action)
            .map_err(|err| MappingError::request("action", format!("invalid action id: {err}")))?;
        let action = EntityUid::from_type_name_and_id(self.action_type.clone(), action_id);
        let context_type = bundle
            .types
            .action_context(&self.action_type.to_string(), &input.action)
            .ok_or_else(|| {
                MappingError::request(
                    "action",
                    format!("action `{}` is not declared in the schema", input.action),
                )
            })?;

        let known = self.entity_types.get(&input.resource.entity_type).cloned();
        let resource_type =
            known.map_or_else(|| EntityTypeName::from_str(&input.resource.entity_type), Ok);
        let resource_type = resource_type.map_err(|_| {
            MappingError::request(
                "resource.type",
                format!(
                    "`{}` is not a Cedar entity type name such as `Crm::Customer`",
                    input.resource.entity_type
                ),
            )
        })?;
        let resource_id = EntityId::from_str(&input.resource.id).map_err(|err| {
            MappingError::request("resource.id", format!("invalid entity id: {err}"))
        })?;
        let resource = EntityUid::from_type_name_and_id(resource_type, resource_id);

        let context_json = server_context(
            context_type,
            time_zone,
            meta,
            input,
            issuer,
            &bundle.regions,
        )?;
        let context_keys: Vec<String> = context_json
            .as_object()
            .map(|object| object.keys().cloned().collect())
            .unwrap_or_default();
        let context = match direct_context(&context_json, context_type) {
            Some(context) => context,
            None => Context::from_json_value(context_json.clone(), Some((&bundle.schema, &action)))
                .map_err(|err| context_error(&err))?,
        };

        let mut context_entities = Vec::new();
        for key in &context_keys {
            if let Some(value) = context.get(key) {
                entity_references(&value, &mut context_entities);
            }
        }

        let request = Request::new(
            principal_uid,
            action.clone(),
            resource,
            context,
            Some(&bundle.schema),
        )
        .map_err(|err| {
            // Cedar's JSON parser names the offending attribute, where the check of a
            // built context only reports that it does not fit, so a rejected context is parsed
            // again for the message.
            if let cedar_policy::RequestValidationError::InvalidContext(_) = err
                && let Err(parse) =
                    Context::from_json_value(context_json.clone(), Some((&bundle.schema, &action)))
            {
                return context_error(&parse);
            }
            request_error(&err, input)
        })?;
        Ok(MappedRequest {
            request,
            principal: principal.entity,
            principal_parents: principal.parents,
            context_entities,
        })
    }
}

/// Builds the context without Cedar's JSON parser when that gives the same context: the
/// server's keys have known types, and the caller's record is plain JSON whose declared
/// type holds no entity or extension values. Returns `None` otherwise, and the schema
/// then directs the parse. The schema checks the finished request either way.
fn direct_context(context_json: &Value, declared: &RecordType) -> Option<Context> {
    let object = context_json.as_object()?;
    let mut pairs = Vec::with_capacity(object.len());
    for (key, value) in object {
        let value = if key == CALLER_KEY {
            if !declared
                .attributes
                .get(CALLER_KEY)
                .is_some_and(|attribute| cedar_value::reads_plain(&attribute.ty))
            {
                return None;
            }
            cedar_value::plain(value)?
        } else {
            cedar_value::typed(value).ok()?
        };
        pairs.push((key.clone(), value));
    }
    Context::from_pairs(pairs).ok()
}

/// Collects the entity UIDs inside a Cedar value.
pub fn entity_references(value: &cedar_policy::EvalResult, out: &mut Vec<EntityUid>) {
    use cedar_policy::EvalResult;
    match value {
        EvalResult::EntityUid(uid) => out.push(uid.clone()),
        EvalResult::Set(set) => set.iter().for_each(|item| entity_references(item, out)),
        EvalResult::Record(record) => record
            .iter()
            .for_each(|(_, item)| entity_references(item, out)),
        EvalResult::Bool(_)
        | EvalResult::Long(_)
        | EvalResult::String(_)
        | EvalResult::ExtensionValue(_) => {}
    }
}

fn parse_type(name: &str, key: &str, problems: &mut Vec<String>) -> Option<EntityTypeName> {
    EntityTypeName::from_str(name)
        .map_err(|_| problems.push(format!("{key}: `{name}` is not a Cedar entity type name")))
        .ok()
}

/// Checks that every server-filled key an action's context declares has the type the
/// server fills in.
fn check_context_types(bundle: &Bundle, problems: &mut Vec<String>) {
    let mut contexts: Vec<(&(String, String), &RecordType)> =
        bundle.types.action_contexts().collect();
    contexts.sort_by(|a, b| a.0.cmp(b.0));
    for ((action_type, action), context) in contexts {
        for (key, expected) in SERVER_KEYS {
            let Some(attr) = context.attributes.get(key) else {
                continue;
            };
            if attr.ty.to_string() != expected {
                problems.push(format!(
                    "schema: context attribute `{key}` of action `{action_type}::\"{action}\"` is {}, but the server fills it in as {expected}",
                    attr.ty
                ));
            }
        }
        if let Some(caller) = context.attributes.get(CALLER_KEY)
            && !matches!(caller.ty, AttrType::Record(_))
        {
            problems.push(format!(
                "schema: context attribute `{CALLER_KEY}` of action `{action_type}::\"{action}\"` must be a record; it holds the caller's context"
            ));
        }
    }
}

/// Converts a claim value to Cedar's JSON value format for the declared type. Objects
/// are read only through the declared record attributes, so a claim can never smuggle in
/// an `__entity` or `__extn` escape of its own.
pub fn to_cedar_json(value: &Value, ty: &AttrType) -> Result<Value, String> {
    match (ty, value) {
        (AttrType::String, Value::String(_)) => Ok(value.clone()),
        (AttrType::Long, Value::Number(n)) if n.is_i64() => Ok(value.clone()),
        (AttrType::Long, Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("expected a Long, found the string `{text}`")),
        (AttrType::Bool, Value::Bool(_)) => Ok(value.clone()),
        // Some providers send booleans as strings (Cognito's `email_verified`).
        (AttrType::Bool, Value::String(text)) if text == "true" || text == "false" => {
            Ok(Value::Bool(text == "true"))
        }
        (AttrType::Set(element), Value::Array(items)) => items
            .iter()
            .map(|item| to_cedar_json(item, element))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        // OAuth scopes arrive as one space-separated string (RFC 6749 section 3.3).
        (AttrType::Set(element), Value::String(text)) if **element == AttrType::String => Ok(
            Value::Array(text.split_whitespace().map(Value::from).collect()),
        ),
        (AttrType::Set(element), single) => Ok(Value::Array(vec![to_cedar_json(single, element)?])),
        (AttrType::Record(record), Value::Object(object)) => {
            let mut out = Map::new();
            for (name, attr) in &record.attributes {
                match object.get(name).filter(|v| !v.is_null()) {
                    Some(inner) => {
                        let converted = to_cedar_json(inner, &attr.ty)
                            .map_err(|message| format!("in `{name}`: {message}"))?;
                        out.insert(name.clone(), converted);
                    }
                    None if attr.required => return Err(format!("record has no `{name}`")),
                    None => {}
                }
            }
            Ok(Value::Object(out))
        }
        (AttrType::Entity(entity_type), Value::String(id)) => {
            let entity_type = EntityTypeName::from_str(entity_type)
                .map_err(|err| format!("invalid entity type `{entity_type}`: {err}"))?;
            let uid = EntityUid::from_type_name_and_id(entity_type, EntityId::new(id));
            // Cedar writes an entity reference as `{"__entity": {"type": .., "id": ..}}`.
            uid.to_json_value().map_err(|err| err.to_string())
        }
        (AttrType::Extension(name), Value::String(text)) => {
            let function = if name == "ipaddr" {
                "ip"
            } else {
                name.as_str()
            };
            Ok(json!({ "__extn": { "fn": function, "arg": text } }))
        }
        // A NumericDate claim such as `auth_time` becomes a datetime.
        (AttrType::Extension(name), Value::Number(n)) if name == "datetime" => {
            let seconds = n.as_i64().ok_or("expected whole seconds since the epoch")?;
            let timestamp = jiff::Timestamp::from_second(seconds).map_err(|err| err.to_string())?;
            Ok(json!({ "__extn": { "fn": "datetime", "arg": cedar_datetime(timestamp) } }))
        }
        (ty, value) => Err(format!("expected {ty}, found {}", json_kind(value))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Formats a timestamp the way Cedar's `datetime` accepts it, in UTC with milliseconds.
pub fn cedar_datetime(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S.%3fZ").to_string()
}

/// Builds the context record: server-filled keys that the action declares, plus the
/// caller's context under `caller`.
fn server_context(
    declared: &RecordType,
    time_zone: &jiff::tz::TimeZone,
    meta: &RequestMeta,
    input: &AuthorizeInput,
    issuer: Option<&str>,
    regions: &crate::bundle::RegionTable,
) -> Result<Value, MappingError> {
    let local = meta.time.to_zoned(time_zone.clone());
    let client_ip = crate::bundle::regions::canonical(meta.client_ip);
    let mut filled = Map::new();
    let mut put = |key: &str, value: Value| {
        if declared.attributes.contains_key(key) {
            filled.insert(key.to_owned(), value);
        }
    };
    put(
        "ip",
        json!({ "__extn": { "fn": "ip", "arg": client_ip.to_string() } }),
    );
    put("region", Value::from(regions.region_of(client_ip)));
    put(
        "time",
        json!({ "__extn": { "fn": "datetime", "arg": cedar_datetime(meta.time) } }),
    );
    put("hour", Value::from(local.hour()));
    put("minute", Value::from(local.minute()));
    put(
        "weekday",
        Value::from(local.weekday().to_monday_one_offset()),
    );
    if let Some(method) = input.method.as_ref().or(meta.method.as_ref()) {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(MappingError::request(
                "method",
                format!("`{method}` is not an HTTP method such as `GET`"),
            ));
        }
        put("method", Value::from(method.to_ascii_uppercase()));
    }
    if let Some(path) = input.path.as_ref().or(meta.path.as_ref()) {
        if !path.starts_with('/') {
            return Err(MappingError::request(
                "path",
                format!("`{path}` is not an absolute path starting with `/`"),
            ));
        }
        put("path", Value::from(path.as_str()));
    }

    if let Some(issuer) = issuer {
        put("issuer", Value::from(issuer));
    }

    if declared.attributes.contains_key(CALLER_KEY) {
        filled.insert(CALLER_KEY.to_owned(), Value::Object(input.context.clone()));
    } else if !input.context.is_empty() {
        return Err(MappingError::request(
            "context",
            format!(
                "action `{}` accepts no caller context (its schema context has no `{CALLER_KEY}` record)",
                input.action
            ),
        ));
    }
    Ok(Value::Object(filled))
}

fn context_error(err: &cedar_policy::ContextJsonError) -> MappingError {
    MappingError::request(
        "context",
        format!(
            "the context (the server's keys and the caller's `{CALLER_KEY}` record) does not match the action's context type: {}",
            error_chain(err)
        ),
    )
}

fn request_error(
    err: &cedar_policy::RequestValidationError,
    input: &AuthorizeInput,
) -> MappingError {
    use cedar_policy::RequestValidationError as E;
    let message = error_chain(err);
    match err {
        E::UndeclaredAction(_) => MappingError::request("action", message),
        E::UndeclaredResourceType(_) | E::InvalidResourceType(_) => {
            MappingError::request("resource.type", message)
        }
        E::UndeclaredPrincipalType(_) | E::InvalidPrincipalType(_) => MappingError::request(
            "action",
            format!(
                "action `{}` does not apply to this principal: {message}",
                input.action
            ),
        ),
        _ => MappingError::request("context", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_string_becomes_set() {
        let set = to_cedar_json(
            &json!("read write  admin"),
            &AttrType::Set(Box::new(AttrType::String)),
        );
        assert_eq!(set, Ok(json!(["read", "write", "admin"])));
    }

    #[test]
    fn escape_objects_in_claims_rejected_for_strings() {
        let smuggled = json!({ "__entity": { "type": "User", "id": "admin" } });
        assert!(to_cedar_json(&smuggled, &AttrType::String).is_err());
        let entity = to_cedar_json(&smuggled, &AttrType::Entity("User".into()));
        assert!(entity.is_err());
    }
}
