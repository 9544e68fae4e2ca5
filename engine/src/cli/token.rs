//! `patchward token create` and `patchward ack-rewrite`: admin calls to a
//! running engine. The admin token comes from `--token-file` or
//! `PATCHWARD_TOKEN`, never from the command line (it would show in `ps`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::Outcome;

#[derive(Args)]
pub struct AdminArgs {
    /// The engine's URL, e.g. http://127.0.0.1:8420.
    #[arg(long, value_name = "URL")]
    server: String,
    /// A file holding the admin token [default: $PATCHWARD_TOKEN].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Make enrollment, admin or user tokens.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new token on stdout (and nothing else).
    Create(CreateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum TokenKind {
    /// For agents to enroll with (`patchward-agent enroll --token`).
    Enrollment,
    /// Reads everything, triggers a sync, acknowledges a rewrite.
    Admin,
    /// Bound to one device (`--device`): its user's portal.
    User,
}

#[derive(Args)]
struct CreateArgs {
    kind: TokenKind,
    /// How many enrollments the token allows [default: 1].
    #[arg(long, value_name = "N")]
    uses: Option<u32>,
    /// How long the token is good for (`90s`, `5m`, `72h`, `7d`).
    #[arg(long, value_name = "DUR")]
    expires: Option<patchward_api::Duration>,
    /// The device a user token is bound to.
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Let the engine follow a branch whose history was rewritten (a
/// force-push), once, to this commit.
#[derive(Args)]
pub struct AckRewriteArgs {
    /// The full sha of the new tip.
    commit: String,
    #[command(flatten)]
    admin: AdminArgs,
}

fn admin_token(args: &AdminArgs) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?,
        None => std::env::var("PATCHWARD_TOKEN")
            .context("no admin token: pass --token-file FILE (e.g. DATA/admin-token) or set PATCHWARD_TOKEN")?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

fn post(args: &AdminArgs, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let token = admin_token(args)?;
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("failed to start")?;
    runtime.block_on(async {
        let client = crate::catalog::fetch::client(&crate::catalog::fetch::FetchLimits::default())?;
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("failed to reach {url}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("failed to read the answer of {url}"))?;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if !status.is_success() {
            let message = json["message"].as_str().map_or_else(|| json.to_string(), str::to_owned);
            bail!("{url} answered {status}: {message}");
        }
        Ok(json)
    })
}

pub fn run(args: TokenArgs) -> anyhow::Result<Outcome> {
    let TokenCommand::Create(create) = args.command;
    let kind = match create.kind {
        TokenKind::Enrollment => "enrollment",
        TokenKind::Admin => "admin",
        TokenKind::User => "user",
    };
    let body = serde_json::json!({
        "kind": kind,
        "uses": create.uses,
        "expires": create.expires.map(|d| d.to_string()),
        "device": create.device,
    });
    let answer = post(&create.admin, "/api/v1/tokens", body)?;
    let token = answer["token"].as_str().context("the engine's answer has no token")?;
    println!("{token}");
    Ok(Outcome::Success)
}

pub fn run_ack(args: AckRewriteArgs) -> anyhow::Result<Outcome> {
    post(&args.admin, "/api/v1/ack-rewrite", serde_json::json!({"commit": args.commit}))?;
    eprintln!("acknowledged: the engine may now follow the rewritten history to {}", args.commit);
    Ok(Outcome::Success)
}
