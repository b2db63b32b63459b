//! `cedargate validate`: the deploy gate.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::output::print_line;
use super::{ConfigArgs, EXIT_ERROR};
use crate::bundle::{Diagnostic, Severity};
use crate::decide::load_snapshot;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Fail when there are warnings, not only errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let config = match crate::config::Config::load(&args.config.config) {
        Ok(config) => config,
        Err(err) => {
            if args.format == Format::Json {
                let path = &args.config.config;
                let mut diagnostic = crate::bundle::Diagnostic::error(Some(path), err.to_string());
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if let Some((line, column)) = err.position(&text) {
                    diagnostic.line = Some(line);
                    diagnostic.column = Some(column);
                }
                let output = json!({
                    "valid": false,
                    "errors": 1,
                    "warnings": 0,
                    "revision": null,
                    "diagnostics": [diagnostic],
                });
                if let Err(code) = print_line(&format!("{output:#}")) {
                    return code;
                }
            } else {
                eprintln!("error: {err}");
            }
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // Key files are part of what a deploy ships, so they are checked too. A development
    // issuer's key is generated here if missing, as `serve` would.
    let mut diagnostics = Vec::new();
    let keys = crate::dev::ensure_keys(&config)
        .map_err(|err| err.to_string())
        .and_then(|()| crate::token::Verifier::from_config(&config).map_err(|err| err.to_string()));
    if let Err(message) = keys {
        diagnostics.push(crate::bundle::Diagnostic::error(
            Some(&config.path),
            message,
        ));
    }
    let (snapshot, bundle_diagnostics) = load_snapshot(&config);
    diagnostics.extend(bundle_diagnostics);

    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let valid = errors == 0 && !(args.deny_warnings && warnings > 0);

    let revision = snapshot.as_ref().map(|s| s.bundle.revision.as_str());
    let policies = snapshot.as_ref().map_or(0, |s| s.bundle.policy_info.len());
    match args.format {
        Format::Text => {
            if let Err(code) = print_text(&diagnostics, valid, revision, policies) {
                return code;
            }
        }
        Format::Json => {
            let output = json!({
                "valid": valid,
                "errors": errors,
                "warnings": warnings,
                "revision": revision,
                "diagnostics": diagnostics,
            });
            if let Err(code) = print_line(&format!("{output:#}")) {
                return code;
            }
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// Prints the diagnostics and a summary line for a terminal.
fn print_text(
    diagnostics: &[Diagnostic],
    valid: bool,
    revision: Option<&str>,
    policies: usize,
) -> Result<(), ExitCode> {
    for diagnostic in diagnostics {
        eprintln!("{}\n", diagnostic.render());
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = plural(diagnostics.len() - errors, "warning");
    match (revision, valid) {
        (Some(revision), true) => print_line(&format!(
            "valid: {}, revision {revision} ({warnings})",
            plural(policies, "policy")
        )),
        _ => {
            eprintln!("invalid: {} and {warnings}", plural(errors, "error"));
            Ok(())
        }
    }
}

fn plural(count: usize, noun: &str) -> String {
    match (count, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "policy") => format!("{count} policies"),
        _ => format!("{count} {noun}s"),
    }
}
