//! The local control socket, over a real Unix socket in a temp dir, with a
//! fake handler that records what it was asked.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use patchward_agent::local::{
    self, HistoryEntry, LocalError, LocalHandler, MAX_HISTORY_LIMIT, Peer, Request, Response, ServerLimits,
    ServerOptions, StatusView,
};
use patchward_api::events::EventKind;
use patchward_api::logging::{Captured, Output};
use tokio::io::AsyncReadExt;
use tracing::instrument::WithSubscriber as _;

const TIMEOUT: Duration = Duration::from_secs(10);

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Status,
    Snooze(String, Peer),
    Install(String, Peer),
    History(Option<String>, usize),
}

/// Records calls; with `hold_until` set, each call waits until that many
/// calls are inside the handler at once (or a failure deadline passes).
#[derive(Default)]
struct FakeHandler {
    calls: Mutex<Vec<Call>>,
    hold_until: Option<usize>,
    inside: Mutex<(usize, usize)>,
    changed: Condvar,
}

impl FakeHandler {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn enter(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        let Some(wanted) = self.hold_until else { return };
        let mut inside = self.inside.lock().unwrap();
        inside.0 += 1;
        inside.1 = inside.1.max(inside.0);
        self.changed.notify_all();
        // Only a server that runs requests one by one makes this wait out
        // its deadline; the test then fails on the count.
        let (mut inside, _) =
            self.changed.wait_timeout_while(inside, Duration::from_secs(5), |(_, most)| *most < wanted).unwrap();
        inside.0 -= 1;
    }

    fn most_inside_at_once(&self) -> usize {
        self.inside.lock().unwrap().1
    }
}

fn status_view() -> StatusView {
    StatusView {
        at: at("2025-03-04T05:06:07Z"),
        device: Some("dev-1".into()),
        generation: Some(7),
        last_contact: None,
        items: vec![],
    }
}

impl LocalHandler for FakeHandler {
    fn status(&self) -> StatusView {
        self.enter(Call::Status);
        status_view()
    }

    fn snooze(&self, item: &str, who: Peer) -> Response {
        self.enter(Call::Snooze(item.to_owned(), who));
        Response::Snoozed { item: item.to_owned(), until: at("2025-03-04T09:00:00Z"), snoozes_left: 1 }
    }

    fn install(&self, item: &str, who: Peer) -> Response {
        self.enter(Call::Install(item.to_owned(), who));
        Response::Refused { item: item.to_owned(), reason: format!("{item} is not offered for installing on demand") }
    }

    fn history(&self, item: Option<&str>, limit: usize) -> Vec<HistoryEntry> {
        self.enter(Call::History(item.map(str::to_owned), limit));
        vec![HistoryEntry {
            at: at("2025-03-01T00:00:00Z"),
            item: Some("pw-1".into()),
            kind: EventKind::Snooze,
            status: None,
            message: Some("snoozed by uid 1000".into()),
        }]
    }
}

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    handler: Arc<FakeHandler>,
    log: Captured,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn start(handler: FakeHandler, limits: ServerLimits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("agent.sock");
    let listener = local::bind(&socket).unwrap();
    let handler = Arc::new(handler);
    let (log, captured) = patchward_api::logging::capture("info", Output::Json);
    let server = tokio::spawn(
        local::serve(listener, Arc::clone(&handler) as Arc<dyn LocalHandler>, ServerOptions { limits })
            .with_subscriber(log),
    );
    Running { _dir: dir, socket, handler, log: captured, server }
}

/// The blocking client, off the runtime's threads.
async fn ask(socket: &Path, request: Request) -> Result<Response, LocalError> {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || local::request(&socket, &request, TIMEOUT)).await.unwrap()
}

fn me() -> Peer {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Peer { uid, gid, pid: Some(std::process::id() as i32) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_reaches_the_handler_with_the_senders_credentials() {
    let agent = start(FakeHandler::default(), ServerLimits::default());

    assert_eq!(ask(&agent.socket, Request::Status).await.unwrap(), Response::Status(status_view()));
    let snoozed = ask(&agent.socket, Request::Snooze { item: "pw-1".into() }).await.unwrap();
    assert_eq!(snoozed, Response::Snoozed { item: "pw-1".into(), until: at("2025-03-04T09:00:00Z"), snoozes_left: 1 });
    let refused = ask(&agent.socket, Request::Install { item: "pw-2".into() }).await.unwrap();
    assert!(matches!(&refused, Response::Refused { item, reason } if item == "pw-2" && reason.contains("on demand")));
    let history = ask(&agent.socket, Request::History { item: None, limit: 1_000_000 }).await.unwrap();
    assert!(matches!(&history, Response::History(entries) if entries.len() == 1));

    assert_eq!(
        agent.handler.calls(),
        vec![
            Call::Status,
            Call::Snooze("pw-1".into(), me()),
            Call::Install("pw-2".into(), me()),
            // A huge limit is cut to the most one response carries.
            Call::History(None, MAX_HISTORY_LIMIT),
        ]
    );
    // Every request is logged with who sent it.
    let lines: Vec<serde_json::Value> = agent.log.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let snooze_line = lines.iter().find(|l| l["request"] == "snooze").expect("the snooze is logged");
    assert_eq!(snooze_line["uid"], me().uid);
    assert_eq!(snooze_line["pid"], std::process::id());
    assert_eq!(snooze_line["item"], "pw-1");
    assert_eq!(snooze_line["response"], "snoozed");
    assert_eq!(lines.iter().filter(|l| l["message"] == "local request").count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_format_is_one_json_line_each_way() {
    let agent = start(FakeHandler::default(), ServerLimits::default());
    let socket = agent.socket.clone();
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = StdUnixStream::connect(&socket).unwrap();
        stream.write_all(b"{\"request\":\"history\",\"item\":\"pw-1\"}\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(raw.ends_with('\n') && raw.matches('\n').count() == 1, "{raw:?}");
    let answer: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"response": "history", "body": [{"at": "2025-03-01T00:00:00Z", "item": "pw-1",
            "kind": "snooze", "status": null, "message": "snoozed by uid 1000"}]})
    );
    // `limit` left out is the default.
    assert_eq!(agent.handler.calls(), vec![Call::History(Some("pw-1".into()), local::DEFAULT_HISTORY_LIMIT)]);
}

/// Writes `bytes` and reads the answer to the end, off the runtime.
async fn raw_exchange(socket: &Path, bytes: Vec<u8>) -> Response {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = StdUnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.write_all(&bytes).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        serde_json::from_slice(&answer).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_64_kib_is_refused_unread() {
    let agent = start(FakeHandler::default(), ServerLimits::default());
    // A valid request, padded past the limit with spaces JSON would allow.
    let mut line = b"{\"request\":\"status\"".to_vec();
    line.resize(64 * 1024 + 10, b' ');
    line.extend_from_slice(b"}\n");
    let answer = raw_exchange(&agent.socket, line).await;
    assert!(matches!(&answer, Response::Error { message } if message.contains("at most 65536 bytes")), "{answer:?}");

    // Exactly at the limit is still read.
    let mut line = b"{\"request\":\"status\"".to_vec();
    line.resize(64 * 1024 - 1, b' ');
    line.extend_from_slice(b"}\n");
    assert_eq!(raw_exchange(&agent.socket, line).await, Response::Status(status_view()));
    assert_eq!(agent.handler.calls(), vec![Call::Status]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_fields_are_errors_not_requests() {
    let agent = start(FakeHandler::default(), ServerLimits::default());
    for line in
        [&b"hello\n"[..], b"{\"request\":\"snooze\",\"item\":\"x\",\"as\":\"root\"}\n", b"{\"request\":\"reboot\"}\n"]
    {
        let answer = raw_exchange(&agent.socket, line.to_vec()).await;
        assert!(matches!(&answer, Response::Error { message } if message.starts_with("not a request")), "{answer:?}");
    }
    assert_eq!(agent.handler.calls(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_served_at_the_same_time() {
    let clients = 6;
    let agent = start(FakeHandler { hold_until: Some(clients), ..FakeHandler::default() }, ServerLimits::default());
    let mut asked = Vec::new();
    for n in 0..clients {
        let socket = agent.socket.clone();
        asked.push(async move { ask(&socket, Request::Snooze { item: format!("pw-{n}") }).await });
    }
    let answers = futures_join(asked).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert!(matches!(answer, Ok(Response::Snoozed { item, .. }) if item == format!("pw-{n}")));
    }
    // Every handler call was inside at once: none waited for another.
    assert_eq!(agent.handler.most_inside_at_once(), clients);
}

async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_the_limit_is_told_the_agent_is_busy() {
    let limits = ServerLimits { max_clients: 2, read_timeout: Duration::from_secs(60), ..ServerLimits::default() };
    let agent = start(FakeHandler::default(), limits);
    // Two clients that connect and say nothing hold both slots.
    let idle: Vec<StdUnixStream> = (0..2).map(|_| StdUnixStream::connect(&agent.socket).unwrap()).collect();
    let answer = ask(&agent.socket, Request::Status).await.unwrap();
    assert!(
        matches!(&answer, Response::Error { message } if message.contains("already serving 2 requests")),
        "{answer:?}"
    );
    // Once they go, the agent answers again.
    drop(idle);
    let mut answered = false;
    for _ in 0..100 {
        if matches!(ask(&agent.socket, Request::Status).await, Ok(Response::Status(_))) {
            answered = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(answered);
    assert!(agent.handler.calls().contains(&Call::Status));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_client_that_sends_nothing_is_cut_off_at_the_read_timeout() {
    let limits = ServerLimits { read_timeout: Duration::from_secs(10), ..ServerLimits::default() };
    let agent = start(FakeHandler::default(), limits);
    let mut stream = tokio::net::UnixStream::connect(&agent.socket).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    // The paused clock jumps to the server's timer while everyone waits.
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(10));
    let answer: Response = serde_json::from_slice(&answer).unwrap();
    assert!(matches!(&answer, Response::Error { message } if message.contains("no request line within 10s")));
    assert_eq!(agent.handler.calls(), vec![]);
}

#[test]
fn no_agent_listening_says_so_and_points_at_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file whose agent died: the file stays, nobody accepts.
    let dead = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let missing = dir.path().join("nothing-here.sock");
    for path in [&dead, &missing] {
        let error = local::request(path, &Request::Status, TIMEOUT).unwrap_err();
        assert!(matches!(&error, LocalError::NotRunning { path: p } if p == path), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("no agent is listening") && text.contains("read the state directory"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_makes_a_world_usable_socket_and_replaces_only_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let socket = runtime.join("agent.sock");

    let first = local::bind(&socket).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&runtime), 0o755);
    assert_eq!(mode(&socket), 0o666);
    // A live agent is not displaced.
    assert!(matches!(local::bind(&socket), Err(LocalError::AlreadyListening { .. })));
    // A dead one's socket is.
    drop(first);
    let second = local::bind(&socket).unwrap();
    drop(second);
    // Something that is not a socket is never removed.
    let file = dir.path().join("precious");
    std::fs::write(&file, "keep me").unwrap();
    assert!(matches!(local::bind(&file), Err(LocalError::NotASocket { .. })));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn requests_and_responses_read_back_as_written() {
    let requests = [
        Request::Status,
        Request::Snooze { item: "pw-1".into() },
        Request::Install { item: "pw-1".into() },
        Request::History { item: None, limit: 3 },
    ];
    for request in requests {
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request, "{line}");
    }
    assert_eq!(
        serde_json::to_value(Request::Snooze { item: "pw-1".into() }).unwrap(),
        serde_json::json!({"request": "snooze", "item": "pw-1"})
    );
    let accepted = Response::InstallAccepted {
        item: "pw-1".into(),
        held_by_blackout: Some(local::BlackoutView {
            window: "servers-night".into(),
            reason: Some("freeze".into()),
            until: Some(at("2025-03-05T00:00:00Z")),
        }),
    };
    let value = serde_json::to_value(&accepted).unwrap();
    assert_eq!(value["response"], "install-accepted");
    assert_eq!(value["body"]["heldByBlackout"]["window"], "servers-night");
    assert_eq!(serde_json::from_value::<Response>(value).unwrap(), accepted);
}

#[test]
fn a_decision_reads_as_the_next_step_the_user_sees() {
    use patchward_agent::decide::{Decision, WaitReason};
    use patchward_agent::local::NextStep;
    use patchward_api::deployment::RebootBehaviour;

    let opening = at("2025-03-04T22:00:00Z");
    let waiting =
        NextStep::from_decision(&Decision::WaitUntil { at: Some(opening), reason: WaitReason::OutsideWindows });
    assert_eq!(
        waiting,
        NextStep { kind: "wait".into(), text: "waiting for the maintenance window".into(), until: Some(opening) }
    );
    let blackout = NextStep::from_decision(&Decision::WaitUntil {
        at: None,
        reason: WaitReason::Blackout { window: "servers-night".into(), reason: Some("year-end freeze".into()) },
    });
    assert_eq!(blackout.text, "held by a blackout of `servers-night`: year-end freeze");
    let answer_by = at("2025-03-04T09:30:00Z");
    let prompt = NextStep::from_decision(&Decision::Prompt {
        message: "m".into(),
        display_for: patchward_api::Duration::from_secs(300),
        answer_by,
        snoozes_left: 1,
        can_snooze: true,
        deadline: None,
        reboot: RebootBehaviour::Never,
        decided_by: "workstations".into(),
    });
    assert_eq!((prompt.kind.as_str(), prompt.until), ("prompt", Some(answer_by)));
    let mandatory = NextStep::from_decision(&Decision::InstallNow {
        reason: patchward_agent::decide::InstallReason::Deadline,
        mandatory: true,
        reboot: RebootBehaviour::Auto,
        decided_by: "workstations".into(),
    });
    assert_eq!(mandatory.text, "installing now: the deadline passed");
}
