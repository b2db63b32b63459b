//! Serves the example apps of the Cedar project (`cedar-examples/` in the external test
//! corpus) over HTTP and checks every ALLOW and DENY request file they ship.
//!
//! For each request the test mints a token whose claims reproduce the request's principal
//! entity from the app's entities file: its attributes as claims and its parents as claim
//! lists, one list per parent type. It sends `POST /authorize` and expects the decision
//! named by the request's folder. Upstream stores no determining policies for these
//! requests, so only the status and the decision are checked. An app with a `linked` file
//! of template links is served with that file as `bundle.links`.
//!
//! A request that cannot be served is skipped with a reason, never dropped: each app's test
//! asserts that every request file was either checked or skipped, and pins the number
//! checked. The reasons are printed per app.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Entity, EntityUid, PolicyId, Schema, SchemaFragment};
use cedargate::config::{BundleConfig, Config, PrincipalConfig};
use cedargate::mapping::{AuthorizeInput, RequestMeta};
use common::TestServer;
use serde_json::{Map, Value, json};

/// One example app and how it is served.
struct App {
    /// Folder under `cedar-examples/`.
    folder: &'static str,
    policies: &'static str,
    schema: &'static str,
    entities: &'static str,
    /// Template links file in the Cedar CLI's `--template-linked` format, if the app has one.
    links: Option<&'static str>,
    /// Entity type of the app's actions.
    action_type: &'static str,
    context: ContextHandling,
    /// One `[principal]` table per principal type the requests use. A mapping has one
    /// principal type, so each table gets its own server.
    principals: &'static [&'static str],
    /// How many of the app's requests are checked; the others are skipped with a reason.
    expected_checked: usize,
}

/// How the context of the app's request files reaches the policies.
enum ContextHandling {
    /// The app is served as upstream wrote it. cedargate passes the caller's context only
    /// under `context.caller`, so a request with a non-empty context cannot reach policies
    /// that read `context.<key>`. Such requests are skipped, after checking that the server
    /// rejects them with 400 instead of deciding them without their context.
    Unchanged,
    /// The policies read `context.<key>` for keys the caller sends. The test serves a
    /// rewritten copy from a temporary folder, which leaves the corpus untouched: every
    /// `context.` and `context has` in the policies gains `.caller`, and each action's
    /// context type in the schema becomes the record `{ caller: <upstream context> }`.
    /// The request's context is sent unchanged as the caller's context.
    UnderCaller,
}

const TAGS_N_ROLES: App = App {
    folder: "cedar-example-use-cases/tags_n_roles",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: None,
    action_type: "Action",
    context: ContextHandling::Unchanged,
    // Roles sit where Keycloak puts realm roles, to exercise a nested claim path.
    principals: &[r#"
[principal]
type = "User"
[principal.attributes]
allowedTagsForRole = "allowed_tags"
[[principal.parents]]
claim = "realm_access.roles"
type = "Role"
"#],
    expected_checked: 3,
};

const SALES_ORGS_USER: &str = r#"
[principal]
type = "User"
[principal.attributes]
job = "job"
customerId = "customer_id"
[[principal.parents]]
claim = "markets"
type = "Market"
"#;

const SALES_ORGS_STATIC: App = App {
    folder: "cedar-example-use-cases/sales_orgs/static",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: None,
    action_type: "Action",
    context: ContextHandling::Unchanged,
    principals: &[SALES_ORGS_USER],
    expected_checked: 3,
};

const SALES_ORGS_TEMPLATED: App = App {
    folder: "cedar-example-use-cases/sales_orgs/templated",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: Some("linked"),
    action_type: "Action",
    context: ContextHandling::Unchanged,
    principals: &[SALES_ORGS_USER],
    expected_checked: 3,
};

const HOTEL_CHAINS_STATIC: App = App {
    folder: "cedar-example-use-cases/hotel_chains/static",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: None,
    action_type: "Action",
    context: ContextHandling::Unchanged,
    principals: &[r#"
[principal]
type = "User"
[principal.attributes]
viewPermissions = "view_permissions"
memberPermissions = "member_permissions"
hotelAdminPermissions = "hotel_admin"
propertyAdminPermissions = "property_admin"
"#],
    expected_checked: 6,
};

const HOTEL_CHAINS_TEMPLATED: App = App {
    folder: "cedar-example-use-cases/hotel_chains/templated",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: Some("linked"),
    action_type: "Action",
    context: ContextHandling::Unchanged,
    principals: &[r#"
[principal]
type = "User"
"#],
    expected_checked: 6,
};

const STREAMING_SERVICE: App = App {
    folder: "cedar-example-use-cases/streaming_service",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: None,
    action_type: "Action",
    // The caller sends `now` (a datetime in the schema-only `{"fn", "arg"}` form, and the
    // local time offset), which the policies read as `context.now`.
    context: ContextHandling::UnderCaller,
    principals: &[
        r#"
[principal]
type = "Subscriber"
[principal.attributes]
subscription = "subscription"
profile = "profile"
"#,
        r#"
[principal]
type = "FreeMember"
"#,
    ],
    expected_checked: 8,
};

const TAX_PREPARER: App = App {
    folder: "cedar-example-use-cases/tax_preparer",
    policies: "policies.cedar",
    schema: "policies.cedarschema",
    entities: "entities.json",
    links: Some("linked"),
    action_type: "Taxpreparer::Action",
    // The caller sends the client's `consent` (with an `__entity` reference), which the
    // policies read as `context.consent`.
    context: ContextHandling::UnderCaller,
    principals: &[r#"
[principal]
type = "Taxpreparer::Professional"
[principal.attributes]
assigned_orgs = "assigned_orgs"
location = "location"
"#],
    expected_checked: 5,
};

const PHOTO_APP: App = App {
    folder: "cedar-policy-language-in-action/PhotoApp",
    policies: "photoapp.cedar",
    schema: "photoapp.cedarschema",
    entities: "photoapp.cedarentities.json",
    links: None,
    action_type: "PhotoApp::Action",
    // Two requests send `judgingSession`, which the policies read as
    // `context.judgingSession`. The other fourteen send an empty context.
    context: ContextHandling::Unchanged,
    principals: &[r#"
[principal]
type = "PhotoApp::User"
id_claim = "preferred_username"
[[principal.parents]]
claim = "groups"
type = "PhotoApp::UserGroup"
[[principal.parents]]
claim = "roles"
type = "PhotoApp::Role"
"#],
    expected_checked: 14,
};

const GIT_APP: App = App {
    folder: "cedar-policy-language-in-action/GitApp",
    policies: "gitapp.cedar",
    schema: "gitapp.cedarschema",
    entities: "gitapp.cedarentities.json",
    links: None,
    action_type: "GitApp::Action",
    context: ContextHandling::Unchanged,
    principals: &[r#"
[principal]
type = "GitApp::User"
"#],
    expected_checked: 10,
};

const SERVED: [&App; 9] = [
    &TAGS_N_ROLES,
    &SALES_ORGS_STATIC,
    &SALES_ORGS_TEMPLATED,
    &HOTEL_CHAINS_STATIC,
    &HOTEL_CHAINS_TEMPLATED,
    &STREAMING_SERVICE,
    &TAX_PREPARER,
    &PHOTO_APP,
    &GIT_APP,
];

/// An app that is not served, because cedargate's bundle loader rejects it.
struct Unserved {
    folder: &'static str,
    policies: &'static str,
    schema: &'static str,
    entities: &'static str,
    reason: &'static str,
    /// Text that the loader's error message must contain, so the test shows that `reason`
    /// is the real one.
    cause: &'static str,
}

const UNSERVED: [Unserved; 2] = [
    Unserved {
        folder: "cedar-example-use-cases/document_cloud",
        policies: "policies.cedar",
        schema: "policies.cedarschema",
        entities: "entities.json",
        reason: "its entities do not conform to its schema (`Document::\"alice_public\"` has \
                 `manageACL` pointing at a `Document`, the schema says `DocumentShare`), and \
                 the loader validates entities against the schema",
        cause: "in attribute `manageACL` on `Document::\"alice_public\"`",
    },
    Unserved {
        folder: "cedar-example-use-cases/github_example",
        policies: "policies.cedar",
        schema: "policies.cedarschema",
        entities: "entities.json",
        reason: "its entities do not conform to its schema (entity type `Organization` is \
                 not declared), and the loader validates entities against the schema",
        cause: "has type `Organization` which is not declared in the schema",
    },
];

/// The number of request files under `cedar-examples/` in the corpus. A different count
/// means the corpus changed, and the tables above need a look.
const CORPUS_REQUESTS: usize = 72;

#[tokio::test]
async fn tags_n_roles_decisions() {
    check_app(&TAGS_N_ROLES).await;
}

#[tokio::test]
async fn sales_orgs_static_decisions() {
    check_app(&SALES_ORGS_STATIC).await;
}

#[tokio::test]
async fn sales_orgs_templated_decisions() {
    check_app(&SALES_ORGS_TEMPLATED).await;
}

#[tokio::test]
async fn hotel_chains_static_decisions() {
    check_app(&HOTEL_CHAINS_STATIC).await;
}

#[tokio::test]
async fn hotel_chains_templated_decisions() {
    check_app(&HOTEL_CHAINS_TEMPLATED).await;
}

#[tokio::test]
async fn streaming_service_decisions() {
    check_app(&STREAMING_SERVICE).await;
}

#[tokio::test]
async fn tax_preparer_decisions() {
    check_app(&TAX_PREPARER).await;
}

#[tokio::test]
async fn photo_app_decisions() {
    check_app(&PHOTO_APP).await;
}

#[tokio::test]
async fn git_app_decisions() {
    check_app(&GIT_APP).await;
}

/// Every app folder with request files is either served or listed as unserved.
#[test]
fn every_example_app_accounted_for() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let root = corpus.join("cedar-examples");

    let mut found = BTreeSet::new();
    find_app_folders(&root, &root, &mut found);
    let listed: BTreeSet<String> = SERVED
        .iter()
        .map(|app| app.folder)
        .chain(UNSERVED.iter().map(|app| app.folder))
        .map(str::to_owned)
        .collect();
    assert_eq!(found, listed, "app folders with request files");

    let total: usize = found
        .iter()
        .map(|folder| list_requests(&root.join(folder)).len())
        .sum();
    assert_eq!(total, CORPUS_REQUESTS, "request files under cedar-examples");

    for app in &UNSERVED {
        let count = list_requests(&root.join(app.folder)).len();
        report_line(&format!(
            "cedar-examples/{}: not served, {count} requests skipped: {}",
            app.folder, app.reason
        ));
    }
}

/// The apps that are not served really are rejected by the loader, only for their
/// entities, with a message that names the cause.
#[test]
fn unserved_apps_rejected_by_loader() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    for app in &UNSERVED {
        let dir = corpus.join("cedar-examples").join(app.folder);
        let entities = dir.join(app.entities);
        let outcome = cedargate::bundle::load(&BundleConfig {
            policies: dir.join(app.policies),
            schema: dir.join(app.schema),
            entities: entities.clone(),
            regions: None,
            links: None,
            api_keys: None,
            allow_empty_policies: false,
            reload: cedargate::config::ReloadConfig::default(),
            policy_index: cedargate::config::PolicyIndexMode::On,
        });

        let errors: Vec<_> = outcome.errors().collect();
        assert!(outcome.bundle.is_none(), "{}: bundle loaded", app.folder);
        assert!(!errors.is_empty(), "{}: no error reported", app.folder);
        for error in errors {
            assert_eq!(
                error.file.as_deref(),
                Some(entities.as_path()),
                "{}: error outside the entities file: {}",
                app.folder,
                error.message
            );
        }
        let messages: Vec<&str> = outcome
            .errors()
            .map(|error| error.message.as_str())
            .collect();
        assert!(
            messages.iter().any(|message| message.contains(app.cause)),
            "{}: no error names `{}`: {messages:?}",
            app.folder,
            app.cause
        );
    }
}

/// A bundle whose `policies` is a single file names each policy without `@id` as
/// `<file name>#<position>`, the same as for a file in a policies folder. It used to come
/// out as `#<position>`.
#[tokio::test]
async fn single_policy_file_ids_named_by_file() {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let app = &HOTEL_CHAINS_STATIC;
    let dir = corpus.join("cedar-examples").join(app.folder);
    let work = tempfile::tempdir().unwrap();
    let policies = dir.join(app.policies);
    let schema = dir.join(app.schema);
    let config = app_config(
        app,
        app.principals[0],
        &policies,
        &schema,
        &dir,
        work.path(),
        0,
    );
    let server = TestServer::start(config).await;

    let request = read_request(&dir, &dir.join("ALLOW/bob_update_red.json"));
    let schema = server.pdp.snapshot().unwrap().bundle.schema.clone();
    let stored = read_entities(&dir.join(app.entities), &schema);
    let claims = claims_for(default_principal(&server), &stored[&request.principal]).unwrap();
    let token = common::mint(&Value::Object(claims));
    let (status, _, answer) = server
        .authorize(Some(&token), &request_body(&request))
        .await;

    assert_eq!(status, 200, "{answer}");
    // The sixth policy, the admin permit, is the only one that lets Bob update `Red`.
    assert_eq!(answer["policies"], json!(["policies.cedar#5"]), "{answer}");
    server.stop().await;
}

/// What happened to one request file.
enum Outcome {
    Checked,
    Skipped(String),
    Failed(String),
}

/// One request file of an app.
struct RequestFile {
    /// Path under the app folder, such as `ALLOW/alice_read.json`.
    name: String,
    /// `allow` or `deny`, from the folder name.
    expected: &'static str,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Map<String, Value>,
}

/// Counts per app, with skip reasons and failures.
#[derive(Default)]
struct Tally {
    checked: usize,
    skipped: BTreeMap<String, Vec<String>>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, request: &RequestFile, outcome: Outcome) {
        match outcome {
            Outcome::Checked => self.checked += 1,
            Outcome::Skipped(reason) => self
                .skipped
                .entry(reason)
                .or_default()
                .push(request.name.clone()),
            Outcome::Failed(message) => self.failures.push(format!("{}: {message}", request.name)),
        }
    }

    fn skipped_count(&self) -> usize {
        self.skipped.values().map(Vec::len).sum()
    }
}

/// Serves one app and checks each of its request files.
async fn check_app(app: &App) {
    let Some(corpus) = common::corpus_dir() else {
        return;
    };
    let dir = corpus.join("cedar-examples").join(app.folder);
    let requests = list_requests(&dir);
    assert!(!requests.is_empty(), "{}: no request files", app.folder);
    let requests: Vec<RequestFile> = requests
        .iter()
        .map(|path| read_request(&dir, path))
        .collect();

    // Bundle files: the corpus files themselves, or a rewritten copy in `work`.
    let work = tempfile::tempdir().unwrap();
    let (policies, schema) = match app.context {
        ContextHandling::Unchanged => (dir.join(app.policies), dir.join(app.schema)),
        ContextHandling::UnderCaller => write_caller_copy(app, &dir, work.path()),
    };
    // A links file beside the policies that the table leaves out would leave its templates
    // unlinked, and its requests decided without them.
    assert_eq!(
        app.links.is_some(),
        dir.join("linked").is_file(),
        "{}: `links` must name the app's `linked` file exactly when it has one",
        app.folder
    );

    let mut servers = Vec::new();
    for (index, principal) in app.principals.iter().enumerate() {
        let config = app_config(app, principal, &policies, &schema, &dir, work.path(), index);
        servers.push(TestServer::start(config).await);
    }
    let snapshot = servers[0].pdp.snapshot().unwrap();
    for link_id in read_link_ids(app, &dir) {
        assert!(
            snapshot
                .bundle
                .policies
                .policy(&PolicyId::new(&link_id))
                .is_some(),
            "{}: link `{link_id}` is not a policy of the served bundle",
            app.folder
        );
    }
    let schema = snapshot.bundle.schema.clone();
    let stored = read_entities(&dir.join(app.entities), &schema);

    let mut tally = Tally::default();
    for request in &requests {
        let outcome = check_request(app, request, &servers, &stored).await;
        tally.record(request, outcome);
    }
    for server in servers {
        server.stop().await;
    }

    report_line(&format!(
        "cedar-examples/{}: {} requests, {} checked, {} skipped, {} failed",
        app.folder,
        requests.len(),
        tally.checked,
        tally.skipped_count(),
        tally.failures.len()
    ));
    for (reason, names) in &tally.skipped {
        report_line(&format!("    skipped {}: {reason}", names.join(", ")));
    }

    assert_eq!(
        tally.checked + tally.skipped_count() + tally.failures.len(),
        requests.len(),
        "{}: a request was neither checked nor skipped",
        app.folder
    );
    assert!(
        tally.failures.is_empty(),
        "{}: {} of {} requests failed:\n{}",
        app.folder,
        tally.failures.len(),
        requests.len(),
        tally.failures.join("\n")
    );
    assert_eq!(
        tally.checked, app.expected_checked,
        "{}: number of requests checked",
        app.folder
    );
}

/// Sends one request over HTTP, or explains why it is skipped.
async fn check_request(
    app: &App,
    request: &RequestFile,
    servers: &[TestServer],
    stored: &HashMap<EntityUid, Value>,
) -> Outcome {
    let principal_type = request.principal.type_name().to_string();
    let Some(server) = servers
        .iter()
        .find(|server| default_principal(server).entity_type == principal_type)
    else {
        return Outcome::Failed(format!("no mapping for principal type `{principal_type}`"));
    };
    if request.action.type_name().to_string() != app.action_type {
        return Outcome::Failed(format!(
            "action `{}` is not of the configured action type `{}`",
            request.action, app.action_type
        ));
    }

    let body = request_body(request);
    let Some(entity) = stored.get(&request.principal) else {
        return Outcome::Failed(format!(
            "principal `{}` is not in the entities file",
            request.principal
        ));
    };
    let claims = match claims_for(default_principal(server), entity) {
        Ok(claims) => claims,
        Err(message) => return Outcome::Failed(message),
    };
    let token = common::mint(&Value::Object(claims.clone()));
    let (status, _, answer) = server.authorize(Some(&token), &body).await;

    if matches!(app.context, ContextHandling::Unchanged) && !request.context.is_empty() {
        return rejected_context(request, status, &answer);
    }
    if status != 200 {
        return Outcome::Failed(format!("status {status}, expected 200: {answer}"));
    }
    if answer["decision"] != request.expected {
        return Outcome::Failed(format!(
            "decision {}, expected {}: {answer}",
            answer["decision"], request.expected
        ));
    }
    match mapped_principal(server, &claims, &body) {
        Ok(mapped) if mapped == *entity => Outcome::Checked,
        Ok(mapped) => Outcome::Failed(format!(
            "the principal built from the token differs from the stored one:\n  token:  {mapped}\n  stored: {entity}"
        )),
        Err(message) => Outcome::Failed(message),
    }
}

/// Builds the `POST /authorize` body of a request file.
fn request_body(request: &RequestFile) -> Value {
    json!({
        "action": request.action.id().unescaped(),
        "resource": {
            "type": request.resource.type_name().to_string(),
            "id": request.resource.id().unescaped(),
        },
        "context": request.context,
    })
}

/// Checks that a request whose context cedargate cannot pass to the policies is rejected
/// with 400 on the `context` field, and skips it.
fn rejected_context(request: &RequestFile, status: reqwest::StatusCode, answer: &Value) -> Outcome {
    if status != 400 || answer["decision"] != "deny" || answer["error"]["field"] != "context" {
        return Outcome::Failed(format!(
            "caller context sent without a `caller` record in the schema: status {status}, \
             expected 400 on field `context`: {answer}"
        ));
    }
    let keys: Vec<&str> = request.context.keys().map(String::as_str).collect();
    Outcome::Skipped(format!(
        "the policies read the caller's context (`{}`) as `context.<key>`, but cedargate \
         passes it only as `context.caller`; checked to be rejected with 400",
        keys.join("`, `")
    ))
}

/// Builds the claims that reproduce `entity` under `mapping`, the inverse of cedargate's
/// mapping: the id under the id claim, each attribute under its claim, and each parent's id
/// in the list claim of its type. Entity references become their ids and extension values
/// their argument text, the forms cedargate converts back by the schema's types.
fn claims_for(mapping: &PrincipalConfig, entity: &Value) -> Result<Map<String, Value>, String> {
    let id = entity["uid"]["id"].as_str().ok_or("entity without an id")?;
    let mut claims = match common::user_claims(id, json!({})) {
        Value::Object(claims) => claims,
        other => return Err(format!("base claims are not an object: {other}")),
    };
    *claim_slot(&mut claims, &mapping.id_claim.0) = Value::from(id);

    for (name, value) in entity["attrs"].as_object().into_iter().flatten() {
        let claim = mapping
            .attributes
            .get(name)
            .ok_or_else(|| format!("attribute `{name}` of `{id}` has no claim in the mapping"))?;
        *claim_slot(&mut claims, &claim.0) = claim_value(value);
    }

    for parent in entity["parents"].as_array().into_iter().flatten() {
        let (parent_type, parent_id) = (&parent["type"], &parent["id"]);
        let claim = mapping
            .parents
            .iter()
            .find(|config| config.entity_type == *parent_type)
            .ok_or_else(|| format!("parent type {parent_type} has no claim in the mapping"))?;
        let slot = claim_slot(&mut claims, &claim.claim.0);
        if slot.is_null() {
            *slot = json!([]);
        }
        slot.as_array_mut()
            .ok_or_else(|| format!("parent claim `{}` is not a list", claim.claim))?
            .push(parent_id.clone());
    }
    Ok(claims)
}

/// Returns the claim at `path`, creating it and the objects above it as needed.
fn claim_slot<'a>(claims: &'a mut Map<String, Value>, path: &[String]) -> &'a mut Value {
    let (last, above) = path.split_last().expect("claim path is empty");
    let mut object = claims;
    for key in above {
        object = object
            .entry(key.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("claim path crosses a claim that is not an object");
    }
    object.entry(last.clone()).or_insert(Value::Null)
}

/// Converts an attribute value of Cedar's entity JSON to the claim a token would carry.
fn claim_value(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            if let Some(uid) = object.get("__entity") {
                return uid["id"].clone();
            }
            if let Some(extension) = object.get("__extn") {
                return extension["arg"].clone();
            }
            let fields = object
                .iter()
                .map(|(key, inner)| (key.clone(), claim_value(inner)));
            Value::Object(fields.collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(claim_value).collect()),
        other => other.clone(),
    }
}

/// Returns the top-level principal mapping, which every example config has.
fn default_principal(server: &TestServer) -> &PrincipalConfig {
    server
        .pdp
        .config
        .principal
        .as_ref()
        .expect("the example config has a top-level [principal]")
}

/// Maps the claims the way the server does and returns the principal entity in the
/// normalized JSON form of [`read_entities`].
fn mapped_principal(
    server: &TestServer,
    claims: &Map<String, Value>,
    body: &Value,
) -> Result<Value, String> {
    let snapshot = server.pdp.snapshot().ok_or("no bundle loaded")?;
    let input: AuthorizeInput =
        serde_json::from_value(body.clone()).map_err(|err| format!("request body: {err}"))?;
    let meta = RequestMeta {
        client_ip: [127, 0, 0, 1].into(),
        time: jiff::Timestamp::now(),
        method: None,
        path: None,
    };
    let mapped = snapshot
        .mapping
        .map(
            &snapshot.bundle,
            &server.pdp.config.decision.time_zone,
            claims,
            &meta,
            &input,
        )
        .map_err(|err| format!("mapping failed: {err}"))?;
    Ok(normalized(&mapped.principal))
}

/// Reads an entities file with the schema, keyed by UID, each entity as Cedar writes it
/// back to JSON with its parents sorted. The schema resolves entity references and
/// extension values, so every attribute comes out in one escaped form.
fn read_entities(path: &Path, schema: &Schema) -> HashMap<EntityUid, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    items
        .into_iter()
        .map(|item| {
            let entity = Entity::from_json_value(item, Some(schema))
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (entity.uid(), normalized(&entity))
        })
        .collect()
}

fn normalized(entity: &Entity) -> Value {
    let mut json = entity.to_json_value().unwrap();
    if let Some(parents) = json["parents"].as_array_mut() {
        parents.sort_by_key(Value::to_string);
    }
    json
}

/// Lists the request files of an app folder: `ALLOW/*.json` and `DENY/*.json`, sorted.
fn list_requests(app_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for decision in ["ALLOW", "DENY"] {
        let Ok(entries) = std::fs::read_dir(app_dir.join(decision)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Collects, relative to `root`, every folder under `dir` that has an `ALLOW` or `DENY`
/// folder.
fn find_app_folders(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        if path.join("ALLOW").is_dir() || path.join("DENY").is_dir() {
            let relative = path.strip_prefix(root).unwrap();
            found.insert(relative.to_string_lossy().into_owned());
        }
        find_app_folders(root, &path, found);
    }
}

/// Reads a request file in the Cedar CLI's `--request-json` format.
fn read_request(app_dir: &Path, path: &Path) -> RequestFile {
    let name = path
        .strip_prefix(app_dir)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let expected = if name.starts_with("ALLOW/") {
        "allow"
    } else {
        "deny"
    };
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let uid = |key: &str| {
        let text = json[key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: `{key}` is not an entity UID string"));
        EntityUid::from_str(text).unwrap_or_else(|err| panic!("{name}: `{key}`: {err}"))
    };
    RequestFile {
        principal: uid("principal"),
        action: uid("action"),
        resource: uid("resource"),
        context: json["context"].as_object().cloned().unwrap_or_default(),
        expected,
        name,
    }
}

/// Reads the `link_id` of every entry of the app's links file, or none without one.
fn read_link_ids(app: &App, app_dir: &Path) -> Vec<String> {
    let Some(links) = app.links else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(app_dir.join(links)).unwrap();
    let entries: Vec<Value> = serde_json::from_str(&text).unwrap();
    entries
        .iter()
        .map(|entry| entry["link_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Writes the app's policies and schema with the caller's context moved under
/// `context.caller` (see [`ContextHandling::UnderCaller`]) into `work`, and returns their
/// paths.
fn write_caller_copy(app: &App, app_dir: &Path, work: &Path) -> (PathBuf, PathBuf) {
    let policies = std::fs::read_to_string(app_dir.join(app.policies)).unwrap();
    let policies = policies
        .replace("context.", "context.caller.")
        .replace("context has ", "context.caller has ");
    let policies_path = work.join("policies.cedar");
    std::fs::write(&policies_path, policies).unwrap();

    let schema = std::fs::read_to_string(app_dir.join(app.schema)).unwrap();
    let (fragment, _warnings) = SchemaFragment::from_cedarschema_str(&schema).unwrap();
    let mut schema = fragment.to_json_value().unwrap();
    for namespace in schema.as_object_mut().unwrap().values_mut() {
        let actions = namespace.get_mut("actions").and_then(Value::as_object_mut);
        for action in actions.into_iter().flat_map(|actions| actions.values_mut()) {
            if let Some(context) = action.pointer_mut("/appliesTo/context") {
                let upstream = context.take();
                *context = json!({ "type": "Record", "attributes": { "caller": upstream } });
            }
        }
    }
    let schema_path = work.join("schema.cedarschema.json");
    std::fs::write(&schema_path, schema.to_string()).unwrap();
    (policies_path, schema_path)
}

/// Writes a config for one principal table of the app into `work` and parses it. The
/// bundle paths point into the corpus, or at the rewritten copy, and the one issuer trusts
/// the test EC P-256 key.
fn app_config(
    app: &App,
    principal_table: &str,
    policies: &Path,
    schema: &Path,
    app_dir: &Path,
    work: &Path,
    index: usize,
) -> Config {
    let key = common::repo_dir().join("tests/keys/ec-p256-public.pem");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[bundle]
policies = {policies}
schema = {schema}
entities = {entities}
{links}watch = false

[decision]
action_type = "{action_type}"

[[issuer]]
name = "test"
issuer = "{issuer}"
audiences = ["{audience}"]
algorithms = ["ES256"]
keys = [{{ pem = {key}, kid = "test-ec" }}]
{principal_table}"#,
        policies = toml_path(policies),
        schema = toml_path(schema),
        entities = toml_path(&app_dir.join(app.entities)),
        links = app.links.map_or_else(String::new, |links| {
            format!("links = {}\n", toml_path(&app_dir.join(links)))
        }),
        action_type = app.action_type,
        issuer = common::TEST_ISSUER,
        audience = common::TEST_AUDIENCE,
        key = toml_path(&key),
    );
    let path = work.join(format!("cedargate-{index}.toml"));
    std::fs::write(&path, &text).unwrap();
    Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("{}: config is invalid: {err}\n{text}", app.folder))
}

/// Quotes a path as a TOML string.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// Writes a line to stderr that shows even when the test passes, because the harness
/// captures only the print macros.
fn report_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
