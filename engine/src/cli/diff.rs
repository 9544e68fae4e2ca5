use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::Outcome;
use super::plan::{PlanInputs, cell, short};
use crate::diagnostics::{self, Diagnostic, Severity};
use crate::plan::CompiledPolicy;
use crate::plan::diff::{PlanDiff, diff};
use crate::plan::report::PlanReport;
use crate::policy::{Policy, PolicyLimits, PolicySource, load_policy};

/// What a pull request changes: approvals gained and lost, the devices
/// affected, rules' matches, windows, policies and every other document,
/// and the validation errors of head. Markdown for a review comment.
///
/// Exits 0 when head is valid, 1 when it is not (the report says why), 2
/// when the diff could not run.
#[derive(Args)]
pub struct DiffArgs {
    /// The policy repository (a git repository).
    #[arg(long, default_value = ".")]
    policies: PathBuf,
    /// The revision the pull request merges into (`main`, a sha).
    #[arg(long)]
    base: String,
    /// The pull request's revision.
    #[arg(long, default_value = "HEAD")]
    head: String,
    #[command(flatten)]
    inputs: PlanInputs,
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Markdown,
    Json,
}

/// One side of the diff.
struct Side {
    commit: Option<String>,
    diagnostics: Vec<Diagnostic>,
    planned: Option<(PlanReport, Policy)>,
}

fn side(repo: &std::path::Path, rev: &str, inputs: &super::plan::LoadedInputs) -> anyhow::Result<Side> {
    let source = PolicySource::GitRevision { repo: repo.to_owned(), rev: rev.to_owned() };
    let load = load_policy(&source, &PolicyLimits::default())
        .with_context(|| format!("failed to read the policy at {}", source.describe()))?;
    let mut diagnostics = load.diagnostics;
    let planned = match load.policy {
        None => None,
        Some(policy) => match CompiledPolicy::compile(policy, load.commit.clone()) {
            Err(problems) => {
                diagnostics.extend(problems);
                None
            }
            Ok(compiled) => {
                let report = inputs.plan(&compiled);
                diagnostics.extend(report.diagnostics.iter().cloned());
                Some((report, compiled.policy))
            }
        },
    };
    Ok(Side { commit: load.commit, diagnostics, planned })
}

pub fn run(args: DiffArgs) -> anyhow::Result<Outcome> {
    let inputs = args.inputs.load()?;
    let base = side(&args.policies, &args.base, &inputs)?;
    let head = side(&args.policies, &args.head, &inputs)?;
    let head_valid = head.planned.is_some();
    let changes = head
        .planned
        .as_ref()
        .map(|(report, policy)| diff(base.planned.as_ref().map(|(r, p)| (r, p)), (report, policy)));
    let output = match args.format {
        Format::Json => {
            let value = serde_json::json!({
                "base": {"rev": args.base, "commit": base.commit, "valid": base.planned.is_some()},
                "head": {"rev": args.head, "commit": head.commit, "valid": head_valid},
                "diagnostics": head.diagnostics,
                "diff": changes,
            });
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Format::Markdown => render_markdown(&args, &base, &head, changes.as_ref(), inputs.now),
    };
    std::io::stdout().write_all(output.as_bytes()).context("failed to write to stdout")?;
    Ok(if head_valid { Outcome::Success } else { Outcome::Problems })
}

fn devices_list(devices: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = devices.iter().take(SHOWN).map(|d| cell(d)).collect::<Vec<_>>().join(", ");
    if devices.len() > SHOWN {
        let _ = write!(text, ", … {} more", devices.len() - SHOWN);
    }
    text
}

fn render_markdown(
    args: &DiffArgs,
    base: &Side,
    head: &Side,
    changes: Option<&PlanDiff>,
    now: jiff::Timestamp,
) -> String {
    let mut out = String::new();
    let name = |rev: &str, side: &Side| match &side.commit {
        Some(c) => format!("`{rev}` ({})", short(c)),
        None => format!("`{rev}`"),
    };
    let _ = writeln!(out, "### patchward diff {} → {}\n", name(&args.base, base), name(&args.head, head));
    let _ = writeln!(out, "Planned at {now} against the given catalog and fleet.\n");
    let errors = diagnostics::count(&head.diagnostics, Severity::Error);
    let warnings = diagnostics::count(&head.diagnostics, Severity::Warning);
    if errors > 0 {
        let _ = writeln!(
            out,
            ":x: **Head is invalid** ({errors} errors, {warnings} warnings). The engine would keep the last good revision; nothing below is planned.\n"
        );
    } else {
        let _ = writeln!(out, ":white_check_mark: Head is valid ({warnings} warnings).\n");
    }
    if !head.diagnostics.is_empty() {
        let _ = writeln!(out, "#### Diagnostics in head\n");
        for d in &head.diagnostics {
            let _ = writeln!(out, "- `{}:{}:{}` {}: {}", d.path, d.line, d.col, d.severity.as_str(), cell(&d.message));
        }
        let _ = writeln!(out);
    }
    if base.planned.is_none() {
        let _ = writeln!(out, ":warning: Base is invalid; every item of head is shown as gained.\n");
    }
    let Some(changes) = changes else { return out };
    let _ = writeln!(
        out,
        "**{} of {} devices affected**: {} patch(es) gained, {} lost, {} changed.\n",
        changes.devices_affected.len(),
        changes.devices_total,
        changes.gained.len(),
        changes.lost.len(),
        changes.changed.len()
    );
    if !changes.gained.is_empty() || !changes.lost.is_empty() {
        let _ = writeln!(out, "#### Approvals\n\n| patch | change | devices | which |\n| --- | --- | ---: | --- |");
        for (label, list) in [("gained", &changes.gained), ("lost", &changes.lost)] {
            for change in list {
                let _ = writeln!(
                    out,
                    "| {} | {label} | {} | {} |",
                    cell(&change.patch),
                    change.devices.len(),
                    devices_list(&change.devices)
                );
            }
        }
        let _ = writeln!(out);
    }
    if !changes.changed.is_empty() {
        let _ = writeln!(out, "#### Items changed\n\n| patch | change | devices | which |\n| --- | --- | ---: | --- |");
        for change in &changes.changed {
            for (what, devices) in &change.changes {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(&change.patch),
                    cell(what),
                    devices.len(),
                    devices_list(devices)
                );
            }
        }
        let _ = writeln!(out);
    }
    if !changes.rules.is_empty() {
        let _ = writeln!(out, "#### Rule matches\n\n| rule | now matches | no longer matches |\n| --- | --- | --- |");
        for rule in &changes.rules {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                rule.name,
                cell(&rule.matches_gained.join(", ")),
                cell(&rule.matches_lost.join(", "))
            );
        }
        let _ = writeln!(out);
    }
    for (title, list) in [("Review queue", &changes.review_queue), ("Held", &changes.held)] {
        if !list.added.is_empty() || !list.removed.is_empty() {
            let _ = writeln!(
                out,
                "#### {title}\n\n- added: {}\n- removed: {}\n",
                if list.added.is_empty() { "none".into() } else { list.added.join(", ") },
                if list.removed.is_empty() { "none".into() } else { list.removed.join(", ") }
            );
        }
    }
    if !changes.documents.is_empty() {
        let _ = writeln!(out, "#### Documents\n\n| kind | name | change | fields |\n| --- | --- | --- | --- |");
        for doc in &changes.documents {
            let fields: Vec<String> = doc
                .fields
                .iter()
                .map(|f| format!("`{}`: `{}` → `{}`", f.field, compact(&f.base), compact(&f.head)))
                .collect();
            let _ =
                writeln!(out, "| {} | `{}` | {} | {} |", doc.kind, doc.name, doc.change, cell(&fields.join("<br>")));
        }
        let _ = writeln!(out);
        window_openings(&mut out, base, head, changes, now);
    }
    if changes.devices_affected.is_empty() && changes.documents.is_empty() {
        let _ = writeln!(out, "No device's desired state changes.");
    }
    out
}

/// For every added or modified window, when it opens next under head (and
/// under base), in UTC for windows in the device's zone.
fn window_openings(out: &mut String, base: &Side, head: &Side, changes: &PlanDiff, now: jiff::Timestamp) {
    let windows: Vec<&str> = changes
        .documents
        .iter()
        .filter(|d| d.kind == "MaintenanceWindow" && d.change != "removed")
        .map(|d| d.name.as_str())
        .collect();
    if windows.is_empty() {
        return;
    }
    let openings = |side: &Side, name: &str| -> String {
        let Some((_, policy)) = &side.planned else { return "-".into() };
        let Some(window) = policy.windows.get(name) else { return "-".into() };
        let Ok(schedule) = window.spec.schedule(Some("UTC")) else { return "-".into() };
        let next: Vec<String> = schedule
            .transitions(now, 4, 400)
            .iter()
            .map(|t| format!("{} {}", if t.open { "opens" } else { "closes" }, t.at))
            .collect();
        if next.is_empty() { "never opens".into() } else { next.join("<br>") }
    };
    let _ = writeln!(out, "#### Window transitions from {now}\n\n| window | base | head |\n| --- | --- | --- |");
    for name in windows {
        let _ = writeln!(out, "| `{name}` | {} | {} |", openings(base, name), openings(head, name));
    }
    let _ = writeln!(out);
}

fn compact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 { format!("{}…", text.chars().take(120).collect::<String>()) } else { text }
}
