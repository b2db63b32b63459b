//! cedargate: a policy decision point for APIs.
//!
//! The data path runs in one direction, one module per stage:
//!
//! ```text
//! HTTP request ─► token ─► mapping ─► engine ─► answer + decision log
//!   (http)       verify    claims and  Cedar
//!                the JWT   metadata    is_authorized
//!                          to a Cedar  on the current
//!                          request     bundle
//! ```
//!
//! - [`config`]: the configuration file, validated at start.
//! - [`token`]: JWT verification against the configured issuers.
//! - [`mapping`]: claims and request metadata to a Cedar request and principal entity.
//! - [`engine`]: evaluation, with the fail-closed rule for erroring `forbid` policies.
//! - [`decide`]: [`decide::Pdp::decide`], the one function that runs the whole path; the
//!   HTTP handler and the CLI both call it.
//! - [`cedar_request`]: requests written in Cedar's own terms (entity UIDs and a Cedar
//!   context), decided by the engine without the claim mapping.
//! - [`suite`]: policy test files (cedargate's own, Cedar CLI `run-tests`, Cedar's
//!   integration tests) run through the decision path.
//! - [`decision_log`]: one JSON line per decision, with redaction, on a background writer.
//! - [`explain`]: per-policy results for requests that ask for `debug`.
//! - [`metrics`] and [`inventory`]: Prometheus metrics and the policy listing with hit counts.
//! - [`bundle`]: loading and validating policies, schema, entities and the region table.
//! - [`reload`]: watching the bundle's files and swapping in valid new bundles.
//! - [`http`] and [`server`]: the axum routes, startup and graceful shutdown.
//! - [`dev`]: the development issuer's key pair and token minting.
//! - [`cli`]: one module per subcommand.
//!
//! Lower layers never import higher ones: `bundle` and `config` know nothing of HTTP or
//! the CLI.

pub mod bundle;
pub mod cedar_request;
pub mod cli;
pub mod config;
pub mod decide;
pub mod decision_log;
pub mod dev;
pub mod engine;
pub mod explain;
pub mod http;
pub mod inventory;
pub mod mapping;
pub mod metrics;
pub mod reload;
pub mod replay;
pub mod server;
pub mod suite;
pub mod token;
