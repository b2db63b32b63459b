//! Remote JWK Sets: keys fetched over HTTP from a `jwks_url` or found through OpenID
//! Connect discovery, cached and refreshed.
//!
//! Each remote source keeps its last good key set. A background task refreshes it after
//! the interval that the provider's `Cache-Control: max-age` sets, clamped to the
//! configured bounds, and retries failures with a growing delay. A token whose `kid` is
//! unknown asks for one extra fetch, at most once per `jwks_refetch_interval_seconds` per
//! source. Keys not confirmed by a successful fetch within `jwks_max_age_seconds` stop
//! verifying.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::cache::VerifyCache;
use super::{Key, parse_jwk};
use crate::config::{JwksFetchConfig, is_loopback_host, parse_key_url};

/// Largest discovery document or key set read; real ones are a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// First delay before retrying a failed fetch; it doubles up to `jwks_refresh_min_seconds`.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Redirects followed per request; each target must pass the same HTTPS rule.
const MAX_REDIRECTS: usize = 3;

/// A problem building the HTTP client for remote key sets.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to read `tokens.jwks_ca_file` `{path}`: {message}")]
    CaFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("failed to set up the HTTP client for key sets: {0}")]
    Build(String),
}

/// The HTTP clients and settings shared by every remote source.
pub(super) struct Fetcher {
    /// Client for providers on other hosts; it honours the `HTTPS_PROXY` environment.
    remote: reqwest::Client,
    /// Client for loopback addresses, which never goes through a proxy.
    loopback: reqwest::Client,
    pub(super) settings: JwksFetchConfig,
}

impl Fetcher {
    pub(super) fn new(settings: &JwksFetchConfig) -> Result<Self, ClientError> {
        let tls = tls_config(settings.ca_file.as_deref())?;
        let build = |loopback: bool| {
            let mut builder = reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
                .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
                .redirect(redirect_policy());
            if loopback {
                builder = builder.no_proxy();
            }
            builder
                .build()
                .map_err(|err| ClientError::Build(error_chain(&err)))
        };
        Ok(Self {
            remote: build(false)?,
            loopback: build(true)?,
            settings: settings.clone(),
        })
    }

    /// Fetches `url`; returns the body and the freshness lifetime the response states.
    async fn get(&self, url: &Url) -> Result<(Vec<u8>, Option<Duration>), String> {
        let client = if is_loopback_host(url) {
            &self.loopback
        } else {
            &self.remote
        };
        let mut response = client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|err| error_chain(&err))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the provider answered HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!(
                "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        let lifetime = freshness_lifetime(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| error_chain(&err))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, lifetime))
    }
}

/// Builds the TLS settings: the Mozilla root certificates, plus those of `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |message: String| ClientError::CaFile {
            path: path.to_owned(),
            message,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|err| ca_error(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| ca_error(err.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error("the file contains no `CERTIFICATE` block".into()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|err| ca_error(err.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Build(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Follows a few redirects, each only to a URL that a key source could name itself.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match parse_key_url(attempt.url().as_str()) {
            Ok(_) => attempt.follow(),
            Err(message) => {
                let error = format!("redirect target `{}` {message}", attempt.url());
                attempt.error(error)
            }
        }
    })
}

/// Writes an error with its sources, which hold the useful part of HTTP client errors.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Reads how long a response stays fresh (RFC 9111 section 4.2.1): `max-age` less the
/// `Age` a cache in between reports. `no-cache` and `no-store` give zero. `None` means the
/// response states no lifetime.
fn freshness_lifetime(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for directive in text.split(',') {
            let directive = directive.trim();
            let (name, argument) = directive
                .split_once('=')
                .map_or((directive, None), |(name, argument)| {
                    (name.trim(), Some(argument.trim().trim_matches('"')))
                });
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = argument.and_then(|a| a.parse::<u64>().ok())
            {
                max_age = Some(seconds);
            }
        }
    }
    let age = headers
        .get(reqwest::header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map(|seconds| Duration::from_secs(seconds.saturating_sub(age)))
}

/// Location of a remote source's keys.
#[derive(Debug, Clone)]
pub(super) enum Location {
    Jwks(Url),
    Discovery(Url),
}

/// The keys of the last successful fetch.
#[derive(Default)]
pub(super) struct FetchedKeys {
    pub(super) keys: Vec<Arc<Key>>,
    /// When a fetch last returned them; `None` before the first success.
    confirmed: Option<Instant>,
}

/// Counters and the last outcome of a source's fetches, for the status route.
#[derive(Default)]
struct FetchState {
    succeeded: u64,
    failed: u64,
    last_success_at: Option<jiff::Timestamp>,
    last_error: Option<String>,
    last_error_at: Option<jiff::Timestamp>,
    consecutive_failures: u32,
    /// When the background task fetches next.
    next_due: Option<Instant>,
    /// When the last fetch ended, successful or not.
    last_attempt_end: Option<Instant>,
    /// When a token with an unknown `kid` last caused a fetch.
    last_demand: Option<Instant>,
    refresh_interval: Option<Duration>,
    /// The key set URL, given or read from the discovery document.
    jwks_url: Option<Url>,
    /// Keys of the last fetched set that were left out, with the reason.
    skipped: Vec<String>,
}

/// One remote key source of an issuer.
pub(super) struct RemoteKeySet {
    pub(super) issuer_name: String,
    iss: String,
    location: Location,
    fetched: ArcSwap<FetchedKeys>,
    state: Mutex<FetchState>,
    /// Held while a fetch runs, so fetches of one source never overlap.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Number of fetches that have ended, successful or not.
    attempts: tokio::sync::watch::Sender<u64>,
}

/// Changes a fetch made, so that the verification cache can drop entries of removed keys.
pub(super) struct FetchOutcome {
    pub(super) removed_key_ids: Vec<u64>,
}

/// Health of a remote source's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// No fetch has succeeded yet; tokens of this source cannot verify.
    Pending,
    /// The last fetch succeeded.
    Fresh,
    /// The last fetch failed, and the keys of an earlier one still serve.
    Stale,
    /// No fetch succeeded within `jwks_max_age_seconds`; the keys no longer verify.
    Expired,
}

/// Status of one remote source, as the status route shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteStatus {
    /// `jwks_url` or `discovery`.
    pub source: &'static str,
    pub url: String,
    /// The key set URL, given or found through discovery.
    pub jwks_url: Option<String>,
    pub state: KeyState,
    /// `kid` values of the keys in use (keys without one are listed as `null`).
    pub kids: Vec<Option<String>>,
    pub fetched_at: Option<String>,
    pub age_seconds: Option<u64>,
    pub refresh_interval_seconds: Option<u64>,
    pub next_fetch_in_seconds: Option<u64>,
    pub fetches_succeeded: u64,
    pub fetches_failed: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Keys of the last set that were left out, with the reason.
    pub skipped_keys: Vec<String>,
}

impl RemoteKeySet {
    pub(super) fn new(issuer_name: &str, iss: &str, location: Location) -> Self {
        Self {
            issuer_name: issuer_name.to_owned(),
            iss: iss.to_owned(),
            location,
            fetched: ArcSwap::from_pointee(FetchedKeys::default()),
            state: Mutex::new(FetchState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            attempts: tokio::sync::watch::Sender::new(0),
        }
    }

    fn url(&self) -> &Url {
        match &self.location {
            Location::Jwks(url) | Location::Discovery(url) => url,
        }
    }

    /// Returns the keys while they are younger than `max_age`, else `Err` with the reason.
    pub(super) fn usable_keys(&self, max_age: Duration) -> Result<Arc<FetchedKeys>, String> {
        let fetched = self.fetched.load_full();
        match fetched.confirmed {
            None => Err(format!(
                "the key set of issuer `{}` at `{}` has not been fetched yet",
                self.issuer_name,
                self.url()
            )),
            Some(confirmed) if confirmed.elapsed() > max_age => Err(format!(
                "the key set of issuer `{}` at `{}` was last fetched {} s ago, longer than `tokens.jwks_max_age_seconds` ({} s)",
                self.issuer_name,
                self.url(),
                confirmed.elapsed().as_secs(),
                max_age.as_secs()
            )),
            Some(_) => Ok(fetched),
        }
    }

    /// Returns whether a fetch has ever succeeded.
    pub(super) fn has_loaded(&self) -> bool {
        self.fetched.load().confirmed.is_some()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // A panic while the lock was held cannot leave the counters inconsistent in a way
        // that matters, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns when the background task should fetch next; now, before the first fetch.
    pub(super) fn next_due(&self) -> Instant {
        self.lock_state().next_due.unwrap_or_else(Instant::now)
    }

    /// Claims the one fetch that tokens with unknown keys may cause per `interval`.
    pub(super) fn take_demand_slot(&self, interval: Duration) -> bool {
        let mut state = self.lock_state();
        if state
            .last_demand
            .is_some_and(|last| last.elapsed() < interval)
        {
            return false;
        }
        state.last_demand = Some(Instant::now());
        true
    }

    /// Waits until a fetch that is running now has ended.
    pub(super) async fn wait_for_running_fetch(&self) {
        drop(self.fetch_lock.lock().await);
    }

    /// Waits until the first fetch has ended, successful or not.
    pub(super) async fn wait_for_first_fetch(&self) {
        let mut attempts = self.attempts.subscribe();
        let _ = attempts.wait_for(|count| *count > 0).await;
    }

    /// Fetches the key set once and installs it, or records the failure. Returns what
    /// changed, or `None` when the keys stayed as they were.
    pub(super) async fn fetch(&self, fetcher: &Fetcher) -> Option<FetchOutcome> {
        let requested = Instant::now();
        let _running = self.fetch_lock.lock().await;
        // A fetch that ended while this one waited is as recent as this one would be.
        if self
            .lock_state()
            .last_attempt_end
            .is_some_and(|end| end >= requested)
        {
            return None;
        }

        let timeout = fetcher.settings.timeout;
        let result = match tokio::time::timeout(timeout, self.download(fetcher)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        };
        let outcome = match result {
            Ok(download) => Some(self.install(download, &fetcher.settings)),
            Err(message) => {
                self.record_failure(message, &fetcher.settings);
                None
            }
        };
        self.attempts.send_modify(|count| *count += 1);
        outcome
    }

    async fn download(&self, fetcher: &Fetcher) -> Result<Download, String> {
        let jwks_url = match &self.location {
            Location::Jwks(url) => url.clone(),
            Location::Discovery(url) => {
                let (body, _) = fetcher
                    .get(url)
                    .await
                    .map_err(|err| format!("discovery document `{url}`: {err}"))?;
                jwks_uri_from_discovery(&body, &self.iss)
                    .map_err(|err| format!("discovery document `{url}`: {err}"))?
            }
        };
        let (body, lifetime) = fetcher
            .get(&jwks_url)
            .await
            .map_err(|err| format!("key set `{jwks_url}`: {err}"))?;
        let (keys, skipped) =
            parse_remote_jwks(&body).map_err(|err| format!("key set `{jwks_url}`: {err}"))?;
        Ok(Download {
            jwks_url,
            keys,
            skipped,
            lifetime,
        })
    }

    fn install(&self, download: Download, settings: &JwksFetchConfig) -> FetchOutcome {
        // A key that comes back unchanged keeps its identity, so cached verifications made
        // with it stay valid across refreshes.
        let old = self.fetched.load_full();
        let keys: Vec<Arc<Key>> = download
            .keys
            .into_iter()
            .map(|key| {
                old.keys
                    .iter()
                    .find(|old_key| old_key.fingerprint == key.fingerprint)
                    .map_or_else(|| Arc::new(key), Arc::clone)
            })
            .collect();
        let removed: Vec<&Arc<Key>> = old
            .keys
            .iter()
            .filter(|old_key| !keys.iter().any(|key| key.id == old_key.id))
            .collect();
        let added = keys
            .iter()
            .filter(|key| !old.keys.iter().any(|old_key| old_key.id == key.id))
            .count();
        let removed_key_ids = removed.iter().map(|key| key.id).collect();
        let interval = download
            .lifetime
            .unwrap_or(settings.refresh_min)
            .clamp(settings.refresh_min, settings.refresh_max);

        if keys.is_empty() {
            tracing::warn!(
                issuer = %self.issuer_name,
                url = %download.jwks_url,
                "the fetched key set has no key that can verify signatures; tokens of this source are rejected"
            );
        }
        if added > 0 || !removed.is_empty() || old.confirmed.is_none() {
            tracing::info!(
                issuer = %self.issuer_name,
                url = %download.jwks_url,
                keys = keys.len(),
                added,
                removed = removed.len(),
                refresh_in_s = interval.as_secs(),
                "fetched key set"
            );
        } else {
            tracing::debug!(issuer = %self.issuer_name, url = %download.jwks_url, "key set unchanged");
        }

        self.fetched.store(Arc::new(FetchedKeys {
            keys,
            confirmed: Some(Instant::now()),
        }));
        let mut state = self.lock_state();
        state.succeeded += 1;
        state.last_success_at = Some(jiff::Timestamp::now());
        state.last_error = None;
        state.last_error_at = None;
        state.consecutive_failures = 0;
        state.next_due = Some(Instant::now() + interval);
        state.last_attempt_end = Some(Instant::now());
        state.refresh_interval = Some(interval);
        state.jwks_url = Some(download.jwks_url);
        state.skipped = download.skipped;
        FetchOutcome { removed_key_ids }
    }

    fn record_failure(&self, message: String, settings: &JwksFetchConfig) {
        let mut state = self.lock_state();
        state.failed += 1;
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let doublings = state.consecutive_failures.saturating_sub(1).min(20);
        let retry = FIRST_RETRY_DELAY
            .saturating_mul(1 << doublings)
            .min(settings.refresh_min);
        state.next_due = Some(Instant::now() + retry);
        state.last_attempt_end = Some(Instant::now());
        state.last_error_at = Some(jiff::Timestamp::now());
        let serving = match self.fetched.load().confirmed {
            None => "no keys yet",
            Some(confirmed) if confirmed.elapsed() > settings.max_age => "keys expired",
            Some(_) => "cached keys still serve",
        };
        tracing::warn!(
            issuer = %self.issuer_name,
            url = %self.url(),
            error = %message,
            failures = state.consecutive_failures,
            retry_in_s = retry.as_secs(),
            serving,
            "failed to fetch key set"
        );
        state.last_error = Some(message);
    }

    pub(super) fn status(&self, max_age: Duration) -> RemoteStatus {
        let fetched = self.fetched.load_full();
        let state = self.lock_state();
        let key_state = match fetched.confirmed {
            None => KeyState::Pending,
            Some(confirmed) if confirmed.elapsed() > max_age => KeyState::Expired,
            Some(_) if state.last_error.is_some() => KeyState::Stale,
            Some(_) => KeyState::Fresh,
        };
        let (source, url) = match &self.location {
            Location::Jwks(url) => ("jwks_url", url),
            Location::Discovery(url) => ("discovery", url),
        };
        RemoteStatus {
            source,
            url: url.to_string(),
            jwks_url: state.jwks_url.as_ref().map(ToString::to_string),
            state: key_state,
            kids: fetched.keys.iter().map(|key| key.kid.clone()).collect(),
            fetched_at: state.last_success_at.map(|at| at.to_string()),
            age_seconds: fetched.confirmed.map(|at| at.elapsed().as_secs()),
            refresh_interval_seconds: state.refresh_interval.map(|i| i.as_secs()),
            next_fetch_in_seconds: state
                .next_due
                .map(|due| due.saturating_duration_since(Instant::now()).as_secs()),
            fetches_succeeded: state.succeeded,
            fetches_failed: state.failed,
            last_error: state.last_error.clone(),
            last_error_at: state.last_error_at.map(|at| at.to_string()),
            skipped_keys: state.skipped.clone(),
        }
    }
}

/// Fetches `set` once and drops cached verifications of keys it no longer lists.
pub(super) async fn fetch_and_purge(
    set: Arc<RemoteKeySet>,
    fetcher: Arc<Fetcher>,
    cache: Arc<VerifyCache>,
) {
    if let Some(outcome) = set.fetch(&fetcher).await {
        cache.remove_keys(&outcome.removed_key_ids);
    }
}

/// Keeps `set` fresh until `shutdown` is cancelled: fetches when due, which is at once
/// at start, after the refresh interval on success, and after the retry delay on failure.
pub(super) async fn refresh_loop(
    set: Arc<RemoteKeySet>,
    fetcher: Arc<Fetcher>,
    cache: Arc<VerifyCache>,
    shutdown: CancellationToken,
) {
    loop {
        let due = set.next_due();
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            () = shutdown.cancelled() => return,
        }
        // A fetch that a token caused in the meantime may have moved the next one.
        if set.next_due() > Instant::now() {
            continue;
        }
        tokio::select! {
            () = fetch_and_purge(Arc::clone(&set), Arc::clone(&fetcher), Arc::clone(&cache)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct Download {
    jwks_url: Url,
    keys: Vec<Key>,
    skipped: Vec<String>,
    lifetime: Option<Duration>,
}

/// Reads `jwks_uri` from an OpenID Connect discovery document. Its `issuer` must be the
/// configured `iss` exactly (OpenID Connect Discovery 1.0, section 4.3), so that a
/// document of another tenant or provider is never used.
fn jwks_uri_from_discovery(body: &[u8], iss: &str) -> Result<Url, String> {
    let document: Value = serde_json::from_slice(body).map_err(|err| format!("not JSON: {err}"))?;
    let issuer = document
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("no `issuer` string")?;
    if issuer != iss {
        return Err(format!(
            "its `issuer` is `{issuer}`, not the configured `{iss}`"
        ));
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("no `jwks_uri` string")?;
    parse_key_url(jwks_uri).map_err(|err| format!("`jwks_uri` `{jwks_uri}` {err}"))
}

/// Reads the signature keys of a fetched JWK Set. A key that cannot be used is skipped
/// with a reason rather than failing the whole set, because providers publish keys of
/// types and uses cedargate does not verify with. Symmetric (`oct`) keys are skipped too:
/// a secret published over HTTP is no secret.
fn parse_remote_jwks(body: &[u8]) -> Result<(Vec<Key>, Vec<String>), String> {
    let value: Value = serde_json::from_slice(body).map_err(|err| format!("not JSON: {err}"))?;
    let Some(members) = value.get("keys").and_then(Value::as_array) else {
        return Err("expected an object with a `keys` array".into());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, jwk) in members.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("none");
        let mut skip =
            |reason: &str| skipped.push(format!("keys[{index}] (kid `{kid}`): {reason}"));
        if jwk.get("use").and_then(Value::as_str) == Some("enc") {
            skip("an encryption key (`use: enc`)");
            continue;
        }
        if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
            skip("a symmetric key, which a public key set must not contain");
            continue;
        }
        match parse_jwk(jwk) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => skip("a key type or algorithm that cedargate does not verify with"),
            Err(message) => skip(&message),
        }
    }
    Ok((keys, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn max_age_read() {
        let lifetime = freshness_lifetime(&headers(&[("cache-control", "public, max-age=600")]));
        assert_eq!(lifetime, Some(Duration::from_secs(600)));
    }

    #[test]
    fn age_subtracted() {
        let map = headers(&[("cache-control", "max-age=600"), ("age", "100")]);
        assert_eq!(freshness_lifetime(&map), Some(Duration::from_secs(500)));
    }

    #[test]
    fn no_store_is_zero() {
        let map = headers(&[("cache-control", "max-age=600, no-store")]);
        assert_eq!(freshness_lifetime(&map), Some(Duration::ZERO));
    }

    #[test]
    fn missing_header_none() {
        assert_eq!(freshness_lifetime(&headers(&[])), None);
        let map = headers(&[("cache-control", "max-age=soon")]);
        assert_eq!(freshness_lifetime(&map), None);
    }

    #[test]
    fn discovery_issuer_must_match() {
        let body = br#"{"issuer": "https://other.test", "jwks_uri": "https://other.test/keys"}"#;
        let err = jwks_uri_from_discovery(body, "https://issuer.test").unwrap_err();
        assert!(err.contains("not the configured"), "{err}");
    }

    #[test]
    fn discovery_plain_http_rejected() {
        let body = br#"{"issuer": "https://issuer.test", "jwks_uri": "http://issuer.test/keys"}"#;
        let err = jwks_uri_from_discovery(body, "https://issuer.test").unwrap_err();
        assert!(err.contains("plain HTTP"), "{err}");
    }

    #[test]
    fn remote_set_skips_oct_and_enc() {
        let body = br#"{"keys": [
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty": "RSA", "use": "enc", "kid": "e", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}
        ]}"#;
        let (keys, skipped) = parse_remote_jwks(body).unwrap();
        assert!(keys.is_empty());
        assert_eq!(skipped.len(), 3, "{skipped:?}");
    }
}
