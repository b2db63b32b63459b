//! `cedargate authorize`: one decision offline, through the same path as the server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

use super::output::print_line;
use super::{ConfigArgs, EXIT_DENY, EXIT_ERROR};
use crate::decide::Credential;
use crate::mapping::RequestMeta;

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The bearer token to verify.
    #[arg(
        long,
        group = "credential",
        env = "CEDARGATE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// An API key to look up in the bundle's keys file.
    #[arg(
        long,
        group = "credential",
        env = "CEDARGATE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// A JSON file of claims to use as if they came from a verified token (`-` reads
    /// standard input). For testing policies; the signature step is skipped.
    #[arg(long, group = "credential")]
    pub claims: Option<PathBuf>,
    /// A file with the request body of `POST /authorize` (`-` reads standard input).
    #[arg(long, conflicts_with_all = ["action", "resource"])]
    pub request: Option<PathBuf>,
    /// The action id, such as `read`.
    #[arg(long)]
    pub action: Option<String>,
    /// The resource as TYPE::ID, such as `Crm::Customer::c-1001`.
    #[arg(long, value_parser = parse_resource)]
    pub resource: Option<(String, String)>,
    /// The caller's context as a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// The client IP address the decision is made for.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The time the decision is made at, in RFC 3339 (`2026-03-02T10:00:00+01:00`);
    /// tokens are checked against it too. Defaults to now.
    #[arg(long)]
    pub at: Option<jiff::Timestamp>,
    /// HTTP method of the API call being authorized.
    #[arg(long)]
    pub method: Option<String>,
    /// Path of the API call being authorized.
    #[arg(long)]
    pub path: Option<String>,
}

/// Splits `Crm::Customer::c-1001` at the last `::` into type and id.
pub(super) fn parse_resource(text: &str) -> Result<(String, String), String> {
    let (entity_type, id) = text
        .rsplit_once("::")
        .ok_or_else(|| format!("`{text}` is not TYPE::ID, such as `Crm::Customer::c-1001`"))?;
    Ok((entity_type.to_owned(), id.to_owned()))
}

pub fn run(args: &AuthorizeArgs) -> ExitCode {
    let config = match args.config.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let pdp = match crate::server::prepare(config) {
        Ok(pdp) => pdp,
        Err(crate::server::StartError::Bundle(diagnostics)) => {
            for diagnostic in &diagnostics {
                eprintln!("{}", diagnostic.render());
            }
            return ExitCode::from(EXIT_ERROR);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    if args.token.is_some() {
        fetch_remote_keys(&pdp);
    }
    let body = match request_body(args) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let claims = match args.claims.as_ref().map(read_claims).transpose() {
        Ok(claims) => claims,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let credential = match (&args.token, &args.api_key, &claims) {
        (Some(token), _, _) => Credential::Bearer(token.trim()),
        (None, Some(key), _) => Credential::ApiKey(key.trim()),
        (None, None, Some(claims)) => Credential::TrustedClaims(claims),
        (None, None, None) => Credential::Missing,
    };
    let meta = RequestMeta {
        client_ip: args.ip,
        time: args.at.unwrap_or_else(jiff::Timestamp::now),
        method: None,
        path: None,
    };

    let answer = pdp.decide(credential, &body, &meta);
    match serde_json::to_string_pretty(&answer) {
        Ok(text) => {
            if let Err(code) = print_line(&text) {
                return code;
            }
        }
        Err(err) => {
            eprintln!("error: failed to write the response: {err}");
            return ExitCode::from(EXIT_ERROR);
        }
    }
    if answer.is_allow() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENY)
    }
}

/// Fetches the remote key sets once, since no background refresh runs here. A failed
/// fetch is logged, and the token is then rejected with `keys_unavailable`.
fn fetch_remote_keys(pdp: &crate::decide::Pdp) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(pdp.verifier().fetch_keys_once()),
        Err(err) => eprintln!("error: failed to start the runtime that fetches key sets: {err}"),
    }
}

fn read_input(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|err| format!("failed to read standard input: {err}"))
    } else {
        std::fs::read_to_string(path)
            .map_err(|err| format!("failed to read `{}`: {err}", path.display()))
    }
}

fn read_claims(path: &PathBuf) -> Result<Map<String, Value>, String> {
    let text = read_input(path)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) => Err(format!(
            "`{}` is not a JSON object of claims",
            path.display()
        )),
        Err(err) => Err(format!("`{}` is not JSON: {err}", path.display())),
    }
}

fn request_body(args: &AuthorizeArgs) -> Result<Vec<u8>, String> {
    if let Some(path) = &args.request {
        return read_input(path).map(String::into_bytes);
    }
    let (Some(action), Some((entity_type, id))) = (&args.action, &args.resource) else {
        return Err("give `--request FILE`, or `--action` and `--resource`".into());
    };
    let context = match &args.context {
        Some(text) => Value::Object(
            crate::mapping::parse_context(text)
                .map_err(|err| format!("`--context` is not a JSON object: {err}"))?,
        ),
        None => json!({}),
    };
    let mut body = json!({
        "action": action,
        "resource": { "type": entity_type, "id": id },
        "context": context,
    });
    if let (Some(method), Some(object)) = (&args.method, body.as_object_mut()) {
        object.insert("method".into(), Value::from(method.as_str()));
    }
    if let (Some(path), Some(object)) = (&args.path, body.as_object_mut()) {
        object.insert("path".into(), Value::from(path.as_str()));
    }
    serde_json::to_vec(&body).map_err(|err| err.to_string())
}
