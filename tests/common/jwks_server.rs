//! A JWK Set provider for tests: an HTTP server on 127.0.0.1 that serves a key set at
//! `/jwks.json` and an OpenID Connect discovery document that points at it. Tests change
//! the keys, the `Cache-Control` header and whether the provider is up while it runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

struct Shared {
    base_url: String,
    keys: Mutex<Value>,
    cache_control: Mutex<Option<String>>,
    /// The status every route responds with while the provider is down.
    down: Mutex<Option<StatusCode>>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
}

/// The test provider, stopped when dropped.
pub struct JwksServer {
    shared: Arc<Shared>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl JwksServer {
    /// Serves `keys` over plain HTTP on a free loopback port in the background of the
    /// current runtime.
    pub async fn start(keys: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (shared, app) = Self::app(base_url, keys);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
        Self { shared, shutdown }
    }

    /// Serves `keys` over HTTPS on a free loopback port, with a new self-signed
    /// certificate for `127.0.0.1`. Returns the server and that certificate in PEM, which
    /// clients must trust.
    pub async fn start_tls(keys: Value) -> (Self, String) {
        use tower::ServiceExt as _;

        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let certificate_pem = certified.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("https://{}", listener.local_addr().unwrap());
        let (shared, app) = Self::app(base_url, keys);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    () = stop.cancelled() => return,
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            app.clone().oneshot(request.map(axum::body::Body::new))
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        (Self { shared, shutdown }, certificate_pem)
    }

    /// Builds the shared state and the routes.
    fn app(base_url: String, keys: Value) -> (Arc<Shared>, axum::Router) {
        let shared = Arc::new(Shared {
            base_url,
            keys: Mutex::new(keys),
            cache_control: Mutex::new(None),
            down: Mutex::new(None),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(Arc::clone(&shared));
        (shared, app)
    }

    /// Returns `http://127.0.0.1:PORT` (`https://` for a TLS server), which is also the `issuer` of its discovery document.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.base_url)
    }

    pub fn set_keys(&self, keys: Value) {
        *self.shared.keys.lock().unwrap() = keys;
    }

    /// Sets the `Cache-Control` header of key set responses; `None` sends none.
    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.shared.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    /// Makes every route respond with `status` (`Some`) or serve again (`None`).
    pub fn set_down(&self, status: Option<StatusCode>) {
        *self.shared.down.lock().unwrap() = status;
    }

    /// Returns how many times the key set was requested.
    pub fn jwks_requests(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// Returns how many times the discovery document was requested.
    pub fn discovery_requests(&self) -> usize {
        self.shared.discovery_requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *shared.down.lock().unwrap() {
        return status.into_response();
    }
    let keys = shared.keys.lock().unwrap().clone();
    let mut response = axum::Json(keys).into_response();
    if let Some(value) = shared.cache_control.lock().unwrap().as_deref() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
    }
    response
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *shared.down.lock().unwrap() {
        return status.into_response();
    }
    axum::Json(json!({
        "issuer": shared.base_url,
        "jwks_uri": format!("{}/jwks.json", shared.base_url),
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
    .into_response()
}

/// Returns the public JWK of the EC P-256 key `tests/keys/{name}-public.pem` with `kid`.
/// The DER form of such a key ends with the uncompressed point: 0x04, then 32 bytes of
/// `x` and 32 bytes of `y`.
pub fn ec_p256_jwk(name: &str, kid: &str) -> Value {
    let pem = String::from_utf8(super::test_key(&format!("{name}-public.pem"))).unwrap();
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    let point = &der[der.len() - 64..];
    json!({
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "alg": "ES256",
        "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[..32]),
        "y": URL_SAFE_NO_PAD.encode(&point[32..]),
    })
}

/// Wraps JWKs into a JWK Set.
pub fn key_set(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// Signs `claims` with ES256 using the private key `tests/keys/{name}-private.pem`, and
/// names `kid` in the header.
pub fn sign_es256(name: &str, kid: &str, claims: &Value) -> String {
    let pem = super::test_key(&format!("{name}-private.pem"));
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
    let header = jsonwebtoken::Header {
        kid: Some(kid.to_owned()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}
