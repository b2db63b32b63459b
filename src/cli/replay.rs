//! `cedargate replay`: checks a policy change against recorded decisions before deploy.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::output::print_line;
use super::validate::Format;
use super::{ConfigArgs, EXIT_DENY, EXIT_ERROR};
use crate::decide::load_snapshot_from;
use crate::replay::{Replay, Report};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A decision log file written by `cedargate serve`; repeat for rotated files.
    #[arg(long = "log", required = true)]
    pub logs: Vec<PathBuf>,
    /// The candidate bundle: a folder laid out like the config file's folder, whose
    /// `bundle` paths are read under it (`.` next to the config is the current bundle).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Exit with 0 even when decisions would change.
    #[arg(long)]
    pub accept_changes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exits with 0 when no decision changes (or `--accept-changes`), 2 when some would, and
/// 1 when the config, the candidate bundle or a log cannot be read.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let config = match args.config.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let config_dir = config.path.parent().unwrap_or(std::path::Path::new(""));
    let bundle_config = match config.bundle.rebased(config_dir, &args.bundle) {
        Ok(bundle_config) => bundle_config,
        Err(message) => {
            eprintln!("error: --bundle: {message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let (candidate, diagnostics) = load_snapshot_from(&config, &bundle_config);
    let Some(candidate) = candidate else {
        for diagnostic in &diagnostics {
            eprintln!("{}", diagnostic.render());
        }
        eprintln!("error: the candidate bundle is invalid; run `cedargate validate` on it");
        return ExitCode::from(EXIT_ERROR);
    };

    let mut replay = Replay::new(&candidate, config.decision.on_forbid_error);
    for path in &args.logs {
        let read = std::fs::File::open(path).and_then(|file| {
            replay.read(&path.display().to_string(), std::io::BufReader::new(file))
        });
        if let Err(err) = read {
            eprintln!(
                "error: failed to read decision log `{}`: {err}",
                path.display()
            );
            return ExitCode::from(EXIT_ERROR);
        }
    }
    let report = replay.finish();

    match args.format {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                if let Err(code) = print_line(&text) {
                    return code;
                }
            }
            Err(err) => {
                eprintln!("error: failed to write the report: {err}");
                return ExitCode::from(EXIT_ERROR);
            }
        },
        Format::Text => {
            let text = report_text(&report);
            if let Err(code) = print_line(text.strip_suffix('\n').unwrap_or(&text)) {
                return code;
            }
        }
    }
    if report.changed > 0 && !args.accept_changes {
        ExitCode::from(EXIT_DENY)
    } else {
        ExitCode::SUCCESS
    }
}

/// Renders the report for a terminal.
fn report_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} of {} decisions against revision {}: {} would change, {} unchanged ({} with other determining policies), {} skipped (rejected before evaluation), {} not replayable",
        report.replayed,
        report.lines,
        report.revision,
        report.changed,
        report.unchanged,
        report.policies_changed,
        report.skipped,
        report.unreplayable
    );
    let list = |policies: &[String]| {
        if policies.is_empty() {
            "(none)".to_owned()
        } else {
            policies.join(", ")
        }
    };
    for group in &report.changes {
        let requests = if group.count == 1 {
            "request"
        } else {
            "requests"
        };
        let _ = writeln!(
            out,
            "\n{}: {} -> {}, {} {requests}",
            group.action, group.from, group.to, group.count
        );
        let _ = writeln!(out, "  before: {}", list(&group.before));
        let _ = writeln!(out, "  after:  {}", list(&group.after));
        for example in &group.examples {
            let _ = writeln!(
                out,
                "  e.g. {} at {}: {} on {}",
                example.request_id,
                example.time,
                example.principal.as_deref().unwrap_or("-"),
                example.resource.as_deref().unwrap_or("-")
            );
        }
    }
    for line in &report.unreplayable_lines {
        let _ = writeln!(
            out,
            "\nnot replayable: {} ({}): {}",
            line.location,
            line.request_id.as_deref().unwrap_or("-"),
            line.reason
        );
    }
    out
}
