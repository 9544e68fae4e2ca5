use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use super::Outcome;
use crate::catalog::coverage::CoverageSet;
use crate::diagnostics;
use crate::plan::report::PlanReport;
use crate::plan::{CompiledPolicy, PlanCatalog, PlanInput, plan};
use crate::policy::model::FeedFormat;
use crate::policy::{PolicyLimits, PolicySource, load_policy};

/// Compute every device's desired patch state: what each rule matches, the
/// review queue, the held list, and each device's items.
///
/// Offline: stage delays count from each patch's release (there is no
/// ledger), and the catalog is the feed file given, with the coverage of
/// the policy's CatalogSources applied.
#[derive(Args)]
pub struct PlanArgs {
    /// The policy repository: a folder, or `REPO@REV` for a git commit.
    #[arg(long, default_value = "policies")]
    policies: String,
    #[command(flatten)]
    inputs: PlanInputs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Show only these devices (repeatable); the plan is computed for the
    /// whole fleet either way, so gates count every device.
    #[arg(long = "device", value_name = "ID")]
    devices: Vec<String>,
}

/// The catalog, fleet and instant a plan is computed for.
#[derive(Args)]
pub struct PlanInputs {
    /// A feed file to plan against (patchward, CSAF or OSV JSON).
    #[arg(long, conflicts_with = "data")]
    catalog: Option<PathBuf>,
    /// The format of `--catalog`.
    #[arg(long, value_enum, default_value_t = CatalogFormat::Patchward)]
    catalog_format: CatalogFormat,
    /// Plan against the engine store's catalog (and its ledger) instead of
    /// a file.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The fleet: `{devices: [{id, facts, inventory, reports}]}`, YAML or JSON.
    #[arg(long)]
    fleet: PathBuf,
    /// The instant to plan for (RFC 3339); now when left out.
    #[arg(long)]
    at: Option<String>,
    /// A ledger (JSON `[{rule, patch, at}]`: when each rule first matched
    /// each patch), as the engine keeps it. Without one, stage delays count
    /// from each patch's release.
    #[arg(long)]
    ledger: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CatalogFormat {
    Patchward,
    Csaf,
    Osv,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// For a terminal.
    Table,
    /// `schemas/plan.json`.
    Json,
    /// For a pull-request comment.
    Markdown,
}

/// A catalog and fleet read from disk, and the instant.
#[derive(Clone)]
pub struct LoadedInputs {
    pub records: Vec<crate::store::CatalogPatch>,
    pub fleet: patchward_api::Fleet,
    pub ledger: Option<crate::plan::Ledger>,
    pub now: jiff::Timestamp,
}

impl PlanInputs {
    pub fn load(&self) -> anyhow::Result<LoadedInputs> {
        let now: jiff::Timestamp = match &self.at {
            Some(text) => text.parse().with_context(|| format!("--at `{text}` is not an RFC 3339 instant"))?,
            None => jiff::Timestamp::now(),
        };
        let mut stored_ledger = None;
        let records = match (&self.catalog, &self.data) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
                let format = match self.catalog_format {
                    CatalogFormat::Patchward => FeedFormat::Patchward,
                    CatalogFormat::Csaf => FeedFormat::Csaf,
                    CatalogFormat::Osv => FeedFormat::Osv,
                };
                crate::catalog::offline_catalog(format, &bytes, now)
                    .map(|(records, _)| records)
                    .with_context(|| format!("the catalog {} was refused", path.display()))?
            }
            (None, Some(data)) => {
                let store = crate::store::Store::open(data)?;
                crate::store::Store::wait(store.verify_catalog())?;
                stored_ledger = Some(crate::store::Store::wait(store.ledger())?);
                crate::store::Store::wait(store.catalog_patches())?
            }
            (None, None) => bail!("give the catalog: --catalog FILE (a feed) or --data DIR (the engine's store)"),
        };
        let fleet = read_fleet(&self.fleet)?;
        let ledger = match &self.ledger {
            // With the engine's store, its ledger: the plan the engine makes.
            None => stored_ledger,
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
                let entries: Vec<crate::plan::LedgerEntry> = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a ledger (`[{{rule, patch, at}}]`)", path.display()))?;
                Some(entries.into_iter().collect())
            }
        };
        Ok(LoadedInputs { records, fleet, ledger, now })
    }
}

impl LoadedInputs {
    /// Plans `policy` against these inputs, its coverage applied to the
    /// catalog; the report, and the plan's runtime diagnostics in it.
    pub fn plan(&self, policy: &CompiledPolicy) -> PlanReport {
        let catalog = PlanCatalog::new(self.records.clone(), &CoverageSet::of_policy(&policy.policy));
        let computed = plan(&PlanInput {
            policy,
            catalog: &catalog,
            fleet: &self.fleet.devices,
            ledger: self.ledger.as_ref(),
            now: self.now,
        });
        computed.report(policy, &catalog)
    }
}

/// Reads a fleet file: JSON when it ends in `.json`, YAML otherwise.
pub fn read_fleet(path: &Path) -> anyhow::Result<patchward_api::Fleet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: {}",
                path.display(),
                e.line(),
                e.column(),
                e.to_string().split(" at line").next().unwrap_or("")
            )
        })
    } else {
        let limits = crate::policy::yaml::YamlLimits::default();
        crate::policy::yaml::from_str(&text, &limits)
            .map_err(|e| anyhow::anyhow!("{}:{}:{}: {}", path.display(), e.pos.line, e.pos.col, e.message))
    }
}

/// Loads and compiles the policy; `Ok(None)` when it is invalid, after
/// printing its diagnostics to stderr.
pub fn compile_policy(source: &PolicySource) -> anyhow::Result<Option<CompiledPolicy>> {
    let mut load = load_policy(source, &PolicyLimits::default())
        .with_context(|| format!("failed to read the policy at {}", source.describe()))?;
    let invalid = load.policy.is_none();
    let texts = std::mem::take(&mut load.texts);
    match CompiledPolicy::from_load(load) {
        Ok(compiled) => Ok(Some(compiled)),
        Err(problems) => {
            eprint!("{}", diagnostics::render_human(&problems, &texts));
            if invalid {
                eprintln!("the policy at {} is invalid; nothing was planned", source.describe());
            }
            Ok(None)
        }
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    let source = PolicySource::parse(&args.policies);
    let Some(policy) = compile_policy(&source)? else { return Ok(Outcome::Problems) };
    let mut report = args.inputs.load()?.plan(&policy);
    if !args.devices.is_empty() {
        let unknown: Vec<&String> =
            args.devices.iter().filter(|d| !report.devices.iter().any(|r| &r.id == *d)).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = report.devices.iter().map(|d| d.id.as_str()).collect();
            let hint = diagnostics::suggestion(unknown[0], names.iter().copied());
            bail!("no device `{}` in the fleet{hint}", unknown[0]);
        }
        report.devices.retain(|d| args.devices.contains(&d.id));
    }
    let output = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).context("failed to render the plan")? + "\n",
        Format::Table => render_table(&report, &source.describe()),
        Format::Markdown => render_markdown(&report, &source.describe()),
    };
    std::io::stdout().write_all(output.as_bytes()).context("failed to write to stdout")?;
    Ok(Outcome::Success)
}

fn summary_line(report: &PlanReport, source: &str) -> String {
    let s = &report.summary;
    let revision = report.policy_revision.as_deref().map(|c| format!(" (commit {})", short(c))).unwrap_or_default();
    let withheld = match s.withheld_retractions {
        0 => String::new(),
        n => format!(
            "\nThe policy holds no ApprovalRule and no Approval: {n} retraction(s) withheld, nothing is removed (G3)"
        ),
    };
    format!(
        "Plan of {source}{revision} at {}: {} devices, {} active patches, {} items ({} installed, {} due, {} scheduled, {} blocked{}){withheld}",
        report.at,
        s.devices,
        s.patches,
        s.items,
        s.installed,
        s.due,
        s.scheduled,
        s.blocked,
        if s.removed > 0 { format!(", {} removed", s.removed) } else { String::new() }
    )
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

pub fn render_table(report: &PlanReport, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", summary_line(report, source));
    let _ = writeln!(out, "RULES (precedence order; matched = active patches the match selects)");
    for rule in &report.rules {
        let _ = writeln!(
            out,
            "  {:<28} priority {:>4}  {:<8} decides {:>3}  matched: {}",
            rule.name,
            rule.priority,
            rule.action.as_str(),
            rule.decided.len(),
            list_or_none(&rule.matched)
        );
        for error in &rule.errors {
            let _ = writeln!(out, "      failed on {}: {}", error.patch, error.message);
        }
    }
    for (title, list) in [
        ("REVIEW QUEUE", &report.review_queue),
        ("HELD", &report.held),
        ("SUPERSEDED (approved, not deployed)", &report.superseded),
        ("UNDECIDED (an outranking rule failed)", &report.undecided),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for entry in list {
            let by = if entry.superseded_by.is_empty() {
                String::new()
            } else {
                format!(" superseded by {}", entry.superseded_by.join(", "))
            };
            let _ =
                writeln!(out, "  {:<16} {:<13} {} (rule {}){by}", entry.patch, entry.severity, entry.title, entry.rule);
        }
    }
    if !report.no_rule.is_empty() {
        let _ =
            writeln!(out, "\nNO RULE MATCHES (only a manual Approval deploys these)\n  {}", report.no_rule.join(", "));
    }
    if !report.gates.is_empty() {
        let _ = writeln!(out, "\nGATES (over the devices of the stage before)");
        for gate in &report.gates {
            let _ = writeln!(
                out,
                "  {:<16} {} stage {}: {} succeeded, {} failed: {}",
                gate.patch,
                gate.rule,
                gate.stage,
                gate.succeeded,
                gate.failed,
                if gate.passed { "passed" } else { "holding" }
            );
        }
    }
    let _ = writeln!(out, "\nDEVICES");
    for device in &report.devices {
        let location = device.location.as_deref().map(|l| format!("  location {l}")).unwrap_or_default();
        let _ = writeln!(out, "  {}  [{}]{location}", device.id, device.scopes.join(", "));
        if device.items.is_empty() && device.software.is_empty() {
            let _ = writeln!(out, "      (nothing to do)");
        }
        for item in device.items.iter() {
            let stage = item.stage.map(|s| format!(" stage {s}")).unwrap_or_default();
            let deadline = item.deadline.as_deref().map(|d| format!("  deadline {d}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "      {:<16} {:<9} {:<9} {} {}{stage} via {} → {}  not before {}{deadline}",
                item.patch,
                item.action.as_str(),
                item.status.as_str(),
                item.source.kind,
                item.source.name,
                item.scope,
                item.policy,
                item.not_before,
            );
        }
        for excluded in &device.excluded {
            let _ = writeln!(out, "      {:<16} excluded by {}", excluded.patch, excluded.exclusion);
        }
        for item in &device.software {
            let _ = writeln!(
                out,
                "      {:<16} {:<9} {:<9} software via assignment {} → {}{}",
                format!("{}@{}", item.package, item.version),
                item.action.as_str(),
                item.status.as_str(),
                item.assignment,
                item.policy,
                if item.self_service { " (self-service)" } else { "" }
            );
        }
    }
    if !report.diagnostics.is_empty() {
        let _ = writeln!(out, "\nDIAGNOSTICS");
        for d in &report.diagnostics {
            let _ = writeln!(out, "  {}:{}:{}: {}: {}", d.path, d.line, d.col, d.severity.as_str(), d.message);
        }
    }
    out
}

/// Escapes what would break a markdown table cell.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn render_markdown(report: &PlanReport, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### patchward plan\n\n{}\n", summary_line(report, source));
    let _ = writeln!(
        out,
        "#### Rules\n\n| rule | priority | action | decides | matching patches |\n| --- | ---: | --- | ---: | --- |"
    );
    for rule in &report.rules {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            rule.name,
            rule.priority,
            rule.action.as_str(),
            rule.decided.len(),
            cell(&list_or_none(&rule.matched))
        );
    }
    for (title, list) in [
        ("Review queue", &report.review_queue),
        ("Held", &report.held),
        ("Superseded (approved, not deployed)", &report.superseded),
        ("Undecided (an outranking rule failed)", &report.undecided),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n#### {title}\n\n| patch | severity | title | rule |\n| --- | --- | --- | --- |");
        for entry in list {
            let _ =
                writeln!(out, "| {} | {} | {} | `{}` |", entry.patch, entry.severity, cell(&entry.title), entry.rule);
        }
    }
    if !report.no_rule.is_empty() {
        let _ = writeln!(
            out,
            "\n#### No rule matches\n\nOnly a manual Approval deploys these: {}",
            cell(&report.no_rule.join(", "))
        );
    }
    let _ = writeln!(
        out,
        "\n#### Devices\n\n| device | patch | action | status | source | scope | stage | policy | not before | deadline |\n| --- | --- | --- | --- | --- | --- | ---: | --- | --- | --- |"
    );
    for device in &report.devices {
        for item in device.items.iter() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} `{}` | {} | {} | {} | {} | {} |",
                cell(&device.id),
                item.patch,
                item.action.as_str(),
                item.status.as_str(),
                item.source.kind,
                item.source.name,
                item.scope,
                item.stage.map(|s| s.to_string()).unwrap_or_default(),
                item.policy,
                item.not_before,
                item.deadline.as_deref().unwrap_or("")
            );
        }
    }
    let software: Vec<(&str, &crate::plan::report::SoftwareReport)> =
        report.devices.iter().flat_map(|d| d.software.iter().map(move |s| (d.id.as_str(), s))).collect();
    if !software.is_empty() {
        let _ = writeln!(
            out,
            "\n#### Software\n\n| device | package | version | action | status | assignment | policy | self-service |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for (device, item) in software {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | `{}` | {} | {} |",
                cell(device),
                item.package,
                item.version,
                item.action.as_str(),
                item.status.as_str(),
                item.assignment,
                item.policy,
                if item.self_service { "yes" } else { "no" }
            );
        }
    }
    if !report.diagnostics.is_empty() {
        let _ = writeln!(out, "\n#### Diagnostics\n");
        for d in &report.diagnostics {
            let _ = writeln!(out, "- `{}:{}:{}`: {}: {}", d.path, d.line, d.col, d.severity.as_str(), cell(&d.message));
        }
    }
    out
}
