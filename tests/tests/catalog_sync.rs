//! `patchward catalog sync` against real HTTP servers on 127.0.0.1: a good
//! one (with ETag and 304), and hostile ones that tamper with the feed,
//! send endless or lying bodies, or never answer (T9–T11). Whatever the
//! server does, a failed sync leaves the catalog exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use patchward::catalog::fetch::{self, FetchError, FetchLimits, Fetched, Sleeper, Validators};
use patchward_tests::{HttpServer, Reply, patchward};

fn feed(revision: u64, ids: &[&str]) -> Vec<u8> {
    let patches: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "title": id, "vendor": "Example", "product": "Example OS",
                "category": "security", "severity": "critical", "released": "2026-01-01T00:00:00Z"})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"revision": revision, "generatedAt": "2026-01-01T00:00:00Z",
        "expiresAt": "2099-01-01T00:00:00Z", "patches": patches}))
    .unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn sign(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.encode(key().sign(bytes).to_bytes()).into_bytes()
}

/// A policy folder with one CatalogSource at `url`.
fn policy(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let public_key = base64::engine::general_purpose::STANDARD.encode(key().verifying_key().to_bytes());
    std::fs::write(
        policies.join("catalog.yaml"),
        format!(
            "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: vendor}}\nspec:\n  url: \"{url}\"\n  publicKey: \"ed25519:{public_key}\"\n  retries: 0\n  timeout: 2s\n{extra}"
        ),
    )
    .unwrap();
    policies
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn catalog(args: &[&str], data: &Path, policies: &Path) -> Run {
    let output =
        patchward().arg("catalog").args(args).arg("--data").arg(data).arg("--policies").arg(policies).output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn listing(data: &Path, policies: &Path) -> String {
    let run = catalog(&["list", "--format", "json"], data, policies);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.stdout
}

/// Serves revision 1 with its signature and an ETag; `after` decides what
/// the feed URL does from the second request on.
fn server(after: impl Fn(&patchward_tests::Request) -> Reply + Send + Sync + 'static) -> HttpServer {
    let first = feed(1, &["A", "B"]);
    let signature = sign(&first);
    let feed_requests = AtomicUsize::new(0);
    HttpServer::start(move |request| match request.path.as_str() {
        "/feed.json.sig" => Reply::ok(signature.clone()),
        "/feed.json" if feed_requests.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::Full { status: 200, headers: vec![("etag".into(), "\"rev-1\"".into())], body: first.clone() }
        }
        "/feed.json" => after(request),
        _ => Reply::status(404),
    })
}

#[test]
fn a_good_server_syncs_once_then_answers_304_to_the_etag() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(|request| {
        if request.header("if-none-match") == Some("\"rev-1\"") { Reply::status(304) } else { Reply::status(500) }
    });
    let policies = policy(dir.path(), &server.url("/feed.json"), "");
    let data = dir.path().join("data");
    let first = catalog(&["sync"], &data, &policies);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(first.stdout.contains("vendor: imported revision 1: 2 patches"), "{}", first.stdout);
    let second = catalog(&["sync"], &data, &policies);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(second.stdout.contains("vendor: not modified"), "{}", second.stdout);
    let feed_requests: Vec<_> = server.requests().into_iter().filter(|r| r.path == "/feed.json").collect();
    assert_eq!(feed_requests[1].header("if-none-match"), Some("\"rev-1\""));
    assert!(listing(&data, &policies).contains("\"id\": \"B\""));
}

/// Syncs revision 1, then syncs again against a server that misbehaves, and
/// checks the second sync fails with `reason` and changes nothing.
fn second_sync_fails(
    after: impl Fn(&patchward_tests::Request) -> Reply + Send + Sync + 'static,
    extra: &str,
    reason: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = server(after);
    let policies = policy(dir.path(), &server.url("/feed.json"), extra);
    let data = dir.path().join("data");
    assert_eq!(catalog(&["sync"], &data, &policies).code, Some(0));
    let before = listing(&data, &policies);
    let run = catalog(&["sync"], &data, &policies);
    assert_eq!(run.code, Some(1), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stderr.contains(reason), "expected `{reason}` in:\n{}", run.stderr);
    assert!(run.stderr.contains("the catalog is unchanged"), "{}", run.stderr);
    assert_eq!(listing(&data, &policies), before, "a failed sync changed the catalog");
}

#[test]
fn a_tampered_feed_is_refused() {
    // Revision 2's bytes with revision 1's signature.
    let tampered = feed(2, &["A", "B", "EVIL"]);
    second_sync_fails(move |_| Reply::ok(tampered.clone()), "", "signature does not verify");
}

#[test]
fn a_rolled_back_feed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let newer = feed(3, &["A"]);
    let older = feed(2, &["A", "OLD"]);
    let serving = Arc::new(Mutex::new(newer.clone()));
    let now_serving = serving.clone();
    let server = HttpServer::start(move |request| {
        let body = now_serving.lock().unwrap().clone();
        match request.path.as_str() {
            "/feed.json" => Reply::ok(body),
            "/feed.json.sig" => Reply::ok(sign(&body)),
            _ => Reply::status(404),
        }
    });
    let policies = policy(dir.path(), &server.url("/feed.json"), "");
    let data = dir.path().join("data");
    assert_eq!(catalog(&["sync"], &data, &policies).code, Some(0));
    let before = listing(&data, &policies);
    *serving.lock().unwrap() = older;
    let run = catalog(&["sync"], &data, &policies);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("rollback: the feed's revision 2 is lower than revision 3 in force"), "{}", run.stderr);
    assert_eq!(listing(&data, &policies), before);
}

#[test]
fn a_pinned_digest_catches_a_swapped_feed() {
    // The source pins revision 1's bytes; the server swaps in others.
    let pinned = patchward::catalog::sha256_hex(&feed(1, &["A", "B"]));
    second_sync_fails(|_| Reply::ok(feed(2, &["A"])), &format!("  sha256: \"{pinned}\"\n"), "sha256 mismatch");
}

#[test]
fn an_endless_body_is_cut_at_the_byte_limit() {
    second_sync_fails(|_| Reply::Endless, "  maxBytes: 200000\n", "more than 200000 bytes");
}

#[test]
fn a_lying_content_length_is_refused_before_reading() {
    second_sync_fails(|_| Reply::LyingLength { declared: 10 << 30 }, "  maxBytes: 200000\n", "more than 200000 bytes");
}

#[test]
fn a_silent_server_is_cut_by_the_total_timeout() {
    second_sync_fails(|_| Reply::Silent, "", "no complete answer within 2s");
}

#[test]
fn a_server_that_stalls_mid_body_is_cut_by_the_total_timeout() {
    second_sync_fails(
        |_| Reply::Stall { declared: 5000, sent: b"{\"revision\": 2, ".to_vec() },
        "",
        "no complete answer within 2s",
    );
}

#[test]
fn a_server_error_fails_the_sync_and_keeps_the_catalog() {
    second_sync_fails(|_| Reply::status(503), "", "HTTP 503");
}

/// Records the backoff instead of waiting it out.
#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

#[test]
fn transient_failures_are_retried_with_exponential_backoff() {
    let attempts = AtomicUsize::new(0);
    let server = HttpServer::start(move |_| {
        if attempts.fetch_add(1, Ordering::SeqCst) < 2 { Reply::status(503) } else { Reply::ok(b"payload".to_vec()) }
    });
    let limits = FetchLimits { retries: 3, backoff: Duration::from_secs(2), ..FetchLimits::default() };
    let sleeper = RecordingSleeper::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = fetch::client(&limits).unwrap();
    let url = server.url("/feed.json");
    let fetched = runtime.block_on(fetch::fetch(&client, &url, &Validators::default(), &limits, &sleeper, &|_, _| {}));
    assert!(matches!(fetched, Ok(Fetched::Body { ref bytes, .. }) if bytes == b"payload"), "{fetched:?}");
    assert_eq!(*sleeper.0.lock().unwrap(), [Duration::from_secs(2), Duration::from_secs(4)]);
    assert_eq!(server.requests().len(), 3);

    // A client error is not retried.
    let server = HttpServer::start(|_| Reply::status(404));
    let sleeper = RecordingSleeper::default();
    let url = server.url("/feed.json");
    let fetched = runtime.block_on(fetch::fetch(&client, &url, &Validators::default(), &limits, &sleeper, &|_, _| {}));
    assert!(matches!(fetched, Err(FetchError::Status { status: 404, .. })));
    assert!(sleeper.0.lock().unwrap().is_empty());
}

#[test]
fn file_urls_sync_too() {
    let dir = tempfile::tempdir().unwrap();
    let feed_path = dir.path().join("feed.json");
    let bytes = feed(1, &["A"]);
    std::fs::write(&feed_path, &bytes).unwrap();
    std::fs::write(dir.path().join("feed.json.sig"), sign(&bytes)).unwrap();
    let url = format!("file://{}", feed_path.display());
    let policies = policy(dir.path(), &url, "");
    let data = dir.path().join("data");
    let run = catalog(&["sync"], &data, &policies);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(listing(&data, &policies).contains("\"id\": \"A\""));
}

#[test]
fn a_transfer_below_the_minimum_rate_is_aborted() {
    let server = HttpServer::start(|_| Reply::Stall { declared: 100_000, sent: vec![b'{'; 10] });
    let limits = FetchLimits {
        rate_window: Duration::from_millis(300),
        min_bytes_per_second: 1_000,
        total_timeout: Duration::from_secs(30),
        retries: 0,
        ..FetchLimits::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = fetch::client(&limits).unwrap();
    let url = server.url("/feed.json");
    let fetched = runtime.block_on(fetch::fetch(
        &client,
        &url,
        &Validators::default(),
        &limits,
        &RecordingSleeper::default(),
        &|_, _| {},
    ));
    assert!(matches!(fetched, Err(FetchError::TooSlow { min: 1_000, .. })), "{fetched:?}");
}

#[test]
fn list_filters_and_show_read_the_synced_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let sample = patchward_tests::workspace_root().join("examples/feeds/vendor-feed.json");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("catalog.yaml"),
        format!(
            "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: vendor}}\nspec:\n  url: \"file://{}\"\n  coverage: {{categories: [security, firmware]}}\n",
            sample.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    assert_eq!(catalog(&["sync"], &data, &policies).code, Some(0));
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--format", "json"];
        all.extend_from_slice(args);
        let run = catalog(&all, &data, &policies);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        doc["patches"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&["--severity", "critical"]), ["KB5032190"]);
    assert_eq!(ids(&["--category", "firmware"]), ["FW-2026-0042"]);
    assert_eq!(ids(&["--vendor", "debian"]), ["DSA-5900-1"]);
    assert_eq!(ids(&["--superseded"]), ["KB5031455"]);
    assert_eq!(ids(&["--obsolete"]), Vec::<String>::new());
    // The policy's coverage (security and firmware) decides `active`.
    assert_eq!(ids(&["--active"]).len(), 5);
    let show = catalog(&["show", "DSA-5900-1", "--format", "json"], &data, &policies);
    let patch: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        patch["cvss"],
        serde_json::json!({"vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", "score": 7.4})
    );
    assert_eq!(patch["severity"], "high");
    let table = catalog(&["list"], &data, &policies);
    assert!(table.stdout.contains("KB5031455") && table.stdout.contains("superseded"), "{}", table.stdout);
    let status = catalog(&["status", "--format", "json"], &data, &policies);
    assert_eq!(status.code, Some(0));
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["sources"][0]["revision"], 7);
    assert_eq!(status["sources"][0]["fresh"], true);
    let missing = catalog(&["show", "NOPE"], &data, &policies);
    assert_eq!(missing.code, Some(2));
}

#[test]
fn an_oversized_file_feed_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let feed_path = dir.path().join("feed.json");
    std::fs::write(&feed_path, feed(1, &["A", "B", "C", "D"])).unwrap();
    let url = format!("file://{}", feed_path.display());
    let policies = policy(dir.path(), &url, "  maxBytes: 100\n");
    let run = catalog(&["sync"], &dir.path().join("data"), &policies);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("more than 100 bytes"), "{}", run.stderr);
}
