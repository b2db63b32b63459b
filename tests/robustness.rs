//! The server under hostile or unusual input: stored principals, slow clients, garbage
//! tokens and bodies. Every response must be a deny with a reason, never a 5xx.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test code may panic: a panic is how a test fails.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

fn read_body(id: &str) -> Value {
    json!({ "action": "read", "resource": { "type": "Crm::Customer", "id": id } })
}

#[tokio::test]
async fn token_principal_replaces_stored_entity() {
    let (dir, config) = common::default_bundle_copy("");
    // A stored alice in another department and with the editor role; the token carries
    // sales and no role. The token must win for every attribute and parent.
    let stored = json!([{
        "uid": { "type": "Crm::User", "id": "alice" },
        "attrs": { "department": { "__entity": { "type": "Crm::Department", "id": "support" } }, "scopes": [] },
        "parents": [{ "type": "Crm::Role", "id": "crm-editor" }]
    }]);
    std::fs::write(dir.path().join("entities/users.json"), stored.to_string()).unwrap();
    let server = common::TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let token = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales" }),
    ));

    let (_, _, own) = server.authorize(Some(&token), &read_body("c-1001")).await;
    assert_eq!(own["decision"], "allow", "{own}");
    let (_, _, stored_department) = server.authorize(Some(&token), &read_body("c-1002")).await;
    assert_eq!(stored_department["decision"], "deny", "{stored_department}");
    let update =
        json!({ "action": "update", "resource": { "type": "Crm::Customer", "id": "c-1001" } });
    let (_, _, stored_role) = server.authorize(Some(&token), &update).await;
    assert_eq!(stored_role["decision"], "deny", "{stored_role}");
    server.stop().await;
}

#[tokio::test]
async fn stalled_body_times_out() {
    let (_dir, config) = common::default_bundle_copy("request_timeout_ms = 300");
    let server = common::TestServer::start(config).await;
    let addr = server.addr;

    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Promise 100 bytes of body and send none.
        let head = "POST /authorize HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap();

    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"decision\":\"deny\""), "{response}");
    server.stop().await;
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

#[tokio::test]
async fn garbage_input_always_denied() {
    let (_dir, config) = common::default_bundle_copy("max_body_bytes = 4096");
    let server = common::TestServer::start(config).await;
    let valid = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales" }),
    ));
    let token_alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=+/ ";
    let json_alphabet = b"{}[]\":,0123456789.eE-+truefalsnul \\u{}actionresourcetypeid";
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);

    for round in 0..300 {
        let len = (random.next() % 600) as usize;
        let token = match round % 4 {
            0 => String::from_utf8(random.bytes(len, token_alphabet)).unwrap(),
            // Valid token with one character changed.
            1 => {
                let mut bytes = valid.clone().into_bytes();
                let at = (random.next() as usize) % bytes.len();
                bytes[at] = token_alphabet[(random.next() as usize) % token_alphabet.len()];
                String::from_utf8(bytes).unwrap()
            }
            _ => valid.clone(),
        };
        let body_len = (random.next() % 6000) as usize;
        let body = random.bytes(body_len, json_alphabet);

        let mut request = server
            .client
            .post(server.url("/authorize"))
            .body(body.clone());
        if !token.trim().is_empty() {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            [200, 400, 401, 413].contains(&status.as_u16()),
            "round {round}: status {status}, body {:?}",
            String::from_utf8_lossy(&body)
        );
        if status != 200 {
            assert_eq!(answer["decision"], "deny", "round {round}: {answer}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn deeply_nested_context_rejected() {
    let (_dir, config) = common::default_bundle_copy("");
    let server = common::TestServer::start(config).await;
    let token = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales" }),
    ));
    let depth = 20_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(
        r#"{{"action":"read","resource":{{"type":"Crm::Customer","id":"c-1001"}},"context":{{"purpose":{nested}}}}}"#
    );

    let response = server
        .client
        .post(server.url("/authorize"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["decision"], "deny");
    server.stop().await;
}

/// Opens a connection, sends `prefix`, then waits for the server to close it. Returns how
/// long that took, or `None` if the server kept it open for `limit`.
fn time_until_closed(
    addr: std::net::SocketAddr,
    prefix: &[u8],
    limit: Duration,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(prefix).unwrap();
    let mut buffer = Vec::new();
    match stream.read_to_end(&mut buffer) {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_or_idle_connections_closed() {
    let (_dir, config) = common::default_bundle_copy("request_timeout_ms = 300");
    let server = common::TestServer::start(config).await;
    let addr = server.addr;

    let cases: [(&str, &[u8]); 2] = [
        ("idle connection", b""),
        (
            "partial request head",
            b"POST /authorize HTTP/1.1\r\nHost: te",
        ),
    ];
    for (name, prefix) in cases {
        let closed = tokio::task::spawn_blocking(move || {
            time_until_closed(addr, prefix, Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert!(closed.is_some(), "{name}: still open after 5 s");
    }
    server.stop().await;
}

#[tokio::test]
async fn connection_limit_holds_extra_clients() {
    let (_dir, config) =
        common::default_bundle_copy("request_timeout_ms = 400\nmax_connections = 2");
    let server = common::TestServer::start(config).await;
    let addr = server.addr;

    // Two idle connections take both places; the server closes them after the timeout,
    // and only then is a third client served.
    let idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status(), 200);
    assert!(
        waited >= Duration::from_millis(200),
        "served after {waited:?}, before a place was free"
    );
    drop(idle);
    server.stop().await;
}

#[tokio::test]
async fn declared_oversize_body_refused_at_once() {
    let (_dir, config) =
        common::default_bundle_copy("request_timeout_ms = 3000\nmax_body_bytes = 1024");
    let server = common::TestServer::start(config).await;
    let addr = server.addr;

    let (response, elapsed) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Declare ten megabytes and send none of them.
        let head = "POST /authorize HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        let mut buffer = [0_u8; 4096];
        let read = stream.read(&mut buffer).unwrap_or(0);
        (
            String::from_utf8_lossy(&buffer[..read]).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();

    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        elapsed < Duration::from_secs(2),
        "refused only after {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unread_responses_free_connection() {
    let (_dir, config) =
        common::default_bundle_copy("request_timeout_ms = 500\nmax_connections = 1");
    let server = common::TestServer::start(config).await;
    let addr = server.addr;

    // Pipeline requests whose 404 responses repeat a long path, and never read them, so
    // the server's writes stall once the socket buffers are full.
    let writer = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let request = format!("GET /{} HTTP/1.1\r\nHost: test\r\n\r\n", "a".repeat(30_000));
        for _ in 0..2_000 {
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = std::time::Instant::now();
    let response = server
        .client
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served after {:?}",
        started.elapsed()
    );
    writer.join().unwrap();
    server.stop().await;
}
