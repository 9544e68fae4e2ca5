//! Running the daemon: open the store and keys, start the reconciler, the
//! media master and the two listeners, and stop them all gracefully.
//!
//! Connections are served by hyper directly (not `axum::serve`) so that a
//! client that sends its headers too slowly is cut off (slowloris, T30),
//! headers are bounded in bytes, and the number of connections is capped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::config::ServeConfig;
use super::media::BlobStore;
use super::reconcile::{CatalogSync, PolicyOrigin, Reconciler, ReconcilerSettings};
use super::replication::{Replica, ReplicaRole, check_in_loop, leadership_loop, signal_loop};
use super::{Engine, EngineSettings};
use crate::api::{ApiState, router};
use crate::clock::{Clock, SystemClock};
use crate::store::Store;
use crate::store::fleet::{AccessToken, Role};
use crate::store::replicas::Fencing;

/// A running engine: where it listens, and how to stop it.
pub struct Running {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub engine: Arc<Engine>,
    /// Where the admin token is (written on first start).
    pub admin_token_file: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (long polls are
    /// answered), and waits for every task.
    pub async fn shutdown(self) {
        self.engine.stop_waiters();
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops every task at once, releasing nothing (the lease stays taken
    /// until it expires): what a replica killed with -9 leaves behind,
    /// for tests of the others.
    pub fn crash(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.engine.stop_waiters();
    }
}

/// How the admin token came to be in `DATA/admin-token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminToken {
    /// It was there.
    Read,
    /// This start made it: the first against this store.
    Written,
    /// Another replica's first start made it, in that replica's data
    /// folder; this one has none of its own.
    Elsewhere,
}

/// The engine state that says the first start made the admin token.
const ADMIN_TOKEN_STATE: &str = "adminTokenIssued";

/// Reads the admin token, or makes one on the first start against the
/// store (mode 0600); either way it is in the store as an admin token. A
/// replica started later on a shared store makes none: every replica
/// accepts every token in the store.
async fn admin_token(data: &Path, store: &Store, now: jiff::Timestamp) -> anyhow::Result<(PathBuf, AdminToken)> {
    let path = data.join("admin-token");
    let (token, how) = if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
        (text.trim().to_owned(), AdminToken::Read)
    } else {
        // (On the embedded store a missing file is made again: the way to
        // get a new admin token.)
        let first = store.update_engine_state(ADMIN_TOKEN_STATE, |issued: &mut bool| !std::mem::replace(issued, true));
        if store.is_shared() && !first.await? {
            return Ok((path, AdminToken::Elsewhere));
        }
        let token =
            crate::clock::new_secret("pwa_").map_err(|e| anyhow::anyhow!("failed to make the admin token: {e}"))?;
        crate::keys::write_private(&path, format!("{token}\n").as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
        (token, AdminToken::Written)
    };
    if store.access_token(&token).await?.is_none() {
        let record = AccessToken { role: Role::Admin, device: None, expires_at: None, created_at: now, revoked: false };
        store.create_access_token(&token, &record).await?;
    }
    Ok((path, how))
}

/// The engine state under which the store records its signing key.
const SIGNING_KEY_STATE: &str = "signingKey";

/// On a shared store every replica must sign with one key: the first start
/// records its public key there, and a replica with another key refuses to
/// start (its agents would refuse every state it signs).
async fn check_signing_key(store: &Store, key: &ed25519_dalek::SigningKey) -> anyhow::Result<()> {
    let ours = patchward_api::dsse::public_key_text(&key.verifying_key());
    match store.engine_state::<String>(SIGNING_KEY_STATE).await? {
        Some(recorded) if recorded == ours => Ok(()),
        Some(recorded) => anyhow::bail!(
            "the store {} records the signing key {recorded}, and this replica's key is {ours}: \
             give every replica the same --signing-key FILE",
            store.location()
        ),
        None => Ok(store.set_engine_state(SIGNING_KEY_STATE, &ours).await?),
    }
}

/// This replica's name in the status: the host's name and a random part,
/// so two replicas on one host differ.
fn replica_id() -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = if host.trim().is_empty() { "engine" } else { host.trim() };
    let suffix = crate::clock::new_secret("").map_err(|e| anyhow::anyhow!("failed to name this replica: {e}"))?;
    Ok(format!("{host}-{}", &suffix[..8.min(suffix.len())]))
}

/// Starts the engine with `config` and returns once it listens.
pub async fn start(config: ServeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let data = &config.data;
    std::fs::create_dir_all(data).with_context(|| format!("failed to create the data folder {}", data.display()))?;
    let store = Arc::new(match &config.store {
        Some(url) => Store::connect(url).await?,
        None => Store::open(data)?,
    });
    let key_file = config.signing_key.clone().unwrap_or_else(|| data.join(crate::keys::KEY_FILE));
    let (key, new_key) = crate::keys::load_or_create(&key_file)?;
    if new_key {
        tracing::info!(
            file = %key_file.display(),
            key = %patchward_api::dsse::public_key_text(&key.verifying_key()),
            "made the engine's signing key"
        );
    }
    if config.store.is_some() {
        check_signing_key(&store, &key).await?;
    }
    let (admin_token_file, how) = admin_token(data, &store, clock.now()).await?;
    match how {
        AdminToken::Written => tracing::info!(file = %admin_token_file.display(), "wrote the admin token (mode 0600)"),
        AdminToken::Read => tracing::info!(file = %admin_token_file.display(), "the admin token is in its file"),
        AdminToken::Elsewhere => tracing::info!(
            "the admin token is in the data folder of the replica that first started on this store (admin-token); \
             every replica accepts it"
        ),
    }
    let webhook_secret = match &config.webhook_secret_file {
        None => None,
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("failed to read the webhook secret {}", path.display()))?
                .trim_ascii()
                .to_vec(),
        ),
    };
    let signatures = match (&config.allowed_signers, config.signature_mode) {
        (Some(path), mode) if mode != crate::follow::signature::SignatureMode::Off => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the allowed signers {}", path.display()))?;
            let signers = crate::follow::signature::AllowedSigners::parse(&text, &path.display().to_string())?;
            Some((mode, signers))
        }
        _ => None,
    };
    let settings = EngineSettings { desired_ttl: config.desired_ttl, ..EngineSettings::default() };
    let engine = Arc::new(Engine::new(store, key, clock, settings));
    let replica = replica_id()?;
    let shared = engine.store.is_shared();
    if shared {
        // Follows until the lease says otherwise.
        engine.store.set_fencing(Fencing::Follower);
        engine.set_role(ReplicaRole::Follower);
        tracing::info!(replica, "this replica claims the leader's lease or follows the leader");
    } else {
        tracing::info!(replica, "this replica leads (the embedded store has one)");
    }
    engine.status.update(|s| {
        let leader_id = (!shared).then(|| replica.clone());
        s.replica = super::status::Replica { id: replica.clone(), leader: !shared, leader_id }
    });
    let media_dir = config.media_dir.clone().unwrap_or_else(|| data.join("blobs"));
    if shared && config.media_dir.is_none() {
        tracing::warn!(
            dir = %media_dir.display(),
            "on a shared store every replica must reach one media directory (media.dir): this one is this replica's own"
        );
    }
    let blobs =
        Arc::new(BlobStore::open(&media_dir).with_context(|| format!("failed to open {}", media_dir.display()))?);
    crate::follow::set_network_timeouts(config.connect_timeout, config.read_timeout);
    let origin = PolicyOrigin::resolve(&config.policies, &config.branch);
    tracing::info!(policy = %origin.describe(), "following the policy");
    let reconciler = Reconciler::new(
        engine.clone(),
        ReconcilerSettings {
            origin,
            poll_interval: config.poll_interval,
            signatures,
            limits: crate::policy::PolicyLimits::default(),
            credentials: config.credentials.clone(),
        },
        data,
    )?;
    let catalog_sync = CatalogSync::new(engine.clone(), config.poll_interval, config.bundled_feed)?;
    let api_listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("failed to listen on {}", config.listen))?;
    let metrics_listener = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("failed to listen on {} (metrics)", config.metrics_listen))?;
    let api = api_listener.local_addr()?;
    let metrics = metrics_listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state = Arc::new(ApiState::new(engine.clone(), blobs.clone(), config.limits.clone(), webhook_secret));
    let (app, hot) = (router(state.clone()), crate::api::HotPath::new(state));
    let metrics_app = metrics_router(engine.clone());
    let limits = config.limits.clone();
    let mut tasks = vec![
        tokio::spawn(reconcile_loop(reconciler, engine.clone(), stopped.clone())),
        tokio::spawn(media_loop(engine.clone(), blobs, stopped.clone())),
        tokio::spawn(report_replan_loop(engine.clone(), stopped.clone())),
        tokio::spawn(catalog_loop(catalog_sync, engine.clone(), stopped.clone())),
        tokio::spawn(serve_connections(api_listener, app, Some(hot), limits.clone(), stopped.clone())),
        tokio::spawn(serve_connections(metrics_listener, metrics_app, None, limits, stopped.clone())),
    ];
    if shared {
        let address = config.advertise_url.clone().unwrap_or_else(|| advertised(api));
        tracing::info!(address, "the other replicas reach this one at this address");
        let replica = Replica { id: replica, address };
        tasks.push(tokio::spawn(signal_loop(engine.clone(), stopped.clone())));
        tasks.push(tokio::spawn(check_in_loop(engine.clone(), stopped.clone())));
        tasks.push(tokio::spawn(leadership_loop(engine.clone(), replica, config.leader_lease, stopped)));
    }
    tracing::info!("API on http://{api}, metrics on http://{metrics}/metrics");
    tracing::info!("console on {} — sign in with the admin token in {}", console_url(api), admin_token_file.display());
    Ok(Running { api, metrics, engine, admin_token_file, stop, tasks })
}

/// Where the other replicas reach this one by default: the listener, or
/// this host's name when it listens on every address.
fn advertised(api: SocketAddr) -> String {
    if api.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = if host.trim().is_empty() { "localhost" } else { host.trim() };
        return format!("http://{host}:{}", api.port());
    }
    format!("http://{api}")
}

/// The console's address for a browser on this machine: a wildcard
/// listener is reached through loopback.
pub fn console_url(api: std::net::SocketAddr) -> String {
    let host = match api.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/", api.port())
}

/// `patchward serve`: runs until Ctrl-C or SIGTERM.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start tokio")?;
    runtime.block_on(async {
        let running = start(config, Arc::new(SystemClock)).await?;
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Reconciles on the action's interval or at once on a sync request.
async fn reconcile_loop(reconciler: Reconciler, engine: Arc<Engine>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let reconciler = Arc::new(std::sync::Mutex::new(reconciler));
    let mut forced = true;
    loop {
        if !engine.lead_or_stop(&mut stopped).await {
            return;
        }
        let pass = reconciler.clone();
        let action =
            tokio::task::spawn_blocking(move || pass.lock().unwrap_or_else(|p| p.into_inner()).reconcile(forced)).await;
        let Ok(action) = action else {
            tracing::error!("a reconcile pass panicked; retrying in 5s");
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            continue;
        };
        tracing::debug!(after = ?action.requeue_after, "reconciled; waiting");
        tokio::select! {
            _ = tokio::time::sleep(action.requeue_after) => forced = false,
            _ = engine.sync_requests.notified() => forced = true,
            _ = stopped.changed() => return,
        }
    }
}

/// Plans the fleet again once reports arrived (a gate may pass), no sooner
/// than `report_replan` after the last plan, instead of at the
/// reconciler's next pass (the poll interval: a minute by default).
async fn report_replan_loop(engine: Arc<Engine>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        if !engine.lead_or_stop(&mut stopped).await {
            return;
        }
        tokio::select! {
            _ = engine.reports_arrived.notified() => {}
            _ = stopped.changed() => return,
        }
        while let Some(at) = engine.report_replan_at() {
            let wait = at.duration_since(engine.clock.now());
            let wait = std::time::Duration::try_from(wait).unwrap_or_default().min(REPORT_REPLAN_POLL);
            // A report that arrives meanwhile looks at the clock again.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = engine.reports_arrived.notified() => {}
                _ = stopped.changed() => return,
            }
            let planner = engine.clone();
            match tokio::task::spawn_blocking(move || planner.replan_if_due()).await {
                Ok(Err(e)) => tracing::error!(error = %e, "plan after reports failed"),
                Err(_) => tracing::error!("a plan after reports panicked"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// How long the report re-planner sleeps at most before it looks at the
/// clock again (a clock that jumps is seen within this).
const REPORT_REPLAN_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Syncs the catalog sources on their intervals, and at once after what is
/// in force changed (a new policy may name new sources).
async fn catalog_loop(sync: CatalogSync, engine: Arc<Engine>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let sync = Arc::new(std::sync::Mutex::new(sync));
    let mut changes = engine.subscribe_in_force();
    loop {
        if !engine.lead_or_stop(&mut stopped).await {
            return;
        }
        let pass = sync.clone();
        let Ok(action) =
            tokio::task::spawn_blocking(move || pass.lock().unwrap_or_else(|p| p.into_inner()).run_once()).await
        else {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(action.requeue_after) => {}
            _ = changes.changed() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// After a failed download, the media master tries that package again no
/// sooner than this.
const MEDIA_RETRY: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// The media master: whenever desired states change (a device may need a
/// new package), fetches what the plan needs and the store lacks, on a
/// task of its own so that a slow vendor never delays a reconcile.
/// The media master reads the whole fleet's plan to find what is wanted,
/// while changes come one device at a time (every enrollment re-plans its
/// device): it looks at most once per this, so a burst of enrollments
/// costs one look, not one per device.
const MEDIA_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

async fn media_loop(engine: Arc<Engine>, blobs: Arc<BlobStore>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let client = match crate::catalog::fetch::client(&crate::catalog::fetch::FetchLimits::default()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the media master: it fetches nothing");
            return;
        }
    };
    let mut changes = engine.subscribe();
    let mut failed: std::collections::HashMap<String, jiff::Timestamp> = std::collections::HashMap::new();
    loop {
        if !engine.lead_or_stop(&mut stopped).await {
            return;
        }
        fetch_media(&engine, &blobs, &client, &mut failed).await;
        // Changes meanwhile are not lost: `changed` answers at once after.
        tokio::select! {
            _ = tokio::time::sleep(MEDIA_SETTLE) => {}
            _ = stopped.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = changes.changed() => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn fetch_media(
    engine: &Engine,
    blobs: &BlobStore,
    client: &reqwest::Client,
    failed: &mut std::collections::HashMap<String, jiff::Timestamp>,
) {
    let Some((in_force, plan, replanned)) = engine.plan_view() else { return };
    let download = in_force.policy.policy.settings.as_ref().map(|s| s.spec.download).unwrap_or_default();
    let devices = super::views::device_plans(&plan, &replanned);
    let wanted = super::media::wanted(&plan, &in_force.policy, &in_force.catalog, &devices, download);
    for package in wanted {
        let now = engine.clock.now();
        if blobs.path(&package.sha256).is_some() || failed.get(&package.sha256).is_some_and(|at| now < *at) {
            continue;
        }
        let timeout = std::time::Duration::from_secs(600);
        match blobs.fetch(client, &package.url, &package.sha256, package.size, timeout).await {
            Ok(()) => {
                failed.remove(&package.sha256);
            }
            Err(e) => {
                tracing::warn!(url = %package.url, sha256 = %package.sha256, error = %e, "media master: fetch failed");
                failed.insert(package.sha256.clone(), now.checked_add(MEDIA_RETRY).unwrap_or(now));
            }
        }
    }
}

fn metrics_router(engine: Arc<Engine>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let engine = engine.clone();
            async move {
                let revision = engine.in_force().map_or(0, |f| f.catalog_revision);
                let body = engine.metrics.render(engine.in_force().is_some(), revision);
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
            }
        }),
    )
}

/// Accepts connections until stopped, each served by hyper with bounded
/// headers, a header-read timeout and a per-request timeout; then lets the
/// connections in flight finish. A request `hot` answers from memory
/// never reaches `app`.
async fn serve_connections(
    listener: TcpListener,
    app: axum::Router,
    hot: Option<crate::api::HotPath>,
    limits: super::config::Limits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use tower::ServiceExt as _;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let request_timeout = limits.request_timeout + limits.max_wait;
    // Around the router, not through `Router::layer` (which wraps every
    // route anew): one layer of futures per request, not one per route
    // layer, on the path every poll takes.
    let app = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.request_timeout))
        .service(app);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let Ok((stream, peer)) = accepted else { continue };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the cap: refuse at once rather than queue.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stopped = stopped.clone();
        let limits = limits.clone();
        let hot = hot.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                use futures_util::future::Either;
                if let Some(answer) = hot.as_ref().and_then(|hot| hot.answer(&request)) {
                    return Either::Left(std::future::ready(Ok(answer)));
                }
                let mut request = request.map(axum::body::Body::new);
                // The console limits failed sign-ins per client address.
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                Either::Right(app.clone().oneshot(request))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192));
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    // Wait (bounded) for the connections in flight.
    let all = limits.max_connections as u32;
    let _ = tokio::time::timeout(limits.request_timeout, connections.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_console_url_is_one_a_browser_here_opens() {
        let url = |addr: &str| super::console_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:8420"), "http://127.0.0.1:8420/");
        assert_eq!(url("127.0.0.1:8420"), "http://127.0.0.1:8420/");
        assert_eq!(url("[::]:8420"), "http://[::1]:8420/");
        assert_eq!(url("10.0.0.5:80"), "http://10.0.0.5:80/");
    }
}
