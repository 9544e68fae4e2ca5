//! What the agent's process-level tests share: sandbox dpkg roots, the
//! office of the end-to-end test (a vendor, a mirror, a real engine on a
//! git policy repository), the real `patchward-agent` binary as a process,
//! and, for the crash and offline tests, a fake engine the test controls
//! (it signs the desired states itself, can close its port, and can lose
//! an answer) and a mirror that sends slowly enough to be interrupted.
//!
//! Every wait here is a bounded poll on a condition, never time passing.

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchward::clock::{Clock, FakeClock};
use patchward::daemon::config::ServeConfig;
use patchward_agent::install::deb::{DpkgRoot, DpkgStatus};
use patchward_api::desired::DesiredState;
use patchward_api::events::{AgentEvent, EventBatch};
use patchward_tests::{HttpServer, Reply, binary, git};

pub const T0: &str = "2026-11-24T12:00:00Z";

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// A sandbox root that looks like a Debian 12 machine (the demo's, see
/// `patchward::demo::debian`), with `old_deb` installed when given.
pub fn sandbox(dir: &Path, name: &str, old_deb: Option<&Path>) -> PathBuf {
    let sandbox = patchward::demo::debian::Sandbox::create(&dir.join(name), name, "Europe/Helsinki").unwrap();
    if let Some(old_deb) = old_deb {
        sandbox.install(old_deb).unwrap();
    }
    sandbox.root().to_owned()
}

/// What the sandbox's dpkg database says of `package`.
pub fn dpkg_status(root: &Path, package: &str) -> Option<DpkgStatus> {
    DpkgRoot::sandbox(root).unwrap().status(package).unwrap()
}

/// The version of `package` dpkg says is installed (fully: configured).
pub fn installed(root: &Path, package: &str) -> Option<String> {
    dpkg_status(root, package).filter(|s| s.is_installed()).map(|s| s.version)
}

pub fn installed_version(root: &Path) -> Option<String> {
    installed(root, "pw-hello")
}

/// How many times dpkg's own log says it installed or upgraded `package`
/// (unpacked it: an interrupted run counts too).
pub fn dpkg_installs(root: &Path, package: &str) -> usize {
    let log = std::fs::read_to_string(root.join("var/log/dpkg.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!(" install {package}")) || l.contains(&format!(" upgrade {package}")))
        .count()
}

/// How many times dpkg's log says `package` reached `installed`.
pub fn dpkg_configured(root: &Path, package: &str) -> usize {
    let log = std::fs::read_to_string(root.join("var/log/dpkg.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains(&format!(" status installed {package}"))).count()
}

pub fn policy_repository(dir: &Path, feed_url: &str, mirror: &str) -> PathBuf {
    let repo = dir.join("policies");
    std::fs::create_dir_all(&repo).unwrap();
    let write = |name: &str, text: String| std::fs::write(repo.join(name), text).unwrap();
    write(
        "scopes.yaml",
        "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: pilot}\nspec: {selector: 'device.labels[\"ring\"] == \"pilot\"'}\n\
         ---\napiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: production}\nspec: {selector: 'device.labels[\"ring\"] == \"production\"'}\n"
            .into(),
    );
    // Whatever no other rule decides waits for a reviewer: a patch whose
    // approval is reverted goes back there (and is removed).
    write(
        "review.yaml",
        "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: review-the-rest}\n\
         spec: {priority: 1, match: 'true', action: review}\n"
            .into(),
    );
    write(
        "policies.yaml",
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: at-once}\nspec: {mode: immediate, reboot: never}\n".into(),
    );
    write(
        "catalog.yaml",
        format!(
            "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: vendor}}\n\
             spec: {{url: '{feed_url}', format: patchward, interval: 24h, retries: 0}}\n"
        ),
    );
    write(
        "locations.yaml",
        format!(
            "apiVersion: patchward.dev/v1\nkind: Location\nmetadata: {{name: everywhere}}\n\
             spec: {{networks: [0.0.0.0/0], mirrors: ['{mirror}']}}\n"
        ),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "scopes, a policy, the feed and the office's mirror"]);
    repo
}

pub fn approve(repo: &Path) {
    std::fs::write(
        repo.join("rules.yaml"),
        "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: critical}\n\
         spec:\n  priority: 100\n  match: 'patch.severity == \"critical\"'\n  action: approve\n  stages:\n\
         \x20   - {scope: pilot, after: 0h, policy: at-once}\n\
         \x20   - {scope: production, after: 24h, policy: at-once}\n",
    )
    .unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "approve critical patches: pilot first, production a day later"]);
}

/// The office of the end-to-end test: a vendor serving a feed with one
/// critical patch (pw-hello 1.0, `package`) and the package, a mirror, and
/// a real engine (fake clock) following a git policy repository.
pub struct Office {
    pub vendor: HttpServer,
    pub mirror: HttpServer,
    pub repo: PathBuf,
    pub clock: Arc<FakeClock>,
    pub running: patchward::daemon::serve::Running,
    pub base: String,
    pub admin: String,
    pub digest: String,
}

impl Office {
    pub async fn start(dir: &Path, package: Vec<u8>, mirror: HttpServer) -> Office {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let digest = sha256_hex(&package);
        let feed = serde_json::json!({
            "revision": 1, "generatedAt": "2026-11-20T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z",
            "patches": [{
                "id": "PW-2026-0001", "title": "pw-hello 1.0 fixes a critical hole", "vendor": "patchward",
                "product": "pw-hello", "category": "security", "severity": "critical", "released": "2026-11-23T00:00:00Z",
                "fixes": [{"manager": "dpkg", "package": "pw-hello", "fixedVersion": "1.0"}],
                "detect": {"anyOf": [{"package": {"manager": "dpkg", "name": "pw-hello", "atLeast": "1.0"}}]},
                "packages": [{"type": "deb", "url": "PACKAGE_URL", "sha256": digest, "size": package.len()}]
            }]
        });
        let feed_text = Arc::new(Mutex::new(String::new()));
        let served_feed = feed_text.clone();
        let vendor = HttpServer::start(move |request| match request.path.as_str() {
            "/feed.json" => Reply::ok(served_feed.lock().unwrap().clone()),
            "/pw-hello_1.0.deb" => Reply::ok(package.clone()),
            _ => Reply::status(404),
        });
        *feed_text.lock().unwrap() = feed.to_string().replace("PACKAGE_URL", &vendor.url("/pw-hello_1.0.deb"));
        let repo = policy_repository(dir, &vendor.url("/feed.json"), &mirror.url("/blobs"));
        let clock = Arc::new(FakeClock::new(T0.parse().unwrap()));
        let config = ServeConfig {
            data: dir.join("engine"),
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            policies: repo.display().to_string(),
            bundled_feed: false,
            ..ServeConfig::default()
        };
        let engine_clock: Arc<dyn Clock> = clock.clone();
        let running = patchward::daemon::serve::start(config, engine_clock).await.unwrap();
        let base = format!("http://{}", running.api);
        let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
        Office { vendor, mirror, repo, clock, running, base, admin, digest }
    }

    /// An enrollment token good for `uses` devices.
    pub async fn enrollment_token(&self, uses: u32) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/tokens", self.base))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(serde_json::json!({"kind": "enrollment", "uses": uses}).to_string())
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        admin_get(&self.base, &self.admin, path).await
    }

    /// The webhook-equivalent sync.
    pub async fn sync(&self) {
        let sync = reqwest::Client::new()
            .post(format!("{}/api/v1/sync", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(sync.status().as_u16(), 202);
    }
}

/// A real `patchward-agent` with its own config, state directory and
/// sandbox root, reading its time from `clock`.
pub struct AgentProcess {
    pub name: &'static str,
    pub state: PathBuf,
    pub root: PathBuf,
    pub config: PathBuf,
    pub clock: PathBuf,
}

impl AgentProcess {
    pub fn new(dir: &Path, name: &'static str, ring: &str, root: PathBuf, clock: &Path) -> AgentProcess {
        let config = dir.join(format!("{name}.yaml"));
        let state = dir.join(format!("{name}-state"));
        std::fs::write(
            &config,
            format!(
                "state: {}\nruntime: {}\nroot: {}\nlabels: {{ring: {ring}}}\n",
                state.display(),
                dir.join(format!("{name}-run")).display(),
                root.display()
            ),
        )
        .unwrap();
        AgentProcess { name, state, root, config, clock: clock.to_owned() }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("patchward-agent", "patchward-agent"));
        command.args(args).arg("--config").arg(&self.config).env("PATCHWARD_AGENT_CLOCK_FILE", &self.clock);
        command
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        output
    }

    /// `run --once` as a child process, its output discarded.
    pub fn spawn_pass(&self) -> std::process::Child {
        self.command(&["run", "--once"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Sets the agent's clock.
    pub fn set_clock(&self, at: jiff::Timestamp) {
        std::fs::write(&self.clock, at.to_string()).unwrap();
    }

    pub fn now(&self) -> jiff::Timestamp {
        ts(std::fs::read_to_string(&self.clock).unwrap().trim())
    }

    /// Moves the agent's clock forward.
    pub fn advance(&self, by: jiff::SignedDuration) {
        self.set_clock(self.now().checked_add(by).unwrap());
    }

    /// `status --json` (read from the state directory when no agent runs).
    pub fn status(&self) -> serde_json::Value {
        let output = self.run(&["status", "--json"]);
        let response: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(response["response"], "status", "{response}");
        response["body"].clone()
    }

    /// The journal, entry by entry (a torn last line left out).
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.join("journal.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The journal's steps of `item`, in order (`downloading`, `installing`, …).
    pub fn steps(&self, item: &str) -> Vec<String> {
        self.journal()
            .iter()
            .filter(|e| e["item"] == item)
            .map(|e| e["step"]["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn partial_file(&self, digest: &str) -> PathBuf {
        self.state.join(format!("cache/sha256/{digest}.partial"))
    }

    /// Files a finished pass must not leave: partial downloads, staging
    /// copies, temporary files of the cache.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in ["cache/sha256", "cache/staging"] {
            let Ok(entries) = std::fs::read_dir(self.state.join(dir)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let blob = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if dir == "cache/staging" || !blob {
                    found.push(entry.path());
                }
            }
        }
        found
    }
}

pub async fn admin_get(base: &str, admin: &str, path: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}{path}")).bearer_auth(admin).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// The blocking twin of [`until`], for conditions on processes and files:
/// polls every 5 ms for at most `limit`.
pub fn poll_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A small seeded generator (splitmix64), so a failing crash loop
/// reproduces with its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `PATCHWARD_CRASH_SEED` when set, else `default`; the
    /// seed is printed.
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("PATCHWARD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
        eprintln!("crash loop seed: {seed} (set PATCHWARD_CRASH_SEED to repeat)");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Sends SIGKILL to `child` (what `Child::kill` sends on Unix) and reaps it.
pub fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGKILL to `pid`, a process this test started (through the agent).
pub fn kill9_pid(pid: i32) {
    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
}

/// The pids of the live processes whose command line mentions `needle`
/// (for this test's own sandbox root: processes it started, through the
/// agent).
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

// ---------------------------------------------------------------------------
// A raw HTTP server: reads bodies, sends slowly, closes its port, drops a
// connection without answering.

/// A request with its body.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub enum RawReply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The body in `chunk`-byte writes with `pause` between them.
    Slow {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// The request was read; the connection is closed without an answer.
    Drop,
}

impl RawReply {
    pub fn json(value: &impl serde::Serialize) -> RawReply {
        RawReply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap(),
        }
    }

    pub fn status(status: u16) -> RawReply {
        RawReply::Full { status, headers: Vec::new(), body: Vec::new() }
    }
}

type RawHandler = dyn Fn(&RawRequest) -> RawReply + Send + Sync;

/// One connection per request (`connection: close`), a thread each.
pub struct RawServer {
    addr: SocketAddr,
    handler: Arc<RawHandler>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    pub fn start(handler: impl Fn(&RawRequest) -> RawReply + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server =
            RawServer { addr, handler: Arc::new(handler), stop: Arc::new(AtomicBool::new(false)), accept: None };
        server.listen(listener);
        server
    }

    fn listen(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        let handler = self.handler.clone();
        self.accept = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handler, stop) = (handler.clone(), stop.clone());
                std::thread::spawn(move || serve_raw(stream, &*handler, &stop));
            }
        }));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Closes the port: connections are refused until [`RawServer::reopen`].
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            accept.join().unwrap();
        }
        // Bounded, not once: a connect to a closed port in the ephemeral
        // range can pick that very port as its own and connect to itself.
        poll_until("the port to refuse connections", Duration::from_secs(5), || TcpStream::connect(self.addr).is_err());
    }

    /// Listens again on the same port.
    pub fn reopen(&mut self) {
        let mut listener = None;
        poll_until("the port to bind again", Duration::from_secs(10), || {
            listener = TcpListener::bind(self.addr).ok();
            listener.is_some()
        });
        self.listen(listener.unwrap());
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
        }
    }
}

fn serve_raw(mut stream: TcpStream, handler: &RawHandler, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let Some(patchward_tests::Request { method, path, headers }) = patchward_tests::read_request_head(&mut reader)
    else {
        return;
    };
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = RawRequest { method, path, headers, body };
    let head = |status: u16, headers: &[(String, String)], length: usize| {
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {length}\r\nconnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    };
    match handler(&request) {
        RawReply::Full { status, headers, body } => {
            let _ =
                stream.write_all(head(status, &headers, body.len()).as_bytes()).and_then(|_| stream.write_all(&body));
        }
        RawReply::Slow { status, headers, body, chunk, pause } => {
            if stream.write_all(head(status, &headers, body.len()).as_bytes()).is_err() {
                return;
            }
            for piece in body.chunks(chunk.max(1)) {
                if stop.load(Ordering::SeqCst) || stream.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        }
        RawReply::Drop => {}
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A mirror serving `blob` at `/mirror/{sha256}` in small timed chunks,
/// honouring `Range: bytes=N-` (206 with its Content-Range).
pub fn slow_mirror(blob: Vec<u8>, chunk: usize, pause: Duration) -> (RawServer, Arc<Mutex<Vec<RawRequest>>>) {
    let digest = sha256_hex(&blob);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = RawServer::start(move |request| {
        log.lock().unwrap().push(request.clone());
        if request.path != format!("/mirror/{digest}") {
            return RawReply::status(404);
        }
        let from = request
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match from {
            Some(from) if from < blob.len() => RawReply::Slow {
                status: 206,
                headers: vec![("content-range".into(), format!("bytes {from}-{}/{}", blob.len() - 1, blob.len()))],
                body: blob[from..].to_vec(),
                chunk,
                pause,
            },
            Some(_) => RawReply::status(416),
            None => RawReply::Slow { status: 200, headers: Vec::new(), body: blob.clone(), chunk, pause },
        }
    });
    (server, seen)
}

// ---------------------------------------------------------------------------
// A fake engine speaking the agent's routes, whose desired states the test
// signs.

pub const DEVICE: &str = "ws-01";

/// What the fake engine serves and what it has seen.
#[derive(Default)]
pub struct EngineBook {
    /// The envelope `GET /api/v1/device/desired-state` answers with (503,
    /// "nothing in force", when none).
    pub envelope: Option<Vec<u8>>,
    /// Every batch answered, in arrival order.
    pub batches: Vec<Vec<AgentEvent>>,
    /// Batches read and then dropped without an answer.
    pub lost: Vec<Vec<AgentEvent>>,
    /// How many of the next batches to drop so.
    pub lose_next: usize,
    /// Blobs served at `/api/v1/blobs/{sha256}`.
    pub blobs: std::collections::BTreeMap<String, Vec<u8>>,
    pub inventory_uploads: usize,
}

pub struct FakeEngine {
    pub server: RawServer,
    pub book: Arc<Mutex<EngineBook>>,
    pub key: ed25519_dalek::SigningKey,
}

impl FakeEngine {
    pub fn start() -> FakeEngine {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let book = Arc::new(Mutex::new(EngineBook::default()));
        let (shared, public) = (book.clone(), patchward_api::dsse::public_key_text(&key.verifying_key()));
        let server = RawServer::start(move |request| {
            let mut book = shared.lock().unwrap();
            let path = request.path.split('?').next().unwrap_or_default();
            match (request.method.as_str(), path) {
                ("POST", "/api/v1/enroll") => RawReply::json(&serde_json::json!({
                    "deviceId": DEVICE, "credential": "device-credential", "engineKey": public
                })),
                ("PUT", "/api/v1/device/inventory") => {
                    book.inventory_uploads += 1;
                    RawReply::json(&serde_json::json!({"generation": null}))
                }
                ("GET", "/api/v1/device/desired-state") => match &book.envelope {
                    Some(envelope) => RawReply::Full {
                        status: 200,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: envelope.clone(),
                    },
                    None => RawReply::status(503),
                },
                ("POST", "/api/v1/device/events") => {
                    let batch: EventBatch = serde_json::from_slice(&request.body).unwrap();
                    if book.lose_next > 0 {
                        book.lose_next -= 1;
                        book.lost.push(batch.events);
                        return RawReply::Drop;
                    }
                    let seen: std::collections::BTreeSet<u64> = book.batches.iter().flatten().map(|e| e.seq).collect();
                    let duplicates = batch.events.iter().filter(|e| seen.contains(&e.seq)).count();
                    let recorded = batch.events.len() - duplicates;
                    book.batches.push(batch.events);
                    RawReply::json(&serde_json::json!({"recorded": recorded, "duplicates": duplicates}))
                }
                ("GET", blob) if blob.starts_with("/api/v1/blobs/") => {
                    match book.blobs.get(blob.trim_start_matches("/api/v1/blobs/")) {
                        Some(bytes) => RawReply::Full { status: 200, headers: Vec::new(), body: bytes.clone() },
                        None => RawReply::status(404),
                    }
                }
                _ => RawReply::status(404),
            }
        });
        FakeEngine { server, book, key }
    }

    pub fn url(&self) -> String {
        self.server.url("")
    }

    /// Serves `state`, signed with the engine's key.
    pub fn serve(&self, state: &DesiredState) {
        self.serve_signed_by(state, &self.key.clone());
    }

    pub fn serve_signed_by(&self, state: &DesiredState, key: &ed25519_dalek::SigningKey) {
        let envelope = patchward_api::dsse::sign(
            patchward_api::dsse::DESIRED_STATE_TYPE,
            &serde_json::to_vec(state).unwrap(),
            key,
        );
        self.book.lock().unwrap().envelope = Some(serde_json::to_vec(&envelope).unwrap());
    }

    /// The events recorded, each seq once (the first copy), in seq order.
    pub fn recorded(&self) -> Vec<AgentEvent> {
        let book = self.book.lock().unwrap();
        let mut by_seq = std::collections::BTreeMap::new();
        for event in book.batches.iter().flatten() {
            by_seq.entry(event.seq).or_insert_with(|| event.clone());
        }
        by_seq.into_values().collect()
    }

    /// Every event as it arrived in answered batches, duplicates included.
    pub fn arrivals(&self) -> Vec<AgentEvent> {
        self.book.lock().unwrap().batches.iter().flatten().cloned().collect()
    }

    /// The success reports recorded for `patch`.
    pub fn successes(&self, patch: &str) -> Vec<AgentEvent> {
        self.recorded()
            .into_iter()
            .filter(|e| {
                e.kind == patchward_api::events::EventKind::Report
                    && e.patch.as_deref() == Some(patch)
                    && e.status == Some(patchward_api::ReportStatus::Succeeded)
            })
            .collect()
    }

    pub fn refusals(&self) -> Vec<AgentEvent> {
        self.recorded().into_iter().filter(|e| e.kind == patchward_api::events::EventKind::RefusedState).collect()
    }

    /// Enrolls `agent` here.
    pub fn enroll(&self, agent: &AgentProcess) {
        agent.run(&["enroll", "--server", &self.url(), "--token", "enrollment-token"]);
    }
}

/// A desired state for [`DEVICE`].
pub fn desired_state(generation: u64, expires_at: &str, items: Vec<serde_json::Value>) -> DesiredState {
    serde_json::from_value(serde_json::json!({
        "device": DEVICE, "generation": generation, "policyRevision": "c0ffee", "catalogRevision": 1,
        "issuedAt": "2026-11-24T00:00:00Z", "expiresAt": expires_at, "mirrors": [], "maxBandwidthKbps": null,
        "items": items
    }))
    .unwrap()
}

/// An item installing the .deb `package` (`name` at `version`, detected by
/// dpkg), immediately, inside `windows` (MaintenanceWindow specs with
/// their names; none: any time).
pub fn deb_item(
    patch: &str,
    name: &str,
    version: &str,
    package: &[u8],
    windows: Vec<serde_json::Value>,
) -> serde_json::Value {
    let names: Vec<&str> = windows.iter().filter_map(|w| w["name"].as_str()).collect();
    serde_json::json!({
        "patch": patch, "action": "install", "status": "due",
        "source": {"kind": "rule", "name": "critical", "commit": "c0ffee"}, "stage": 1,
        "policy": {"name": "at-once", "mode": "immediate", "reboot": "never", "windows": names},
        "windows": windows,
        "notBefore": "2026-11-23T00:00:00Z", "deadline": null,
        "packages": [{"type": "deb", "sha256": sha256_hex(package), "size": package.len(), "args": []}],
        "detect": {"anyOf": [{"package": {"manager": "dpkg", "name": name, "atLeast": version}}]}
    })
}

/// A window open every day from `start` to `end` (UTC).
pub fn daily_window(name: &str, start: &str, end: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "timezone": "UTC", "intervals": [{"start": start, "end": end}]})
}
