//! Bundle stage: loads policies, schema, entities and the region table from disk,
//! validates them strictly against the schema, and produces an immutable [`Bundle`]
//! with a content revision. Knows nothing of HTTP, the CLI or tokens.

pub mod api_keys;
pub mod diagnostics;
pub mod fingerprint;
mod links;
pub mod regions;
pub mod schema_types;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Effect, Entities, Entity, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode,
    Validator,
};
use sha2::{Digest, Sha256};

use crate::config::BundleConfig;
pub use api_keys::ApiKeys;
pub use diagnostics::{Diagnostic, Severity};
pub use fingerprint::{Fingerprint, fingerprint};
pub use regions::RegionTable;
pub use schema_types::SchemaTypes;

/// Source location and effect of a loaded policy.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub file: PathBuf,
    /// 1-based line of the policy's first character.
    pub line: usize,
    pub effect: Effect,
    /// The `@reason` annotation, returned to callers when the policy denies.
    pub reason: Option<String>,
}

/// An immutable snapshot of everything loaded from disk.
pub struct Bundle {
    /// Hash of the contents of every file, so equal files give an equal revision.
    pub revision: String,
    pub loaded_at: jiff::Timestamp,
    pub files: Vec<PathBuf>,
    pub schema: Schema,
    pub types: SchemaTypes,
    pub policies: PolicySet,
    pub policy_info: HashMap<PolicyId, PolicyInfo>,
    pub entities: Entities,
    /// Stored entities named as literals in policy conditions, which every request's
    /// entity slice includes.
    pub condition_literals: Vec<cedar_policy::EntityUid>,
    /// The scope index over `policies`.
    pub index: crate::engine::index::PolicyIndex,
    pub regions: RegionTable,
    /// The API keys, empty when the bundle has no keys file.
    pub api_keys: ApiKeys,
}

impl Bundle {
    /// Returns the bundle with `extra` entities added to its store, checked against the
    /// schema, and everything derived from the store rebuilt. For test files that add
    /// entities of their own; an entity with the UID of a stored one is an error.
    pub fn with_entities(
        self,
        extra: Vec<Entity>,
        policy_index: crate::config::PolicyIndexMode,
    ) -> Result<Self, String> {
        let entities = self
            .entities
            .add_entities(extra, Some(&self.schema))
            .map_err(|err| diagnostics::error_chain(&err))?;
        Ok(Self {
            condition_literals: crate::engine::slice::condition_literals(
                self.policies.policies(),
                &entities,
            ),
            index: crate::engine::index::PolicyIndex::build(
                &self.policies,
                &entities,
                policy_index,
            ),
            entities,
            ..self
        })
    }
}

/// Result of loading a bundle: the bundle when there was no error, and every
/// diagnostic, warnings included.
pub struct LoadOutcome {
    pub bundle: Option<Bundle>,
    pub diagnostics: Vec<Diagnostic>,
    /// The findings of strict validation alone, errors and warnings. They are in
    /// `diagnostics` too, unless [`LoadOptions::enforce_validation`] is off.
    pub validation: Vec<Diagnostic>,
}

impl LoadOutcome {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// Policy ID scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyIds {
    /// The `@id` annotation, or `<file>#<position>` for a policy without one.
    Annotated,
    /// Cedar's own positional IDs `policy0`, `policy1`, ... of a single file, ignoring `@id`,
    /// as Cedar's test corpus expects.
    Positional,
    /// The Cedar CLI's IDs: the `@id` annotation, or `policy<n>` for the n-th policy of a
    /// single file without one, as `cedar run-tests` files name policies.
    CedarCli,
}

/// How [`load_with`] reads a bundle. The default is what the server and `cedargate
/// validate` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub ids: PolicyIds,
    /// Whether strict validation errors make the load fail. When off, the bundle loads
    /// anyway and the errors are only in [`LoadOutcome::validation`], as Cedar's test
    /// corpus needs for policies that are expected to fail validation.
    pub enforce_validation: bool,
    pub entities: EntityLoading,
}

/// How [`load_with`] reads the entity store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityLoading {
    /// Checked against the schema, which also adds the schema's action entities.
    WithSchema,
    /// Taken as written, as the Cedar CLI does without `--schema`.
    WithoutSchema,
    /// Not read: the store holds only the schema's action entities. For test files that
    /// bring their own entities, such as the Cedar CLI's `run-tests` files.
    Skip,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ids: PolicyIds::Annotated,
            enforce_validation: true,
            entities: EntityLoading::WithSchema,
        }
    }
}

/// Loads and validates the bundle that `config` describes.
pub fn load(config: &BundleConfig) -> LoadOutcome {
    load_with(config, LoadOptions::default())
}

/// Loads the bundle that `config` describes, with the given ID scheme and checks.
pub fn load_with(config: &BundleConfig, options: LoadOptions) -> LoadOutcome {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();

    let schema = load_schema(&config.schema, &mut files, &mut diagnostics);
    let policies = load_policies(&config.policies, options.ids, &mut files, &mut diagnostics);
    let regions = match &config.regions {
        Some(path) => match read_text(path, &mut files) {
            Ok(text) => RegionTable::from_toml(&text).unwrap_or_else(|message| {
                diagnostics.push(Diagnostic::error(Some(path), message));
                RegionTable::default()
            }),
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                RegionTable::default()
            }
        },
        None => RegionTable::default(),
    };

    // Policies and entities are checked against the schema only when it loaded.
    let Some((schema, types)) = schema else {
        return LoadOutcome {
            bundle: None,
            diagnostics,
            validation: Vec::new(),
        };
    };
    let entities = match options.entities {
        EntityLoading::WithSchema => load_entities(
            &config.entities,
            Some(&schema),
            &mut files,
            &mut diagnostics,
        ),
        EntityLoading::WithoutSchema => {
            load_entities(&config.entities, None, &mut files, &mut diagnostics)
        }
        EntityLoading::Skip => Entities::from_entities([], Some(&schema))
            .map_err(|err| {
                diagnostics.push(Diagnostic::error(
                    Some(&config.schema),
                    format!(
                        "the schema's action entities are invalid: {}",
                        diagnostics::error_chain(&err)
                    ),
                ));
            })
            .ok(),
    };
    let api_keys = match (&config.api_keys, &entities) {
        (None, _) => Some(ApiKeys::default()),
        (Some(path), Some(entities)) => match read_text(path, &mut files) {
            Ok(text) => api_keys::parse(
                path,
                &text,
                entities,
                jiff::Timestamp::now(),
                &mut diagnostics,
            ),
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                None
            }
        },
        // Keys name entities, so they are checked only when the entities loaded.
        (Some(_), None) => None,
    };
    let (mut policies, mut policy_info, mut sources) = policies;
    if let Some(path) = &config.links {
        match read_text(path, &mut files) {
            Ok(text) => {
                links::link_all(
                    path,
                    &text,
                    &mut policies,
                    &mut policy_info,
                    &mut diagnostics,
                );
                sources.insert(path.clone(), text);
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    links::unlinked_templates(&policies, &policy_info, &mut diagnostics);
    let mut validation = Vec::new();
    validate_policies(&schema, &policies, &policy_info, &sources, &mut validation);
    if options.enforce_validation {
        diagnostics.extend(validation.iter().cloned());
    }
    // Templates alone never apply, so only static and linked policies count here. A
    // policy file that failed to parse already has its error, which is the one to fix.
    let earlier_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    if policies.policies().next().is_none() && !earlier_errors {
        diagnostics.push(empty_policies(config));
    }

    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let bundle = match (entities, api_keys) {
        (Some(entities), Some(api_keys)) if !has_errors => Some(Bundle {
            condition_literals: crate::engine::slice::condition_literals(
                policies.policies(),
                &entities,
            ),
            index: crate::engine::index::PolicyIndex::build(
                &policies,
                &entities,
                config.policy_index,
            ),
            revision: revision_of(&files),
            loaded_at: jiff::Timestamp::now(),
            files: files.into_iter().map(|(path, _)| path).collect(),
            schema,
            types,
            policies,
            policy_info,
            entities,
            regions,
            api_keys,
        }),
        _ => None,
    };
    LoadOutcome {
        bundle,
        diagnostics,
        validation,
    }
}

/// Reports a bundle without policies, which denies every request. It is an error unless
/// `bundle.allow_empty_policies` is set, so a deploy that lost its policy files cannot
/// silently replace a working bundle.
fn empty_policies(config: &BundleConfig) -> Diagnostic {
    let path = Some(config.policies.as_path());
    if config.allow_empty_policies {
        return Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(
                path,
                "no policies found: every request is denied (`bundle.allow_empty_policies` is set)",
            )
        };
    }
    Diagnostic::error(path, "no policies found: every request would be denied").with_help(Some(
        "add `*.cedar` files, or set `bundle.allow_empty_policies = true` if denying everything is intended"
            .into(),
    ))
}

/// Files read so far, with their contents, for the revision hash.
type FileList = Vec<(PathBuf, Vec<u8>)>;

fn read_text(path: &Path, files: &mut FileList) -> Result<String, Diagnostic> {
    // Reading a FIFO blocks until a writer comes, and a device such as `/dev/zero` never
    // ends, so only regular files (or symlinks to them) are read.
    let metadata = std::fs::metadata(path)
        .map_err(|err| Diagnostic::error(Some(path), format!("failed to read file: {err}")))?;
    if !metadata.is_file() {
        return Err(Diagnostic::error(
            Some(path),
            "not a regular file (a folder, FIFO, socket or device); bundle files must be regular files",
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|err| Diagnostic::error(Some(path), format!("failed to read file: {err}")))?;
    let text = String::from_utf8(bytes.clone()).map_err(|err| {
        let mut diagnostic = Diagnostic::error(Some(path), "file is not valid UTF-8");
        let valid = bytes
            .get(..err.utf8_error().valid_up_to())
            .unwrap_or_default();
        diagnostic.place(&String::from_utf8_lossy(valid), valid.len(), 1);
        diagnostic.snippet = None;
        diagnostic
    })?;
    files.push((path.to_owned(), bytes));
    Ok(text)
}

/// Maximum folder nesting below a policies or entities folder. Each real folder is read
/// once, so symlink loops end without this bound. It is a second guard, because a real
/// bundle nested this deep most likely has a symlink that leads somewhere unintended.
const MAX_FOLDER_DEPTH: usize = 16;

/// Lists the files under `dir` with the given extension, recursively, in a stable order.
///
/// Symlinks are followed, because a Kubernetes ConfigMap mount is made of them
/// (`x.cedar -> ..data/x.cedar`, `..data -> ..2024_01_01_...`). Hidden files and folders
/// (editor swap files, `..data`) are skipped by name, since the visible symlinks reach the
/// same files. Each real folder is read once and each real file is listed once, so links
/// to a parent folder or several links to one file neither loop nor duplicate policies.
fn list_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut seen_folders = HashSet::new();
    // The real path of each file found, with the path it is listed under.
    let mut files: HashMap<PathBuf, WalkStep> = HashMap::new();

    // Folders are read in `WalkStep` order, and each file keeps the smallest step that
    // reaches it. A file is thus listed under its symlink-free path when that lies inside
    // `dir`, else under its shortest path through symlinks. So adding a link to a file
    // inside `dir` never changes the file's policy IDs.
    let mut pending = BTreeSet::from([WalkStep {
        via_link: false,
        depth: 0,
        path: dir.to_owned(),
    }]);
    while let Some(folder) = pending.pop_first() {
        let real =
            std::fs::canonicalize(&folder.path).map_err(|err| folder_error(&folder.path, &err))?;
        if !seen_folders.insert(real) {
            continue;
        }
        if folder.depth > MAX_FOLDER_DEPTH {
            return Err(too_deep(dir, &folder.path));
        }

        for entry in visible_entries(&folder.path)? {
            let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            let step = WalkStep {
                via_link: folder.via_link || is_link,
                depth: folder.depth + 1,
                path: entry.path(),
            };
            // A broken symlink has no metadata and so counts as a file. A matching one is
            // listed, and reading it reports the missing target.
            if std::fs::metadata(&step.path).is_ok_and(|metadata| metadata.is_dir()) {
                pending.insert(step);
            } else if step.path.extension().is_some_and(|ext| ext == extension) {
                let real = std::fs::canonicalize(&step.path).unwrap_or_else(|_| step.path.clone());
                if files.get(&real).is_none_or(|listed| step < *listed) {
                    files.insert(real, step);
                }
            }
        }
    }
    let mut found: Vec<PathBuf> = files.into_values().map(|step| step.path).collect();
    found.sort();
    Ok(found)
}

/// A folder or file reached while listing files. The derived order, field by field, is
/// the walk's preference: no symlink on the way first, then fewer levels, then the path.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WalkStep {
    /// Whether the path passes through a symlink below the listed folder.
    via_link: bool,
    /// Levels below the listed folder.
    depth: usize,
    path: PathBuf,
}

/// Returns the entries of `folder` whose names do not start with `.`.
fn visible_entries(folder: &Path) -> Result<Vec<std::fs::DirEntry>, Diagnostic> {
    let mut visible = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|err| folder_error(folder, &err))? {
        let entry = entry.map_err(|err| folder_error(folder, &err))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            visible.push(entry);
        }
    }
    Ok(visible)
}

fn folder_error(folder: &Path, err: &std::io::Error) -> Diagnostic {
    Diagnostic::error(Some(folder), format!("failed to read folder: {err}"))
}

fn too_deep(root: &Path, folder: &Path) -> Diagnostic {
    Diagnostic::error(
        Some(folder),
        format!(
            "folder is nested more than {MAX_FOLDER_DEPTH} levels below `{}`",
            root.display()
        ),
    )
    .with_help(Some(format!(
        "keep the files within {MAX_FOLDER_DEPTH} folder levels, and check for a symlink that leads outside the bundle"
    )))
}

fn load_schema(
    path: &Path,
    files: &mut FileList,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(Schema, SchemaTypes)> {
    let text = read_text(path, files)
        .map_err(|diagnostic| diagnostics.push(diagnostic))
        .ok()?;
    let is_json = path.extension().is_some_and(|ext| ext == "json");

    let parsed = if is_json {
        Schema::from_json_str(&text)
            .map_err(|err| Diagnostic::from_miette(Severity::Error, path, &text, &err))
            .and_then(|schema| {
                let json = serde_json::from_str(&text)
                    .map_err(|err| Diagnostic::error(Some(path), err.to_string()))?;
                Ok((schema, json))
            })
    } else {
        SchemaFragment::from_cedarschema_str(&text)
            .map_err(|err| Diagnostic::from_miette(Severity::Error, path, &text, &err))
            .and_then(|(fragment, warnings)| {
                for warning in warnings {
                    diagnostics.push(Diagnostic::from_miette(
                        Severity::Warning,
                        path,
                        &text,
                        &warning,
                    ));
                }
                let json = fragment
                    .to_json_value()
                    .map_err(|err| Diagnostic::from_miette(Severity::Error, path, &text, &err))?;
                let schema = Schema::from_json_value(json.clone())
                    .map_err(|err| Diagnostic::from_miette(Severity::Error, path, &text, &err))?;
                Ok((schema, json))
            })
    };
    let (schema, json) = parsed.map_err(|d| diagnostics.push(d)).ok()?;
    let types = SchemaTypes::from_json(&json)
        .map_err(|message| diagnostics.push(Diagnostic::error(Some(path), message)))
        .ok()?;
    Some((schema, types))
}

type LoadedPolicies = (
    PolicySet,
    HashMap<PolicyId, PolicyInfo>,
    HashMap<PathBuf, String>,
);

/// Parses every `*.cedar` file under `dir` and gives each policy its ID.
pub fn load_policies(
    dir: &Path,
    ids: PolicyIds,
    files: &mut FileList,
    diagnostics: &mut Vec<Diagnostic>,
) -> LoadedPolicies {
    let mut set = PolicySet::new();
    let mut info = HashMap::new();
    let mut sources = HashMap::new();

    let paths = if dir.is_file() {
        vec![dir.to_owned()]
    } else {
        list_files(dir, "cedar").unwrap_or_else(|diagnostic| {
            diagnostics.push(diagnostic);
            Vec::new()
        })
    };
    for path in paths {
        let Ok(text) = read_text(&path, files).map_err(|d| diagnostics.push(d)) else {
            continue;
        };
        add_policy_file(&path, &text, dir, ids, &mut set, &mut info, diagnostics);
        sources.insert(path, text);
    }
    (set, info, sources)
}

fn add_policy_file(
    path: &Path,
    text: &str,
    root: &Path,
    ids: PolicyIds,
    set: &mut PolicySet,
    info: &mut HashMap<PolicyId, PolicyInfo>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors.iter() {
                diagnostics.push(Diagnostic::from_miette(Severity::Error, path, text, error));
            }
            return;
        }
    };
    let relative = match path.strip_prefix(root) {
        // A single policy file is its own root, so its IDs take the file name.
        Ok(relative) if relative.as_os_str().is_empty() => path.file_name().map_or(path, Path::new),
        Ok(relative) => relative,
        Err(_) => path,
    };

    // Cedar numbers policies and templates together, in source order: `policy<n>`.
    let mut items: Vec<(usize, PolicyItem)> = parsed
        .policies()
        .map(|p| (position(p.id()), PolicyItem::Policy(p.clone())))
        .chain(
            parsed
                .templates()
                .map(|t| (position(t.id()), PolicyItem::Template(t.clone()))),
        )
        .collect();
    items.sort_by_key(|(position, _)| *position);

    let mut search_from = 0;
    for (position, item) in items {
        let source = item.source();
        let offset = text
            .get(search_from..)
            .and_then(|rest| rest.find(source.as_str()))
            .map_or(search_from, |found| search_from + found);
        search_from = offset + source.len().min(text.len().saturating_sub(offset));
        let line = text.get(..offset).unwrap_or_default().matches('\n').count() + 1;

        let id = match (ids, item.annotation("id")) {
            (PolicyIds::Annotated, Some(id)) => id.to_owned(),
            (PolicyIds::Annotated, None) => format!("{}#{position}", relative.display()),
            (PolicyIds::Positional, _) | (PolicyIds::CedarCli, None) => {
                format!("policy{position}")
            }
            (PolicyIds::CedarCli, Some(id)) => id.to_owned(),
        };
        let id = PolicyId::new(id);
        if let Some(previous) = info.get(&id) {
            diagnostics.push(duplicate_id(&id, previous, path, text, offset));
            continue;
        }
        let effect = item.effect();
        let reason = item.annotation("reason").map(str::to_owned);
        let added = match item {
            PolicyItem::Policy(p) => set.add(p.new_id(id.clone())),
            PolicyItem::Template(t) => set.add_template(t.new_id(id.clone())),
        };
        if let Err(err) = added {
            let mut diagnostic = Diagnostic::from_miette(Severity::Error, path, text, &err);
            diagnostic.place(text, offset, 1);
            diagnostics.push(diagnostic);
            continue;
        }
        info.insert(
            id,
            PolicyInfo {
                file: path.to_owned(),
                line,
                effect,
                reason,
            },
        );
    }
}

enum PolicyItem {
    Policy(cedar_policy::Policy),
    Template(cedar_policy::Template),
}

impl PolicyItem {
    fn effect(&self) -> Effect {
        match self {
            Self::Policy(policy) => policy.effect(),
            Self::Template(template) => template.effect(),
        }
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        match self {
            Self::Policy(policy) => policy.annotation(key),
            Self::Template(template) => template.annotation(key),
        }
    }

    /// Returns the policy's own source text, as Cedar keeps it from parsing.
    fn source(&self) -> String {
        match self {
            Self::Policy(policy) => policy.to_string(),
            Self::Template(template) => template.to_string(),
        }
    }
}

fn duplicate_id(
    id: &PolicyId,
    previous: &PolicyInfo,
    path: &Path,
    text: &str,
    offset: usize,
) -> Diagnostic {
    let mut diagnostic = Diagnostic::error(
        Some(path),
        format!(
            "duplicate policy ID `{id}`: also used at {}:{}",
            previous.file.display(),
            previous.line
        ),
    )
    .with_help(Some("give each policy a unique `@id`".into()));
    diagnostic.place(text, offset, 1);
    diagnostic
}

/// Reads `n` from Cedar's parser-assigned ID `policy<n>`.
fn position(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Validates policies strictly against the schema and reports each problem at its file,
/// line and column.
fn validate_policies(
    schema: &Schema,
    policies: &PolicySet,
    info: &HashMap<PolicyId, PolicyInfo>,
    sources: &HashMap<PathBuf, String>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let validator = Validator::new(schema.clone());
    let result = validator.validate(policies, ValidationMode::Strict);
    let mut report = |severity: Severity, id: &PolicyId, error: &dyn miette::Diagnostic| {
        let file = info.get(id).map(|i| i.file.clone());
        let source = file.as_ref().and_then(|f| sources.get(f));
        let diagnostic = match (file, source) {
            (Some(file), Some(source)) => Diagnostic::from_miette(severity, &file, source, error),
            _ => Diagnostic {
                severity,
                ..Diagnostic::error(None, error.to_string())
            },
        };
        diagnostics.push(diagnostic.with_message_prefix(id));
    };
    for error in result.validation_errors() {
        report(Severity::Error, error.policy_id(), error);
    }
    for warning in result.validation_warnings() {
        report(Severity::Warning, warning.policy_id(), warning);
    }
}

impl Diagnostic {
    fn with_message_prefix(mut self, id: &PolicyId) -> Self {
        if !self.message.contains(&format!("`{id}`")) {
            self.message = format!("policy `{id}`: {}", self.message);
        }
        self
    }
}

/// Loads every `*.json` file under `dir` as Cedar entities JSON, checked against the schema
/// when one is given.
fn load_entities(
    dir: &Path,
    schema: Option<&Schema>,
    files: &mut FileList,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Entities> {
    let paths = if dir.is_file() {
        vec![dir.to_owned()]
    } else {
        list_files(dir, "json")
            .map_err(|diagnostic| diagnostics.push(diagnostic))
            .ok()?
    };
    let errors_before = diagnostics.len();
    let mut all = Vec::new();
    for path in paths {
        let Ok(text) = read_text(&path, files).map_err(|d| diagnostics.push(d)) else {
            continue;
        };
        all.extend(parse_entity_file(&path, &text, schema, diagnostics));
    }
    if diagnostics.len() > errors_before {
        return None;
    }
    Entities::from_entities(all, schema)
        .map_err(|err| {
            diagnostics.push(
                Diagnostic::error(
                    Some(dir),
                    format!("invalid entities: {}", diagnostics::error_chain(&err)),
                )
                .with_help(miette::Diagnostic::help(&err).map(|h| h.to_string())),
            );
        })
        .ok()
}

fn parse_entity_file(
    path: &Path,
    text: &str,
    schema: Option<&Schema>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Entity> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            let mut diagnostic = Diagnostic::error(Some(path), format!("invalid JSON: {err}"));
            diagnostic.line = Some(err.line());
            diagnostic.column = Some(err.column());
            diagnostics.push(diagnostic);
            return Vec::new();
        }
    };
    let serde_json::Value::Array(items) = value else {
        diagnostics.push(Diagnostic::error(
            Some(path),
            "expected a JSON array of entities",
        ));
        return Vec::new();
    };
    let mut entities = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let uid = item
            .get("uid")
            .map(|uid| uid.to_string())
            .unwrap_or_default();
        match Entity::from_json_value(item, schema) {
            Ok(entity) => entities.push(entity),
            Err(err) => {
                let mut diagnostic = Diagnostic::error(
                    Some(path),
                    format!("entity [{index}] {uid}: {}", diagnostics::error_chain(&err)),
                )
                .with_help(miette::Diagnostic::help(&err).map(|h| h.to_string()));
                if let Some(offset) = nth_uid_offset(text, index) {
                    diagnostic.place(text, offset, 5);
                }
                diagnostics.push(diagnostic);
            }
        }
    }
    entities
}

/// Finds the byte offset of the `index`-th `"uid"` key, a good enough anchor for the
/// entity's line in hand-written files.
fn nth_uid_offset(text: &str, index: usize) -> Option<usize> {
    text.match_indices("\"uid\"")
        .nth(index)
        .map(|(offset, _)| offset)
}

/// Hashes paths and contents in a stable order. Paths are taken relative to the folder
/// that contains all the bundle's files, so the revision does not depend on how the config
/// path was written (`cedargate.toml`, `./cedargate.toml` or an absolute path).
fn revision_of(files: &FileList) -> String {
    let base = common_folder(files.iter().map(|(path, _)| path.as_path()));
    let mut sorted: Vec<(String, &[u8])> = files
        .iter()
        .map(|(path, bytes)| {
            let relative = path.strip_prefix(&base).unwrap_or(path);
            (relative.to_string_lossy().into_owned(), bytes.as_slice())
        })
        .collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (name, bytes) in sorted {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let digest = hasher.finalize();
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Returns the longest folder path that every path starts with.
fn common_folder<'a>(mut paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let Some(first) = paths.next() else {
        return PathBuf::new();
    };
    let mut common: Vec<std::path::Component<'a>> = first
        .parent()
        .map(|parent| parent.components().collect())
        .unwrap_or_default();
    for path in paths {
        let shared = common
            .iter()
            .zip(path.components())
            .take_while(|(a, b)| *a == b)
            .count();
        common.truncate(shared);
    }
    common.iter().collect()
}
