use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::Outcome;
use crate::diagnostics::{self, DiagnosticsReport, Severity};
use crate::policy::{PolicyLimits, PolicySource, load_policy};

/// Check a policy repository: YAML, fields, names, references, CEL, windows.
///
/// Prints every problem at once, each as `path:line:col: severity: message`.
/// Exits 0 when valid (warnings allowed), 1 when there are errors, 2 when
/// validation could not run.
#[derive(Args)]
pub struct ValidateArgs {
    /// A policy folder, a single file, or `REPO@REV` to read a git commit.
    #[arg(default_value = "policies")]
    path: String,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// `path:line:col: severity: message`, with the source line and a caret.
    Human,
    /// `{valid, errors, warnings, diagnostics: [{path, line, col, severity, message}]}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<Outcome> {
    let source = PolicySource::parse(&args.path);
    let load = load_policy(&source, &PolicyLimits::default())
        .with_context(|| format!("failed to validate {}", source.describe()))?;
    let errors = diagnostics::count(&load.diagnostics, Severity::Error);
    let warnings = diagnostics::count(&load.diagnostics, Severity::Warning);
    let output = match args.format {
        Format::Human => {
            let mut text = diagnostics::render_human(&load.diagnostics, &load.texts);
            let revision = load.commit.as_deref().map(|c| format!(" (commit {c})")).unwrap_or_default();
            text.push_str(&format!(
                "{}{revision}: {}, {}, {}\n",
                source.describe(),
                plural(load.documents, "document"),
                plural(errors, "error"),
                plural(warnings, "warning"),
            ));
            text
        }
        Format::Json => {
            let report = DiagnosticsReport { valid: errors == 0, errors, warnings, diagnostics: &load.diagnostics };
            serde_json::to_string_pretty(&report).context("failed to render the report")? + "\n"
        }
        Format::Github => diagnostics::render_github(&load.diagnostics),
    };
    std::io::stdout().write_all(output.as_bytes()).context("failed to write to stdout")?;
    Ok(if errors == 0 { Outcome::Success } else { Outcome::Problems })
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}
