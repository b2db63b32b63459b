//! Hot reload under the ways people really change files: editors, vim, git, Kubernetes
//! ConfigMaps, folders deleted and recreated, bursts of writes. Each test runs the real
//! server with its real file watcher on a temporary copy of the default bundle, changes
//! the files the way that tool does, and checks three things. The new files must be
//! served, the decisions must follow them, and no revision other than the old and the
//! new one may be served in between.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use common::TestServer;
use common::reload::{
    ServedRevisions, decide, exporter, last_error, reload_count, revision, status,
    wait_for_first_reload, wait_for_new_revision, wait_for_quiet, wait_for_stale, wait_for_status,
};

/// The default bundle's paths with a debounce far longer than the pauses inside each
/// tool's sequence of writes, so a sequence is reloaded once, as a whole, even when the
/// machine is busy.
const BUNDLE: &str = r#"policies = "policies"
schema = "schema/crm.cedarschema"
entities = "entities"
regions = "data/regions.toml"
debounce_ms = 200"#;

/// Starts a watching server on a fresh copy of the default bundle, with the clock fixed
/// inside business hours, and returns once its watches are in place.
async fn start() -> (TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let config = common::write_test_config(dir.path(), "", BUNDLE);
    let server = start_server(config).await;
    (dir, server)
}

async fn start_server(config: cedargate::config::Config) -> TestServer {
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    wait_for_first_reload(&server).await;
    server
}

/// A policy that forbids exporting customer `c-1001`, which the default bundle allows.
const AUDIT_POLICY: &str = r#"// Acme's records are frozen while they are audited.
@id("forbid-export-during-audit")
forbid (
  principal,
  action == Crm::Action::"export",
  resource == Crm::Customer::"c-1001"
);
"#;

/// Sends an export request for `c-1001` and one for `c-2001` (under legal hold), and
/// returns for each whether it was allowed.
async fn exports(server: &TestServer) -> (bool, bool) {
    let plain = decide(server, exporter(), "export", "c-1001").await;
    let held = decide(server, exporter(), "export", "c-2001").await;
    (plain["decision"] == "allow", held["decision"] == "allow")
}

/// Checks that the server served `expected` revisions in this order, and nothing between.
fn assert_served(served: &[String], expected: &[&str]) {
    assert_eq!(served, expected, "served revisions, in order");
}

fn policy_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("policies").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_in_chunks() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    assert_eq!(exports(&server).await, (true, false));
    let served = ServedRevisions::start(&server);

    // Truncating the file leaves it empty, a valid state that must not be served. The
    // chunks end in the middle of the policy, and each pause is far below the debounce.
    let mut file = std::fs::File::create(policy_path(dir.path(), "legal-hold.cedar")).unwrap();
    let bytes = AUDIT_POLICY.as_bytes();
    for chunk in bytes.chunks(bytes.len() / 3 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    drop(file);

    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["stale"], false, "{after:#}");
    assert_eq!(after["bundle"]["policies"], 4, "{after:#}");
    assert_eq!(exports(&server).await, (false, true));
    assert_served(&served.finish(), &[&old, &revision(&after)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_temp_file_renamed_over() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let served = ServedRevisions::start(&server);

    // The editor writes the whole new text into a temporary file beside the original, in
    // pieces, then renames it over the original.
    let target = policy_path(dir.path(), "legal-hold.cedar");
    let temporary = policy_path(dir.path(), "legal-hold.cedar.tmp-4242");
    let mut file = std::fs::File::create(&temporary).unwrap();
    for line in AUDIT_POLICY.lines() {
        writeln!(file, "{line}").unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    std::fs::rename(&temporary, &target).unwrap();

    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["stale"], false, "{after:#}");
    assert_eq!(exports(&server).await, (false, true));
    assert_served(&served.finish(), &[&old, &revision(&after)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vim_backup_rename() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let served = ServedRevisions::start(&server);

    // vim's default save on Unix: probe that the folder is writable with a file named
    // `4913`, move the original to a backup `name~`, write the new text under the
    // original name, then delete the backup. Between the rename and the new file the
    // policy file does not exist, a state that must not be served.
    let target = policy_path(dir.path(), "legal-hold.cedar");
    let backup = policy_path(dir.path(), "legal-hold.cedar~");
    let probe = policy_path(dir.path(), "4913");
    std::fs::File::create(&probe).unwrap();
    std::fs::remove_file(&probe).unwrap();
    std::fs::rename(&target, &backup).unwrap();
    let text = std::fs::read_to_string(&backup)
        .unwrap()
        .replace("cannot be exported", "stay in the building");
    let mut file = std::fs::File::create(&target).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::remove_file(&backup).unwrap();

    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["stale"], false, "{after:#}");
    assert_eq!(after["bundle"]["policies"], 4, "{after:#}");
    let held = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(held["decision"], "deny", "{held}");
    assert_eq!(
        held["reasons"],
        json!(["records under legal hold stay in the building"])
    );
    assert_eq!(held["revision"], revision(&after).as_str());
    assert_served(&served.finish(), &[&old, &revision(&after)]);
    server.stop().await;
}

/// Runs git in `dir` with a fixed identity and no user or system configuration.
fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=cedargate test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap_or_else(|err| panic!("git is needed for this test: {err}"));
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Replaces `old` with `new` in a file of `dir`, failing when `old` is not there.
fn edit(dir: &Path, relative: &str, old: &str, new: &str) {
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "`{old}` not found in {relative}");
    std::fs::write(&path, text.replace(old, new)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_checkout_of_other_commit() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let config = common::write_test_config(dir.path(), "", BUNDLE);

    // Commit `before` is the default bundle. Commit `after` renames the legal-hold
    // attribute in the schema, the entities and the policy that reads it, and adds a
    // policy file. Any mix of the two commits' files fails validation.
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(
        dir.path(),
        &["add", "policies", "schema", "entities", "data"],
    );
    git(dir.path(), &["commit", "-q", "-m", "before"]);
    git(dir.path(), &["tag", "before"]);
    edit(
        dir.path(),
        "schema/crm.cedarschema",
        "legal_hold: Bool",
        "on_hold: Bool",
    );
    edit(
        dir.path(),
        "entities/crm.json",
        "\"legal_hold\"",
        "\"on_hold\"",
    );
    edit(
        dir.path(),
        "policies/legal-hold.cedar",
        "resource.legal_hold",
        "resource.on_hold",
    );
    std::fs::write(policy_path(dir.path(), "audit.cedar"), AUDIT_POLICY).unwrap();
    git(
        dir.path(),
        &["add", "policies", "schema", "entities", "data"],
    );
    git(dir.path(), &["commit", "-q", "-m", "after"]);

    let server = start_server(config).await;
    let after = revision(&status(&server).await);
    assert_eq!(exports(&server).await, (false, false));
    let served = ServedRevisions::start(&server);

    git(dir.path(), &["checkout", "-q", "before"]);
    let before = revision(&wait_for_new_revision(&server, &after).await);
    assert_eq!(status(&server).await["bundle"]["policies"], 4);
    assert_eq!(exports(&server).await, (true, false));

    // The same files give the same revision again.
    git(dir.path(), &["checkout", "-q", "main"]);
    let back = wait_for_new_revision(&server, &before).await;
    assert_eq!(revision(&back), after);
    assert_eq!(back["stale"], false, "{back:#}");
    assert_eq!(exports(&server).await, (false, false));
    assert_served(&served.finish(), &[&after, &before, &after]);
    server.stop().await;
}

/// A Kubernetes ConfigMap volume as the kubelet writes it: each version in a hidden
/// timestamped folder, a `..data` symlink to the current one, and for each top-level
/// entry a visible symlink through `..data`. A new version is written beside the old
/// one, then `..data` is repointed by renaming a new symlink over it.
struct ConfigMapVolume {
    dir: PathBuf,
    version: u32,
    entries: Vec<String>,
}

impl ConfigMapVolume {
    fn create(dir: &Path, files: &[(&str, &[u8])]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut volume = Self {
            dir: dir.to_owned(),
            version: 0,
            entries: Vec::new(),
        };
        volume.update(files);
        volume
    }

    /// Publishes a new version holding exactly `files` (paths relative to the volume),
    /// in the kubelet's order of steps.
    fn update(&mut self, files: &[(&str, &[u8])]) {
        let old_version = self.version_dir();
        self.version += 1;
        let new_version = self.version_dir();

        // The new version's files.
        for (relative, contents) in files {
            let path = self.dir.join(&new_version).join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }

        // `..data` moves to the new version in one rename.
        let staging = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new_version, &staging).unwrap();
        std::fs::rename(&staging, self.dir.join("..data")).unwrap();

        // Visible links for new entries, then away with the links of removed ones.
        let mut entries: Vec<String> = files
            .iter()
            .map(|(relative, _)| relative.split('/').next().unwrap().to_owned())
            .collect();
        entries.sort();
        entries.dedup();
        for entry in &entries {
            let link = self.dir.join(entry);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("..data/{entry}"), link).unwrap();
            }
        }
        for entry in self.entries.iter().filter(|e| !entries.contains(e)) {
            std::fs::remove_file(self.dir.join(entry)).unwrap();
        }
        self.entries = entries;

        // The old version goes last.
        if self.version > 1 {
            std::fs::remove_dir_all(self.dir.join(old_version)).unwrap();
        }
    }

    fn version_dir(&self) -> String {
        format!("..2026_03_02_10_00_00.{:09}", self.version)
    }
}

/// Borrows owned file names and contents for [`ConfigMapVolume::update`].
fn refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect()
}

fn repo_file(relative: &str) -> Vec<u8> {
    std::fs::read(common::repo_dir().join(relative)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_volume_per_folder() {
    // Each bundle folder is a ConfigMap volume of its own, so every file is a symlink
    // into that volume's `..data`.
    let dir = tempfile::tempdir().unwrap();
    common::write_test_issuer_key(dir.path());
    let customers = repo_file("policies/customers.cedar");
    let legal_hold = repo_file("policies/legal-hold.cedar");
    let mut policies = ConfigMapVolume::create(
        &dir.path().join("k8s/policies"),
        &[
            ("customers.cedar", &customers),
            ("legal-hold.cedar", &legal_hold),
        ],
    );
    ConfigMapVolume::create(
        &dir.path().join("k8s/schema"),
        &[("crm.cedarschema", &repo_file("schema/crm.cedarschema"))],
    );
    ConfigMapVolume::create(
        &dir.path().join("k8s/entities"),
        &[("crm.json", &repo_file("entities/crm.json"))],
    );
    ConfigMapVolume::create(
        &dir.path().join("k8s/data"),
        &[("regions.toml", &repo_file("data/regions.toml"))],
    );
    let bundle = r#"policies = "k8s/policies"
schema = "k8s/schema/crm.cedarschema"
entities = "k8s/entities"
regions = "k8s/data/regions.toml"
debounce_ms = 200"#;
    let server = start_server(common::write_test_config(dir.path(), "", bundle)).await;
    let first = revision(&status(&server).await);
    assert_eq!(exports(&server).await, (true, false));
    let served = ServedRevisions::start(&server);

    // A key is added: the audit policy.
    policies.update(&[
        ("customers.cedar", &customers),
        ("legal-hold.cedar", &legal_hold),
        ("audit.cedar", AUDIT_POLICY.as_bytes()),
    ]);
    let second = revision(&wait_for_new_revision(&server, &first).await);
    assert_eq!(exports(&server).await, (false, false));

    // A key is removed: the legal hold no longer applies.
    policies.update(&[
        ("customers.cedar", &customers),
        ("audit.cedar", AUDIT_POLICY.as_bytes()),
    ]);
    let third = wait_for_new_revision(&server, &second).await;
    assert_eq!(third["stale"], false, "{third:#}");
    assert_eq!(third["bundle"]["policies"], 4, "{third:#}");
    assert_eq!(exports(&server).await, (false, true));
    assert_served(&served.finish(), &[&first, &second, &revision(&third)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_volume_with_folders() {
    // One volume holds the whole bundle, its keys mapped to paths with folders, so the
    // bundle folders themselves are symlinks through `..data`.
    let dir = tempfile::tempdir().unwrap();
    common::write_test_issuer_key(dir.path());
    let customers = repo_file("policies/customers.cedar");
    let legal_hold = repo_file("policies/legal-hold.cedar");
    let schema = repo_file("schema/crm.cedarschema");
    let entities = repo_file("entities/crm.json");
    let regions = repo_file("data/regions.toml");
    let files = |legal_hold: &[u8], schema: &[u8], entities: &[u8]| -> Vec<(String, Vec<u8>)> {
        vec![
            ("policies/customers.cedar".into(), customers.clone()),
            ("policies/legal-hold.cedar".into(), legal_hold.to_vec()),
            ("schema/crm.cedarschema".into(), schema.to_vec()),
            ("entities/crm.json".into(), entities.to_vec()),
            ("data/regions.toml".into(), regions.clone()),
        ]
    };
    let version_one = files(&legal_hold, &schema, &entities);
    let mut volume = ConfigMapVolume::create(&dir.path().join("k8s/bundle"), &refs(&version_one));
    let bundle = r#"policies = "k8s/bundle/policies"
schema = "k8s/bundle/schema/crm.cedarschema"
entities = "k8s/bundle/entities"
regions = "k8s/bundle/data/regions.toml"
debounce_ms = 200"#;
    let server = start_server(common::write_test_config(dir.path(), "", bundle)).await;
    let first = revision(&status(&server).await);
    let served = ServedRevisions::start(&server);

    // Version two renames the legal-hold attribute in the schema, the entities and the
    // policy at once; the swap of `..data` makes the change atomic.
    let rename = |bytes: &[u8], old: &str, new: &str| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains(old));
        text.replace(old, new).into_bytes()
    };
    let version_two = files(
        &rename(&legal_hold, "resource.legal_hold", "resource.on_hold"),
        &rename(&schema, "legal_hold: Bool", "on_hold: Bool"),
        &rename(&entities, "\"legal_hold\"", "\"on_hold\""),
    );
    volume.update(&refs(&version_two));
    let second = wait_for_new_revision(&server, &first).await;
    assert_eq!(second["stale"], false, "{second:#}");
    assert_eq!(exports(&server).await, (true, false));

    // Version three lifts the legal hold. It proves the folders are watched again after
    // the first swap, because they now resolve into another version's folder.
    let lifted = b"// The legal hold is lifted.\n";
    let version_three = files(lifted, &version_two[2].1, &version_two[3].1);
    volume.update(&refs(&version_three));
    let third = wait_for_new_revision(&server, &revision(&second)).await;
    assert_eq!(third["bundle"]["policies"], 3, "{third:#}");
    assert_eq!(exports(&server).await, (true, true));
    assert_served(
        &served.finish(),
        &[&first, &revision(&second), &revision(&third)],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_symlink_swapped() {
    // A deploy tool unpacks each release into a folder of its own and points `current`
    // at it; the config reads through `current`. Old releases stay on disk, so nothing
    // changes under the folders watched so far: only the swap of `current` does.
    let dir = tempfile::tempdir().unwrap();
    common::write_test_issuer_key(dir.path());
    let releases = dir.path().join("releases");
    common::copy_default_bundle(&releases.join("v1"));
    common::copy_default_bundle(&releases.join("v2"));
    std::fs::write(releases.join("v2/policies/audit.cedar"), AUDIT_POLICY).unwrap();
    std::os::unix::fs::symlink("releases/v1", dir.path().join("current")).unwrap();
    let bundle = r#"policies = "current/policies"
schema = "current/schema/crm.cedarschema"
entities = "current/entities"
regions = "current/data/regions.toml"
debounce_ms = 200"#;
    let server = start_server(common::write_test_config(dir.path(), "", bundle)).await;
    let first = revision(&status(&server).await);
    assert_eq!(exports(&server).await, (true, false));
    let served = ServedRevisions::start(&server);

    // `ln -sfn releases/v2 current`, done atomically: a new link renamed over the old.
    let staging = dir.path().join("current.new");
    std::os::unix::fs::symlink("releases/v2", &staging).unwrap();
    std::fs::rename(&staging, dir.path().join("current")).unwrap();
    let second = revision(&wait_for_new_revision(&server, &first).await);
    assert_eq!(exports(&server).await, (false, false));

    // The new release's folders are watched from now on.
    std::fs::remove_file(releases.join("v2/policies/legal-hold.cedar")).unwrap();
    let third = wait_for_new_revision(&server, &second).await;
    assert_eq!(third["bundle"]["policies"], 4, "{third:#}");
    assert_eq!(exports(&server).await, (false, true));
    assert_served(&served.finish(), &[&first, &second, &revision(&third)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_folder_deleted_and_recreated() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let policies = dir.path().join("policies");
    let saved = tempfile::tempdir().unwrap();
    common::copy_dir(&policies, saved.path());

    std::fs::remove_dir_all(&policies).unwrap();
    let stale = wait_for_stale(&server).await;
    assert_eq!(revision(&stale), old);
    let error = last_error(&stale);
    assert!(
        error["file"].as_str().unwrap().ends_with("policies"),
        "{error:#}"
    );
    assert_eq!(
        exports(&server).await,
        (true, false),
        "the old bundle serves"
    );

    // The folder comes back with the audit policy in place of the legal hold.
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        saved.path().join("customers.cedar"),
        policies.join("customers.cedar"),
    )
    .unwrap();
    std::fs::write(policies.join("audit.cedar"), AUDIT_POLICY).unwrap();
    let recreated = wait_for_new_revision(&server, &old).await;
    assert_eq!(recreated["stale"], false, "{recreated:#}");
    assert_eq!(exports(&server).await, (false, true));

    // The new folder is watched: an edit inside it is picked up too.
    std::fs::copy(
        saved.path().join("legal-hold.cedar"),
        policies.join("legal-hold.cedar"),
    )
    .unwrap();
    let edited = wait_for_new_revision(&server, &revision(&recreated)).await;
    assert_eq!(edited["bundle"]["policies"], 5, "{edited:#}");
    assert_eq!(exports(&server).await, (false, false));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_file_written_in_place() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let served = ServedRevisions::start(&server);

    std::fs::write(policy_path(dir.path(), "audit.cedar"), AUDIT_POLICY).unwrap();
    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["bundle"]["policies"], 5, "{after:#}");
    assert_eq!(exports(&server).await, (false, false));
    assert_served(&served.finish(), &[&old, &revision(&after)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_waits_for_policies() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);

    // An optional attribute must be guarded with `has` under strict validation, so the
    // legal-hold policy's plain `resource.legal_hold` no longer validates.
    edit(
        dir.path(),
        "schema/crm.cedarschema",
        "legal_hold: Bool",
        "legal_hold?: Bool",
    );
    let stale = wait_for_stale(&server).await;
    assert_eq!(revision(&stale), old);
    let error = last_error(&stale);
    assert!(
        error["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/legal-hold.cedar"),
        "{error:#}"
    );
    assert_eq!(error["line"], 9, "{error:#}");
    let held = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(held["decision"], "deny", "{held}");
    assert_eq!(held["revision"], old.as_str());

    // The policy follows the schema, and the pair is published.
    edit(
        dir.path(),
        "policies/legal-hold.cedar",
        "when { resource.legal_hold }",
        "when { resource has legal_hold && resource.legal_hold }",
    );
    let fixed = wait_for_new_revision(&server, &old).await;
    assert_eq!(fixed["stale"], false, "{fixed:#}");
    assert_eq!(fixed["last_reload_error"], Value::Null, "{fixed:#}");
    let held = decide(&server, exporter(), "export", "c-2001").await;
    assert_eq!(held["decision"], "deny", "{held}");
    assert_eq!(held["policies"], json!(["forbid-export-under-legal-hold"]));
    assert_eq!(held["revision"], revision(&fixed).as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_reloads_few_times() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let before = reload_count(&wait_for_quiet(&server, Duration::from_millis(300)).await);

    // 999 rewrites keep the legal hold with a changing comment; the last one lifts it.
    let path = policy_path(dir.path(), "legal-hold.cedar");
    let original = std::fs::read_to_string(&path).unwrap();
    for write in 1..1000 {
        std::fs::write(&path, format!("{original}// write {write}\n")).unwrap();
    }
    std::fs::write(&path, "// The legal hold is lifted.\n").unwrap();

    wait_for_status(&server, "the last write", |status| {
        status["bundle"]["policies"] == 3 && status["bundle"]["revision"] != old.as_str()
    })
    .await;
    let quiet = wait_for_quiet(&server, Duration::from_millis(500)).await;
    assert_eq!(quiet["stale"], false, "{quiet:#}");
    let reloads = reload_count(&quiet) - before;
    assert!(
        (1..=10).contains(&reloads),
        "1,000 writes caused {reloads} reloads: {quiet:#}"
    );
    assert_eq!(exports(&server).await, (true, true));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_file_keeps_old_bundle() {
    let (dir, server) = start().await;
    let old = revision(&status(&server).await);
    let path = policy_path(dir.path(), "legal-hold.cedar");
    let original = std::fs::read(&path).unwrap();

    // A symlink to a file that does not exist cannot be read.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("missing/legal-hold.cedar", &path).unwrap();
    let stale = wait_for_stale(&server).await;
    assert_eq!(revision(&stale), old);
    let error = last_error(&stale);
    assert!(
        error["file"]
            .as_str()
            .unwrap()
            .ends_with("policies/legal-hold.cedar"),
        "{error:#}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to read file"),
        "{error:#}"
    );
    assert_eq!(
        exports(&server).await,
        (true, false),
        "the old bundle serves"
    );

    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &original).unwrap();
    let recovered = wait_for_status(&server, "recovery", |status| status["stale"] == false).await;
    assert_eq!(
        revision(&recovered),
        old,
        "the same files, the same revision"
    );

    // A file without read permission, unless the tests run with the privilege to read it
    // anyway (as root does).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&path).is_ok() {
        let _ = writeln!(
            std::io::stderr(),
            "!!! permission case SKIPPED: this process can read a file with mode 000"
        );
    } else {
        let stale = wait_for_stale(&server).await;
        assert_eq!(revision(&stale), old);
        let error = last_error(&stale);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("ermission denied"),
            "{error:#}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_prefix_of_write_never_served() {
    // A short debounce and a long settle interval: the reload starts while the file is
    // half written, and only the settle check can keep the half from being served.
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let bundle = r#"policies = "policies"
schema = "schema/crm.cedarschema"
entities = "entities"
regions = "data/regions.toml"
debounce_ms = 20
settle_ms = 1000"#;
    let server = start_server(common::write_test_config(dir.path(), "", bundle)).await;
    let old = revision(&status(&server).await);
    let served = ServedRevisions::start(&server);

    // The first half is a valid file of its own: the legal hold without the audit policy.
    let path = policy_path(dir.path(), "legal-hold.cedar");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"\n// Audit follows.\n").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    file.write_all(AUDIT_POLICY.as_bytes()).unwrap();
    drop(file);

    let after = wait_for_new_revision(&server, &old).await;
    assert_eq!(after["bundle"]["policies"], 5, "{after:#}");
    assert_eq!(exports(&server).await, (false, false));
    assert_served(&served.finish(), &[&old, &revision(&after)]);
    assert!(original.len() < std::fs::read_to_string(&path).unwrap().len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_files_do_not_reload() {
    let (dir, server) = start().await;
    let before = wait_for_quiet(&server, Duration::from_millis(300)).await;

    // A log written beside the bundle, the config file and a note in the schema folder
    // share folders with the bundle, but they are not part of it.
    for line in 0..50 {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        writeln!(log, "line {line}").unwrap();
    }
    let config = dir.path().join("cedargate.toml");
    std::fs::write(&config, std::fs::read(&config).unwrap()).unwrap();
    std::fs::write(dir.path().join("schema/NOTES.txt"), "notes").unwrap();

    let after = wait_for_quiet(&server, Duration::from_millis(500)).await;
    assert_eq!(after["reloads"], before["reloads"], "{after:#}");
    server.stop().await;
}
