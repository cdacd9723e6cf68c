//! The refusal hook: what of a refused request goes to the spool's ledger
//! ([`crate::spool::ledger`]). Called after the reply is decided, it only builds a small record
//! and queues it without waiting; the accepted path does not pass here.
//!
//! Kept: the source from the path, status, code, the reply's reason, size, the peer address,
//! the user agent and the delivery id. Never a credential: no other header, no query string
//! (URL tokens live there), and the body only when it is the problem (`INVALID_JSON`,
//! `UNSUPPORTED_JSON_TYPE`), cut to 4 KiB. `SPOOL_FULL` / `SPOOL_UNAVAILABLE` are not recorded:
//! the spool that refuses to store is not written to.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, Extensions, HeaderMap};

use super::capture;
use super::reply::ReceiveError;
use super::store::Store;
use crate::spool::ledger::{self, Refusal};

/// The connection's peer, put in each request's extensions by `serve`'s accept loop. Proxy
/// headers (`X-Forwarded-For`) are not trusted: no setting says a proxy is in front.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// What the receiver saw of the body before it refused it.
#[derive(Debug, Default)]
pub struct Seen {
    /// Bytes read (as received, before decompression).
    pub size: Option<u64>,
    /// The first bytes of the body (a cheap slice of the buffer read), for the codes that keep it.
    pub head: Option<Bytes>,
}

impl Seen {
    /// Notes a body just read; costs a reference count, not a copy.
    pub fn body(&mut self, raw: &Bytes) {
        self.size = Some(raw.len() as u64);
        self.head = Some(raw.slice(..raw.len().min(ledger::MAX_BODY_BYTES)));
    }
}

/// What the settings tell the refusal hook.
pub struct Known<'a> {
    /// The source's configured delivery id header, if any.
    pub delivery_id_header: Option<&'a str>,
    /// Every source's URL tokens and API keys, redacted from the texts that come from the path
    /// (a URL pasted with its `?` encoded, `/webhooks/tok%3Ftoken=…`, names a "source" holding
    /// the token).
    pub credentials: &'a [&'a str],
}

/// Queues the refusal of one request for the ledger (nothing with the SQS backend).
pub fn record(
    store: &Store,
    known: &Known<'_>,
    source: &str,
    headers: &HeaderMap,
    extensions: &Extensions,
    err: &ReceiveError,
    seen: Seen,
) {
    // A spool refusing to store (full, or failed) is not written to for its own refusals:
    // those rows would take the room a prune needs. `/metrics` and the log still count them.
    if !store.keeps_ledger()
        || matches!(
            err,
            ReceiveError::SpoolFull { .. } | ReceiveError::SpoolUnavailable
        )
    {
        return;
    }
    let code = err.code();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let r = Refusal {
        id: 0,
        at_us: singer::clock::now_micros(),
        source: redact(source, known.credentials),
        status: err.status().as_u16(),
        code: code.to_owned(),
        reason: redact(&err.to_string(), known.credentials),
        size: seen.size.or(declared),
        remote: extensions.get::<Peer>().map(|p| p.0.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        delivery_id: capture::delivery_id(headers, known.delivery_id_header),
        body: seen
            .head
            .filter(|_| ledger::keeps_body(code))
            .map(|b| ledger::body_excerpt(&b)),
    };
    store.refused(r);
}

/// `text` with every credential in it replaced by `[REDACTED]`.
pub fn redact(text: &str, credentials: &[&str]) -> String {
    credentials
        .iter()
        .filter(|c| !c.is_empty())
        .fold(text.to_owned(), |t, c| t.replace(c, capture::REDACTED))
}
