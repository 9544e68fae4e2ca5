//! The agent's side of the engine's API: enroll, upload facts and
//! inventory, fetch the signed desired state (ETag, long poll), and send
//! events. Only this module knows the engine's routes.
//!
//! The device's credential goes out as a bearer and nowhere else: it is
//! in no error, no log line and no Debug output.

use std::time::Duration;

use patchward_api::device::{EnrollRequest, EnrollResponse, InventoryAccepted, InventoryUpload};
use patchward_api::dsse::Envelope;
use patchward_api::events::{AgentEvent, EventBatch, EventsRecorded};

/// The answers and bodies are small; anything bigger is not the engine.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: the engine answered {status}: {message}")]
    Refused { url: String, status: u16, message: String },
    #[error("{url}: the answer is not what the engine sends: {reason}")]
    Malformed { url: String, reason: String },
    #[error("the HTTP client could not be set up: {0}")]
    Setup(String),
}

impl ClientError {
    /// Whether the engine said this credential is no good (401/403): the
    /// agent must re-enroll rather than retry.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Refused { status: 401 | 403, .. })
    }
}

/// What a desired-state request brought.
#[derive(Debug)]
pub enum Fetched {
    /// Nothing changed since the state with this ETag.
    NotModified,
    /// A new envelope (not yet verified: see `trust`), with its ETag.
    Envelope { envelope: Envelope, etag: Option<String> },
    /// No policy is in force at the engine yet.
    NothingInForce,
}

/// The device's credential: a [`Secret`], never shown.
pub type Credential = patchward_api::logging::Secret;

pub struct EngineClient {
    http: reqwest::Client,
    server: String,
    credential: Option<Credential>,
    timeout: Duration,
}

impl EngineClient {
    /// A client of the engine at `server` (its base URL), with the device's
    /// credential once enrolled; each request is bounded by `timeout`
    /// (a long poll by its wait on top).
    pub fn new(server: &str, credential: Option<Credential>, timeout: Duration) -> Result<EngineClient, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Accepts gzip (reqwest's default with its `gzip` feature): the
        // engine holds desired states gzipped and sends them so.
        let http = reqwest::Client::builder()
            .user_agent(concat!("patchward-agent/", env!("CARGO_PKG_VERSION")))
            .gzip(true)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(EngineClient { http, server: server.trim_end_matches('/').to_owned(), credential, timeout })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(c) => request.bearer_auth(c.expose()),
            None => request,
        }
    }

    async fn send(&self, url: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response =
            request.send().await.map_err(|e| ClientError::Transport { url: url.to_owned(), reason: cause(&e) })?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let body = read_body(url, response).await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        Err(ClientError::Refused { url: url.to_owned(), status: status.as_u16(), message })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let body = read_body(url, response).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Malformed { url: url.to_owned(), reason: e.to_string() })
    }

    /// Trades an enrollment token for the device's identity.
    pub async fn enroll(&self, token: &str, facts: patchward_api::Facts) -> Result<EnrollResponse, ClientError> {
        let url = self.url("/api/v1/enroll");
        let request = self.http.post(&url).bearer_auth(token).timeout(self.timeout);
        let request = with_json(request, &EnrollRequest { facts });
        let response = self.send(&url, request).await?;
        self.json(&url, response).await
    }

    pub async fn upload_inventory(&self, upload: &InventoryUpload) -> Result<InventoryAccepted, ClientError> {
        let url = self.url("/api/v1/device/inventory");
        let request = self.authorized(self.http.put(&url)).timeout(self.timeout);
        let request = with_json(request, upload);
        let response = self.send(&url, request).await?;
        self.json(&url, response).await
    }

    /// The desired state, unless it is still the one tagged `etag`; with
    /// `wait`, the engine holds the answer until it changes (or the wait
    /// ends).
    pub async fn desired_state(&self, etag: Option<&str>, wait: Option<Duration>) -> Result<Fetched, ClientError> {
        let mut url = self.url("/api/v1/device/desired-state");
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            url.push_str(&format!("?wait={}", wait.as_secs()));
        }
        let mut request = self.authorized(self.http.get(&url)).timeout(self.timeout + wait.unwrap_or_default());
        if let Some(tag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let response = match self.send(&url, request).await {
            Err(ClientError::Refused { status: 503, .. }) => return Ok(Fetched::NothingInForce),
            other => other?,
        };
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let envelope = self.json(&url, response).await?;
        Ok(Fetched::Envelope { envelope, etag })
    }

    pub async fn send_events(&self, events: Vec<AgentEvent>) -> Result<EventsRecorded, ClientError> {
        let url = self.url("/api/v1/device/events");
        let request = self.authorized(self.http.post(&url)).timeout(self.timeout);
        let request = with_json(request, &EventBatch { events });
        let response = self.send(&url, request).await?;
        self.json(&url, response).await
    }
}

fn with_json<T: serde::Serialize>(request: reqwest::RequestBuilder, body: &T) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).expect("request bodies serialize");
    request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes)
}

async fn read_body(url: &str, mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ClientError::Transport { url: url.to_owned(), reason: cause(&e) })?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ClientError::Malformed { url: url.to_owned(), reason: format!("more than {MAX_BODY} bytes") });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's error with its causes, which say what actually failed
/// (connection refused, timed out).
fn cause(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
