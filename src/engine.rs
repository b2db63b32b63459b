//! Engine stage: evaluates a mapped request against the bundle's policies and entities.

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, Entity, EntityUid, PolicyId,
    PolicySet, Request,
};
use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::config::OnForbidError;
use crate::mapping::{MappedRequest, MappingError};

pub mod index;
pub mod slice;

/// Kind of deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    let MappedRequest {
        request,
        principal,
        principal_parents,
        context_entities,
    } = mapped;
    let action = request.action().cloned();
    let resource = request.resource().cloned();

    let gather = |principal: Entity, literals: &[EntityUid]| {
        let seeds = action
            .iter()
            .chain(resource.iter())
            .chain(context_entities.iter())
            .chain(literals.iter())
            .cloned();
        slice::slice(&bundle.entities, principal, &principal_parents, seeds).map_err(|err| {
            MappingError::request(
                "resource",
                format!("cannot gather the request's entities: {err}"),
            )
        })
    };

    if !bundle.index.enabled() {
        let entities = gather(principal, &bundle.condition_literals)?;
        return Ok(decide(
            bundle,
            &request,
            &bundle.policies,
            &entities,
            on_forbid_error,
        ));
    }

    // The index keys come from the slice, whose ancestor sets already use the token's
    // parents for the principal and for every entity below it (the resource may be the
    // principal or one of its children). Keys from the stored entities would miss a
    // policy that the token's groups make applicable.
    let principal_uid = principal.uid();
    let entities = gather(principal.clone(), &[])?;
    let keys = |uid: Option<&EntityUid>| -> Vec<EntityUid> {
        uid.into_iter()
            .flat_map(|uid| {
                std::iter::once(uid.clone())
                    .chain(entities.ancestors(uid).into_iter().flatten().cloned())
            })
            .collect()
    };
    let principal_keys = keys(Some(&principal_uid));
    let action_keys = keys(action.as_ref());
    let resource_keys = keys(resource.as_ref());
    let candidates = bundle.index.candidates(
        principal_keys.iter(),
        action_keys.iter(),
        resource_keys.iter(),
    );
    // Conditions of the candidates may name further entities; those join the slice.
    let entities = if candidates.literals.is_empty() {
        entities
    } else {
        gather(principal, &candidates.literals)?
    };
    Ok(decide(
        bundle,
        &request,
        &candidates.policies,
        &entities,
        on_forbid_error,
    ))
}

/// Evaluates a prepared Cedar request against every policy of the bundle and the given
/// `entities`, with the same rule for erroring `forbid` policies. For test files that
/// bring their own entities, such as the Cedar CLI's `run-tests` files.
pub fn evaluate_request(
    bundle: &Bundle,
    request: &Request,
    entities: &Entities,
    on_forbid_error: OnForbidError,
) -> Evaluation {
    decide(bundle, request, &bundle.policies, entities, on_forbid_error)
}

/// Runs Cedar on `policy_set` and applies the rule for erroring `forbid` policies.
fn decide(
    bundle: &Bundle,
    request: &Request,
    policy_set: &PolicySet,
    entities: &Entities,
    on_forbid_error: OnForbidError,
) -> Evaluation {
    let response = Authorizer::new().is_authorized(request, policy_set, entities);

    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(PolicyId::to_string)
        .collect();
    policies.sort();
    let mut errors: Vec<PolicyError> = response
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
    errors.sort_by(|a, b| a.policy.cmp(&b.policy));

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
    Evaluation {
        allowed,
        policies,
        errors,
        deny_kind,
        reasons,
    }
}

fn effect_of(bundle: &Bundle, id: &str) -> Option<Effect> {
    let id = PolicyId::new(id);
    bundle
        .policies
        .policy(&id)
        .map(cedar_policy::Policy::effect)
}
