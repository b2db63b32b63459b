//! `cedargate token`: mints a development token.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value};

use super::output::print_line;
use super::{ConfigArgs, EXIT_ERROR};
use crate::dev::{self, TokenRequest};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The `sub` claim.
    #[arg(long)]
    pub sub: String,
    /// An extra claim as KEY=VALUE. VALUE is read as JSON when it parses (`5`, `true`,
    /// `["a","b"]`), otherwise as a string. Repeat for more claims.
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    /// Name of the development issuer, when the config has several.
    #[arg(long)]
    pub issuer: Option<String>,
}

fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has an empty claim name"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
    Ok((key.to_owned(), value))
}

pub fn run(args: &TokenArgs) -> ExitCode {
    let config = match args.config.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let request = TokenRequest {
        subject: args.sub.clone(),
        claims: args.claims.iter().cloned().collect::<Map<_, _>>(),
        lifetime_seconds: args.ttl,
        issuer: args.issuer.clone(),
    };
    match dev::mint(&config, &request) {
        Ok(token) => match print_line(&token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
