//! Requests written in Cedar's own terms: entity UIDs for principal, action and resource,
//! and a context of Cedar JSON values, as Cedar's test files and the Cedar CLI's
//! `run-tests` files write them. They skip the claim mapping, since they name the
//! principal directly. On the bundle's own entity store they are decided by
//! [`engine::evaluate`], the function that decides the server's requests, with the same
//! policy index and entity slice. On entities that a test brings, they are decided by
//! [`engine::evaluate_request`].

use std::str::FromStr;

use std::collections::HashSet;

use cedar_policy::{Context, Entities, Entity, EntityUid, Request, Schema};
use serde_json::Value;

use crate::bundle::Bundle;
use crate::bundle::diagnostics::error_chain;
use crate::config::OnForbidError;
use crate::engine::{self, Evaluation};
use crate::mapping::{MappedRequest, MappingError, entity_references};

/// A Cedar request ready to decide, with the entity UIDs its context refers to.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub request: Request,
    pub context_entities: Vec<EntityUid>,
}

/// Error in a request or in entities written in Cedar's terms. The message names the
/// field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CedarRequestError {
    pub field: String,
    pub message: String,
}

impl CedarRequestError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A request in Cedar's terms, before it is checked against a schema.
#[derive(Debug, Clone)]
pub struct CedarRequest {
    pub principal: EntityUid,
    pub action: EntityUid,
    pub resource: EntityUid,
    /// The context as a JSON object of Cedar values (`__entity` and `__extn` escapes
    /// allowed; with a schema, also the short forms the schema makes unambiguous).
    pub context: Value,
}

impl CedarRequest {
    /// Reads a request whose UIDs are JSON objects, `{"type": .., "id": ..}` or
    /// `{"__entity": {"type": .., "id": ..}}`, as Cedar's integration tests write them.
    pub fn from_uid_objects(
        principal: Value,
        action: Value,
        resource: Value,
        context: Value,
    ) -> Result<Self, CedarRequestError> {
        let uid = |field: &str, value: Value| {
            EntityUid::from_json(value).map_err(|err| {
                CedarRequestError::new(field, format!("not an entity UID: {}", error_chain(&err)))
            })
        };
        Ok(Self {
            principal: uid("principal", principal)?,
            action: uid("action", action)?,
            resource: uid("resource", resource)?,
            context,
        })
    }

    /// Reads a request whose UIDs are strings in Cedar syntax, `User::"alice"`, as the
    /// Cedar CLI's request files write them.
    pub fn from_uid_strings(
        principal: &str,
        action: &str,
        resource: &str,
        context: Value,
    ) -> Result<Self, CedarRequestError> {
        let uid = |field: &str, text: &str| {
            EntityUid::from_str(text).map_err(|err| {
                CedarRequestError::new(
                    field,
                    format!(
                        "`{text}` is not an entity UID such as `User::\"alice\"`: {}",
                        error_chain(&err)
                    ),
                )
            })
        };
        Ok(Self {
            principal: uid("principal", principal)?,
            action: uid("action", action)?,
            resource: uid("resource", resource)?,
            context,
        })
    }

    /// Builds the Cedar request. With a schema, the context is read by the action's
    /// context type. `validate` also checks the request's types against the schema, as the
    /// server always does.
    pub fn build(
        &self,
        schema: Option<&Schema>,
        validate: bool,
    ) -> Result<PreparedRequest, CedarRequestError> {
        let context = Context::from_json_value(
            self.context.clone(),
            schema.map(|schema| (schema, &self.action)),
        )
        .map_err(|err| CedarRequestError::new("context", error_chain(&err)))?;
        let mut context_entities = Vec::new();
        for key in self.context.as_object().into_iter().flat_map(|o| o.keys()) {
            if let Some(value) = context.get(key) {
                entity_references(&value, &mut context_entities);
            }
        }
        let request = Request::new(
            self.principal.clone(),
            self.action.clone(),
            self.resource.clone(),
            context,
            schema.filter(|_| validate),
        )
        .map_err(|err| CedarRequestError::new("request", error_chain(&err)))?;
        Ok(PreparedRequest {
            request,
            context_entities,
        })
    }
}

/// Reads entities from Cedar's entities JSON (an array of `{"uid", "attrs", "parents"}`),
/// checked against the schema when one is given, which also adds its action entities.
pub fn parse_entities(
    entities: Value,
    schema: Option<&Schema>,
) -> Result<Entities, CedarRequestError> {
    Entities::from_json_value(entities, schema)
        .map_err(|err| CedarRequestError::new("entities", error_chain(&err)))
}

/// Decides `prepared` with the bundle's policies, on `entities` when the test brings its
/// own, or else on the bundle's entity store through the server's engine path, with the
/// stored principal in place of one built from a token.
pub fn evaluate(
    bundle: &Bundle,
    prepared: PreparedRequest,
    entities: Option<&Entities>,
    on_forbid_error: OnForbidError,
) -> Result<Evaluation, MappingError> {
    if let Some(entities) = entities {
        return Ok(engine::evaluate_request(
            bundle,
            &prepared.request,
            entities,
            on_forbid_error,
        ));
    }

    let Some(principal) = prepared.request.principal().cloned() else {
        return Err(MappingError::Request {
            field: "principal".into(),
            message: "the request has no principal".into(),
        });
    };
    // An entity missing from the store has no attributes and no ancestors, for Cedar
    // and here alike.
    let principal_parents: Vec<EntityUid> = bundle
        .entities
        .ancestors(&principal)
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let principal = bundle
        .entities
        .get(&principal)
        .cloned()
        .unwrap_or_else(|| Entity::new_no_attrs(principal, HashSet::new()));
    let mapped = MappedRequest {
        request: prepared.request,
        principal,
        principal_parents,
        context_entities: prepared.context_entities,
    };
    engine::evaluate(bundle, mapped, on_forbid_error)
}
