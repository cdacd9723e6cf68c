//! A signature in one header: GitHub (`X-Hub-Signature-256`, legacy SHA-1 when enabled),
//! Shopify (`X-Shopify-Hmac-Sha256`), and the generic HMAC configured by hand (header,
//! algorithm, encoding, prefix, timestamp header, signed-content template).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::mac::{
    check_timestamp, header_value, hmac, verdict, Algorithm, DEFAULT_TOLERANCE_SECONDS,
};
use crate::receiver::auth::{AuthError, RequestView, Verifier};

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
        let Some(value) = header_value(req, &[self.header.as_str()]) else {
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
                let ts = header_value(req, &[h.as_str()]).ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, view};
    use super::*;

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
        // A hostile timestamp at the ends of i64: out of tolerance, not an overflow.
        for (ts, now) in [("-9223372036854775808", 1000), ("9223372036854775807", -1)] {
            let h = headers(&[("x-sig", &format!("v0={sig}")), ("x-ts", ts)]);
            assert!(
                matches!(
                    v.verify_body(&view(&h, now), b"{}"),
                    Err(AuthError::TimestampOutOfTolerance(_))
                ),
                "{ts}"
            );
        }
    }
}
