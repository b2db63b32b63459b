//! Helpers shared by the integration test crates: the external corpus, the test keys
//! and config files written into temporary folders.

#![allow(
    dead_code,
    reason = "each test crate that includes this module uses a different subset of it"
)]

use std::io::Write;
use std::path::{Path, PathBuf};

use cedargate::config::Config;
use tempfile::TempDir;

/// Environment variable that names the corpus folder, overriding the default location.
pub const CORPUS_ENV: &str = "CEDARGATE_CORPUS";

/// Environment variable that turns a missing corpus into a test failure instead of a skip.
pub const REQUIRE_CORPUS_ENV: &str = "CEDARGATE_REQUIRE_CORPUS";

/// Returns the external test corpus folder, or `None` when it is absent and not required.
///
/// The folder is the one named by `CEDARGATE_CORPUS`, or else `../shared/corpus` next to
/// the crate. When it is missing, this panics if `CEDARGATE_REQUIRE_CORPUS` is set.
/// Otherwise it prints a SKIPPED line to stderr, which shows even when the test passes.
pub fn corpus_dir() -> Option<PathBuf> {
    let (dir, origin) = match std::env::var_os(CORPUS_ENV) {
        Some(dir) => (PathBuf::from(dir), format!("set by {CORPUS_ENV}")),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
            "the default location".to_owned(),
        ),
    };
    if dir.is_dir() {
        return Some(dir);
    }

    if std::env::var_os(REQUIRE_CORPUS_ENV).is_some() {
        panic!(
            "corpus folder `{}` ({origin}) does not exist, and {REQUIRE_CORPUS_ENV} is set: \
             set {CORPUS_ENV} to the corpus folder",
            dir.display()
        );
    }
    // The test harness captures `eprintln!` output of passing tests, so the line is written
    // to the stderr handle itself, which reaches the terminal.
    let _ = writeln!(
        std::io::stderr(),
        "!!! corpus tests SKIPPED: corpus folder `{}` ({origin}) does not exist; set {CORPUS_ENV} \
         to the corpus folder, and set {REQUIRE_CORPUS_ENV}=1 to make a missing corpus fail",
        dir.display()
    );
    None
}

/// Reads a file of `tests/keys`, the test-only key material.
pub fn test_key(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|err| panic!("failed to read test key `{}`: {err}", path.display()))
}

/// The sections every config file needs. Tests append `[tokens]` and `[[issuer]]` tables;
/// the bundle paths are never read by the token stage.
const REQUIRED_SECTIONS: &str = r#"
[bundle]
policies = "policies"
schema = "schema.cedarschema"
entities = "entities"

[decision]
action_type = "App::Action"

[principal]
type = "App::User"
"#;

/// Writes `files` (name and contents) and a `cedargate.toml` made of the required sections
/// followed by `extra_toml` into a new temporary folder, then parses that config.
///
/// Relative paths in `extra_toml` resolve against the folder, so keys can be named by
/// their file names. The folder lives as long as the returned `TempDir`.
pub fn write_config(extra_toml: &str, files: &[(&str, &[u8])]) -> (TempDir, Config) {
    let dir = tempfile::tempdir().expect("failed to create a temporary folder");
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("failed to write `{}`: {err}", path.display()));
    }

    let text = format!("{REQUIRED_SECTIONS}\n{extra_toml}");
    let path = dir.path().join("cedargate.toml");
    std::fs::write(&path, &text)
        .unwrap_or_else(|err| panic!("failed to write `{}`: {err}", path.display()));
    let config = Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("test config is invalid: {err}\n{text}"));
    (dir, config)
}
