//! API keys: opaque keys that callers present instead of a token, each naming a principal
//! entity of the entity store.
//!
//! The keys file lists only the SHA-256 hash of each key, so a copy of the file gives no
//! working key. A presented key is hashed and looked up by its hash, and the stored hash
//! is compared in constant time. Messages about the file never quote a hash or a key,
//! because a key pasted into the wrong field would otherwise reach the logs.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Entities, EntityId, EntityTypeName, EntityUid};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Severity;
use super::diagnostics::Diagnostic;

/// Prefix of the keys that `cedargate api-key` generates, so that secret scanners and
/// people can recognize them.
pub const KEY_PREFIX: &str = "cgk_";

/// Maximum key length in bytes. Generated keys have 47.
pub const MAX_KEY_BYTES: usize = 256;

/// SHA-256 hash of a key. Equality runs in constant time, so comparing a stored hash
/// with the hash of a presented key takes the same time wherever they differ.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Hashes a key as presented: its UTF-8 bytes, without any trimming.
    pub fn of_key(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads 64 hexadecimal digits, in either case.
    pub fn from_hex(text: &str) -> Option<Self> {
        // `from_str_radix` alone would also take a sign, as in `+a`.
        if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Writes the hash as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// One key of the file: its name for logs, its principal and when it stops working.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub principal: EntityUid,
    pub expires: Option<jiff::Timestamp>,
}

/// Reason a presented API key was rejected. Each kind has a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("malformed API key: {0}")]
    Malformed(String),
    #[error("API key is not valid: it is unknown, or it was revoked")]
    Unknown,
    #[error("API key `{id}` expired at {expires}")]
    Expired {
        id: String,
        expires: jiff::Timestamp,
    },
    #[error("this server accepts no API keys (`bundle.api_keys` is not set)")]
    NotConfigured,
}

impl ApiKeyError {
    /// Returns the reason code sent to callers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unknown | Self::NotConfigured => "invalid_api_key",
            Self::Expired { .. } => "expired_api_key",
        }
    }
}

/// The keys of one bundle, by hash. `None` inside means the bundle has no keys file.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: Option<HashMap<KeyHash, ApiKey>>,
}

impl ApiKeys {
    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.as_ref().map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns whether the bundle has a keys file.
    pub fn is_configured(&self) -> bool {
        self.by_hash.is_some()
    }

    /// Finds the key that `presented` is, at time `now`.
    pub fn find(&self, presented: &str, now: jiff::Timestamp) -> Result<&ApiKey, ApiKeyError> {
        let by_hash = self.by_hash.as_ref().ok_or(ApiKeyError::NotConfigured)?;
        check_format(presented)?;
        let key = by_hash
            .get(&KeyHash::of_key(presented))
            .ok_or(ApiKeyError::Unknown)?;
        match key.expires {
            Some(expires) if now >= expires => Err(ApiKeyError::Expired {
                id: key.id.clone(),
                expires,
            }),
            _ => Ok(key),
        }
    }
}

/// Checks the form every key has: 1 to 256 bytes of printable ASCII without spaces.
pub fn check_format(presented: &str) -> Result<(), ApiKeyError> {
    if presented.is_empty() {
        return Err(ApiKeyError::Malformed("the key is empty".into()));
    }
    if presented.len() > MAX_KEY_BYTES {
        return Err(ApiKeyError::Malformed(format!(
            "the key is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    if !presented.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ApiKeyError::Malformed(
            "the key contains a character that is not printable ASCII, or a space".into(),
        ));
    }
    Ok(())
}

/// One entry of the keys file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    id: String,
    sha256: String,
    principal: RawUid,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUid {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
}

/// Parses and checks the keys file `text` read from `path`. Each key's principal must be
/// an entity of `entities`. Problems go to `diagnostics`; the keys are returned when
/// there was no error.
pub fn parse(
    path: &Path,
    text: &str,
    entities: &Entities,
    now: jiff::Timestamp,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ApiKeys> {
    let raw: Vec<RawApiKey> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            let mut diagnostic = Diagnostic::error(
                Some(path),
                format!("invalid API keys file: {err}"),
            )
            .with_help(Some(
                "write a JSON array of `{\"id\": ..., \"sha256\": ..., \"principal\": {\"type\": ..., \"id\": ...}}`; `cedargate api-key` prints one entry".into(),
            ));
            diagnostic.line = Some(err.line());
            diagnostic.column = Some(err.column());
            diagnostics.push(diagnostic);
            return None;
        }
    };

    let errors_before = error_count(diagnostics);
    let mut by_hash: HashMap<KeyHash, ApiKey> = HashMap::with_capacity(raw.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let line = nth_key_line(text, "\"sha256\"", index);
        let mut report = |severity: Severity, message: String| {
            diagnostics.push(Diagnostic {
                severity,
                line,
                ..Diagnostic::error(
                    Some(path),
                    format!("API key [{index}] `{}`: {message}", entry.id),
                )
            });
        };

        if entry.id.is_empty() {
            report(
                Severity::Error,
                "`id` is empty; give each key a name for logs".into(),
            );
        }
        if let Some(first) = ids.insert(entry.id.clone(), index) {
            report(
                Severity::Error,
                format!("the id is also used by key [{first}]"),
            );
        }
        let Some(hash) = KeyHash::from_hex(&entry.sha256) else {
            report(
                Severity::Error,
                format!(
                    "`sha256` must be 64 hexadecimal digits, the SHA-256 hash of the key as `cedargate api-key` prints it; found {} characters. Never write the key itself into this file",
                    entry.sha256.chars().count()
                ),
            );
            continue;
        };
        let principal = match principal_uid(&entry.principal) {
            Ok(uid) => uid,
            Err(message) => {
                report(Severity::Error, message);
                continue;
            }
        };
        if entities.get(&principal).is_none() {
            report(
                Severity::Error,
                format!(
                    "principal `{principal}` is not an entity of the entities files; add it there with its attributes and parents"
                ),
            );
        }
        let expires = match entry.expires.as_deref().map(jiff::Timestamp::from_str) {
            None => None,
            Some(Ok(expires)) => Some(expires),
            Some(Err(err)) => {
                report(
                    Severity::Error,
                    format!(
                        "`expires` is not an RFC 3339 time such as `2027-01-31T00:00:00Z`: {err}"
                    ),
                );
                continue;
            }
        };
        if let Some(expires) = expires.filter(|expires| now >= *expires) {
            report(
                Severity::Warning,
                format!("expired at {expires}, so it no longer works; remove it"),
            );
        }

        let key = ApiKey {
            id: entry.id,
            principal,
            expires,
        };
        if let Some(other) = by_hash.get(&hash) {
            let message = format!(
                "has the same hash as key `{}`, so both are the same key; remove one",
                other.id
            );
            diagnostics.push(Diagnostic {
                line,
                ..Diagnostic::error(
                    Some(path),
                    format!("API key [{index}] `{}`: {message}", key.id),
                )
            });
            continue;
        }
        by_hash.insert(hash, key);
    }

    (error_count(diagnostics) == errors_before).then_some(ApiKeys {
        by_hash: Some(by_hash),
    })
}

fn error_count(diagnostics: &[Diagnostic]) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

fn principal_uid(raw: &RawUid) -> Result<EntityUid, String> {
    let entity_type = EntityTypeName::from_str(&raw.entity_type).map_err(|_| {
        format!(
            "principal type `{}` is not a Cedar entity type name such as `Crm::Service`",
            raw.entity_type
        )
    })?;
    Ok(EntityUid::from_type_name_and_id(
        entity_type,
        EntityId::new(&raw.id),
    ))
}

/// Returns the 1-based line of the `index`-th occurrence of `needle`, a good enough anchor
/// for an entry's line in hand-written files.
fn nth_key_line(text: &str, needle: &str, index: usize) -> Option<usize> {
    let (offset, _) = text.match_indices(needle).nth(index)?;
    let before = text.get(..offset)?;
    Some(before.matches('\n').count() + 1)
}

/// Generates a new key: the prefix and 32 random bytes in base64url, 256 bits in all.
pub fn generate_key() -> Result<String, String> {
    use base64::Engine as _;

    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_owned())?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{KEY_PREFIX}{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        // SHA-256 of "abc", from FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(KeyHash::of_key("abc").to_hex(), expected);
        assert!(KeyHash::from_hex(expected) == Some(KeyHash::of_key("abc")));
        assert!(KeyHash::from_hex(&expected.to_uppercase()) == Some(KeyHash::of_key("abc")));
    }

    #[test]
    fn hash_hex_rejects_other_text() {
        assert!(KeyHash::from_hex("").is_none());
        assert!(KeyHash::from_hex(&"a".repeat(63)).is_none());
        assert!(KeyHash::from_hex(&"g".repeat(64)).is_none());
        assert!(KeyHash::from_hex(&"+a".repeat(32)).is_none());
        // 64 bytes, but not 64 characters of ASCII.
        assert!(KeyHash::from_hex(&"é".repeat(32)).is_none());
    }

    #[test]
    fn generated_keys_differ() {
        let first = generate_key().unwrap_or_default();
        let second = generate_key().unwrap_or_default();
        assert!(first.starts_with(KEY_PREFIX));
        assert_eq!(first.len(), KEY_PREFIX.len() + 43);
        assert_ne!(first, second);
        assert!(check_format(&first).is_ok());
    }

    #[test]
    fn malformed_keys_rejected() {
        for key in ["", "with space", "tab\there", "ümlaut"] {
            assert!(
                matches!(check_format(key), Err(ApiKeyError::Malformed(_))),
                "{key:?}"
            );
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            check_format(&long),
            Err(ApiKeyError::Malformed(_))
        ));
        assert!(check_format(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    }
}
