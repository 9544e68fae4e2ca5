//! Console sessions: an admin or user token, typed once into the sign-in
//! form, is exchanged for a session cookie (`HttpOnly`, `SameSite=Strict`,
//! expiring), so the token never sits in the browser. Every form that
//! changes something carries the session's CSRF token, and its `Origin`,
//! when the browser sends one, must be this host.
//!
//! Sessions live in the store, under the sha256 of their id (the ids
//! themselves are only in the browsers' cookies), so every replica knows
//! every session, a sign-out ends it everywhere, and a restart keeps it.
//! Each replica also holds the sessions it has seen, and checks a cookie
//! against those only while the store cannot be reached. Failed sign-ins
//! are rate-limited per client address (per replica: the load balancer
//! keeps a client on one).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;

use serde::{Deserialize, Serialize};

use crate::store::fleet::{AccessToken, Role, secret_hash};
use crate::store::{Store, StoreError};

/// The engine state a session is kept under (by its id's sha256).
fn state_name(key: &str) -> String {
    format!("session/{key}")
}

/// The cookie that carries the session id.
pub const COOKIE: &str = "pw_session";

/// How long a session lasts (capped by its token's own expiry).
pub const SESSION_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(8);

/// Failed sign-ins allowed per client address in a row before it waits.
pub const FAILURES_BEFORE_WAIT: u32 = 5;

/// How long a client that failed too often waits.
pub const FAILURE_WAIT: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

/// Who a session speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Viewer {
    Admin,
    /// A user token's one device.
    User {
        device: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub viewer: Viewer,
    /// Sent back in every state-changing form.
    pub csrf: String,
    pub expires_at: jiff::Timestamp,
    /// The sha256 of the token it was made from: a token revoked or expired
    /// since ends its sessions too.
    pub token_hash: String,
}

/// What a request's session lookup found.
pub enum Lookup {
    Valid(Session),
    /// There was a session, and its time is up.
    Expired,
    None,
}

#[derive(Default)]
pub struct Sessions {
    /// By the sha256 of the session id: the ids themselves are only in
    /// the browsers' cookies.
    live: Mutex<HashMap<String, Session>>,
    /// Per client address: failures in a row, and until when it waits.
    failures: Mutex<HashMap<String, (u32, Option<jiff::Timestamp>)>>,
}

impl Sessions {
    /// A new session for `token` (already checked), and its cookie value.
    pub fn open(&self, token: &AccessToken, secret: &str, now: jiff::Timestamp) -> Result<(String, Session), String> {
        let viewer = match (&token.role, &token.device) {
            (Role::Admin, _) => Viewer::Admin,
            (Role::User, Some(device)) => Viewer::User { device: device.clone() },
            (Role::User, None) => return Err("this user token is bound to no device".into()),
        };
        let id = crate::clock::new_secret("pws_").map_err(|e| format!("no randomness for a session: {e}"))?;
        let csrf = crate::clock::new_secret("").map_err(|e| format!("no randomness for a session: {e}"))?;
        let mut expires_at = now.checked_add(SESSION_TTL).unwrap_or(now);
        if let Some(token_expiry) = token.expires_at {
            expires_at = expires_at.min(token_expiry);
        }
        let session = Session { viewer, csrf, expires_at, token_hash: secret_hash(secret) };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions past their time go whenever a new one opens: the map
        // holds no more than the sessions of the last few hours.
        live.retain(|_, s| s.expires_at > now);
        live.insert(secret_hash(&id), session.clone());
        Ok((id, session))
    }

    /// The session a request's cookie names.
    pub fn find(&self, headers: &HeaderMap, now: jiff::Timestamp) -> Lookup {
        let Some(id) = cookie(headers, COOKIE) else { return Lookup::None };
        let key = secret_hash(&id);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(&key) {
            Some(session) if session.expires_at > now => Lookup::Valid(session.clone()),
            Some(_) => {
                live.remove(&key);
                Lookup::Expired
            }
            None => Lookup::None,
        }
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&secret_hash(&id));
        }
    }

    /// Keeps a session just opened in the store, for every replica.
    pub fn save(store: &Store, id: &str, session: &Session) -> Result<(), StoreError> {
        Store::wait(store.set_engine_state(&state_name(&secret_hash(id)), session))
    }

    /// The session a request's cookie names, as the store has it; from
    /// what this replica holds only while the store cannot be reached.
    pub fn find_stored(&self, store: &Store, headers: &HeaderMap, now: jiff::Timestamp) -> Result<Lookup, StoreError> {
        let Some(id) = cookie(headers, COOKIE) else { return Ok(Lookup::None) };
        let key = secret_hash(&id);
        let forget = || self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        match Store::wait(store.engine_state::<Session>(&state_name(&key))) {
            Ok(Some(session)) if session.expires_at > now => {
                self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), session.clone());
                Ok(Lookup::Valid(session))
            }
            Ok(Some(_)) => {
                forget();
                Store::wait(store.remove_engine_state(&state_name(&key)))?;
                Ok(Lookup::Expired)
            }
            Ok(None) => {
                forget();
                Ok(Lookup::None)
            }
            Err(e) if e.is_unreachable() => Ok(self.find(headers, now)),
            Err(e) => Err(e),
        }
    }

    /// Ends the request's session here and in the store.
    pub fn close_stored(&self, store: &Store, headers: &HeaderMap) -> Result<(), StoreError> {
        self.close(headers);
        match cookie(headers, COOKIE) {
            Some(id) => Store::wait(store.remove_engine_state(&state_name(&secret_hash(&id)))),
            None => Ok(()),
        }
    }

    /// Ends every session made from the token whose sha256 is `token_hash`.
    pub fn close_token(&self, token_hash: &str) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, s| s.token_hash != token_hash);
    }

    /// `Err(seconds)` while `client` must wait after failing too often.
    pub fn may_try(&self, client: &str, now: jiff::Timestamp) -> Result<(), u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(client) {
            Some((_, Some(until))) if *until > now => Err(until.duration_since(now).as_secs().max(1) as u64),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in; the fifth in a row makes `client` wait.
    pub fn failed(&self, client: &str, now: jiff::Timestamp) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures.entry(client.to_owned()).or_insert((0, None));
        if entry.1.is_some_and(|until| until <= now) {
            *entry = (0, None);
        }
        entry.0 += 1;
        if entry.0 >= FAILURES_BEFORE_WAIT {
            entry.1 = now.checked_add(FAILURE_WAIT).ok();
        }
    }

    pub fn succeeded(&self, client: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(client);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that carries a new session.
pub fn set_cookie(id: &str, session: &Session, now: jiff::Timestamp) -> String {
    let max_age = session.expires_at.duration_since(now).as_secs().max(0);
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether a form's CSRF token is its session's (compared in constant
/// time), and its `Origin`, if any, this host.
pub fn csrf_ok(session: &Session, form_token: &str, headers: &HeaderMap) -> bool {
    let same_token = {
        let (a, b) = (session.csrf.as_bytes(), form_token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    };
    let origin = headers.get(axum::http::header::ORIGIN).and_then(|o| o.to_str().ok());
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    let same_origin = match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    };
    same_token && same_origin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn admin_token(expires_at: Option<jiff::Timestamp>) -> AccessToken {
        AccessToken { role: Role::Admin, device: None, created_at: at(0), expires_at, revoked: false }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open(&admin_token(None), "pwa_secret", at(0)).unwrap();
        assert_eq!(session.expires_at, at(0).checked_add(SESSION_TTL).unwrap());
        let request = headers(&[("cookie", &format!("theme=dark; {COOKIE}={id}"))]);
        assert!(matches!(sessions.find(&request, at(60)), Lookup::Valid(s) if s.viewer == Viewer::Admin));
        assert!(matches!(sessions.find(&request, at(8 * 3600)), Lookup::Expired));
        assert!(matches!(sessions.find(&request, at(8 * 3600)), Lookup::None), "an expired session is gone");
        assert!(matches!(sessions.find(&headers(&[("cookie", "pw_session=forged")]), at(1)), Lookup::None));
    }

    #[test]
    fn a_session_ends_no_later_than_its_token() {
        let sessions = Sessions::default();
        let (_, session) = sessions.open(&admin_token(Some(at(600))), "pwa_secret", at(0)).unwrap();
        assert_eq!(session.expires_at, at(600));
        let cookie = set_cookie("pws_x", &session, at(0));
        assert_eq!(cookie, "pw_session=pws_x; Path=/; HttpOnly; SameSite=Strict; Max-Age=600");
    }

    #[test]
    fn csrf_needs_the_session_token_and_the_same_origin() {
        let sessions = Sessions::default();
        let (_, session) = sessions.open(&admin_token(None), "pwa_secret", at(0)).unwrap();
        let same = headers(&[("host", "127.0.0.1:8420"), ("origin", "http://127.0.0.1:8420")]);
        assert!(csrf_ok(&session, &session.csrf, &same));
        assert!(!csrf_ok(&session, "guess", &same));
        assert!(!csrf_ok(&session, "", &same));
        let other = headers(&[("host", "127.0.0.1:8420"), ("origin", "http://evil.example")]);
        assert!(!csrf_ok(&session, &session.csrf, &other));
        assert!(csrf_ok(&session, &session.csrf, &headers(&[("host", "127.0.0.1:8420")])));
    }

    #[test]
    fn repeated_failures_make_a_client_wait_and_a_success_forgets_them() {
        let sessions = Sessions::default();
        for i in 0..FAILURES_BEFORE_WAIT - 1 {
            sessions.failed("10.0.0.1", at(i64::from(i)));
            assert!(sessions.may_try("10.0.0.1", at(i64::from(i))).is_ok());
        }
        sessions.failed("10.0.0.1", at(10));
        assert_eq!(sessions.may_try("10.0.0.1", at(10)), Err(60));
        assert!(sessions.may_try("10.0.0.2", at(10)).is_ok(), "another client is not held back");
        assert!(sessions.may_try("10.0.0.1", at(70)).is_ok(), "the wait ends");
        sessions.failed("10.0.0.1", at(71));
        assert!(sessions.may_try("10.0.0.1", at(71)).is_ok(), "the count starts again after the wait");
        sessions.succeeded("10.0.0.1");
    }
}
