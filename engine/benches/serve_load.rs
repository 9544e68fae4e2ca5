//! T33: a load generator simulating N agents against a real engine on
//! loopback. Each agent enrolls, uploads its inventory, and polls its
//! desired state with its ETag; midway a policy commit lands (through the
//! webhook) and every agent must pick it up within two poll intervals.
//!
//! `cargo bench -p patchward-engine --bench serve_load` (N=10000 by
//! default; `PATCHWARD_LOAD_AGENTS`, `PATCHWARD_LOAD_SECONDS`,
//! `PATCHWARD_LOAD_CONCURRENCY` change it). Prints req/s, p50/p99
//! latency, errors, convergence, and the RSS and CPU time of the engine
//! and of the load generator, each its own process: the bench runs the
//! engine as a child (itself, with `PATCHWARD_LOAD_ROLE=engine`), so the
//! figures of one are not the other's.
//!
//! `PATCHWARD_LOAD_REPLICAS=2` runs that many replicas on one PostgreSQL
//! the bench starts (as the tests do): each agent keeps to one replica, as
//! the load balancer of `examples/ha/` keeps it, and enrolls, uploads and
//! polls there; the commit's webhook goes to the last replica (a
//! follower, so the leader hears of it by a signal).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use patchward::clock::SystemClock;
use patchward::daemon::config::{Limits, ServeConfig};

mod fleet;
#[path = "../tests/support/mod.rs"]
mod support;
use support::{example_policy_repository, git};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak RSS (KiB) and CPU time (s, user + system) of process `pid`.
fn process_stats(pid: &str) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (rss_kib, ticks / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

struct Agent {
    credential: String,
    /// The replica the agent keeps to.
    base: String,
    etag: std::sync::Mutex<Option<String>>,
    /// When the agent first saw a state of the new revision (ms since start).
    converged_ms: AtomicU64,
}

fn main() {
    if std::env::var("PATCHWARD_LOAD_ROLE").as_deref() == Ok("engine") {
        let dir = std::path::PathBuf::from(std::env::var("PATCHWARD_LOAD_DIR").unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(engine(&dir));
        return;
    }
    let agents = env_or("PATCHWARD_LOAD_AGENTS", 10_000);
    let seconds = env_or("PATCHWARD_LOAD_SECONDS", 20) as u64;
    let concurrency = env_or("PATCHWARD_LOAD_CONCURRENCY", 128);
    let poll_interval = Duration::from_secs(env_or("PATCHWARD_LOAD_POLL_SECONDS", 5) as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(agents, seconds, concurrency, poll_interval));
}

/// The engine's process: serve until the generator closes our stdin.
async fn engine(dir: &std::path::Path) {
    if std::env::var_os("PATCHWARD_LOAD_ENGINE_LOGS").is_some() {
        let _ = patchward_api::logging::init(None, "info", patchward_api::logging::Output::Human);
    }
    let data = std::env::var("PATCHWARD_LOAD_DATA").map_or_else(|_| dir.join("data"), std::path::PathBuf::from);
    let config = ServeConfig {
        data,
        store: std::env::var("PATCHWARD_LOAD_STORE").ok(),
        signing_key: Some(dir.join("engine-key")),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: dir.join("policies").display().to_string(),
        poll_interval: Duration::from_secs(3600),
        webhook_secret_file: Some(dir.join("hook")),
        limits: Limits { device_requests_per_minute: 6000, ..Limits::default() },
        ..ServeConfig::default()
    };
    let running = patchward::daemon::serve::start(config, Arc::new(SystemClock)).await.unwrap();
    println!("ready http://{} {}", running.api, running.admin_token_file.display());
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    })
    .await
    .unwrap();
    running.shutdown().await;
}

async fn run(agents: usize, seconds: u64, concurrency: usize, poll_interval: Duration) {
    // The generator's own HTTP client (the engine installs its provider in
    // its own process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    example_policy_repository(&repo);
    std::fs::write(dir.path().join("hook"), "bench-secret").unwrap();
    let replicas = env_or("PATCHWARD_LOAD_REPLICAS", 1);
    let postgres = (replicas > 1).then(support::postgres::Postgres::start);
    let store = postgres.as_ref().map(|pg| pg.database("load"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    let mut admin = String::new();
    for replica in 0..replicas {
        let (child, base, token_file) = spawn_engine(dir.path(), replica, store.as_deref());
        while http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if replica == 0 {
            admin = std::fs::read_to_string(token_file).unwrap().trim().to_owned();
        }
        children.push(child);
        bases.push(base);
    }
    if let Some(store) = &store {
        println!("{replicas} replicas on PostgreSQL ({store}), each agent kept to one");
    }
    let engine_pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let base = bases[0].clone();
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(serde_json::json!({"kind": "enrollment", "uses": agents}).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();

    // Enroll and upload inventories, `concurrency` at a time.
    let started = Instant::now();
    let mut enrolled: Vec<(usize, Agent)> = futures_util::future::join_all((0..concurrency).map(|worker| {
        let (http, bases, token) = (http.clone(), bases.clone(), token.clone());
        async move {
            let mut mine = Vec::new();
            for index in (worker..agents).step_by(concurrency) {
                let base = &bases[index % bases.len()];
                let credential = fleet::enroll(&http, base, &token, &fleet::device_facts(index)).await;
                let etag = std::sync::Mutex::new(None);
                mine.push((index, Agent { credential, etag, converged_ms: AtomicU64::new(0), base: base.clone() }));
            }
            mine
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    // In index order: the affected agents are every second one.
    enrolled.sort_by_key(|(index, _)| *index);
    let enrolled: Vec<Agent> = enrolled.into_iter().map(|(_, agent)| agent).collect();
    let enroll_secs = started.elapsed().as_secs_f64();
    println!(
        "enrolled {agents} agents (enroll + inventory + plan each) in {enroll_secs:.1} s ({:.0}/s)",
        agents as f64 / enroll_secs
    );

    let agents_list = Arc::new(enrolled);
    let errors = Arc::new(AtomicU64::new(0));
    let (ok200, ok304) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let commit_at_ms = Arc::new(AtomicU64::new(u64::MAX));
    let load_start = Instant::now();
    let deadline = load_start + Duration::from_secs(seconds);
    let engine_cpu_before: f64 = engine_pids.iter().map(|pid| process_stats(pid).1).sum();
    let (_, generator_cpu_before) = process_stats("self");
    // Each worker walks its share of the agents round-robin: every agent
    // polls about once per (agents / rate) seconds.
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, agents_list) = (http.clone(), agents_list.clone());
            let (errors, ok200, ok304, commit_at_ms) =
                (errors.clone(), ok200.clone(), ok304.clone(), commit_at_ms.clone());
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut index = worker;
                while Instant::now() < deadline {
                    let agent = &agents_list[index];
                    index += concurrency;
                    if index >= agents_list.len() {
                        index = worker;
                    }
                    let tag = agent.etag.lock().unwrap().clone();
                    let mut request =
                        http.get(format!("{}/api/v1/device/desired-state", agent.base)).bearer_auth(&agent.credential);
                    if let Some(tag) = &tag {
                        request = request.header("if-none-match", tag);
                    }
                    let sent = Instant::now();
                    match request.send().await {
                        Ok(response) if response.status().as_u16() == 304 => {
                            ok304.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) if response.status().is_success() => {
                            let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
                            let _ = response.bytes().await;
                            ok200.fetch_add(1, Ordering::Relaxed);
                            let at = load_start.elapsed().as_millis() as u64;
                            if tag.is_some() && at >= commit_at_ms.load(Ordering::Relaxed) {
                                let _ =
                                    agent.converged_ms.compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
                            }
                            *agent.etag.lock().unwrap() = etag;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                latencies
            })
        })
        .collect();

    // Midway, a policy commit lands through the webhook.
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    std::fs::write(
        repo.join("exclusions/hold.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: hold-kb5032190}\nspec:\n  patches: [KB5032190]\n  reason: load bench\n",
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "hold KB5032190"]);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench-secret").unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    commit_at_ms.store(load_start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let hook = http
        .post(format!("{}/api/v1/sync", bases[bases.len() - 1]))
        .header("x-hub-signature-256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status().as_u16(), 202);

    let mut latencies: Vec<u32> = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = load_start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let engine_stats: Vec<(u64, f64)> = engine_pids.iter().map(|pid| process_stats(pid)).collect();
    let engine_rss_kib: u64 = engine_stats.iter().map(|(rss, _)| rss).sum();
    let engine_cpu_after: f64 = engine_stats.iter().map(|(_, cpu)| cpu).sum();
    let (generator_rss_kib, generator_cpu_after) = process_stats("self");
    let total = ok200.load(Ordering::Relaxed) + ok304.load(Ordering::Relaxed);
    let commit_ms = commit_at_ms.load(Ordering::Relaxed);
    // Windows devices had KB5032190; the exclusion changes their state.
    let affected: Vec<&Agent> = agents_list.iter().step_by(2).collect();
    let converged: Vec<u64> = affected
        .iter()
        .map(|a| a.converged_ms.load(Ordering::Relaxed))
        .filter(|at| *at > 0)
        .map(|at| at - commit_ms)
        .collect();
    let slowest = converged.iter().max().copied().unwrap_or(0);
    // One full round over all agents at the measured rate is one "poll
    // interval" of this simulation.
    let round_ms = (agents as f64 / (total as f64 / elapsed) * 1000.0) as u64;
    println!("load: {agents} agents, {concurrency} connections, {replicas} replica(s), {elapsed:.1} s");
    println!(
        "  desired-state polls: {total} ({:.0}/s): {} x 304, {} x 200, errors {}",
        total as f64 / elapsed,
        ok304.load(Ordering::Relaxed),
        ok200.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    println!(
        "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  policy commit at {:.1} s: {}/{} affected agents converged, slowest after {slowest} ms (one round over all agents: {round_ms} ms; poll interval target {} ms)",
        commit_ms as f64 / 1000.0,
        converged.len(),
        affected.len(),
        poll_interval.as_millis()
    );
    let engine_cpu = engine_cpu_after - engine_cpu_before;
    let generator_cpu = generator_cpu_after - generator_cpu_before;
    println!(
        "  engine process(es): peak RSS {} MiB, CPU {engine_cpu:.1} s over {elapsed:.1} s ({:.0}% of one core), {:.1} µs of CPU per poll",
        engine_rss_kib / 1024,
        engine_cpu / elapsed * 100.0,
        engine_cpu / total as f64 * 1e6
    );
    println!(
        "  load generator process: peak RSS {} MiB, CPU {generator_cpu:.1} s ({:.0}% of one core)",
        generator_rss_kib / 1024,
        generator_cpu / elapsed * 100.0
    );
    println!(
        "  the engine alone on both cores would answer about {:.0} polls/s at this CPU cost per poll",
        2.0 / (engine_cpu / total as f64)
    );
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    drop(postgres);
}

/// Starts replica `index` (a child process running this bench as the
/// engine); where it listens and its admin token's file.
fn spawn_engine(dir: &std::path::Path, index: usize, store: Option<&str>) -> (std::process::Child, String, String) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .env("PATCHWARD_LOAD_ROLE", "engine")
        .env("PATCHWARD_LOAD_DIR", dir)
        .env("PATCHWARD_LOAD_DATA", dir.join(format!("data-{index}")))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(match std::env::var_os("PATCHWARD_LOAD_ENGINE_LOGS") {
            // The engines' own logs, on the bench's stderr.
            Some(_) => std::process::Stdio::inherit(),
            None => std::process::Stdio::null(),
        });
    if let Some(store) = store {
        command.env("PATCHWARD_LOAD_STORE", store);
    }
    let mut child = command.spawn().unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready).unwrap();
    let mut words = ready.split_whitespace().skip(1);
    let base = words.next().expect("the engine says where it listens").to_owned();
    let token_file = words.next().unwrap().to_owned();
    (child, base, token_file)
}
