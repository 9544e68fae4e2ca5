use std::collections::BTreeSet;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::Outcome;
use crate::catalog::coverage::CoverageSet;
use crate::catalog::feed::Severity;
use crate::catalog::fetch::{self, FetchLimits};
use crate::catalog::sync::{SyncError, Synced, sync_source};
use crate::catalog::view::{PatchView, views};
use crate::catalog::{
    FeedLimits, Freshness, ImportError, ImportMode, ImportReport, ImportRequest, freshness, import, retention,
};
use crate::diagnostics;
use crate::policy::model::{Category, FeedFormat, Retention};
use crate::policy::{Named, Policy, PolicyLimits, PolicySource, load_policy};
use crate::store::{SourceState, Store};

/// The patch catalog: import and sync feeds, list and show patches.
#[derive(Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    command: CatalogCommand,
}

#[derive(Subcommand)]
enum CatalogCommand {
    Import(ImportArgs),
    Sync(SyncArgs),
    List(ListArgs),
    Show(ShowArgs),
    Status(StatusArgs),
    Rebuild(SyncArgs),
    Purge(PurgeArgs),
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// The engine's data folder.
    #[arg(long, default_value = "patchward-data")]
    data: PathBuf,
    /// The policy repository: its CatalogSources, coverage and Settings.
    #[arg(long, default_value = "policies")]
    policies: String,
}

/// Import a feed file (verified like a synced one) into the catalog.
#[derive(Args)]
struct ImportArgs {
    file: PathBuf,
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// The source the patches are attributed to; a CatalogSource of that
    /// name also lends its format, publicKey (FILE.sig is then required) and
    /// sha256 pin.
    #[arg(long, default_value = "import")]
    source: String,
    /// Treat the file as the source's whole catalog (what it omits becomes
    /// obsolete). Always so for patchward feeds; CSAF and OSV advisories
    /// otherwise add to the source.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Fetch every CatalogSource of the policy (or one) and import what changed.
#[derive(Args)]
struct SyncArgs {
    /// Only this CatalogSource.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// List stored patches.
#[derive(Args)]
struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[arg(long, value_enum)]
    severity: Vec<SeverityArg>,
    #[arg(long)]
    category: Vec<String>,
    /// Vendor name, case-insensitive.
    #[arg(long)]
    vendor: Option<String>,
    /// Only obsolete patches (the feed no longer lists them).
    #[arg(long)]
    obsolete: bool,
    /// Only patches superseded by another in the catalog.
    #[arg(long)]
    superseded: bool,
    /// Only patches in coverage.
    #[arg(long)]
    active: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Show one patch with everything the catalog knows of it.
#[derive(Args)]
struct ShowArgs {
    id: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

/// Each source's revision and freshness.
#[derive(Args)]
struct StatusArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

/// Apply retention to the package cache (DATA/blobs).
#[derive(Args)]
struct PurgeArgs {
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Patchward,
    Csaf,
    Osv,
}

impl From<FormatArg> for FeedFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Patchward => FeedFormat::Patchward,
            FormatArg::Csaf => FeedFormat::Csaf,
            FormatArg::Osv => FeedFormat::Osv,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SeverityArg {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Unrated,
}

impl From<SeverityArg> for Severity {
    fn from(s: SeverityArg) -> Self {
        match s {
            SeverityArg::Critical => Severity::Critical,
            SeverityArg::High => Severity::High,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Informational => Severity::Informational,
            SeverityArg::Unrated => Severity::Unrated,
        }
    }
}

pub fn run(args: CatalogArgs) -> anyhow::Result<Outcome> {
    match args.command {
        CatalogCommand::Import(args) => run_import(args),
        CatalogCommand::Sync(args) => run_sync(args, false),
        CatalogCommand::Rebuild(args) => run_sync(args, true),
        CatalogCommand::List(args) => run_list(args),
        CatalogCommand::Show(args) => run_show(args),
        CatalogCommand::Status(args) => run_status(args),
        CatalogCommand::Purge(args) => run_purge(args),
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The policy, if the path exists. An invalid policy is an error: its
/// sources and coverage cannot be trusted.
fn policy(args: &StoreArgs) -> anyhow::Result<Option<Policy>> {
    let source = PolicySource::parse(&args.policies);
    if matches!(&source, PolicySource::Folder(path) if !path.exists()) {
        return Ok(None);
    }
    let load = load_policy(&source, &PolicyLimits::default())
        .with_context(|| format!("failed to read the policy at {}", source.describe()))?;
    match load.policy {
        Some(policy) => Ok(Some(policy)),
        None => {
            eprint!("{}", diagnostics::render_human(&load.diagnostics, &load.texts));
            bail!("the policy at {} is invalid; its catalog sources are not used", source.describe())
        }
    }
}

fn retention_of(policy: Option<&Policy>) -> Retention {
    policy.and_then(|p| p.settings.as_ref()).map(|s| s.spec.retention.clone()).unwrap_or_default()
}

fn coverage_of(policy: Option<&Policy>) -> CoverageSet {
    policy.map(CoverageSet::of_policy).unwrap_or_default()
}

fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    Ok(Store::open(&args.data)?)
}

fn print_report(report: &ImportReport) {
    let previous = report.previous_revision.map(|r| format!(" (was {r})")).unwrap_or_default();
    if report.unchanged {
        println!("{}: revision {} unchanged, {} patches", report.source, report.revision, report.patches);
    } else {
        println!(
            "{}: imported revision {}{previous}: {} patches, {} new, {} updated, {} obsolete, {} purged",
            report.source,
            report.revision,
            report.patches,
            report.added,
            report.updated,
            report.obsoleted,
            report.purged
        );
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
}

fn refused(source: &str, error: ImportError) -> anyhow::Result<Outcome> {
    match error {
        ImportError::Refused(refusal) => {
            eprintln!("{source}: feed refused, the catalog is unchanged: {refusal}");
            Ok(Outcome::Problems)
        }
        ImportError::Store(error) => Err(error.into()),
    }
}

fn run_import(args: ImportArgs) -> anyhow::Result<Outcome> {
    let policy = policy(&args.store)?;
    let named: Option<&Named<_>> = policy.as_ref().and_then(|p| p.catalog_sources.get(&args.source));
    let format = args.format.map(FeedFormat::from).or(named.map(|s| s.spec.format)).unwrap_or_default();
    let bytes = read_bounded(&args.file, FeedLimits::default().max_bytes)?;
    let public_key = named.and_then(|s| s.spec.public_key.as_ref()).map(|k| k.value.clone());
    let signature_path = PathBuf::from(format!("{}.sig", args.file.display()));
    let signature = match (&public_key, std::fs::read(&signature_path)) {
        (Some(_), Ok(bytes)) => Some(bytes),
        (Some(_), Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        (Some(_), Err(e)) => return Err(e).with_context(|| format!("failed to read {}", signature_path.display())),
        (None, _) => None,
    };
    let pinned = named.and_then(|s| s.spec.sha256.as_ref()).map(|s| s.value.clone());
    let store = open_store(&args.store)?;
    let mode = if args.replace || format == FeedFormat::Patchward { ImportMode::Snapshot } else { ImportMode::Merge };
    let request = ImportRequest {
        source: &args.source,
        format,
        mode,
        bytes: &bytes,
        signature: signature.as_deref(),
        public_key: public_key.as_deref(),
        pinned_sha256: pinned.as_deref(),
        etag: None,
        last_modified: None,
        retention: retention_of(policy.as_ref()),
        limits: FeedLimits::default(),
        now: now(),
        csaf_provider: None,
    };
    match import(&store, &request) {
        Ok(report) => {
            print_report(&report);
            Ok(Outcome::Success)
        }
        Err(error) => refused(&args.source, error),
    }
}

fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path).with_context(|| format!("failed to read {}", path.display()))?.len();
    if size > limit {
        bail!("{} is {size} bytes; a feed may be at most {limit}", path.display());
    }
    std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))
}

fn run_sync(args: SyncArgs, rebuild: bool) -> anyhow::Result<Outcome> {
    let policy = policy(&args.store)?
        .ok_or_else(|| anyhow!("no policy at {}: sync reads the CatalogSources from it", args.store.policies))?;
    let sources: Vec<&Named<_>> = match &args.source {
        Some(name) => {
            vec![policy.catalog_sources.get(name).ok_or_else(|| anyhow!("the policy has no CatalogSource `{name}`"))?]
        }
        None => policy.catalog_sources.values().collect(),
    };
    if sources.is_empty() {
        bail!("the policy at {} has no CatalogSource", args.store.policies);
    }
    if rebuild {
        set_aside(&args.store.data)?;
    }
    let store = open_store(&args.store)?;
    let client = fetch::client(&FetchLimits::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("failed to start")?;
    let mut outcome = Outcome::Success;
    for source in sources {
        let bar = progress_bar();
        let on_progress = |done: u64, total: Option<u64>| {
            if let Some(bar) = &bar {
                if let Some(total) = total {
                    bar.set_length(total);
                }
                bar.set_position(done);
            }
        };
        let synced = runtime.block_on(sync_source(
            &store,
            &client,
            source,
            retention_of(Some(&policy)),
            !rebuild,
            now(),
            &on_progress,
        ));
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        match synced {
            Ok(Synced::Imported(report)) => print_report(&report),
            Ok(Synced::NotModified(freshness)) => {
                if !note_not_modified(&source.name, freshness) {
                    outcome = Outcome::Problems;
                }
            }
            Err(SyncError::Import(error)) => outcome = refused(&source.name, error)?,
            Err(SyncError::Store(error)) => return Err(error.into()),
            Err(error @ (SyncError::Fetch(_) | SyncError::Config(_))) => {
                eprintln!("{}: sync failed, the catalog is unchanged: {error}", source.name);
                outcome = Outcome::Problems;
            }
        }
    }
    Ok(outcome)
}

/// A 304: nothing to import, but the check is recorded, and a feed past its
/// expiry is reported stale, never silently fresh (T12).
fn note_not_modified(name: &str, freshness: Freshness) -> bool {
    match freshness {
        Freshness::Fresh => {
            println!("{name}: not modified");
            true
        }
        Freshness::Stale { revision, expired_at } => {
            eprintln!("{name}: STALE: revision {revision} expired at {expired_at} and the server has nothing newer");
            false
        }
        Freshness::Unknown => {
            eprintln!("{name}: the server answered 304 to a first fetch; nothing imported");
            false
        }
    }
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// `rebuild`: the old store is kept beside, never deleted.
fn set_aside(data: &Path) -> anyhow::Result<()> {
    let store = data.join("store");
    if store.exists() {
        let aside = data.join(format!("store.set-aside-{}", now().as_second()));
        std::fs::rename(&store, &aside)
            .with_context(|| format!("failed to move {} aside to {}", store.display(), aside.display()))?;
        eprintln!("moved the old store aside to {}", aside.display());
    }
    Ok(())
}

fn load_views(args: &StoreArgs) -> anyhow::Result<Vec<PatchView>> {
    let policy = policy(args)?;
    let store = open_store(args)?;
    // A torn or rotten catalog is refused, never shown partly or empty.
    crate::store::Store::wait(store.verify_catalog())?;
    Ok(views(crate::store::Store::wait(store.catalog_patches())?, &coverage_of(policy.as_ref())))
}

fn run_list(args: ListArgs) -> anyhow::Result<Outcome> {
    let severities: BTreeSet<Severity> = args.severity.iter().map(|s| Severity::from(*s)).collect();
    let categories: Vec<Category> = args
        .category
        .iter()
        .map(|c| {
            serde_json::from_value(serde_json::Value::String(c.clone())).map_err(|_| anyhow!("unknown category `{c}`"))
        })
        .collect::<anyhow::Result<_>>()?;
    let list: Vec<PatchView> = load_views(&args.store)?
        .into_iter()
        .filter(|v| severities.is_empty() || severities.contains(&v.record.severity))
        .filter(|v| categories.is_empty() || categories.contains(&v.record.patch.category))
        .filter(|v| args.vendor.as_ref().is_none_or(|w| v.record.patch.vendor.eq_ignore_ascii_case(w)))
        .filter(|v| !args.obsolete || v.record.obsolete_since.is_some())
        .filter(|v| !args.superseded || !v.superseded_by.is_empty())
        .filter(|v| !args.active || v.active)
        .collect();
    let mut out = String::new();
    match args.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = list.iter().map(PatchView::to_json).collect();
            out = serde_json::to_string_pretty(&serde_json::json!({"patches": items}))? + "\n";
        }
        OutputFormat::Table => {
            out.push_str(&format!(
                "{:<24} {:<13} {:>5} {:<6} {:<10} {}\n",
                "ID", "SEVERITY", "CVSS", "ACTIVE", "STATE", "TITLE"
            ));
            for v in &list {
                let state = if v.record.obsolete_since.is_some() {
                    "obsolete"
                } else if !v.superseded_by.is_empty() {
                    "superseded"
                } else {
                    "current"
                };
                let score = v.record.score.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into());
                out.push_str(&format!(
                    "{:<24} {:<13} {:>5} {:<6} {:<10} {}\n",
                    v.record.patch.id,
                    v.record.severity.as_str(),
                    score,
                    if v.active { "yes" } else { "no" },
                    state,
                    v.record.patch.title
                ));
            }
            out.push_str(&format!("{} patches\n", list.len()));
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(Outcome::Success)
}

fn run_show(args: ShowArgs) -> anyhow::Result<Outcome> {
    let view = load_views(&args.store)?
        .into_iter()
        .find(|v| v.record.patch.id == args.id)
        .ok_or_else(|| anyhow!("no patch `{}` in the catalog at {}", args.id, args.store.data.display()))?;
    let json = view.to_json();
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json)?),
        OutputFormat::Table => {
            if let serde_json::Value::Object(map) = json {
                for (key, value) in map {
                    let shown = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    println!("{key:<16} {shown}");
                }
            }
        }
    }
    Ok(Outcome::Success)
}

fn run_status(args: StatusArgs) -> anyhow::Result<Outcome> {
    let store = open_store(&args.store)?;
    crate::store::Store::wait(store.verify_catalog())?;
    let now = now();
    let sources = crate::store::Store::wait(store.catalog_sources())?;
    let fresh = |s: &SourceState| freshness(Some(s), now) == Freshness::Fresh;
    match args.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = sources
                .iter()
                .map(|s| {
                    let mut value = serde_json::to_value(s).unwrap_or_default();
                    value["fresh"] = serde_json::json!(fresh(s));
                    value
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"sources": items}))?);
        }
        OutputFormat::Table => {
            println!("{:<16} {:>12} {:>8} {:<26} {:<26} STATE", "SOURCE", "REVISION", "PATCHES", "CHECKED", "EXPIRES");
            for s in &sources {
                let expires = s.expires_at.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
                let state = if fresh(s) { "fresh" } else { "STALE" };
                println!(
                    "{:<16} {:>12} {:>8} {:<26} {:<26} {state}",
                    s.name,
                    s.revision,
                    s.patch_count,
                    s.checked_at.to_string(),
                    expires
                );
            }
        }
    }
    Ok(if sources.iter().all(fresh) { Outcome::Success } else { Outcome::Problems })
}

fn run_purge(args: PurgeArgs) -> anyhow::Result<Outcome> {
    let policy = policy(&args.store)?;
    let retention = retention_of(policy.as_ref());
    let cache = args.store.data.join("blobs");
    let purge = retention::purge_cache(&cache, now(), retention.unused_cache_days, &BTreeSet::new())?;
    println!(
        "{}: removed {} files ({} bytes), kept {}",
        cache.display(),
        purge.removed.len(),
        purge.freed_bytes,
        purge.kept
    );
    Ok(Outcome::Success)
}
