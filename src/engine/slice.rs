//! Request-scoped entity slices.
//!
//! Cedar reads entity data only through the entities a request names: the principal,
//! the action and the resource, entity values in the context, entity literals in policy
//! conditions, and every entity reached from those through attribute and tag values.
//! A policy's `in` test reads only the left-hand entity's ancestor set, which the store
//! keeps transitively closed, so ancestors need not be copied unless an attribute path
//! reaches them.
//!
//! [`slice`] copies exactly that reachable set into a small [`Entities`], so the cost of
//! a decision follows the size of what the request touches, not the size of the store.
//! Leaving out an entity that evaluation never reaches cannot change Cedar's decision.

use std::collections::{HashSet, VecDeque};

use cedar_policy::{Entities, Entity, EntityUid, Policy};

use crate::mapping::entity_references;

/// Maximum number of entities in one slice; a request that reaches more is rejected.
/// Reaching this many entities from one request means the data links nearly everything
/// to everything, and copying it on every request would cost as much as the whole store.
pub const MAX_SLICE_ENTITIES: usize = 10_000;

/// Failure to build a slice.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error(
        "the request reaches more than {MAX_SLICE_ENTITIES} entities through attribute values; every decision copies the entities it can reach, so link fewer entities through attributes"
    )]
    TooLarge,
    #[error("{0}")]
    Entities(String),
}

/// Builds the entities for one request.
///
/// `principal` is the entity built from the token, with its direct `parents`: it replaces
/// any stored entity with the same UID. `seeds` are the other UIDs the request names
/// (action, resource, context values, policy literals).
pub fn slice(
    store: &Entities,
    principal: Entity,
    parents: &[EntityUid],
    seeds: impl IntoIterator<Item = EntityUid>,
) -> Result<Entities, SliceError> {
    let principal_uid = principal.uid();
    let mut seen: HashSet<EntityUid> = HashSet::new();
    let mut queue: VecDeque<EntityUid> = VecDeque::new();
    seen.insert(principal_uid);
    let mut references = Vec::new();
    for value in principal
        .attrs()
        .chain(principal.tags())
        .filter_map(|(_, value)| value.ok())
    {
        entity_references(&value, &mut references);
    }
    for uid in references.drain(..).chain(seeds) {
        if seen.insert(uid.clone()) {
            queue.push_back(uid);
        }
    }

    let mut entities = vec![principal];
    while let Some(uid) = queue.pop_front() {
        let Some(entity) = store.get(&uid) else {
            // Cedar treats an entity missing from the store as one without attributes or
            // ancestors, whether it is left out here or there.
            continue;
        };
        if entities.len() >= MAX_SLICE_ENTITIES {
            return Err(SliceError::TooLarge);
        }
        for value in entity
            .attrs()
            .chain(entity.tags())
            .filter_map(|(_, value)| value.ok())
        {
            entity_references(&value, &mut references);
        }
        for uid in references.drain(..) {
            if seen.insert(uid.clone()) {
                queue.push_back(uid);
            }
        }
        // NOTE: a stored entity below the principal (a document whose parent is the user)
        // keeps the ancestors it was loaded with. Those include groups that only the stored
        // principal is in, because its closure is not recomputed with the token's groups.
        entities.push(entity.clone());
    }

    // The principal's ancestors are its parents and everything above them in the store.
    // A parent that the walk did not copy joins as a stub that carries only its stored
    // ancestors, so the closure computed below is the one the whole store would give.
    for parent in parents {
        if seen.contains(parent) {
            continue;
        }
        if let Some(ancestors) = store.ancestors(parent) {
            let ancestors: HashSet<EntityUid> = ancestors.cloned().collect();
            if !ancestors.is_empty() {
                seen.insert(parent.clone());
                entities.push(Entity::new_no_attrs(parent.clone(), ancestors));
            }
        }
    }

    Entities::from_entities(entities, None)
        .map_err(|err| SliceError::Entities(crate::bundle::diagnostics::error_chain(&err)))
}

/// Returns the stored entities that policy conditions name as literals, each once.
///
/// Scope constraints are left out: they test only the request entities' own UIDs and
/// ancestor sets, which the slice contains anyway. The search runs over each policy's JSON
/// form, where every entity literal is an object with an `__entity` key.
pub fn condition_literals<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    store: &Entities,
) -> Vec<EntityUid> {
    let mut found = HashSet::new();
    for policy in policies {
        let Ok(json) = policy.to_json() else {
            continue;
        };
        if let Some(conditions) = json.get("conditions") {
            json_entity_literals(conditions, &mut found);
        }
    }
    let mut literals: Vec<EntityUid> = found
        .into_iter()
        .filter(|uid| store.get(uid).is_some())
        .collect();
    literals.sort_by_key(ToString::to_string);
    literals
}

fn json_entity_literals(value: &serde_json::Value, found: &mut HashSet<EntityUid>) {
    match value {
        serde_json::Value::Object(object) => {
            if let Some(uid) = object
                .get("__entity")
                .and_then(|reference| EntityUid::from_json(reference.clone()).ok())
            {
                found.insert(uid);
            }
            object
                .values()
                .for_each(|item| json_entity_literals(item, found));
        }
        serde_json::Value::Array(items) => items
            .iter()
            .for_each(|item| json_entity_literals(item, found)),
        _ => {}
    }
}
