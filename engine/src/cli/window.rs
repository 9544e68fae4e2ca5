use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};

use super::Outcome;
use crate::diagnostics;
use crate::policy::{PolicyLimits, PolicySource, load_policy};

/// Whether a maintenance window is open at an instant, and when it next
/// opens and closes.
///
/// JSON: `{"open": bool, "next": [{"at": RFC 3339 UTC, "open": bool}]}`.
#[derive(Args)]
pub struct WindowArgs {
    /// The MaintenanceWindow's name.
    name: String,
    /// The policy repository: a folder or `REPO@REV`.
    #[arg(long, default_value = "policies")]
    policies: String,
    /// The instant to evaluate (RFC 3339); now when left out.
    #[arg(long)]
    at: Option<String>,
    /// How many transitions to list.
    #[arg(long, default_value_t = 5)]
    next: usize,
    /// The zone to use for a window whose timezone is `device`.
    #[arg(long, default_value = "UTC")]
    device_timezone: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Transitions are searched this far ahead: a window that opens once a
/// year still shows its next opening.
const HORIZON_DAYS: i64 = 800;

pub fn run(args: WindowArgs) -> anyhow::Result<Outcome> {
    let source = PolicySource::parse(&args.policies);
    let load = load_policy(&source, &PolicyLimits::default())
        .with_context(|| format!("failed to read the policy at {}", source.describe()))?;
    let Some(policy) = load.policy else {
        eprint!("{}", diagnostics::render_human(&load.diagnostics, &load.texts));
        bail!("the policy at {} is invalid", source.describe());
    };
    let window = policy.windows.get(&args.name).ok_or_else(|| {
        let names: Vec<&str> = policy.windows.keys().map(String::as_str).collect();
        let hint = diagnostics::suggestion(&args.name, names.iter().copied());
        anyhow!("no MaintenanceWindow `{}` in {}{hint}", args.name, source.describe())
    })?;
    let at: jiff::Timestamp = match &args.at {
        Some(text) => text.parse().with_context(|| format!("--at `{text}` is not an RFC 3339 instant"))?,
        None => jiff::Timestamp::now(),
    };
    let schedule = window.spec.schedule(Some(&args.device_timezone))?;
    let open = schedule.is_open(at);
    let next = schedule.transitions(at, args.next, HORIZON_DAYS);
    match args.format {
        Format::Json => {
            let next: Vec<serde_json::Value> =
                next.iter().map(|t| serde_json::json!({"at": t.at.to_string(), "open": t.open})).collect();
            let zone = schedule.zone().iana_name().unwrap_or("UTC").to_owned();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"window": args.name, "timezone": zone, "at": at.to_string(), "open": open, "next": next})
                )?
            );
        }
        Format::Table => {
            let zone = schedule.zone().clone();
            let local =
                |t: jiff::Timestamp| t.to_zoned_datetime(zone.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string();
            println!("{} is {} at {} ({})", args.name, if open { "OPEN" } else { "closed" }, at, local(at));
            for t in &next {
                println!("  {} {}  ({})", if t.open { "opens " } else { "closes" }, t.at, local(t.at));
            }
            if next.len() < args.next {
                println!("  (no further change within {HORIZON_DAYS} days)");
            }
        }
    }
    Ok(Outcome::Success)
}
