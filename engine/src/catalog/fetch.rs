//! Fetching feeds from `https`, `http` and `file` URLs, within bounds:
//! connect and total timeouts, a minimum transfer rate, a byte limit, and
//! retries with exponential backoff. Conditional requests (ETag,
//! If-Modified-Since) make an unchanged feed cost one round trip.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;

/// Bounds on one fetch (RELIABILITY T10, T11).
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// For the whole transfer, headers to last byte.
    pub total_timeout: Duration,
    /// Abort when, after `rate_window`, fewer bytes per second arrived.
    pub min_bytes_per_second: u64,
    pub rate_window: Duration,
    pub max_bytes: u64,
    /// Attempts after the first, for connection errors, timeouts and 5xx.
    pub retries: u32,
    pub backoff: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(300),
            min_bytes_per_second: 1024,
            rate_window: Duration::from_secs(30),
            max_bytes: 256 << 20,
            retries: 3,
            backoff: Duration::from_secs(2),
        }
    }
}

/// Validators from the last successful fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Body { bytes: Vec<u8>, validators: Validators },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: no complete answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: more than {limit} bytes; refused")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: transfer slower than {min} bytes/s; aborted")]
    TooSlow { url: String, min: u64 },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: unsupported URL scheme; use https, http or file")]
    Scheme { url: String },
    #[error("{url}: the file cannot be read")]
    File {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    fn retryable(&self) -> bool {
        match self {
            FetchError::Timeout { .. } | FetchError::Transport { .. } | FetchError::TooSlow { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How backoff waits: the real clock in the engine, a recorder in tests.
pub trait Sleeper: Send + Sync {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Reports bytes received and the expected total, for a progress bar.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Send + Sync);

/// An HTTP client for feeds: rustls with the ring provider, no proxies from
/// the environment, no decompression (byte limits count wire bytes).
pub fn client(limits: &FetchLimits) -> Result<reqwest::Client, FetchError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .no_proxy()
        .no_gzip()
        .user_agent(concat!("patchward/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Transport { url: String::new(), message: e.to_string() })
}

/// Fetches `url`, retrying transient failures with exponential backoff.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    validators: &Validators,
    limits: &FetchLimits,
    sleeper: &dyn Sleeper,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    let mut attempt = 0;
    loop {
        match fetch_once(client, url, validators, limits, progress).await {
            Err(error) if error.retryable() && attempt < limits.retries => {
                sleeper.sleep(limits.backoff * 2u32.saturating_pow(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    validators: &Validators,
    limits: &FetchLimits,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    let parsed = url::Url::parse(url).map_err(|_| FetchError::Scheme { url: url.to_owned() })?;
    match parsed.scheme() {
        "file" => read_file(&parsed, url, limits).await,
        "http" | "https" => {
            let timeout = limits.total_timeout;
            match tokio::time::timeout(timeout, http_get(client, url, validators, limits, progress)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Timeout { url: url.to_owned(), after: timeout }),
            }
        }
        _ => Err(FetchError::Scheme { url: url.to_owned() }),
    }
}

async fn read_file(parsed: &url::Url, url: &str, limits: &FetchLimits) -> Result<Fetched, FetchError> {
    use tokio::io::AsyncReadExt as _;
    let path = parsed.to_file_path().map_err(|_| FetchError::Scheme { url: url.to_owned() })?;
    let file_error = |source| FetchError::File { url: url.to_owned(), source };
    let file = tokio::fs::File::open(&path).await.map_err(file_error)?;
    // One byte past the limit tells an oversized file, even a growing one,
    // without reading it all.
    let mut bytes = Vec::new();
    file.take(limits.max_bytes + 1).read_to_end(&mut bytes).await.map_err(file_error)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(FetchError::TooLarge { url: url.to_owned(), limit: limits.max_bytes });
    }
    Ok(Fetched::Body { bytes, validators: Validators::default() })
}

async fn http_get(
    client: &reqwest::Client,
    url: &str,
    validators: &Validators,
    limits: &FetchLimits,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    let transport = |e: reqwest::Error| FetchError::Transport { url: url.to_owned(), message: e.to_string() };
    let mut request = client.get(url).header(reqwest::header::ACCEPT_ENCODING, "identity");
    if let Some(etag) = &validators.etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    if let Some(modified) = &validators.last_modified {
        request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
    }
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Status { url: url.to_owned(), status: status.as_u16() });
    }
    let header = |name: reqwest::header::HeaderName| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let received_validators =
        Validators { etag: header(reqwest::header::ETAG), last_modified: header(reqwest::header::LAST_MODIFIED) };
    // A declared length over the limit is refused before a byte is read; a
    // lying one is caught by counting.
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(FetchError::TooLarge { url: url.to_owned(), limit: limits.max_bytes });
    }
    let started = tokio::time::Instant::now();
    let mut bytes: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limits.max_bytes) as usize);
    let mut stream = response.bytes_stream();
    loop {
        // Wake at least once per rate window to judge the rate even when no
        // bytes come at all.
        let next = tokio::time::timeout(limits.rate_window.max(Duration::from_millis(10)), stream.next()).await;
        let elapsed = started.elapsed();
        if elapsed >= limits.rate_window {
            let rate = bytes.len() as f64 / elapsed.as_secs_f64();
            if rate < limits.min_bytes_per_second as f64 {
                return Err(FetchError::TooSlow { url: url.to_owned(), min: limits.min_bytes_per_second });
            }
        }
        match next {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(chunk)) => {
                let chunk = chunk.map_err(transport)?;
                if bytes.len() as u64 + chunk.len() as u64 > limits.max_bytes {
                    return Err(FetchError::TooLarge { url: url.to_owned(), limit: limits.max_bytes });
                }
                bytes.extend_from_slice(&chunk);
                progress(bytes.len() as u64, declared);
            }
        }
    }
    Ok(Fetched::Body { bytes, validators: received_validators })
}
