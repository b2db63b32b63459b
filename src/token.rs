//! Token stage: verifies a compact JWS (JWT) against the configured issuers and returns
//! its claims as JSON values.
//!
//! The header and the claims are read here, by hand, as JSON values, and jsonwebtoken
//! checks only the signature (`jsonwebtoken::crypto::verify`). That keeps every decision
//! about trust in this file. The algorithm must be one the issuer allows and must fit the
//! key type. Keys come only from configuration, never from `jku`, `x5u` or an embedded
//! `jwk`. `exp` may be fractional, and `aud` may be a string or an array.
//!
//! Keys come from files, read at start, or from remote key sets ([`remote`]) that are
//! fetched and refreshed while the server runs. Tokens that pass are kept in a bounded
//! verification cache ([`cache`]), so a repeated token skips the signature check.

mod cache;
mod remote;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::config::{Config, IssuerConfig, KeySource, parse_algorithm};

pub use cache::CacheStats;
pub use remote::{ClientError, KeyState, RemoteStatus};

use cache::{CachedToken, VerifyCache};
use remote::{Fetcher, Location, RemoteKeySet};

/// Default of `tokens.max_token_bytes`: tokens longer than this are rejected before any
/// decoding. Real access tokens are a few kilobytes at most; the limit keeps a hostile
/// header from costing memory.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Reason a token was rejected. Each kind has a stable reason code for API responses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token has {length} bytes, more than the limit of {limit} (`tokens.max_token_bytes`)")]
    TooLarge { length: usize, limit: usize },
    #[error("{0}")]
    DisallowedAlgorithm(String),
    #[error("{0}")]
    BadIssuer(String),
    #[error("{0}")]
    UnknownKey(String),
    #[error("signature does not verify with the issuer's key")]
    BadSignature,
    #[error("token expired at {}, leeway {leeway} s", describe_time(*.exp))]
    Expired { exp: f64, leeway: u64 },
    #[error("token is not valid before {}, leeway {leeway} s", describe_time(*.nbf))]
    NotYetValid { nbf: f64, leeway: u64 },
    #[error("token claims to be issued at {}, in the future (leeway {leeway} s)", describe_time(*.iat))]
    IssuedInFuture { iat: f64, leeway: u64 },
    #[error("{0}")]
    BadAudience(String),
    /// The issuer's remote keys are not available: not fetched yet, or expired while the
    /// provider was down. Not the token's fault, so the server responds with 503.
    #[error("{0}")]
    KeysUnavailable(String),
}

/// Writes a NumericDate as seconds with its RFC 3339 time, or as a short number when it
/// is out of the range of dates.
fn describe_time(seconds: f64) -> String {
    let whole = seconds.floor();
    if whole.abs() < 1e15
        && let Ok(time) = jiff::Timestamp::from_second(whole as i64)
    {
        return format!("{seconds} ({time})");
    }
    format!("{seconds:.3e}")
}

impl TokenError {
    /// Returns the reason code sent to callers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge { .. } => "token_too_large",
            Self::DisallowedAlgorithm(_) => "disallowed_algorithm",
            Self::BadIssuer(_) => "bad_issuer",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::BadAudience(_) => "bad_audience",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// A problem with an issuer's key material, found while loading it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to read key file `{path}`: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key file `{path}`: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("environment variable `{var}` with an HMAC secret is not set")]
    MissingEnv { var: String },
    #[error("issuer `{issuer}`: {message}")]
    Issuer { issuer: String, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The key types that the supported algorithms need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyType {
    /// Returns the key type that `alg` needs.
    pub fn for_algorithm(alg: Algorithm) -> Self {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Self::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Self::Rsa,
            Algorithm::ES256 => Self::EcP256,
            Algorithm::ES384 => Self::EcP384,
            Algorithm::EdDSA => Self::Ed25519,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hmac => "HMAC secret",
            Self::Rsa => "RSA",
            Self::EcP256 => "EC P-256",
            Self::EcP384 => "EC P-384",
            Self::Ed25519 => "Ed25519",
        }
    }
}

/// One verification key of an issuer.
struct Key {
    /// Identity of this key within the process; cached verifications name it.
    id: u64,
    /// SHA-256 of the key's JWK or PEM text, by which a refreshed key set is matched to
    /// the keys already loaded.
    fingerprint: String,
    kid: Option<String>,
    key_type: KeyType,
    /// The `alg` a JWK pins the key to, if it names one.
    alg: Option<Algorithm>,
    /// Length in bytes of an HMAC secret, or `None` for the other key types.
    secret_len: Option<usize>,
    decoding: DecodingKey,
}

/// Source of [`Key::id`].
static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

fn next_key_id() -> u64 {
    NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed)
}

struct Issuer {
    name: String,
    iss: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    /// Keys from files and environment variables, fixed at start.
    keys: Vec<Arc<Key>>,
    remote: Vec<Arc<RemoteKeySet>>,
}

/// The keys an issuer can verify with right now.
struct CurrentKeys {
    keys: Vec<Arc<Key>>,
    /// Reasons why remote sources of the issuer have no usable keys, one line each.
    unavailable: Vec<String>,
}

/// The configured issuers with their keys, the verification cache and the failure counts.
pub struct Verifier {
    issuers: Vec<Issuer>,
    leeway_seconds: u64,
    max_token_bytes: usize,
    cache: Arc<VerifyCache>,
    /// Present when an issuer has remote key sets.
    fetcher: Option<Arc<Fetcher>>,
    failures: Arc<FailureCounts>,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The configured name of the issuer that verified it.
    pub issuer_name: String,
    /// Position of that issuer in `Config::issuers`, for per-issuer settings.
    pub issuer_index: usize,
    pub claims: Arc<Map<String, Value>>,
}

/// Counts of rejected tokens by reason code, for the status route and metrics.
#[derive(Default)]
pub struct FailureCounts {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl FailureCounts {
    /// Counts one rejection with the reason `code`.
    pub fn record(&self, code: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                counts.insert(code.to_owned(), 1);
            }
        }
    }

    /// Returns the count of each reason code seen so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Interval of the log line that counts rejected tokens by reason.
const FAILURE_SUMMARY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs, at every interval with new rejections, how many tokens were rejected for each
/// reason since the last line. The decision log has every rejection, and this line shows
/// a flood of them at a glance.
async fn log_failure_summaries(
    failures: Arc<FailureCounts>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last = failures.snapshot();
    loop {
        tokio::select! {
            () = tokio::time::sleep(FAILURE_SUMMARY_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
        let current = failures.snapshot();
        let new: BTreeMap<&str, u64> = current
            .iter()
            .map(|(code, count)| {
                let before = last.get(code).copied().unwrap_or(0);
                (code.as_str(), count.saturating_sub(before))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        if !new.is_empty() {
            let total: u64 = new.values().sum();
            let by_reason = new
                .iter()
                .map(|(code, count)| format!("{code}={count}"))
                .collect::<Vec<_>>()
                .join(" ");
            tracing::info!(
                total,
                by_reason = %by_reason,
                interval_s = FAILURE_SUMMARY_INTERVAL.as_secs(),
                "tokens rejected since the last summary"
            );
        }
        last = current;
    }
}

/// Key status of one issuer, as the status route shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerStatus {
    pub name: String,
    pub issuer: String,
    /// Number of keys from files and environment variables.
    pub static_keys: usize,
    pub remote: Vec<RemoteStatus>,
}

impl VerifiedToken {
    /// Returns a string claim, for log fields such as `sub` and `jti`.
    pub fn string_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

impl Verifier {
    /// Loads the keys of every configured issuer.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        // Select the aws-lc-rs backend explicitly, so that another crate enabling a second
        // jsonwebtoken backend cannot leave the choice ambiguous. An error means a
        // provider is already installed, which is fine.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let issuers = config
            .issuers
            .iter()
            .map(load_issuer)
            .collect::<Result<Vec<_>, _>>()?;
        let fetcher = if issuers.iter().any(|issuer| !issuer.remote.is_empty()) {
            Some(Arc::new(Fetcher::new(&config.tokens.jwks)?))
        } else {
            None
        };
        Ok(Self {
            issuers,
            leeway_seconds: config.leeway.as_secs(),
            max_token_bytes: config.tokens.max_token_bytes,
            cache: Arc::new(VerifyCache::new(config.tokens.cache_max_entries)),
            fetcher,
            failures: Arc::default(),
        })
    }

    /// Verifies `token` at the current system time.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// Verifies `token` as if the time were `now` (unix seconds). A token verified before
    /// is returned from the cache while its times and its key are still valid.
    pub fn verify_at(&self, token: &str, now: f64) -> Result<VerifiedToken, TokenError> {
        // The size is checked before anything else, hashing included.
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge {
                length: token.len(),
                limit: self.max_token_bytes,
            });
        }
        let digest = self.cache.digest(token);
        if let Some(digest) = &digest
            && let Some(entry) = self.cache.get(digest, |entry| self.still_valid(entry, now))
        {
            return Ok(entry.token.clone());
        }

        let (verified, key_id, (exp, nbf, iat)) = self.verify_uncached(token, now)?;
        if let Some(digest) = digest {
            let entry = CachedToken {
                token: verified.clone(),
                key_id,
                exp,
                nbf,
                iat,
            };
            self.cache.insert(digest, entry);
        }
        Ok(verified)
    }

    /// Returns whether a cached verification is still valid at `now`: the same time checks as
    /// [`check_times`], and the key is still one the issuer verifies with.
    fn still_valid(&self, entry: &CachedToken, now: f64) -> bool {
        let leeway = self.leeway_seconds as f64;
        if now >= entry.exp + leeway
            || entry.nbf.is_some_and(|nbf| now + leeway < nbf)
            || entry
                .iat
                .is_some_and(|iat| issued_in_future(iat, now, leeway))
        {
            return false;
        }
        let Some(issuer) = self.issuers.get(entry.token.issuer_index) else {
            return false;
        };
        // The same keys as `current_keys`, searched without collecting them.
        if issuer.keys.iter().any(|key| key.id == entry.key_id) {
            return true;
        }
        issuer.remote.iter().any(|set| {
            set.usable_keys(self.max_age())
                .is_ok_and(|fetched| fetched.keys.iter().any(|key| key.id == entry.key_id))
        })
    }

    /// Returns the counts of rejected tokens by reason.
    pub fn failures(&self) -> &FailureCounts {
        &self.failures
    }

    /// Returns the counters of the verification cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Returns the key status of every issuer.
    pub fn issuer_status(&self) -> Vec<IssuerStatus> {
        let max_age = self.max_age();
        self.issuers
            .iter()
            .map(|issuer| IssuerStatus {
                name: issuer.name.clone(),
                issuer: issuer.iss.clone(),
                static_keys: issuer.keys.len(),
                remote: issuer
                    .remote
                    .iter()
                    .map(|set| set.status(max_age))
                    .collect(),
            })
            .collect()
    }

    /// Returns the issuers whose remote key sets have never been fetched; the server is
    /// not ready while there are any.
    pub fn issuers_waiting_for_keys(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter(|issuer| issuer.remote.iter().any(|set| !set.has_loaded()))
            .map(|issuer| issuer.name.clone())
            .collect()
    }

    /// Runs the verifier's background tasks until `shutdown` is cancelled: the refresh
    /// of every remote key set, whose first fetch starts at once, and the summary of
    /// rejected tokens in the log.
    pub fn run_background_tasks(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let failures = Arc::clone(&self.failures);
        let jobs: Vec<_> = self
            .remote_sets()
            .filter_map(|set| {
                let fetcher = Arc::clone(self.fetcher.as_ref()?);
                Some((Arc::clone(set), fetcher, Arc::clone(&self.cache)))
            })
            .collect();
        async move {
            let mut tasks: Vec<_> = jobs
                .into_iter()
                .map(|(set, fetcher, cache)| {
                    tokio::spawn(remote::refresh_loop(set, fetcher, cache, shutdown.clone()))
                })
                .collect();
            tasks.push(tokio::spawn(log_failure_summaries(failures, shutdown)));
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    /// Fetches every remote key set once, for one-off commands such as `cedargate
    /// authorize` that run no background refresh.
    pub async fn fetch_keys_once(&self) {
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        for set in self.remote_sets() {
            if let Some(outcome) = set.fetch(fetcher).await {
                self.cache.remove_keys(&outcome.removed_key_ids);
            }
        }
    }

    /// Makes sure the keys that `token` needs are loaded before it is verified: when its
    /// `kid` is not among its issuer's keys, or a remote set of that issuer has no usable
    /// keys, the issuer's remote sets are fetched again. Such a fetch happens at most once
    /// per `tokens.jwks_refetch_interval_seconds` for each set, so tokens with made-up
    /// `kid` values cannot flood the provider. Within that interval, a fetch already
    /// running is waited for. Returns at once for tokens of issuers without remote sets.
    pub async fn load_keys_for(&self, token: &str) {
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        let sets = self.sets_to_refetch(token);
        for set in sets {
            let settings = &fetcher.settings;
            if !set.has_loaded() {
                // The background task makes the first fetch and retries it; a token does
                // not use up the fetch that unknown keys may cause.
                let first = async {
                    set.wait_for_first_fetch().await;
                    set.wait_for_running_fetch().await;
                };
                let _ = tokio::time::timeout(settings.timeout, first).await;
            } else if set.take_demand_slot(settings.refetch_interval) {
                tracing::info!(
                    issuer = %set.issuer_name,
                    "a token needs a key this issuer's key set lacks; fetching the set again"
                );
                let fetch = remote::fetch_and_purge(
                    Arc::clone(&set),
                    Arc::clone(fetcher),
                    Arc::clone(&self.cache),
                );
                // The fetch runs as its own task, so that it completes and counts even
                // when this request is cancelled.
                let task = tokio::spawn(fetch);
                let _ = tokio::time::timeout(settings.timeout, task).await;
            } else {
                let _ = tokio::time::timeout(settings.timeout, set.wait_for_running_fetch()).await;
            }
        }
    }

    /// Returns the remote sets whose fetch might bring the key that `token` needs. The list
    /// is empty when the token is unreadable, because verification rejects it anyway, or
    /// when its key is at hand.
    fn sets_to_refetch(&self, token: &str) -> Vec<Arc<RemoteKeySet>> {
        if token.len() > self.max_token_bytes {
            return Vec::new();
        }
        // A cached token had its key at hand; its entry is checked again in `verify_at`.
        if self
            .cache
            .digest(token)
            .is_some_and(|digest| self.cache.contains(&digest))
        {
            return Vec::new();
        }

        // Only `kid` and `iss` are read, and nothing in them is trusted: they just pick
        // the sets to fetch.
        let mut parts = token.split('.');
        let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
            return Vec::new();
        };
        let Ok(header) = decode_json_object(header, "header") else {
            return Vec::new();
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let Ok(claims) = decode_json_object(payload, "payload") else {
            return Vec::new();
        };
        let Some(issuer) = claims
            .get("iss")
            .and_then(Value::as_str)
            .and_then(|iss| self.issuers.iter().find(|issuer| issuer.iss == iss))
        else {
            return Vec::new();
        };
        if issuer.remote.is_empty() {
            return Vec::new();
        }

        let current = self.current_keys(issuer);
        let needs_fetch = match kid {
            Some(kid) => !current
                .keys
                .iter()
                .any(|key| key.kid.as_deref() == Some(kid)),
            None => !current.unavailable.is_empty(),
        };
        if needs_fetch {
            issuer.remote.clone()
        } else {
            Vec::new()
        }
    }

    fn remote_sets(&self) -> impl Iterator<Item = &Arc<RemoteKeySet>> {
        self.issuers.iter().flat_map(|issuer| issuer.remote.iter())
    }

    fn max_age(&self) -> std::time::Duration {
        self.fetcher
            .as_ref()
            .map_or(std::time::Duration::MAX, |fetcher| fetcher.settings.max_age)
    }

    /// Collects the issuer's keys from files and from remote sets that are usable now.
    fn current_keys(&self, issuer: &Issuer) -> CurrentKeys {
        let mut keys = issuer.keys.clone();
        let mut unavailable = Vec::new();
        for set in &issuer.remote {
            match set.usable_keys(self.max_age()) {
                Ok(fetched) => keys.extend(fetched.keys.iter().cloned()),
                Err(reason) => unavailable.push(reason),
            }
        }
        CurrentKeys { keys, unavailable }
    }

    /// Verifies without the cache; returns the token, the id of the key that verified it,
    /// and its `exp`, `nbf` and `iat`.
    fn verify_uncached(
        &self,
        token: &str,
        now: f64,
    ) -> Result<(VerifiedToken, u64, TimeClaims), TokenError> {
        let parsed = parse_compact(token)?;

        // The issuer is chosen by `iss` before the signature is checked, but only to pick
        // which keys, algorithms and audiences apply. Nothing else is trusted yet.
        let iss = match parsed.claims.get("iss") {
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(TokenError::Malformed("`iss` is not a string".into())),
            None => return Err(TokenError::BadIssuer("token has no `iss` claim".into())),
        };
        let (issuer_index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, issuer)| &issuer.iss == iss)
            .ok_or_else(|| TokenError::BadIssuer(format!("issuer `{iss}` is not configured")))?;

        let alg = parse_algorithm(&parsed.alg)
            .filter(|alg| issuer.algorithms.contains(alg))
            .ok_or_else(|| {
                TokenError::DisallowedAlgorithm(format!(
                    "algorithm `{}` is not allowed for issuer `{}`",
                    parsed.alg, issuer.name
                ))
            })?;

        let current = self.current_keys(issuer);
        let candidates = select_keys(issuer, &current, parsed.kid.as_deref(), alg)?;
        let verified_by = candidates.iter().find(|key| {
            jsonwebtoken::crypto::verify(parsed.signature, parsed.signing_input, &key.decoding, alg)
                .unwrap_or(false)
        });
        let Some(key) = verified_by else {
            return Err(TokenError::BadSignature);
        };

        let times = check_times(&parsed.claims, now, self.leeway_seconds)?;
        check_audience(&parsed.claims, &issuer.audiences)?;
        let verified = VerifiedToken {
            issuer_name: issuer.name.clone(),
            issuer_index,
            claims: Arc::new(parsed.claims),
        };
        Ok((verified, key.id, times))
    }
}

/// Returns the current time in unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct ParsedToken<'a> {
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    signing_input: &'a [u8],
    signature: &'a str,
}

/// Splits and decodes a compact JWS without trusting anything in it. The caller has
/// checked its length.
fn parse_compact(token: &str) -> Result<ParsedToken<'_>, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature] = parts.as_slice() else {
        let message = if parts.len() == 5 {
            "encrypted tokens (JWE) are not supported".to_owned()
        } else {
            format!("expected three dot-separated parts, found {}", parts.len())
        };
        return Err(TokenError::Malformed(message));
    };
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .as_bytes()
        .get(..signing_input_len)
        .unwrap_or_default();

    let header = decode_json_object(header_b64, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(TokenError::Malformed("header `alg` is not a string".into())),
        None => return Err(TokenError::Malformed("header has no `alg`".into())),
    };
    if parse_algorithm(&alg).is_none() {
        // Covers `none` in every spelling, as well as algorithms cedargate does not implement.
        return Err(TokenError::DisallowedAlgorithm(format!(
            "algorithm `{alg}` is not supported"
        )));
    }
    // RFC 7515 section 4.1.11: a recipient that does not understand a listed critical
    // extension must reject the token, and cedargate understands none.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "header lists critical extensions (`crit`), which are not supported".into(),
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("header `kid` is not a string".into())),
    };
    if signature.is_empty() {
        return Err(TokenError::Malformed("signature is empty".into()));
    }
    // Checked here so that a signature that is not base64url is reported as malformed
    // rather than as a signature that does not verify.
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|err| TokenError::Malformed(format!("signature is not base64url: {err}")))?;
    let claims = decode_json_object(payload_b64, "payload")?;

    Ok(ParsedToken {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn decode_json_object(part: &str, name: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|err| TokenError::Malformed(format!("{name} is not base64url: {err}")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed(format!(
            "{name} is not a JSON object"
        ))),
        Err(err) => Err(TokenError::Malformed(format!("{name} is not JSON: {err}"))),
    }
}

/// Picks the keys a token may be verified with: the one its `kid` names, or, without a
/// `kid`, every key of the issuer that fits the algorithm.
///
/// When nothing fits and a remote source of the issuer has no usable keys, the error is
/// [`TokenError::KeysUnavailable`], because the missing keys may be the ones needed.
fn select_keys<'a>(
    issuer: &Issuer,
    current: &'a CurrentKeys,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<&'a Arc<Key>>, TokenError> {
    let needed = KeyType::for_algorithm(alg);
    let keys_unavailable = || {
        (!current.unavailable.is_empty())
            .then(|| TokenError::KeysUnavailable(current.unavailable.join("; ")))
    };
    let Some(kid) = kid else {
        let fitting: Vec<&Arc<Key>> = current
            .keys
            .iter()
            .filter(|key| key.key_type == needed && key.alg.is_none_or(|a| a == alg))
            .collect();
        if fitting.is_empty() {
            if let Some(err) = keys_unavailable() {
                return Err(err);
            }
            return Err(TokenError::UnknownKey(format!(
                "token has no `kid` and issuer `{}` has no {} key for `{alg:?}`",
                issuer.name,
                needed.name()
            )));
        }
        return Ok(fitting);
    };

    let named: Vec<&Arc<Key>> = current
        .keys
        .iter()
        .filter(|key| key.kid.as_deref() == Some(kid))
        .collect();
    if named.is_empty() {
        if let Some(err) = keys_unavailable() {
            return Err(err);
        }
        return Err(TokenError::UnknownKey(format!(
            "key `{}` is not among the keys of issuer `{}`",
            printable(kid),
            issuer.name
        )));
    }
    let fitting: Vec<&Arc<Key>> = named
        .iter()
        .copied()
        .filter(|key| key.key_type == needed && key.alg.is_none_or(|a| a == alg))
        .collect();
    if fitting.is_empty() {
        let types: Vec<&str> = named.iter().map(|key| key.key_type.name()).collect();
        return Err(TokenError::DisallowedAlgorithm(format!(
            "algorithm `{alg:?}` does not fit key `{}` ({})",
            printable(kid),
            types.join(", ")
        )));
    }
    Ok(fitting)
}

/// Writes a value from the token for a message: at most 64 characters, with control
/// characters escaped, so a hostile `kid` cannot flood or forge log lines.
fn printable(text: &str) -> String {
    let mut shown: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().count() > 64 {
        shown.push_str("...");
    }
    shown
}

/// A token's `exp`, `nbf` and `iat`.
type TimeClaims = (f64, Option<f64>, Option<f64>);

/// Returns whether `iat` lies in the future. RFC 7519 leaves `iat` to the application;
/// a token issued in the future comes from a wrong clock or a forger. It is compared with
/// the later of `now` and the system clock, so that a decision made for a past instant
/// (`cedargate authorize --at`) still accepts a token issued since.
fn issued_in_future(iat: f64, now: f64, leeway: f64) -> bool {
    now.max(unix_now()) + leeway < iat
}

/// Checks `exp`, `nbf` and `iat` at `now`; returns them.
fn check_times(
    claims: &Map<String, Value>,
    now: f64,
    leeway: u64,
) -> Result<TimeClaims, TokenError> {
    let leeway_f = leeway as f64;
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| {
        TokenError::Malformed("token has no `exp` claim, which is required".into())
    })?;
    // RFC 7519 section 4.1.4: the current time must be before `exp`, so the instant
    // `exp + leeway` itself is already expired.
    if now >= exp + leeway_f {
        return Err(TokenError::Expired { exp, leeway });
    }
    let nbf = numeric_date(claims, "nbf")?;
    if let Some(nbf) = nbf
        && now + leeway_f < nbf
    {
        return Err(TokenError::NotYetValid { nbf, leeway });
    }
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat
        && issued_in_future(iat, now, leeway_f)
    {
        return Err(TokenError::IssuedInFuture { iat, leeway });
    }
    Ok((exp, nbf, iat))
}

/// Reads a NumericDate claim (RFC 7519 section 2): seconds since the epoch, possibly
/// fractional.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|value| value.is_finite())
            .map(Some)
            .ok_or_else(|| TokenError::Malformed(format!("`{name}` is not a finite number"))),
        Some(_) => Err(TokenError::Malformed(format!(
            "`{name}` is not a number of seconds"
        ))),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let token_audiences: Vec<&str> = match claims.get("aud") {
        None => {
            return Err(TokenError::BadAudience(
                "token has no `aud` claim, and this issuer requires one".into(),
            ));
        }
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => {
            let strings: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if strings.len() != items.len() {
                return Err(TokenError::Malformed(
                    "`aud` array contains a value that is not a string".into(),
                ));
            }
            strings
        }
        Some(_) => {
            return Err(TokenError::Malformed(
                "`aud` is neither a string nor an array of strings".into(),
            ));
        }
    };
    if token_audiences
        .iter()
        .any(|aud| accepted.iter().any(|a| a == aud))
    {
        Ok(())
    } else {
        Err(TokenError::BadAudience(format!(
            "token audience {token_audiences:?} contains none of the accepted audiences {accepted:?}"
        )))
    }
}

fn load_issuer(config: &IssuerConfig) -> Result<Issuer, KeyError> {
    let mut keys = Vec::new();
    let mut remote = Vec::new();
    for source in &config.keys {
        let location = match source {
            KeySource::JwksUrl { url } => Some(Location::Jwks(url.clone())),
            KeySource::Discovery { url } => Some(Location::Discovery(url.clone())),
            _ => None,
        };
        if let Some(location) = location {
            let set = RemoteKeySet::new(&config.name, &config.issuer, location);
            remote.push(Arc::new(set));
            continue;
        }
        let loaded = load_source(source, &config.name)?;
        for key in &loaded {
            check_secret_len(key, source, config)?;
        }
        keys.extend(loaded);
    }

    // A key that no allowed algorithm can use is a configuration mistake worth stopping for.
    for key in &keys {
        let usable = config.algorithms.iter().any(|alg| {
            KeyType::for_algorithm(*alg) == key.key_type && key.alg.is_none_or(|a| a == *alg)
        });
        if !usable {
            return Err(KeyError::Issuer {
                issuer: config.name.clone(),
                message: format!(
                    "key `{}` ({}) fits none of the allowed algorithms {:?}",
                    key.kid.as_deref().unwrap_or("without kid"),
                    key.key_type.name(),
                    config.algorithms
                ),
            });
        }
    }
    Ok(Issuer {
        name: config.name.clone(),
        iss: config.issuer.clone(),
        audiences: config.audiences.clone(),
        algorithms: config.algorithms.clone(),
        keys: keys.into_iter().map(Arc::new).collect(),
        remote,
    })
}

/// Loads the keys of one configured key source of the issuer named `issuer`.
fn load_source(source: &KeySource, issuer: &str) -> Result<Vec<Key>, KeyError> {
    match source {
        KeySource::Pem { path, kid } => Ok(vec![load_pem(path, kid.clone())?]),
        KeySource::Jwks { path } => {
            let loaded = load_jwks_file(path)?;
            if loaded.is_empty() {
                return Err(KeyError::Invalid {
                    path: path.clone(),
                    message: "the set contains no key that can verify signatures (RSA, EC P-256/P-384, Ed25519 or HMAC, not `use: enc`)".into(),
                });
            }
            Ok(loaded)
        }
        KeySource::SecretFile { path, kid } => {
            let text = read_file(path)?;
            let secret = text.trim().as_bytes().to_vec();
            let key = hmac_key(secret, kid.clone()).map_err(|message| KeyError::Invalid {
                path: path.clone(),
                message,
            })?;
            Ok(vec![key])
        }
        KeySource::SecretEnv { var, kid } => {
            let value =
                std::env::var(var).map_err(|_| KeyError::MissingEnv { var: var.clone() })?;
            // Surrounding whitespace is not part of the secret, as for `secret_file`.
            let key =
                hmac_key(value.trim().as_bytes().to_vec(), kid.clone()).map_err(|message| {
                    KeyError::Issuer {
                        issuer: issuer.to_owned(),
                        message: format!("secret in `{var}`: {message}"),
                    }
                })?;
            Ok(vec![key])
        }
        KeySource::JwksUrl { url } | KeySource::Discovery { url } => Err(KeyError::Issuer {
            issuer: issuer.to_owned(),
            message: format!("`{url}` is a remote key set, which is fetched, not read"),
        }),
    }
}

/// Checks that an HMAC key is at least as long as the hash output of every HMAC algorithm
/// it may be used with, as RFC 7518 section 3.2 requires. That is its own `alg` when a JWK
/// pins one, or else each HMAC algorithm the issuer allows.
fn check_secret_len(key: &Key, source: &KeySource, config: &IssuerConfig) -> Result<(), KeyError> {
    let Some(secret_len) = key.secret_len else {
        return Ok(());
    };
    // A key pinned to an algorithm the issuer does not allow is reported as unusable later.
    let strongest = config
        .algorithms
        .iter()
        .filter(|alg| key.alg.is_none_or(|pinned| pinned == **alg))
        .filter_map(|alg| hmac_hash_len(*alg).map(|len| (*alg, len)))
        .max_by_key(|(_, len)| *len);
    let Some((alg, needed)) = strongest else {
        return Ok(());
    };
    if secret_len >= needed {
        return Ok(());
    }

    let kid = key
        .kid
        .as_deref()
        .map_or("without kid".to_owned(), |kid| format!("`{kid}`"));
    let origin = match source {
        KeySource::SecretEnv { var, .. } => format!("environment variable `{var}`"),
        KeySource::Pem { path, .. }
        | KeySource::Jwks { path }
        | KeySource::SecretFile { path, .. } => format!("`{}`", path.display()),
        KeySource::JwksUrl { url } | KeySource::Discovery { url } => format!("`{url}`"),
    };
    let fix = if key.alg.is_some() {
        "use a longer secret or another `alg` for this key".to_owned()
    } else {
        format!("use a longer secret, or remove {alg:?} from `algorithms`")
    };
    Err(KeyError::Issuer {
        issuer: config.name.clone(),
        message: format!(
            "HMAC key {kid} in {origin} has {secret_len} bytes, but {alg:?} needs at least {needed} (the hash output length); {fix}"
        ),
    })
}

/// Returns the hash output length in bytes of an HMAC algorithm, or `None` for the others.
fn hmac_hash_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::HS256 => Some(32),
        Algorithm::HS384 => Some(48),
        Algorithm::HS512 => Some(64),
        _ => None,
    }
}

fn read_file(path: &Path) -> Result<String, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    // A FIFO or device would block or never end; key files are regular files.
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            message: "not a regular file".into(),
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// RFC 7518 section 3.2 requires an HMAC key at least as long as the hash output; 32 bytes
/// is the minimum for HS256, the weakest supported. Keys used with HS384 or HS512 need more,
/// which [`check_secret_len`] enforces once the issuer's algorithms are known.
const MIN_HMAC_SECRET_BYTES: usize = 32;

fn hmac_key(secret: Vec<u8>, kid: Option<String>) -> Result<Key, String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "HMAC secret has {} bytes; use at least {MIN_HMAC_SECRET_BYTES}",
            secret.len()
        ));
    }
    Ok(Key {
        id: next_key_id(),
        fingerprint: fingerprint(&secret),
        kid,
        key_type: KeyType::Hmac,
        alg: None,
        secret_len: Some(secret.len()),
        decoding: DecodingKey::from_secret(&secret),
    })
}

// DER encodings of the named-curve object identifiers (RFC 5480 section 2.1.1.1).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn load_pem(path: &Path, kid: Option<String>) -> Result<Key, KeyError> {
    let text = read_file(path)?;
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    if text.contains("PRIVATE KEY") {
        return Err(invalid(
            "this is a private key; configure the public key (`openssl pkey -pubout`)".into(),
        ));
    }

    let (key_type, decoding) = if let Ok(key) = DecodingKey::from_rsa_pem(text.as_bytes()) {
        (KeyType::Rsa, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(text.as_bytes()) {
        (KeyType::Ed25519, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
        let der = pem_body(&text).map_err(invalid)?;
        let curve = if contains(&der, OID_P256) {
            KeyType::EcP256
        } else if contains(&der, OID_P384) {
            KeyType::EcP384
        } else {
            return Err(invalid(
                "EC key is on a curve other than P-256 and P-384, which are the only ones supported".into(),
            ));
        };
        (curve, key)
    } else {
        return Err(invalid(
            "not a PEM public key (RSA, EC P-256/P-384 or Ed25519 `PUBLIC KEY` block)".into(),
        ));
    };
    Ok(Key {
        id: next_key_id(),
        fingerprint: fingerprint(text.as_bytes()),
        kid,
        key_type,
        alg: None,
        secret_len: None,
        decoding,
    })
}

fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|err| format!("PEM body is not base64: {err}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn load_jwks_file(path: &Path) -> Result<Vec<Key>, KeyError> {
    let text = read_file(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|err| KeyError::Invalid {
        path: path.to_owned(),
        message: format!("not JSON: {err}"),
    })?;
    parse_jwks(&value).map_err(|message| KeyError::Invalid {
        path: path.to_owned(),
        message,
    })
}

/// Reads the signature-verification keys of a JWK Set (RFC 7517 section 5). Keys meant
/// for encryption (`"use": "enc"`) are left out, and so are keys of types cedargate
/// cannot verify with (such as P-521), so that a provider's full set loads.
fn parse_jwks(value: &Value) -> Result<Vec<Key>, String> {
    let Some(keys) = value.get("keys").and_then(Value::as_array) else {
        return Err("expected an object with a `keys` array".into());
    };
    let mut loaded = Vec::new();
    for (index, jwk) in keys.iter().enumerate() {
        if jwk.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        match parse_jwk(jwk) {
            Ok(Some(key)) => loaded.push(key),
            Ok(None) => {
                tracing::warn!(
                    index,
                    "skipping a JWK of a type that cannot verify signatures here"
                );
            }
            Err(message) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("none");
                return Err(format!("keys[{index}] (kid `{kid}`): {message}"));
            }
        }
    }
    Ok(loaded)
}

fn parse_jwk(jwk: &Value) -> Result<Option<Key>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let required =
        |name: &str| field(name).ok_or_else(|| format!("missing string member `{name}`"));
    let kid = field("kid").map(str::to_owned);
    let alg = match field("alg") {
        None => None,
        Some(name) => match parse_algorithm(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let bad = |err: jsonwebtoken::errors::Error| format!("invalid key material: {err}");

    let (key_type, decoding) = match required("kty")? {
        "RSA" => (
            KeyType::Rsa,
            DecodingKey::from_rsa_components(required("n")?, required("e")?).map_err(bad)?,
        ),
        "EC" => {
            let (key_type, size) = match required("crv")? {
                "P-256" => (KeyType::EcP256, 32),
                "P-384" => (KeyType::EcP384, 48),
                _ => return Ok(None),
            };
            let (x, y) = (required("x")?, required("y")?);
            for (name, coordinate) in [("x", x), ("y", y)] {
                let length = URL_SAFE_NO_PAD
                    .decode(coordinate)
                    .map_err(|err| format!("`{name}` is not base64url: {err}"))?
                    .len();
                if length != size {
                    return Err(format!(
                        "`{name}` has {length} bytes; the curve needs {size}"
                    ));
                }
            }
            (
                key_type,
                DecodingKey::from_ec_components(x, y).map_err(bad)?,
            )
        }
        "OKP" => {
            if required("crv")? != "Ed25519" {
                return Ok(None);
            }
            (
                KeyType::Ed25519,
                DecodingKey::from_ed_components(required("x")?).map_err(bad)?,
            )
        }
        "oct" => {
            let secret = URL_SAFE_NO_PAD
                .decode(required("k")?)
                .map_err(|err| format!("`k` is not base64url: {err}"))?;
            let mut key = hmac_key(secret, kid.clone())?;
            if let Some(alg) = alg
                && KeyType::for_algorithm(alg) != KeyType::Hmac
            {
                return Err(format!("`alg` {alg:?} does not fit an HMAC secret"));
            }
            key.alg = alg;
            return Ok(Some(key));
        }
        _ => return Ok(None),
    };
    if let Some(alg) = alg
        && KeyType::for_algorithm(alg) != key_type
    {
        return Err(format!(
            "`alg` {alg:?} does not fit this {} key",
            key_type.name()
        ));
    }
    Ok(Some(Key {
        id: next_key_id(),
        fingerprint: fingerprint(jwk.to_string().as_bytes()),
        kid,
        key_type,
        alg,
        secret_len: None,
        decoding,
    }))
}

/// Returns the SHA-256 of a key's text in hex. A digest rather than the text itself, so
/// that no secret is kept in a second place.
fn fingerprint(material: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(material)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
