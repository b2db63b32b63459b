//! Per-policy explanations for `"debug": true` requests: for each policy whose scope
//! matches the request, whether its conditions held, were false or raised an error.
//!
//! Cedar's authorizer reports only the determining and the erroring policies, so each
//! policy is evaluated twice more, as permits: once with its scope alone, and once with
//! its scope and conditions. The cost grows with the number of policies, which is why
//! the config must allow the option.

use std::collections::HashSet;

use cedar_policy::{Authorizer, Effect, Policy, PolicyId, PolicySet};
use serde::Serialize;
use serde_json::Value;

use crate::bundle::Bundle;
use crate::mapping::{MappedRequest, MappingError};

/// The result of evaluating one policy on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyTrace {
    pub policy: String,
    pub effect: &'static str,
    /// `true`, `false` or `error`.
    pub condition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Evaluates every policy of `bundle` on its own and lists those whose scope matches.
pub fn trace(bundle: &Bundle, mapped: &MappedRequest) -> Result<Vec<PolicyTrace>, MappingError> {
    let seeds = mapped
        .request
        .action()
        .cloned()
        .into_iter()
        .chain(mapped.request.resource().cloned())
        .chain(mapped.context_entities.iter().cloned())
        .chain(bundle.condition_literals.iter().cloned());
    let entities = crate::engine::slice::slice(
        &bundle.entities,
        mapped.principal.clone(),
        &mapped.principal_parents,
        seeds,
    )
    .map_err(|err| MappingError::Claims(format!("cannot gather the request's entities: {err}")))?;

    let mut scopes = PolicySet::new();
    let mut full = PolicySet::new();
    for policy in bundle.policies.policies() {
        let (Some(scope), Some(whole)) = (as_permit(policy, false), as_permit(policy, true)) else {
            continue;
        };
        // Both sets are built from policies with unique IDs, so adding cannot fail.
        let _ = scopes.add(scope);
        let _ = full.add(whole);
    }

    let authorizer = Authorizer::new();
    let request = &mapped.request;
    let in_scope: HashSet<PolicyId> = authorizer
        .is_authorized(request, &scopes, &entities)
        .diagnostics()
        .reason()
        .cloned()
        .collect();
    let response = authorizer.is_authorized(request, &full, &entities);
    let held: HashSet<&PolicyId> = response.diagnostics().reason().collect();
    let mut errors = std::collections::HashMap::new();
    for error in response.diagnostics().errors() {
        let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
        errors.insert(error.policy_id().clone(), error.inner().to_string());
    }

    let mut traces: Vec<PolicyTrace> = bundle
        .policies
        .policies()
        .filter(|policy| in_scope.contains(policy.id()))
        .map(|policy| {
            let id = policy.id();
            let error = errors.get(id).cloned();
            let condition = match (&error, held.contains(id)) {
                (Some(_), _) => "error",
                (None, true) => "true",
                (None, false) => "false",
            };
            PolicyTrace {
                policy: id.to_string(),
                effect: match policy.effect() {
                    Effect::Permit => "permit",
                    Effect::Forbid => "forbid",
                },
                condition,
                error,
            }
        })
        .collect();
    traces.sort_by(|a, b| a.policy.cmp(&b.policy));
    Ok(traces)
}

/// Rewrites `policy` as a permit with the same ID and scope, keeping its conditions only
/// when `conditions` is set. A permit is determining exactly when it is satisfied, so
/// Cedar's reason set then names every satisfied policy.
fn as_permit(policy: &Policy, conditions: bool) -> Option<Policy> {
    let mut json = policy.to_json().ok()?;
    let object = json.as_object_mut()?;
    object.insert("effect".into(), Value::from("permit"));
    if !conditions {
        object.insert("conditions".into(), Value::Array(Vec::new()));
    }
    Policy::from_json(Some(policy.id().clone()), json).ok()
}
