//! Issue 18's speed goal: every console view answers in under 200 ms at
//! 100,000 devices. A real engine on loopback,
//! 100,000 devices enrolled through the agent API (half of them reporting
//! an install), an admin and a user signed in through the console's form;
//! then each view is fetched over HTTP, one request at a time, and its
//! latencies printed (min, median, max of `PATCHWARD_VIEW_RUNS`).
//!
//! `cargo bench -p patchward-engine --bench console_views`
//! (`PATCHWARD_VIEW_DEVICES` changes the fleet size).

use std::sync::Arc;
use std::time::{Duration, Instant};

use patchward::clock::SystemClock;
use patchward::daemon::config::{Limits, ServeConfig};

mod fleet;
#[path = "../tests/support/mod.rs"]
mod support;
use support::example_policy_repository;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let devices = env_or("PATCHWARD_VIEW_DEVICES", 100_000);
    let runs = env_or("PATCHWARD_VIEW_RUNS", 7);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(devices, runs));
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn run(devices: usize, runs: usize) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    example_policy_repository(&repo);
    let config = ServeConfig {
        data: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: repo.display().to_string(),
        poll_interval: Duration::from_secs(3600),
        limits: Limits { device_requests_per_minute: 0, ..Limits::default() },
        ..ServeConfig::default()
    };
    let running = patchward::daemon::serve::start(config, Arc::new(SystemClock)).await.unwrap();
    let base = format!("http://{}", running.api);
    let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = |path: &str, token: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let token =
        json(post("/api/v1/tokens", &admin, serde_json::json!({"kind": "enrollment", "uses": devices})).await.unwrap())
            .await;
    let token = token["token"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let concurrency = 64;
    futures_util::future::join_all((0..concurrency).map(|worker| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            for index in (worker..devices).step_by(concurrency) {
                let credential = fleet::enroll(&http, &base, &token, &fleet::device_facts(index)).await;
                if index % 2 == 0 {
                    // Half the fleet reports an install: the time view has rows.
                    let events = serde_json::json!({"events": [{"seq": 1, "at": jiff::Timestamp::now().to_string(),
                        "kind": "report", "patch": "KB5031455", "status": "succeeded", "action": "install",
                        "policy": "workstation-idle"}]});
                    let sent =
                        fleet::send(http.post(format!("{base}/api/v1/device/events")), &credential, events).await;
                    assert!(sent.status().is_success());
                }
            }
        }
    }))
    .await;
    println!("enrolled {devices} devices in {:.1} s", started.elapsed().as_secs_f64());
    // A full plan of the fleet (with the reports) before measuring.
    let sync = post("/api/v1/sync", &admin, serde_json::json!({})).await.unwrap();
    assert_eq!(sync.status().as_u16(), 202);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sign_in = |token: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let reply = http
                .post(format!("{base}/signin"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}"))
                .send()
                .await
                .unwrap();
            let cookie = reply.headers()["set-cookie"].to_str().unwrap();
            cookie.split(';').next().unwrap().to_owned()
        }
    };
    let admin_cookie = sign_in(admin.clone()).await;
    let user = json(
        post("/api/v1/tokens", &admin, serde_json::json!({"kind": "user", "device": "load-00000"})).await.unwrap(),
    )
    .await;
    let user_cookie = sign_in(user["token"].as_str().unwrap().to_owned()).await;

    let views = [
        ("/console", &admin_cookie),
        ("/console/devices", &admin_cookie),
        ("/console/devices?severity=critical&sort=pending&order=desc", &admin_cookie),
        ("/console/devices?offset=9950", &admin_cookie),
        ("/console/devices/load-04242", &admin_cookie),
        ("/console/devices?patch=7zip%4024.08&status=due", &admin_cookie),
        ("/console/rollouts", &admin_cookie),
        ("/console/software", &admin_cookie),
        ("/console/catalog", &admin_cookie),
        ("/console/catalog?rule=critical-security", &admin_cookie),
        ("/console/installed", &admin_cookie),
        ("/console/exposure", &admin_cookie),
        ("/console/exposure?offset=100000", &admin_cookie),
        ("/console/exposure?cve=CVE-2026-1234", &admin_cookie),
        ("/console/exposure?overdue=true&decision=approved", &admin_cookie),
        ("/console/exposure?severity=critical&sort=since&order=desc", &admin_cookie),
        ("/console/review", &admin_cookie),
        ("/console/status", &admin_cookie),
        ("/console/audit", &admin_cookie),
        ("/console/audit?before=5000", &admin_cookie),
        // A filter few entries pass reads the log back to its start.
        ("/console/audit?actor=commit%3A", &admin_cookie),
        ("/portal", &user_cookie),
    ];
    println!("{:<60} {:>9} {:>9} {:>9} {:>9}", "view", "min ms", "median ms", "max ms", "bytes");
    let mut slowest = 0.0f64;
    for (path, cookie) in views {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs {
            let start = Instant::now();
            let reply = http.get(format!("{base}{path}")).header("cookie", cookie.as_str()).send().await.unwrap();
            assert_eq!(reply.status().as_u16(), 200, "{path}");
            bytes = reply.bytes().await.unwrap().len();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
        slowest = slowest.max(median);
        let flag = if median >= 200.0 { "  OVER 200 ms" } else { "" };
        println!("{path:<60} {min:>9.1} {median:>9.1} {max:>9.1} {bytes:>9}{flag}");
    }
    println!("slowest median: {slowest:.1} ms ({} devices)", devices);
    running.shutdown().await;
}
