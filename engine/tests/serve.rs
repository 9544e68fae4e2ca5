//! The daemon end to end over a real listener on 127.0.0.1:0: it follows a
//! real git repository, an agent enrolls and converges, and a commit
//! reaches the agent through the webhook and a long poll within seconds.
//! Invalid commits keep the last good revision (T1), a force-push waits for
//! `ack-rewrite` (T3), and the hardening limits hold (T29, T31, T32).

use std::path::Path;
use std::sync::Arc;

use patchward::clock::{Clock as _, FakeClock};
use patchward::daemon::config::{Limits, ServeConfig};
use patchward::daemon::serve::{Running, start};

mod support;
use support::http::{Client, desired_items, enroll_device, status_until, webhook};
use support::{example_policy_repository as policy_repository, git};

const EXCLUDE_KB5032190: &str = "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: hold-kb5032190}\n\
spec:\n  patches: [KB5032190]\n  reason: breaks the line-of-business app (INC-1234)\n";

async fn engine(dir: &Path, repo: &Path, limits: Limits) -> (Running, Client, String) {
    let (running, client, admin, _) = engine_with_clock(dir, repo, limits).await;
    (running, client, admin)
}

async fn engine_with_clock(dir: &Path, repo: &Path, limits: Limits) -> (Running, Client, String, Arc<FakeClock>) {
    engine_on(dir, repo, limits, None).await
}

/// A new enrollment token good for `uses` devices.
async fn enrollment_token(client: &Client, admin: &str, uses: u32) -> String {
    let body = serde_json::json!({"kind": "enrollment", "uses": uses});
    let reply = client.send("POST", "/api/v1/tokens", Some(admin), Some(body)).await;
    reply.json()["token"].as_str().unwrap_or_else(|| panic!("no token: {}", reply.text)).to_owned()
}

/// An engine on the embedded store in `dir/data`, or on PostgreSQL at `store`.
async fn engine_on(
    dir: &Path,
    repo: &Path,
    limits: Limits,
    store: Option<String>,
) -> (Running, Client, String, Arc<FakeClock>) {
    std::fs::write(dir.join("webhook-secret"), "s3cret-for-webhooks\n").unwrap();
    let config = ServeConfig {
        store,
        data: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: repo.display().to_string(),
        // Long enough that only the webhook makes the engine look.
        poll_interval: std::time::Duration::from_secs(3600),
        webhook_secret_file: Some(dir.join("webhook-secret")),
        limits,
        ..ServeConfig::default()
    };
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let running = start(config, clock.clone()).await.unwrap();
    let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", running.api) };
    // Ready once the first pass applied the repository.
    for _ in 0..200 {
        if client.send("GET", "/readyz", None, None).await.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (running, client, admin, clock)
}

/// Reports open a gate as soon as the engine's report re-plan is due (10 s
/// after the last plan), not at the reconciler's next poll (an hour here):
/// the pilot's three successes pass production's gate with no webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_open_a_gate_without_waiting_for_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (running, client, admin, clock) = engine_with_clock(dir.path(), &repo, Limits::default()).await;
    status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str()).await;
    let token = enrollment_token(&client, &admin, 3).await;
    let mut pilots = Vec::new();
    for n in 1..=3 {
        let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
            "language": "en-US", "hostname": format!("pilot-{n}"), "labels": {"ring": "pilot"}});
        let credential = enroll_device(&client, &token, &facts).await;
        pilots.push(credential);
    }
    let gate = |rollouts: &serde_json::Value| -> serde_json::Value {
        let rollout = rollouts["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "critical-security" && r["patch"] == "KB5032190")
            .unwrap_or_else(|| panic!("{rollouts}"));
        rollout["stages"][1]["gate"].clone()
    };
    let before = client.send("GET", "/api/v1/rollouts", Some(&admin), None).await.json();
    assert_eq!((&gate(&before)["passed"], &gate(&before)["succeeded"]), (&false.into(), &0.into()), "{before}");

    // Each report, once 10 s passed since the last plan, is counted at once.
    for (n, credential) in pilots.iter().enumerate() {
        clock.advance(jiff::SignedDuration::from_secs(11));
        let events = serde_json::json!({"events": [{"seq": 1, "at": clock.now().to_string(), "kind": "report",
            "patch": "KB5032190", "status": "succeeded", "action": "install", "policy": "emergency"}]});
        let sent = client.send("POST", "/api/v1/device/events", Some(credential), Some(events)).await;
        assert_eq!(sent.status, 200, "{}", sent.text);
        let mut last = serde_json::Value::Null;
        for _ in 0..200 {
            last = gate(&client.send("GET", "/api/v1/rollouts", Some(&admin), None).await.json());
            if last["succeeded"] == n + 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!((&last["succeeded"], &last["passed"]), (&(n + 1).into(), &(n == 2).into()), "{last}");
    }
    running.shutdown().await;
}

/// The media master fetches the installer of software assigned to a
/// device that lacks it, checks its sha256, and serves it to the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_master_fetches_assigned_software_for_the_devices_that_lack_it() {
    let installer: &'static [u8] = b"an installer's bytes, as the vendor publishes them\n";
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(installer))
    };
    let vendor = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vendor_url = format!("http://{}/7z2408-x64.msi", vendor.local_addr().unwrap());
    let app = axum::Router::new().route("/7z2408-x64.msi", axum::routing::get(move || async move { installer }));
    tokio::spawn(async move { axum::serve(vendor, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    policy_repository(&repo);
    let path = repo.join("software/7zip.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("https://packages.example.com/7zip/7z2408-x64.msi", &vendor_url)
        .replace("2aaf3f3ec0b2a1b2ed5e6a80d9b9d1a1e6c3f3b4a5d6e7f8091a2b3c4d5e6f70", &digest)
        .replace("size: 1601536", &format!("size: {}", installer.len()));
    assert!(text.contains(&digest));
    std::fs::write(&path, text).unwrap();
    git(&repo, &["commit", "-qam", "7-Zip 24.08 from the vendor on loopback"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let (running, client, admin) = engine(dir.path(), &repo, Limits::default()).await;
    status_until(&client, &admin, |s| s["applied"]["revision"] == commit.as_str()).await;

    let token =
        client.send("POST", "/api/v1/tokens", Some(&admin), Some(serde_json::json!({"kind": "enrollment"}))).await;
    let token = token.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
        "language": "en-US", "hostname": "ws-0099"});
    let credential = enroll_device(&client, &token, &facts).await;

    let blob = format!("/api/v1/blobs/{digest}");
    let mut last = 0;
    for _ in 0..200 {
        let reply = client.send("GET", &blob, Some(&credential), None).await;
        last = reply.status;
        if last == 200 {
            assert_eq!(reply.text.as_bytes(), installer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last, 200, "the media master never stored the installer");
    running.shutdown().await;
}

fn condition(status: &serde_json::Value, kind: &str) -> (bool, String) {
    let found = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap();
    (found["status"].as_bool().unwrap(), found["reason"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reaches_an_enrolled_agent_within_seconds_of_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (running, client, admin) = engine(dir.path(), &repo, Limits::default()).await;

    let status =
        status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str() && s["bundledFeed"] == true).await;
    assert_eq!(status["applied"]["author"], "Ada Admin <ada@example.com>");
    assert_eq!(condition(&status, "PolicyValid"), (true, "Valid".into()));

    // An enrollment token from the admin API, then an agent's first pass.
    let token =
        client.send("POST", "/api/v1/tokens", Some(&admin), Some(serde_json::json!({"kind": "enrollment"}))).await;
    assert_eq!(token.status, 200, "{}", token.text);
    let token = token.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
        "language": "en-US", "hostname": "ws-0042", "ip": "10.20.1.42"});
    let credential = enroll_device(&client, &token, &facts).await;
    let desired = client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert_eq!(desired.status, 200, "{}", desired.text);
    assert!(desired_items(&desired).contains(&"KB5032190".to_owned()), "{:?}", desired_items(&desired));
    let tag = desired.etag.clone().unwrap();

    // The admin commits an exclusion; the webhook fires; the agent's long
    // poll answers with the new state.
    std::fs::write(repo.join("exclusions/hold-kb5032190.yaml"), EXCLUDE_KB5032190).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "hold KB5032190 (INC-1234)"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let started = std::time::Instant::now();
    let poll = {
        let client = Client { http: client.http.clone(), base: client.base.clone() };
        let credential = credential.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            client
                .send_with(
                    "GET",
                    "/api/v1/device/desired-state?wait=30",
                    Some(&credential),
                    None,
                    &[("if-none-match", &tag)],
                )
                .await
        })
    };
    webhook(&client).await;
    let changed = poll.await.unwrap();
    let took = started.elapsed();
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(!desired_items(&changed).contains(&"KB5032190".to_owned()), "{:?}", desired_items(&changed));
    assert_ne!(changed.etag.as_deref(), Some(tag.as_str()));
    let status = status_until(&client, &admin, |s| s["applied"]["revision"] == second.as_str()).await;
    assert_eq!(status["applied"]["message"], "hold KB5032190 (INC-1234)");

    // An invalid commit: refused, every error reported, the last good
    // revision and the served state unchanged (T1).
    std::fs::write(repo.join("rules/broken.yaml"), "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: broken}\nspec: {mach: 'true', action: approve}\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "typo"]);
    let bad = git(&repo, &["rev-parse", "HEAD"]);
    webhook(&client).await;
    let status = status_until(&client, &admin, |s| s["attempted"]["revision"] == bad.as_str()).await;
    assert_eq!(status["applied"]["revision"], second.as_str());
    assert_eq!(condition(&status, "PolicyValid"), (false, "ValidationFailed".into()));
    let errors = status["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().starts_with("rules/broken.yaml:4:")), "{errors:?}");
    let current_tag = changed.etag.clone().unwrap();
    let same = client
        .send_with("GET", "/api/v1/device/desired-state", Some(&credential), None, &[("if-none-match", &current_tag)])
        .await;
    assert_eq!(same.status, 304);

    // A force-push back past the applied commit: refused until
    // acknowledged (T3).
    git(&repo, &["reset", "-q", "--hard", &first]);
    std::fs::write(repo.join("README.md"), "rewritten\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "rewrite"]);
    let rewritten = git(&repo, &["rev-parse", "HEAD"]);
    webhook(&client).await;
    let status = status_until(&client, &admin, |s| s["attempted"]["revision"] == rewritten.as_str()).await;
    assert_eq!(status["applied"]["revision"], second.as_str());
    assert_eq!(condition(&status, "SourceVerified"), (false, "HistoryRewritten".into()));
    let ack =
        client.send("POST", "/api/v1/ack-rewrite", Some(&admin), Some(serde_json::json!({"commit": rewritten}))).await;
    assert_eq!(ack.status, 202, "{}", ack.text);
    status_until(&client, &admin, |s| s["applied"]["revision"] == rewritten.as_str()).await;
    let back = client
        .send_with(
            "GET",
            "/api/v1/device/desired-state?wait=10",
            Some(&credential),
            None,
            &[("if-none-match", &current_tag)],
        )
        .await;
    assert_eq!(back.status, 200);
    assert!(desired_items(&back).contains(&"KB5032190".to_owned()), "the exclusion is gone with the rewrite");

    // The audit log attributes revisions to commit authors, approvals to
    // the plans that changed them, and admin calls to the admin.
    let audit = client.send("GET", "/api/v1/audit", Some(&admin), None).await.json();
    let entries = audit["entries"].as_array().unwrap();
    let has = |actor: &str, action: &str| entries.iter().any(|e| e["actor"] == actor && e["action"] == action);
    assert!(has("commit:Ada Admin <ada@example.com>", "revision.applied"));
    assert!(has("commit:Ada Admin <ada@example.com>", "revision.refused"));
    assert!(has("commit:Ada Admin <ada@example.com>", "approval.lost"));
    assert!(has("admin", "rewrite.acknowledged"));
    assert!(has("admin", "api.call"), "an admin's change through the API");
    assert!(has("admin", "api.read"), "an admin's read, recorded apart from changes");
    assert!(has("webhook", "sync.requested"));
    let csv = client.send("GET", "/api/v1/audit?format=csv", Some(&admin), None).await;
    assert!(csv.text.starts_with("seq,at,actor,action,detail\n"), "{}", csv.text);

    // Compliance and devices as JSON and CSV.
    let compliance = client.send("GET", "/api/v1/compliance", Some(&admin), None).await.json();
    assert_eq!(compliance["devices"], 1);
    let devices = client.send("GET", "/api/v1/devices?format=csv", Some(&admin), None).await;
    assert!(devices.text.lines().any(|l| l.starts_with("ws-0042,KB5032190,")), "{}", devices.text);

    // Metrics on their own listener, without a credential.
    let metrics = reqwest::get(format!("http://{}/metrics", running.metrics)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("patchward_revisions_applied_total 3"), "{metrics}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_refused_and_others_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    policy_repository(&repo);
    let limits = Limits {
        max_body_bytes: 64 << 10,
        max_json_depth: 16,
        header_read_timeout: std::time::Duration::from_millis(500),
        device_requests_per_minute: 60,
        ..Limits::default()
    };
    let (running, client, admin) = engine(dir.path(), &repo, limits).await;
    status_until(&client, &admin, |s| s["bundledFeed"] == true).await;
    let token = enrollment_token(&client, &admin, 2).await;
    let enroll = |host: &'static str| {
        let token = token.clone();
        let client = Client { http: client.http.clone(), base: client.base.clone() };
        async move {
            let reply = client
                .send("POST", "/api/v1/enroll", Some(&token), Some(serde_json::json!({"facts": {"hostname": host}})))
                .await;
            reply.json()["credential"].as_str().unwrap().to_owned()
        }
    };
    let (flooder, quiet) = (enroll("flooder").await, enroll("quiet").await);

    // T29: an oversized body and a deep one are refused; so is a huge header.
    let big = serde_json::json!({"events": [{"seq": 1, "pad": "x".repeat(100 << 10)}]});
    let reply = client.send("POST", "/api/v1/device/events", Some(&quiet), Some(big)).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    let mut deep = String::from("{\"events\":");
    deep.push_str(&"[".repeat(40));
    deep.push_str(&"]".repeat(40));
    deep.push('}');
    let response = client
        .http
        .post(format!("{}/api/v1/device/events", client.base))
        .bearer_auth(&quiet)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("nests 41 deep"));
    let huge = "h".repeat(64 << 10);
    let response = client.http.get(format!("{}/healthz", client.base)).header("x-padding", huge).send().await;
    assert!(response.map(|r| r.status().as_u16() == 431).unwrap_or(true), "a 64 KiB header is refused");

    // T30: a client that never finishes its headers is cut off.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut slow = tokio::net::TcpStream::connect(running.api).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the slow client was closed by the header timeout");
    assert_eq!(client.send("GET", "/healthz", None, None).await.status, 200);

    // T32: only a 64-hex digest names a blob.
    for path in ["/api/v1/blobs/..%2F..%2Fadmin-token", "/api/v1/blobs/ABCDEF", "/api/v1/blobs/%2e%2e"] {
        let reply = client.send("GET", path, Some(&quiet), None).await;
        assert!(reply.status == 400 || reply.status == 404, "{path}: {}", reply.status);
        assert!(!reply.text.contains("pwa_"), "{path} leaked the admin token");
    }
    let missing = client.send("GET", &format!("/api/v1/blobs/{}", "a".repeat(64)), Some(&quiet), None).await;
    assert_eq!(missing.status, 404);

    // T31: the flooder hits its budget; the quiet device is still served.
    // The budget refills on the engine's clock, which does not move here.
    let mut limited = 0;
    for _ in 0..30 {
        let reply = client.send("GET", "/api/v1/device/desired-state", Some(&flooder), None).await;
        if reply.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 15, "only {limited} of 30 refused");
    assert_eq!(client.send("GET", "/api/v1/device/desired-state", Some(&quiet), None).await.status, 200);
    running.shutdown().await;
}

/// G3 at the engine: a commit that leaves the policy without any
/// ApprovalRule or Approval withholds the retractions it would otherwise
/// make, and the `RetractionsAllowed` condition says how many, so the admin
/// who emptied the policy understands why nothing is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_grants_nothing_withholds_retractions_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (running, client, admin) = engine(dir.path(), &repo, Limits::default()).await;
    let status = status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str()).await;
    assert_eq!(condition(&status, "RetractionsAllowed"), (true, "PolicyGrants".into()));

    // A device that installed KB5032190 under `emergency`, and still has it.
    let token =
        client.send("POST", "/api/v1/tokens", Some(&admin), Some(serde_json::json!({"kind": "enrollment"}))).await;
    let token = token.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
        "language": "en-US", "hostname": "ws-0042", "ip": "10.20.1.42"});
    let credential = enroll_device(&client, &token, &facts).await;
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": ["KB5032190"], "packages": []}});
    let put = client.send("PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let events = serde_json::json!({"events": [{"seq": 1, "at": "2026-11-24T10:00:00Z", "kind": "report",
        "patch": "KB5032190", "status": "succeeded", "action": "install", "policy": "emergency"}]});
    let sent = client.send("POST", "/api/v1/device/events", Some(&credential), Some(events)).await;
    assert_eq!(sent.status, 200, "{}", sent.text);

    // Every rule and approval removed in one commit.
    git(&repo, &["rm", "-rq", "rules", "approvals"]);
    git(&repo, &["commit", "-q", "-m", "start over"]);
    let emptied = git(&repo, &["rev-parse", "HEAD"]);
    webhook(&client).await;
    let status = status_until(&client, &admin, |s| {
        s["applied"]["revision"] == emptied.as_str()
            && s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "RetractionsAllowed" && c["status"] == false)
    })
    .await;
    assert_eq!(condition(&status, "RetractionsAllowed"), (false, "PolicyGrantsNothing".into()));
    let found = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "RetractionsAllowed").unwrap();
    let message = found["message"].as_str().unwrap();
    assert!(message.contains("1 retraction(s) on 1 device(s) are withheld"), "{message}");
    let desired = client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert!(!desired_items(&desired).contains(&"KB5032190".to_owned()), "nothing is retracted: {}", desired.text);
    running.shutdown().await;
}

/// `serve --store postgres://…`: the same engine on a real PostgreSQL. An
/// agent enrolls and gets its state; after a restart of the engine the
/// device, its credential, its generation and the audit log are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_on_postgres_keeps_its_fleet_across_a_restart() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("engine");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (running, client, admin, _) = engine_on(dir.path(), &repo, Limits::default(), Some(url.clone())).await;
    status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str() && s["bundledFeed"] == true).await;
    let token =
        client.send("POST", "/api/v1/tokens", Some(&admin), Some(serde_json::json!({"kind": "enrollment"}))).await;
    let token = token.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
        "language": "en-US", "hostname": "ws-0042", "ip": "10.20.1.42"});
    let credential = enroll_device(&client, &token, &facts).await;
    let desired = client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert_eq!(desired.status, 200, "{}", desired.text);
    assert!(desired_items(&desired).contains(&"KB5032190".to_owned()));
    let tag = desired.etag.clone().unwrap();
    running.shutdown().await;
    assert!(!dir.path().join("data/store").exists(), "nothing went to the embedded store");

    let (running, client, admin, _) = engine_on(dir.path(), &repo, Limits::default(), Some(url.clone())).await;
    let status = status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str()).await;
    assert_eq!(status["replica"]["leader"], true, "{status:#}");
    assert_eq!(status["replica"]["leaderId"], status["replica"]["id"]);
    let again = client
        .send_with("GET", "/api/v1/device/desired-state", Some(&credential), None, &[("if-none-match", &tag)])
        .await;
    assert_eq!(again.status, 304, "the same state, the same generation: {}", again.text);
    let devices = client.send("GET", "/api/v1/devices", Some(&admin), None).await.json();
    assert_eq!(devices["total"], 1, "{devices}");
    let audit = client.send("GET", "/api/v1/audit", Some(&admin), None).await.json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"device.enrolled"), "{actions:?}");
    running.shutdown().await;

    // A replica with another signing key would sign states no agent
    // trusts: it refuses to start.
    let other = ServeConfig {
        data: dir.path().join("other-data"),
        store: Some(url),
        signing_key: Some(dir.path().join("other-key")),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: repo.display().to_string(),
        ..ServeConfig::default()
    };
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let refused = start(other, clock).await.err().expect("refused").to_string();
    assert!(refused.contains("--signing-key"), "{refused}");
}

/// T45: PostgreSQL stopped hard under a serving engine. Agents' polls are
/// still answered from what the engine holds (the credential it already
/// confirmed, the state it signed); a write answers 503 within seconds and
/// is not acknowledged; once the database is back, writes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_polls_are_answered_and_writes_refused_until_it_is_back() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("outage");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (running, client, admin, _) = engine_on(dir.path(), &repo, Limits::default(), Some(url)).await;
    status_until(&client, &admin, |s| s["applied"]["revision"] == first.as_str() && s["bundledFeed"] == true).await;
    let token =
        client.send("POST", "/api/v1/tokens", Some(&admin), Some(serde_json::json!({"kind": "enrollment"}))).await;
    let token = token.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "hostname": "ws-0042"});
    let credential = enroll_device(&client, &token, &facts).await;
    let desired = client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert_eq!(desired.status, 200, "{}", desired.text);
    let tag = desired.etag.clone().unwrap();

    pg.crash();
    let poll = client
        .send_with("GET", "/api/v1/device/desired-state", Some(&credential), None, &[("if-none-match", &tag)])
        .await;
    assert_eq!(poll.status, 304, "a poll is answered from memory: {}", poll.text);
    let event =
        serde_json::json!({"events": [{"seq": 1, "kind": "report", "patch": "KB5032190", "status": "succeeded"}]});
    let started = std::time::Instant::now();
    let refused = client.send("POST", "/api/v1/device/events", Some(&credential), Some(event.clone())).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "refused within seconds: {:?}", started.elapsed());

    pg.restart();
    let mut accepted = None;
    for _ in 0..100 {
        let reply = client.send("POST", "/api/v1/device/events", Some(&credential), Some(event.clone())).await;
        if reply.status == 200 {
            accepted = Some(reply);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let accepted = accepted.expect("writes succeed once the database is back");
    assert_eq!(accepted.json()["recorded"], 1, "the refused write was not recorded: {}", accepted.text);
    running.shutdown().await;
}

/// Issue 18: an idle poll is answered from memory before the router sees
/// it (`api::hot`). Its answers are the router's, byte for byte: the same
/// status, ETag, content type and body with and without the ETag held,
/// and the same refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_poll_answered_from_memory_is_the_routers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    policy_repository(&repo);
    let (running, client, admin) = engine(dir.path(), &repo, Limits::default()).await;
    status_until(&client, &admin, |s| s["bundledFeed"] == true).await;
    let token = enrollment_token(&client, &admin, 1).await;
    let facts =
        serde_json::json!({"hostname": "hot-1", "os": "windows", "platform": "windows-11-23h2", "arch": "x86_64"});
    let credential = enroll_device(&client, &token, &facts).await;
    // `?wait=0` takes the router's path; no query, the hot path.
    let poll = |query: &'static str, etag: Option<String>, bearer: String| {
        let http = client.http.clone();
        let url = format!("{}/api/v1/device/desired-state{query}", client.base);
        async move {
            let mut request = http.get(url).bearer_auth(bearer);
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            let response = request.send().await.unwrap();
            let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
            let shape = (response.status().as_u16(), header("etag"), header("content-type"), header("content-length"));
            (shape, response.bytes().await.unwrap())
        }
    };
    let routed = poll("?wait=0", None, credential.clone()).await;
    let hot = poll("", None, credential.clone()).await;
    assert_eq!(routed.0.0, 200);
    assert_eq!(hot, routed, "a full answer");
    let etag = hot.0.1.clone();
    let routed = poll("?wait=0", etag.clone(), credential.clone()).await;
    let hot = poll("", etag.clone(), credential.clone()).await;
    assert_eq!(routed.0.0, 304);
    assert_eq!(hot, routed, "not modified");
    let stranger = poll("", None, "pwd_not-a-credential".into()).await;
    assert_eq!(stranger.0.0, 401, "an unknown credential is refused as before");
    let metrics = reqwest::get(format!("http://{}/metrics", running.metrics)).await.unwrap().text().await.unwrap();
    let counted =
        |name: &str| metrics.lines().find(|l| l.starts_with(name)).map(|l| l.rsplit(' ').next().unwrap().to_owned());
    assert_eq!(counted("patchward_desired_state_not_modified_total").as_deref(), Some("2"), "{metrics}");
    running.shutdown().await;
}

/// Inventories uploaded at once are planned in batches (`daemon::replans`):
/// each is still answered with its own device's generation, and each device
/// gets the state it would get planned alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventories_uploaded_at_once_each_get_their_own_devices_plan() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    policy_repository(&repo);
    let (running, client, admin) = engine(dir.path(), &repo, Limits::default()).await;
    status_until(&client, &admin, |s| s["bundledFeed"] == true).await;
    let token = enrollment_token(&client, &admin, 50).await;
    let facts = |i: usize| {
        let (os, platform) = if i % 2 == 0 { ("windows", "windows-11-23h2") } else { ("linux", "debian-12") };
        serde_json::json!({"hostname": format!("burst-{i}"), "os": os, "platform": platform, "arch": "x86_64"})
    };
    // Enrolls device `i` and uploads its first inventory: its credential and
    // the generation the upload was answered with.
    let enroll = |i: usize| {
        let (client, token, facts) = (&client, &token, facts(i));
        async move {
            let enrolled =
                client.send("POST", "/api/v1/enroll", Some(token), Some(serde_json::json!({"facts": facts})));
            let credential = enrolled.await.json()["credential"].as_str().unwrap().to_owned();
            let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
            let put = client.send("PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory)).await;
            assert_eq!(put.status, 200, "{}", put.text);
            (credential, put.json()["generation"].as_u64().expect("a generation"))
        }
    };
    let items_of = |credential: String| {
        let client = &client;
        async move {
            let reply = client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
            let etag = reply.etag.clone().unwrap();
            let generation: u64 = etag.trim_matches('"').split('-').next().unwrap().parse().unwrap();
            (generation, desired_items(&reply))
        }
    };
    // Planned alone, one after the other: what each platform gets.
    let mut alone = Vec::new();
    for i in 0..2 {
        alone.push(items_of(enroll(i).await.0).await.1);
    }
    assert_ne!(alone[0], alone[1], "the platforms' plans differ, so a mix-up would show");
    let burst = futures_util::future::join_all((2..34).map(enroll)).await;
    for (i, (credential, answered)) in (2..34).zip(burst) {
        let (served, items) = items_of(credential).await;
        assert_eq!(served, answered, "device {i} was answered with another's generation");
        assert_eq!(items, alone[i % 2], "device {i} got another platform's plan");
    }
    running.shutdown().await;
}
