//! The agent's footprint while idle: a real engine in this process (the
//! shipped policies, the bundled feed), one real `patchward-agent` process
//! built in release, enrolled, then running its service loop (long polls
//! of `pollInterval`, 10 s here) with nothing to do. The bench samples the
//! agent's `/proc/PID/status` (VmRSS, VmHWM) and `/proc/PID/stat` (utime +
//! stime) each second of the idle period and prints peak and steady RSS,
//! and CPU over the period (per cent of one core, and seconds per poll).
//! Goal: under 15 MiB RSS and near-zero CPU between polls.
//!
//! `cargo bench -p patchward-tests --bench agent_footprint`
//! (`PATCHWARD_FOOTPRINT_SECONDS`, default 60, is the idle period measured;
//! `PATCHWARD_FOOTPRINT_POLL_SECONDS`, default 10, the poll interval).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use patchward::clock::SystemClock;
use patchward::daemon::config::ServeConfig;
use patchward_tests::{copy_tree, workspace_root};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The agent built in release, into its own target folder (beside the
/// debug binaries `patchward_tests::binary` builds).
fn release_agent() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("e2e");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "--release", "-p", "patchward-agent", "--bin", "patchward-agent"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building patchward-agent in release failed");
    target.join("release").join(format!("patchward-agent{}", std::env::consts::EXE_SUFFIX))
}

/// Resident and peak resident set (KiB), threads, and CPU time (clock
/// ticks, user + system) of process `pid`.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    ticks: u64,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is the 3rd field, utime the 14th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Sample { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:"), threads: field("Threads:"), ticks })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A sandbox root that looks like a Debian 12 machine with an empty dpkg database.
fn sandbox(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian 12\"\n").unwrap();
    std::fs::write(root.join("etc/hostname"), "footprint-01\n").unwrap();
    std::fs::write(root.join("etc/timezone"), "Europe/Helsinki\n").unwrap();
    patchward_agent::install::deb::DpkgRoot::sandbox(&root).unwrap();
    root
}

fn main() {
    let seconds = env_or("PATCHWARD_FOOTPRINT_SECONDS", 60);
    let poll = env_or("PATCHWARD_FOOTPRINT_POLL_SECONDS", 10);
    let agent_binary = release_agent();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(&agent_binary, seconds, poll));
}

async fn run(agent_binary: &Path, seconds: u64, poll: u64) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_tree(&workspace_root().join("policies"), &policies);
    let catalog = std::fs::read_to_string(policies.join("catalog.yaml")).unwrap();
    let catalog = catalog
        .replace("https://patches.example.com/feed.json", "http://127.0.0.1:1/feed.json")
        .replace("retries: 3", "retries: 0");
    std::fs::write(policies.join("catalog.yaml"), catalog).unwrap();
    let config = ServeConfig {
        data: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: policies.display().to_string(),
        poll_interval: Duration::from_secs(3600),
        ..ServeConfig::default()
    };
    let running = patchward::daemon::serve::start(config, Arc::new(SystemClock)).await.unwrap();
    let base = format!("http://{}", running.api);
    let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "the engine did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token: serde_json::Value = serde_json::from_slice(
        &http
            .post(format!("{base}/api/v1/tokens"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(serde_json::json!({"kind": "enrollment", "uses": 1}).to_string())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();

    let root = sandbox(dir.path());
    let agent_config = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "state: {}\nruntime: {}\nroot: {}\npollInterval: {poll}s\n",
            dir.path().join("agent-state").display(),
            dir.path().join("agent-run").display(),
            root.display()
        ),
    )
    .unwrap();
    let mut enroll = Command::new(agent_binary);
    enroll.args(["enroll", "--server", &base, "--token", &token, "--config"]).arg(&agent_config);
    // The engine answers from this process's runtime: wait off its workers.
    let enroll = tokio::task::spawn_blocking(move || enroll.output().unwrap()).await.unwrap();
    assert!(enroll.status.success(), "enroll: {}", String::from_utf8_lossy(&enroll.stderr));

    let mut agent = std::process::Command::new(agent_binary)
        .args(["run", "--config"])
        .arg(&agent_config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = agent.id();
    // Each pass logs a `pass` line: count them, and keep the log for errors.
    let passes = Arc::new(AtomicU64::new(0));
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (counted, kept) = (passes.clone(), log.clone());
    let stderr = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(" pass ") || line.contains("\"msg\":\"pass\"") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            kept.lock().unwrap().push(line);
        }
    });
    // Warm up: the first pass (facts, inventory, the first desired state).
    let deadline = Instant::now() + Duration::from_secs(60);
    while passes.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the agent made no pass:\n{}", log.lock().unwrap().join("\n"));
        assert!(agent.try_wait().unwrap().is_none(), "the agent exited:\n{}", log.lock().unwrap().join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_first = sample(pid).expect("the agent runs");

    // The idle period, sampled each second.
    let started = Instant::now();
    let passes_before = passes.load(Ordering::SeqCst);
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(sample(pid).expect("the agent still runs"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let polls = passes.load(Ordering::SeqCst) - passes_before;
    let last = *samples.last().unwrap();

    // Stop the agent as a user would (Ctrl-C), bounded.
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let stop = Instant::now();
    let stopped = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break Some(status);
        }
        if stop.elapsed() > Duration::from_secs(10) {
            let _ = agent.kill();
            let _ = agent.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    running.shutdown().await;

    let ticks = clock_ticks();
    let mut rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    rss.sort_unstable();
    let steady = rss[rss.len() / 2];
    let cpu = (last.ticks - after_first.ticks) as f64 / ticks;
    let binary_size = std::fs::metadata(agent_binary).map(|m| m.len()).unwrap_or(0);
    let errors = log.lock().unwrap().iter().filter(|l| l.contains("ERROR") || l.contains("\"error\"")).count();
    println!(
        "agent footprint: {} (release, {:.1} MiB), poll interval {poll} s",
        agent_binary.display(),
        mib(binary_size / 1024)
    );
    println!(
        "  first pass: RSS {:.1} MiB, CPU {:.2} s (enrolled, facts and inventory uploaded, desired state fetched)",
        mib(after_first.rss_kib),
        after_first.ticks as f64 / ticks
    );
    println!("  idle period: {elapsed:.1} s, {polls} polls (passes), {} samples", samples.len());
    println!(
        "  RSS: peak (VmHWM) {:.1} MiB, steady (median VmRSS) {:.1} MiB, min {:.1}, max {:.1}; {} threads",
        mib(last.hwm_kib),
        mib(steady),
        mib(rss[0]),
        mib(*rss.last().unwrap()),
        last.threads
    );
    println!(
        "  CPU: {cpu:.3} s over the idle period = {:.3}% of one core; {:.1} ms per poll",
        cpu / elapsed * 100.0,
        if polls > 0 { cpu / polls as f64 * 1000.0 } else { f64::NAN }
    );
    println!(
        "  goal (< 15 MiB RSS, near-zero CPU between polls): RSS {}; stopped by SIGINT: {}; errors logged: {errors}",
        if mib(last.hwm_kib) < 15.0 { "met" } else { "NOT met" },
        match stopped {
            Some(status) => format!("yes ({status})"),
            None => "no (killed after 10 s)".into(),
        }
    );
}
