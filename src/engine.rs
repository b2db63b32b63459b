//! Engine stage: evaluates a mapped request against the bundle's policies and entities.

use cedar_policy::{Authorizer, Decision as CedarDecision, Effect, PolicyId};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::config::OnForbidError;
use crate::mapping::{MappedRequest, MappingError};

/// Kind of deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyKind {
    /// A `forbid` policy matched.
    Forbid,
    /// No `permit` policy matched.
    NoPermit,
    /// A `forbid` policy raised an error, and the server fails closed on that.
    ForbidErrored,
    TokenInvalid,
    RequestInvalid,
    /// No bundle is loaded.
    Unavailable,
}

impl DenyKind {
    /// Returns the name used in responses and in the decision log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbid => "forbid",
            Self::NoPermit => "no_permit",
            Self::ForbidErrored => "forbid_errored",
            Self::TokenInvalid => "token_invalid",
            Self::RequestInvalid => "request_invalid",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A policy whose evaluation raised an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub policy: String,
    pub message: String,
}

/// The outcome of evaluating one request.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub allowed: bool,
    /// The determining policies: Cedar's reason set, or the erroring `forbid` policies
    /// when those denied the request.
    pub policies: Vec<String>,
    pub errors: Vec<PolicyError>,
    pub deny_kind: Option<DenyKind>,
    /// The `@reason` annotations of the determining policies of a deny.
    pub reasons: Vec<String>,
}

/// Evaluates `mapped` against `bundle`.
///
/// The principal built from the token replaces any entity with the same UID in the
/// store for this request only, so the token, not stored data, describes the caller.
pub fn evaluate(
    bundle: &Bundle,
    mapped: MappedRequest,
    on_forbid_error: OnForbidError,
) -> Result<Evaluation, MappingError> {
    // TODO: this copies the store's entity map (its entries are shared, not deep-copied)
    // and recomputes the transitive closure, so the cost grows with the store. Build a
    // request-scoped slice instead.
    let entities = bundle
        .entities
        .clone()
        .upsert_entities([mapped.principal], None)
        .map_err(|err| {
            MappingError::Claims(format!(
                "principal conflicts with the entity store: {}",
                crate::bundle::diagnostics::error_chain(&err)
            ))
        })?;
    let response = Authorizer::new().is_authorized(&mapped.request, &bundle.policies, &entities);

    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(PolicyId::to_string)
        .collect();
    policies.sort();
    let errors: Vec<PolicyError> = response
        .diagnostics()
        .errors()
        .map(|error| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            PolicyError {
                policy: error.policy_id().to_string(),
                message: error.inner().to_string(),
            }
        })
        .collect();

    let erroring_forbids: Vec<String> = errors
        .iter()
        .filter(|error| effect_of(bundle, &error.policy) == Some(Effect::Forbid))
        .map(|error| error.policy.clone())
        .collect();
    let (allowed, policies, deny_kind) = match response.decision() {
        CedarDecision::Allow
            if on_forbid_error == OnForbidError::Deny && !erroring_forbids.is_empty() =>
        {
            (false, erroring_forbids, Some(DenyKind::ForbidErrored))
        }
        CedarDecision::Allow => (true, policies, None),
        CedarDecision::Deny if policies.is_empty() => (false, policies, Some(DenyKind::NoPermit)),
        CedarDecision::Deny => (false, policies, Some(DenyKind::Forbid)),
    };

    let reasons = if allowed {
        Vec::new()
    } else {
        policies
            .iter()
            .filter_map(|id| bundle.policy_info.get(&PolicyId::new(id)))
            .filter_map(|info| info.reason.clone())
            .collect()
    };
    Ok(Evaluation {
        allowed,
        policies,
        errors,
        deny_kind,
        reasons,
    })
}

fn effect_of(bundle: &Bundle, id: &str) -> Option<Effect> {
    let id = PolicyId::new(id);
    bundle
        .policies
        .policy(&id)
        .map(cedar_policy::Policy::effect)
}
