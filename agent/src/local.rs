//! The agent's local control socket: how `patchward-agent status`, `snooze
//! ITEM`, `install ITEM` and `history` talk to the running agent.
//!
//! # Protocol
//!
//! A Unix stream socket, JSON lines, one request and one response per
//! connection: the client writes one line, the agent answers one line and
//! closes.
//!
//! - Requests: `{"request":"status"}`, `{"request":"snooze","item":ID}`,
//!   `{"request":"install","item":ID}`, `{"request":"history","item":ID|null,
//!   "limit":N}` (`item` and `limit` optional; `limit` defaults to
//!   [`DEFAULT_HISTORY_LIMIT`] and is cut at [`MAX_HISTORY_LIMIT`]).
//! - Responses: `{"response":KIND,"body":...}` with KIND one of `status`
//!   ([`StatusView`]), `snoozed`, `install-accepted`, `refused`, `history`
//!   (a list of [`HistoryEntry`]) and `error` (`{"message"}`: the request
//!   could not be read or answered, as opposed to `refused`, where the
//!   agent read it and said no under the administrator's limits).
//!
//! # Who may ask, and where the socket lives
//!
//! These are the user role's rights: any local user may see the status and
//! ask to snooze or install on demand, and the agent decides each request
//! under the administrator's policy (`decide_snooze`,
//! `decide_self_service_install`), so a request can never do more than the
//! policy allows whoever sends it. The socket is therefore mode 0666. Each
//! request is logged with the sender's uid, gid and pid, which the kernel
//! vouches for (`SO_PEERCRED`), and the handler receives them.
//!
//! The state directory holds the device's credential and is 0700 root-only,
//! so a socket inside it would be unreachable for users whatever its own
//! mode. The socket lives in its own runtime directory instead, 0755
//! (`/run/patchward-agent/agent.sock` by default; systemd's
//! `RuntimeDirectory=` creates it and removes it when the service stops),
//! which holds nothing else.
//!
//! # Bounds
//!
//! A request line is at most [`ServerLimits::max_line_bytes`] (64 KiB),
//! must arrive within `read_timeout`, and at most `max_clients`
//! connections are served at once; one more is told the agent is busy.
//! A slow or hostile client cannot hold the agent up: handlers run on the
//! blocking pool, never on the accept loop.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use patchward_api::ReportStatus;
use patchward_api::deployment::DeploymentMode;
use patchward_api::desired::{Action, Status};
use patchward_api::events::{AgentEvent, EventKind};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use crate::decide::{
    BlackoutHold, Decision, GiveUpReason, NothingReason, Refusal, SelfServiceAccepted, SnoozeGranted, WaitReason,
};

/// Where the socket's directory is by default (systemd's `RuntimeDirectory`).
pub const DEFAULT_RUNTIME_DIR: &str = "/run/patchward-agent";
/// The socket's name inside the runtime directory.
pub const SOCKET_NAME: &str = "agent.sock";
/// History entries a request without `limit` gets.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
/// The most history entries one response carries.
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// The longest response line the client reads (a full history fits).
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// The socket path in a runtime directory.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

fn default_history_limit() -> usize {
    DEFAULT_HISTORY_LIMIT
}

/// What a local user asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Put off the prompt of this item.
    Snooze {
        item: String,
    },
    /// Install this item now (self-service, or accepting its prompt).
    Install {
        item: String,
    },
    /// The latest events, newest first; of one item, or of all.
    History {
        #[serde(default)]
        item: Option<String>,
        #[serde(default = "default_history_limit")]
        limit: usize,
    },
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Snooze { .. } => "snooze",
            Request::Install { .. } => "install",
            Request::History { .. } => "history",
        }
    }

    fn item(&self) -> Option<&str> {
        match self {
            Request::Status => None,
            Request::Snooze { item } | Request::Install { item } => Some(item),
            Request::History { item, .. } => item.as_deref(),
        }
    }
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", content = "body", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Response {
    Status(StatusView),
    /// The snooze was granted: nothing is asked again before `until`.
    Snoozed {
        item: String,
        until: Timestamp,
        snoozes_left: u32,
    },
    /// The install will run; at once, or after the blackout that holds now.
    InstallAccepted {
        item: String,
        held_by_blackout: Option<BlackoutView>,
    },
    /// The agent read the request and said no; `reason` is for the user.
    Refused {
        item: String,
        reason: String,
    },
    History(Vec<HistoryEntry>),
    /// The request could not be read or answered.
    Error {
        message: String,
    },
}

impl Response {
    /// The answer to a snooze, from [`crate::decide::decide_snooze`].
    pub fn snooze_decided(item: &str, decided: &Result<SnoozeGranted, Refusal>) -> Response {
        match decided {
            Ok(granted) => {
                Response::Snoozed { item: item.to_owned(), until: granted.until, snoozes_left: granted.snoozes_left }
            }
            Err(refusal) => Response::refused(item, refusal),
        }
    }

    /// The answer to an install, from
    /// [`crate::decide::decide_self_service_install`].
    pub fn install_decided(item: &str, decided: &Result<SelfServiceAccepted, Refusal>) -> Response {
        match decided {
            Ok(accepted) => Response::InstallAccepted {
                item: item.to_owned(),
                held_by_blackout: accepted.held_by_blackout.as_ref().map(BlackoutView::from),
            },
            Err(refusal) => Response::refused(item, refusal),
        }
    }

    pub fn refused(item: &str, refusal: &Refusal) -> Response {
        Response::Refused { item: item.to_owned(), reason: refusal.to_string() }
    }

    /// An item the device's desired state does not have.
    pub fn unknown_item(item: &str) -> Response {
        Response::Refused {
            item: item.to_owned(),
            reason: format!("{item} is not in this device's desired state; `patchward-agent status` lists the items"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Response::Status(_) => "status",
            Response::Snoozed { .. } => "snoozed",
            Response::InstallAccepted { .. } => "install-accepted",
            Response::Refused { .. } => "refused",
            Response::History(_) => "history",
            Response::Error { .. } => "error",
        }
    }
}

/// A blackout that holds an accepted install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlackoutView {
    /// The maintenance window whose blackout it is.
    pub window: String,
    pub reason: Option<String>,
    /// When the install can start; `None`: not within a year.
    pub until: Option<Timestamp>,
}

impl From<&BlackoutHold> for BlackoutView {
    fn from(hold: &BlackoutHold) -> BlackoutView {
        BlackoutView { window: hold.window.clone(), reason: hold.reason.clone(), until: hold.until }
    }
}

/// What `patchward-agent status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// When the agent took this view (its clock).
    pub at: Timestamp,
    /// The device's id at the engine; `None` before enrollment.
    pub device: Option<String>,
    /// The generation of the desired state in force.
    pub generation: Option<u64>,
    /// When the agent last heard from the engine.
    pub last_contact: Option<Timestamp>,
    pub items: Vec<ItemView>,
}

/// One desired item, as its user sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    pub patch: String,
    pub action: Action,
    /// The engine's status of the item.
    pub status: Status,
    /// The deployment policy that decides it (a fallback's, when one did).
    pub policy: String,
    pub mode: DeploymentMode,
    pub next: NextStep,
    /// When the install becomes mandatory.
    pub deadline: Option<Timestamp>,
    /// `None` for modes that never prompt.
    pub snoozes_left: Option<u32>,
    /// Whether `patchward-agent snooze ITEM` can be granted now.
    pub can_snooze: bool,
    /// Whether `patchward-agent install ITEM` installs on demand.
    pub self_service: bool,
    pub last_outcome: Option<Outcome>,
}

/// What the agent will do next with an item, in words and as a kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextStep {
    /// `nothing`, `install`, `uninstall`, `wait`, `prompt`, `snoozed` or `gave-up`.
    pub kind: String,
    /// For the user: "waiting for the maintenance window", ...
    pub text: String,
    /// Until when it waits, when it is known.
    pub until: Option<Timestamp>,
}

impl NextStep {
    /// An item whose package fixes name nothing installed here.
    pub fn not_applicable() -> NextStep {
        NextStep {
            kind: "nothing".to_owned(),
            text: "not applicable: none of the packages it fixes is installed".to_owned(),
            until: None,
        }
    }

    /// The user's view of a decision of [`crate::decide::decide`].
    pub fn from_decision(decision: &Decision) -> NextStep {
        let step = |kind: &str, text: &str, until| NextStep { kind: kind.to_owned(), text: text.to_owned(), until };
        match decision {
            Decision::Nothing { reason } => step(
                "nothing",
                match reason {
                    NothingReason::EngineReportsInstalled | NothingReason::DetectedPresent => "installed",
                    NothingReason::EngineReportsRemoved | NothingReason::DetectedAbsent => "removed",
                },
                None,
            ),
            Decision::InstallNow { mandatory: true, .. } => {
                step("install", "installing now: the deadline passed", None)
            }
            Decision::InstallNow { .. } => step("install", "installing now", None),
            Decision::UninstallNow { .. } => step("uninstall", "removing now", None),
            Decision::WaitUntil { at, reason } => {
                NextStep { kind: "wait".to_owned(), text: wait_text(reason), until: *at }
            }
            Decision::Prompt { answer_by, .. } => {
                step("prompt", "waiting for your answer: install it now, or snooze it", Some(*answer_by))
            }
            Decision::CountIgnoredPromptAsSnooze { snooze } => {
                step("snoozed", "the prompt went unanswered and counts as a snooze", Some(snooze.until))
            }
            Decision::GiveUp { reason } => NextStep {
                kind: "gave-up".to_owned(),
                text: match reason {
                    GiveUpReason::TooManyFailures { failures, .. } => {
                        format!("gave up after {failures} failed installs; ask your administrator")
                    }
                    GiveUpReason::TooManyAttempts { attempts, .. } => {
                        format!("gave up after {attempts} attempts; ask your administrator")
                    }
                    GiveUpReason::UnresolvableZone { message } | GiveUpReason::PolicyIncomplete { message } => {
                        format!("cannot proceed: {message}; ask your administrator")
                    }
                },
                until: None,
            },
        }
    }
}

fn wait_text(reason: &WaitReason) -> String {
    match reason {
        WaitReason::NotBefore => "not due yet".to_owned(),
        WaitReason::RolloutGate => "waiting for its rollout to reach this device".to_owned(),
        WaitReason::RetryLater => "another install is running; retrying later".to_owned(),
        WaitReason::OutsideWindows => "waiting for the maintenance window".to_owned(),
        WaitReason::Blackout { window, reason: Some(why) } => format!("held by a blackout of `{window}`: {why}"),
        WaitReason::Blackout { window, reason: None } => format!("held by a blackout of `{window}`"),
        WaitReason::Snoozed { .. } => "snoozed".to_owned(),
        WaitReason::AwaitingAnswer { .. } => "waiting for your answer: install it now, or snooze it".to_owned(),
        WaitReason::NotIdle { .. } => "waiting for the device to be idle".to_owned(),
        WaitReason::AwaitingRestart => "installs at the next restart".to_owned(),
        WaitReason::PromptHoursBegin => "waiting for the hours when it may ask you".to_owned(),
        WaitReason::PromptHoursEnd => "waiting for the maintenance window".to_owned(),
        WaitReason::DeadlineComes => "installs at its deadline at the latest".to_owned(),
    }
}

/// How the last install or removal of an item ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub at: Timestamp,
    pub status: ReportStatus,
    pub message: Option<String>,
}

/// One line of `patchward-agent history`: an event the agent recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub item: Option<String>,
    pub kind: EventKind,
    /// For a report: how it ended.
    pub status: Option<ReportStatus>,
    pub message: Option<String>,
}

impl From<&AgentEvent> for HistoryEntry {
    fn from(event: &AgentEvent) -> HistoryEntry {
        HistoryEntry {
            at: event.at,
            item: event.patch.clone(),
            kind: event.kind,
            status: event.status,
            message: event.message.clone(),
        }
    }
}

/// Who sent a request, as the kernel tells it (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Unknown when the sender is in another pid namespace.
    pub pid: Option<i32>,
}

/// What the running agent does with each request. Called on tokio's
/// blocking pool, so it may take locks and write its journal.
pub trait LocalHandler: Send + Sync {
    fn status(&self) -> StatusView;
    /// Decide under the policy (`decide_snooze`), record, report to the
    /// engine, and answer with [`Response::snooze_decided`].
    fn snooze(&self, item: &str, who: Peer) -> Response;
    /// Decide (`decide_self_service_install`, or accept a prompt), record,
    /// report, and answer with [`Response::install_decided`].
    fn install(&self, item: &str, who: Peer) -> Response;
    /// The latest `limit` entries, newest first.
    fn history(&self, item: Option<&str>, limit: usize) -> Vec<HistoryEntry>;
}

/// The server's bounds on each client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_line_bytes: usize,
    /// The whole request line must arrive within this.
    pub read_timeout: Duration,
    /// The response must be taken within this.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_clients: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_line_bytes: 64 << 10,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_clients: 8,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    pub limits: ServerLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no agent is listening on {path}; `status` and `history` can read the state directory instead")]
    NotRunning { path: PathBuf },
    #[error("{path}: permission denied; the socket should be mode 0666 in a 0755 directory")]
    PermissionDenied { path: PathBuf },
    #[error("an agent is already listening on {path}")]
    AlreadyListening { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("the agent on {path} did not answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("the agent on {path} answered something unreadable: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LocalError + '_ {
    move |source| LocalError::Io { path: path.to_owned(), source }
}

/// Binds the socket at `path` for [`serve`] (inside a tokio runtime).
///
/// Creates the runtime directory (0755) if it is missing, replaces a stale
/// socket left by an agent that died, refuses to start beside a live one,
/// and makes the socket 0666 (module docs: why).
pub fn bind(path: &Path) -> Result<UnixListener, LocalError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_error(dir))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(LocalError::AlreadyListening { path: path.to_owned() });
            }
            fs::remove_file(path).map_err(io_error(path))?;
        }
        Ok(_) => return Err(LocalError::NotASocket { path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(LocalError::Io { path: path.to_owned(), source: e }),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io_error(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(io_error(path))?;
    listener.set_nonblocking(true).map_err(io_error(path))?;
    UnixListener::from_std(listener).map_err(io_error(path))
}

/// Serves requests on `listener` until the task is dropped (or accepting
/// fails for good).
pub async fn serve(listener: UnixListener, handler: Arc<dyn LocalHandler>, options: ServerOptions) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.limits.max_clients));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_transient_accept_error(&e) => {
                // Out of file descriptors, or a client that gave up before
                // we accepted: wait a little rather than spin.
                tracing::warn!(error = %e, "local socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let limits = options.limits;
        // Taken here, in accept order, so the client past the limit is the
        // one told it is busy.
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let handler = Arc::clone(&handler);
                tokio::spawn(
                    async move {
                        serve_one(stream, handler, limits).await;
                        drop(slot);
                    }
                    .in_current_span()
                    .with_current_subscriber(),
                );
            }
            Err(_) => {
                tokio::spawn(
                    async move {
                        let busy = Response::Error {
                            message: format!(
                                "the agent is already serving {} requests; try again in a moment",
                                limits.max_clients
                            ),
                        };
                        tracing::warn!(max = limits.max_clients, "local socket: too many clients");
                        let mut stream = stream;
                        let _ = write_response(&mut stream, &busy, limits.write_timeout).await;
                    }
                    .in_current_span()
                    .with_current_subscriber(),
                );
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Why no request could be read.
enum ReadFailure {
    TooLong,
    TimedOut,
    Closed,
    Io(io::Error),
}

async fn read_request_line(stream: &mut UnixStream, limits: &ServerLimits) -> Result<Vec<u8>, ReadFailure> {
    let mut line = Vec::new();
    let mut reader = AsyncBufReader::new(stream).take(limits.max_line_bytes as u64 + 1);
    let read = tokio::time::timeout(limits.read_timeout, reader.read_until(b'\n', &mut line)).await;
    match read {
        Err(_) => Err(ReadFailure::TimedOut),
        Ok(Err(e)) => Err(ReadFailure::Io(e)),
        Ok(Ok(0)) => Err(ReadFailure::Closed),
        Ok(Ok(_)) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.len() > limits.max_line_bytes { Err(ReadFailure::TooLong) } else { Ok(line) }
        }
    }
}

async fn serve_one(mut stream: UnixStream, handler: Arc<dyn LocalHandler>, limits: ServerLimits) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() },
        Err(e) => {
            tracing::warn!(error = %e, "local socket: no peer credentials; request dropped");
            return;
        }
    };
    let response = match read_request_line(&mut stream, &limits).await {
        Ok(line) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => {
                let answer = answer(handler, request.clone(), peer).await;
                tracing::info!(
                    request = request.kind(),
                    item = request.item(),
                    uid = peer.uid,
                    gid = peer.gid,
                    pid = peer.pid,
                    response = answer.kind(),
                    "local request"
                );
                answer
            }
            Err(e) => {
                tracing::warn!(uid = peer.uid, pid = peer.pid, error = %e, "local request unreadable");
                Response::Error { message: format!("not a request: {e}") }
            }
        },
        Err(ReadFailure::TooLong) => {
            tracing::warn!(uid = peer.uid, pid = peer.pid, "local request too long");
            Response::Error { message: format!("a request is one line of at most {} bytes", limits.max_line_bytes) }
        }
        Err(ReadFailure::TimedOut) => {
            tracing::warn!(uid = peer.uid, pid = peer.pid, "local request timed out");
            Response::Error { message: format!("no request line within {:?}", limits.read_timeout) }
        }
        Err(ReadFailure::Closed) => return,
        Err(ReadFailure::Io(e)) => {
            tracing::warn!(uid = peer.uid, error = %e, "local request: read failed");
            return;
        }
    };
    if let Err(e) = write_response(&mut stream, &response, limits.write_timeout).await {
        tracing::warn!(uid = peer.uid, error = %e, "local response not delivered");
    }
}

async fn answer(handler: Arc<dyn LocalHandler>, request: Request, peer: Peer) -> Response {
    let run = tokio::task::spawn_blocking(move || match request {
        Request::Status => Response::Status(handler.status()),
        Request::Snooze { item } => handler.snooze(&item, peer),
        Request::Install { item } => handler.install(&item, peer),
        Request::History { item, limit } => {
            Response::History(handler.history(item.as_deref(), limit.min(MAX_HISTORY_LIMIT)))
        }
    });
    match run.await {
        Ok(response) => response,
        // The handler panicked: the agent is in trouble, but the user still
        // gets an answer rather than a dropped connection.
        Err(e) => Response::Error { message: format!("the agent failed to answer: {e}") },
    }
}

async fn write_response(stream: &mut UnixStream, response: &Response, timeout: Duration) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    match tokio::time::timeout(timeout, async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client did not read the response")),
    }
}

/// Sends one request to the agent at `socket` and waits up to `timeout`
/// (each of the connect, write and read) for its answer.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, LocalError> {
    let path = || socket.to_owned();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => LocalError::NotRunning { path: path() },
        io::ErrorKind::PermissionDenied => LocalError::PermissionDenied { path: path() },
        _ => LocalError::Io { path: path(), source: e },
    })?;
    let timed_out = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => LocalError::Timeout { path: path(), timeout },
        _ => LocalError::Io { path: path(), source: e },
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_error(socket))?;
    stream.set_write_timeout(Some(timeout)).map_err(io_error(socket))?;
    let mut line =
        serde_json::to_vec(request).map_err(|e| LocalError::Protocol { path: path(), message: e.to_string() })?;
    line.push(b'\n');
    match stream.write_all(&line) {
        // A busy agent answers and closes without reading the request: its
        // answer is still there to read.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::ConnectionReset => {}
        other => other.map_err(timed_out)?,
    }
    let mut answer = Vec::new();
    BufReader::new(stream.take(MAX_RESPONSE_BYTES)).read_until(b'\n', &mut answer).map_err(timed_out)?;
    if answer.is_empty() {
        return Err(LocalError::Protocol {
            path: path(),
            message: "the connection closed without an answer".to_owned(),
        });
    }
    serde_json::from_slice(&answer).map_err(|e| LocalError::Protocol { path: path(), message: e.to_string() })
}
