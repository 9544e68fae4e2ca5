//! Downloads against real HTTP servers on 127.0.0.1:0 (T17, T18, T20, T21).

mod support;

use std::time::Duration;

use patchward_agent::cache::{Cache, Sha256Digest};
use patchward_agent::download::{Bearer, DownloadError, Downloader, Failure, Limits, MinRate, Source, sources_for};
use support::http::{Body, Reply, Server};

/// Deterministic, incompressible-looking bytes.
fn package(len: usize) -> Vec<u8> {
    let mut state = 0x9e3779b97f4a7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Limits for tests that should not time out: generous but finite, so a
/// bug hangs for seconds, not forever.
fn limits() -> Limits {
    Limits { stall_timeout: Duration::from_secs(10), total_timeout: Some(Duration::from_secs(30)), ..Limits::default() }
}

/// Tiny timeouts for the tests that must be cut.
fn impatient() -> Limits {
    Limits { stall_timeout: Duration::from_millis(200), ..limits() }
}

struct Setup {
    _state: tempfile::TempDir,
    downloader: Downloader,
    cache: Cache,
}

fn setup() -> Setup {
    let state = tempfile::tempdir().unwrap();
    let cache = Cache::open(state.path()).unwrap();
    let downloader = Downloader::new(cache.clone()).unwrap();
    Setup { _state: state, downloader, cache }
}

fn only_failure(error: &DownloadError) -> &Failure {
    match error.failures() {
        [one] => &one.failure,
        other => panic!("expected exactly one source failure, got {other:?} ({error})"),
    }
}

fn assert_nothing_cached(cache: &Cache, digest: &Sha256Digest) {
    assert!(!cache.blob_path(digest).exists(), "no blob may appear");
    assert!(!cache.partial_path(digest).exists(), "the partial file must be deleted");
}

#[tokio::test]
async fn correct_bytes_land_in_the_cache_under_their_digest() {
    let bytes = package(100_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let mirror = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let s = setup();

    let sources = [Source::mirror(&mirror.url("/blobs"), &digest)];
    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();

    assert_eq!(blob.path(), s.cache.blob_path(&digest));
    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert!(!s.cache.partial_path(&digest).exists());
    let requests = mirror.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, format!("/blobs/{digest}"));
    assert_eq!(requests[0].accept_encoding.as_deref(), Some("identity"), "no compression: we hash the vendor's bytes");
    assert_eq!(requests[0].authorization, None, "a mirror never sees the device's credential");
    assert_eq!(requests[0].range, None);

    // A second fetch is served from the cache without a request.
    let again = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();
    assert_eq!(again, blob);
    assert_eq!(mirror.requests().len(), 1);
}

#[tokio::test]
async fn tampered_bytes_are_deleted_and_both_digests_reported() {
    let bytes = package(50_000);
    let digest = Sha256Digest::of(&bytes);
    let mut tampered = bytes.clone();
    tampered[25_000] ^= 0xff;
    let tampered_digest = Sha256Digest::of(&tampered);
    let mirror = Server::start(move |req, _| Reply::ranged(&tampered, req)).await;
    let s = setup();

    let sources = [Source::mirror(&mirror.base(), &digest)];
    let error = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap_err();

    assert_eq!(
        only_failure(&error),
        &Failure::HashMismatch { expected: digest.to_hex(), actual: tampered_digest.to_hex() }
    );
    let message = error.to_string();
    assert!(message.contains(&digest.to_hex()) && message.contains(&tampered_digest.to_hex()), "{message}");
    assert!(message.contains(&mirror.url(&format!("/{digest}"))), "the error names the URL: {message}");
    assert_nothing_cached(&s.cache, &digest);
}

#[tokio::test]
async fn a_tampering_mirror_falls_through_to_the_next_source() {
    let bytes = package(20_000);
    let digest = Sha256Digest::of(&bytes);
    let mut tampered = bytes.clone();
    tampered[0] ^= 1;
    let bad = Server::start(move |req, _| Reply::ranged(&tampered, req)).await;
    let served = bytes.clone();
    let good = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let s = setup();

    let sources = [Source::mirror(&bad.base(), &digest), Source::mirror(&good.base(), &digest)];
    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();

    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert_eq!(good.requests()[0].range, None, "the wrong bytes were not kept to resume from");
}

#[tokio::test]
async fn a_truncated_body_is_refused_and_deleted() {
    let bytes = package(10_000);
    let digest = Sha256Digest::of(&bytes);
    let short = bytes[..6_000].to_vec();
    let short_digest = Sha256Digest::of(&short);
    let mirror = Server::start(move |_, _| Reply::new(200, Body::Chunked(short.clone()))).await;
    let s = setup();

    let error = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap_err();

    assert_eq!(
        only_failure(&error),
        &Failure::TooShort {
            declared: 10_000,
            received: 6_000,
            expected: digest.to_hex(),
            actual: short_digest.to_hex()
        }
    );
    assert_nothing_cached(&s.cache, &digest);
}

#[tokio::test]
async fn an_endless_body_is_cut_one_byte_past_the_declared_size() {
    let declared = 30_000u64;
    let digest = Sha256Digest::of(b"whatever");
    let mirror = Server::start(|_, _| Reply::new(200, Body::Endless)).await;
    let s = setup();

    let error =
        s.downloader.fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, declared, &limits()).await.unwrap_err();

    let expected_actual = Sha256Digest::of(&vec![b'x'; declared as usize + 1]).to_hex();
    assert_eq!(
        only_failure(&error),
        &Failure::TooLarge { declared, received: declared + 1, expected: digest.to_hex(), actual: expected_actual }
    );
    assert_nothing_cached(&s.cache, &digest);
}

#[tokio::test]
async fn a_lying_content_length_is_refused_before_the_body_is_read() {
    let bytes = package(5_000);
    let digest = Sha256Digest::of(&bytes);
    for claimed in [5_001u64, 4_999, 1 << 40] {
        let served = bytes.clone();
        let mirror = Server::start(move |_, _| {
            Reply::new(200, Body::ThenHang(served.clone())).header("Content-Length", claimed.to_string())
        })
        .await;
        let s = setup();
        let error = s
            .downloader
            .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &impatient())
            .await
            .unwrap_err();
        assert_eq!(
            only_failure(&error),
            &Failure::ContentLength { content_length: claimed, expected: 5_000, offset: 0, declared: 5_000 },
            "Content-Length {claimed}"
        );
        assert_nothing_cached(&s.cache, &digest);
    }
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_with_a_range_request() {
    let bytes = package(80_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let mirror = Server::start(move |req, index| match index {
        // The first answer promises everything and hangs up after 30,000.
        0 => Reply::new(200, Body::CutAfter { full_len: served.len() as u64, sent: served[..30_000].to_vec() }),
        _ => Reply::ranged(&served, req),
    })
    .await;
    let s = setup();

    let blob = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap();

    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    let requests = mirror.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range_start(), Some(30_000));
}

#[tokio::test]
async fn a_partial_left_by_a_killed_agent_is_resumed_and_its_prefix_hashed() {
    let bytes = package(64_000);
    let digest = Sha256Digest::of(&bytes);
    let s = setup();
    // What a kill -9 leaves: the first 40,000 bytes in `<hex>.partial`.
    std::fs::write(s.cache.partial_path(&digest), &bytes[..40_000]).unwrap();
    let served = bytes.clone();
    let mirror = Server::start(move |req, _| Reply::ranged(&served, req)).await;

    let blob = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap();

    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert_eq!(mirror.requests()[0].range_start(), Some(40_000));
}

#[tokio::test]
async fn a_corrupt_partial_fails_the_hash_and_the_next_attempt_starts_from_zero() {
    let bytes = package(64_000);
    let digest = Sha256Digest::of(&bytes);
    let s = setup();
    std::fs::write(s.cache.partial_path(&digest), vec![0u8; 10_000]).unwrap();
    let served = bytes.clone();
    let mirror = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let sources = [Source::mirror(&mirror.base(), &digest)];

    let error = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap_err();
    assert!(matches!(only_failure(&error), Failure::HashMismatch { .. }), "{error}");
    assert_nothing_cached(&s.cache, &digest);

    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();
    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    let requests = mirror.requests();
    assert_eq!(requests[0].range_start(), Some(10_000));
    assert_eq!(requests[1].range, None);
}

#[tokio::test]
async fn a_server_that_ignores_range_is_read_from_byte_zero() {
    let bytes = package(50_000);
    let digest = Sha256Digest::of(&bytes);
    let s = setup();
    std::fs::write(s.cache.partial_path(&digest), &bytes[..20_000]).unwrap();
    let served = bytes.clone();
    let mirror = Server::start(move |_, _| Reply::new(200, Body::Exact(served.clone()))).await;

    let blob = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap();

    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes, "no prefix duplicated");
    assert_eq!(mirror.requests()[0].range_start(), Some(20_000));
}

#[tokio::test]
async fn a_content_range_that_does_not_answer_the_request_is_refused() {
    let bytes = package(50_000);
    let digest = Sha256Digest::of(&bytes);
    let s = setup();
    std::fs::write(s.cache.partial_path(&digest), &bytes[..20_000]).unwrap();
    let served = bytes.clone();
    // Answers a resume from 20,000 with bytes from 10,000.
    let mirror = Server::start(move |_, _| {
        Reply::new(206, Body::Exact(served[10_000..].to_vec())).header("Content-Range", "bytes 10000-49999/50000")
    })
    .await;

    let error = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap_err();

    assert_eq!(
        only_failure(&error),
        &Failure::ContentRange { header: "bytes 10000-49999/50000".into(), offset: 20_000, declared: 50_000 }
    );
    assert!(!s.cache.blob_path(&digest).exists());
}

#[tokio::test]
async fn a_compressed_answer_is_refused() {
    let bytes = package(1_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let mirror =
        Server::start(move |_, _| Reply::new(200, Body::Exact(served.clone())).header("Content-Encoding", "gzip"))
            .await;
    let s = setup();
    let error = s
        .downloader
        .fetch(&[Source::mirror(&mirror.base(), &digest)], &digest, bytes.len() as u64, &limits())
        .await
        .unwrap_err();
    assert_eq!(only_failure(&error), &Failure::Encoding { encoding: "gzip".into() });
}

#[tokio::test]
async fn a_stalled_transfer_is_cut_and_the_next_source_resumes_it() {
    let bytes = package(40_000);
    let digest = Sha256Digest::of(&bytes);
    let head = bytes[..15_000].to_vec();
    let stalling =
        Server::start(move |_, _| Reply::new(200, Body::ThenHang(head.clone())).header("Content-Length", "40000"))
            .await;
    let served = bytes.clone();
    let good = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let s = setup();

    // Alone, the stalling mirror is cut by the stall timeout.
    let error = s
        .downloader
        .fetch(&[Source::mirror(&stalling.base(), &digest)], &digest, bytes.len() as u64, &impatient())
        .await
        .unwrap_err();
    assert_eq!(
        only_failure(&error),
        &Failure::Stalled { after: Duration::from_millis(200), received: 15_000, declared: 40_000 }
    );
    assert!(s.cache.partial_path(&digest).exists(), "what arrived is kept for a resume");

    let sources = [Source::mirror(&stalling.base(), &digest), Source::mirror(&good.base(), &digest)];
    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &impatient()).await.unwrap();
    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert_eq!(good.requests()[0].range_start(), Some(15_000), "the next mirror resumes the content-addressed partial");
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_by_the_stall_timeout() {
    let digest = Sha256Digest::of(b"x");
    let silent = Server::start(|_, _| Reply::new(200, Body::Silence)).await;
    let s = setup();
    let error =
        s.downloader.fetch(&[Source::mirror(&silent.base(), &digest)], &digest, 1, &impatient()).await.unwrap_err();
    assert_eq!(only_failure(&error), &Failure::Stalled { after: Duration::from_millis(200), received: 0, declared: 1 });
}

#[tokio::test]
async fn a_trickle_below_the_minimum_rate_is_cut() {
    let bytes = package(100_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    // 100 bytes every 5 ms: ~20 KB/s, far below the 10 MB/s asked for.
    let slow = Server::start(move |_, _| {
        Reply::new(200, Body::Trickle { total: served.clone(), chunk: 100, every: Duration::from_millis(5) })
    })
    .await;
    let s = setup();
    let limits = Limits {
        min_rate: Some(MinRate { bytes_per_second: 10_000_000, window: Duration::from_millis(100) }),
        // Not a stall test: a loaded machine may pause the trickle.
        ..limits()
    };
    let error = s
        .downloader
        .fetch(&[Source::mirror(&slow.base(), &digest)], &digest, bytes.len() as u64, &limits)
        .await
        .unwrap_err();
    assert!(matches!(only_failure(&error), Failure::TooSlow { min_bytes_per_second: 10_000_000, .. }), "{error}");
    assert!(!s.cache.blob_path(&digest).exists());
}

#[tokio::test]
async fn the_total_timeout_cuts_a_transfer_that_keeps_trickling() {
    let bytes = package(100_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let slow = Server::start(move |_, _| {
        Reply::new(200, Body::Trickle { total: served.clone(), chunk: 100, every: Duration::from_millis(5) })
    })
    .await;
    let s = setup();
    let limits = Limits { min_rate: None, total_timeout: Some(Duration::from_millis(150)), ..limits() };
    let error = s
        .downloader
        .fetch(&[Source::mirror(&slow.base(), &digest)], &digest, bytes.len() as u64, &limits)
        .await
        .unwrap_err();
    match only_failure(&error) {
        Failure::TimedOut { after, received, declared } => {
            assert_eq!(*after, Duration::from_millis(150));
            assert!(*received < *declared);
        }
        other => panic!("expected a total timeout, got {other}"),
    }
}

#[tokio::test]
async fn a_missing_blob_on_the_first_mirror_is_fetched_from_the_next() {
    let bytes = package(3_000);
    let digest = Sha256Digest::of(&bytes);
    let empty = Server::start(|_, _| Reply::status(404)).await;
    let served = bytes.clone();
    let full = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let s = setup();

    let sources = [Source::mirror(&empty.base(), &digest), Source::mirror(&full.base(), &digest)];
    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();
    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert_eq!(empty.requests().len(), 1);
    assert_eq!(full.requests().len(), 1);
}

#[tokio::test]
async fn when_every_source_fails_each_is_named_with_its_reason() {
    let digest = Sha256Digest::of(b"nothing");
    let first = Server::start(|_, _| Reply::status(404)).await;
    let second = Server::start(|_, _| Reply::status(503)).await;
    let s = setup();
    let sources = [Source::mirror(&first.base(), &digest), Source::mirror(&second.base(), &digest)];
    let error = s.downloader.fetch(&sources, &digest, 7, &limits()).await.unwrap_err();
    let failures = error.failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].url, first.url(&format!("/{digest}")));
    assert_eq!(failures[0].failure, Failure::Status { status: 404 });
    assert_eq!(failures[1].url, second.url(&format!("/{digest}")));
    assert_eq!(failures[1].failure, Failure::Status { status: 503 });
    let message = error.to_string();
    assert!(message.contains("HTTP 404") && message.contains("HTTP 503"), "{message}");

    // A closed port: the request fails, named.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = s
        .downloader
        .fetch(&[Source::mirror(&format!("http://{closed}"), &digest)], &digest, 7, &limits())
        .await
        .unwrap_err();
    assert!(matches!(only_failure(&error), Failure::Transport { .. }), "{error}");
    assert!(error.to_string().contains(&closed.to_string()), "{error}");
}

#[tokio::test]
async fn the_engine_route_carries_the_bearer_and_no_error_shows_it() {
    let bytes = package(4_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let engine = Server::start(move |req, _| {
        if req.authorization.as_deref() != Some("Bearer device-secret") {
            return Reply::status(401);
        }
        if !req.path.starts_with("/api/v1/blobs/") {
            return Reply::status(404);
        }
        Reply::ranged(&served, req)
    })
    .await;
    let mirror = Server::start(|_, _| Reply::status(404)).await;
    let s = setup();

    let sources =
        sources_for(&[mirror.base()], &engine.base(), &Bearer::new(&"device-secret".to_owned().into()), &digest);
    assert_eq!(sources[0], Source::mirror(&mirror.base(), &digest));
    let blob = s.downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap();
    assert_eq!(std::fs::read(blob.path()).unwrap(), bytes);
    assert_eq!(engine.requests()[0].path, format!("/api/v1/blobs/{digest}"));
    assert_eq!(mirror.requests()[0].authorization, None);

    let other = package(10);
    let other_digest = Sha256Digest::of(&other);
    let wrong = [Source::engine(&engine.base(), &other_digest, Bearer::new(&"stolen-secret".to_owned().into()))];
    let error = s.downloader.fetch(&wrong, &other_digest, 10, &limits()).await.unwrap_err();
    assert_eq!(only_failure(&error), &Failure::Status { status: 401 });
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("stolen-secret"), "{shown}");
}

#[tokio::test]
async fn user_info_and_query_never_appear_in_errors() {
    let digest = Sha256Digest::of(b"x");
    let mirror = Server::start(|_, _| Reply::status(403)).await;
    let s = setup();
    let url = format!("http://admin:hunter2@{}/{digest}?sig=topsecret", mirror.addr);
    let error = s.downloader.fetch(&[Source::new(url, None)], &digest, 1, &limits()).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("topsecret"), "{shown}");
    assert!(shown.contains(&mirror.addr.to_string()), "{shown}");
}

/// A tiny tmpfs, mounted for the test and unmounted after it.
struct TinyTmpfs {
    dir: tempfile::TempDir,
}

impl TinyTmpfs {
    fn mount(size: &str) -> TinyTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        // Fail loudly: T17 needs a real full disk, which needs a mount (root).
        assert!(status.success(), "mounting a tmpfs for the disk-full test failed (it needs root / CAP_SYS_ADMIN)");
        TinyTmpfs { dir }
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_leaves_no_partial_file() {
    let disk = TinyTmpfs::mount("128k");
    let cache = Cache::open(disk.dir.path()).unwrap();
    let downloader = Downloader::new(cache.clone()).unwrap();
    let bytes = package(1_000_000);
    let digest = Sha256Digest::of(&bytes);
    let served = bytes.clone();
    let mirror = Server::start(move |req, _| Reply::ranged(&served, req)).await;
    let second = Server::start(|_, _| Reply::status(500)).await;

    let sources = [Source::mirror(&mirror.base(), &digest), Source::mirror(&second.base(), &digest)];
    let error = downloader.fetch(&sources, &digest, bytes.len() as u64, &limits()).await.unwrap_err();

    let DownloadError::Storage { source, url, .. } = &error else { panic!("expected a storage error, got {error}") };
    assert!(source.is_disk_full(), "{error}");
    assert_eq!(source.path(), cache.partial_path(&digest));
    assert_eq!(url, &mirror.url(&format!("/{digest}")));
    let message = error.to_string();
    assert!(message.contains("no space left on device"), "{message}");
    assert!(message.contains(&cache.partial_path(&digest).display().to_string()), "{message}");
    assert_nothing_cached(&cache, &digest);
    assert!(second.requests().is_empty(), "a local failure is not retried from another source");
}

#[tokio::test]
async fn an_interruption_at_any_point_resumes_after_a_restart_to_the_exact_bytes() {
    let bytes = package(70_001);
    let digest = Sha256Digest::of(&bytes);
    for cut in [1usize, 4_095, 4_096, 35_000, 69_999, 70_000] {
        let served = bytes.clone();
        let mirror = Server::start(move |req, index| match index {
            0 => Reply::new(200, Body::CutAfter { full_len: served.len() as u64, sent: served[..cut].to_vec() }),
            _ => Reply::ranged(&served, req),
        })
        .await;
        let state = tempfile::tempdir().unwrap();
        let sources = [Source::mirror(&mirror.base(), &digest)];
        let no_resume = Limits { max_resumes: 0, ..limits() };

        // The first process gives up at the interruption, keeping the prefix…
        let first = Downloader::new(Cache::open(state.path()).unwrap()).unwrap();
        let error = first.fetch(&sources, &digest, bytes.len() as u64, &no_resume).await.unwrap_err();
        assert!(
            matches!(only_failure(&error), Failure::Interrupted { received, .. } if *received == cut as u64),
            "cut at {cut}: {error}"
        );
        drop(first);

        // …and the next one (a restart) resumes from it.
        let cache = Cache::open(state.path()).unwrap();
        let second = Downloader::new(cache.clone()).unwrap();
        let blob = second.fetch(&sources, &digest, bytes.len() as u64, &no_resume).await.unwrap();
        assert_eq!(std::fs::read(blob.path()).unwrap(), bytes, "cut at {cut}");
        assert_eq!(mirror.requests()[1].range_start(), Some(cut as u64), "cut at {cut}");
        assert!(!cache.partial_path(&digest).exists());
    }
}
