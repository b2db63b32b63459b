//! Prometheus metrics for `GET /metrics`, in the Prometheus text format (version 0.0.4).
//!
//! Counters updated on the decision path live in [`Metrics`]. Values that other parts
//! of the server already keep (policy hits, token failures, reloads, the bundle, dropped
//! log lines) are read when the metrics are scraped, so there is one source for each.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decide::Pdp;

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(String, String)>;

/// Metrics updated on the decision path.
pub struct Metrics {
    decisions: Family<Labels, Counter>,
    latency: Histogram,
    shadow_differences: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            // 50 µs to about 1.6 s, doubling.
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            shadow_differences: Family::default(),
        }
    }
}

impl Metrics {
    /// Counts one decision. `action` is the action id of a mapped request, and empty for
    /// requests rejected before mapping, so callers cannot add label values at will.
    pub fn decision(&self, action: &str, decision: &str, deny: &str, seconds: f64) {
        let labels = vec![
            ("action".to_owned(), action.to_owned()),
            ("decision".to_owned(), decision.to_owned()),
            ("deny".to_owned(), deny.to_owned()),
        ];
        self.decisions.get_or_create(&labels).inc();
        self.latency.observe(seconds);
    }

    /// Counts a request on which the candidate bundle decided otherwise than the active one.
    pub fn shadow_difference(&self, action: &str, active: &str, candidate: &str) {
        let labels = vec![
            ("action".to_owned(), action.to_owned()),
            ("active".to_owned(), active.to_owned()),
            ("candidate".to_owned(), candidate.to_owned()),
        ];
        self.shadow_differences.get_or_create(&labels).inc();
    }
}

/// Renders every metric of `pdp` in the Prometheus text format.
pub fn render(pdp: &Pdp) -> Result<String, std::fmt::Error> {
    let metrics = pdp.metrics();
    let mut registry = Registry::default();
    registry.register(
        "cedargate_decisions",
        "Decisions by action id, decision and kind of deny",
        metrics.decisions.clone(),
    );
    registry.register(
        "cedargate_decision_latency_seconds",
        "Time spent on a decision, from reading the token to the answer",
        metrics.latency.clone(),
    );

    let hits = Family::<Labels, Counter>::default();
    for (policy, stats) in pdp.policy_stats().snapshot() {
        hits.get_or_create(&vec![("policy".to_owned(), policy)])
            .inc_by(stats.hits);
    }
    registry.register(
        "cedargate_policy_hits",
        "Decisions in which the policy was determining",
        hits,
    );

    let failures = Family::<Labels, Counter>::default();
    for (reason, count) in pdp.verifier().failures().snapshot() {
        failures
            .get_or_create(&vec![("reason".to_owned(), reason)])
            .inc_by(count);
    }
    registry.register(
        "cedargate_token_failures",
        "Rejected credentials by reason code",
        failures,
    );

    let reload = pdp.reload_status();
    let reloads = Family::<Labels, Counter>::default();
    for (result, count) in [("succeeded", reload.succeeded), ("failed", reload.failed)] {
        reloads
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc_by(count);
    }
    registry.register("cedargate_reloads", "Bundle reloads by result", reloads);

    let dropped = Counter::<u64>::default();
    dropped.inc_by(pdp.decision_log.dropped());
    registry.register(
        "cedargate_decision_log_dropped",
        "Decision log lines dropped because the queue was full or writing failed",
        dropped,
    );

    register_bundle(&mut registry, pdp);
    registry.register(
        "cedargate_shadow_differences",
        "Requests on which the shadow bundle decided otherwise, by action and both decisions",
        metrics.shadow_differences.clone(),
    );

    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Registers the gauges that describe the serving and the shadow bundle.
fn register_bundle(registry: &mut Registry, pdp: &Pdp) {
    let revision = Family::<Labels, Gauge>::default();
    let policies = Gauge::<i64>::default();
    let entities = Gauge::<i64>::default();
    if let Some(snapshot) = pdp.snapshot() {
        let bundle = &snapshot.bundle;
        revision
            .get_or_create(&vec![
                ("bundle".to_owned(), "active".to_owned()),
                ("revision".to_owned(), bundle.revision.clone()),
            ])
            .set(1);
        policies.set(i64::try_from(bundle.policies.policies().count()).unwrap_or(i64::MAX));
        // Cedar adds the schema's actions to the store; only the bundle's data counts here.
        let action_type = &pdp.config.decision.action_type;
        let data = bundle
            .entities
            .iter()
            .filter(|entity| entity.uid().type_name().to_string() != *action_type)
            .count();
        entities.set(i64::try_from(data).unwrap_or(i64::MAX));
    }
    if let Some(shadow) = pdp.shadow() {
        revision
            .get_or_create(&vec![
                ("bundle".to_owned(), "shadow".to_owned()),
                ("revision".to_owned(), shadow.bundle.revision.clone()),
            ])
            .set(1);
    }
    registry.register(
        "cedargate_bundle_revision",
        "Always 1, labelled with the revision of the active bundle and, in shadow mode, the shadow bundle",
        revision,
    );
    registry.register(
        "cedargate_policies",
        "Policies of the active bundle, template links included",
        policies,
    );
    registry.register(
        "cedargate_entities",
        "Entities loaded from the active bundle's entity files",
        entities,
    );
}
