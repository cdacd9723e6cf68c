//! Authentication and verification of deliveries, one [`Verifier`] per scheme.
//!
//! A source holds a list of verifiers and a delivery must pass every one. Credential schemes
//! (API key header, URL token) check before the body is read, so unauthenticated senders cannot
//! make us buffer or decompress; signature schemes check the raw body afterwards. Secrets are
//! compared in constant time and never appear in logs or replies.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// What a verifier sees of a request.
pub struct RequestView<'a> {
    pub headers: &'a HeaderMap,
    /// Decoded query parameters, in order.
    pub query: &'a [(String, String)],
    /// Unix seconds at receipt, for timestamp tolerances.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("MISSING_CREDENTIALS: {0}")]
    MissingCredentials(String),
    #[error("INVALID_CREDENTIALS: {0}")]
    InvalidCredentials(String),
    #[error("MISSING_SIGNATURE: {0}")]
    MissingSignature(String),
    #[error("INVALID_SIGNATURE: {0}")]
    InvalidSignature(String),
    #[error("TIMESTAMP_OUT_OF_TOLERANCE: {0}")]
    TimestampOutOfTolerance(String),
}

pub trait Verifier: Send + Sync {
    /// Checks what is known before the body is read (headers, query).
    fn verify_request(&self, _req: &RequestView<'_>) -> Result<(), AuthError> {
        Ok(())
    }

    /// Checks the raw body bytes exactly as received.
    fn verify_body(&self, _req: &RequestView<'_>, _body: &[u8]) -> Result<(), AuthError> {
        Ok(())
    }

    /// Lower-case header names that carry secrets or signatures: never stored in clear.
    fn secret_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Query parameters that carry secrets: never stored in clear.
    fn secret_query_params(&self) -> Vec<String> {
        Vec::new()
    }
}

/// True when `given` equals any of `accepted`; each comparison takes time independent of where
/// the bytes differ, and every candidate is compared.
pub fn matches_any(given: &[u8], accepted: &[String]) -> bool {
    accepted.iter().fold(false, |found, a| {
        found | bool::from(a.as_bytes().ct_eq(given))
    })
}

/// Nekt style: an API key in a configurable header.
pub struct ApiKey {
    pub header: String,
    pub keys: Vec<String>,
}

impl Verifier for ApiKey {
    fn verify_request(&self, req: &RequestView<'_>) -> Result<(), AuthError> {
        let Some(value) = req.headers.get(self.header.as_str()) else {
            return Err(AuthError::MissingCredentials(format!(
                "header {} is required",
                self.header
            )));
        };
        let value = value.as_bytes();
        // `Authorization: Bearer <key>` is how many senders put a key in that header.
        let value = value.strip_prefix(b"Bearer ").unwrap_or(value);
        if matches_any(value, &self.keys) {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials(format!(
                "header {} does not hold a valid key",
                self.header
            )))
        }
    }

    fn secret_headers(&self) -> Vec<String> {
        vec![self.header.clone()]
    }
}

/// Stitch and Kondado style: a token in the URL's query string; several live tokens so one can
/// be rotated out and revoked.
pub struct UrlToken {
    pub param: String,
    pub tokens: Vec<String>,
}

impl Verifier for UrlToken {
    fn verify_request(&self, req: &RequestView<'_>) -> Result<(), AuthError> {
        let mut given = req.query.iter().filter(|(k, _)| *k == self.param);
        let Some((_, value)) = given.next() else {
            return Err(AuthError::MissingCredentials(format!(
                "query parameter {} is required",
                self.param
            )));
        };
        if given.next().is_some() {
            return Err(AuthError::InvalidCredentials(format!(
                "query parameter {} is given more than once",
                self.param
            )));
        }
        if matches_any(value.as_bytes(), &self.tokens) {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials(format!(
                "query parameter {} does not hold a valid token",
                self.param
            )))
        }
    }

    fn secret_query_params(&self) -> Vec<String> {
        vec![self.param.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(headers: &'a HeaderMap, query: &'a [(String, String)]) -> RequestView<'a> {
        RequestView {
            headers,
            query,
            now: 0,
        }
    }

    #[test]
    fn api_key_accepts_any_listed_key() {
        let v = ApiKey {
            header: "x-api-key".into(),
            keys: vec!["old-key-123".into(), "new-key-456".into()],
        };
        let mut h = HeaderMap::new();
        assert!(matches!(
            v.verify_request(&view(&h, &[])),
            Err(AuthError::MissingCredentials(_))
        ));
        h.insert("x-api-key", "new-key-456".parse().unwrap());
        assert!(v.verify_request(&view(&h, &[])).is_ok());
        h.insert("x-api-key", "Bearer old-key-123".parse().unwrap());
        assert!(v.verify_request(&view(&h, &[])).is_ok());
        h.insert("x-api-key", "new-key-45".parse().unwrap());
        let e = v.verify_request(&view(&h, &[])).unwrap_err();
        assert!(
            !e.to_string().contains("new-key"),
            "secrets never in errors: {e}"
        );
    }

    #[test]
    fn url_token_rotation_and_revocation() {
        let h = HeaderMap::new();
        let v = UrlToken {
            param: "token".into(),
            tokens: vec!["tok-aaaaaaaa".into()],
        };
        let q = |t: &str| vec![("token".to_owned(), t.to_owned())];
        assert!(v.verify_request(&view(&h, &q("tok-aaaaaaaa"))).is_ok());
        assert!(matches!(
            v.verify_request(&view(&h, &q("tok-bbbbbbbb"))),
            Err(AuthError::InvalidCredentials(_))
        ));
        assert!(matches!(
            v.verify_request(&view(&h, &[])),
            Err(AuthError::MissingCredentials(_))
        ));
        let twice = [q("tok-aaaaaaaa"), q("x")].concat();
        assert!(v.verify_request(&view(&h, &twice)).is_err());
    }
}
