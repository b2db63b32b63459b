//! Development issuer: an ES256 key pair generated on first use into a git-ignored
//! folder, and tokens minted with it for the quickstart and for local testing.
//!
//! DEVELOPMENT ONLY. Anyone who can read the private key file can mint tokens that the
//! server accepts; production configs list only real issuers.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::config::{Config, IssuerConfig, KeySource};

/// File name of the private key, beside the development issuer's JWKS file.
pub const PRIVATE_KEY_FILE: &str = "dev-private-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("no development issuer is configured; add an `[[issuer]]` with `development = true`")]
    NoDevelopmentIssuer,
    #[error(
        "no development issuer is named `{0}`; `--issuer` takes the `name` of an issuer with `development = true`"
    )]
    UnknownDevelopmentIssuer(String),
    #[error("development issuer `{0}` must have exactly one key, a `jwks` file, and allow `ES256`")]
    Shape(String),
    #[error("failed to write development key `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to read development private key `{path}`: {source}; delete the folder to generate a new key pair"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to generate or use the development key: {0}")]
    Crypto(String),
}

/// Generates the key pair of every development issuer whose JWKS file does not exist yet.
pub fn ensure_keys(config: &Config) -> Result<(), DevKeyError> {
    for issuer in config.development_issuers() {
        let jwks_path = jwks_path(issuer)?;
        if !jwks_path.exists() {
            generate(jwks_path)?;
            tracing::info!(issuer = %issuer.name, path = %jwks_path.display(), "generated development key pair");
        }
    }
    Ok(())
}

fn jwks_path(issuer: &IssuerConfig) -> Result<&Path, DevKeyError> {
    match issuer.keys.as_slice() {
        [KeySource::Jwks { path }] if issuer.algorithms.contains(&Algorithm::ES256) => Ok(path),
        _ => Err(DevKeyError::Shape(issuer.name.clone())),
    }
}

fn private_key_path(jwks_path: &Path) -> PathBuf {
    jwks_path.with_file_name(PRIVATE_KEY_FILE)
}

fn generate(jwks_path: &Path) -> Result<(), DevKeyError> {
    let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|err| DevKeyError::Crypto(err.to_string()))?;
    let pkcs8 = key_pair
        .to_pkcs8v1()
        .map_err(|err| DevKeyError::Crypto(err.to_string()))?;
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
        .map_err(|err| DevKeyError::Crypto(err.to_string()))?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256);
    jwk.common.key_id = Some(kid.chars().take(16).collect());
    let jwks = json!({ "keys": [jwk] });

    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DevKeyError::Write { path, source }
    };
    if let Some(dir) = jwks_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    let private_path = private_key_path(jwks_path);
    write_private(&private_path, &pem_encode("PRIVATE KEY", pkcs8.as_ref()))
        .map_err(write_error(&private_path))?;
    let text =
        serde_json::to_string_pretty(&jwks).map_err(|err| DevKeyError::Crypto(err.to_string()))?;
    std::fs::write(jwks_path, text + "\n").map_err(write_error(jwks_path))?;
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Claims and lifetime of a minted token, besides `iss`, `aud`, `iat` and `exp`.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub subject: String,
    /// Extra claims; they may override the defaults, for testing odd tokens.
    pub claims: Map<String, Value>,
    pub lifetime_seconds: i64,
    /// Name of the development issuer to use when several are configured.
    pub issuer: Option<String>,
}

/// Mints a token signed with a development issuer's key.
pub fn mint(config: &Config, request: &TokenRequest) -> Result<String, DevKeyError> {
    let issuer = config
        .development_issuers()
        .find(|issuer| {
            request
                .issuer
                .as_ref()
                .is_none_or(|name| &issuer.name == name)
        })
        .ok_or_else(|| match &request.issuer {
            Some(name) => DevKeyError::UnknownDevelopmentIssuer(name.clone()),
            None => DevKeyError::NoDevelopmentIssuer,
        })?;
    ensure_keys(config)?;
    let jwks_path = jwks_path(issuer)?;
    let private_path = private_key_path(jwks_path);
    let pem = std::fs::read(&private_path).map_err(|source| DevKeyError::Read {
        path: private_path.clone(),
        source,
    })?;
    let key = EncodingKey::from_ec_pem(&pem).map_err(|err| DevKeyError::Crypto(err.to_string()))?;
    let kid = std::fs::read_to_string(jwks_path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|jwks| jwks.pointer("/keys/0/kid")?.as_str().map(str::to_owned));

    let now = jiff::Timestamp::now().as_second();
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(issuer.issuer.clone()));
    if let Some(audience) = issuer.audiences.first() {
        claims.insert("aud".into(), Value::from(audience.clone()));
    }
    claims.insert("sub".into(), Value::from(request.subject.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + request.lifetime_seconds));
    claims.extend(request.claims.clone());

    let header = Header {
        kid,
        ..Header::new(Algorithm::ES256)
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|err| DevKeyError::Crypto(err.to_string()))
}
