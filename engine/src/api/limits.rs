//! Bounds on what a client may send (T29, T31): JSON bodies by size and
//! nesting depth before any parsing, and requests per device per minute.

use std::sync::Mutex;

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::{ApiError, ApiState};

/// The deepest nesting of arrays and objects in `bytes`, counted without
/// parsing (strings are skipped, escapes honoured), so that a hostile body
/// is refused before serde's recursion sees it.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON body, bounded by the body limit (a layer) and by depth.
pub struct BoundedJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<std::sync::Arc<ApiState>> for BoundedJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &std::sync::Arc<ApiState>) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("the body is larger than {} bytes", state.limits.max_body_bytes))
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        })?;
        let depth = json_depth(&bytes);
        if depth > state.limits.max_json_depth {
            return Err(ApiError::bad_request(format!(
                "the body nests {depth} deep; at most {} is accepted",
                state.limits.max_json_depth
            )));
        }
        serde_json::from_slice(&bytes)
            .map(BoundedJson)
            .map_err(|e| ApiError::bad_request(format!("the body is not what this route takes: {e}")))
    }
}

/// A token bucket per caller: `per_minute` requests a minute, in bursts of
/// up to a tenth of that (at least 10). Time comes from the engine's clock.
pub struct RateLimiter {
    per_minute: u32,
    /// Taken on every request: hashed fast.
    buckets: Mutex<foldhash::HashMap<String, (f64, jiff::Timestamp)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute, buckets: Mutex::default() }
    }

    fn burst(&self) -> f64 {
        (f64::from(self.per_minute) / 10.0).max(10.0)
    }

    /// Takes one request from `caller`'s bucket; `Err(seconds)` to wait
    /// when it is empty.
    pub fn take(&self, caller: &str, now: jiff::Timestamp) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before inserted: a known caller costs no allocation.
        if !buckets.contains_key(caller) {
            buckets.insert(caller.to_owned(), (self.burst(), now));
        }
        let (tokens, last) = buckets.get_mut(caller).expect("the caller's bucket was inserted above");
        let elapsed = now.duration_since(*last).as_secs_f64().max(0.0);
        *tokens = (*tokens + elapsed * rate).min(self.burst());
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[["}]}"#), 3);
        assert_eq!(json_depth(br#""\"[[""#), 0);
        assert_eq!(json_depth(&[b'['; 10_000]), 10_000);
    }

    #[test]
    fn a_bucket_refills_on_the_clock() {
        let limiter = RateLimiter::new(60);
        let start: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        for _ in 0..10 {
            assert!(limiter.take("dev-a", start).is_ok());
        }
        assert_eq!(limiter.take("dev-a", start), Err(1));
        assert!(limiter.take("dev-b", start).is_ok(), "another caller has its own bucket");
        let later = start.checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
        assert!(limiter.take("dev-a", later).is_ok());
    }
}
