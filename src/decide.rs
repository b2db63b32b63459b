//! The whole data path for one request: token, mapping, engine, response and decision log.
//! The HTTP handler and `cedargate authorize` both call [`Pdp::decide`], so what the
//! tests prove of one is true of the other.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bundle::api_keys::ApiKeyError;
use crate::bundle::{self, Bundle, Diagnostic};
use crate::config::Config;
use crate::decision_log::{CedarRequest, DecisionLog, DecisionRecord, ShadowOutcome};
use crate::engine::{self, DenyKind, PolicyError};
use crate::explain::PolicyTrace;
use crate::mapping::{AuthorizeInput, Mapping, MappingError, PrincipalEntity, RequestMeta};
use crate::token::{TokenError, Verifier};

/// A loaded bundle together with the principal mapping checked against its schema.
pub struct Snapshot {
    pub bundle: Bundle,
    pub mapping: Mapping,
}

/// Loads the bundle the config describes and checks the mapping against it. Returns the
/// snapshot when there is no error, and every diagnostic, warnings included.
pub fn load_snapshot(config: &Config) -> (Option<Snapshot>, Vec<Diagnostic>) {
    load_snapshot_from(config, &config.bundle)
}

/// Loads the bundle at `bundle_config` with the mapping of `config`, as
/// [`load_snapshot`] does for the configured bundle. Shadow mode and `cedargate replay`
/// load candidate bundles this way.
pub fn load_snapshot_from(
    config: &Config,
    bundle_config: &crate::config::BundleConfig,
) -> (Option<Snapshot>, Vec<Diagnostic>) {
    let outcome = bundle::load(bundle_config);
    let mut diagnostics = outcome.diagnostics;
    let Some(bundle) = outcome.bundle else {
        return (None, diagnostics);
    };
    for problem in crate::decision_log::unknown_redactions(&config.decision_log, &bundle) {
        diagnostics.push(Diagnostic {
            severity: crate::bundle::Severity::Warning,
            ..Diagnostic::error(Some(&config.path), problem)
        });
    }
    match Mapping::new(config, &bundle) {
        Ok(mapping) => (Some(Snapshot { bundle, mapping }), diagnostics),
        Err(problems) => {
            diagnostics.extend(
                problems
                    .into_iter()
                    .map(|problem| Diagnostic::error(Some(&config.path), problem)),
            );
            (None, diagnostics)
        }
    }
}

/// The policy decision point: configuration, verification keys and the current snapshot.
pub struct Pdp {
    pub config: Config,
    verifier: Verifier,
    current: ArcSwapOption<Snapshot>,
    reload: Mutex<ReloadStatus>,
    /// A fixed time in milliseconds since the epoch, or `SYSTEM_CLOCK` for the real clock.
    fixed_time_ms: AtomicI64,
    pub decision_log: DecisionLog,
    metrics: crate::metrics::Metrics,
    policy_stats: crate::inventory::PolicyStats,
    /// The candidate bundle of shadow mode, evaluated beside the active one.
    shadow: ArcSwapOption<Snapshot>,
}

const SYSTEM_CLOCK: i64 = i64::MIN;

/// Counts of reloads and the last failure, for the status route.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    pub succeeded: u64,
    pub failed: u64,
    /// When the last reload finished, whatever its result.
    pub last_reload_at: Option<String>,
    /// The last failed reload, cleared by the next successful one. While it is set, the
    /// server is serving a bundle older than the files on disk.
    pub last_error: Option<ReloadFailure>,
    pub watch: WatchStatus,
}

/// How the server notices changed files: the mode in use, and why it is not the
/// configured one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchStatus {
    pub mode: WatchMode,
    /// The scan interval in poll mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// Why the file system event watcher failed, when the server fell back to polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// File system events (inotify on Linux).
    Notify,
    /// Scanning the files at an interval.
    Poll,
    /// No watching: only `SIGHUP` reloads.
    #[default]
    Off,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    pub at: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// The credential presented with a request.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// No `Authorization` header, or not a bearer token.
    Missing,
    /// A bearer token to verify.
    Bearer(&'a str),
    /// An API key to look up in the bundle's keys file.
    ApiKey(&'a str),
    /// Claims that are trusted as given, for offline decisions (`cedargate authorize
    /// --claims`); never reachable over HTTP.
    TrustedClaims(&'a Map<String, Value>),
    /// A principal entity that is trusted as given, for policy tests (`cedargate test`);
    /// never reachable over HTTP. It skips the claim mapping, and the request is mapped
    /// and decided as for a token's principal.
    TrustedPrincipal(&'a cedar_policy::Entity),
}

/// Error that stopped a request before the policies could decide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answer to one request, as `POST /authorize` and `cedargate authorize` return it.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub decision: &'static str,
    pub policies: Vec<String>,
    pub errors: Vec<PolicyError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<DenyKind>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AnswerError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub request_id: String,
    /// For a request with `"debug": true`: how each policy whose scope matched evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<Vec<crate::explain::PolicyTrace>>,
}

impl Answer {
    pub fn is_allow(&self) -> bool {
        self.decision == "allow"
    }

    /// Builds a deny that no policy decided: bad token, bad request or no bundle.
    pub fn rejected(kind: DenyKind, error: AnswerError, request_id: String) -> Self {
        Self {
            decision: "deny",
            policies: Vec::new(),
            errors: Vec::new(),
            deny: Some(kind),
            reasons: Vec::new(),
            error: Some(error),
            revision: None,
            request_id,
            debug: None,
        }
    }
}

impl Pdp {
    /// Builds the decision point with its verification keys and no bundle yet.
    pub fn new(config: Config) -> Result<Self, crate::token::KeyError> {
        let verifier = Verifier::from_config(&config)?;
        let decision_log = DecisionLog::new(&config.decision_log);
        Ok(Self {
            config,
            verifier,
            current: ArcSwapOption::empty(),
            reload: Mutex::new(ReloadStatus::default()),
            fixed_time_ms: AtomicI64::new(SYSTEM_CLOCK),
            decision_log,
            metrics: crate::metrics::Metrics::default(),
            policy_stats: crate::inventory::PolicyStats::default(),
            shadow: ArcSwapOption::empty(),
        })
    }

    /// Returns the counters updated on the decision path.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Returns the hit counts of the policies.
    pub fn policy_stats(&self) -> &crate::inventory::PolicyStats {
        &self.policy_stats
    }

    /// Returns the shadow bundle, if shadow mode is on and one loaded.
    pub fn shadow(&self) -> Option<Arc<Snapshot>> {
        self.shadow.load_full()
    }

    /// Loads the shadow bundle, when one is configured, and publishes it if it is valid.
    /// An invalid candidate is logged and leaves the previous one (or none) in place:
    /// shadow mode never affects the answers.
    pub fn reload_shadow(&self) {
        let Some(bundle_config) = &self.config.shadow else {
            return;
        };
        let (snapshot, diagnostics) = load_snapshot_from(&self.config, bundle_config);
        match snapshot {
            Some(snapshot) => {
                let revision = snapshot.bundle.revision.clone();
                let changed = self
                    .shadow()
                    .is_none_or(|current| current.bundle.revision != revision);
                if changed {
                    tracing::info!(%revision, "shadow bundle loaded");
                    self.shadow.store(Some(Arc::new(snapshot)));
                }
            }
            None => {
                for diagnostic in diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::bundle::Severity::Error)
                {
                    tracing::error!(error = %diagnostic.render(), "shadow bundle invalid; shadow evaluation uses the previous one, if any");
                }
            }
        }
    }

    /// Returns the token verifier, with its key status, cache and failure counts.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Loads remote keys that a bearer token needs before [`Pdp::decide`] runs; see
    /// [`Verifier::load_keys_for`].
    pub async fn load_keys_for(&self, credential: Credential<'_>) {
        if let Credential::Bearer(token) = credential {
            self.verifier.load_keys_for(token).await;
        }
    }

    /// Returns the time decisions are made at: the system clock, unless a fixed time is set.
    pub fn now(&self) -> jiff::Timestamp {
        match self.fixed_time_ms.load(Ordering::Relaxed) {
            SYSTEM_CLOCK => jiff::Timestamp::now(),
            ms => jiff::Timestamp::from_millisecond(ms).unwrap_or_else(|_| jiff::Timestamp::now()),
        }
    }

    /// Makes every later decision use `time` instead of the system clock (`None` goes
    /// back to the system clock), for tests of time-dependent policies.
    pub fn set_fixed_time(&self, time: Option<jiff::Timestamp>) {
        let ms = time.map_or(SYSTEM_CLOCK, |t| t.as_millisecond());
        self.fixed_time_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns a copy of the reload counters and the last failure.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reload
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default()
    }

    /// Records a successful reload, which clears the last failure.
    pub fn record_reload_success(&self) {
        if let Ok(mut status) = self.reload.lock() {
            status.succeeded += 1;
            status.last_reload_at = Some(jiff::Timestamp::now().to_string());
            status.last_error = None;
        }
    }

    /// Records a failed reload; the current snapshot keeps serving.
    pub fn record_reload_failure(&self, diagnostics: Vec<Diagnostic>) {
        if let Ok(mut status) = self.reload.lock() {
            let now = jiff::Timestamp::now().to_string();
            status.failed += 1;
            status.last_reload_at = Some(now.clone());
            status.last_error = Some(ReloadFailure {
                at: now,
                diagnostics,
            });
        }
    }

    /// Records how the server watches the files, for the status route.
    pub fn record_watch_status(&self, watch: WatchStatus) {
        if let Ok(mut status) = self.reload.lock() {
            status.watch = watch;
        }
    }

    /// Returns the current snapshot, if one is loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Publishes a new snapshot; requests already running keep the one they took.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }

    /// Runs the data path for one request. `body` is the JSON request body, and `meta` is
    /// what the server vouches for. Every failure is a deny with a reason.
    pub fn decide(&self, credential: Credential<'_>, body: &[u8], meta: &RequestMeta) -> Answer {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let snapshot = self.snapshot();
        let mut log = LogFields::default();
        let answer = self.run(
            snapshot.as_deref(),
            credential,
            body,
            meta,
            request_id,
            &mut log,
        );
        self.record(&answer, log, Some(meta.client_ip), meta.time, started);
        self.count_token_failure(&answer);
        answer
    }

    /// Counts an answer that rejected the credential, by its reason code.
    fn count_token_failure(&self, answer: &Answer) {
        let Some(error) = &answer.error else {
            return;
        };
        if answer.deny == Some(DenyKind::TokenInvalid) || error.code == "keys_unavailable" {
            self.verifier.failures().record(&error.code);
        }
    }

    /// Builds and logs a deny for a request rejected before the data path could run, such
    /// as one with an oversized body or a malformed `Authorization` header.
    pub fn reject(&self, kind: DenyKind, error: AnswerError, client_ip: Option<IpAddr>) -> Answer {
        let started = Instant::now();
        let mut answer = Answer::rejected(kind, error, uuid::Uuid::new_v4().to_string());
        answer.revision = self
            .snapshot()
            .map(|snapshot| snapshot.bundle.revision.clone());
        self.record(
            &answer,
            LogFields::default(),
            client_ip,
            self.now(),
            started,
        );
        self.count_token_failure(&answer);
        answer
    }

    /// Writes the decision log line of an answer.
    fn record(
        &self,
        answer: &Answer,
        log: LogFields,
        client_ip: Option<IpAddr>,
        time: jiff::Timestamp,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let deny = answer.deny.map_or("", DenyKind::as_str);
        let action = log.action_id.as_deref().unwrap_or_default();
        self.metrics
            .decision(action, answer.decision, deny, elapsed.as_secs_f64());
        self.policy_stats.record(&answer.policies, time);
        if let Some(shadow) = log.shadow.as_ref().filter(|shadow| shadow.differs) {
            self.metrics
                .shadow_difference(action, answer.decision, &shadow.decision);
        }
        if self.decision_log.is_running() {
            self.decision_log
                .write(log.into_record(answer, client_ip, time, latency_us));
        }
    }

    fn run(
        &self,
        snapshot: Option<&Snapshot>,
        credential: Credential<'_>,
        body: &[u8],
        meta: &RequestMeta,
        request_id: String,
        log: &mut LogFields,
    ) -> Answer {
        let Some(snapshot) = snapshot else {
            let error = AnswerError {
                code: "no_bundle".into(),
                message: "no valid policy bundle is loaded yet".into(),
                field: None,
            };
            return Answer::rejected(DenyKind::Unavailable, error, request_id);
        };

        let mut answer = match self.evaluate(snapshot, credential, body, meta, log) {
            Ok((evaluation, debug)) => Answer {
                decision: if evaluation.allowed { "allow" } else { "deny" },
                policies: evaluation.policies,
                errors: evaluation.errors,
                deny: evaluation.deny_kind,
                reasons: evaluation.reasons,
                error: None,
                revision: None,
                request_id,
                debug,
            },
            Err((kind, error)) => Answer::rejected(kind, error, request_id),
        };
        answer.revision = Some(snapshot.bundle.revision.clone());
        answer
    }

    /// Runs the stages on one snapshot: credential, body, mapping, engine.
    fn evaluate(
        &self,
        snapshot: &Snapshot,
        credential: Credential<'_>,
        body: &[u8],
        meta: &RequestMeta,
        log: &mut LogFields,
    ) -> Result<Evaluated, (DenyKind, AnswerError)> {
        let verified;
        let no_claims = Map::new();
        let claims = match credential {
            Credential::TrustedClaims(claims) => claims,
            Credential::TrustedPrincipal(_) => &no_claims,
            Credential::Missing => {
                let message = if snapshot.bundle.api_keys.is_configured() {
                    "send a bearer token in the `Authorization` header, or an API key in `X-API-Key` or `Authorization: ApiKey`"
                } else {
                    "send a bearer token in the `Authorization` header"
                };
                let error = AnswerError {
                    code: "missing_token".into(),
                    message: message.into(),
                    field: None,
                };
                return Err((DenyKind::TokenInvalid, error));
            }
            Credential::ApiKey(key) => {
                return self.evaluate_api_key(snapshot, key, body, meta, log);
            }
            Credential::Bearer(token) => {
                verified = self.verify(token, meta).map_err(|err| {
                    // Missing keys are the server's problem, not the token's.
                    let kind = match err {
                        TokenError::KeysUnavailable(_) => DenyKind::Unavailable,
                        _ => DenyKind::TokenInvalid,
                    };
                    (kind, token_error(&err))
                })?;
                log.issuer = Some(verified.issuer_name.clone());
                verified.claims.as_ref()
            }
        };
        log.subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        log.jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);

        let input = parse_input(body, log)?;
        self.check_debug(&input)?;

        let time_zone = &self.config.decision.time_zone;
        let mapped = match credential {
            Credential::TrustedPrincipal(entity) => {
                let principal = crate::mapping::PrincipalEntity::given(entity.clone());
                snapshot.mapping.map_entity(
                    &snapshot.bundle,
                    time_zone,
                    principal,
                    None,
                    meta,
                    &input,
                )
            }
            _ => snapshot
                .mapping
                .map(&snapshot.bundle, time_zone, claims, meta, &input),
        }
        .map_err(mapping_error)?;
        self.evaluate_mapped(snapshot, mapped, input.debug, log)
    }

    /// Rejects `"debug": true` unless the config allows it.
    fn check_debug(&self, input: &AuthorizeInput) -> Result<(), (DenyKind, AnswerError)> {
        if input.debug && !self.config.decision.debug {
            let error = AnswerError {
                code: "invalid_request".into(),
                message: "debug: this server does not allow `debug`; set `decision.debug = true` in its config to allow it".into(),
                field: Some("debug".into()),
            };
            return Err((DenyKind::RequestInvalid, error));
        }
        Ok(())
    }

    /// Evaluates a mapped request on the active bundle, and on the shadow bundle in
    /// shadow mode, with the per-policy results when `debug` is set.
    fn evaluate_mapped(
        &self,
        snapshot: &Snapshot,
        mapped: crate::mapping::MappedRequest,
        debug: bool,
        log: &mut LogFields,
    ) -> Result<Evaluated, (DenyKind, AnswerError)> {
        log.mapped(&mapped, self.decision_log.is_running());
        let debug = if debug {
            Some(crate::explain::trace(&snapshot.bundle, &mapped).map_err(mapping_error)?)
        } else {
            None
        };
        let shadow = self.shadow().map(|shadow| (shadow, mapped.clone()));

        let evaluation = engine::evaluate(
            &snapshot.bundle,
            mapped,
            self.config.decision.on_forbid_error,
        )
        .map_err(mapping_error)?;
        if let Some((shadow, mapped)) = shadow {
            log.shadow = Some(self.evaluate_shadow(&shadow, mapped, &evaluation));
        }
        Ok((evaluation, debug))
    }

    /// Evaluates a request mapped for the active bundle against the shadow bundle.
    fn evaluate_shadow(
        &self,
        shadow: &Snapshot,
        mapped: crate::mapping::MappedRequest,
        active: &engine::Evaluation,
    ) -> ShadowOutcome {
        let revision = shadow.bundle.revision.clone();
        match engine::evaluate(&shadow.bundle, mapped, self.config.decision.on_forbid_error) {
            Ok(candidate) => ShadowOutcome {
                revision,
                decision: if candidate.allowed { "allow" } else { "deny" }.to_owned(),
                deny: candidate.deny_kind,
                differs: candidate.allowed != active.allowed
                    || candidate.policies != active.policies,
                policies: candidate.policies,
                errors: candidate.errors,
            },
            // The request fits the active bundle but not the candidate, whose answer would
            // be a rejection: a deny.
            Err(err) => ShadowOutcome {
                revision,
                decision: "deny".to_owned(),
                deny: Some(mapping_error(err).0),
                differs: true,
                policies: Vec::new(),
                errors: Vec::new(),
            },
        }
    }

    /// Runs the stages for a request with an API key: the key's principal comes from the
    /// entity store, as the keys file names it.
    fn evaluate_api_key(
        &self,
        snapshot: &Snapshot,
        key: &str,
        body: &[u8],
        meta: &RequestMeta,
        log: &mut LogFields,
    ) -> Result<Evaluated, (DenyKind, AnswerError)> {
        let bundle = &snapshot.bundle;
        let found = bundle
            .api_keys
            .find(key, meta.time)
            .map_err(|err| (DenyKind::TokenInvalid, api_key_error(&err)))?;
        log.api_key = Some(found.id.clone());

        // The loader checked that the principal exists; a missing one still fails closed.
        let entity = bundle
            .entities
            .get(&found.principal)
            .cloned()
            .ok_or_else(|| {
                let error = AnswerError {
                    code: "invalid_api_key".into(),
                    message: format!(
                        "the principal `{}` of API key `{}` is not in the entity store",
                        found.principal, found.id
                    ),
                    field: None,
                };
                (DenyKind::TokenInvalid, error)
            })?;
        let parents = bundle
            .entities
            .ancestors(&found.principal)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let principal = PrincipalEntity { entity, parents };

        let input = parse_input(body, log)?;
        self.check_debug(&input)?;
        let mapped = snapshot
            .mapping
            .map_entity(
                bundle,
                &self.config.decision.time_zone,
                principal,
                None,
                meta,
                &input,
            )
            .map_err(mapping_error)?;
        self.evaluate_mapped(snapshot, mapped, input.debug, log)
    }

    fn verify(
        &self,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<crate::token::VerifiedToken, TokenError> {
        let now = meta.time.as_millisecond() as f64 / 1000.0;
        self.verifier.verify_at(token, now)
    }
}

/// Parses the request body and records the action and resource for the decision log.
fn parse_input(
    body: &[u8],
    log: &mut LogFields,
) -> Result<AuthorizeInput, (DenyKind, AnswerError)> {
    let input = parse_body(body).map_err(|error| (DenyKind::RequestInvalid, error))?;
    log.action = Some(input.action.clone());
    log.resource = Some(format!(
        "{}::{:?}",
        input.resource.entity_type, input.resource.id
    ));
    Ok(input)
}

fn parse_body(body: &[u8]) -> Result<AuthorizeInput, AnswerError> {
    let invalid = |field: &str, message: &str| AnswerError {
        code: "invalid_request".into(),
        message: format!("{field}: {message}"),
        field: Some(field.to_owned()),
    };
    // Parsing the whole body first also rejects text after the JSON value.
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| invalid("body", &format!("invalid JSON: {err}")))?;

    // serde also reads a struct from a JSON array of its fields in order, a form the API
    // does not define, so both structs of the request must arrive as objects.
    if !value.is_object() {
        return Err(invalid(
            "body",
            "expected a JSON object with `action` and `resource`",
        ));
    }
    if value
        .get("resource")
        .is_some_and(|resource| !resource.is_object())
    {
        return Err(invalid(
            "resource",
            "expected a JSON object with `type` and `id`",
        ));
    }

    // Deserializing from the text, not the value, also rejects a field given twice, which
    // a parsed JSON value would have reduced to its last occurrence.
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // For a missing field the path ends at the enclosing object, but serde names the
        // field in backticks. For an unknown field the path already ends at that field.
        let message = inner.to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (".", None) => "body".to_owned(),
            (path, Some(name)) => format!("{path}.{name}"),
            (path, None) => path.to_owned(),
        };
        AnswerError {
            code: "invalid_request".into(),
            message: format!("{field}: {inner}"),
            field: Some(field),
        }
    })
}

fn token_error(err: &TokenError) -> AnswerError {
    AnswerError {
        code: err.code().to_owned(),
        message: err.to_string(),
        field: None,
    }
}

fn api_key_error(err: &ApiKeyError) -> AnswerError {
    AnswerError {
        code: err.code().to_owned(),
        message: err.to_string(),
        field: None,
    }
}

fn mapping_error(err: MappingError) -> (DenyKind, AnswerError) {
    match err {
        MappingError::Claims(message) => (
            DenyKind::TokenInvalid,
            AnswerError {
                code: "invalid_claims".into(),
                message,
                field: None,
            },
        ),
        MappingError::Request { field, message } => (
            DenyKind::RequestInvalid,
            AnswerError {
                code: "invalid_request".into(),
                message: format!("{field}: {message}"),
                field: Some(field),
            },
        ),
    }
}

/// An evaluation, and the per-policy results when the request asked for `debug`.
type Evaluated = (engine::Evaluation, Option<Vec<PolicyTrace>>);

/// Identity and request fields for the decision log line, gathered along the path.
#[derive(Default)]
struct LogFields {
    issuer: Option<String>,
    /// The `id` of the API key from the keys file, never the key.
    api_key: Option<String>,
    subject: Option<String>,
    jti: Option<String>,
    principal: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    request: Option<CedarRequest>,
    /// The action id of a mapped request, for metrics.
    action_id: Option<String>,
    shadow: Option<ShadowOutcome>,
}

impl LogFields {
    /// Takes the UIDs of a mapped request and, when `full` is set, the whole Cedar request.
    fn mapped(&mut self, mapped: &crate::mapping::MappedRequest, full: bool) {
        let request = &mapped.request;
        self.principal = request.principal().map(ToString::to_string);
        self.action = request.action().map(ToString::to_string);
        self.resource = request.resource().map(ToString::to_string);
        self.action_id = request.action().map(|uid| uid.id().unescaped().to_owned());
        if full {
            self.request = cedar_request(mapped);
        }
    }

    fn into_record(
        self,
        answer: &Answer,
        client_ip: Option<IpAddr>,
        time: jiff::Timestamp,
        latency_us: u64,
    ) -> DecisionRecord {
        DecisionRecord {
            time: time.to_string(),
            request_id: answer.request_id.clone(),
            revision: answer.revision.clone(),
            decision: answer.decision.to_owned(),
            deny: answer.deny,
            policies: answer.policies.clone(),
            errors: answer.errors.clone(),
            reasons: answer.reasons.clone(),
            error: answer.error.clone(),
            latency_us,
            issuer: self.issuer,
            api_key: self.api_key,
            sub: self.subject,
            jti: self.jti,
            client_ip: client_ip.map(|ip| ip.to_string()),
            principal: self.principal,
            action: self.action,
            resource: self.resource,
            request: self.request,
            redacted: Vec::new(),
            shadow: self.shadow,
        }
    }
}

/// Writes a mapped request in Cedar's JSON formats. Returns `None` if a part cannot be
/// written, which a request built by the mapping never causes.
fn cedar_request(mapped: &crate::mapping::MappedRequest) -> Option<CedarRequest> {
    let request = &mapped.request;
    Some(CedarRequest {
        principal: mapped.principal.to_json_value().ok()?,
        action: request.action()?.to_json_value().ok()?,
        resource: request.resource()?.to_json_value().ok()?,
        context: request.context()?.to_json_value().ok()?,
    })
}
