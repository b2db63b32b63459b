//! The configuration file (`cedargate.toml`): parsed into raw structs that mirror the
//! TOML, then checked and turned into [`Config`], with every path resolved against the
//! folder that contains the file. Mistakes are reported at startup, never on a request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Default leeway for `exp` and `nbf`: clocks of issuers and servers drift by seconds,
/// not minutes, so a small window keeps fresh tokens working without extending old ones.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file `{path}`: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config file `{path}`: {}", problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this was read from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub bundle: BundleConfig,
    pub decision: DecisionConfig,
    pub issuers: Vec<IssuerConfig>,
    pub leeway: Duration,
    /// Token limits, the verification cache and fetching of remote key sets.
    pub tokens: TokensConfig,
    /// The default principal mapping, for tokens of issuers without their own. Absent when
    /// every issuer has its own mapping, or when no issuer is configured.
    pub principal: Option<PrincipalConfig>,
    pub decision_log: DecisionLogConfig,
    /// A candidate bundle evaluated beside the active one (shadow mode), if configured.
    pub shadow: Option<BundleConfig>,
}

/// Settings of the token stage beyond the issuers themselves.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// Tokens longer than this are rejected before any decoding.
    pub max_token_bytes: usize,
    /// Maximum number of verified tokens kept in the verification cache; 0 turns it off.
    pub cache_max_entries: usize,
    pub jwks: JwksFetchConfig,
}

/// Settings for fetching and caching remote JWK Sets (`jwks_url` and `discovery` keys).
#[derive(Debug, Clone)]
pub struct JwksFetchConfig {
    /// Lower bound of the refresh interval that the provider's `Cache-Control` sets, and
    /// the interval when it sets none.
    pub refresh_min: Duration,
    /// Upper bound of the refresh interval.
    pub refresh_max: Duration,
    /// Minimum time between two fetches caused by tokens with an unknown `kid`.
    pub refetch_interval: Duration,
    /// Keys not confirmed by a successful fetch for this long are no longer used.
    pub max_age: Duration,
    /// Time limit of one HTTP request to the provider.
    pub timeout: Duration,
    /// PEM file of extra root certificates, for providers behind a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Start even when the first bundle is invalid: requests get 503 until a valid bundle
    /// loads. Off by default, so a broken bundle stops a deploy at once.
    pub start_without_bundle: bool,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header the trusted proxies set; the other is ignored.
    pub forwarded_header: ForwardedHeader,
}

#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// Folder of `*.cedar` files, read recursively.
    pub policies: PathBuf,
    /// Schema file: Cedar syntax (`.cedarschema`) or JSON (`.cedarschema.json`, `.json`).
    pub schema: PathBuf,
    /// Folder of Cedar entities JSON files (`*.json`), read recursively.
    pub entities: PathBuf,
    /// Optional CIDR-to-region table.
    pub regions: Option<PathBuf>,
    /// Optional template links file (JSON, in the Cedar CLI's format).
    pub links: Option<PathBuf>,
    /// Optional API keys file (JSON): the hash of each key and its principal entity.
    pub api_keys: Option<PathBuf>,
    /// Load a bundle without policies, which denies every request, instead of
    /// rejecting it as invalid.
    pub allow_empty_policies: bool,
    pub reload: ReloadConfig,
    /// Whether requests evaluate only the policies whose scope can match them.
    pub policy_index: PolicyIndexMode,
}

/// How the server notices changed bundle files.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Reload on file changes; `SIGHUP` reloads either way.
    pub watch: bool,
    /// Scan the files every `poll_interval` instead of waiting for file system events.
    pub poll: bool,
    /// Interval between scans in poll mode, and after the event watcher has failed.
    pub poll_interval: Duration,
    /// Quiet time after the last file event before a reload starts.
    pub debounce: Duration,
    /// Wait between the two reads of the files that must agree before a reload is
    /// validated, so a file caught in the middle of a write is not loaded.
    pub settle: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            poll: false,
            poll_interval: Duration::from_millis(DEFAULT_POLL_INTERVAL_MS),
            debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
            settle: Duration::from_millis(DEFAULT_SETTLE_MS),
        }
    }
}

/// When the scope index over the policy set is used (see `engine::index`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyIndexMode {
    /// From 64 policies on, where it starts to pay off.
    #[default]
    Auto,
    On,
    Off,
}

impl BundleConfig {
    /// Describes a bundle of these three paths, with the defaults of the config file for
    /// everything else.
    pub fn new(policies: PathBuf, schema: PathBuf, entities: PathBuf) -> Self {
        Self {
            policies,
            schema,
            entities,
            regions: None,
            links: None,
            api_keys: None,
            allow_empty_policies: false,
            reload: ReloadConfig::default(),
            policy_index: PolicyIndexMode::default(),
        }
    }

    /// Lists every file and folder that belongs to the bundle. The watcher, the poll scan
    /// and the stability check of a reload look at these paths only, so a new bundle file
    /// must be listed here to be reloaded.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![
            self.policies.as_path(),
            self.schema.as_path(),
            self.entities.as_path(),
        ];
        if let Some(regions) = &self.regions {
            paths.push(regions);
        }
        if let Some(links) = &self.links {
            paths.push(links);
        }
        if let Some(api_keys) = &self.api_keys {
            paths.push(api_keys);
        }
        paths
    }
}

impl BundleConfig {
    /// Returns the same bundle read from another folder: each path, relative to
    /// `config_dir` (the folder of the config file), is resolved against `root` instead.
    /// A candidate bundle laid out like the active one can so be loaded beside it.
    pub fn rebased(&self, config_dir: &Path, root: &Path) -> Result<Self, String> {
        let rebase = |path: &Path| -> Result<PathBuf, String> {
            let relative = path.strip_prefix(config_dir).map_err(|_| {
                format!(
                    "`{}` is not inside the config file's folder `{}`, so it has no place in another bundle folder; use paths relative to the config file",
                    path.display(),
                    config_dir.display()
                )
            })?;
            Ok(root.join(relative))
        };
        Ok(Self {
            policies: rebase(&self.policies)?,
            schema: rebase(&self.schema)?,
            entities: rebase(&self.entities)?,
            regions: self.regions.as_deref().map(rebase).transpose()?,
            links: self.links.as_deref().map(rebase).transpose()?,
            ..self.clone()
        })
    }
}

/// Forwarding header that carries the client address through trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, which most proxies and load balancers set.
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded`, defined by RFC 7239.
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl ForwardedHeader {
    /// Returns the header name in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// Effect on the decision of a policy whose evaluation raised an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnForbidError {
    /// Fail closed: a `forbid` that raised an error denies the request.
    Deny,
    /// Plain Cedar semantics: the erroring policy is skipped, so a `permit` can still allow.
    Skip,
}

#[derive(Debug, Clone)]
pub struct DecisionConfig {
    pub on_forbid_error: OnForbidError,
    pub time_zone: jiff::tz::TimeZone,
    pub time_zone_name: String,
    /// Entity type of actions, such as `Crm::Action`.
    pub action_type: String,
    /// Whether a request may ask for `"debug": true`, which returns how each policy
    /// evaluated. Off by default, because it shows callers the policies' structure.
    pub debug: bool,
}

/// Where decision log lines go, how files rotate and which fields are redacted.
#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    pub output: LogOutput,
    /// Size at which the log file is rotated, in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept beside the current one (`decisions.log.1` is the newest).
    pub max_files: usize,
    /// Lines queued for the writer; a line that finds the queue full is dropped and counted.
    pub buffer_lines: usize,
    /// Principal attributes and context keys removed from every line.
    pub redact: Vec<FieldPath>,
    /// Principal attributes and context keys replaced by a SHA-256 hash of their value.
    pub hash: Vec<FieldPath>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    File(PathBuf),
    Off,
}

/// A principal attribute or context key, such as `principal.email` or
/// `context.caller.ssn`: the root, then the keys down nested records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub root: FieldRoot,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRoot {
    Principal,
    Context,
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let root = match self.root {
            FieldRoot::Principal => "principal",
            FieldRoot::Context => "context",
        };
        write!(f, "{root}.{}", self.keys.join("."))
    }
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub keys: Vec<KeySource>,
    /// A development issuer gets its key generated on first use and a warning at start.
    pub development: bool,
    /// This issuer's own principal mapping, used instead of the top-level `[principal]`.
    pub principal: Option<PrincipalConfig>,
}

impl IssuerConfig {
    /// Returns the config key of this issuer's principal mapping, for messages.
    pub fn principal_key(&self, index: usize) -> String {
        format!("issuer[{index}] (`{}`).principal", self.name)
    }
}

#[derive(Debug, Clone)]
pub enum KeySource {
    /// A PEM public key (RSA, EC or Ed25519), with the `kid` tokens must name, if any.
    Pem { path: PathBuf, kid: Option<String> },
    /// A JSON Web Key Set file.
    Jwks { path: PathBuf },
    /// An HMAC secret read from a file; surrounding whitespace is not part of the secret.
    SecretFile { path: PathBuf, kid: Option<String> },
    /// An HMAC secret read from an environment variable.
    SecretEnv { var: String, kid: Option<String> },
    /// A JSON Web Key Set fetched over HTTPS (or HTTP to a loopback address) and
    /// refreshed while the server runs.
    JwksUrl { url: url::Url },
    /// An OpenID Connect discovery document whose `jwks_uri` names the key set.
    Discovery { url: url::Url },
}

/// Location of a claim in the token: a list of object keys from the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone)]
pub struct PrincipalConfig {
    pub entity_type: String,
    pub id_claim: ClaimPath,
    /// Attribute name to the claim that fills it.
    pub attributes: BTreeMap<String, ClaimPath>,
    pub parents: Vec<ParentConfig>,
}

#[derive(Debug, Clone)]
pub struct ParentConfig {
    pub claim: ClaimPath,
    pub entity_type: String,
}

// The raw file, as serde reads it.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    bundle: RawBundle,
    decision: RawDecision,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default, rename = "issuer")]
    issuers: Vec<RawIssuer>,
    principal: Option<RawPrincipal>,
    #[serde(default)]
    decision_log: RawDecisionLog,
    shadow: Option<RawShadow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_request_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "default_shutdown_timeout_ms")]
    shutdown_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    start_without_bundle: bool,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_forwarded_header")]
    forwarded_header: ForwardedHeader,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            max_connections: default_max_connections(),
            start_without_bundle: false,
            trusted_proxies: Vec::new(),
            forwarded_header: default_forwarded_header(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8180".to_owned()
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_forwarded_header() -> ForwardedHeader {
    ForwardedHeader::XForwardedFor
}
/// Below the common default limit of 1024 open files per process, leaving room for the
/// bundle's files, the listener and the watcher.
fn default_max_connections() -> usize {
    512
}

/// Upper bound for `server.max_connections`: far above what one process serves, and
/// small enough for tokio's semaphore.
const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    policies: PathBuf,
    schema: PathBuf,
    entities: PathBuf,
    regions: Option<PathBuf>,
    links: Option<PathBuf>,
    api_keys: Option<PathBuf>,
    #[serde(default)]
    allow_empty_policies: bool,
    #[serde(default = "default_true")]
    watch: bool,
    #[serde(default)]
    poll: bool,
    #[serde(default = "default_poll_interval_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_debounce_ms")]
    debounce_ms: u64,
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
    #[serde(default)]
    policy_index: PolicyIndexMode,
}

fn default_true() -> bool {
    true
}
const DEFAULT_DEBOUNCE_MS: u64 = 100;
fn default_debounce_ms() -> u64 {
    DEFAULT_DEBOUNCE_MS
}
const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}
const DEFAULT_SETTLE_MS: u64 = 50;
fn default_settle_ms() -> u64 {
    DEFAULT_SETTLE_MS
}
/// Upper bound for the reload timings: a longer wait is almost certainly a typo, such as
/// seconds given as milliseconds multiplied again.
const MAX_RELOAD_WAIT_MS: u64 = 600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    #[serde(default = "default_on_forbid_error")]
    on_forbid_error: OnForbidError,
    #[serde(default = "default_time_zone")]
    time_zone: String,
    action_type: String,
    #[serde(default)]
    debug: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecisionLog {
    #[serde(default = "default_log_output")]
    output: String,
    path: Option<PathBuf>,
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_max_files")]
    max_files: usize,
    #[serde(default = "default_buffer_lines")]
    buffer_lines: usize,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    hash: Vec<String>,
}

impl Default for RawDecisionLog {
    fn default() -> Self {
        Self {
            output: default_log_output(),
            path: None,
            max_file_bytes: default_max_file_bytes(),
            max_files: default_max_files(),
            buffer_lines: default_buffer_lines(),
            redact: Vec::new(),
            hash: Vec::new(),
        }
    }
}

fn default_log_output() -> String {
    "stdout".to_owned()
}
fn default_max_file_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_files() -> usize {
    5
}
/// A few seconds of lines at thousands of decisions per second, at about 1 KiB a line.
fn default_buffer_lines() -> usize {
    8192
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    bundle: PathBuf,
}

fn default_on_forbid_error() -> OnForbidError {
    OnForbidError::Deny
}
fn default_time_zone() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
    leeway_seconds: u64,
    max_token_bytes: usize,
    cache_max_entries: usize,
    jwks_refresh_min_seconds: u64,
    jwks_refresh_max_seconds: u64,
    jwks_refetch_interval_seconds: u64,
    jwks_max_age_seconds: u64,
    jwks_timeout_ms: u64,
    jwks_ca_file: Option<PathBuf>,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            // Real access tokens are a few kilobytes at most.
            max_token_bytes: 16 * 1024,
            cache_max_entries: 10_000,
            jwks_refresh_min_seconds: 60,
            jwks_refresh_max_seconds: 3_600,
            jwks_refetch_interval_seconds: 30,
            jwks_max_age_seconds: 24 * 3_600,
            jwks_timeout_ms: 3_000,
            jwks_ca_file: None,
        }
    }
}

/// Upper bound of `tokens.max_token_bytes`; HTTP servers and proxies reject larger
/// headers anyway.
const MAX_TOKEN_BYTES_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    algorithms: Vec<String>,
    keys: Vec<RawKey>,
    #[serde(default)]
    development: bool,
    principal: Option<RawPrincipal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    pem: Option<PathBuf>,
    jwks: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    jwks_url: Option<String>,
    discovery: Option<RawDiscovery>,
    kid: Option<String>,
}

/// `discovery = true` reads `<iss>/.well-known/openid-configuration`; a string names the
/// document's URL.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDiscovery {
    FromIssuer(bool),
    Url(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    #[serde(rename = "type")]
    entity_type: String,
    #[serde(default = "default_id_claim")]
    id_claim: RawClaimPath,
    #[serde(default)]
    attributes: BTreeMap<String, RawClaimPath>,
    #[serde(default)]
    parents: Vec<RawParent>,
}

fn default_id_claim() -> RawClaimPath {
    RawClaimPath::Dotted("sub".to_owned())
}

/// A claim path is either a dotted string (`realm_access.roles`) or, for claim names that
/// contain dots themselves, an array of keys (`["https://example.com/roles"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawClaimPath {
    Dotted(String),
    Keys(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    claim: RawClaimPath,
    #[serde(rename = "type")]
    entity_type: String,
}

impl ConfigError {
    /// Returns the 1-based line and column of a TOML syntax or type error, when known.
    pub fn position(&self, text: &str) -> Option<(usize, usize)> {
        let Self::Parse { source, .. } = self else {
            return None;
        };
        let offset = source.span()?.start.min(text.len());
        let before = text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..)?.chars().count() + 1;
        Some((before.matches('\n').count() + 1, column))
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates config text; `path` names the file in messages and anchors
    /// relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        // Relative paths in the file are relative to the folder that contains it.
        let base = path.parent().unwrap_or(Path::new(""));

        let mut problems = Vec::new();
        let server = validate_server(raw.server, &mut problems);
        let reload = validate_reload(&raw.bundle, &mut problems);
        let bundle = BundleConfig {
            policies: base.join(raw.bundle.policies),
            schema: base.join(raw.bundle.schema),
            entities: base.join(raw.bundle.entities),
            regions: raw.bundle.regions.map(|r| base.join(r)),
            links: raw.bundle.links.map(|l| base.join(l)),
            api_keys: raw.bundle.api_keys.map(|k| base.join(k)),
            allow_empty_policies: raw.bundle.allow_empty_policies,
            reload,
            policy_index: raw.bundle.policy_index,
        };
        check_api_keys_path(&bundle, &mut problems);
        let decision = validate_decision(raw.decision, &mut problems);
        let principal = raw
            .principal
            .map(|principal| validate_principal(principal, "principal", &mut problems));
        let issuers = raw
            .issuers
            .into_iter()
            .enumerate()
            .filter_map(|(index, issuer)| {
                validate_issuer(index, issuer, base, principal.is_some(), &mut problems)
            })
            .collect::<Vec<_>>();
        check_unique_issuers(&issuers, &mut problems);
        let tokens = validate_tokens(&raw.tokens, base, &mut problems);
        let decision_log = validate_decision_log(raw.decision_log, base, &mut problems);
        let shadow = raw.shadow.and_then(|shadow| {
            bundle
                .rebased(base, &base.join(&shadow.bundle))
                .map_err(|problem| problems.push(format!("shadow.bundle: {problem}")))
                .ok()
        });

        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            server,
            bundle,
            decision,
            issuers,
            leeway: Duration::from_secs(raw.tokens.leeway_seconds),
            tokens,
            principal,
            decision_log,
            shadow,
        })
    }

    /// Returns the development issuers, which the server warns about at start.
    pub fn development_issuers(&self) -> impl Iterator<Item = &IssuerConfig> {
        self.issuers.iter().filter(|issuer| issuer.development)
    }
}

fn validate_server(raw: RawServer, problems: &mut Vec<String>) -> ServerConfig {
    let listen = raw.listen.parse().unwrap_or_else(|err| {
        problems.push(format!(
            "server.listen: `{}` is not an address with a port, such as `127.0.0.1:8180`: {err}",
            raw.listen
        ));
        SocketAddr::from(([127, 0, 0, 1], 8180))
    });
    if raw.max_body_bytes == 0 {
        problems.push("server.max_body_bytes: must be at least 1".to_owned());
    }
    if raw.max_connections == 0 || raw.max_connections > MAX_CONNECTIONS_LIMIT {
        problems.push(format!(
            "server.max_connections: must be from 1 to {MAX_CONNECTIONS_LIMIT}, and below the open-file limit (`ulimit -n`)"
        ));
    }
    if raw.request_timeout_ms == 0 {
        problems.push("server.request_timeout_ms: must be at least 1".to_owned());
    }
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .filter_map(|text| parse_network(text, "server.trusted_proxies", problems))
        .collect();
    ServerConfig {
        listen,
        max_body_bytes: raw.max_body_bytes,
        request_timeout: Duration::from_millis(raw.request_timeout_ms),
        shutdown_timeout: Duration::from_millis(raw.shutdown_timeout_ms),
        max_connections: raw.max_connections,
        start_without_bundle: raw.start_without_bundle,
        trusted_proxies,
        forwarded_header: raw.forwarded_header,
    }
}

/// The entities folder loads every `*.json` file in it as entities, so the keys file
/// must live elsewhere, such as beside that folder.
fn check_api_keys_path(bundle: &BundleConfig, problems: &mut Vec<String>) {
    let Some(api_keys) = &bundle.api_keys else {
        return;
    };
    if api_keys.starts_with(&bundle.entities) {
        problems.push(format!(
            "bundle.api_keys: `{}` is inside the entities folder, which reads every `*.json` file as entities; move it beside that folder",
            api_keys.display()
        ));
    }
}

/// Parses a CIDR network; a bare address stands for a network of that one address.
pub fn parse_network(text: &str, key: &str, problems: &mut Vec<String>) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(addr));
    }
    problems.push(format!(
        "{key}: `{text}` is not a network such as `10.0.0.0/8` or an address such as `10.0.0.1`"
    ));
    None
}

fn validate_reload(raw: &RawBundle, problems: &mut Vec<String>) -> ReloadConfig {
    let timings = [
        ("poll_interval_ms", raw.poll_interval_ms, 10),
        ("debounce_ms", raw.debounce_ms, 0),
        ("settle_ms", raw.settle_ms, 0),
    ];
    for (key, value, min) in timings {
        if !(min..=MAX_RELOAD_WAIT_MS).contains(&value) {
            problems.push(format!(
                "bundle.{key}: `{value}` is out of range; use {min} to {MAX_RELOAD_WAIT_MS} milliseconds"
            ));
        }
    }
    ReloadConfig {
        watch: raw.watch,
        poll: raw.poll,
        poll_interval: Duration::from_millis(raw.poll_interval_ms),
        debounce: Duration::from_millis(raw.debounce_ms),
        settle: Duration::from_millis(raw.settle_ms),
    }
}

fn validate_decision(raw: RawDecision, problems: &mut Vec<String>) -> DecisionConfig {
    let time_zone = jiff::tz::TimeZone::get(&raw.time_zone).unwrap_or_else(|err| {
        problems.push(format!(
            "decision.time_zone: `{}` is not an IANA time zone such as `Europe/Berlin`: {err}",
            raw.time_zone
        ));
        jiff::tz::TimeZone::UTC
    });
    if raw
        .action_type
        .parse::<cedar_policy::EntityTypeName>()
        .is_err()
    {
        problems.push(format!(
            "decision.action_type: `{}` is not a Cedar entity type name such as `Crm::Action`",
            raw.action_type
        ));
    }
    DecisionConfig {
        on_forbid_error: raw.on_forbid_error,
        time_zone,
        time_zone_name: raw.time_zone,
        action_type: raw.action_type,
        debug: raw.debug,
    }
}

fn validate_decision_log(
    raw: RawDecisionLog,
    base: &Path,
    problems: &mut Vec<String>,
) -> DecisionLogConfig {
    let output = match (raw.output.as_str(), raw.path) {
        ("stdout", None) => LogOutput::Stdout,
        ("off", None) => LogOutput::Off,
        ("file", Some(path)) => LogOutput::File(base.join(path)),
        ("file", None) => {
            problems.push(
                "decision_log.path: required when `output = \"file\"`, such as `path = \"logs/decisions.log\"`"
                    .to_owned(),
            );
            LogOutput::Off
        }
        ("stdout" | "off", Some(_)) => {
            problems.push(format!(
                "decision_log.path: only used with `output = \"file\"`, but output is `{}`",
                raw.output
            ));
            LogOutput::Off
        }
        (other, _) => {
            problems.push(format!(
                "decision_log.output: `{other}` is not one of `stdout`, `file` and `off`"
            ));
            LogOutput::Off
        }
    };
    if raw.max_file_bytes < 4096 {
        problems.push("decision_log.max_file_bytes: must be at least 4096".to_owned());
    }
    if raw.buffer_lines == 0 {
        problems.push("decision_log.buffer_lines: must be at least 1".to_owned());
    }
    let mut paths = |list: Vec<String>, key: &str| -> Vec<FieldPath> {
        list.iter()
            .filter_map(|text| {
                parse_field_path(text)
                    .map_err(|problem| problems.push(format!("decision_log.{key}: {problem}")))
                    .ok()
            })
            .collect()
    };
    let redact = paths(raw.redact, "redact");
    let hash = paths(raw.hash, "hash");
    for path in &hash {
        if redact.contains(path) {
            problems.push(format!(
                "decision_log.hash: `{path}` is also in `redact`; list it in one of them"
            ));
        }
    }
    DecisionLogConfig {
        output,
        max_file_bytes: raw.max_file_bytes,
        max_files: raw.max_files,
        buffer_lines: raw.buffer_lines,
        redact,
        hash,
    }
}

/// Parses `principal.<attribute>` or `context.<key>`, with more `.<key>` parts for
/// nested records.
pub fn parse_field_path(text: &str) -> Result<FieldPath, String> {
    let mut parts = text.split('.');
    let root = match parts.next() {
        Some("principal") => FieldRoot::Principal,
        Some("context") => FieldRoot::Context,
        _ => {
            return Err(format!(
                "`{text}` must start with `principal.` (an attribute) or `context.` (a context key)"
            ));
        }
    };
    let keys: Vec<String> = parts.map(str::to_owned).collect();
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(format!(
            "`{text}` names no field; write `principal.email` or `context.caller.ssn`"
        ));
    }
    Ok(FieldPath { root, keys })
}

fn validate_issuer(
    index: usize,
    raw: RawIssuer,
    base: &Path,
    has_default_principal: bool,
    problems: &mut Vec<String>,
) -> Option<IssuerConfig> {
    let key = format!("issuer[{index}] (`{}`)", raw.name);
    let before = problems.len();

    if raw.issuer.is_empty() {
        problems.push(format!("{key}.issuer: must not be empty"));
    }
    if raw.algorithms.is_empty() {
        problems.push(format!(
            "{key}.algorithms: list at least one algorithm, such as `RS256`"
        ));
    }
    let algorithms = raw
        .algorithms
        .iter()
        .filter_map(|name| match parse_algorithm(name) {
            Some(alg) => Some(alg),
            None => {
                problems.push(format!(
                    "{key}.algorithms: `{name}` is not supported; use one of {}",
                    SUPPORTED_ALGORITHMS.join(", ")
                ));
                None
            }
        })
        .collect::<Vec<_>>();
    if raw.keys.is_empty() {
        problems.push(format!(
            "{key}.keys: list at least one key (`pem`, `jwks`, `jwks_url`, `discovery`, `secret_file` or `secret_env`)"
        ));
    }
    let keys = raw
        .keys
        .into_iter()
        .enumerate()
        .filter_map(|(key_index, raw_key)| {
            let key = format!("{key}.keys[{key_index}]");
            validate_key(&key, raw_key, &raw.issuer, base, problems)
        })
        .collect();

    // Every token needs a principal mapping: its issuer's own, or the top-level default.
    let principal = raw
        .principal
        .map(|principal| validate_principal(principal, &format!("{key}.principal"), problems));
    if principal.is_none() && !has_default_principal {
        problems.push(format!(
            "{key}: has no `principal` mapping, and there is no top-level `[principal]` to fall back on; add one of them"
        ));
    }

    (problems.len() == before).then_some(IssuerConfig {
        name: raw.name,
        issuer: raw.issuer,
        audiences: raw.audiences,
        algorithms,
        keys,
        development: raw.development,
        principal,
    })
}

fn validate_key(
    key: &str,
    raw: RawKey,
    iss: &str,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<KeySource> {
    let remote = match (raw.jwks_url, raw.discovery) {
        (None, None) => None,
        (Some(url), None) => Some(("jwks_url", url, false)),
        (None, Some(RawDiscovery::Url(url))) => Some(("discovery", url, true)),
        (None, Some(RawDiscovery::FromIssuer(true))) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                iss.trim_end_matches('/')
            );
            Some(("discovery", url, true))
        }
        (None, Some(RawDiscovery::FromIssuer(false))) => {
            problems.push(format!(
                "{key}.discovery: `false` names no key source; remove the entry or set `true`"
            ));
            return None;
        }
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{key}: set exactly one of `pem`, `jwks`, `jwks_url`, `discovery`, `secret_file` and `secret_env`"
            ));
            return None;
        }
    };
    if let Some((name, text, discovery)) = remote {
        let local = [
            raw.pem.is_some(),
            raw.jwks.is_some(),
            raw.secret_file.is_some(),
            raw.secret_env.is_some(),
        ];
        if local.contains(&true) {
            problems.push(format!(
                "{key}: set exactly one of `pem`, `jwks`, `jwks_url`, `discovery`, `secret_file` and `secret_env`"
            ));
            return None;
        }
        if raw.kid.is_some() {
            problems.push(format!(
                "{key}.kid: a remote key set names its keys itself; remove `kid`"
            ));
            return None;
        }
        let url = match parse_key_url(&text) {
            Ok(url) => url,
            Err(message) => {
                problems.push(format!("{key}.{name}: `{text}` {message}"));
                return None;
            }
        };
        return Some(if discovery {
            KeySource::Discovery { url }
        } else {
            KeySource::JwksUrl { url }
        });
    }

    let source = match (raw.pem, raw.jwks, raw.secret_file, raw.secret_env) {
        (Some(path), None, None, None) => KeySource::Pem {
            path: base.join(path),
            kid: raw.kid,
        },
        (None, Some(path), None, None) => {
            if raw.kid.is_some() {
                problems.push(format!(
                    "{key}.kid: a JWKS file names its keys itself; remove `kid`"
                ));
                return None;
            }
            KeySource::Jwks {
                path: base.join(path),
            }
        }
        (None, None, Some(path), None) => KeySource::SecretFile {
            path: base.join(path),
            kid: raw.kid,
        },
        (None, None, None, Some(var)) => KeySource::SecretEnv { var, kid: raw.kid },
        _ => {
            problems.push(format!(
                "{key}: set exactly one of `pem`, `jwks`, `jwks_url`, `discovery`, `secret_file` and `secret_env`"
            ));
            return None;
        }
    };
    Some(source)
}

/// Parses the URL of a remote key set or discovery document. Keys fetched over plain
/// HTTP could be replaced on the way, so HTTPS is required unless the host is a loopback
/// address written as an IP literal (`127.0.0.1`, `[::1]`), which never leaves the machine.
/// `localhost` is not accepted in its place, because a name can resolve elsewhere.
pub fn parse_key_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|err| format!("is not a URL: {err}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(
                "uses plain HTTP; use `https://`, which is required except for loopback addresses such as `127.0.0.1`".into(),
            );
        }
        scheme => return Err(format!("has the scheme `{scheme}`; use `https://`")),
    }
    if url.host().is_none() {
        return Err("has no host".into());
    }
    // Credentials in the URL would appear in logs and on the status route.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("contains credentials; remove the `user:password@` part".into());
    }
    Ok(url)
}

/// Returns whether the URL's host is a loopback IP literal.
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        _ => false,
    }
}

fn validate_tokens(raw: &RawTokens, base: &Path, problems: &mut Vec<String>) -> TokensConfig {
    if raw.max_token_bytes == 0 || raw.max_token_bytes > MAX_TOKEN_BYTES_LIMIT {
        problems.push(format!(
            "tokens.max_token_bytes: must be from 1 to {MAX_TOKEN_BYTES_LIMIT}"
        ));
    }
    let min = raw.jwks_refresh_min_seconds;
    let max = raw.jwks_refresh_max_seconds;
    if min == 0 {
        problems.push("tokens.jwks_refresh_min_seconds: must be at least 1".to_owned());
    }
    if max < min {
        problems.push(format!(
            "tokens.jwks_refresh_max_seconds: {max} is below `jwks_refresh_min_seconds` ({min})"
        ));
    }
    if raw.jwks_refetch_interval_seconds == 0 {
        problems.push("tokens.jwks_refetch_interval_seconds: must be at least 1, so that tokens with made-up `kid` values cannot flood the provider".to_owned());
    }
    // Keys must outlive the longest refresh interval, or they would expire between two
    // successful fetches while the provider is up.
    if raw.jwks_max_age_seconds < max {
        problems.push(format!(
            "tokens.jwks_max_age_seconds: {} is below `jwks_refresh_max_seconds` ({max}); keys would expire between refreshes",
            raw.jwks_max_age_seconds
        ));
    }
    if raw.jwks_timeout_ms == 0 {
        problems.push("tokens.jwks_timeout_ms: must be at least 1".to_owned());
    }
    TokensConfig {
        max_token_bytes: raw.max_token_bytes,
        cache_max_entries: raw.cache_max_entries,
        jwks: JwksFetchConfig {
            refresh_min: Duration::from_secs(min),
            refresh_max: Duration::from_secs(max),
            refetch_interval: Duration::from_secs(raw.jwks_refetch_interval_seconds),
            max_age: Duration::from_secs(raw.jwks_max_age_seconds),
            timeout: Duration::from_millis(raw.jwks_timeout_ms),
            ca_file: raw.jwks_ca_file.as_ref().map(|path| base.join(path)),
        },
    }
}

fn check_unique_issuers(issuers: &[IssuerConfig], problems: &mut Vec<String>) {
    for (index, issuer) in issuers.iter().enumerate() {
        let earlier = issuers.iter().take(index);
        if earlier.clone().any(|other| other.issuer == issuer.issuer) {
            problems.push(format!(
                "issuer `{}`: another issuer has the same `iss` value `{}`",
                issuer.name, issuer.issuer
            ));
        }
        if earlier.clone().any(|other| other.name == issuer.name) {
            problems.push(format!("issuer `{}`: the name is used twice", issuer.name));
        }
    }
}

/// Checks one principal mapping; `key` is its place in the file, such as `principal`.
fn validate_principal(raw: RawPrincipal, key: &str, problems: &mut Vec<String>) -> PrincipalConfig {
    check_entity_type(&raw.entity_type, &format!("{key}.type"), problems);
    let id_claim = claim_path(raw.id_claim, &format!("{key}.id_claim"), problems);
    let attributes = raw
        .attributes
        .into_iter()
        .map(|(name, path)| {
            let path = claim_path(path, &format!("{key}.attributes.{name}"), problems);
            (name, path)
        })
        .collect();
    let parents = raw
        .parents
        .into_iter()
        .enumerate()
        .map(|(index, parent)| {
            let key = format!("{key}.parents[{index}]");
            check_entity_type(&parent.entity_type, &format!("{key}.type"), problems);
            ParentConfig {
                claim: claim_path(parent.claim, &format!("{key}.claim"), problems),
                entity_type: parent.entity_type,
            }
        })
        .collect();
    PrincipalConfig {
        entity_type: raw.entity_type,
        id_claim,
        attributes,
        parents,
    }
}

fn check_entity_type(name: &str, key: &str, problems: &mut Vec<String>) {
    if name.parse::<cedar_policy::EntityTypeName>().is_err() {
        problems.push(format!(
            "{key}: `{name}` is not a Cedar entity type name such as `Crm::User`"
        ));
    }
}

fn claim_path(raw: RawClaimPath, key: &str, problems: &mut Vec<String>) -> ClaimPath {
    let keys = match raw {
        RawClaimPath::Dotted(text) => text.split('.').map(str::to_owned).collect::<Vec<_>>(),
        RawClaimPath::Keys(keys) => keys,
    };
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        problems.push(format!(
            "{key}: claim path has an empty part; write `a.b` or, for names with dots, `[\"https://example.com/roles\"]`"
        ));
    }
    ClaimPath(keys)
}

/// Algorithm names accepted in `issuer.algorithms`.
pub const SUPPORTED_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Maps an algorithm name to jsonwebtoken's type; only the exact JWA spelling is accepted.
pub fn parse_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm::*;
    let alg = match name {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    };
    Some(alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [bundle]
        policies = "policies"
        schema = "schema/s.cedarschema"
        entities = "entities"
        [decision]
        action_type = "App::Action"
        [principal]
        type = "App::User"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_toml(Path::new("/etc/cg/cedargate.toml"), MINIMAL);
        let config = config.unwrap_or_else(|err| unreachable!("{err}"));
        assert_eq!(config.leeway, Duration::from_secs(DEFAULT_LEEWAY_SECONDS));
        let principal = config.principal.as_ref().map(|p| &p.id_claim);
        assert_eq!(principal, Some(&ClaimPath(vec!["sub".into()])));
        assert_eq!(config.bundle.policies, Path::new("/etc/cg/policies"));
        assert_eq!(config.decision.on_forbid_error, OnForbidError::Deny);
    }

    #[test]
    fn every_problem_reported_at_once() {
        let text = format!(
            "{MINIMAL}\n[[issuer]]\nname = \"a\"\nissuer = \"\"\nalgorithms = [\"none\"]\nkeys = []\n"
        );
        let err = Config::from_toml(Path::new("c.toml"), &text).err();
        let Some(ConfigError::Invalid { problems, .. }) = err else {
            unreachable!("expected invalid config, got {err:?}");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`none` is not supported"))
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let text = format!("{MINIMAL}\n[server]\nlisten_port = 1\n");
        let err = Config::from_toml(Path::new("c.toml"), &text).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("unknown field `listen_port`"), "{message}");
        assert!(message.contains("line 12"), "{message}");
    }

    #[test]
    fn parse_error_position() {
        let text = format!("{MINIMAL}\n[server]\nlisten = 5\n");
        let err = Config::from_toml(Path::new("c.toml"), &text).err();
        let position = err.and_then(|err| err.position(&text));
        let line = text
            .lines()
            .position(|l| l.starts_with("listen"))
            .map(|i| i + 1);
        assert_eq!(position.map(|(line, _)| line), line);
        assert_eq!(position.map(|(_, column)| column), Some(10));
    }

    const NO_DEFAULT_PRINCIPAL: &str = r#"
        [bundle]
        policies = "policies"
        schema = "schema/s.cedarschema"
        entities = "entities"
        [decision]
        action_type = "App::Action"
        [[issuer]]
        name = "users"
        issuer = "https://users.test"
        algorithms = ["ES256"]
        keys = [{ pem = "users.pem" }]
    "#;

    #[test]
    fn issuer_needs_some_mapping() {
        let err = Config::from_toml(Path::new("c.toml"), NO_DEFAULT_PRINCIPAL).err();
        let Some(ConfigError::Invalid { problems, .. }) = err else {
            unreachable!("expected invalid config, got {err:?}");
        };
        assert_eq!(
            problems,
            [
                "issuer[0] (`users`): has no `principal` mapping, and there is no top-level `[principal]` to fall back on; add one of them"
            ]
        );
    }

    #[test]
    fn issuer_mapping_replaces_default() {
        let text = format!(
            "{NO_DEFAULT_PRINCIPAL}\n[issuer.principal]\ntype = \"App::Service\"\nid_claim = \"client_id\"\n"
        );
        let config = Config::from_toml(Path::new("c.toml"), &text);
        let config = config.unwrap_or_else(|err| unreachable!("{err}"));
        assert!(config.principal.is_none());
        let principal = config.issuers.first().and_then(|i| i.principal.as_ref());
        let principal = principal.unwrap_or_else(|| unreachable!("issuer has no mapping"));
        assert_eq!(principal.entity_type, "App::Service");
        assert_eq!(principal.id_claim, ClaimPath(vec!["client_id".into()]));
    }

    #[test]
    fn issuer_mapping_problems_name_issuer() {
        let text = format!(
            "{NO_DEFAULT_PRINCIPAL}\n[issuer.principal]\ntype = \"not a type\"\n[issuer.principal.attributes]\nteam = \"a..b\"\n"
        );
        let err = Config::from_toml(Path::new("c.toml"), &text).err();
        let Some(ConfigError::Invalid { problems, .. }) = err else {
            unreachable!("expected invalid config, got {err:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("issuer[0] (`users`).principal.type: "))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("issuer[0] (`users`).principal.attributes.team: "))
        );
    }

    #[test]
    fn claim_path_forms() {
        let mut problems = Vec::new();
        let dotted = claim_path(
            RawClaimPath::Dotted("realm_access.roles".into()),
            "k",
            &mut problems,
        );
        assert_eq!(dotted.0, ["realm_access", "roles"]);
        let keys = claim_path(
            RawClaimPath::Keys(vec!["https://example.com/roles".into()]),
            "k",
            &mut problems,
        );
        assert_eq!(keys.0, ["https://example.com/roles"]);
        assert!(problems.is_empty());
    }

    /// Returns the problems of `MINIMAL` plus `extra`, or an empty list when it is valid.
    fn problems_of(extra: &str) -> Vec<String> {
        match Config::from_toml(Path::new("c.toml"), &format!("{MINIMAL}\n{extra}")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(err) => vec![err.to_string()],
        }
    }

    fn issuer_with_key(key: &str) -> String {
        format!(
            "[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.test/realms/a/\"\n\
             algorithms = [\"RS256\"]\nkeys = [{key}]\n"
        )
    }

    #[test]
    fn remote_key_urls() {
        let accepted = [
            "{ jwks_url = \"https://idp.test/keys\" }",
            "{ jwks_url = \"http://127.0.0.1:8080/keys\" }",
            "{ jwks_url = \"http://[::1]:8080/keys\" }",
            "{ discovery = true }",
            "{ discovery = \"https://idp.test/.well-known/openid-configuration\" }",
        ];
        for key in accepted {
            assert_eq!(
                problems_of(&issuer_with_key(key)),
                Vec::<String>::new(),
                "{key}"
            );
        }
        let rejected = [
            ("{ jwks_url = \"http://idp.test/keys\" }", "plain HTTP"),
            (
                "{ jwks_url = \"http://localhost:8080/keys\" }",
                "plain HTTP",
            ),
            ("{ jwks_url = \"ftp://idp.test/keys\" }", "scheme `ftp`"),
            (
                "{ jwks_url = \"https://user:pw@idp.test/keys\" }",
                "credentials",
            ),
            ("{ jwks_url = \"keys.json\" }", "not a URL"),
            ("{ discovery = false }", "remove the entry"),
            (
                "{ jwks_url = \"https://idp.test/keys\", kid = \"a\" }",
                "remove `kid`",
            ),
            (
                "{ jwks_url = \"https://idp.test/keys\", pem = \"k.pem\" }",
                "exactly one",
            ),
        ];
        for (key, fragment) in rejected {
            let problems = problems_of(&issuer_with_key(key));
            assert_eq!(problems.len(), 1, "{key}: {problems:?}");
            assert!(problems[0].contains(fragment), "{key}: {problems:?}");
        }
    }

    #[test]
    fn discovery_url_from_issuer() {
        let text = format!("{MINIMAL}\n{}", issuer_with_key("{ discovery = true }"));
        let config = Config::from_toml(Path::new("c.toml"), &text)
            .unwrap_or_else(|err| unreachable!("{err}"));
        let url = match config
            .issuers
            .first()
            .and_then(|issuer| issuer.keys.first())
        {
            Some(KeySource::Discovery { url }) => url.to_string(),
            other => unreachable!("expected a discovery key, got {other:?}"),
        };
        // The issuer's trailing slash is not doubled.
        assert_eq!(
            url,
            "https://idp.test/realms/a/.well-known/openid-configuration"
        );
    }

    #[test]
    fn jwks_timing_bounds_checked() {
        let problems = problems_of(
            "[tokens]\njwks_refresh_min_seconds = 600\njwks_refresh_max_seconds = 60\n\
             jwks_max_age_seconds = 30\njwks_refetch_interval_seconds = 0\nmax_token_bytes = 0\n",
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        for fragment in [
            "jwks_refresh_max_seconds: 60 is below",
            "jwks_max_age_seconds: 30 is below",
            "jwks_refetch_interval_seconds: must be at least 1",
            "max_token_bytes: must be from 1",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "{fragment}: {problems:?}"
            );
        }
    }
}
