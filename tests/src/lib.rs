//! End-to-end tests of patchward live in `tests/tests/*.rs`; this library
//! holds what they share: finding the built binaries and making scratch
//! git repositories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_owned()
}

/// Runs `git` with a fixed identity in `dir`, panicking with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Makes `dir` a repository on branch `main` with everything in it committed.
pub fn git_init_commit(dir: &Path, message: &str) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    git_commit_all(dir, message)
}

/// Commits everything in `dir`; returns the new commit's id.
pub fn git_commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("read an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// The path of a workspace binary, built on first use.
///
/// Integration tests of this crate cannot use `CARGO_BIN_EXE_*` (the
/// binaries belong to other packages), so they build them once per test
/// process, as a user would (`cargo build`), into their own target folder
/// (`target/e2e`): the test build enables other features of shared
/// dependencies, and one folder for both would rebuild on every switch.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("e2e");
    let path = target.join("debug").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--locked", "-p", package, "--bin", name])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    path
}

/// The `patchward` admin CLI.
pub fn patchward() -> Command {
    Command::new(binary("patchward-engine", "patchward"))
}

/// A request as the test server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the test server does with a request: behave, or misbehave.
pub enum Reply {
    /// A complete response.
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Headers without a length, then bytes forever.
    Endless,
    /// Declares `declared` bytes and sends `body`, then keeps sending.
    LyingLength { declared: u64 },
    /// Accepts the request and never answers.
    Silent,
    /// Declares `declared` bytes, sends `sent`, then stalls forever.
    Stall { declared: u64, sent: Vec<u8> },
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full { status: 200, headers: Vec::new(), body: body.into() }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Full { status, headers: Vec::new(), body: Vec::new() }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Reads a request line and its headers; `None` when the client closed
/// the connection first. Test servers of other shapes read through it too.
pub fn read_request_head(reader: &mut impl std::io::BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Some(Request { method, path, headers })
}

/// A real HTTP/1.1 server on 127.0.0.1:0, one thread per connection, that
/// answers through a handler: enough to test clients against well-behaved
/// and hostile servers without any network.
pub struct HttpServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
}

impl HttpServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("an address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop_flag, log) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, log, stop) = (handler.clone(), log.clone(), stop_flag.clone());
                std::thread::spawn(move || serve_connection(stream, &*handler, &log, &stop));
            }
        });
        HttpServer { addr, stop, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn serve_connection(
    mut stream: std::net::TcpStream,
    handler: &Handler,
    log: &std::sync::Mutex<Vec<Request>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufReader, Read, Write};
    let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    loop {
        let Some(request) = read_request_head(&mut reader) else { return };
        log.lock().unwrap_or_else(|p| p.into_inner()).push(request.clone());
        let reply = handler(&request);
        let result = match reply {
            Reply::Full { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body))
            }
            Reply::Endless => {
                let chunk = vec![b'x'; 64 * 1024];
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
                while !stopped() && stream.write_all(&chunk).is_ok() {}
                return;
            }
            Reply::LyingLength { declared } => {
                let chunk = vec![b'y'; 64 * 1024];
                let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n").as_bytes());
                while !stopped() && stream.write_all(&chunk).is_ok() {}
                return;
            }
            Reply::Silent => {
                // Hold the connection until the client gives up.
                let mut sink = [0u8; 1024];
                while !stopped() && reader.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
                return;
            }
            Reply::Stall { declared, sent } => {
                let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n").as_bytes());
                let _ = stream.write_all(&sent);
                let mut sink = [0u8; 1024];
                while !stopped() && reader.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
}

/// Waits for `check` to hold: polls every 50 ms, at most 400 times, then
/// fails naming `what`. A bounded wait on a condition (a process's answer,
/// a page's content), never time passing for its own sake.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
