//! One principal mapping: which claims give the principal's id, attributes and parents,
//! checked against the schema. The top-level `[principal]` and each issuer's own
//! `principal` table become one of these.

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid};
use serde_json::{Map, Value};

use super::{MappingError, parse_type, to_cedar_json};
use crate::bundle::Bundle;
use crate::bundle::diagnostics::error_chain;
use crate::bundle::schema_types::AttrType;
use crate::config::{ClaimPath, PrincipalConfig};

/// A principal entity with its direct parents, which the engine needs apart from it.
pub struct PrincipalEntity {
    pub entity: Entity,
    pub parents: Vec<EntityUid>,
}

impl PrincipalEntity {
    /// Takes an entity built elsewhere, such as a test case's explicit principal, with
    /// the parents it names.
    pub fn given(entity: Entity) -> Self {
        let parents = entity
            .to_json_value()
            .ok()
            .and_then(|json| json.get("parents").cloned())
            .and_then(|parents| match parents {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(|uid| EntityUid::from_json(uid).ok())
            .collect();
        Self { entity, parents }
    }
}

/// A principal mapping, checked against the schema of one bundle.
#[derive(Debug, Clone)]
pub struct PrincipalMapping {
    principal_type: EntityTypeName,
    id_claim: ClaimPath,
    attributes: Vec<MappedAttribute>,
    parents: Vec<(ClaimPath, EntityTypeName)>,
}

#[derive(Debug, Clone)]
struct MappedAttribute {
    name: String,
    claim: ClaimPath,
    ty: AttrType,
    required: bool,
}

impl PrincipalMapping {
    /// Checks `config` against the bundle's schema, reporting every problem at once.
    /// `key` is the mapping's place in the config file, such as `principal`, and starts
    /// each message.
    pub fn new(config: &PrincipalConfig, key: &str, bundle: &Bundle) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let principal_type = parse_type(&config.entity_type, &format!("{key}.type"), &mut problems);

        let shape = bundle.types.entity_shape(&config.entity_type);
        let Some(shape) = shape else {
            problems.push(format!(
                "{key}.type: entity type `{}` is not declared in the schema",
                config.entity_type
            ));
            return Err(problems);
        };
        let mut attributes = Vec::new();
        for (name, claim) in &config.attributes {
            match shape.attributes.get(name) {
                Some(attr) => attributes.push(MappedAttribute {
                    name: name.clone(),
                    claim: claim.clone(),
                    ty: attr.ty.clone(),
                    required: attr.required,
                }),
                None => problems.push(format!(
                    "{key}.attributes.{name}: `{}` has no attribute `{name}` in the schema",
                    config.entity_type
                )),
            }
        }
        for (name, attr) in &shape.attributes {
            if attr.required && !config.attributes.contains_key(name) {
                problems.push(format!(
                    "{key}.attributes: the schema requires attribute `{name}` of `{}`; map a claim to it",
                    config.entity_type
                ));
            }
        }
        let parents = config
            .parents
            .iter()
            .enumerate()
            .filter_map(|(index, parent)| {
                let parent_key = format!("{key}.parents[{index}].type");
                let ty = parse_type(&parent.entity_type, &parent_key, &mut problems)?;
                if bundle.types.entity_shape(&parent.entity_type).is_none() {
                    problems.push(format!(
                        "{parent_key}: entity type `{}` is not declared in the schema",
                        parent.entity_type
                    ));
                }
                Some((parent.claim.clone(), ty))
            })
            .collect();

        match principal_type {
            Some(principal_type) if problems.is_empty() => Ok(Self {
                principal_type,
                id_claim: config.id_claim.clone(),
                attributes,
                parents,
            }),
            _ => Err(problems),
        }
    }

    /// Builds the principal entity from verified claims.
    pub fn principal(&self, claims: &Map<String, Value>) -> Result<PrincipalEntity, MappingError> {
        let id = match lookup(claims, &self.id_claim) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(_) => {
                return Err(MappingError::Claims(format!(
                    "claim `{}` that names the principal must be a non-empty string",
                    self.id_claim
                )));
            }
            None => {
                return Err(MappingError::Claims(format!(
                    "claim `{}` that names the principal is missing",
                    self.id_claim
                )));
            }
        };
        let uid = EntityUid::from_type_name_and_id(self.principal_type.clone(), EntityId::new(id));

        let mut attrs = Map::new();
        for attr in &self.attributes {
            let Some(value) = lookup(claims, &attr.claim) else {
                // A list claim that the token leaves out (no scopes, no roles) is an empty set.
                if let AttrType::Set(_) = attr.ty {
                    attrs.insert(attr.name.clone(), Value::Array(Vec::new()));
                    continue;
                }
                if attr.required {
                    return Err(MappingError::Claims(format!(
                        "claim `{}` is missing, and attribute `{}` of `{}` requires it",
                        attr.claim, attr.name, self.principal_type
                    )));
                }
                continue;
            };
            let converted = to_cedar_json(value, &attr.ty).map_err(|message| {
                MappingError::Claims(format!(
                    "claim `{}` for attribute `{}`: {message}",
                    attr.claim, attr.name
                ))
            })?;
            attrs.insert(attr.name.clone(), converted);
        }

        let mut parent_uids = Vec::new();
        for (claim, parent_type) in &self.parents {
            for id in parent_ids(lookup(claims, claim), claim)? {
                let parent =
                    EntityUid::from_type_name_and_id(parent_type.clone(), EntityId::new(id));
                parent_uids.push(parent);
            }
        }

        // Every attribute has its schema type already, so the entity is built directly
        // rather than through Cedar's JSON parser, which costs more than the decision.
        let attrs = attrs
            .iter()
            .map(|(name, value)| {
                super::cedar_value::typed(value)
                    .map(|value| (name.clone(), value))
                    .map_err(|message| {
                        MappingError::Claims(format!("attribute `{name}`: {message}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entity = Entity::new(
            uid,
            attrs.into_iter().collect(),
            parent_uids.iter().cloned().collect(),
        )
        .map_err(|err| {
            MappingError::Claims(format!(
                "claims do not fit principal type `{}`: {}",
                self.principal_type,
                error_chain(&err)
            ))
        })?;
        Ok(PrincipalEntity {
            entity,
            parents: parent_uids,
        })
    }
}

/// Follows a claim path through nested objects.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &ClaimPath) -> Option<&'a Value> {
    let (first, rest) = path.0.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    if value.is_null() { None } else { Some(value) }
}

fn parent_ids(value: Option<&Value>, claim: &ClaimPath) -> Result<Vec<String>, MappingError> {
    let not_strings = || {
        MappingError::Claims(format!(
            "claim `{claim}` for parents must be a string or an array of strings"
        ))
    };
    match value {
        None => Ok(Vec::new()),
        // A single string is one parent: group names can contain spaces.
        Some(Value::String(id)) => Ok(vec![id.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_strings))
            .collect(),
        Some(_) => Err(not_strings()),
    }
}
