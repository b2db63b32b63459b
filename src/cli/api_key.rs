//! `cedargate api-key`: generates an API key and the entry for the keys file.

use std::io::Read as _;
use std::process::ExitCode;
use std::str::FromStr;

use clap::Args;
use serde_json::json;

use super::EXIT_ERROR;
use super::output::print_line;
use crate::bundle::api_keys::{self, KeyHash};

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    /// The principal entity the key stands for, as TYPE::ID, such as
    /// `Crm::Service::billing-sync`. It must be in the entities files.
    #[arg(long, value_parser = parse_principal)]
    pub principal: (String, String),
    /// The key's name in the keys file and in decision logs. Defaults to `key-` and eight
    /// random hexadecimal digits.
    #[arg(long)]
    pub id: Option<String>,
    /// When the key stops working, in RFC 3339 (`2027-01-31T00:00:00Z`).
    #[arg(long)]
    pub expires: Option<jiff::Timestamp>,
    /// Read an existing key from standard input instead of generating one, to move keys
    /// issued elsewhere into the keys file. Surrounding whitespace is not part of the key.
    #[arg(long)]
    pub key_from_stdin: bool,
}

fn parse_principal(text: &str) -> Result<(String, String), String> {
    let (entity_type, id) = super::authorize::parse_resource(text)?;
    cedar_policy::EntityTypeName::from_str(&entity_type).map_err(|_| {
        format!("`{entity_type}` is not a Cedar entity type name such as `Crm::Service`")
    })?;
    Ok((entity_type, id))
}

pub fn run(args: &ApiKeyArgs) -> ExitCode {
    match entry(args) {
        Ok((key, entry)) => {
            if let Some(key) = key {
                if let Err(code) = print_line(&key) {
                    return code;
                }
                eprintln!(
                    "The first line is the new API key. Give it to the client now: it is stored nowhere else."
                );
            }
            if let Err(code) = print_line(&entry) {
                return code;
            }
            eprintln!("Add the entry to the API keys file that `bundle.api_keys` names.");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Returns the generated key (none when it was read from standard input) and the entry.
fn entry(args: &ApiKeyArgs) -> Result<(Option<String>, String), String> {
    let (key, generated) = if args.key_from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| format!("failed to read the key from standard input: {err}"))?;
        let key = text.trim().to_owned();
        api_keys::check_format(&key).map_err(|err| err.to_string())?;
        (key, false)
    } else {
        let key = api_keys::generate_key()?;
        (key, true)
    };
    let id = match &args.id {
        Some(id) if id.is_empty() => return Err("`--id` must not be empty".into()),
        Some(id) => id.clone(),
        None => default_id()?,
    };

    let (entity_type, principal_id) = &args.principal;
    let mut entry = json!({
        "id": id,
        "sha256": KeyHash::of_key(&key).to_hex(),
        "principal": { "type": entity_type, "id": principal_id },
    });
    if let (Some(expires), Some(object)) = (args.expires, entry.as_object_mut()) {
        object.insert("expires".into(), json!(expires.to_string()));
    }
    Ok((generated.then_some(key), entry.to_string()))
}

fn default_id() -> Result<String, String> {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_owned())?;
    let digits: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("key-{digits}"))
}
