//! Issue 18, goal 2: desired-state polls at nginx's pace. The real
//! `patchward serve` and nginx serve the same signed desired states of the
//! same enrolled devices, and one load generator (wrk, its own process)
//! drives each in turn, alternating, with the same connections:
//!
//! - **304**: every request carries the device's credential and the ETag
//!   it holds, as an agent's idle poll does;
//! - **200**: the same requests without the ETag, so the body is sent,
//!   gzipped: agents accept gzip, and the engine holds its states gzipped;
//! - **200 identity**: the same from a client that does not accept gzip,
//!   which the engine inflates for every answer (shown, not a goal: our
//!   agents all accept gzip).
//!
//! nginx gets what a careful admin would give it to serve these states as
//! files: a `map` from the credential to the device (so it authenticates
//! too, as cheaply as a hash lookup can), the device's ETag by another
//! `map`, the files from an open-file cache, each state also gzipped beside it for
//! `gzip_static` (the engine's own gzip bytes), no access log. The engine
//! runs as it ships, with its per-device rate limit raised through its
//! config (`limits: {deviceRequestsPerMinute, maxConnections}`), never
//! switched off.
//!
//! `cargo bench -p patchward-engine --bench poll_vs_nginx`
//! (`PATCHWARD_POLL_DEVICES`, default 1000; `PATCHWARD_POLL_SECONDS` per
//! run, default 10; `PATCHWARD_POLL_CONNECTIONS`, default 100;
//! `PATCHWARD_POLL_ROUNDS`, default 2). Needs `wrk` and `nginx` (Debian's
//! packages); says so and stops when either is missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod fleet;
#[path = "../tests/support/mod.rs"]
mod support;
use support::example_policy_repository;

const ROUTE: &str = "/api/v1/device/desired-state";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `name` on the PATH, or in the sbin folders where Debian puts nginx.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A port free on loopback now (the servers are told it in their config).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One enrolled device as the load generator sends it: its credential and
/// the ETags and bytes the engine serves it, as JSON and gzipped.
struct Polled {
    device: String,
    credential: String,
    etag: String,
    body: Vec<u8>,
    gzip_etag: String,
    gzip: Vec<u8>,
}

fn main() {
    let (Some(wrk), Some(nginx)) = (installed("wrk"), installed("nginx")) else {
        println!(
            "poll_vs_nginx: needs wrk and nginx (apt-get install wrk nginx): wrk {}, nginx {}; nothing measured",
            installed("wrk").map_or("missing".into(), |p| p.display().to_string()),
            installed("nginx").map_or("missing".into(), |p| p.display().to_string()),
        );
        return;
    };
    let devices = env_or("PATCHWARD_POLL_DEVICES", 1000);
    let seconds = env_or("PATCHWARD_POLL_SECONDS", 10);
    let connections = env_or("PATCHWARD_POLL_CONNECTIONS", 100);
    let rounds = env_or("PATCHWARD_POLL_ROUNDS", 2);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let polled = runtime.block_on(enroll_fleet(&engine, devices));
    let nginx = Nginx::start(&nginx, &dir.path().join("nginx"), &polled);
    runtime.block_on(check_same_answers(&engine.base, &nginx.base, &polled));
    println!(
        "poll_vs_nginx: {devices} devices, wrk -t1 -c{connections}, {seconds} s a run, {rounds} round(s), {} engine, nginx {}",
        env!("CARGO_PKG_VERSION"),
        nginx.version
    );
    let load = Load { wrk, seconds, connections, dir: dir.path().to_owned() };
    for mode in [Mode::NotModified, Mode::Body, Mode::IdentityBody] {
        let script = load.script(&polled, mode);
        let (mut best_nginx, mut best_engine) = (0.0f64, 0.0f64);
        for round in 1..=rounds {
            let on_nginx = load.run(&nginx.base, &nginx.processes(), &script);
            let on_engine = load.run(&engine.base, &[engine.child.id()], &script);
            println!("  {} round {round}: nginx {on_nginx}; engine {on_engine}", mode.name());
            best_nginx = best_nginx.max(on_nginx.per_second);
            best_engine = best_engine.max(on_engine.per_second);
        }
        println!(
            "  {}: engine {best_engine:.0}/s, nginx {best_nginx:.0}/s: {:.2}x nginx (best runs)",
            mode.name(),
            best_engine / best_nginx
        );
    }
    drop(engine);
    drop(nginx);
    if std::env::var_os("PATCHWARD_POLL_KEEP").is_some() {
        println!("kept {}", dir.keep().display());
    }
}

/// The real engine binary, serving the example policies with the bundled
/// catalog, its rate limit raised through its config file.
struct Engine {
    child: Child,
    base: String,
    admin_token: String,
}

impl Engine {
    fn start(dir: &Path) -> Engine {
        let policies = dir.join("policies");
        example_policy_repository(&policies);
        let port = free_port();
        let config = dir.join("patchward.yaml");
        std::fs::write(
            &config,
            format!(
                "data: {data}\nlisten: 127.0.0.1:{port}\nmetricsListen: 127.0.0.1:{metrics}\n\
                 policies:\n  source: {policies}\n  pollInterval: 1h\n\
                 limits:\n  deviceRequestsPerMinute: 100000000\n  maxConnections: 20000\n",
                data = dir.join("data").display(),
                metrics = free_port(),
                policies = policies.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("engine.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_patchward"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("PATCHWARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // Owned at once: a panic below stops it.
        let mut engine = Engine { child, base: format!("http://127.0.0.1:{port}"), admin_token: String::new() };
        let token_file = dir.join("data/admin-token");
        for _ in 0..600 {
            if ready(&engine.base) && token_file.exists() {
                engine.admin_token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
                return engine;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the engine did not get ready in 60 s: see {}", dir.join("engine.log").display());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn ready(base: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(base.trim_start_matches("http://")) else { return false };
    let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Enrolls `devices` agents (enrollment and first inventory) and fetches
/// each one's desired state as the engine serves it.
async fn enroll_fleet(engine: &Engine, devices: usize) -> Vec<Polled> {
    let http = reqwest::Client::new();
    // Bytes as sent: gzip when asked for, not inflated by the client.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let base = &engine.base;
    let token = fleet::send(
        http.post(format!("{base}/api/v1/tokens")),
        &engine.admin_token,
        serde_json::json!({"kind": "enrollment", "uses": devices}),
    )
    .await;
    let token: serde_json::Value = serde_json::from_slice(&token.bytes().await.unwrap()).unwrap();
    let token = token["token"].as_str().expect("an enrollment token").to_owned();
    let mut polled = Vec::with_capacity(devices);
    for index in 0..devices {
        let facts = fleet::device_facts(index);
        let credential = fleet::enroll(&http, base, &token, &facts).await;
        let fetch = |encoding: &'static str| {
            let request = raw.get(format!("{base}{ROUTE}")).bearer_auth(&credential);
            async move {
                let answer = request.header("accept-encoding", encoding).send().await.unwrap();
                assert_eq!(answer.status().as_u16(), 200, "the engine serves device {index} its state");
                let etag = answer.headers()["etag"].to_str().unwrap().to_owned();
                (etag, answer.bytes().await.unwrap().to_vec())
            }
        };
        let ((etag, body), (gzip_etag, gzip)) = (fetch("identity").await, fetch("gzip").await);
        let device = facts["hostname"].as_str().unwrap().to_owned();
        polled.push(Polled { device, credential, etag, body, gzip_etag, gzip });
    }
    polled
}

/// Both servers answer a sample of the devices alike: 304 to the ETag
/// held, the same ETag and bytes without it (gzipped or not, as asked),
/// 401 to no credential.
async fn check_same_answers(engine: &str, nginx: &str, polled: &[Polled]) {
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    for device in polled.iter().step_by((polled.len() / 10).max(1)) {
        for base in [engine, nginx] {
            let get = |encoding| {
                http.get(format!("{base}{ROUTE}")).bearer_auth(&device.credential).header("accept-encoding", encoding)
            };
            let fresh = get("gzip").header("if-none-match", &device.gzip_etag).send().await.unwrap();
            assert_eq!(fresh.status().as_u16(), 304, "{base}: 304 to {}'s ETag", device.device);
            for (encoding, etag, bytes) in
                [("identity", &device.etag, &device.body), ("gzip", &device.gzip_etag, &device.gzip)]
            {
                let full = get(encoding).send().await.unwrap();
                assert_eq!(full.status().as_u16(), 200, "{base}: 200 to {}", device.device);
                assert_eq!(full.headers()["etag"].to_str().unwrap(), etag, "{base}: {}'s ETag", device.device);
                assert_eq!(full.bytes().await.unwrap().as_ref(), &bytes[..], "{base}: {}'s {encoding}", device.device);
            }
            let stranger = http.get(format!("{base}{ROUTE}")).bearer_auth("pwd_unknown").send().await.unwrap();
            assert_eq!(stranger.status().as_u16(), 401, "{base}: an unknown credential is refused");
        }
    }
}

/// nginx serving the engine's states as files: the credential picks the
/// device's file by a `map`, the ETag is the engine's.
struct Nginx {
    child: Child,
    base: String,
    version: String,
}

impl Nginx {
    fn start(binary: &Path, prefix: &Path, polled: &[Polled]) -> Nginx {
        let states = prefix.join("states");
        std::fs::create_dir_all(&states).unwrap();
        for device in polled {
            std::fs::write(states.join(format!("{}.json", device.device)), &device.body).unwrap();
            std::fs::write(states.join(format!("{}.json.gz", device.device)), &device.gzip).unwrap();
        }
        let port = free_port();
        std::fs::write(prefix.join("nginx.conf"), nginx_config(prefix, port, polled)).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let version = Command::new(binary).arg("-v").output().unwrap();
        let version = String::from_utf8_lossy(&version.stderr).trim().trim_start_matches("nginx version: ").to_owned();
        // Owned at once: a panic below stops it.
        let nginx = Nginx { child, base: format!("http://127.0.0.1:{port}"), version };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start: see {}", prefix.join("error.log").display());
    }
}

impl Nginx {
    /// The master and its workers.
    fn processes(&self) -> Vec<u32> {
        let master = self.child.id();
        let workers = Command::new("pgrep").args(["-P", &master.to_string()]).output().unwrap();
        let workers = String::from_utf8_lossy(&workers.stdout);
        std::iter::once(master).chain(workers.split_whitespace().filter_map(|p| p.parse().ok())).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-QUIT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn nginx_config(prefix: &Path, port: u16, polled: &[Polled]) -> String {
    let mut devices = String::new();
    let mut etags = String::new();
    let mut fresh = String::new();
    for p in polled {
        devices.push_str(&format!("    \"Bearer {}\" {};\n", p.credential, p.device));
        etags.push_str(&format!("    '{}:' '{}';\n    '{}:gz' '{}';\n", p.device, p.etag, p.device, p.gzip_etag));
        fresh.push_str(&format!("    '{} {}' 1;\n    '{} {}' 1;\n", p.device, p.etag, p.device, p.gzip_etag));
    }
    format!(
        r#"daemon off;
master_process on;
user root;
worker_processes 2;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  types {{ }}
  default_type application/json;
  etag off;
  if_modified_since off;
  keepalive_requests 100000000;
  open_file_cache max=100000 inactive=60s;
  gzip_static on;
  gzip_vary on;
  map_hash_bucket_size 256;
  map_hash_max_size 262144;
  map $http_authorization $device {{
    default "";
{devices}  }}
  map $http_accept_encoding $gzip_asked {{
    default "";
    ~*gzip gz;
  }}
  map "$device:$gzip_asked" $desired_etag {{
    default "";
{etags}  }}
  map "$device $http_if_none_match" $not_modified {{
    default 0;
{fresh}  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {prefix}/states;
    location = {ROUTE} {{
      if ($device = "") {{ return 401; }}
      add_header ETag $desired_etag always;
      if ($not_modified) {{ return 304; }}
      rewrite ^ /$device.json break;
    }}
  }}
}}
"#,
        prefix = prefix.display(),
    )
}

#[derive(Clone, Copy)]
enum Mode {
    /// Every request carries the ETag held and accepts gzip, as an agent's
    /// idle poll: 304.
    NotModified,
    /// No ETag, gzip accepted: 200 with the gzipped body.
    Body,
    /// No ETag, gzip not accepted: 200 with the JSON.
    IdentityBody,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NotModified => "304 (ETag held)",
            Mode::Body => "200 (body, gzip)",
            Mode::IdentityBody => "200 (body, identity)",
        }
    }
}

/// The load generator: wrk, one thread, each request a device's own
/// (credential, ETag) in turn, from a Lua script.
struct Load {
    wrk: PathBuf,
    seconds: usize,
    connections: usize,
    dir: PathBuf,
}

/// What one wrk run measured.
struct Measured {
    per_second: f64,
    requests: u64,
    /// Answers neither 2xx nor 3xx, and socket errors.
    errors: u64,
    latency: String,
    /// The server's CPU time (user and system, all its processes) per request.
    cpu_per_request: f64,
}

/// CPU time (s, user + system) of the processes `pids`.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s ({} requests, {} errors, mean latency {}, {:.1} µs server CPU each)",
            self.per_second,
            self.requests,
            self.errors,
            self.latency,
            self.cpu_per_request * 1e6
        )
    }
}

impl Load {
    /// A wrk script cycling through the devices' requests, pre-formatted.
    fn script(&self, polled: &[Polled], mode: Mode) -> PathBuf {
        let requests = self.dir.join(match mode {
            Mode::NotModified => "requests-304.txt",
            Mode::Body => "requests-200.txt",
            Mode::IdentityBody => "requests-200-identity.txt",
        });
        let mut lines = String::new();
        for p in polled {
            let (etag, encoding) = match mode {
                Mode::NotModified => (p.gzip_etag.as_str(), "gzip"),
                Mode::Body => ("", "gzip"),
                Mode::IdentityBody => ("", "identity"),
            };
            lines.push_str(&format!("{} {encoding} {etag}\n", p.credential));
        }
        std::fs::write(&requests, lines).unwrap();
        let script = requests.with_extension("lua");
        std::fs::write(
            &script,
            format!(
                r#"local requests = {{}}
local next_one = 0
-- In init: wrk knows the Host header only once the thread is set up.
init = function(args)
  for line in io.lines("{requests}") do
    local credential, encoding, etag = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {{ ["Host"] = wrk.host .. ":" .. wrk.port, ["Authorization"] = "Bearer " .. credential,
      ["Accept-Encoding"] = encoding }}
    if etag ~= "" then headers["If-None-Match"] = etag end
    requests[#requests + 1] = wrk.format("GET", "{ROUTE}", headers)
  end
end
request = function()
  next_one = next_one % #requests + 1
  return requests[next_one]
end
"#,
                requests = requests.display()
            ),
        )
        .unwrap();
        script
    }

    fn run(&self, base: &str, server: &[u32], script: &Path) -> Measured {
        let cpu_before = cpu_seconds(server);
        let output = Command::new(&self.wrk)
            .args(["-t1", &format!("-c{}", self.connections), &format!("-d{}s", self.seconds), "--latency", "-s"])
            .arg(script)
            .arg(base)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let number = |prefix: &str| -> Option<String> {
            text.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_owned())
        };
        let requests = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let errors = number("Non-2xx or 3xx responses:").and_then(|n| n.parse().ok()).unwrap_or(0)
            + number("Socket errors:").map_or(0, |s| {
                s.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum()
            });
        let latency =
            number("Latency").and_then(|l| l.split_whitespace().next().map(str::to_owned)).unwrap_or_default();
        let per_second = number("Requests/sec:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("wrk said no rate: {text}{}", String::from_utf8_lossy(&output.stderr)));
        let cpu_per_request = (cpu_seconds(server) - cpu_before) / requests.max(1) as f64;
        Measured { per_second, requests, errors, latency, cpu_per_request }
    }
}
