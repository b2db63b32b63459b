//! Template links (`bundle.links`) through the public API. A linked policy decides the
//! requests its link binds, under its link ID. Each mistake in the links file is an error
//! that names the file and, where the mistake has one, the line. A template without a
//! link is a warning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use cedargate::bundle::{Diagnostic, LoadOutcome, Severity};
use cedargate::config::Config;
use cedargate::decide::{Answer, Credential, Pdp};
use cedargate::mapping::RequestMeta;
use common::TestServer;
use serde_json::json;
use tempfile::TempDir;

const SCHEMA: &str = r#"namespace Docs {
  entity User;
  entity Document;
  action view appliesTo { principal: [User], resource: [Document] };
}
"#;

/// One template with both slots, and one static policy for a user that no test requests,
/// so that only links decide the tests' requests. A bundle with no static or linked
/// policy is refused, because it would deny everything.
const POLICIES: &str = r#"// Lets the linked user view the linked document.
@id("viewer")
permit (
  principal == ?principal,
  action == Docs::Action::"view",
  resource == ?resource
);

@id("auditor-views-all")
permit (
  principal == Docs::User::"auditor",
  action == Docs::Action::"view",
  resource
);
"#;

const ENTITIES: &str = r#"[
  { "uid": { "type": "Docs::User", "id": "alice" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Docs::User", "id": "bob" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Docs::Document", "id": "plan" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Docs::Document", "id": "budget" }, "attrs": {}, "parents": [] }
]
"#;

/// Links Alice to `plan` with entity UID strings, as the Cedar CLI writes them, and Bob to
/// `budget` with `{"type", "id"}` objects.
const LINKS: &str = r#"[
  {
    "template_id": "viewer",
    "link_id": "alice-views-plan",
    "args": {
      "?principal": "Docs::User::\"alice\"",
      "?resource": "Docs::Document::\"plan\""
    }
  },
  {
    "template_id": "viewer",
    "link_id": "bob-views-budget",
    "args": {
      "?principal": { "type": "Docs::User", "id": "bob" },
      "?resource": { "type": "Docs::Document", "id": "budget" }
    }
  }
]
"#;

/// Writes the bundle, `links.json` with `links` unless it is `None`, and a
/// `cedargate.toml` whose issuer trusts the test EC P-256 key, into a new temporary folder.
fn bundle_dir(links: Option<&str>) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::create_dir(path.join("policies")).unwrap();
    std::fs::create_dir(path.join("entities")).unwrap();
    std::fs::write(path.join("schema.cedarschema"), SCHEMA).unwrap();
    std::fs::write(path.join("policies/docs.cedar"), POLICIES).unwrap();
    std::fs::write(path.join("entities/docs.json"), ENTITIES).unwrap();
    if let Some(links) = links {
        std::fs::write(path.join("links.json"), links).unwrap();
    }

    let key = common::repo_dir().join("tests/keys/ec-p256-public.pem");
    let links_line = if links.is_some() {
        "links = \"links.json\"\n"
    } else {
        ""
    };
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"

[bundle]
policies = "policies"
schema = "schema.cedarschema"
entities = "entities"
{links_line}watch = false

[decision]
action_type = "Docs::Action"

[[issuer]]
name = "test"
issuer = "{issuer}"
audiences = ["{audience}"]
algorithms = ["ES256"]
keys = [{{ pem = {key}, kid = "test-ec" }}]

[principal]
type = "Docs::User"
"#,
        issuer = common::TEST_ISSUER,
        audience = common::TEST_AUDIENCE,
        key = toml::Value::String(key.to_string_lossy().into_owned()),
    );
    std::fs::write(path.join("cedargate.toml"), config).unwrap();
    dir
}

fn load_config(dir: &Path) -> Config {
    Config::load(&dir.join("cedargate.toml")).unwrap()
}

/// Loads the bundle of `dir` with `cedargate::bundle::load`.
fn load_bundle(dir: &Path) -> LoadOutcome {
    cedargate::bundle::load(&load_config(dir).bundle)
}

/// Decides offline, with the claims trusted as given, whether `user` may view `document`.
fn decide(pdp: &Pdp, user: &str, document: &str) -> Answer {
    let claims = json!({ "sub": user });
    let body = json!({
        "action": "view",
        "resource": { "type": "Docs::Document", "id": document },
    });
    let meta = RequestMeta {
        client_ip: [127, 0, 0, 1].into(),
        time: jiff::Timestamp::now(),
        method: None,
        path: None,
    };
    pdp.decide(
        Credential::TrustedClaims(claims.as_object().unwrap()),
        body.to_string().as_bytes(),
        &meta,
    )
}

/// Formats diagnostics one per line, for assertion messages.
fn rendered(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Returns the 1-based line of the `occurrence`-th (0-based) line of `text` containing
/// `needle`.
fn line_of(text: &str, needle: &str, occurrence: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .nth(occurrence)
        .map(|(index, _)| index + 1)
        .unwrap_or_else(|| panic!("`{needle}` occurs fewer than {} times", occurrence + 1))
}

fn run_validate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(dir)
        .arg("validate")
        .args(args)
        .env_remove("CEDARGATE_CONFIG")
        .env_remove("CEDARGATE_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Formats the exit code and both streams, for assertion messages.
fn describe(output: &Output) -> String {
    format!(
        "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// Decisions

#[test]
fn link_decides_only_its_pair() {
    let dir = bundle_dir(Some(LINKS));
    let pdp = cedargate::server::prepare(load_config(dir.path())).unwrap();

    let cases = [
        ("alice", "plan", "allow"),
        ("bob", "budget", "allow"),
        ("alice", "budget", "deny"),
        ("bob", "plan", "deny"),
    ];
    for (user, document, expected) in cases {
        let answer = decide(&pdp, user, document);
        assert_eq!(
            answer.decision,
            expected,
            "{user} views {document}: {}",
            serde_json::to_string(&answer).unwrap()
        );
    }
}

#[test]
fn link_id_names_policy_offline() {
    let dir = bundle_dir(Some(LINKS));
    let pdp = cedargate::server::prepare(load_config(dir.path())).unwrap();

    let alice = decide(&pdp, "alice", "plan");
    assert_eq!(alice.policies, ["alice-views-plan"]);
    let bob = decide(&pdp, "bob", "budget");
    assert_eq!(bob.policies, ["bob-views-budget"]);
    let denied = decide(&pdp, "bob", "plan");
    assert!(denied.policies.is_empty(), "{:?}", denied.policies);
}

#[tokio::test]
async fn link_id_names_policy_over_http() {
    let dir = bundle_dir(Some(LINKS));
    let server = TestServer::start(load_config(dir.path())).await;

    let token = common::mint(&common::user_claims("alice", json!({})));
    let body = json!({
        "action": "view",
        "resource": { "type": "Docs::Document", "id": "plan" },
    });
    let (status, _, answer) = server.authorize(Some(&token), &body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["policies"], json!(["alice-views-plan"]), "{answer}");
    server.stop().await;
}

#[test]
fn linked_policy_placed_in_links_file() {
    let dir = bundle_dir(Some(LINKS));
    let outcome = load_bundle(dir.path());
    let bundle = outcome.bundle.expect("bundle failed to load");

    let info = &bundle.policy_info[&cedar_policy::PolicyId::new("bob-views-budget")];
    assert_eq!(info.file, dir.path().join("links.json"));
    assert_eq!(info.line, line_of(LINKS, "\"bob-views-budget\"", 0));
}

// Errors in the links file

/// A links file with one mistake, and the expected error.
struct BadLinks {
    name: &'static str,
    text: &'static str,
    /// Text the error message must contain.
    message: &'static str,
    /// The line the error must point at, given as a text on that line and its 0-based
    /// occurrence, or `None` where the error has no position.
    line: Option<(&'static str, usize)>,
}

const BAD_LINKS: &[BadLinks] = &[
    BadLinks {
        name: "unknown template",
        text: r#"[
  {
    "template_id": "editor",
    "link_id": "alice-edits-plan",
    "args": {
      "?principal": "Docs::User::\"alice\"",
      "?resource": "Docs::Document::\"plan\""
    }
  }
]
"#,
        message: "link [0]: cannot link template `editor` as `alice-edits-plan`",
        line: Some(("\"alice-edits-plan\"", 0)),
    },
    BadLinks {
        name: "unknown slot",
        text: r#"[
  {
    "template_id": "viewer",
    "link_id": "alice-views-plan",
    "args": {
      "?owner": "Docs::User::\"alice\"",
      "?resource": "Docs::Document::\"plan\""
    }
  }
]
"#,
        message: "link [0]: unknown slot `?owner`; use `?principal` or `?resource`",
        line: Some(("\"alice-views-plan\"", 0)),
    },
    BadLinks {
        name: "malformed entity UID",
        text: r#"[
  {
    "template_id": "viewer",
    "link_id": "alice-views-plan",
    "args": {
      "?principal": "alice",
      "?resource": "Docs::Document::\"plan\""
    }
  }
]
"#,
        message: "link [0]: `?principal`: `alice` is not an entity UID such as `User::\"alice\"`",
        line: Some(("\"alice-views-plan\"", 0)),
    },
    BadLinks {
        name: "duplicate link ID",
        text: r#"[
  {
    "template_id": "viewer",
    "link_id": "shared",
    "args": {
      "?principal": "Docs::User::\"alice\"",
      "?resource": "Docs::Document::\"plan\""
    }
  },
  {
    "template_id": "viewer",
    "link_id": "shared",
    "args": {
      "?principal": "Docs::User::\"bob\"",
      "?resource": "Docs::Document::\"budget\""
    }
  }
]
"#,
        message: "link [1]: cannot link template `viewer` as `shared`",
        // The second entry, not the first one that took the ID.
        line: Some(("\"shared\"", 1)),
    },
    BadLinks {
        name: "not an array",
        text: r#"{
  "template_id": "viewer",
  "link_id": "alice-views-plan",
  "args": {}
}
"#,
        message: "expected a JSON array of template links",
        line: None,
    },
    BadLinks {
        name: "invalid JSON",
        text: r#"[
  {
    "template_id": "viewer"
    "link_id": "alice-views-plan"
  }
]
"#,
        message: "invalid JSON: expected `,` or `}`",
        line: Some(("\"link_id\"", 0)),
    },
];

#[test]
fn bad_links_error_names_file_and_line() {
    for case in BAD_LINKS {
        let dir = bundle_dir(Some(case.text));
        let links = dir.path().join("links.json");
        let outcome = load_bundle(dir.path());
        let report = rendered(&outcome.diagnostics);

        assert!(outcome.bundle.is_none(), "{}: bundle loaded", case.name);
        let errors: Vec<&Diagnostic> = outcome.errors().collect();
        assert_eq!(errors.len(), 1, "{}: {report}", case.name);
        let error = errors[0];
        assert_eq!(
            error.file.as_deref(),
            Some(links.as_path()),
            "{}",
            case.name
        );
        assert!(
            error.message.contains(case.message),
            "{}: message does not contain `{}`: {report}",
            case.name,
            case.message
        );
        let expected_line = case
            .line
            .map(|(needle, occurrence)| line_of(case.text, needle, occurrence));
        assert_eq!(error.line, expected_line, "{}: {report}", case.name);
    }
}

/// A repeated link ID is reported at the entry that repeats it. It used to be placed at
/// the first entry, which took the ID without a problem.
#[test]
fn duplicate_link_id_rendered_at_repeat() {
    let case = BAD_LINKS
        .iter()
        .find(|case| case.name == "duplicate link ID")
        .unwrap();
    let dir = bundle_dir(Some(case.text));
    let outcome = load_bundle(dir.path());

    let error = outcome.errors().next().expect("no error");
    let text = error
        .render()
        .replace(&dir.path().display().to_string(), "DIR");
    let expected = r#"error: DIR/links.json:12:16: link [1]: cannot link template `viewer` as `shared`: unable to link template: template-linked policy id `shared` conflicts with an existing policy id
    |
 12 |     "link_id": "shared",
    |                ^^^^^^^^"#;
    assert_eq!(text, expected);
}

// Templates without links

#[test]
fn template_without_link_warns() {
    let dir = bundle_dir(None);
    let outcome = load_bundle(dir.path());
    let report = rendered(&outcome.diagnostics);

    assert!(outcome.bundle.is_some(), "{report}");
    assert_eq!(outcome.diagnostics.len(), 1, "{report}");
    let warning = &outcome.diagnostics[0];
    assert_eq!(warning.severity, Severity::Warning, "{report}");
    assert_eq!(
        warning.message,
        "template `viewer` has no links, so it never applies"
    );
    assert_eq!(
        warning.file.as_deref(),
        Some(dir.path().join("policies/docs.cedar").as_path())
    );
    assert_eq!(warning.line, Some(line_of(POLICIES, "@id(\"viewer\")", 0)));
}

#[test]
fn validate_deny_warnings_fails_on_unlinked_template() {
    let dir = bundle_dir(None);

    let lenient = run_validate(dir.path(), &[]);
    assert_eq!(lenient.status.code(), Some(0), "{}", describe(&lenient));
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(
        stderr.contains("template `viewer` has no links"),
        "{}",
        describe(&lenient)
    );

    let strict = run_validate(dir.path(), &["--deny-warnings"]);
    assert_eq!(strict.status.code(), Some(1), "{}", describe(&strict));
}

#[test]
fn only_unlinked_templates_refused() {
    let dir = bundle_dir(None);
    let template_only = POLICIES.split("@id(\"auditor-views-all\")").next().unwrap();
    std::fs::write(dir.path().join("policies/docs.cedar"), template_only).unwrap();

    let outcome = load_bundle(dir.path());
    assert!(
        outcome.bundle.is_none(),
        "a bundle that can only deny loaded"
    );
    let messages: Vec<String> = outcome.errors().map(|d| d.message.clone()).collect();
    assert!(
        messages.iter().any(|m| m.contains("no policies found")),
        "{messages:?}"
    );
}
