//! The decision log: one line per decision with the documented fields, redaction, and no
//! token or secret in any output of a server that verified tokens.

// Test code may panic: a failed unwrap, expect or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};
use sha2::Digest;

/// `[server]` text for `default_bundle_copy` that also writes the decision log to a file
/// in the test folder.
const LOG_TO_FILE: &str = "\n[decision_log]\noutput = \"file\"\npath = \"decisions.log\"\n";

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("failed to read `{}`: {err}", path.display()));
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("log line is not JSON: {err}: {line}"))
        })
        .collect()
}

fn line_for<'a>(lines: &'a [Value], answer: &Value) -> &'a Value {
    let id = &answer["request_id"];
    let found: Vec<&Value> = lines.iter().filter(|l| &l["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one line for request {id} in {lines:#?}");
    found[0]
}

fn export(id: &str) -> Value {
    json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": id } })
}

/// The fields every line has, whatever the decision.
const FIELDS: [&str; 19] = [
    "time",
    "request_id",
    "revision",
    "decision",
    "deny",
    "policies",
    "errors",
    "reasons",
    "error",
    "latency_us",
    "issuer",
    "sub",
    "jti",
    "client_ip",
    "principal",
    "action",
    "resource",
    "request",
    "redacted",
];

#[tokio::test]
async fn line_per_decision_kind() {
    let (dir, config) = common::default_bundle_copy(LOG_TO_FILE);
    let server = TestServer::start(config).await;
    server.pdp.set_fixed_time(Some(common::business_hours()));
    let claims = common::user_claims(
        "alice",
        json!({
            "department": "sales",
            "scope": "customers:export",
            "groups": ["crm-editor"],
            "email": "alice@example.com",
            "jti": "token-1",
        }),
    );
    let token = common::mint(&claims);

    let update = json!({ "action": "update", "resource": { "type": "Crm::Customer", "id": "c-1001" },
                         "context": { "purpose": "support" } });
    let (_, _, allow) = server.authorize(Some(&token), &update).await;
    let (_, _, forbid) = server.authorize(Some(&token), &export("c-2001")).await;
    let (status, _, bad_token) = server
        .authorize(Some(&format!("{token}x")), &export("c-1001"))
        .await;
    assert_eq!(status, 401);
    let invalid_body =
        json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": 5 } });
    let (status, _, bad_request) = server.authorize(Some(&token), &invalid_body).await;
    assert_eq!(status, 400);
    let (status, _, no_token) = server.authorize(None, &export("c-1001")).await;
    assert_eq!(status, 401);
    server.stop().await;

    let lines = read_lines(&dir.path().join("decisions.log"));
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for line in &lines {
        for field in FIELDS {
            assert!(
                line.get(field).is_some(),
                "field `{field}` missing: {line:#}"
            );
        }
        assert!(line["latency_us"].is_u64(), "{line:#}");
        assert_eq!(line["time"], "2026-03-02T09:00:00Z", "{line:#}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line:#}");
    }

    let line = line_for(&lines, &allow);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["deny"], Value::Null);
    assert_eq!(line["policies"], json!(["update-by-editor-role"]));
    assert_eq!(line["revision"], allow["revision"]);
    assert_eq!(line["issuer"], "test");
    assert_eq!(line["sub"], "alice");
    assert_eq!(line["jti"], "token-1");
    assert_eq!(line["principal"], r#"Crm::User::"alice""#);
    assert_eq!(line["action"], r#"Crm::Action::"update""#);
    assert_eq!(line["resource"], r#"Crm::Customer::"c-1001""#);
    // The Cedar request in Cedar's JSON entity and context formats.
    let request = &line["request"];
    assert_eq!(
        request["principal"]["uid"],
        json!({ "type": "Crm::User", "id": "alice" })
    );
    let attrs = &request["principal"]["attrs"];
    assert_eq!(
        attrs["department"],
        json!({ "__entity": { "type": "Crm::Department", "id": "sales" } })
    );
    assert_eq!(attrs["email"], "alice@example.com");
    assert_eq!(attrs["scopes"], json!(["customers:export"]));
    assert_eq!(
        request["principal"]["parents"],
        json!([{ "type": "Crm::Role", "id": "crm-editor" }])
    );
    assert_eq!(
        request["action"],
        json!({ "__entity": { "type": "Crm::Action", "id": "update" } })
    );
    assert_eq!(
        request["resource"],
        json!({ "__entity": { "type": "Crm::Customer", "id": "c-1001" } })
    );
    let context = &request["context"];
    assert_eq!(context["caller"], json!({ "purpose": "support" }));
    assert_eq!(context["region"], "eu-central");
    assert_eq!(context["hour"], 10);
    assert_eq!(context["weekday"], 1);
    assert_eq!(
        context["ip"],
        json!({ "__extn": { "fn": "ip", "arg": "127.0.0.1" } })
    );

    let line = line_for(&lines, &forbid);
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["deny"], "forbid");
    assert_eq!(line["policies"], json!(["forbid-export-under-legal-hold"]));
    assert_eq!(
        line["reasons"],
        json!(["records under legal hold cannot be exported"])
    );
    assert!(line["request"].is_object(), "{line:#}");

    let line = line_for(&lines, &bad_token);
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["deny"], "token_invalid");
    assert_eq!(line["error"]["code"], "malformed", "{line:#}");
    assert_eq!(line["request"], Value::Null);
    assert_eq!(
        line["sub"],
        Value::Null,
        "an unverified token names no subject"
    );

    let line = line_for(&lines, &bad_request);
    assert_eq!(line["deny"], "request_invalid");
    assert_eq!(line["error"]["field"], "resource.id");
    assert_eq!(line["sub"], "alice");
    assert_eq!(line["request"], Value::Null);

    let line = line_for(&lines, &no_token);
    assert_eq!(line["deny"], "token_invalid");
    assert_eq!(line["error"]["code"], "missing_token");
}

#[tokio::test]
async fn redacted_fields_absent() {
    let log = format!(
        "{LOG_TO_FILE}redact = [\"principal.email\"]\nhash = [\"context.caller.purpose\"]\n"
    );
    let (dir, config) = common::default_bundle_copy(&log);
    let server = TestServer::start(config).await;
    let token = common::mint(&common::user_claims(
        "alice",
        json!({ "department": "sales", "scope": "customers:export", "email": "alice@example.com" }),
    ));
    let body = json!({ "action": "export", "resource": { "type": "Crm::Customer", "id": "c-1001" },
                       "context": { "purpose": "fraud-investigation" } });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["decision"], "allow");
    server.stop().await;

    let text = std::fs::read_to_string(dir.path().join("decisions.log")).unwrap();
    assert!(!text.contains("alice@example.com"), "{text}");
    assert!(!text.contains("fraud-investigation"), "{text}");
    let lines = read_lines(&dir.path().join("decisions.log"));
    let line = line_for(&lines, &answer);
    let attrs = &line["request"]["principal"]["attrs"];
    assert!(attrs.get("email").is_none(), "{line:#}");
    assert_eq!(attrs["department"]["__entity"]["id"], "sales");
    let digest = sha2::Sha256::digest(br#""fraud-investigation""#);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        line["request"]["context"]["caller"]["purpose"],
        format!("sha256:{hex}")
    );
    assert_eq!(
        line["redacted"],
        json!(["principal.email", "context.caller.purpose"])
    );
}

#[test]
fn redaction_path_must_name_field() {
    for (path, expected) in [
        ("email", "must start with `principal.`"),
        ("principal.", "names no field"),
        ("context", "names no field"),
    ] {
        let toml = format!("{LOG_TO_FILE}redact = [\"{path}\"]\n");
        let (dir, _) = common::default_bundle_copy("");
        let config_path = dir.path().join("cedargate.toml");
        let text = std::fs::read_to_string(&config_path).unwrap().replace(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:0\"\n{toml}"),
        );
        let err = cedargate::config::Config::from_toml(&config_path, &text)
            .err()
            .map(|err| err.to_string())
            .unwrap_or_default();
        assert!(err.contains("decision_log.redact"), "{path}: {err}");
        assert!(err.contains(expected), "{path}: {err}");
    }
}

// The whole output of a real server process that verified tokens.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_ready(server: &mut Server, client: &reqwest::Client, address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.0.stderr.take() {
                pipe.read_to_string(&mut stderr).unwrap();
            }
            panic!("server exited with {status} before it was ready:\n{stderr}");
        }
        let ready = client
            .get(format!("http://{address}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "server not ready within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_token_or_secret_in_output() {
    let (dir, _) = common::default_bundle_copy("");
    let secret = String::from_utf8(common::test_key("hmac-secret.txt")).unwrap();
    let secret = secret.trim().to_owned();
    std::fs::write(dir.path().join("hmac.txt"), &secret).unwrap();
    let config_path = dir.path().join("cedargate.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let hmac_issuer = r#"
[[issuer]]
name = "hmac"
issuer = "https://hmac.test"
audiences = ["customers-api"]
algorithms = ["HS256"]
keys = [{ secret_file = "hmac.txt" }]
"#;
    let text = text
        .replace("[principal]", &format!("{hmac_issuer}\n[principal]"))
        .replace(
            "listen = \"127.0.0.1:0\"\n",
            "listen = \"127.0.0.1:0\"\n[decision_log]\noutput = \"stdout\"\n",
        );
    std::fs::write(&config_path, text).unwrap();

    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir.path())
        .args(["serve", "--listen", &address.to_string()])
        // Every level of every module, so that no debug or trace line hides a leak.
        .env("CEDARGATE_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let client = reqwest::Client::new();
    wait_until_ready(&mut server, &client, address).await;

    let claims =
        json!({ "department": "sales", "scope": "customers:export", "email": "e@example.com" });
    let es256 = common::mint(&common::user_claims("alice", claims.clone()));
    let mut hmac_claims = common::user_claims("bob", claims);
    hmac_claims["iss"] = json!("https://hmac.test");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &hmac_claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut expired_claims = common::user_claims("carol", json!({ "department": "sales" }));
    expired_claims["exp"] = json!(1_000_000);
    let expired = common::mint(&expired_claims);
    let tokens = [
        es256.clone(),
        hs256.clone(),
        expired,
        format!("{es256}x"),
        format!("{hs256}x"),
        format!("{}.e30.", es256.split('.').next().unwrap()),
    ];

    for token in &tokens {
        for body in [export("c-1001"), export("c-2001"), json!({ "action": 1 })] {
            let response = client
                .post(format!("http://{address}/authorize"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_ne!(response.status(), 500);
        }
    }
    // A token in a header cedargate does not read, and one in another scheme.
    let response = client
        .post(format!("http://{address}/authorize"))
        .header("authorization", format!("Basic {es256}"))
        .header("x-api-token", &hs256)
        .json(&export("c-1001"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let pid = server.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "server still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();

    let decisions = out.lines().count();
    assert_eq!(
        decisions,
        tokens.len() * 3 + 1,
        "one line per decision:\n{out}"
    );
    assert!(
        err.contains("listening"),
        "the operational log was captured:\n{err}"
    );
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        for token in &tokens {
            for segment in token.split('.').filter(|s| s.len() > 8) {
                assert!(
                    !text.contains(segment),
                    "{name} contains part of a token: {segment}"
                );
            }
        }
        assert!(!text.contains(&secret), "{name} contains the HMAC secret");
        // The header value as a client sends it; error messages may say `bearer token`.
        assert!(
            !text.contains("Bearer ey"),
            "{name} contains an `Authorization` header"
        );
        assert!(
            !text.contains("Basic ey"),
            "{name} contains an `Authorization` header"
        );
    }
}

#[test]
fn misspelt_redaction_warns() {
    let (dir, _) = common::default_bundle_copy(&format!(
        "{LOG_TO_FILE}redact = [\"principal.emial\", \"principal.email\"]\nhash = [\"context.caller.purpose\", \"context.purpse\"]\n"
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir.path())
        .args(["validate", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "warnings alone pass");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let messages: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "warning")
        .map(|d| d["message"].as_str().unwrap())
        .filter(|m| m.starts_with("decision_log."))
        .collect();
    assert_eq!(messages.len(), 2, "{report:#}");
    assert!(messages[0].contains("`principal.emial`"), "{messages:?}");
    assert!(messages[1].contains("`context.purpse`"), "{messages:?}");
}
