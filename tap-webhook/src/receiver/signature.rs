//! Provider signature schemes, each a [`Verifier`] over the raw body bytes as received.
//!
//! Formulas (BRIEF §4): Standard Webhooks / Svix sign `"{id}.{timestamp}.{body}"` with the
//! base64-decoded `whsec_` secret; Stripe signs `"{t}.{body}"` with the whole secret string;
//! GitHub and Shopify sign the body alone; the generic scheme is configurable. Any listed
//! signature may match any listed secret (rotation); comparisons are constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::auth::{AuthError, RequestView, Verifier};
use crate::settings::{SignatureConfig, SignatureScheme};

/// Standard Webhooks' and Stripe's default replay window.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

pub fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            // HMAC accepts keys of any length; new_from_slice cannot fail.
            let mut mac = match <Hmac<$d> as Mac>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return Vec::new(),
            };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(Sha256),
        Algorithm::Sha512 => run!(Sha512),
    }
}

fn header<'a>(req: &'a RequestView<'_>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| req.headers.get(*n)?.to_str().ok())
        .map(str::trim)
}

fn check_timestamp(ts: &str, now: i64, tolerance: i64) -> Result<i64, AuthError> {
    let t: i64 = ts.trim().parse().map_err(|_| {
        AuthError::InvalidSignature(format!("timestamp {ts:?} is not Unix seconds"))
    })?;
    if (now - t).abs() > tolerance {
        return Err(AuthError::TimestampOutOfTolerance(format!(
            "timestamp is {}s from now; at most {tolerance}s is accepted",
            now - t
        )));
    }
    Ok(t)
}

/// Accepts when any given signature equals any expected one (one per secret), comparing every
/// pair in constant time so the rotation list leaks nothing by timing.
fn verdict(expected: &[Vec<u8>], given: &[Vec<u8>]) -> Result<(), AuthError> {
    let mut found = false;
    for e in expected {
        for g in given {
            found |= bool::from(e.as_slice().ct_eq(g.as_slice()));
        }
    }
    if found {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature("no signature matches".into()))
    }
}

/// Standard Webhooks and Svix (`webhook-*` or `svix-*` headers, `whsec_` secrets).
pub struct StandardWebhooks {
    /// Decoded keys.
    pub keys: Vec<Vec<u8>>,
    pub tolerance: i64,
}

impl StandardWebhooks {
    pub fn new(secrets: &[String], tolerance: i64) -> Result<Self, String> {
        let keys = secrets
            .iter()
            .map(|s| {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                B64.decode(b64)
                    .map_err(|_| "a Standard Webhooks secret is base64 after `whsec_`".to_owned())
            })
            .collect::<Result<_, _>>()?;
        Ok(StandardWebhooks { keys, tolerance })
    }
}

impl Verifier for StandardWebhooks {
    fn verify_body(&self, req: &RequestView<'_>, body: &[u8]) -> Result<(), AuthError> {
        let missing = |h: &str| AuthError::MissingSignature(format!("header {h} is required"));
        let id = header(req, &["webhook-id", "svix-id"]).ok_or_else(|| missing("webhook-id"))?;
        let ts = header(req, &["webhook-timestamp", "svix-timestamp"])
            .ok_or_else(|| missing("webhook-timestamp"))?;
        let sigs = header(req, &["webhook-signature", "svix-signature"])
            .ok_or_else(|| missing("webhook-signature"))?;
        check_timestamp(ts, req.now, self.tolerance)?;
        let given: Vec<Vec<u8>> = sigs
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| B64.decode(b).ok())
            .collect();
        if given.is_empty() {
            return Err(AuthError::InvalidSignature(
                "no v1 signature in webhook-signature".into(),
            ));
        }
        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| {
                hmac(
                    Algorithm::Sha256,
                    k,
                    &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
                )
            })
            .collect();
        verdict(&expected, &given)
    }

    fn secret_headers(&self) -> Vec<String> {
        vec!["webhook-signature".into(), "svix-signature".into()]
    }
}

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]`, keyed by the whole secret string.
pub struct Stripe {
    pub secrets: Vec<String>,
    pub tolerance: i64,
}

impl Verifier for Stripe {
    fn verify_body(&self, req: &RequestView<'_>, body: &[u8]) -> Result<(), AuthError> {
        let h = header(req, &["stripe-signature"]).ok_or_else(|| {
            AuthError::MissingSignature("header Stripe-Signature is required".into())
        })?;
        let mut ts = None;
        let mut given = Vec::new();
        for item in h.split(',') {
            match item.trim().split_once('=') {
                Some(("t", v)) => ts = Some(v),
                Some(("v1", v)) => given.extend(hex::decode(v).ok()),
                _ => {}
            }
        }
        let ts = ts.ok_or_else(|| {
            AuthError::InvalidSignature("Stripe-Signature has no t= timestamp".into())
        })?;
        check_timestamp(ts, req.now, self.tolerance)?;
        if given.is_empty() {
            return Err(AuthError::InvalidSignature(
                "Stripe-Signature has no v1= signature".into(),
            ));
        }
        let expected: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| {
                hmac(
                    Algorithm::Sha256,
                    s.as_bytes(),
                    &[ts.as_bytes(), b".", body],
                )
            })
            .collect();
        verdict(&expected, &given)
    }

    fn secret_headers(&self) -> Vec<String> {
        vec!["stripe-signature".into()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// A signature of the body (or of a templated signed content) in one header: GitHub, Shopify,
/// and any provider configured by hand.
pub struct HeaderHmac {
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Stripped from the header value before decoding (`sha256=` for GitHub).
    pub prefix: String,
    pub secrets: Vec<String>,
    /// Header holding a Unix timestamp, checked against `tolerance` when set.
    pub timestamp_header: Option<String>,
    pub tolerance: i64,
    /// What is signed: `{body}` and `{timestamp}` are replaced; default `{body}`.
    pub signed_content: String,
    /// A second header accepted in place of `header` (GitHub's legacy sha1, when enabled).
    pub legacy: Option<Box<HeaderHmac>>,
}

impl HeaderHmac {
    pub fn github(secrets: Vec<String>, allow_sha1: bool) -> HeaderHmac {
        let legacy = allow_sha1.then(|| {
            Box::new(HeaderHmac {
                header: "x-hub-signature".into(),
                algorithm: Algorithm::Sha1,
                prefix: "sha1=".into(),
                ..HeaderHmac::github(secrets.clone(), false)
            })
        });
        HeaderHmac {
            header: "x-hub-signature-256".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: "sha256=".into(),
            secrets,
            timestamp_header: None,
            tolerance: DEFAULT_TOLERANCE_SECONDS,
            signed_content: "{body}".into(),
            legacy,
        }
    }

    pub fn shopify(secrets: Vec<String>) -> HeaderHmac {
        HeaderHmac {
            header: "x-shopify-hmac-sha256".into(),
            encoding: Encoding::Base64,
            prefix: String::new(),
            ..HeaderHmac::github(secrets, false)
        }
    }

    fn content(&self, ts: Option<&str>, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 32);
        let mut rest = self.signed_content.as_str();
        while let Some(i) = rest.find('{') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("{body}") {
                out.extend_from_slice(body);
                rest = r;
            } else if let Some(r) = after.strip_prefix("{timestamp}") {
                out.extend_from_slice(ts.unwrap_or_default().as_bytes());
                rest = r;
            } else {
                out.push(b'{');
                rest = &after[1..];
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }
}

impl Verifier for HeaderHmac {
    fn verify_body(&self, req: &RequestView<'_>, body: &[u8]) -> Result<(), AuthError> {
        let Some(value) = header(req, &[self.header.as_str()]) else {
            if let Some(legacy) = &self.legacy {
                if req.headers.contains_key(legacy.header.as_str()) {
                    return legacy.verify_body(req, body);
                }
            }
            return Err(AuthError::MissingSignature(format!(
                "header {} is required",
                self.header
            )));
        };
        let ts = match &self.timestamp_header {
            Some(h) => {
                let ts = header(req, &[h.as_str()]).ok_or_else(|| {
                    AuthError::MissingSignature(format!("header {h} is required"))
                })?;
                check_timestamp(ts, req.now, self.tolerance)?;
                Some(ts)
            }
            None => None,
        };
        let given: Vec<Vec<u8>> = value
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let s = s.strip_prefix(self.prefix.as_str())?;
                match self.encoding {
                    Encoding::Hex => hex::decode(s).ok(),
                    Encoding::Base64 => B64.decode(s).ok(),
                }
            })
            .collect();
        if given.is_empty() {
            return Err(AuthError::InvalidSignature(format!(
                "header {} holds no well-formed signature",
                self.header
            )));
        }
        let content = self.content(ts, body);
        let expected: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| hmac(self.algorithm, s.as_bytes(), &[&content]))
            .collect();
        verdict(&expected, &given)
    }

    fn secret_headers(&self) -> Vec<String> {
        let mut h = vec![self.header.clone()];
        if let Some(l) = &self.legacy {
            h.push(l.header.clone());
        }
        h
    }
}

/// Builds the verifier a source's `signature` setting describes.
pub fn build(c: &SignatureConfig) -> Result<Box<dyn Verifier>, String> {
    if c.secrets.is_empty() || c.secrets.iter().any(String::is_empty) {
        return Err("`secrets` must list at least one non-empty secret".into());
    }
    let tolerance = c.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    if tolerance < 1 {
        return Err("`tolerance_seconds` must be at least 1".into());
    }
    let only_hmac = [
        ("header", c.header.is_some()),
        ("algorithm", c.algorithm.is_some()),
        ("encoding", c.encoding.is_some()),
        ("prefix", c.prefix.is_some()),
        ("timestamp_header", c.timestamp_header.is_some()),
        ("signed_content", c.signed_content.is_some()),
    ];
    if c.scheme != SignatureScheme::Hmac {
        if let Some((name, _)) = only_hmac.iter().find(|(_, set)| *set) {
            return Err(format!("`{name}` applies to the `hmac` scheme only"));
        }
    }
    Ok(match c.scheme {
        SignatureScheme::StandardWebhooks | SignatureScheme::Svix => {
            Box::new(StandardWebhooks::new(&c.secrets, tolerance)?)
        }
        SignatureScheme::Stripe => Box::new(Stripe {
            secrets: c.secrets.clone(),
            tolerance,
        }),
        SignatureScheme::Github => Box::new(HeaderHmac::github(
            c.secrets.clone(),
            c.allow_sha1.unwrap_or(false),
        )),
        SignatureScheme::Shopify => Box::new(HeaderHmac::shopify(c.secrets.clone())),
        SignatureScheme::Hmac => {
            let header = c
                .header
                .clone()
                .ok_or("`header` is required for the `hmac` scheme")?
                .to_ascii_lowercase();
            let algorithm = match c.algorithm.as_deref().unwrap_or("sha256") {
                "sha1" => Algorithm::Sha1,
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                other => return Err(format!("unknown algorithm {other:?}")),
            };
            let encoding = match c.encoding.as_deref().unwrap_or("hex") {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                other => return Err(format!("unknown encoding {other:?}")),
            };
            Box::new(HeaderHmac {
                header,
                algorithm,
                encoding,
                prefix: c.prefix.clone().unwrap_or_default(),
                secrets: c.secrets.clone(),
                timestamp_header: c.timestamp_header.as_ref().map(|h| h.to_ascii_lowercase()),
                tolerance,
                signed_content: c.signed_content.clone().unwrap_or_else(|| "{body}".into()),
                legacy: None,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn view(h: &HeaderMap, now: i64) -> RequestView<'_> {
        RequestView {
            headers: h,
            query: &[],
            now,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn standard_webhooks_vector_rotation_and_rejections() {
        let v = StandardWebhooks::new(
            &[
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into(),
            ],
            300,
        )
        .unwrap();
        let ok = |prefix: &str, sig: &str, now: i64, body: &[u8]| {
            let h = headers(&[
                (&format!("{prefix}-id"), "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                (&format!("{prefix}-timestamp"), "1649367553"),
                (&format!("{prefix}-signature"), sig),
            ]);
            v.verify_body(&view(&h, now), body)
        };
        assert_eq!(ok("webhook", SW_SIG, 1649367553, SW_BODY), Ok(()));
        assert_eq!(
            ok(
                "svix",
                &format!("v1,bm9wZQ== {SW_SIG}"),
                1649367853,
                SW_BODY
            ),
            Ok(())
        );
        assert!(matches!(
            ok("webhook", SW_SIG, 1649367553, b"{}"),
            Err(AuthError::InvalidSignature(_))
        ));
        assert!(matches!(
            ok("webhook", SW_SIG, 1649367854, SW_BODY),
            Err(AuthError::TimestampOutOfTolerance(_))
        ));
        assert!(matches!(
            ok("webhook", SW_SIG, 1649367252, SW_BODY),
            Err(AuthError::TimestampOutOfTolerance(_))
        ));
        assert!(matches!(
            ok("webhook", "v2,abc", 1649367553, SW_BODY),
            Err(AuthError::InvalidSignature(_))
        ));
        let h = headers(&[("webhook-id", "x")]);
        assert!(matches!(
            v.verify_body(&view(&h, 0), SW_BODY),
            Err(AuthError::MissingSignature(_))
        ));
    }

    #[test]
    fn stripe_vector() {
        let v = Stripe {
            secrets: vec!["whsec_other".into(), "whsec_test_secret".into()],
            tolerance: 300,
        };
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let sig = "v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
        let h = headers(&[("stripe-signature", &format!("t=1700000000,v1=00ff,{sig}"))]);
        assert_eq!(v.verify_body(&view(&h, 1700000100), body), Ok(()));
        assert!(matches!(
            v.verify_body(&view(&h, 1700000301), body),
            Err(AuthError::TimestampOutOfTolerance(_))
        ));
        assert!(matches!(
            v.verify_body(&view(&h, 1700000000), b"{}"),
            Err(AuthError::InvalidSignature(_))
        ));
        let h = headers(&[("stripe-signature", sig)]);
        assert!(matches!(
            v.verify_body(&view(&h, 1700000000), body),
            Err(AuthError::InvalidSignature(_))
        ));
    }

    #[test]
    fn github_and_shopify() {
        let gh = HeaderHmac::github(vec!["It's a Secret to Everybody".into()], false);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", sig)]);
        assert_eq!(gh.verify_body(&view(&h, 0), b"Hello, World!"), Ok(()));
        assert!(matches!(
            gh.verify_body(&view(&h, 0), b"Hello, World?"),
            Err(AuthError::InvalidSignature(_))
        ));
        let sha1 = hex::encode(hmac(
            Algorithm::Sha1,
            b"It's a Secret to Everybody",
            &[b"Hello, World!"],
        ));
        let legacy = headers(&[("x-hub-signature", &format!("sha1={sha1}"))]);
        assert!(matches!(
            gh.verify_body(&view(&legacy, 0), b"Hello, World!"),
            Err(AuthError::MissingSignature(_))
        ));
        let gh1 = HeaderHmac::github(vec!["It's a Secret to Everybody".into()], true);
        assert_eq!(gh1.verify_body(&view(&legacy, 0), b"Hello, World!"), Ok(()));

        let shop = HeaderHmac::shopify(vec!["shpss_secret".into()]);
        let b64 = B64.encode(hmac(Algorithm::Sha256, b"shpss_secret", &[b"{\"id\":1}"]));
        let h = headers(&[("x-shopify-hmac-sha256", &b64)]);
        assert_eq!(shop.verify_body(&view(&h, 0), b"{\"id\":1}"), Ok(()));
        let h = headers(&[("x-shopify-hmac-sha256", "not base64!")]);
        assert!(matches!(
            shop.verify_body(&view(&h, 0), b"{\"id\":1}"),
            Err(AuthError::InvalidSignature(_))
        ));
    }

    #[test]
    fn generic_hmac_with_timestamp_template() {
        let v = HeaderHmac {
            header: "x-sig".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "v0=".into(),
            secrets: vec!["generic-secret".into()],
            timestamp_header: Some("x-ts".into()),
            tolerance: 60,
            signed_content: "v0:{timestamp}:{body}".into(),
            legacy: None,
        };
        let sig = B64.encode(hmac(Algorithm::Sha512, b"generic-secret", &[b"v0:1000:{}"]));
        let h = headers(&[("x-sig", &format!("v0={sig}")), ("x-ts", "1000")]);
        assert_eq!(v.verify_body(&view(&h, 1030), b"{}"), Ok(()));
        assert!(matches!(
            v.verify_body(&view(&h, 1061), b"{}"),
            Err(AuthError::TimestampOutOfTolerance(_))
        ));
        let h = headers(&[("x-sig", &format!("v0={sig}"))]);
        assert!(matches!(
            v.verify_body(&view(&h, 1000), b"{}"),
            Err(AuthError::MissingSignature(_))
        ));
    }
}
