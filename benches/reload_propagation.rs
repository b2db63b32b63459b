//! Reload propagation: the time from a file write to the first `/authorize` answer on the
//! new revision, for the event watcher (notify) and for poll mode, with the default
//! timings of `cedargate.toml` (debounce 100 ms, settle 50 ms, poll interval 1000 ms).
//!
//! Run with `cargo bench --bench reload_propagation`. `CEDARGATE_BENCH_SAMPLES=N` sets the
//! number of writes per mode (default 200 for notify, 100 for poll). It prints a Markdown
//! table for the "Reload propagation" section of `docs/benchmarks.md`.
//!
//! Each sample waits a random time (below the poll interval in poll mode), renames a
//! complete policy file over the old one (an atomic write, as editors and deploy tools do),
//! then sends requests back to back until one answers with the new revision. The latency counts from just before the rename to the end of that
//! answer, so it includes one request's round trip. Requests run on the same machine as
//! the server, so they compete with the reload for CPU.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Benchmark code may panic: a panic ends the run with a message.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;

/// The default bundle's paths; the timings are left at their defaults.
const NOTIFY_BUNDLE: &str = r#"policies = "policies"
schema = "schema/crm.cedarschema"
entities = "entities"
regions = "data/regions.toml""#;

/// How long one sample may take before the run fails.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let samples = |default: usize| {
        std::env::var("CEDARGATE_BENCH_SAMPLES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let poll_bundle = format!("{NOTIFY_BUNDLE}\npoll = true");
    let notify = runtime.block_on(measure(
        NOTIFY_BUNDLE,
        samples(200),
        Duration::from_millis(300),
    ));
    let poll = runtime.block_on(measure(
        &poll_bundle,
        samples(100),
        Duration::from_millis(1_000),
    ));

    println!("| mode | samples | median | p99 | min | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (mode, latencies) in [("notify", notify), ("poll", poll)] {
        println!(
            "| {mode} | {} | {} | {} | {} | {} |",
            latencies.len(),
            millis(percentile(&latencies, 50)),
            millis(percentile(&latencies, 99)),
            millis(latencies[0]),
            millis(latencies[latencies.len() - 1]),
        );
    }
}

/// Starts a server with `bundle_toml` and returns the sorted propagation latencies of
/// `count` writes, each after a random pause below `pause_limit`.
async fn measure(bundle_toml: &str, count: usize, pause_limit: Duration) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let config = common::write_test_config(dir.path(), "", bundle_toml);
    let server = TestServer::start(config).await;
    common::reload::wait_for_first_reload(&server).await;

    // Two contents that alternate; the revision of each is learned from the first write.
    let path = dir.path().join("policies/legal-hold.cedar");
    let with_hold = std::fs::read(&path).unwrap();
    let contents = [b"// The legal hold is lifted.\n".to_vec(), with_hold];
    let token = common::mint(&common::user_claims("erin", common::reload::exporter()));
    let mut revisions = [
        String::new(),
        answer(&server, &token).await["revision"].to_string(),
    ];

    let mut latencies = Vec::with_capacity(count);
    for sample in 0..count + 1 {
        let next = sample % 2;
        let previous = revisions[1 - next].clone();
        // A random pause first, so writes fall at random points of the poll interval
        // instead of right after the scan that found the previous write.
        tokio::time::sleep(random_below(pause_limit)).await;
        let started = Instant::now();
        write_atomically(dir.path(), &contents[next]);
        loop {
            let revision = answer(&server, &token).await["revision"].to_string();
            if revision != previous {
                if sample == 0 {
                    revisions[next] = revision;
                } else {
                    assert_eq!(revision, revisions[next], "an unexpected revision");
                    latencies.push(started.elapsed());
                }
                break;
            }
            assert!(
                started.elapsed() < SAMPLE_DEADLINE,
                "no new revision within {SAMPLE_DEADLINE:?}"
            );
        }
    }
    server.stop().await;
    latencies.sort();
    latencies
}

async fn answer(server: &TestServer, token: &str) -> Value {
    let body =
        json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": "c-2001" } });
    let (status, _, answer) = server.authorize(Some(token), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn write_atomically(dir: &Path, contents: &[u8]) {
    let staging = dir.join(".staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, dir.join("policies/legal-hold.cedar")).unwrap();
}

/// Returns a random duration below `limit`, from the standard library's random hash keys.
fn random_below(limit: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let limit_ms = u64::try_from(limit.as_millis()).unwrap().max(1);
    Duration::from_millis(random % limit_ms)
}

/// Returns the nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}
