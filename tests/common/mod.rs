//! Helpers shared by the integration test crates: the external corpus, the test keys
//! and config files written into temporary folders.

#![allow(
    dead_code,
    reason = "each test crate that includes this module uses a different subset of it"
)]

pub mod jwks_server;
pub mod reload;

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

/// Returns the repository root, where the default bundle lives.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Issuer of the tokens that [`mint`] signs, with the test EC P-256 key.
pub const TEST_ISSUER: &str = "https://issuer.test";
/// Audience that the default-bundle test config accepts.
pub const TEST_AUDIENCE: &str = "customers-api";

/// Copies the default bundle (policies, schema, entities, region table) into a new
/// temporary folder with a config that trusts the test EC P-256 key instead of the
/// development issuer. `extra_toml` is appended to the `[server]` table.
pub fn default_bundle_copy(server_toml: &str) -> (TempDir, Config) {
    let dir = tempfile::tempdir().expect("failed to create a temporary folder");
    copy_default_bundle(dir.path());
    let config = write_test_config(dir.path(), server_toml, DEFAULT_TEST_BUNDLE);
    (dir, config)
}

/// The `[bundle]` table of [`default_bundle_copy`]: the default bundle's paths, with a
/// short debounce so tests wait less.
pub const DEFAULT_TEST_BUNDLE: &str = r#"policies = "policies"
schema = "schema/crm.cedarschema"
entities = "entities"
regions = "data/regions.toml"
debounce_ms = 50"#;

/// Like [`default_bundle_copy`], with the `[tokens]` and `[[issuer]]` tables of
/// `issuers_toml` in place of the test issuer. `issuer.pem` (the test EC P-256 public key)
/// is in the folder for issuers that name it.
pub fn default_bundle_with_issuers(server_toml: &str, issuers_toml: &str) -> (TempDir, Config) {
    let dir = tempfile::tempdir().expect("failed to create a temporary folder");
    copy_default_bundle(dir.path());
    let config =
        write_config_with_issuers(dir.path(), server_toml, DEFAULT_TEST_BUNDLE, issuers_toml);
    (dir, config)
}

/// Copies the default bundle's folders and the test issuer's public key into `dir`.
pub fn copy_default_bundle(dir: &Path) {
    for folder in ["policies", "schema", "entities", "data"] {
        copy_dir(&repo_dir().join(folder), &dir.join(folder));
    }
    write_test_issuer_key(dir);
}

/// Writes the test issuer's public key as `issuer.pem` into `dir`.
pub fn write_test_issuer_key(dir: &Path) {
    std::fs::write(dir.join("issuer.pem"), test_key("ec-p256-public.pem")).unwrap();
}

/// Writes `cedargate.toml` into `dir` and parses it: `server_toml` is appended to the
/// `[server]` table, `bundle_toml` is the whole `[bundle]` table, and the rest is the
/// default bundle's decision settings and principal mapping with the test issuer.
pub fn write_test_config(dir: &Path, server_toml: &str, bundle_toml: &str) -> Config {
    let issuer = format!(
        r#"[[issuer]]
name = "test"
issuer = "{TEST_ISSUER}"
audiences = ["{TEST_AUDIENCE}"]
algorithms = ["ES256"]
keys = [{{ pem = "issuer.pem", kid = "test-ec" }}]"#
    );
    write_config_with_issuers(dir, server_toml, bundle_toml, &issuer)
}

/// Like [`write_test_config`], with `issuers_toml` (`[tokens]` and `[[issuer]]` tables)
/// in place of the test issuer.
pub fn write_config_with_issuers(
    dir: &Path,
    server_toml: &str,
    bundle_toml: &str,
    issuers_toml: &str,
) -> Config {
    let default_config = std::fs::read_to_string(repo_dir().join("cedargate.toml")).unwrap();
    // Keep everything after the issuer section (the principal mapping) from the real file,
    // so the tests exercise the mapping users start from.
    let principal = default_config
        .split_once("[principal]")
        .map(|(_, rest)| rest)
        .expect("cedargate.toml has a [principal] table");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server_toml}

[bundle]
{bundle_toml}

[decision]
action_type = "Crm::Action"
time_zone = "Europe/Berlin"

{issuers_toml}

[principal]{principal}"#
    );
    let path = dir.join("cedargate.toml");
    std::fs::write(&path, &text).unwrap();
    Config::from_toml(&path, &text)
        .unwrap_or_else(|err| panic!("test config is invalid: {err}\n{text}"))
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Signs `claims` with the test EC P-256 key (`tests/keys/ec-p256-private.pem`, kid
/// `test-ec`). Claims are used as given: add `iss`, `aud` and `exp` yourself, or use
/// [`user_claims`].
pub fn mint(claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&test_key("ec-p256-private.pem")).unwrap();
    let header = jsonwebtoken::Header {
        kid: Some("test-ec".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Claims of a valid token for the default bundle: the test issuer and audience, the
/// subject and the extra claims. The token expires ten years from now, so it stays valid
/// at the fixed clock times tests set, whichever side of the real clock they are on.
pub fn user_claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let now = jiff::Timestamp::now().as_second();
    let mut claims = serde_json::json!({
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
        "sub": sub,
        "exp": now + 10 * 365 * 24 * 3600,
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    claims
}

/// A real cedargate server on a loopback port, stopped when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub pdp: std::sync::Arc<cedargate::decide::Pdp>,
    pub client: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Loads the bundle, binds the configured address (use port 0) and serves in the
    /// background of the current tokio runtime.
    pub async fn start(mut config: Config) -> Self {
        // Decision lines on the test binary's standard output would bury the test report,
        // so the default output is turned off; tests of the log configure a file.
        if config.decision_log.output == cedargate::config::LogOutput::Stdout {
            config.decision_log.output = cedargate::config::LogOutput::Off;
        }
        let pdp = cedargate::server::prepare(config)
            .unwrap_or_else(|err| panic!("server failed to start: {err}"));
        Self::start_with(pdp).await
    }

    /// Serves an already prepared decision point, for tests that need one without a bundle.
    pub async fn start_with(pdp: std::sync::Arc<cedargate::decide::Pdp>) -> Self {
        let listener = cedargate::server::bind(&pdp.config).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn({
            let pdp = std::sync::Arc::clone(&pdp);
            let shutdown = shutdown.clone();
            async move {
                cedargate::server::run(pdp, listener, shutdown)
                    .await
                    .unwrap();
            }
        });
        Self {
            addr,
            pdp,
            client: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `POST /authorize` with a bearer token and a JSON body; returns the status,
    /// the headers and the parsed body.
    pub async fn authorize(
        &self,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (
        reqwest::StatusCode,
        reqwest::header::HeaderMap,
        serde_json::Value,
    ) {
        let mut request = self.client.post(self.url("/authorize")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap();
        (status, headers, body)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Returns a Monday at 10:00 in Berlin, inside business hours.
pub fn business_hours() -> jiff::Timestamp {
    "2026-03-02T10:00:00+01:00".parse().unwrap()
}

/// Returns the same Monday at 20:00 in Berlin, outside business hours.
pub fn after_hours() -> jiff::Timestamp {
    "2026-03-02T20:00:00+01:00".parse().unwrap()
}
