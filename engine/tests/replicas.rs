//! Several replicas on one PostgreSQL (DESIGN "Growing past one machine",
//! RELIABILITY T44–T46): one leads by a lease with an epoch, the others
//! serve what it publishes, a leader that lost its lease cannot write, and
//! a dead leader is replaced.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchward::clock::FakeClock;
use patchward::daemon::config::ServeConfig;
use patchward::daemon::serve::{Running, start};
use patchward::plan::LedgerEntry;
use patchward::store::replicas::Fencing;
use patchward::store::{Store, StoreError};

mod support;
use support::http::{Client, desired_items, enroll_device, status_until, webhook};
use support::postgres::Postgres;
use support::{example_policy_repository as policy_repository, git};

/// Short enough that a takeover is seen within seconds.
const LEASE: Duration = Duration::from_secs(2);

/// A replica named `name` on `store`: its own data folder, the key file
/// every replica shares, the one policy repository.
async fn replica(dir: &Path, name: &str, repo: &Path, store: &str) -> (Running, Client, String) {
    std::fs::write(dir.join("webhook-secret"), "s3cret-for-webhooks\n").unwrap();
    let config = ServeConfig {
        store: Some(store.to_owned()),
        data: dir.join(name),
        signing_key: Some(dir.join("engine-key")),
        leader_lease: LEASE,
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: repo.display().to_string(),
        poll_interval: Duration::from_secs(3600),
        webhook_secret_file: Some(dir.join("webhook-secret")),
        ..ServeConfig::default()
    };
    let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let running = start(config, clock).await.unwrap();
    // Only the first start against the store writes the admin token.
    let admin = std::fs::read_to_string(dir.join("a/admin-token")).unwrap().trim().to_owned();
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", running.api) };
    (running, client, admin)
}

/// Waits (polling, bounded) until `client`'s replica says it leads or not.
async fn leads(client: &Client, admin: &str, leader: bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.send("GET", "/api/v1/status", Some(admin), None).await.json();
        if status["replica"]["leader"] == leader && status["replica"]["leaderId"].is_string() {
            return status;
        }
        assert!(Instant::now() < deadline, "the replica never got there: {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two replicas serve one fleet: enrollment and inventory through the
/// follower, the same ETag and bytes from both; the leader dies (no
/// release) and the other takes over and applies the next commit; a
/// graceful stop hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_one_fleet_and_the_survivor_takes_over() {
    let pg = Postgres::start();
    let url = pg.database("replicas");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    let first = policy_repository(&repo);
    let (a, a_client, a_admin) = replica(dir.path(), "a", &repo, &url).await;
    let a_status = leads(&a_client, &a_admin, true).await;
    status_until(&a_client, &a_admin, |s| s["applied"]["revision"] == first.as_str()).await;
    let (b, b_client, b_admin) = replica(dir.path(), "b", &repo, &url).await;
    let b_status = leads(&b_client, &b_admin, false).await;
    assert!(!dir.path().join("b/admin-token").exists(), "one admin token, written by the first start");
    assert_eq!(b_status["replica"]["leaderId"], a_status["replica"]["id"], "{b_status:#}");

    // Every replica accepts every token in the store: A's admin at B.
    let token =
        b_client.send("POST", "/api/v1/tokens", Some(&a_admin), Some(serde_json::json!({"kind": "enrollment"})));
    let token = token.await.json()["token"].as_str().unwrap().to_owned();
    let facts = serde_json::json!({"os": "windows", "platform": "windows-11-23h2", "arch": "x86_64",
        "language": "en-US", "hostname": "ws-0042", "ip": "10.20.1.42"});
    // Enrolled, and its inventory planned by the leader, through the follower.
    let credential = enroll_device(&b_client, &token, &facts).await;
    let from_a = a_client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    let from_b = b_client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert_eq!(from_a.status, 200, "{}", from_a.text);
    assert_eq!(from_b.status, 200, "{}", from_b.text);
    assert_eq!(from_a.etag, from_b.etag, "the same ETag from both");
    assert_eq!(from_a.text, from_b.text, "the same bytes from both");
    assert!(desired_items(&from_b).contains(&"KB5032190".to_owned()));
    // The admin's views of the plan are the same through either replica:
    // the follower relays them to the leader.
    let b_status = b_client.send("GET", "/api/v1/status", Some(&a_admin), None).await.json();
    assert_eq!(b_status["applied"]["revision"], first.as_str(), "{b_status:#}");
    assert_eq!(b_status["replica"]["leader"], false, "the replica that answers: {b_status:#}");
    let at_a = a_client.send("GET", "/api/v1/compliance", Some(&a_admin), None).await;
    let at_b = b_client.send("GET", "/api/v1/compliance", Some(&a_admin), None).await;
    assert_eq!((at_a.status, &at_a.text), (200, &at_b.text), "the same compliance through both");
    assert!(at_b.json()["devices"].as_u64().is_some_and(|n| n == 1), "{}", at_b.text);
    // An inventory at the follower is answered with the leader's plan.
    let inventory = serde_json::json!({"facts": facts, "inventory": {"patches": [], "packages": []}});
    let put = b_client.send("PUT", "/api/v1/device/inventory", Some(&credential), Some(inventory)).await;
    let generation = put.json()["generation"].as_u64().expect("the leader's generation");
    assert!(from_b.etag.as_deref().unwrap().starts_with(&format!("\"{generation}-")), "{}", put.text);

    // A webhook at the follower reaches the leader, which applies the commit.
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "nothing but a new revision"]);
    let empty = git(&repo, &["rev-parse", "HEAD"]);
    webhook(&b_client).await;
    status_until(&a_client, &a_admin, |s| s["applied"]["revision"] == empty.as_str()).await;
    // A revision that changes nothing the device must do leaves its state
    // as it was, at both replicas.
    for client in [&a_client, &b_client] {
        let etag = from_a.etag.as_deref().unwrap();
        let same = client
            .send_with("GET", "/api/v1/device/desired-state", Some(&credential), None, &[("if-none-match", etag)])
            .await;
        assert_eq!(same.status, 304, "the same state after an empty commit: {}", same.text);
    }

    // The leader dies without a word; B leads within the lease and more.
    let died = Instant::now();
    a.crash();
    leads(&b_client, &b_admin, true).await;
    assert!(died.elapsed() < LEASE * 2 + Duration::from_secs(5), "took over in {:?}", died.elapsed());
    // It puts in force what the old leader had applied, not what it saw
    // when it started, and then reconciles it with the tip. The leader
    // restores the applied commit before its first pass fetches the tip,
    // so the status may show the one without the other for a moment.
    let reconciled = |s: &serde_json::Value| {
        s["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Reconciled" && c["status"] == true))
    };
    status_until(&b_client, &b_admin, |s| s["applied"]["revision"] == empty.as_str() && reconciled(s)).await;
    let kept = b_client
        .send_with(
            "GET",
            "/api/v1/device/desired-state",
            Some(&credential),
            None,
            &[("if-none-match", from_a.etag.as_deref().unwrap())],
        )
        .await;
    assert_eq!(kept.status, 304, "the new leader serves the same state: {}", kept.text);
    let devices = b_client.send("GET", "/api/v1/devices", Some(&b_admin), None).await.json();
    assert_eq!(devices["total"], 1, "nothing was lost: {devices}");

    // The next commit is applied by the new leader.
    std::fs::write(repo.join("exclude.yaml"), EXCLUDE_KB5032190).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "hold KB5032190"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let committed = Instant::now();
    webhook(&b_client).await;
    status_until(&b_client, &b_admin, |s| s["applied"]["revision"] == second.as_str()).await;
    let changed = b_client.send("GET", "/api/v1/device/desired-state", Some(&credential), None).await;
    assert!(!desired_items(&changed).contains(&"KB5032190".to_owned()), "{}", changed.text);
    assert!(committed.elapsed() < Duration::from_secs(30));

    // A replica started now follows; B stops gracefully and it leads at once.
    let (c, c_client, c_admin) = replica(dir.path(), "c", &repo, &url).await;
    leads(&c_client, &c_admin, false).await;
    let handed = Instant::now();
    b.shutdown().await;
    leads(&c_client, &c_admin, true).await;
    assert!(handed.elapsed() < LEASE, "a graceful stop hands over at once: {:?}", handed.elapsed());
    let polled = c_client
        .send_with(
            "GET",
            "/api/v1/device/desired-state",
            Some(&credential),
            None,
            &[("if-none-match", changed.etag.as_deref().unwrap())],
        )
        .await;
    assert_eq!(polled.status, 304, "{}", polled.text);
    c.shutdown().await;
}

const EXCLUDE_KB5032190: &str = "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: hold-kb5032190}\n\
spec:\n  patches: [KB5032190]\n  reason: breaks the line-of-business app (INC-1234)\n";

/// A leader paused past its lease cannot write: once another replica
/// holds the lease (the next epoch), the old leader's writes are refused
/// in their own transaction, and the new leader's succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_past_its_lease_cannot_write() {
    let pg = Postgres::start();
    let url = pg.database("fencing");
    let (old, new) = (Store::connect(&url).await.unwrap(), Store::connect(&url).await.unwrap());
    let ttl = Duration::from_secs(1);
    let first = old.claim_lease("old", "http://old", ttl).await.unwrap();
    let lease = first.lease.clone().expect("a free lease is taken");
    old.set_fencing(Fencing::Leader(lease.clone()));
    let refused = new.claim_lease("new", "http://new", ttl).await.unwrap();
    assert_eq!(refused.lease, None, "a held lease is not taken");
    assert_eq!(refused.leader.as_deref(), Some("old"));
    let entry = |rule: &str| LedgerEntry { rule: rule.into(), patch: "KB1".into(), at: jiff::Timestamp::UNIX_EPOCH };
    old.record_ledger(&[entry("while-leading")]).await.unwrap();

    // The old leader stalls; its lease runs out by the database's clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(lease) = new.claim_lease("new", "http://new", ttl).await.unwrap().lease {
            break lease;
        }
        assert!(Instant::now() < deadline, "the expired lease was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(taken.epoch, lease.epoch + 1, "a new holder, a new epoch");
    new.set_fencing(Fencing::Leader(taken));
    match old.record_ledger(&[entry("after-the-lease")]).await {
        Err(StoreError::Fenced { .. }) => {}
        other => panic!("a stale leader's write must be refused: {other:?}"),
    }
    let now = jiff::Timestamp::UNIX_EPOCH;
    let audit = old.append_leader_audit(now, "policy", "revision.applied", serde_json::json!({})).await;
    assert!(matches!(audit, Err(StoreError::Fenced { .. })), "{audit:?}");
    let trend = old.set_leader_state("trend", &vec![1, 2, 3]).await;
    assert!(matches!(trend, Err(StoreError::Fenced { .. })), "{trend:?}");
    assert_eq!(old.audit_len().await.unwrap(), 0, "nothing of the stale leader's is in the log");
    new.record_ledger(&[entry("the-new-leader")]).await.unwrap();
    let ledger = new.ledger().await.unwrap();
    let rules: Vec<String> = ledger.entries().map(|e| e.rule).collect();
    assert!(rules.contains(&"while-leading".to_owned()) && rules.contains(&"the-new-leader".to_owned()));
    assert!(!rules.contains(&"after-the-lease".to_owned()), "{rules:?}");
    // A follower makes no leader write at all.
    old.set_fencing(Fencing::Follower);
    assert!(matches!(old.record_ledger(&[entry("follower")]).await, Err(StoreError::Fenced { .. })));
}

/// Signs in to the console at `base` with `token`: the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> String {
    let reply = http
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 303, "signed in");
    let cookie = reply.headers().get("set-cookie").unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The page at `path` as the console shows it to `cookie`: its status.
async fn console_page(http: &reqwest::Client, base: &str, path: &str, cookie: &str) -> (u16, String) {
    let reply = http.get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// A console session lives in the store: opened at one replica, it is
/// good at the other, and signing out at either ends it at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_is_known_to_every_replica_and_ends_everywhere() {
    let pg = Postgres::start();
    let url = pg.database("sessions");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("policies");
    policy_repository(&repo);
    let (a, a_client, admin) = replica(dir.path(), "a", &repo, &url).await;
    leads(&a_client, &admin, true).await;
    let (b, b_client, _) = replica(dir.path(), "b", &repo, &url).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = sign_in(&http, &a_client.base, &admin).await;
    let (status, page) = console_page(&http, &b_client.base, "/console/status", &cookie).await;
    assert_eq!(status, 200, "the session opened at A is good at B: {page}");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with the session's CSRF token") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];
    let out = http
        .post(format!("{}/signout", b_client.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let (status, _) = console_page(&http, &a_client.base, "/console/status", &cookie).await;
    assert_eq!(status, 303, "signed out at B, the session is gone at A too");
    b.shutdown().await;
    a.shutdown().await;
}

/// Check-ins a replica saw reach the store, so the leader's views show a
/// device that polls another replica as seen; a later time is never
/// moved back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ins_at_one_replica_move_last_seen_for_all() {
    use patchward::store::fleet::EnrollmentToken;
    let pg = Postgres::start();
    let store = Store::connect(&pg.database("check_ins")).await.unwrap();
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let enrolled = at("2026-12-05T10:00:00Z");
    let token = EnrollmentToken { uses_left: 1, expires_at: None, created_at: enrolled };
    store.create_enrollment_token("t", &token).await.unwrap();
    let facts = patchward_api::Facts { hostname: Some("ws-1".into()), ..Default::default() };
    store.enroll("t", "ws-1", "cred-1", facts, enrolled).await.unwrap();
    let later = at("2026-12-05T10:05:00.5Z");
    store.record_check_ins(&[("ws-1".into(), later), ("not-enrolled".into(), later)]).await.unwrap();
    assert_eq!(store.device("ws-1").await.unwrap().unwrap().last_seen, later);
    store.record_check_ins(&[("ws-1".into(), at("2026-12-05T10:05:00Z"))]).await.unwrap();
    assert_eq!(store.device("ws-1").await.unwrap().unwrap().last_seen, later, "never moved back");
}
