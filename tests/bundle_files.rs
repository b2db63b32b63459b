//! Tests of how the bundle stage finds policy files: symlinks are followed, as a Kubernetes
//! ConfigMap mount needs, but no real folder is read twice and no real file is loaded twice.
//! Each test builds real symlinks in a copy of the default bundle.

#![cfg(unix)]
// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cedargate::bundle::{Bundle, LoadOutcome};
use cedargate::config::BundleConfig;

use common::default_bundle_copy;

/// Maximum time a load of the default bundle may take in these tests. A normal load takes
/// a small fraction of it, even in a debug build, and a walk that loops never returns.
const LOAD_TIME_LIMIT: Duration = Duration::from_secs(1);

/// Loads the bundle on another thread and fails the test when it takes longer than
/// `LOAD_TIME_LIMIT`, so a walk that loops fails instead of hanging the test run.
fn load_in_time(config: &BundleConfig) -> LoadOutcome {
    let (sender, receiver) = mpsc::channel();
    let config = config.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = sender.send(cedargate::bundle::load(&config));
    });
    match receiver.recv_timeout(LOAD_TIME_LIMIT) {
        Ok(outcome) => outcome,
        Err(_) => panic!(
            "bundle load did not finish within {LOAD_TIME_LIMIT:?} (waited {:?})",
            started.elapsed()
        ),
    }
}

/// Returns the bundle, failing the test with every rendered diagnostic when loading failed
/// or reported any error.
fn loaded(outcome: LoadOutcome) -> Bundle {
    let errors: Vec<String> = outcome.errors().map(|d| d.render()).collect();
    assert!(
        errors.is_empty(),
        "bundle has errors:\n{}",
        errors.join("\n")
    );
    outcome.bundle.expect("bundle without errors is missing")
}

fn policy_ids(bundle: &Bundle) -> BTreeSet<String> {
    bundle.policy_info.keys().map(|id| id.to_string()).collect()
}

/// Loads an unchanged copy of the default bundle and returns its policy IDs.
fn default_policy_ids() -> BTreeSet<String> {
    let (_dir, config) = default_bundle_copy("");
    let ids = policy_ids(&loaded(load_in_time(&config.bundle)));
    assert!(!ids.is_empty(), "the default bundle has no policies");
    ids
}

/// Names of the `*.cedar` files directly in `folder`.
fn cedar_files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cedar"))
        .collect();
    names.sort();
    names
}

/// Folders to create in `policies`, then symlinks to add there as (link, target).
struct LinkLayout {
    name: &'static str,
    folders: &'static [&'static str],
    links: &'static [(&'static str, &'static str)],
}

#[test]
fn symlink_loops_load_once() {
    let expected = default_policy_ids();
    let cases = [
        LinkLayout {
            name: "two links to the policies folder itself",
            folders: &[],
            links: &[("loop-a", "."), ("loop-b", ".")],
        },
        LinkLayout {
            name: "a subfolder linking to its parent",
            folders: &["team"],
            links: &[("team/up", "..")],
        },
        LinkLayout {
            name: "two subfolders linking to each other",
            folders: &["a", "b"],
            links: &[("a/to-b", "../b"), ("b/to-a", "../a")],
        },
    ];

    for LinkLayout {
        name,
        folders,
        links,
    } in cases
    {
        let (_dir, config) = default_bundle_copy("");
        let policies = &config.bundle.policies;
        for folder in folders {
            std::fs::create_dir(policies.join(folder)).unwrap();
        }
        for (link, target) in links {
            symlink(target, policies.join(link)).unwrap();
        }

        let outcome = load_in_time(&config.bundle);
        let duplicates: Vec<String> = outcome
            .diagnostics
            .iter()
            .filter(|d| d.message.contains("duplicate policy ID"))
            .map(|d| d.render())
            .collect();
        assert!(duplicates.is_empty(), "{name}: {duplicates:?}");
        let bundle = loaded(outcome);
        assert_eq!(policy_ids(&bundle), expected, "{name}");
    }
}

#[test]
fn configmap_layout_loads_policies_once() {
    let expected = default_policy_ids();
    let (_dir, config) = default_bundle_copy("");
    let policies = &config.bundle.policies;

    // The layout the kubelet writes: the files in a hidden timestamped folder, a hidden
    // `..data` link to it, and one visible link per file through `..data`.
    let names = cedar_files(policies);
    let timestamped = policies.join("..2024_01_01_00_00_00.000000000");
    std::fs::create_dir(&timestamped).unwrap();
    for name in &names {
        std::fs::rename(policies.join(name), timestamped.join(name)).unwrap();
    }
    symlink("..2024_01_01_00_00_00.000000000", policies.join("..data")).unwrap();
    for name in &names {
        symlink(format!("..data/{name}"), policies.join(name)).unwrap();
    }

    let bundle = loaded(load_in_time(&config.bundle));
    assert_eq!(policy_ids(&bundle), expected);
    for (id, info) in &bundle.policy_info {
        assert_eq!(
            info.file.parent(),
            Some(policies.as_path()),
            "policy `{id}` is listed under a hidden path"
        );
    }
    let listed: Vec<String> = bundle
        .files
        .iter()
        .filter(|file| file.extension().is_some_and(|ext| ext == "cedar"))
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, names);
}

#[test]
fn symlink_to_outside_file_followed() {
    let expected = default_policy_ids();
    let (dir, config) = default_bundle_copy("");
    let policies = &config.bundle.policies;

    // Move one policy file out of the folder and link it back in.
    let name = cedar_files(policies).pop().unwrap();
    let outside = dir.path().join("shared-policies");
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(policies.join(&name), outside.join(&name)).unwrap();
    symlink(outside.join(&name), policies.join(&name)).unwrap();

    let bundle = loaded(load_in_time(&config.bundle));
    assert_eq!(policy_ids(&bundle), expected);
}

#[test]
fn several_links_to_one_file_load_once() {
    let expected = default_policy_ids();
    let (_dir, config) = default_bundle_copy("");
    let policies = &config.bundle.policies;
    let names = cedar_files(policies);
    let name = names.first().unwrap();

    // Each file must stay listed under its real path, although `a-alias.cedar` sorts
    // before it and the folder link `nested` reaches every file a second time.
    symlink(name, policies.join("a-alias.cedar")).unwrap();
    std::fs::create_dir(policies.join("more")).unwrap();
    symlink(format!("../{name}"), policies.join("more/again.cedar")).unwrap();
    symlink(".", policies.join("nested")).unwrap();

    let bundle = loaded(load_in_time(&config.bundle));
    assert_eq!(policy_ids(&bundle), expected);
    let listed: BTreeSet<String> = bundle
        .policy_info
        .values()
        .map(|info| {
            info.file
                .strip_prefix(policies)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(listed, names.iter().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn folder_nested_too_deep_rejected() {
    let (_dir, config) = default_bundle_copy("");
    let policies = &config.bundle.policies;
    let deep = (0..17).fold(policies.clone(), |path, level| {
        path.join(format!("level-{level}"))
    });
    std::fs::create_dir_all(&deep).unwrap();

    let outcome = load_in_time(&config.bundle);
    assert!(
        outcome.bundle.is_none(),
        "a bundle loaded past the depth bound"
    );
    let messages: Vec<String> = outcome.errors().map(|d| d.render()).collect();
    let expected = format!(
        "folder is nested more than 16 levels below `{}`",
        policies.display()
    );
    assert!(
        messages.iter().any(|message| message.contains(&expected)),
        "no error says `{expected}`: {messages:?}"
    );
}

#[test]
fn folder_nested_at_depth_bound_loads() {
    let expected = default_policy_ids();
    let (_dir, config) = default_bundle_copy("");
    let policies = &config.bundle.policies;
    let deep = (0..16).fold(policies.clone(), |path, level| {
        path.join(format!("level-{level}"))
    });
    std::fs::create_dir_all(&deep).unwrap();

    let bundle = loaded(load_in_time(&config.bundle));
    assert_eq!(policy_ids(&bundle), expected);
}

/// Creates a special file at the given path.
type MakeFile = fn(&Path);

#[test]
fn special_files_rejected_not_read() {
    let cases: [(&str, MakeFile); 2] = [
        ("fifo.cedar", |path| {
            let status = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success(), "mkfifo failed");
        }),
        ("zero.cedar", |path| symlink("/dev/zero", path).unwrap()),
    ];
    for (name, make) in cases {
        let (dir, config) = default_bundle_copy("");
        let path = dir.path().join("policies").join(name);
        make(&path);

        let outcome = load_in_time(&config.bundle);
        assert!(outcome.bundle.is_none(), "{name}: loaded");
        let errors: Vec<_> = outcome.errors().collect();
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        assert_eq!(errors[0].file.as_deref(), Some(path.as_path()), "{name}");
        assert!(
            errors[0].message.contains("not a regular file"),
            "{name}: {}",
            errors[0].message
        );
    }
}
