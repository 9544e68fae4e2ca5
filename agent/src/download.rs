//! Package downloads into the content-addressed cache.
//!
//! [`Downloader::fetch`] tries its sources in order — the device's Location
//! mirrors (`MIRROR/{sha256}`), then the engine (`/api/v1/blobs/{sha256}`,
//! with the device's bearer credential) — and returns a [`CachedBlob`] only
//! when exactly the declared number of bytes arrived and they hash to the
//! expected digest.
//!
//! Architecture invariants:
//! - every untrusted response is bounded (G5): never more than the declared
//!   size is read (the read stops at size + 1), and a transfer ends when no
//!   byte arrives for `stall_timeout`, when it is slower than `min_rate`, or
//!   at `total_timeout`;
//! - the sha256 streams with the download; a resumed download hashes the
//!   prefix already on disk first, so every byte of the blob is hashed;
//! - an interruption (a dropped connection) keeps `<hex>.partial` and the
//!   next request asks for `Range: bytes=N-` — from the same source or the
//!   next one, since the bytes are content-addressed;
//! - wrong, truncated or extra bytes delete the partial file (T18, T20), a
//!   full disk deletes it too and aborts (T17);
//! - a credential never appears in an error or a log: errors name the URL
//!   without its user-info or query.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::cache::{Cache, CacheError, CachedBlob, PartialFile, Sha256Digest};
use patchward_api::logging::Secret;

/// A credential sent as `Authorization: Bearer …`: a [`Secret`], so its
/// Debug and Display never show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer(Secret);

impl Bearer {
    pub fn new(credential: &Secret) -> Bearer {
        Bearer(credential.clone())
    }
    fn header_value(&self) -> String {
        format!("Bearer {}", self.0.expose())
    }
}

/// One place to download a blob from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    url: String,
    bearer: Option<Bearer>,
}

impl Source {
    pub fn new(url: impl Into<String>, bearer: Option<Bearer>) -> Source {
        Source { url: url.into(), bearer }
    }

    /// A Location mirror: the blob at `MIRROR/{sha256}`, no credential.
    pub fn mirror(base: &str, digest: &Sha256Digest) -> Source {
        Source::new(format!("{}/{digest}", base.trim_end_matches('/')), None)
    }

    /// The engine's blob route, `SERVER/api/v1/blobs/{sha256}`, with the
    /// device's credential.
    pub fn engine(server: &str, digest: &Sha256Digest, credential: Bearer) -> Source {
        Source::new(format!("{}/api/v1/blobs/{digest}", server.trim_end_matches('/')), Some(credential))
    }

    /// The URL as errors show it: without user-info or query.
    pub fn display_url(&self) -> String {
        display_url(&self.url)
    }
}

/// The device's mirrors in their order, then the engine.
pub fn sources_for(mirrors: &[String], server: &str, credential: &Bearer, digest: &Sha256Digest) -> Vec<Source> {
    let mut sources: Vec<Source> = mirrors.iter().map(|m| Source::mirror(m, digest)).collect();
    sources.push(Source::engine(server, digest, credential.clone()));
    sources
}

/// `url` without a password, user name or query string (which may carry a
/// signed token), for messages.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let had_query = parsed.query().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            if had_query { format!("{parsed}?…") } else { parsed.to_string() }
        }
        // Not a URL: say so without echoing what might be a secret.
        Err(e) => format!("<unparseable URL: {e}>"),
    }
}

/// A minimum transfer rate, averaged over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

/// The bounds of one download. Every number here is a per-source limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The Location's `maxBandwidthKbps` (1 kbps = 1000 bit/s = 125 B/s).
    /// `None` or 0: unlimited. Default: `None`.
    pub max_bandwidth_kbps: Option<u64>,
    /// No byte (nor the response headers, nor the connection) for this long
    /// ends the transfer. Default: 60 s.
    pub stall_timeout: Duration,
    /// Slower than this ends the transfer. With a bandwidth cap it is
    /// lowered to half the cap, so the pacer never trips it. Default: 1 KiB/s
    /// over 2 minutes.
    pub min_rate: Option<MinRate>,
    /// The whole transfer from one source. Default: 6 h (a multi-GiB update
    /// over a capped link).
    pub total_timeout: Option<Duration>,
    /// How often one source may drop the connection mid-body and be resumed
    /// before the next source is tried. Default: 3.
    pub max_resumes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bandwidth_kbps: None,
            stall_timeout: Duration::from_secs(60),
            min_rate: Some(MinRate { bytes_per_second: 1024, window: Duration::from_secs(120) }),
            total_timeout: Some(Duration::from_secs(6 * 3600)),
            max_resumes: 3,
        }
    }
}

impl Limits {
    fn effective_min_rate(&self) -> Option<MinRate> {
        let min = self.min_rate?;
        match self.max_bandwidth_kbps.filter(|k| *k > 0) {
            Some(kbps) => Some(MinRate { bytes_per_second: min.bytes_per_second.min(kbps * 125 / 2), ..min }),
            None => Some(min),
        }
    }
}

/// Paces a transfer to a byte rate. It computes delays from byte counts and
/// the instants it is given, so its timing is tested without sleeping.
///
/// It keeps a virtual "next free" instant: every chunk moves it by
/// `len / rate`; idle time earns at most `burst` of credit, so a pause is not
/// followed by an unbounded burst.
#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_second: u64,
    burst: Duration,
    next_free: Option<Instant>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64, burst: Duration) -> Pacer {
        Pacer { bytes_per_second: bytes_per_second.max(1), burst, next_free: None }
    }

    /// The pacer for `maxBandwidthKbps`; `None` when unlimited.
    pub fn from_kbps(kbps: Option<u64>) -> Option<Pacer> {
        kbps.filter(|k| *k > 0).map(|k| Pacer::new(k * 125, Duration::from_millis(250)))
    }

    /// After `bytes` arrived at `now`: how long to wait before reading on.
    pub fn delay_after(&mut self, now: Instant, bytes: u64) -> Duration {
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let start = match self.next_free {
            Some(next) if next > earliest => next,
            _ => earliest,
        };
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let next = start + cost;
        self.next_free = Some(next);
        next.saturating_duration_since(now)
    }
}

/// Watches the average rate over consecutive windows.
#[derive(Debug, Clone)]
pub struct RateWatch {
    min: MinRate,
    window_start: Instant,
    bytes_in_window: u64,
}

impl RateWatch {
    pub fn new(min: MinRate, now: Instant) -> RateWatch {
        RateWatch { min, window_start: now, bytes_in_window: 0 }
    }

    /// Counts `bytes` that arrived at `now`; `Err((bytes, elapsed))` when a
    /// completed window averaged below the minimum.
    pub fn record(&mut self, now: Instant, bytes: u64) -> Result<(), (u64, Duration)> {
        self.bytes_in_window += bytes;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.min.window {
            return Ok(());
        }
        let floor = (self.min.bytes_per_second as f64 * elapsed.as_secs_f64()) as u64;
        let seen = self.bytes_in_window;
        self.window_start = now;
        self.bytes_in_window = 0;
        if seen < floor { Err((seen, elapsed)) } else { Ok(()) }
    }
}

/// Why one source did not deliver the blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("HTTP {status}")]
    Status { status: u16 },
    #[error("request failed: {reason}")]
    Transport { reason: String },
    #[error("stalled: no bytes for {after:?} (after {received} of {declared} bytes)")]
    Stalled { after: Duration, received: u64, declared: u64 },
    #[error("too slow: {bytes} bytes in {elapsed:?}, below the minimum of {min_bytes_per_second} B/s")]
    TooSlow { bytes: u64, elapsed: Duration, min_bytes_per_second: u64 },
    #[error("timed out: the total timeout of {after:?} passed after {received} of {declared} bytes")]
    TimedOut { after: Duration, received: u64, declared: u64 },
    #[error(
        "more bytes than the declared size of {declared} (expected sha256 {expected}, got {actual} over the first {received} bytes)"
    )]
    TooLarge { declared: u64, received: u64, expected: String, actual: String },
    #[error("body ended after {received} of the declared {declared} bytes (expected sha256 {expected}, got {actual})")]
    TooShort { declared: u64, received: u64, expected: String, actual: String },
    #[error(
        "Content-Length {content_length} is not the {expected} bytes expected from byte {offset} of the declared {declared}"
    )]
    ContentLength { content_length: u64, expected: u64, offset: u64, declared: u64 },
    #[error("Content-Range {header:?} does not answer a request from byte {offset} of the declared {declared}")]
    ContentRange { header: String, offset: u64, declared: u64 },
    #[error("Content-Encoding {encoding:?}: only identity is accepted")]
    Encoding { encoding: String },
    #[error("sha256 mismatch: expected {expected}, actual {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error(
        "the connection dropped {resumes} times; gave up after {received} of {declared} bytes (kept for resuming): {last}"
    )]
    Interrupted { resumes: u32, received: u64, declared: u64, last: String },
}

impl Failure {
    /// (expected, actual) digests, when this failure is about wrong bytes.
    pub fn digests(&self) -> Option<(&str, &str)> {
        match self {
            Failure::HashMismatch { expected, actual }
            | Failure::TooShort { expected, actual, .. }
            | Failure::TooLarge { expected, actual, .. } => Some((expected, actual)),
            _ => None,
        }
    }
}

/// One source's failure, with its URL as it may be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {failure}")]
pub struct SourceFailure {
    pub url: String,
    pub failure: Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("blob {digest}: no source to download it from")]
    NoSources { digest: Sha256Digest },
    #[error("blob {digest}: every source failed: {}", join(failures))]
    AllSourcesFailed { digest: Sha256Digest, failures: Vec<SourceFailure> },
    /// A local failure (disk full, permissions): no other source can help,
    /// so the download stops here, its partial file removed.
    #[error("blob {digest} from {url}: {source}")]
    Storage {
        digest: Sha256Digest,
        url: String,
        #[source]
        source: CacheError,
    },
    #[error("the HTTP client could not be built: {reason}")]
    Client { reason: String },
}

fn join(failures: &[SourceFailure]) -> String {
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl DownloadError {
    pub fn failures(&self) -> &[SourceFailure] {
        match self {
            DownloadError::AllSourcesFailed { failures, .. } => failures,
            _ => &[],
        }
    }
}

/// Downloads blobs into a [`Cache`].
pub struct Downloader {
    client: reqwest::Client,
    cache: Cache,
}

/// What one attempt at one source came to.
enum Attempt {
    Done(CachedBlob),
    /// The connection dropped mid-body; the partial file keeps what came.
    Interrupted(String),
    /// The server answered 416 to our Range: start over from byte 0.
    RangeRefused,
    Failed(Failure),
}

impl Downloader {
    pub fn new(cache: Cache) -> Result<Downloader, DownloadError> {
        // reqwest is built without a default TLS provider; ring is the
        // workspace's. A provider installed earlier (by a test or the binary)
        // is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No decompression: the bytes checked against the sha256 are the
        // bytes sent, and an encoded answer is refused (`Failure::Encoding`).
        let client = reqwest::Client::builder()
            .user_agent(concat!("patchward-agent/", env!("CARGO_PKG_VERSION")))
            .no_gzip()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| DownloadError::Client { reason: e.to_string() })?;
        Ok(Downloader { client, cache })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Downloads the blob of `expected` (`declared_size` bytes) from the
    /// first source that delivers it, resuming a partial download left by an
    /// earlier attempt. A blob already in the cache (and still hashing to its
    /// name) is returned without a request.
    pub async fn fetch(
        &self,
        sources: &[Source],
        expected: &Sha256Digest,
        declared_size: u64,
        limits: &Limits,
    ) -> Result<CachedBlob, DownloadError> {
        let storage = |url: &str| {
            let url = url.to_owned();
            move |source| DownloadError::Storage { digest: *expected, url, source }
        };
        if let Some(blob) = self.cache.verified(expected, declared_size).map_err(storage("cache"))? {
            return Ok(blob);
        }
        if sources.is_empty() {
            return Err(DownloadError::NoSources { digest: *expected });
        }
        let mut failures = Vec::new();
        for source in sources {
            let url = source.display_url();
            match self.fetch_from(source, expected, declared_size, limits).await {
                Ok(blob) => return Ok(blob),
                Err(SourceError::Remote(failure)) => {
                    // An empty partial file is no resume point: leave no
                    // litter for a source that sent nothing usable.
                    let partial = self.cache.partial_path(expected);
                    if std::fs::metadata(&partial).is_ok_and(|m| m.len() == 0) {
                        crate::cache::remove_if_present(&partial).map_err(storage(&url))?;
                    }
                    failures.push(SourceFailure { url, failure });
                }
                Err(SourceError::Local(source)) => {
                    // Never leave a partial file behind a local failure: a
                    // full disk must not stay full because of us (T17).
                    let _ = crate::cache::remove_if_present(&self.cache.partial_path(expected));
                    return Err(DownloadError::Storage { digest: *expected, url, source });
                }
            }
        }
        Err(DownloadError::AllSourcesFailed { digest: *expected, failures })
    }

    async fn fetch_from(
        &self,
        source: &Source,
        expected: &Sha256Digest,
        declared: u64,
        limits: &Limits,
    ) -> Result<CachedBlob, SourceError> {
        let started = tokio::time::Instant::now();
        let deadline = limits.total_timeout.map(|t| started + t);
        let mut resumes = 0u32;
        let mut range_refusals = 0u32;
        loop {
            let mut partial = self.cache.open_partial(expected).await?;
            if partial.len() > declared {
                partial.truncate().await?;
            }
            let attempt = if partial.len() == declared {
                // A complete partial (a crash between the last byte and the
                // rename): no request needed, only the hash.
                finish(partial, expected, declared).await?
            } else {
                self.attempt(source, partial, expected, declared, limits, deadline).await?
            };
            match attempt {
                Attempt::Done(blob) => return Ok(blob),
                Attempt::Failed(failure) => return Err(SourceError::Remote(failure)),
                Attempt::RangeRefused if range_refusals == 0 => {
                    range_refusals += 1;
                    let mut partial = self.cache.open_partial(expected).await?;
                    partial.truncate().await?;
                }
                Attempt::RangeRefused => {
                    return Err(SourceError::Remote(Failure::Status { status: 416 }));
                }
                Attempt::Interrupted(last) => {
                    if resumes >= limits.max_resumes {
                        let received =
                            std::fs::metadata(self.cache.partial_path(expected)).map(|m| m.len()).unwrap_or(0);
                        return Err(SourceError::Remote(Failure::Interrupted { resumes, received, declared, last }));
                    }
                    resumes += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        source: &Source,
        mut partial: PartialFile,
        expected: &Sha256Digest,
        declared: u64,
        limits: &Limits,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Attempt, SourceError> {
        let offset = partial.len();
        let mut request = self.client.get(&source.url).header(header::ACCEPT_ENCODING, "identity");
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        if let Some(bearer) = &source.bearer {
            request = request.header(header::AUTHORIZATION, bearer.header_value());
        }
        let timed_out =
            |received| Failure::TimedOut { after: limits.total_timeout.unwrap_or_default(), received, declared };
        let stalled = |received| Failure::Stalled { after: limits.stall_timeout, received, declared };

        // Connection and response headers: bounded like a body chunk.
        let wait_until = |now: tokio::time::Instant| {
            let stall_at = now + limits.stall_timeout;
            match deadline {
                Some(d) if d < stall_at => (d, true),
                _ => (stall_at, false),
            }
        };
        let (until, is_deadline) = wait_until(tokio::time::Instant::now());
        let mut response = match tokio::time::timeout_at(until, request.send()).await {
            Err(_) if is_deadline => return Ok(Attempt::Failed(timed_out(offset))),
            Err(_) => return Ok(Attempt::Failed(stalled(offset))),
            Ok(Err(e)) => return Ok(Attempt::Failed(Failure::Transport { reason: describe(e) })),
            Ok(Ok(response)) => response,
        };

        let status = response.status();
        if let Some(encoding) = content_encoding(response.headers()) {
            return Ok(Attempt::Failed(Failure::Encoding { encoding }));
        }
        match status {
            StatusCode::OK => {
                if let Some(failure) = check_length(response.headers(), declared, 0, declared) {
                    return Ok(Attempt::Failed(failure));
                }
                // The server ignored our Range (or there was none): the body
                // is the whole blob.
                if offset > 0 {
                    partial.truncate().await?;
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                let header = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                if parse_content_range(&header) != Some((offset, declared.saturating_sub(1), declared)) {
                    return Ok(Attempt::Failed(Failure::ContentRange { header, offset, declared }));
                }
                if let Some(failure) = check_length(response.headers(), declared - offset, offset, declared) {
                    return Ok(Attempt::Failed(failure));
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => return Ok(Attempt::RangeRefused),
            other => return Ok(Attempt::Failed(Failure::Status { status: other.as_u16() })),
        }

        let mut pacer = Pacer::from_kbps(limits.max_bandwidth_kbps);
        let mut rate = limits.effective_min_rate().map(|min| RateWatch::new(min, Instant::now()));
        loop {
            let (until, is_deadline) = wait_until(tokio::time::Instant::now());
            let chunk = match tokio::time::timeout_at(until, response.chunk()).await {
                Err(_) => {
                    partial.sync().await?;
                    let received = partial.len();
                    return Ok(Attempt::Failed(if is_deadline { timed_out(received) } else { stalled(received) }));
                }
                Ok(Err(e)) => {
                    // A dropped connection: keep what arrived for a resume.
                    partial.sync().await?;
                    return Ok(Attempt::Interrupted(describe(e)));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            let room = declared - partial.len();
            if chunk.len() as u64 > room {
                // Stop reading at size + 1: take one byte past the declared
                // size for the report and refuse the rest unread.
                let keep = (room + 1) as usize;
                let mut hasher = partial.hasher_clone();
                sha2::Digest::update(&mut hasher, &chunk[..keep]);
                let actual = Sha256Digest::from_hasher(hasher).to_hex();
                let received = partial.len() + keep as u64;
                partial.discard().await?;
                return Ok(Attempt::Failed(Failure::TooLarge {
                    declared,
                    received,
                    expected: expected.to_hex(),
                    actual,
                }));
            }
            if let Err(e) = partial.append(&chunk).await {
                return Err(SourceError::Local(e));
            }
            let now = Instant::now();
            if let Some(watch) = rate.as_mut()
                && let Err((bytes, elapsed)) = watch.record(now, chunk.len() as u64)
            {
                partial.sync().await?;
                let min_bytes_per_second = watch.min.bytes_per_second;
                return Ok(Attempt::Failed(Failure::TooSlow { bytes, elapsed, min_bytes_per_second }));
            }
            if let Some(pacer) = pacer.as_mut() {
                let delay = pacer.delay_after(now, chunk.len() as u64);
                if !delay.is_zero() {
                    let wake = tokio::time::Instant::now() + delay;
                    if deadline.is_some_and(|d| d < wake) {
                        partial.sync().await?;
                        return Ok(Attempt::Failed(timed_out(partial.len())));
                    }
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
        if partial.len() < declared {
            let received = partial.len();
            let actual = partial.digest_so_far().to_hex();
            partial.discard().await?;
            return Ok(Attempt::Failed(Failure::TooShort { declared, received, expected: expected.to_hex(), actual }));
        }
        finish(partial, expected, declared).await
    }
}

/// All `declared` bytes are in: commit them under their digest, or delete
/// them when they hash to something else.
async fn finish(partial: PartialFile, expected: &Sha256Digest, declared: u64) -> Result<Attempt, SourceError> {
    debug_assert_eq!(partial.len(), declared);
    let actual = partial.digest_so_far();
    if actual != *expected {
        partial.discard().await?;
        return Ok(Attempt::Failed(Failure::HashMismatch { expected: expected.to_hex(), actual: actual.to_hex() }));
    }
    Ok(Attempt::Done(partial.commit(actual).await?))
}

enum SourceError {
    Remote(Failure),
    Local(CacheError),
}

impl From<CacheError> for SourceError {
    fn from(e: CacheError) -> SourceError {
        SourceError::Local(e)
    }
}

/// A reqwest error with its causes, never with the request's headers.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn content_encoding(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_ENCODING)?;
    let text = String::from_utf8_lossy(value.as_bytes()).trim().to_ascii_lowercase();
    (text != "identity" && !text.is_empty()).then_some(text)
}

/// A Content-Length that is not what the declared size implies is a lie we
/// refuse before reading the body.
fn check_length(headers: &HeaderMap, expected: u64, offset: u64, declared: u64) -> Option<Failure> {
    let value = headers.get(header::CONTENT_LENGTH)?;
    let content_length = std::str::from_utf8(value.as_bytes()).ok().and_then(|t| t.trim().parse::<u64>().ok());
    match content_length {
        Some(n) if n == expected => None,
        Some(content_length) => Some(Failure::ContentLength { content_length, expected, offset, declared }),
        None => Some(Failure::ContentLength { content_length: u64::MAX, expected, offset, declared }),
    }
}

/// `bytes START-END/TOTAL` → (start, end, total).
pub fn parse_content_range(header: &str) -> Option<(u64, u64, u64)> {
    let spec = header.trim().strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (start.trim().parse().ok()?, end.trim().parse().ok()?, total.trim().parse().ok()?);
    (start <= end && end < total).then_some((start, end, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_bytes_by_the_rate() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(1000, Duration::ZERO);
        assert_eq!(pacer.delay_after(t0, 1000), Duration::from_secs(1));
        // Arriving early does not let the next chunk go sooner.
        assert_eq!(pacer.delay_after(t0 + Duration::from_millis(500), 500), Duration::from_secs(1));
        // Arriving exactly on time: only this chunk's own cost.
        assert_eq!(pacer.delay_after(t0 + Duration::from_millis(1500), 250), Duration::from_millis(250));
        // A long pause earns no credit beyond the burst (zero here).
        assert_eq!(pacer.delay_after(t0 + Duration::from_secs(100), 2000), Duration::from_secs(2));
    }

    #[test]
    fn idle_time_earns_at_most_the_burst() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut pacer = Pacer::new(1000, Duration::from_millis(250));
        // The first 250 bytes ride on the burst allowance.
        assert_eq!(pacer.delay_after(t0, 250), Duration::ZERO);
        assert_eq!(pacer.delay_after(t0, 1000), Duration::from_secs(1));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.delay_after(later, 1250), Duration::from_secs(1));
    }

    #[test]
    fn kbps_are_kilobits() {
        let t0 = Instant::now();
        let mut pacer = Pacer::from_kbps(Some(8)).unwrap(); // 1000 B/s
        pacer.delay_after(t0, 250); // spends the burst
        assert_eq!(pacer.delay_after(t0, 1000), Duration::from_secs(1));
        assert!(Pacer::from_kbps(None).is_none());
        assert!(Pacer::from_kbps(Some(0)).is_none());
    }

    #[test]
    fn the_rate_watch_judges_whole_windows() {
        let t0 = Instant::now();
        let min = MinRate { bytes_per_second: 100, window: Duration::from_secs(10) };
        let mut watch = RateWatch::new(min, t0);
        assert_eq!(watch.record(t0 + Duration::from_secs(1), 10), Ok(()));
        assert_eq!(watch.record(t0 + Duration::from_secs(9), 10), Ok(()), "window not over yet");
        assert_eq!(watch.record(t0 + Duration::from_secs(10), 10), Err((30, Duration::from_secs(10))));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(watch.record(t1 + Duration::from_secs(10), 1000), Ok(()));
    }

    #[test]
    fn the_minimum_rate_stays_below_a_bandwidth_cap() {
        let limits = Limits { max_bandwidth_kbps: Some(8), ..Limits::default() };
        assert_eq!(limits.effective_min_rate().unwrap().bytes_per_second, 500);
        assert_eq!(Limits::default().effective_min_rate().unwrap().bytes_per_second, 1024);
    }

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, 99, 100)));
        assert_eq!(parse_content_range("bytes 10-100/100"), None);
        assert_eq!(parse_content_range("bytes 10-99/*"), None);
        assert_eq!(parse_content_range("items 10-99/100"), None);
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(display_url("http://user:pw@mirror:8080/blobs/ab?token=s3cret"), "http://mirror:8080/blobs/ab?…");
        assert!(!format!("{:?}", Bearer::new(&"s3cret".to_owned().into())).contains("s3cret"));
        let source =
            Source::engine("http://engine:8420/", &Sha256Digest::of(b"x"), Bearer::new(&"s3cret".to_owned().into()));
        assert!(!format!("{source:?}").contains("s3cret"));
        assert!(source.display_url().ends_with(&format!("/api/v1/blobs/{}", Sha256Digest::of(b"x"))));
    }
}
