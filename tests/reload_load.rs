//! No torn or blocked decisions: clients send `/authorize` requests without pause while
//! the bundle on disk alternates between two revisions 100 times. Every answer must be a
//! 200 whose decision is the one its reported revision gives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use common::TestServer;
use common::reload::{exporter, revision, status, wait_for_first_reload, wait_for_status};

/// Number of times the bundle changes revision.
const SWITCHES: usize = 100;
/// Clients sending requests at the same time.
const CLIENTS: usize = 4;

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    answers: usize,
    /// Answers per revision, for the two revisions in turn.
    per_revision: [usize; 2],
    /// Every answer that was not a 200 with the decision of its revision.
    wrong: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_match_revision_during_reloads() {
    // A short debounce and settle interval, so 100 reloads take a few seconds.
    let dir = tempfile::tempdir().unwrap();
    common::copy_default_bundle(dir.path());
    let bundle = r#"policies = "policies"
schema = "schema/crm.cedarschema"
entities = "entities"
regions = "data/regions.toml"
debounce_ms = 10
settle_ms = 5"#;
    let config = common::write_test_config(dir.path(), "", bundle);
    let server = Arc::new(TestServer::start(config).await);
    wait_for_first_reload(&server).await;

    // Revision A has the legal-hold forbid, so exporting `c-2001` is denied. Revision B
    // lifts it, so the export scope allows it.
    let path = dir.path().join("policies/legal-hold.cedar");
    let with_hold = std::fs::read(&path).unwrap();
    let without_hold = b"// The legal hold is lifted.\n".to_vec();
    let contents = [with_hold, without_hold];
    let expected = ["deny", "allow"];
    let revision_a = revision(&status(&server).await);
    write_atomically(dir.path(), &contents[1]);
    let revision_b = revision(
        &wait_for_status(&server, "revision B", |status| {
            status["bundle"]["revision"] != revision_a.as_str()
        })
        .await,
    );
    let revisions = [revision_a, revision_b];

    let stop = Arc::new(AtomicBool::new(false));
    let token = common::mint(&common::user_claims("erin", exporter()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let server = Arc::clone(&server);
            let stop = Arc::clone(&stop);
            let token = token.clone();
            let revisions = revisions.clone();
            tokio::spawn(
                async move { send_until(&server, &token, &stop, &revisions, expected).await },
            )
        })
        .collect();

    // Revision B serves now; each switch writes the other one and waits until it serves.
    for switch in 0..SWITCHES {
        let next = switch % 2;
        write_atomically(dir.path(), &contents[next]);
        wait_for_status(&server, "the next revision", |status| {
            status["bundle"]["revision"] == revisions[next].as_str()
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for client in clients {
        let tally = client.await.unwrap();
        total.answers += tally.answers;
        total.per_revision[0] += tally.per_revision[0];
        total.per_revision[1] += tally.per_revision[1];
        total.wrong.extend(tally.wrong);
    }
    assert!(
        total.wrong.is_empty(),
        "{} of {} answers were wrong, the first ones:\n{}",
        total.wrong.len(),
        total.answers,
        total
            .wrong
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Both revisions answered, so the load did overlap the switches.
    assert!(
        total.per_revision.iter().all(|count| *count > 0),
        "answers per revision: {:?}",
        total.per_revision
    );
    let last = status(&server).await;
    assert_eq!(last["stale"], false, "{last:#}");
    assert_eq!(last["reloads"]["failed"], 0, "{last:#}");
    Arc::into_inner(server).unwrap().stop().await;
}

/// Sends export requests for `c-2001` until `stop` is set, checking each answer.
async fn send_until(
    server: &TestServer,
    token: &str,
    stop: &AtomicBool,
    revisions: &[String; 2],
    expected: [&str; 2],
) -> Tally {
    let body =
        json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": "c-2001" } });
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let response = server
            .client
            .post(server.url("/authorize"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        tally.answers += 1;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                tally.wrong.push(format!("request failed: {err}"));
                continue;
            }
        };
        let code = response.status();
        let answer: Value = match response.json().await {
            Ok(answer) => answer,
            Err(err) => {
                tally.wrong.push(format!("{code}: body is not JSON: {err}"));
                continue;
            }
        };
        let index = revisions
            .iter()
            .position(|revision| answer["revision"] == revision.as_str());
        match index {
            Some(index) if code == 200 && answer["decision"] == expected[index] => {
                tally.per_revision[index] += 1;
            }
            _ => tally.wrong.push(format!("{code}: {answer}")),
        }
    }
    tally
}

/// Replaces the legal-hold policy file by renaming a complete file over it.
fn write_atomically(dir: &std::path::Path, contents: &[u8]) {
    let staging = dir.join(".staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, dir.join("policies/legal-hold.cedar")).unwrap();
}
