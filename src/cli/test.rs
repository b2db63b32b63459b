//! `cedargate test`: runs policy test files through the decision path and reports like
//! `cargo test`. Reads cedargate's own test files (YAML or JSON) and the Cedar CLI's
//! `run-tests` files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::output::print_line;
use super::validate::Format;
use super::{ConfigArgs, EXIT_ERROR};
use crate::bundle::{self, Bundle, Diagnostic, EntityLoading, LoadOptions, PolicyIds, Severity};
use crate::config::{BundleConfig, Config, OnForbidError};
use crate::decide::{Pdp, Snapshot};
use crate::mapping::Mapping;
use crate::suite::report::RunReport;
use crate::suite::{FileError, cases, read_file, run_tests};

/// Folder searched when no path is given.
pub const DEFAULT_TESTS: &str = "tests/policies";

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Test files, or folders searched recursively for `*.yaml`, `*.yml` and `*.json`.
    #[arg(default_value = DEFAULT_TESTS)]
    pub paths: Vec<PathBuf>,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List the policies that no case made determining.
    #[arg(long)]
    pub coverage: bool,
    /// Cedar CLI mode: test this policy file instead of the config's bundle, with the
    /// Cedar CLI's policy IDs and Cedar's handling of erroring policies. Only `run-tests`
    /// files can run in this mode.
    #[arg(long, requires = "schema", value_name = "FILE")]
    pub policies: Option<PathBuf>,
    /// Cedar CLI mode: the schema of `--policies`.
    #[arg(long, requires = "policies", value_name = "FILE")]
    pub schema: Option<PathBuf>,
}

/// The bundle the tests run against, and how.
struct Target {
    /// The config and the decision point, absent in Cedar CLI mode.
    server: Option<(Config, Pdp)>,
    bundle_config: BundleConfig,
    options: LoadOptions,
    validation: Vec<Diagnostic>,
    on_forbid_error: OnForbidError,
}

pub fn run(args: &TestArgs) -> ExitCode {
    let target = match target(args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let files = match collect_files(&args.paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_ERROR);
        }
    };

    let mut report = RunReport::default();
    for file in &files {
        match run_file(&target, file) {
            Ok(results) => report.add_cases(results),
            Err(error) => report.add_file_error(error),
        }
    }
    report.finish();
    if args.coverage {
        match base_bundle(&target) {
            Ok(bundle) => report.compute_coverage(&bundle),
            Err(message) => eprintln!("error: {message}"),
        }
    }

    if let Some(path) = &args.junit
        && let Err(err) = std::fs::write(path, report.to_junit())
    {
        eprintln!("error: failed to write `{}`: {err}", path.display());
        return ExitCode::from(EXIT_ERROR);
    }
    match args.format {
        Format::Text => {
            let text = report.to_text();
            if let Err(code) = print_line(text.strip_suffix('\n').unwrap_or(&text)) {
                return code;
            }
        }
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
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// Loads the config (or, in Cedar CLI mode, nothing) and checks that the bundle loads.
fn target(args: &TestArgs) -> Result<Target, String> {
    if let (Some(policies), Some(schema)) = (&args.policies, &args.schema) {
        // The Cedar CLI's `run-tests` brings entities with each test, so no store is read.
        let bundle_config = BundleConfig::new(policies.clone(), schema.clone(), schema.clone());
        let options = LoadOptions {
            ids: PolicyIds::CedarCli,
            entities: EntityLoading::Skip,
            ..LoadOptions::default()
        };
        let validation = check_loads(&bundle_config, options)?;
        return Ok(Target {
            server: None,
            bundle_config,
            options,
            validation,
            on_forbid_error: OnForbidError::Skip,
        });
    }

    let config = Config::load(&args.config.config).map_err(|err| format!("error: {err}"))?;
    crate::dev::ensure_keys(&config).map_err(|err| format!("error: {err}"))?;
    let options = LoadOptions::default();
    let validation = check_loads(&config.bundle, options)?;
    let pdp = Pdp::new(config.clone()).map_err(|err| format!("error: {err}"))?;
    Ok(Target {
        bundle_config: config.bundle.clone(),
        on_forbid_error: config.decision.on_forbid_error,
        server: Some((config, pdp)),
        options,
        validation,
    })
}

/// Loads the bundle once to report its errors up front; returns its validation findings.
fn check_loads(config: &BundleConfig, options: LoadOptions) -> Result<Vec<Diagnostic>, String> {
    let outcome = bundle::load_with(config, options);
    if outcome.bundle.is_none() {
        let errors: Vec<String> = outcome
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(Diagnostic::render)
            .collect();
        return Err(format!(
            "{}\nthe bundle is invalid; `cedargate validate` shows the same errors",
            errors.join("\n")
        ));
    }
    Ok(outcome.validation)
}

fn base_bundle(target: &Target) -> Result<Bundle, String> {
    bundle::load_with(&target.bundle_config, target.options)
        .bundle
        .ok_or_else(|| "the bundle failed to load for coverage".to_owned())
}

/// Runs one file, after telling its format from its content.
fn run_file(target: &Target, file: &Path) -> Result<Vec<crate::suite::CaseResult>, FileError> {
    let text = read_file(file)?;
    crate::suite::limits::check_nesting(file, &text)?;
    let is_json = file.extension().is_some_and(|ext| ext == "json");
    let bundle = base_bundle(target).map_err(|message| FileError::new(file, None, message))?;

    if is_json && run_tests::is_run_tests_file(&text) {
        return run_tests::run_file(
            file,
            &text,
            &bundle,
            &target.validation,
            target.on_forbid_error,
        );
    }
    let Some((config, pdp)) = &target.server else {
        return Err(FileError::new(
            file,
            None,
            "not a Cedar `run-tests` file; cedargate's own test files need the config's claim mapping, so run them without `--policies`",
        ));
    };

    let suite = cases::parse(file, &text)?;
    let mut bundle = bundle;
    if !suite.entities.is_empty() {
        let is_json = file.extension().is_some_and(|ext| ext == "json");
        let entity_lines = crate::suite::lines::sequence_items(&text, is_json, "entities");
        let mut extra = Vec::with_capacity(suite.entities.len());
        for (index, json) in suite.entities.iter().enumerate() {
            let entity = cedar_policy::Entity::from_json_value(json.clone(), Some(&bundle.schema))
                .map_err(|err| {
                    FileError::new(
                        file,
                        entity_lines.item(index),
                        format!(
                            "entities[{index}]: {}",
                            crate::bundle::diagnostics::error_chain(&err)
                        ),
                    )
                })?;
            extra.push(entity);
        }
        bundle = bundle
            .with_entities(extra, config.bundle.policy_index)
            .map_err(|message| {
                FileError::new(file, entity_lines.key, format!("entities: {message}"))
            })?;
    }
    let mapping = Mapping::new(config, &bundle)
        .map_err(|problems| FileError::new(&config.path, None, problems.join("; ")))?;
    pdp.publish(Snapshot { bundle, mapping });
    let snapshot = pdp
        .snapshot()
        .ok_or_else(|| FileError::new(file, None, "no bundle is loaded"))?;
    cases::run(file, &text, suite, pdp, &snapshot)
}

/// Lists the test files: each file given, and the `*.yaml`, `*.yml` and `*.json` files
/// under each folder given, recursively, in a stable order, hidden entries skipped.
fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).map_err(|err| format!("`{}`: {err}", path.display()))?;
        if metadata.is_dir() {
            let before = files.len();
            walk(path, 0, &mut files)?;
            if files.len() == before {
                return Err(format!(
                    "no test files (`*.yaml`, `*.yml`, `*.json`) under `{}`",
                    path.display()
                ));
            }
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Folder levels searched below a given folder, so a symlink loop ends.
const MAX_DEPTH: usize = 16;

fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "`{}` is nested more than {MAX_DEPTH} folder levels deep; check for a symlink loop",
            dir.display()
        ));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|err| format!("`{}`: {err}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, depth + 1, files)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
        {
            files.push(path);
        }
    }
    Ok(())
}
