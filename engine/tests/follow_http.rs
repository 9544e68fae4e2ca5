//! The reconciler follows a repository over git's smart HTTP protocol, as
//! it would follow a forge: a real `git http-backend` (git's own CGI
//! server) behind a listener on 127.0.0.1, a commit pushed to it, a
//! force-push refused, and a server that stops answering.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use patchward::clock::{Clock, FakeClock};
use patchward::daemon::reconcile::{PolicyOrigin, Reconciler, ReconcilerSettings};
use patchward::daemon::status::ConditionType;
use patchward::daemon::{Engine, EngineSettings};
use patchward::policy::PolicyLimits;
use patchward::store::Store;
use support::{example_policy_repository, git};

/// Serves the bare repositories under `root` with `git http-backend`.
async fn serve_git(root: PathBuf) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |request: Request<Body>| cgi(root.clone(), request));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One request through the CGI: the request line and headers as its
/// environment, the body on its stdin, its headers and body back.
async fn cgi(root: PathBuf, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let output = tokio::task::spawn_blocking(move || run_cgi(&root, &parts, &body)).await.unwrap();
    respond(output)
}

fn run_cgi(root: &Path, parts: &axum::http::request::Parts, body: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut child = std::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The CGI's answer as an HTTP response: its `Status` header, the others as
/// they are, then the body.
fn respond(output: std::process::Output) -> Response<Body> {
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else {
        return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(output.stderr)).unwrap();
    };
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&output.stdout[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(StatusCode::BAD_GATEWAY);
        } else {
            response = response.header(name, value);
        }
    }
    response.status(status).body(Body::from(output.stdout[at + gap..].to_vec())).unwrap()
}

fn reconciler(data: &Path, url: String, clock: Arc<FakeClock>) -> (Arc<Engine>, Reconciler) {
    let store = Arc::new(Store::open(data).unwrap());
    let (key, _) = patchward::keys::load_or_create(&data.join(patchward::keys::KEY_FILE)).unwrap();
    let clock: Arc<dyn Clock> = clock;
    let engine = Arc::new(Engine::new(store, key, clock, EngineSettings::default()));
    let settings = ReconcilerSettings {
        origin: PolicyOrigin::Repository { url, branch: "main".into() },
        poll_interval: std::time::Duration::from_secs(60),
        signatures: None,
        limits: PolicyLimits::default(),
        credentials: Default::default(),
    };
    let reconciler = Reconciler::new(engine.clone(), settings, data).unwrap();
    (engine, reconciler)
}

fn applied(engine: &Engine) -> Option<String> {
    engine.in_force().and_then(|f| f.commit.as_ref().map(|c| c.commit.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_is_followed_over_smart_http() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let first = example_policy_repository(&work);
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["clone", "-q", "--bare", work.to_str().unwrap(), "policies.git"]);
    let bare = served.join("policies.git");
    // Pushes over the file system; the engine only ever reads over HTTP.
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let addr = serve_git(served.clone()).await;
    let url = format!("http://{addr}/policies.git");
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let data = dir.path().join("data");

    let (engine, mut reconciler) = reconciler(&data, url.clone(), clock.clone());
    let pass = move |r: &mut Reconciler| tokio::task::block_in_place(|| r.reconcile(true));
    pass(&mut reconciler);
    assert_eq!(applied(&engine).as_deref(), Some(first.as_str()), "the first commit, fetched over HTTP");

    // A merged change arrives over HTTP.
    std::fs::remove_file(work.join("approvals/kb5032190-urgent.yaml")).unwrap();
    git(&work, &["commit", "-qam", "the zero-day is patched everywhere"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    pass(&mut reconciler);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()));
    let info = engine.in_force().unwrap().commit.clone().unwrap();
    assert_eq!(info.message.trim(), "the zero-day is patched everywhere");
    assert_eq!(info.author, "Ada Admin <ada@example.com>");

    // A force-push back to the first commit is refused over HTTP too.
    git(&work, &["push", "-q", "--force", "origin", &format!("{first}:main")]);
    pass(&mut reconciler);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()), "a rewind waits for ack-rewrite");
    let verified = engine.status.condition(ConditionType::SourceVerified).unwrap();
    assert_eq!(verified.reason, "HistoryRewritten", "{verified:?}");

    // The forge goes away: the last good revision stays in force.
    std::fs::rename(&bare, served.join("moved.git")).unwrap();
    pass(&mut reconciler);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()));
    let reachable = engine.status.condition(ConditionType::SourceReachable).unwrap();
    assert!(!reachable.status, "{reachable:?}");
    assert!(reachable.message.contains("retrying at"), "{reachable:?}");
}

/// T2 over the network: a server that accepts the connection and never
/// answers is cut off by the read timeout, and the pass ends with the
/// source unreachable instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_cut_off_by_the_read_timeout() {
    patchward::follow::set_network_timeouts(std::time::Duration::from_secs(5), std::time::Duration::from_secs(1));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Holds every connection open, silent.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let (engine, mut reconciler) = reconciler(dir.path(), format!("http://{addr}/policies.git"), clock);
    let started = std::time::Instant::now();
    tokio::task::block_in_place(|| reconciler.reconcile(true));
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the fetch was bounded: {:?}", started.elapsed());
    let reachable = engine.status.condition(ConditionType::SourceReachable).unwrap();
    assert!(!reachable.status, "{reachable:?}");
    assert_eq!(reachable.reason, "FetchFailed");
    assert!(engine.in_force().is_none());
}
