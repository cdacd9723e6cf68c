//! `serve`'s admin status page, on its own address (`admin_listen_address`), never on the
//! webhook port: its router is separate and bound to a separate listener.
//!
//! Server-rendered HTML ([`page`]), no JavaScript; what it shows is read from the spool on a
//! connection of its own, on the blocking pool, per request. Access: a bearer token of
//! `admin_tokens` (`Authorization: Bearer`, or `?token=` once, which sets an HttpOnly cookie so
//! links work), compared in constant time like the webhook credentials; no token is needed only
//! when the page listens on loopback with none configured (settings enforce that).

pub mod page;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::receiver::auth::matches_any;
use crate::receiver::capture::parse_query;

/// The cookie a `?token=` visit sets.
const COOKIE: &str = "tap_webhook_admin";

/// What the admin page reads.
pub struct AdminState {
    pub spool_path: PathBuf,
    pub sources: Vec<String>,
    pub max_spool_bytes: u64,
    /// Empty: no token asked (loopback only).
    pub tokens: Vec<String>,
}

/// The admin routes, apart from any socket.
pub fn app(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/admin", get(overview))
        .route("/admin/delivery/{id}", get(delivery))
        .route("/admin/refused/{id}", get(refused))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// Serves the admin page until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The token the request carries, and whether it came in the query (then it is set as a
/// cookie, so the page's links need not carry it).
fn given_token(headers: &HeaderMap, query: Option<&str>) -> Option<(String, bool)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme's name is case-insensitive (RFC 9110 §11.1): `bearer x` is a bearer token.
        if v.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
        {
            return Some((v[7..].trim().to_owned(), false));
        }
    }
    if let Some((_, t)) = parse_query(query).into_iter().find(|(k, _)| k == "token") {
        return Some((t, true));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
        .map(|t| (t, false))
}

/// Whether a request may read the page.
enum Access {
    /// With the cookie to set when the token came in the query.
    Allowed(Option<String>),
    Denied,
}

fn authorize(state: &AdminState, headers: &HeaderMap, query: Option<&str>) -> Access {
    if state.tokens.is_empty() {
        return Access::Allowed(None);
    }
    match given_token(headers, query) {
        Some((t, from_query)) if matches_any(t.as_bytes(), &state.tokens) => Access::Allowed(
            from_query.then(|| format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/admin")),
        ),
        _ => Access::Denied,
    }
}

fn denied() -> Response {
    html(StatusCode::UNAUTHORIZED, page::unauthorized(), None)
}

/// An HTML response with the headers that keep it inert: no script runs (CSP), nothing is
/// sniffed, cached or sent on as a referrer.
fn html(status: StatusCode, body: String, cookie: Option<String>) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tap-webhook admin\""),
        );
    }
    r
}

/// Runs a page's reads on the blocking pool with a connection of its own.
async fn render(
    state: Arc<AdminState>,
    cookie: Option<String>,
    f: impl FnOnce(&rusqlite::Connection, &AdminState) -> Result<Option<String>, String>
        + Send
        + 'static,
) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let conn = crate::spool::open(&state.spool_path).map_err(|e| e.to_string())?;
        f(&conn, &state)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match result {
        Ok(Some(body)) => html(StatusCode::OK, body, cookie),
        Ok(None) => html(StatusCode::NOT_FOUND, page::not_found(), cookie),
        Err(e) => {
            tracing::error!(error = %e, "admin page: reading the spool failed");
            html(StatusCode::INTERNAL_SERVER_ERROR, page::failed(), cookie)
        }
    }
}

async fn overview(
    State(state): State<Arc<AdminState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match authorize(&state, &headers, q.as_deref()) {
        Access::Allowed(cookie) => {
            render(state, cookie, |c, s| {
                page::overview(c, &s.sources, s.max_spool_bytes).map(Some)
            })
            .await
        }
        Access::Denied => denied(),
    }
}

async fn delivery(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match authorize(&state, &headers, q.as_deref()) {
        Access::Allowed(cookie) => render(state, cookie, move |c, _| page::delivery(c, &id)).await,
        Access::Denied => denied(),
    }
}

/// The id is parsed after the token check: a `Path<i64>` extractor answered a bad id before
/// it, with axum's plain-text rejection echoing the path to anyone.
async fn refused(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match authorize(&state, &headers, q.as_deref()) {
        Access::Allowed(cookie) => match id.parse::<i64>() {
            Ok(id) => render(state, cookie, move |c, _| page::refused(c, id)).await,
            Err(_) => html(StatusCode::NOT_FOUND, page::not_found(), cookie),
        },
        Access::Denied => denied(),
    }
}
