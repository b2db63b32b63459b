//! HTTP layer (axum): `POST /authorize` and the operational routes. Every response other
//! than a 200 still carries `"decision": "deny"`, so a naive client fails closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::decide::{Answer, AnswerError, Credential, Pdp};
use crate::engine::DenyKind;
use crate::mapping::{self, RequestMeta};

/// Builds the router with its limits. Tests call this directly.
pub fn app(pdp: Arc<Pdp>) -> Router {
    Router::new()
        .route("/authorize", post(authorize).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/status", get(status).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/policies", get(policies).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&pdp), limit_time))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(pdp)
}

/// The last line of defence: no input should reach a panic, but if one does, the caller
/// still gets a deny and the cause is logged once.
fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("unknown cause");
    tracing::error!(cause = message, "request handler panicked");
    let error = AnswerError {
        code: "internal".into(),
        message: "internal error; the request was denied".into(),
        field: None,
    };
    let answer = Answer::rejected(DenyKind::Unavailable, error, new_request_id());
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(answer)).into_response()
}

async fn authorize(
    State(pdp): State<Arc<Pdp>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let meta = request_meta(&pdp, peer, &parts.headers);
    // Rejections record the client the way decisions do: the forwarded address when a
    // trusted proxy gave a valid one, else the socket peer.
    let client_ip = meta.as_ref().map_or(peer.ip(), |meta| meta.client_ip);
    let reject = |status: StatusCode, kind: DenyKind, error: AnswerError| {
        let answer = pdp.reject(kind, error, Some(client_ip));
        with_status(status, answer)
    };
    let meta = match meta {
        Ok(meta) => meta,
        Err(error) => return reject(StatusCode::BAD_REQUEST, DenyKind::RequestInvalid, error),
    };

    // A declared length over the limit is rejected at once, before any byte is read.
    let limit = pdp.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            DenyKind::RequestInvalid,
            too_large(limit),
        );
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(err) => {
            let too_big = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_big {
                return reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    DenyKind::RequestInvalid,
                    too_large(limit),
                );
            }
            let error = AnswerError {
                code: "invalid_request".into(),
                message: format!("failed to read the request body: {err}"),
                field: Some("body".into()),
            };
            return reject(StatusCode::BAD_REQUEST, DenyKind::RequestInvalid, error);
        }
    };

    let credential = match credential(&parts.headers) {
        Ok(credential) => credential,
        Err(error) => return reject(StatusCode::UNAUTHORIZED, DenyKind::TokenInvalid, error),
    };
    pdp.load_keys_for(credential).await;
    answer_response(pdp.decide(credential, &body, &meta))
}

fn too_large(limit: usize) -> AnswerError {
    AnswerError {
        code: "body_too_large".into(),
        message: format!("request body is larger than {limit} bytes (`server.max_body_bytes`)"),
        field: Some("body".into()),
    }
}

/// Builds the request metadata the server vouches for: the client address (the socket
/// peer, or what a trusted proxy forwarded in its header) and the decision time.
/// `cedargate test` calls it too, so a test case's headers are read as the server reads them.
pub fn request_meta(
    pdp: &Pdp,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<RequestMeta, AnswerError> {
    Ok(RequestMeta {
        client_ip: forwarded_client(pdp, peer, headers)?,
        time: pdp.now(),
        method: None,
        path: None,
    })
}

/// Returns the client address: the socket peer, or what a trusted proxy forwarded.
fn forwarded_client(
    pdp: &Pdp,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, AnswerError> {
    let header = pdp.config.server.forwarded_header;
    let name = header.name();
    let trusted = &pdp.config.server.trusted_proxies;
    // The header of an untrusted peer is not read at all, so its content cannot fail the
    // request either.
    if !mapping::is_trusted(peer.ip(), trusted) {
        return Ok(peer.ip());
    }

    let mut lines = Vec::new();
    for value in headers.get_all(name) {
        // Dropping a line that is not ASCII would make the proxy's own address the
        // client's, so such a line is an error.
        let line = value.to_str().map_err(|_| AnswerError {
            code: "invalid_request".into(),
            message: format!("{name}: header value is not ASCII text"),
            field: Some(name.to_owned()),
        })?;
        lines.push(line);
    }

    mapping::client_ip(peer.ip(), header, &lines, trusted).map_err(|err| {
        let (field, message) = match err {
            mapping::MappingError::Request { field, message } => (field, message),
            mapping::MappingError::Claims(message) => (name.to_owned(), message),
        };
        AnswerError {
            code: "invalid_request".into(),
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    })
}

/// Header that carries an API key, as many APIs name it.
const API_KEY_HEADER: &str = "x-api-key";

/// Reads the one credential of a request: a bearer token or an API key in
/// `Authorization`, or an API key in `X-API-Key`. A request with both is malformed,
/// because the two could name different callers.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, AnswerError> {
    let authorization = authorization_credential(headers)?;
    let mut values = headers.get_all(API_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(authorization);
    };
    let malformed = |message: &str| AnswerError {
        code: "malformed".into(),
        message: message.into(),
        field: None,
    };
    if values.next().is_some() {
        return Err(malformed("more than one `X-API-Key` header"));
    }
    if !matches!(authorization, Credential::Missing) {
        return Err(malformed(
            "the request has both `Authorization` and `X-API-Key`; send one credential",
        ));
    }
    let key = value
        .to_str()
        .map_err(|_| malformed("`X-API-Key` header is not ASCII"))?
        .trim();
    if key.is_empty() {
        return Err(malformed("API key is empty"));
    }
    Ok(Credential::ApiKey(key))
}

/// Reads the `Authorization` header: a bearer token, or an API key with the `ApiKey`
/// scheme. A request with no `Authorization` header, or another scheme, has no
/// credential; more than one header is malformed.
fn authorization_credential(headers: &HeaderMap) -> Result<Credential<'_>, AnswerError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::Missing);
    };
    let malformed = |message: &str| AnswerError {
        code: "malformed".into(),
        message: message.into(),
        field: None,
    };
    if values.next().is_some() {
        return Err(malformed("more than one `Authorization` header"));
    }
    let value = value
        .to_str()
        .map_err(|_| malformed("`Authorization` header is not ASCII"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(Credential::Missing);
    };

    // RFC 7235 section 2.1: the scheme name is case-insensitive.
    if scheme.eq_ignore_ascii_case("apikey") {
        let key = token.trim();
        if key.is_empty() {
            return Err(malformed("API key is empty"));
        }
        return Ok(Credential::ApiKey(key));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed("bearer token is empty"));
    }
    Ok(Credential::Bearer(token))
}

fn answer_response(answer: Answer) -> Response {
    let status = match answer.deny {
        Some(DenyKind::TokenInvalid) => StatusCode::UNAUTHORIZED,
        Some(DenyKind::RequestInvalid) => StatusCode::BAD_REQUEST,
        Some(DenyKind::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    with_status(status, answer)
}

/// Sends `answer` with `status`, adding the bearer challenge to a 401.
fn with_status(status: StatusCode, answer: Answer) -> Response {
    let mut response = (status, axum::Json(&answer)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let code = answer.error.as_ref().map_or("", |e| e.code.as_str());
        let message = answer.error.as_ref().map_or("", |e| e.message.as_str());
        // RFC 6750 section 3: no error attribute when the request carried no token.
        let challenge = if code == "missing_token" {
            "Bearer realm=\"cedargate\"".to_owned()
        } else if code.ends_with("_api_key") {
            "ApiKey realm=\"cedargate\"".to_owned()
        } else {
            format!(
                "Bearer realm=\"cedargate\", error=\"invalid_token\", error_description=\"{code}: {}\"",
                description_text(message)
            )
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Keeps the characters RFC 6750 section 3 allows in `error_description` (printable
/// ASCII without `"` and backslash), and at most 200 of them.
fn description_text(message: &str) -> String {
    message
        .chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn rejection(
    pdp: &Pdp,
    request: &Request,
    status: StatusCode,
    code: &str,
    message: String,
) -> Response {
    let error = AnswerError {
        code: code.into(),
        message,
        field: None,
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    with_status(status, pdp.reject(DenyKind::RequestInvalid, error, peer))
}

async fn not_found(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    let message = format!(
        "no route `{}`; decisions are at `POST /authorize`",
        request.uri().path()
    );
    rejection(&pdp, &request, StatusCode::NOT_FOUND, "not_found", message)
}

async fn method_not_allowed(State(pdp): State<Arc<Pdp>>, request: Request) -> Response {
    let message = format!(
        "method {} is not allowed on `{}`",
        request.method(),
        request.uri().path()
    );
    rejection(
        &pdp,
        &request,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
}

/// Ends a request that takes longer than the configured timeout, body upload included.
async fn limit_time(State(pdp): State<Arc<Pdp>>, request: Request, next: Next) -> Response {
    let timeout = pdp.config.server.request_timeout;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error = AnswerError {
                code: "timeout".into(),
                message: format!("request took longer than {} ms", timeout.as_millis()),
                field: None,
            };
            with_status(
                StatusCode::REQUEST_TIMEOUT,
                pdp.reject(DenyKind::RequestInvalid, error, peer),
            )
        }
    }
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready once a bundle is loaded and every remote key set has been fetched once. Keys
/// that expire later while a provider is down do not make the server unready, because
/// the other issuers still work; `/status` shows them.
async fn readyz(State(pdp): State<Arc<Pdp>>) -> Response {
    let waiting = pdp.verifier().issuers_waiting_for_keys();
    match pdp.snapshot() {
        Some(snapshot) if waiting.is_empty() => {
            axum::Json(json!({ "ready": true, "revision": snapshot.bundle.revision }))
                .into_response()
        }
        snapshot => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ready": false,
                "decision": "deny",
                "bundle_loaded": snapshot.is_some(),
                "issuers_waiting_for_keys": waiting,
            })),
        )
            .into_response(),
    }
}

async fn status(State(pdp): State<Arc<Pdp>>) -> Response {
    let reload = pdp.reload_status();
    let bundle = pdp.snapshot().map(|snapshot| {
        let bundle = &snapshot.bundle;
        json!({
            "revision": bundle.revision,
            "loaded_at": bundle.loaded_at.to_string(),
            "files": bundle.files,
            "policies": bundle.policy_info.len(),
            "api_keys": bundle.api_keys.len(),
        })
    });
    axum::Json(json!({
        "bundle": bundle,
        "stale": reload.last_error.is_some(),
        "reloads": {
            "succeeded": reload.succeeded,
            "failed": reload.failed,
            "last_at": reload.last_reload_at,
        },
        "last_reload_error": reload.last_error,
        "watch": reload.watch,
        "tokens": {
            "issuers": pdp.verifier().issuer_status(),
            "failures": pdp.verifier().failures().snapshot(),
            "cache": pdp.verifier().cache_stats(),
        },
    }))
    .into_response()
}

async fn metrics(State(pdp): State<Arc<Pdp>>) -> Response {
    match crate::metrics::render(&pdp) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "failed to render the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Lists the serving bundle's policies with their hit counts.
async fn policies(State(pdp): State<Arc<Pdp>>) -> Response {
    let Some(snapshot) = pdp.snapshot() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "revision": null, "policies": [] })),
        )
            .into_response();
    };
    let entries = crate::inventory::list(&snapshot.bundle, pdp.policy_stats());
    axum::Json(json!({ "revision": snapshot.bundle.revision, "policies": entries })).into_response()
}
