//! The console: the admin's web views of the fleet and the user's portal
//! for their own device, served by the engine at `/`.
//!
//! Server-rendered HTML (maud) with a stylesheet and a few lines of script,
//! all embedded in the binary: it works with no internet access. Every
//! figure comes from the same view functions (`daemon::views`) as the
//! admin API's JSON, so the two cannot disagree.
//!
//! The console never edits policy: where an admin would approve, exclude
//! or hold a patch it shows the YAML to commit. What is not policy (sync
//! now, acknowledge a rewrite) it does, as the API would.

mod admin;
mod exposure;
mod list;
mod page;
mod portal;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::ApiState;
use page::{Flash, layout};
use session::{Lookup, Session, Viewer};

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", get(home))
        .route("/assets/console.css", get(|| async { asset("text/css; charset=utf-8", page::STYLESHEET) }))
        .route("/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", page::SCRIPT) }))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/console", get(admin::compliance))
        .route("/console/devices", get(admin::devices))
        .route("/console/devices/{id}", get(admin::device))
        .route("/console/review", get(admin::review))
        .route("/console/rollouts", get(admin::rollouts))
        .route("/console/software", get(admin::software))
        .route("/console/catalog", get(admin::catalog))
        .route("/console/installed", get(admin::installed))
        .route("/console/exposure", get(exposure::exposure))
        .route("/console/status", get(admin::status))
        .route("/console/sync", post(admin::sync))
        .route("/console/ack-rewrite", post(admin::ack_rewrite))
        .route("/console/audit", get(admin::audit))
        .route("/portal", get(portal::portal))
        .route("/portal/{kind}", post(portal::request))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    response
}

/// An HTML page with the headers every console page carries: no caching
/// of fleet data, no framing, no scripts but our own.
fn html_page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// A page that says what went wrong, in the console's layout.
/// A page that says what went wrong, and always offers a way back: the
/// viewer's home, or the sign-in and the portal when the page does not
/// know who is looking.
fn error_page(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        p.way-back {
            @match session.map(|s| &s.viewer) {
                Some(Viewer::Admin) => { a href="/console" { "Back to the console" } }
                Some(_) => { a href="/portal" { "Back to your device" } }
                None => { a href="/" { "Back to your start page" } " · " a href="/signin" { "Sign in with another token" } }
            }
        }
    };
    html_page(status, layout(title, session, "", Some(&Flash::error(message)), body))
}

/// Why a console request was turned away: each becomes a redirect or a
/// page that says so.
#[derive(Debug)]
pub enum Refusal {
    /// No session: sign in.
    SignIn,
    /// The session (or its token) ran out: sign in again.
    Expired,
    /// A user's session on an admin page.
    AdminsOnly,
    /// A form without this session's CSRF token, or from another origin.
    Csrf,
    Unavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to("/signin").into_response(),
            Refusal::Expired => Redirect::to("/signin?expired=1").into_response(),
            Refusal::AdminsOnly => error_page(
                StatusCode::FORBIDDEN,
                None,
                "This page is for admins. Your token shows your own device, in the portal.",
            ),
            Refusal::Csrf => error_page(
                StatusCode::FORBIDDEN,
                None,
                "This form did not come from this console (its CSRF token or origin is wrong). Reload the page and try again.",
            ),
            Refusal::Unavailable(why) => error_page(StatusCode::SERVICE_UNAVAILABLE, None, &why),
        }
    }
}

/// A console session, from its cookie, still backed by a valid token.
fn current_session(state: &ApiState, headers: &HeaderMap) -> Result<Session, Refusal> {
    let now = state.engine.clock.now();
    let found = state.sessions.find_stored(&state.engine.store, headers, now);
    match found.map_err(|e| Refusal::Unavailable(e.to_string()))? {
        Lookup::Valid(session) => {
            // A token revoked or expired since sign-in ends its sessions.
            match crate::store::Store::wait(state.engine.store.access_token_by_hash(&session.token_hash)) {
                Ok(Some(token)) if !token.revoked && token.expires_at.is_none_or(|at| at > now) => Ok(session),
                Ok(_) => {
                    state.sessions.close_token(&session.token_hash);
                    Err(Refusal::Expired)
                }
                Err(e) => Err(Refusal::Unavailable(e.to_string())),
            }
        }
        Lookup::Expired => Err(Refusal::Expired),
        Lookup::None => Err(Refusal::SignIn),
    }
}

/// An admin's console session.
pub struct AdminSession(pub Session);

impl FromRequestParts<Arc<ApiState>> for AdminSession {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Refusal> {
        let session = current_session(state, &parts.headers)?;
        match session.viewer {
            Viewer::Admin => Ok(AdminSession(session)),
            Viewer::User { .. } => Err(Refusal::AdminsOnly),
        }
    }
}

/// A user's portal session: the one device its token is bound to.
pub struct UserSession(pub Session, pub String);

impl FromRequestParts<Arc<ApiState>> for UserSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Response> {
        let session = current_session(state, &parts.headers).map_err(IntoResponse::into_response)?;
        match &session.viewer {
            Viewer::User { device } => {
                let device = device.clone();
                Ok(UserSession(session, device))
            }
            Viewer::Admin => Err(Redirect::to("/console").into_response()),
        }
    }
}

/// Checks a state-changing form's CSRF token.
fn check_csrf(session: &Session, csrf: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if session::csrf_ok(session, csrf, headers) { Ok(()) } else { Err(Refusal::Csrf) }
}

async fn home(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    match current_session(&state, &headers) {
        Ok(Session { viewer: Viewer::Admin, .. }) => Redirect::to("/console").into_response(),
        Ok(_) => Redirect::to("/portal").into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Deserialize)]
struct SigninQuery {
    expired: Option<String>,
}

async fn signin_page(axum::extract::Query(query): axum::extract::Query<SigninQuery>) -> Response {
    let flash = query.expired.map(|_| Flash::error("Your session expired. Sign in again."));
    signin_form(StatusCode::OK, flash)
}

fn signin_form(status: StatusCode, flash: Option<Flash>) -> Response {
    let body = html! {
        form.signin method="post" action="/signin" {
            p { "Paste an admin token, or the user token your admin gave you for your device." }
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            button type="submit" { "Sign in" }
        }
        p.muted { "An admin token is in the engine's data directory (" code { "admin-token" } "); "
            code { "patchward token create user --device ID" } " makes a user token." }
    };
    html_page(status, layout("Sign in", None, "", flash.as_ref(), body))
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
}

/// The client's address, for the failed-sign-in limit (the engine's
/// listener records it; a test's in-process request has none).
fn client_address(parts: Option<ConnectInfo<SocketAddr>>) -> String {
    parts.map_or_else(|| "local".to_owned(), |ConnectInfo(addr)| addr.ip().to_string())
}

async fn signin(
    State(state): State<Arc<ApiState>>,
    peer: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<SigninForm>,
) -> Response {
    let now = state.engine.clock.now();
    let client = client_address(peer.map(|axum::extract::Extension(info)| info));
    if let Err(seconds) = state.sessions.may_try(&client, now) {
        let message = format!("Too many failed sign-ins from this address. Try again in {seconds} s.");
        let mut response = signin_form(StatusCode::TOO_MANY_REQUESTS, Some(Flash::error(message)));
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        return response;
    }
    let secret = form.token.trim();
    let token = match crate::store::Store::wait(state.engine.store.access_token(secret)) {
        Ok(Some(token)) if !token.revoked && token.expires_at.is_none_or(|at| at > now) => token,
        Ok(found) => {
            state.sessions.failed(&client, now);
            let why = match found {
                Some(token) if token.revoked => "That token was revoked.",
                Some(_) => "That token has expired.",
                None => "That is not an admin or user token of this engine.",
            };
            return signin_form(StatusCode::UNAUTHORIZED, Some(Flash::error(why)));
        }
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, None, &e.to_string()),
    };
    let (id, session) = match state.sessions.open(&token, secret, now) {
        Ok(opened) => opened,
        Err(why) => {
            state.sessions.failed(&client, now);
            return signin_form(StatusCode::UNAUTHORIZED, Some(Flash::error(why)));
        }
    };
    if let Err(e) = session::Sessions::save(&state.engine.store, &id, &session) {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, None, &e.to_string());
    }
    state.sessions.succeeded(&client);
    let (actor, target) = match &session.viewer {
        Viewer::Admin => ("admin".to_owned(), "/console"),
        Viewer::User { device } => (format!("user:{device}"), "/portal"),
    };
    let _ = crate::store::Store::wait(state.engine.store.append_audit(
        now,
        &actor,
        "console.signin",
        serde_json::json!({"client": client}),
    ));
    let mut response = Redirect::to(target).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id, &session, now)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn signout(State(state): State<Arc<ApiState>>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let session = match current_session(&state, &headers) {
        Ok(session) => session,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = check_csrf(&session, &form.csrf, &headers) {
        return refusal.into_response();
    }
    if let Err(e) = state.sessions.close_stored(&state.engine.store, &headers) {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, None, &e.to_string());
    }
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
