//! `tap-webhook serve`: the HTTP receiver.
//!
//! A delivery flows: route → source → credentials (before reading the body) → body read with
//! its limit → decompress → signature check over the raw bytes → split into messages → spool
//! (group-committed, fsync'd) → 200. Nothing is stored unless every step passed, and the 200 is
//! sent only after the spool's commit.

pub mod auth;
pub mod body;
pub mod capture;
pub mod metrics;
pub mod reply;
pub mod signature;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::{Limits, Settings, Source};
use crate::spool::{now_us, NewMessage, SpoolWriter};
use auth::{ApiKey, RequestView, UrlToken, Verifier};
use reply::ReceiveError;

/// A configured source with its verifiers built.
pub struct SourceRuntime {
    pub source: Source,
    pub verifiers: Vec<Box<dyn Verifier>>,
    secret_headers: Vec<String>,
    secret_params: Vec<String>,
}

impl SourceRuntime {
    pub fn new(source: Source) -> SourceRuntime {
        let mut verifiers: Vec<Box<dyn Verifier>> = Vec::new();
        if !source.api_keys.is_empty() {
            verifiers.push(Box::new(ApiKey {
                header: source.api_key_header.clone(),
                keys: source.api_keys.clone(),
            }));
        }
        if !source.url_tokens.is_empty() {
            verifiers.push(Box::new(UrlToken {
                param: source.token_param.clone(),
                tokens: source.url_tokens.clone(),
            }));
        }
        if let Some(sig) = &source.signature {
            // Validated when the settings were built.
            if let Ok(v) = signature::build(sig) {
                verifiers.push(v);
            }
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
    pub spool: SpoolWriter,
    /// The SQS backend (`crate::queue`); `None`: deliveries go to the spool.
    pub queue: Option<crate::queue::QueueSender>,
    pub metrics: metrics::Metrics,
    pub max_body_bytes: usize,
    pub max_spool_bytes: u64,
    pub retry_after_seconds: u64,
    pub limits: Limits,
}

impl AppState {
    pub fn new(settings: &Settings, spool: SpoolWriter) -> AppState {
        AppState {
            metrics: metrics::Metrics::new(settings.sources.keys()),
            sources: settings
                .sources
                .values()
                .map(|s| (s.name.clone(), SourceRuntime::new(s.clone())))
                .collect(),
            spool,
            queue: None,
            max_body_bytes: settings.max_body_bytes,
            max_spool_bytes: settings.max_spool_bytes,
            retry_after_seconds: settings.retry_after_seconds,
            limits: settings.limits,
        }
    }
}

/// The receiver's routes, apart from any socket so tests can call it directly.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .route("/webhooks/{source}", get(receive_get).post(receive_post))
        .with_state(state)
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
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
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
        state.metrics.render(&state.spool.stats),
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
    respond(
        &state,
        receive(&state, Method::POST, &source, query, &parts.headers, body).await,
    )
}

async fn receive_get(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        &state,
        receive(&state, Method::GET, &source, query, &headers, Body::empty()).await,
    )
}

fn respond(state: &AppState, result: Result<Accepted, ReceiveError>) -> Response {
    match result {
        Ok(accepted) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            accepted.to_json(),
        )
            .into_response(),
        Err(e) => {
            state.metrics.rejected(e.code());
            tracing::debug!(code = e.code(), "delivery refused");
            e.into_response()
        }
    }
}

/// What the sender is told of a stored (or duplicate) delivery.
struct Accepted {
    message_ids: Vec<String>,
    received_at_us: i64,
    /// False for a JSON array body: the reply then lists every message id.
    single: bool,
    duplicate: bool,
}

impl Accepted {
    /// `{"data":{...},"success":true}`, written by hand in the order serde_json's sorted maps
    /// gave: `duplicate`, `message_id`, `message_ids`, `received_at`.
    fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + 40 * self.message_ids.len());
        out.push_str("{\"data\":{");
        if self.duplicate {
            out.push_str("\"duplicate\":true,");
        }
        out.push_str("\"message_id\":");
        match self.message_ids.first() {
            Some(id) => push_json_string(&mut out, id),
            None => out.push_str("null"),
        }
        if !self.single {
            out.push_str(",\"message_ids\":[");
            for (i, id) in self.message_ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, id);
            }
            out.push(']');
        }
        out.push_str(",\"received_at\":\"");
        crate::spool::format_us_into(&mut out, self.received_at_us);
        out.push_str("\"},\"success\":true}");
        out
    }
}

/// Appends `s` as a JSON string (message ids are plain ASCII; anything else goes through
/// serde_json).
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

async fn receive(
    state: &AppState,
    method: Method,
    source: &str,
    raw_query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, ReceiveError> {
    let received_at_us = now_us();
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
    if state.spool.stats.bytes.load(Ordering::Relaxed) > state.max_spool_bytes {
        return Err(ReceiveError::SpoolFull {
            retry_after_seconds: state.retry_after_seconds,
        });
    }

    let payload_query;
    let raw;
    let decoded;
    let texts: Vec<&str> = if method == Method::GET {
        // valmi style: the query parameters are the payload (credentials left out).
        let mut obj = capture::query_object(&query, &[]);
        if let Some(map) = obj.as_object_mut() {
            for secret in &rt.secret_params {
                map.remove(secret);
            }
        }
        payload_query = obj.to_string();
        vec![payload_query.as_str()]
    } else {
        raw = tokio::time::timeout(
            state.limits.body_read_timeout,
            read_body(body, headers, state.max_body_bytes),
        )
        .await
        .map_err(|_| ReceiveError::Body(body::BodyError::ReadTimeout))??;
        for v in &rt.verifiers {
            v.verify_body(&view, &raw)?;
        }
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        decoded = body::decode_borrowed(&raw, encoding, state.max_body_bytes)?;
        body::split(&decoded)?
    };

    let delivery_id = capture::delivery_id(headers, rt.source.delivery_id_header.as_deref());
    let headers_json =
        capture::headers_json(headers, &rt.source.capture_headers, &rt.secret_headers);
    let query_json = capture::query_json(&query, &rt.secret_params);
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
            body: text.to_owned(),
        })
        .collect();
    let outcome = if messages.is_empty() {
        Default::default()
    } else if let Some(queue) = &state.queue {
        queue.store(messages).await?
    } else {
        state.spool.write(messages).await.map_err(|e| {
            tracing::error!(error = %e, source, "storing a delivery failed");
            ReceiveError::SpoolUnavailable
        })?
    };
    if outcome.duplicate {
        state.metrics.duplicate();
    } else {
        state.metrics.accepted(source, count as u64, bytes as u64);
    }
    Ok(Accepted {
        message_ids: outcome.message_ids,
        received_at_us,
        single: count == 1,
        duplicate: outcome.duplicate,
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
