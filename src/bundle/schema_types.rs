//! Attribute types declared by a Cedar schema, for the mapping stage.
//!
//! `cedar-policy` 4.x does not expose the declared type of an entity attribute or of an
//! action's context, so this module reads them from the schema's JSON form (the format
//! `SchemaFragment::to_json_value` produces, which is also the JSON schema syntax). Names
//! are resolved as Cedar resolves them: a common type of the current namespace first, then
//! an entity type of the current namespace, then the same two in the empty namespace, then
//! the built-in primitive and extension types.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

/// The type of an attribute, record field or set element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrType {
    String,
    Long,
    Bool,
    Set(Box<AttrType>),
    Record(RecordType),
    /// An entity reference, with the fully qualified entity type name.
    Entity(String),
    /// An extension type by its Cedar name: `ipaddr`, `decimal`, `datetime`, `duration`.
    Extension(String),
}

impl std::fmt::Display for AttrType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String => f.write_str("String"),
            Self::Long => f.write_str("Long"),
            Self::Bool => f.write_str("Bool"),
            Self::Set(element) => write!(f, "Set<{element}>"),
            Self::Record(_) => f.write_str("Record"),
            Self::Entity(name) => write!(f, "entity {name}"),
            Self::Extension(name) => f.write_str(name),
        }
    }
}

/// The attributes of a record type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordType {
    pub attributes: BTreeMap<String, Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ty: AttrType,
    pub required: bool,
}

/// The declared shapes of entity types and the context types of actions.
#[derive(Debug, Clone, Default)]
pub struct SchemaTypes {
    /// Fully qualified entity type name to its attributes.
    entity_shapes: HashMap<String, RecordType>,
    /// Fully qualified action entity type and action id to the context type.
    action_contexts: HashMap<(String, String), RecordType>,
}

impl SchemaTypes {
    /// Returns the attributes of `entity_type`, or `None` when the schema does not declare it.
    pub fn entity_shape(&self, entity_type: &str) -> Option<&RecordType> {
        self.entity_shapes.get(entity_type)
    }

    /// Returns the context type of an action, or `None` when the schema does not declare
    /// the action.
    pub fn action_context(&self, action_type: &str, action_id: &str) -> Option<&RecordType> {
        self.action_contexts
            .get(&(action_type.to_owned(), action_id.to_owned()))
    }

    /// Lists every action with its context type.
    pub fn action_contexts(&self) -> impl Iterator<Item = (&(String, String), &RecordType)> {
        self.action_contexts.iter()
    }

    /// Reads the types from a schema in JSON form: an object from namespace names to
    /// namespace definitions.
    pub fn from_json(schema: &Value) -> Result<Self, String> {
        let namespaces = schema
            .as_object()
            .ok_or("schema JSON is not an object of namespaces")?;
        let resolver = Resolver::new(namespaces);
        let mut types = Self::default();

        for (namespace, definition) in namespaces {
            let entity_types = definition.get("entityTypes").and_then(Value::as_object);
            for (name, entity) in entity_types.into_iter().flatten() {
                let shape = match entity.get("shape") {
                    Some(shape) => resolver.record(namespace, shape, 0)?,
                    None => RecordType::default(),
                };
                types.entity_shapes.insert(qualify(namespace, name), shape);
            }

            let actions = definition.get("actions").and_then(Value::as_object);
            for (id, action) in actions.into_iter().flatten() {
                let context = match action.pointer("/appliesTo/context") {
                    Some(context) => resolver.record(namespace, context, 0)?,
                    None => RecordType::default(),
                };
                types
                    .action_contexts
                    .insert((qualify(namespace, "Action"), id.clone()), context);
            }
        }
        Ok(types)
    }
}

fn qualify(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}::{name}")
    }
}

/// Nesting deeper than this is a schema no one writes by hand; the bound keeps a cyclic
/// or hostile schema from recursing without end.
const MAX_TYPE_DEPTH: usize = 32;

struct Resolver<'a> {
    namespaces: &'a Map<String, Value>,
    entity_types: HashSet<String>,
}

impl<'a> Resolver<'a> {
    fn new(namespaces: &'a Map<String, Value>) -> Self {
        let mut entity_types = HashSet::new();
        for (namespace, definition) in namespaces {
            let declared = definition.get("entityTypes").and_then(Value::as_object);
            for name in declared.into_iter().flat_map(|map| map.keys()) {
                entity_types.insert(qualify(namespace, name));
            }
        }
        Self {
            namespaces,
            entity_types,
        }
    }

    fn record(&self, namespace: &str, ty: &Value, depth: usize) -> Result<RecordType, String> {
        match self.resolve(namespace, ty, depth)? {
            AttrType::Record(record) => Ok(record),
            other => Err(format!("expected a record type, found {other}")),
        }
    }

    fn resolve(&self, namespace: &str, ty: &Value, depth: usize) -> Result<AttrType, String> {
        if depth > MAX_TYPE_DEPTH {
            return Err(format!("types nest deeper than {MAX_TYPE_DEPTH} levels"));
        }
        let kind = ty
            .get("type")
            .and_then(Value::as_str)
            .ok_or("type without a `type` member")?;
        let name = ty.get("name").and_then(Value::as_str);

        match kind {
            "Set" => {
                let element = ty.get("element").ok_or("set type without `element`")?;
                Ok(AttrType::Set(Box::new(self.resolve(
                    namespace,
                    element,
                    depth + 1,
                )?)))
            }
            "Record" => {
                let mut record = RecordType::default();
                let attributes = ty.get("attributes").and_then(Value::as_object);
                for (attr, attr_ty) in attributes.into_iter().flatten() {
                    let required = attr_ty
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    let resolved = self.resolve(namespace, attr_ty, depth + 1)?;
                    record.attributes.insert(
                        attr.clone(),
                        Attribute {
                            ty: resolved,
                            required,
                        },
                    );
                }
                Ok(AttrType::Record(record))
            }
            "Entity" => {
                let name = name.ok_or("entity type without `name`")?;
                Ok(AttrType::Entity(self.entity_name(namespace, name)))
            }
            "Extension" => Ok(AttrType::Extension(
                name.ok_or("extension type without `name`")?.to_owned(),
            )),
            "EntityOrCommon" => {
                let name = name.ok_or("type reference without `name`")?;
                self.resolve_name(namespace, name, depth)
            }
            other => self.resolve_name(namespace, other, depth),
        }
    }

    /// Resolves a type name that may be a common type, an entity type or a built-in type.
    fn resolve_name(&self, namespace: &str, name: &str, depth: usize) -> Result<AttrType, String> {
        let candidates = if name.contains("::") {
            vec![("", name.to_owned())]
        } else {
            vec![(namespace, qualify(namespace, name)), ("", name.to_owned())]
        };
        for (scope, qualified) in &candidates {
            if let Some((common_ns, definition)) = self.common_type(qualified) {
                return self
                    .resolve(&common_ns, definition, depth + 1)
                    .map_err(|err| {
                        format!("in common type `{qualified}` (namespace `{scope}`): {err}")
                    });
            }
            if self.entity_types.contains(qualified) {
                return Ok(AttrType::Entity(qualified.clone()));
            }
        }
        let builtin = name.strip_prefix("__cedar::").unwrap_or(name);
        match builtin {
            "String" => Ok(AttrType::String),
            "Long" => Ok(AttrType::Long),
            "Bool" | "Boolean" => Ok(AttrType::Bool),
            "ipaddr" | "decimal" | "datetime" | "duration" => {
                Ok(AttrType::Extension(builtin.to_owned()))
            }
            _ => Err(format!("type `{name}` is not declared")),
        }
    }

    fn entity_name(&self, namespace: &str, name: &str) -> String {
        let local = qualify(namespace, name);
        if !name.contains("::") && self.entity_types.contains(&local) {
            local
        } else {
            name.to_owned()
        }
    }

    /// Finds a common type by qualified name and returns its namespace and definition.
    fn common_type(&self, qualified: &str) -> Option<(String, &'a Value)> {
        let (namespace, name) = match qualified.rsplit_once("::") {
            Some((namespace, name)) => (namespace, name),
            None => ("", qualified),
        };
        let definition = self
            .namespaces
            .get(namespace)?
            .get("commonTypes")?
            .get(name)?;
        Some((namespace.to_owned(), definition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types_of(cedarschema: &str) -> SchemaTypes {
        let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(cedarschema)
            .unwrap_or_else(|err| unreachable!("{err}"));
        let json = fragment
            .to_json_value()
            .unwrap_or_else(|err| unreachable!("{err}"));
        SchemaTypes::from_json(&json).unwrap_or_else(|err| unreachable!("{err}"))
    }

    #[test]
    fn resolves_common_entity_and_extension_types() {
        let types = types_of(
            r#"
            type Ctx = { ip: ipaddr, tags?: Set<String> };
            namespace App {
              type Level = Long;
              entity Team;
              entity User in [Team] = { team: Team, level: Level, rich: { at: datetime } };
              action view appliesTo { principal: User, resource: User, context: Ctx };
            }
            "#,
        );
        let user = types.entity_shape("App::User").map(|r| &r.attributes);
        let user = user.unwrap_or_else(|| unreachable!("App::User missing"));
        assert_eq!(user["team"].ty, AttrType::Entity("App::Team".into()));
        assert_eq!(user["level"].ty, AttrType::Long);
        let AttrType::Record(rich) = &user["rich"].ty else {
            unreachable!("rich is not a record");
        };
        assert_eq!(
            rich.attributes["at"].ty,
            AttrType::Extension("datetime".into())
        );

        let context = types.action_context("App::Action", "view");
        let context = context.unwrap_or_else(|| unreachable!("context missing"));
        assert_eq!(
            context.attributes["ip"].ty,
            AttrType::Extension("ipaddr".into())
        );
        assert!(!context.attributes["tags"].required);
        assert_eq!(
            context.attributes["tags"].ty,
            AttrType::Set(Box::new(AttrType::String))
        );
    }
}
