//! A scope index over the policy set.
//!
//! Most policies in a large set name a specific principal or resource in their scope
//! (per-customer grants linked from a template, for example). Such a policy can only
//! match a request whose principal or resource is that entity or one of its
//! descendants, so the index files each policy under one entity of its scope, and a
//! request evaluates only the policies filed under its own entities and their
//! ancestors, plus the policies whose scope names no entity.
//!
//! The answer stays exactly Cedar's: a policy whose scope does not match evaluates to
//! false without an error, so leaving it out changes neither the decision, nor the
//! determining policies, nor the errors.

use std::collections::HashMap;

use cedar_policy::{
    ActionConstraint, Entities, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

use crate::config::PolicyIndexMode;

/// Policy count from which `auto` mode uses the index. Below it, evaluating every policy
/// costs less than building a request's own policy set.
pub const AUTO_THRESHOLD: usize = 64;

/// Policies filed by the entities of their scope.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    enabled: bool,
    /// Every static and linked policy as a static policy, so that any subset can form a
    /// policy set of its own.
    policies: Vec<Policy>,
    by_principal: HashMap<EntityUid, Vec<usize>>,
    by_resource: HashMap<EntityUid, Vec<usize>>,
    by_action: HashMap<EntityUid, Vec<usize>>,
    /// Policies whose scope names no entity.
    unscoped: Vec<usize>,
    /// Stored entities that each policy's conditions name as literals.
    literals: Vec<Vec<EntityUid>>,
}

/// The policies one request can match, with the entities their conditions name.
pub struct Candidates {
    pub policies: PolicySet,
    pub literals: Vec<EntityUid>,
}

impl PolicyIndex {
    /// Builds the index. It stays off when `mode` is `off`, below the `auto` threshold, or
    /// when a policy cannot be restated as a static policy.
    pub fn build(policies: &PolicySet, store: &Entities, mode: PolicyIndexMode) -> Self {
        let count = policies.policies().count();
        let enabled = match mode {
            PolicyIndexMode::On => true,
            PolicyIndexMode::Off => false,
            PolicyIndexMode::Auto => count >= AUTO_THRESHOLD,
        };
        if !enabled {
            return Self::default();
        }
        let mut index = Self::default();
        for policy in policies.policies() {
            let Some(policy) = as_static(policy) else {
                return Self::default();
            };
            let position = index.policies.len();
            index.literals.push(super::slice::condition_literals(
                std::iter::once(&policy),
                store,
            ));
            index.file(position, &policy);
            index.policies.push(policy);
        }
        index.enabled = true;
        index
    }

    /// Returns whether requests use the index.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn file(&mut self, position: usize, policy: &Policy) {
        let principal = match policy.principal_constraint() {
            PrincipalConstraint::Eq(uid)
            | PrincipalConstraint::In(uid)
            | PrincipalConstraint::IsIn(_, uid) => Some(uid),
            PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
        };
        if let Some(uid) = principal {
            self.by_principal.entry(uid).or_default().push(position);
            return;
        }
        let resource = match policy.resource_constraint() {
            ResourceConstraint::Eq(uid)
            | ResourceConstraint::In(uid)
            | ResourceConstraint::IsIn(_, uid) => Some(uid),
            ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
        };
        if let Some(uid) = resource {
            self.by_resource.entry(uid).or_default().push(position);
            return;
        }
        match policy.action_constraint() {
            ActionConstraint::Eq(uid) => self.by_action.entry(uid).or_default().push(position),
            // An empty list matches no action, so such a policy is filed nowhere.
            ActionConstraint::In(uids) => {
                for uid in uids {
                    self.by_action.entry(uid).or_default().push(position);
                }
            }
            ActionConstraint::Any => self.unscoped.push(position),
        }
    }

    /// Returns the policies that can match a request on `principal`, `action` and
    /// `resource`, each given with its ancestors.
    pub fn candidates<'a>(
        &self,
        principal: impl Iterator<Item = &'a EntityUid>,
        action: impl Iterator<Item = &'a EntityUid>,
        resource: impl Iterator<Item = &'a EntityUid>,
    ) -> Candidates {
        let mut positions: Vec<usize> = self.unscoped.clone();
        for (uids, map) in [
            (principal.collect::<Vec<_>>(), &self.by_principal),
            (action.collect(), &self.by_action),
            (resource.collect(), &self.by_resource),
        ] {
            for uid in uids {
                if let Some(found) = map.get(uid) {
                    positions.extend_from_slice(found);
                }
            }
        }
        positions.sort_unstable();
        positions.dedup();

        let mut policies = PolicySet::new();
        let mut literals = Vec::new();
        for position in positions {
            if let Some(policy) = self.policies.get(position) {
                // `build` stores only static policies, each under its own ID, so `add` cannot fail.
                let _ = policies.add(policy.clone());
            }
            if let Some(found) = self.literals.get(position) {
                literals.extend(found.iter().cloned());
            }
        }
        Candidates { policies, literals }
    }
}

/// Restates a static or linked policy as a static policy with the same ID.
fn as_static(policy: &Policy) -> Option<Policy> {
    if policy.is_static() {
        return Some(policy.clone());
    }
    let json = policy.to_json().ok()?;
    let id: PolicyId = policy.id().clone();
    Policy::from_json(Some(id), json).ok()
}
