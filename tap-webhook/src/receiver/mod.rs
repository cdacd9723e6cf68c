//! `tap-webhook serve`: the HTTP receiver.
//!
//! A delivery flows: route → source → credentials (before reading the body) → body read with
//! its limit → decompress → signature check over the raw bytes → split into messages → spool
//! (group-committed, fsync'd) → 200. Nothing is stored unless every step passed, and the 200 is
//! sent only after the spool's commit (or SQS's acceptance: [`store`]).

pub mod auth;
pub mod body;
pub mod capture;
pub mod dedupe_key;
pub mod delivery;
pub mod metrics;
pub mod redact;
pub mod refusal;
pub mod reply;
pub mod signature;
pub mod store;
pub mod unflatten;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::{Limits, Settings, Source};
use crate::spool::NewMessage;
use auth::{ApiKey, RequestView, UrlToken, Verifier};
use refusal::{Peer, Seen};
use reply::ReceiveError;
use store::Store;

/// A configured source with its verifiers: every one runs on every delivery.
pub struct SourceRuntime {
    pub source: Source,
    pub verifiers: Vec<Arc<dyn Verifier>>,
    secret_headers: Vec<String>,
    secret_params: Vec<String>,
}

impl SourceRuntime {
    pub fn new(source: Source) -> SourceRuntime {
        let mut verifiers: Vec<Arc<dyn Verifier>> = Vec::new();
        if !source.api_keys.is_empty() {
            verifiers.push(Arc::new(ApiKey {
                header: source.api_key_header.clone(),
                keys: source.api_keys.clone(),
            }));
        }
        if !source.url_tokens.is_empty() {
            verifiers.push(Arc::new(UrlToken {
                param: source.token_param.clone(),
                tokens: source.url_tokens.clone(),
            }));
        }
        if let Some(sig) = &source.signature {
            // Built when the settings were: a setting that could not be built never got here.
            verifiers.push(sig.verifier());
        }
        let secret_headers = verifiers.iter().flat_map(|v| v.secret_headers()).collect();
        let secret_params = verifiers
            .iter()
            .flat_map(|v| v.secret_query_params())
            .collect();
        SourceRuntime {
            source,
            verifiers,
            secret_headers,
            secret_params,
        }
    }
}

pub struct AppState {
    pub sources: BTreeMap<String, SourceRuntime>,
    /// Where accepted deliveries go: the spool, or the SQS queue.
    pub store: Store,
    pub metrics: metrics::Metrics,
    pub max_body_bytes: usize,
    /// `max_fields_per_message`, `max_messages_per_delivery`.
    pub bounds: body::Bounds,
    /// Large bodies whose pipeline may run at once ([`delivery`]).
    pub body_slots: Arc<Semaphore>,
    pub max_spool_bytes: u64,
    pub retry_after_seconds: u64,
    pub limits: Limits,
}

impl AppState {
    pub fn new(settings: &Settings, store: Store) -> AppState {
        AppState {
            metrics: metrics::Metrics::new(settings.sources.keys()),
            sources: settings
                .sources
                .values()
                .map(|s| (s.name.clone(), SourceRuntime::new(s.clone())))
                .collect(),
            store,
            max_body_bytes: settings.max_body_bytes,
            bounds: settings.bounds,
            body_slots: delivery::body_slots(),
            max_spool_bytes: settings.max_spool_bytes,
            retry_after_seconds: settings.retry_after_seconds,
            limits: settings.limits,
        }
    }
}

/// The receiver's routes, apart from any socket: `serve` runs them on a listener, the tests call
/// them directly (`tests/integration/app.rs`).
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .route("/webhooks/{source}", get(receive_get).post(receive_post))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

/// Any path no route serves: the JSON error shape, not an empty 404. A trailing slash is not
/// taken as the path without it: one URL per source keeps logs, metrics and proxy rules
/// (`location /webhooks/`) unambiguous, and the reply names the URL to configure instead.
async fn not_found(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let hint = path
        .strip_suffix('/')
        .filter(|p| p.starts_with("/webhooks/") && p.len() > "/webhooks/".len())
        .map(str::to_owned);
    let err = ReceiveError::NotFound { path, hint };
    refuse_unrouted(&state, &request, err)
}

/// A route that exists, asked with a method it does not serve (PUT on a webhook URL, POST on
/// `/healthz`): 405 in the JSON error shape; the router adds the `Allow` header.
async fn method_not_allowed(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let err = ReceiveError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    refuse_unrouted(&state, &request, err)
}

/// The answer to a request no source's route took (404, 405), recorded in the ledger.
fn refuse_unrouted(state: &AppState, request: &Request, err: ReceiveError) -> Response {
    refused(
        state,
        "-",
        request.headers(),
        request.extensions(),
        &err,
        Seen::default(),
    );
    respond(state, "-", Err(err))
}

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then finishes the requests in flight and returns.
///
/// A hand-written accept loop rather than `axum::serve`, for the connection-level defences:
/// a cap on open connections, on the request head's size and header count, and on the time a
/// client may take to send its head (slowloris).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits;
    let service = TowerToHyperService::new(app(state));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer rides in each request's extensions, for the ledger of refusals.
        let svc = service.clone();
        let with_peer = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(Peer(peer));
            hyper::service::Service::call(&svc, req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), with_peer));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    Ok(())
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(state.store.spool_stats(), state.store.refusals_unrecorded()),
    )
        .into_response()
}

async fn receive_post(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    // The request itself rather than a `HeaderMap` extractor, which clones every header.
    let (parts, body) = request.into_parts();
    let mut seen = Seen::default();
    let result = receive(
        &state,
        Method::POST,
        &source,
        query,
        &parts.headers,
        body,
        &mut seen,
    )
    .await;
    if let Err(e) = &result {
        refused(&state, &source, &parts.headers, &parts.extensions, e, seen);
    }
    respond(&state, &source, result)
}

async fn receive_get(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let mut seen = Seen::default();
    let result = receive(
        &state,
        Method::GET,
        &source,
        query,
        &parts.headers,
        Body::empty(),
        &mut seen,
    )
    .await;
    if let Err(e) = &result {
        refused(&state, &source, &parts.headers, &parts.extensions, e, seen);
    }
    respond(&state, &source, result)
}

/// The reply, and one log line per request at info: stored (source, bytes, message ids) or
/// refused (source, status, code), so an operator sees deliveries arrive without a debugger.
fn respond(state: &AppState, source: &str, result: Result<Accepted, ReceiveError>) -> Response {
    match result {
        Ok(accepted) => {
            // An array body of thousands of messages: its first and last id bound the range.
            let ids = match accepted.message_ids.as_deref() {
                Some([first, .., last]) if accepted.messages > 3 => format!("{first}..{last}"),
                Some(ids) => ids.join(","),
                None => accepted.message_id.clone().unwrap_or_default(),
            };
            tracing::info!(
                source,
                status = 200,
                bytes = accepted.bytes,
                messages = accepted.messages,
                duplicate = accepted.duplicate,
                message_ids = %ids,
                "delivery stored"
            );
            Json(Reply {
                data: accepted,
                success: true,
            })
            .into_response()
        }
        Err(e) => {
            state.metrics.rejected(e.code());
            // A credential typed into the URL's path (a token where the source goes) is masked
            // here as in the ledger: logs are kept and shipped where secrets must not go.
            let source = refusal::redact(source, &credentials(state));
            tracing::info!(
                source = %source,
                status = e.status().as_u16(),
                code = e.code(),
                "delivery refused"
            );
            e.into_response()
        }
    }
}

/// Hands a refusal to the ledger ([`refusal`]), with the source's delivery id header.
fn refused(
    state: &AppState,
    source: &str,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    err: &ReceiveError,
    seen: Seen,
) {
    let id_header = state
        .sources
        .get(source)
        .and_then(|s| s.source.delivery_id_header.as_deref());
    let credentials = credentials(state);
    let known = refusal::Known {
        delivery_id_header: id_header,
        credentials: &credentials,
    };
    refusal::record(&state.store, &known, source, headers, extensions, err, seen);
}

/// Every source's URL tokens and API keys: masked wherever a refused request is kept or logged.
fn credentials(state: &AppState) -> Vec<&str> {
    state
        .sources
        .values()
        .flat_map(|s| s.source.url_tokens.iter().chain(&s.source.api_keys))
        .map(String::as_str)
        .collect()
}

/// `{"data":{...},"success":true}`.
#[derive(Serialize)]
struct Reply {
    data: Accepted,
    success: bool,
}

/// What the sender is told of a stored (or duplicate) delivery.
#[derive(Serialize)]
struct Accepted {
    /// Present (true) only for a delivery id seen within the dedupe window: nothing was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    /// The first message's id (`null` for an empty array).
    message_id: Option<String>,
    /// Every message's id, for a JSON array body only.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_ids: Option<Vec<String>>,
    /// RFC 3339, microseconds, UTC: the `_sdc_received_at` of the messages.
    received_at: String,
    /// For the log line only: the body's bytes (after decompression) and its message count.
    #[serde(skip)]
    bytes: usize,
    #[serde(skip)]
    messages: usize,
}

async fn receive(
    state: &AppState,
    method: Method,
    source: &str,
    raw_query: Option<String>,
    headers: &HeaderMap,
    body: Body,
    seen: &mut Seen,
) -> Result<Accepted, ReceiveError> {
    let received_at_us = singer::clock::now_micros();
    let rt = state
        .sources
        .get(source)
        .ok_or_else(|| ReceiveError::UnknownSource(source.to_owned()))?;
    if method == Method::GET && !rt.source.allow_get {
        return Err(ReceiveError::GetNotAllowed(source.to_owned()));
    }
    let query = capture::parse_query(raw_query.as_deref());
    let view = RequestView {
        headers,
        query: &query,
        now: received_at_us / 1_000_000,
    };
    for v in &rt.verifiers {
        v.verify_request(&view)?;
    }
    state
        .store
        .check(state.max_spool_bytes, state.retry_after_seconds)?;

    let texts: Vec<String> = if method == Method::GET {
        // A GET has no body, but a signed source's verifiers still run on it (over the empty
        // body): fail closed, an unsigned GET is no way around a source's signature.
        for v in &rt.verifiers {
            v.verify_body(&view, &[])?;
        }
        // valmi style: the query parameters are the payload (credentials left out).
        let mut obj = capture::query_object(&query, &[]);
        if let serde_json::Value::Object(map) = &mut obj {
            for secret in &rt.secret_params {
                map.remove(secret);
            }
            // The sender's nested payload again, when it flattened one (`unflatten_query`).
            if let Some(u) = &rt.source.unflatten_query {
                // Never into a field the tap sets: it would be dropped as forged, or pass for
                // the tap's own (`_sdc_deleted_at`, which `hard_delete` acts on).
                *map = u.apply(std::mem::take(map), |name| {
                    crate::tap::record::is_reserved(name, true)
                });
            }
        }
        match &rt.source.redact {
            None => vec![obj.to_string()],
            Some(r) => vec![delivery::redacted(r, &obj.to_string())?],
        }
    } else {
        let raw = tokio::time::timeout(
            state.limits.body_read_timeout,
            read_body(body, headers, state.max_body_bytes),
        )
        .await
        .map_err(|_| ReceiveError::Body(body::BodyError::ReadTimeout))??;
        // A refused body of a redacting source is not kept: its raw values must not be stored.
        if rt.source.redact.is_none() {
            seen.body(&raw);
        }
        let body = delivery::Body {
            raw,
            headers,
            query: &query,
            now: view.now,
            verifiers: &rt.verifiers,
            max_body_bytes: state.max_body_bytes,
            bounds: state.bounds,
            redact: rt.source.redact.as_ref(),
        };
        body.messages(&state.body_slots).await?
    };

    // A declared key (read after redaction) wins; without one, the delivery-id headers.
    let delivery_id = rt
        .source
        .dedupe_key
        .as_ref()
        .and_then(|k| k.delivery_id(headers, &texts))
        .or_else(|| capture::delivery_id(headers, rt.source.delivery_id_header.as_deref()));
    let headers_json =
        capture::headers_json(headers, &rt.source.capture_headers, &rt.secret_headers);
    // A GET's parameters are its payload: with redaction they are stored only as the payload.
    let query_json = if method == Method::GET && rt.source.redact.is_some() {
        "{}".to_owned()
    } else {
        capture::query_json(&query, &rt.secret_params)
    };
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let count = texts.len();
    let messages: Vec<NewMessage> = texts
        .into_iter()
        .enumerate()
        .map(|(part, text)| NewMessage {
            source: source.to_owned(),
            received_at_us,
            delivery_id: delivery_id.clone(),
            part: u32::try_from(part).unwrap_or(u32::MAX),
            headers: headers_json.clone(),
            query: query_json.clone(),
            body: text,
        })
        .collect();
    let outcome = if messages.is_empty() {
        Default::default()
    } else {
        state
            .store
            .store(messages, state.retry_after_seconds)
            .await?
    };
    if outcome.duplicate {
        state.metrics.duplicate();
    } else {
        state.metrics.accepted(source, count as u64, bytes as u64);
    }
    let message_id = outcome.message_ids.first().cloned();
    Ok(Accepted {
        duplicate: outcome.duplicate,
        message_id,
        // A single message's id is `message_id`; an array body gets the whole list.
        message_ids: (count != 1).then_some(outcome.message_ids),
        received_at: singer::datetime::format_micros(received_at_us),
        bytes,
        messages: count,
    })
}

/// Reads the body, refusing more than `limit` bytes (checked against Content-Length first, so
/// an honest oversize request is refused before any of it is read).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, ReceiveError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(body::BodyError::TooLarge { limit }.into());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            body::BodyError::TooLarge { limit }.into()
        } else {
            body::BodyError::ReadFailed(inner.to_string()).into()
        }
    })
}
