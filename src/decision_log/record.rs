//! The decision log line, written by the server and read back by `cedargate replay`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decide::AnswerError;
use crate::engine::{DenyKind, PolicyError};

/// One decision, as one JSON line.
///
/// `principal`, `action` and `resource` are Cedar entity UIDs in Cedar syntax
/// (`Crm::User::"alice"`) once the request was mapped. Before that, `action` is the id
/// the caller sent and `resource` is `Type::"id"` of the body, when the body was valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The time the decision was made for, in RFC 3339.
    pub time: String,
    pub request_id: String,
    pub revision: Option<String>,
    pub decision: String,
    /// The kind of deny; absent for an allow.
    #[serde(default)]
    pub deny: Option<DenyKind>,
    /// The determining policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Policies whose evaluation raised an error, with the messages.
    #[serde(default)]
    pub errors: Vec<PolicyError>,
    /// The `@reason` annotations of the policies that denied.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Why the request was rejected before the policies could decide it.
    #[serde(default)]
    pub error: Option<AnswerError>,
    #[serde(default)]
    pub latency_us: u64,
    /// The configured name of the issuer that verified the token.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The `id` of the API key from the keys file, never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    /// The Cedar request that the policies evaluated, present once the request was mapped.
    #[serde(default)]
    pub request: Option<CedarRequest>,
    /// The principal attributes and context keys that redaction removed or hashed.
    #[serde(default)]
    pub redacted: Vec<String>,
    /// The candidate bundle's decision, in shadow mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowOutcome>,
}

/// A Cedar request in Cedar's JSON formats: the principal as an entity (`uid`, `attrs`,
/// `parents`), the action and resource as entity UIDs (`type`, `id`), and the context
/// with explicit `__entity` and `__extn` escapes, so it reads back without a schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CedarRequest {
    pub principal: Value,
    pub action: Value,
    pub resource: Value,
    pub context: Value,
}

/// The decision of the candidate bundle in shadow mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowOutcome {
    pub revision: String,
    pub decision: String,
    #[serde(default)]
    pub deny: Option<DenyKind>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub errors: Vec<PolicyError>,
    /// Whether the decision or the determining policies differ from the active bundle's.
    pub differs: bool,
}
