//! Replies: `{"success":true,"data":{...}}` or `{"success":false,"error":"CODE: detail"}`, with the
//! status that goes with the code. Internal failures are logged, never described to the sender.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::AuthError;
use super::body::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The configured names are not told to the sender (anyone can probe); `serve` logs them
    /// with their URLs at start.
    #[error("UNKNOWN_SOURCE: no source named {0:?}")]
    UnknownSource(String),
    /// A path no route serves (a trailing slash gets the path without it as a hint).
    #[error("NOT_FOUND: no route {path}{}; webhooks go to POST /webhooks/<source>", hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    NotFound { path: String, hint: Option<String> },
    /// A route that exists, with a method it does not serve (the router adds `Allow`).
    #[error("METHOD_NOT_ALLOWED: {method} is not served on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("METHOD_NOT_ALLOWED: GET is not enabled for source {0:?}; POST a JSON body")]
    GetNotAllowed(String),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("SPOOL_FULL: the spool is over its size limit; retry later")]
    SpoolFull { retry_after_seconds: u64 },
    #[error("SPOOL_UNAVAILABLE: the message could not be stored; retry later")]
    SpoolUnavailable,
}

impl ReceiveError {
    /// The code before the colon; also the `reason` label of the rejection metric.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiveError::UnknownSource(_) => "UNKNOWN_SOURCE",
            ReceiveError::NotFound { .. } => "NOT_FOUND",
            ReceiveError::GetNotAllowed(_) | ReceiveError::MethodNotAllowed { .. } => {
                "METHOD_NOT_ALLOWED"
            }
            ReceiveError::Auth(a) => match a {
                AuthError::MissingCredentials(_) => "MISSING_CREDENTIALS",
                AuthError::InvalidCredentials(_) => "INVALID_CREDENTIALS",
                AuthError::MissingSignature(_) => "MISSING_SIGNATURE",
                AuthError::InvalidSignature(_) => "INVALID_SIGNATURE",
                AuthError::TimestampOutOfTolerance(_) => "TIMESTAMP_OUT_OF_TOLERANCE",
            },
            ReceiveError::Body(b) => match b {
                BodyError::Empty => "NO_BODY_PROVIDED",
                BodyError::ReadFailed(_) => "BODY_READ_FAILED",
                BodyError::ReadTimeout => "REQUEST_TIMEOUT",
                BodyError::TooLarge { .. } => "PAYLOAD_TOO_LARGE",
                BodyError::UnsupportedEncoding(_) => "UNSUPPORTED_CONTENT_ENCODING",
                BodyError::InvalidGzip(_) => "INVALID_GZIP",
                BodyError::InvalidJson { .. } => "INVALID_JSON",
                BodyError::UnsupportedType(_) => "UNSUPPORTED_JSON_TYPE",
                BodyError::TooManyFields { .. } => "TOO_MANY_FIELDS",
                BodyError::TooManyMessages { .. } => "TOO_MANY_MESSAGES",
            },
            ReceiveError::SpoolFull { .. } => "SPOOL_FULL",
            ReceiveError::SpoolUnavailable => "SPOOL_UNAVAILABLE",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ReceiveError::UnknownSource(_) | ReceiveError::NotFound { .. } => StatusCode::NOT_FOUND,
            ReceiveError::GetNotAllowed(_) | ReceiveError::MethodNotAllowed { .. } => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ReceiveError::Auth(_) => StatusCode::UNAUTHORIZED,
            // Too many fields or messages is too large a delivery, by another measure than bytes:
            // 413, like the byte limit (a sender splits it; a retry as is cannot succeed).
            ReceiveError::Body(
                BodyError::TooLarge { .. }
                | BodyError::TooManyFields { .. }
                | BodyError::TooManyMessages { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiveError::Body(BodyError::ReadTimeout) => StatusCode::REQUEST_TIMEOUT,
            ReceiveError::Body(BodyError::UnsupportedEncoding(_)) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ReceiveError::Body(_) => StatusCode::BAD_REQUEST,
            ReceiveError::SpoolFull { .. } | ReceiveError::SpoolUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for ReceiveError {
    fn into_response(self) -> Response {
        let body = json!({"success": false, "error": self.to_string()});
        let mut resp = (self.status(), axum::Json(body)).into_response();
        let retry = match &self {
            ReceiveError::SpoolFull {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            ReceiveError::SpoolUnavailable => Some(5),
            _ => None,
        };
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let ReceiveError::GetNotAllowed(_) = &self {
            // The route serves GET for other sources; this source takes POST only.
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}
