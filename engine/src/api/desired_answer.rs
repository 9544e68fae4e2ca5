//! The answer to an agent asking for its desired state: 304 when it holds
//! the state served (by ETag), else the state's bytes.
//!
//! States are held gzipped ([`SignedBody`]). An agent that accepts gzip
//! (`Accept-Encoding`) is sent those bytes as they are, with
//! `Content-Encoding: gzip`; any other client the envelope's JSON. The two
//! are different representations, so their ETags differ too: the gzip
//! one is the state's ETag with `-gz` before its closing quote. Either
//! names the same state, and an agent holding either is answered 304.
//! Both start with the generation (`"GENERATION-ISSUED"`), which a
//! follower reads to serve no state older than the agent has seen.
//!
//! [`SignedBody`]: crate::store::signed_body::SignedBody

use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, ApiState, internal};
use crate::daemon::ServedDesired;

/// What the gzip representation's ETag adds before the closing quote.
const GZIP_TAG: &str = "-gz";

/// Whether the agent holds the state tagged `etag`, in either
/// representation.
pub(super) fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    let Some(tags) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    let bare = etag.strip_suffix('"').unwrap_or(etag);
    tags.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| {
        tag == etag || tag.strip_suffix('"').and_then(|t| t.strip_suffix(GZIP_TAG)).is_some_and(|t| t == bare)
    })
}

/// The generation an ETag names.
fn generation_of(etag: &str) -> Option<u64> {
    etag.trim().trim_start_matches("W/").trim_matches('"').split('-').next()?.parse().ok()
}

/// The newest generation among the ETags the agent holds.
pub(super) fn seen_generation(headers: &HeaderMap) -> u64 {
    let tags = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).unwrap_or("");
    tags.split(',').filter_map(generation_of).max().unwrap_or(0)
}

/// Whether the client accepts gzip: named in `Accept-Encoding` (or as
/// `x-gzip`) and not with `q=0`. `*` is not taken for it: a client that
/// names no coding gets the JSON.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let codings = headers.get_all(header::ACCEPT_ENCODING).into_iter().filter_map(|v| v.to_str().ok());
    codings.flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !parts.any(refuses)
    })
}

/// Whether a coding's parameter is `q=0` (not acceptable).
fn refuses(parameter: &str) -> bool {
    let parameter = parameter.trim();
    let weight = parameter.strip_prefix("q=").or_else(|| parameter.strip_prefix("Q="));
    weight.is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
}

/// The ETag of `served`'s representation.
fn etag_of(served: &ServedDesired, gzip: bool) -> Result<HeaderValue, ApiError> {
    if !gzip {
        return HeaderValue::from_str(&served.etag).map_err(internal);
    }
    let bare = served.etag.strip_suffix('"').unwrap_or(&served.etag);
    HeaderValue::from_str(&format!("{bare}{GZIP_TAG}\"")).map_err(internal)
}

/// 304 when the agent holds `served`, else its bytes (gzipped and shared
/// when the client accepts gzip); counted.
pub(super) fn desired_answer(
    state: &ApiState,
    headers: &HeaderMap,
    served: &ServedDesired,
) -> Result<Response, ApiError> {
    let gzip = accepts_gzip(headers);
    let etag = etag_of(served, gzip)?;
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    if matches_etag(headers, &served.etag) {
        state.engine.metrics.desired_not_modified.fetch_add(1, Ordering::Relaxed);
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), vary]).into_response());
    }
    state.engine.metrics.desired_served.fetch_add(1, Ordering::Relaxed);
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if gzip {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = axum::body::Body::from(served.body.gzip().clone());
        return Ok(([(header::ETAG, etag), content_type, encoding, vary], body).into_response());
    }
    let body = axum::body::Body::from(served.body.json().map_err(internal)?);
    Ok(([(header::ETAG, etag), content_type, vary], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap())).collect()
    }

    #[test]
    fn gzip_is_accepted_when_named_without_a_zero_weight() {
        let accepts = |value: &str| accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, value)]));
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, x-gzip"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.0, br"));
        assert!(!accepts("identity"));
        assert!(!accepts("*"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn either_representation_s_etag_names_the_state() {
        let holds = |value: &str| matches_etag(&headers(&[(header::IF_NONE_MATCH, value)]), "\"7-1700000000\"");
        assert!(holds("\"7-1700000000\""));
        assert!(holds("\"7-1700000000-gz\""));
        assert!(holds("\"6-1600000000\", W/\"7-1700000000-gz\""));
        assert!(!holds("\"7-1700000001-gz\""));
        assert!(!holds("\"7-1700000000-gzip\""));
        assert!(!holds("\"6-1700000000\""));
        assert_eq!(seen_generation(&headers(&[(header::IF_NONE_MATCH, "\"6-1\", \"7-1700000000-gz\"")])), 7);
    }
}
