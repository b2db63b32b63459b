//! The policy inventory: how often each policy decided a request and when it last did,
//! and the listing of `GET /policies`.
//!
//! Counts are kept by policy ID across reloads, so a policy that keeps its ID keeps its
//! count. They start at zero when the server starts.

use std::collections::HashMap;
use std::sync::Mutex;

use cedar_policy::Effect;
use serde::Serialize;

use crate::bundle::Bundle;

/// Hits of one policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyHits {
    pub hits: u64,
    pub last_hit: Option<jiff::Timestamp>,
}

/// Hit counts of every policy that decided a request since the server started.
#[derive(Debug, Default)]
pub struct PolicyStats {
    hits: Mutex<HashMap<String, PolicyHits>>,
}

impl PolicyStats {
    /// Counts a hit for each determining policy of a decision made at `time`.
    pub fn record(&self, policies: &[String], time: jiff::Timestamp) {
        if policies.is_empty() {
            return;
        }
        let Ok(mut hits) = self.hits.lock() else {
            return;
        };
        for policy in policies {
            let entry = match hits.get_mut(policy) {
                Some(entry) => entry,
                None => hits.entry(policy.clone()).or_default(),
            };
            entry.hits += 1;
            entry.last_hit = Some(entry.last_hit.map_or(time, |last| last.max(time)));
        }
    }

    /// Returns a copy of every count, sorted by policy ID.
    pub fn snapshot(&self) -> Vec<(String, PolicyHits)> {
        let mut all: Vec<(String, PolicyHits)> = self
            .hits
            .lock()
            .map(|hits| hits.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// One policy in the `GET /policies` listing.
#[derive(Debug, Serialize)]
pub struct PolicyEntry {
    pub id: String,
    pub file: String,
    pub line: usize,
    pub effect: &'static str,
    /// The template a linked policy was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub annotations: serde_json::Map<String, serde_json::Value>,
    pub hits: u64,
    pub last_hit: Option<String>,
}

/// Lists every policy of `bundle` (templates are not policies until linked) with its
/// source, annotations and hits, sorted by file and line.
pub fn list(bundle: &Bundle, stats: &PolicyStats) -> Vec<PolicyEntry> {
    let hits: HashMap<String, PolicyHits> = stats.snapshot().into_iter().collect();
    let mut entries: Vec<PolicyEntry> = bundle
        .policies
        .policies()
        .map(|policy| {
            let id = policy.id().to_string();
            let info = bundle.policy_info.get(policy.id());
            let counted = hits.get(&id).cloned().unwrap_or_default();
            PolicyEntry {
                file: info
                    .map(|i| i.file.display().to_string())
                    .unwrap_or_default(),
                line: info.map_or(0, |i| i.line),
                effect: match policy.effect() {
                    Effect::Permit => "permit",
                    Effect::Forbid => "forbid",
                },
                template: policy.template_id().map(ToString::to_string),
                annotations: policy
                    .annotations()
                    .map(|(key, value)| (key.to_owned(), serde_json::Value::from(value)))
                    .collect(),
                hits: counted.hits,
                last_hit: counted.last_hit.map(|time| time.to_string()),
                id,
            }
        })
        .collect();
    entries.sort_by(|a, b| (&a.file, a.line, &a.id).cmp(&(&b.file, b.line, &b.id)));
    entries
}
