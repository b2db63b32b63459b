//! HTTP layer (axum): `POST /authorize` and the operational routes. Every answer other
//! than a 200 still says `"decision": "deny"`, so a naive client fails closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
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
    let server = &pdp.config.server;
    let max_body = server.max_body_bytes;
    let timeout = server.request_timeout;
    Router::new()
        .route("/authorize", post(authorize).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/status", get(status).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(timeout, limit_time))
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
    let answer = Answer::refused(DenyKind::Unavailable, error, new_request_id());
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(answer)).into_response()
}

async fn authorize(
    State(pdp): State<Arc<Pdp>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let (code, message) = if status == StatusCode::PAYLOAD_TOO_LARGE {
                let limit = pdp.config.server.max_body_bytes;
                (
                    "body_too_large",
                    format!("request body is larger than {limit} bytes (`server.max_body_bytes`)"),
                )
            } else {
                ("invalid_request", rejection.body_text())
            };
            let error = AnswerError {
                code: code.into(),
                message,
                field: Some("body".into()),
            };
            let answer = Answer::refused(DenyKind::RequestInvalid, error, new_request_id());
            return (status, axum::Json(answer)).into_response();
        }
    };

    let meta = match request_meta(&pdp, peer, &headers) {
        Ok(meta) => meta,
        Err(err) => {
            let (field, message) = match err {
                mapping::MappingError::Request { field, message } => (field, message),
                mapping::MappingError::Claims(message) => ("headers".to_owned(), message),
            };
            let error = AnswerError {
                code: "invalid_request".into(),
                message: format!("{field}: {message}"),
                field: Some(field),
            };
            let answer = Answer::refused(DenyKind::RequestInvalid, error, new_request_id());
            return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
        }
    };

    let credential = match bearer_token(&headers) {
        Ok(credential) => credential,
        Err(error) => {
            let answer = Answer::refused(DenyKind::TokenInvalid, error, new_request_id());
            return answer_response(answer);
        }
    };
    answer_response(pdp.decide(credential, &body, &meta))
}

fn request_meta(
    pdp: &Pdp,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<RequestMeta, mapping::MappingError> {
    let lines = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    };
    let client_ip = mapping::client_ip(
        peer.ip(),
        &lines("forwarded"),
        &lines("x-forwarded-for"),
        &pdp.config.server.trusted_proxies,
    )?;
    Ok(RequestMeta {
        client_ip,
        time: pdp.now(),
        method: None,
        path: None,
    })
}

/// Reads the bearer token. A request with no `Authorization` header, or another scheme,
/// has no credential; more than one header is malformed.
fn bearer_token(headers: &HeaderMap) -> Result<Credential<'_>, AnswerError> {
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
    let mut response = (status, axum::Json(&answer)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let code = answer.error.as_ref().map_or("", |e| e.code.as_str());
        let message = answer.error.as_ref().map_or("", |e| e.message.as_str());
        // RFC 6750 section 3: no error attribute when the request carried no token.
        let challenge = if code == "missing_token" {
            "Bearer realm=\"cedargate\"".to_owned()
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

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let error = AnswerError {
        code: code.into(),
        message,
        field: None,
    };
    let answer = Answer::refused(DenyKind::RequestInvalid, error, new_request_id());
    (status, axum::Json(answer)).into_response()
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    refusal(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route `{path}`; decisions are at `POST /authorize`"),
    )
}

async fn method_not_allowed(request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on `{path}`"),
    )
}

/// Ends a request that takes longer than the configured timeout, body upload included.
async fn limit_time(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("request took longer than {} ms", timeout.as_millis()),
        ),
    }
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(pdp): State<Arc<Pdp>>) -> Response {
    match pdp.snapshot() {
        Some(snapshot) => {
            axum::Json(json!({ "ready": true, "revision": snapshot.bundle.revision }))
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "decision": "deny" })),
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
        })
    });
    axum::Json(json!({
        "bundle": bundle,
        "stale": reload.last_error.is_some(),
        "reloads": { "succeeded": reload.succeeded, "failed": reload.failed },
        "last_reload_error": reload.last_error,
    }))
    .into_response()
}
