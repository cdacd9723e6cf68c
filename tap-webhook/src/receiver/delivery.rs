//! A POST's body from bytes to message texts: signatures over the raw bytes, decompression,
//! then the checks and split of [`super::body`], then the source's redaction ([`super::redact`]).
//!
//! That pipeline is CPU work in proportion to the body (tens of MB at most). A small body runs
//! it on the async worker that read it; a larger one runs on tokio's blocking pool, at most
//! [`body_slots`] at a time, so that however many large or hostile bodies arrive at once the
//! async workers stay free: `/healthz` and every other request keep being answered.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use tokio::sync::Semaphore;

use super::auth::{RequestView, Verifier};
use super::body::{self, Bounds};
use super::redact::Redact;
use super::reply::ReceiveError;

/// Bodies up to this size run inline: their pipeline costs well under a millisecond, less than
/// a hand-off to another thread.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// How many large bodies run their pipeline at once: one core is left to the async workers
/// (on 2 cores, one at a time).
pub fn body_slots() -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Arc::new(Semaphore::new(cores.saturating_sub(1).max(1)))
}

/// What the pipeline needs of the request, borrowed from it.
pub struct Body<'a> {
    pub raw: Bytes,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    /// Unix seconds at receipt.
    pub now: i64,
    pub verifiers: &'a [Arc<dyn Verifier>],
    pub max_body_bytes: usize,
    pub bounds: Bounds,
    /// The source's redaction, applied to each message once it passed every check.
    pub redact: Option<&'a Redact>,
}

impl Body<'_> {
    /// Runs the pipeline, inline or on the blocking pool by the body's size; the texts of the
    /// delivery's messages.
    pub async fn messages(self, slots: &Semaphore) -> Result<Vec<String>, ReceiveError> {
        if self.raw.len() <= INLINE_BODY_BYTES {
            return run(&self);
        }
        // Copies of the head to move along (small beside a body this size).
        let (headers, query, verifiers) = (
            self.headers.clone(),
            self.query.to_vec(),
            self.verifiers.to_vec(),
        );
        let (raw, now, max_body_bytes, bounds) =
            (self.raw, self.now, self.max_body_bytes, self.bounds);
        let redact = self.redact.cloned();
        // Waiting for a slot parks this request only; the semaphore is never closed.
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| ReceiveError::SpoolUnavailable)?;
        tokio::task::spawn_blocking(move || {
            run(&Body {
                raw,
                headers: &headers,
                query: &query,
                now,
                verifiers: &verifiers,
                max_body_bytes,
                bounds,
                redact: redact.as_ref(),
            })
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the body pipeline failed");
            Err(ReceiveError::SpoolUnavailable)
        })
    }
}

fn run(b: &Body<'_>) -> Result<Vec<String>, ReceiveError> {
    let view = RequestView {
        headers: b.headers,
        query: b.query,
        now: b.now,
    };
    for v in b.verifiers {
        v.verify_body(&view, &b.raw)?;
    }
    let encoding = b
        .headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let decoded = body::decode_borrowed(&b.raw, encoding, b.max_body_bytes)?;
    let texts = body::split(&decoded, &b.bounds)?.into_iter();
    match b.redact {
        None => Ok(texts.map(str::to_owned).collect()),
        Some(r) => texts.map(|t| redacted(r, t)).collect(),
    }
}

/// A message's text after the source's redaction (a checked JSON object: it cannot fail, but
/// if it did the delivery is refused, never stored unredacted).
pub fn redacted(r: &Redact, text: &str) -> Result<String, ReceiveError> {
    r.apply(text)
        .map(|t| t.into_owned())
        .map_err(|detail| ReceiveError::Body(body::BodyError::InvalidJson { offset: 0, detail }))
}
