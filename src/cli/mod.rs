//! Command-line interface: one file per subcommand. Each `run` returns the exit code.

pub mod api_key;
pub mod authorize;
mod output;
pub mod replay;
pub mod serve;
pub mod test;
pub mod token;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "cedargate",
    version,
    about = "A policy decision point for APIs: verified JWT in, Cedar decision out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve `POST /authorize` on the configured address, reloading the bundle on change.
    Serve(serve::ServeArgs),
    /// Parse and strictly validate policies, schema, entities and the mapping.
    Validate(validate::ValidateArgs),
    /// Make one decision offline and print the response as `POST /authorize` would.
    Authorize(Box<authorize::AuthorizeArgs>),
    /// Mint a token signed by the development issuer.
    Token(token::TokenArgs),
    /// Run policy test files (cedargate's YAML or JSON, or Cedar CLI `run-tests` files).
    Test(test::TestArgs),
    /// Generate an API key and the entry that stores its hash in the keys file.
    ApiKey(api_key::ApiKeyArgs),
    /// Replay a decision log against a candidate bundle and report the decisions that change.
    Replay(replay::ReplayArgs),
}

/// The config file option every subcommand shares.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Path of the configuration file.
    #[arg(
        long,
        short = 'c',
        default_value = "cedargate.toml",
        env = "CEDARGATE_CONFIG"
    )]
    pub config: PathBuf,
}

impl ConfigArgs {
    /// Loads the config, printing the error on failure.
    pub fn load(&self) -> Result<Config, ExitCode> {
        Config::load(&self.config).map_err(|err| {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_ERROR)
        })
    }
}

/// Exit code for a failure to run: bad config, invalid bundle, unreadable input.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `authorize` for a deny, as the Cedar CLI uses it.
pub const EXIT_DENY: u8 = 2;

/// Runs the parsed command.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Authorize(args) => authorize::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Test(args) => test::run(&args),
        Command::ApiKey(args) => api_key::run(&args),
        Command::Replay(args) => replay::run(&args),
    }
}
