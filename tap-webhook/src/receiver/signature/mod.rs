//! Provider signature schemes, each a [`Verifier`] over the raw body bytes as received, one file
//! per scheme: [`standard`] (Standard Webhooks / Svix), [`stripe`], [`header_hmac`] (GitHub, Shopify
//! and the generic HMAC of one header).
//!
//! Formulas (BRIEF §4): Standard Webhooks / Svix sign `"{id}.{timestamp}.{body}"` with the
//! base64-decoded `whsec_` secret; Stripe signs `"{t}.{body}"` with the whole secret string;
//! GitHub and Shopify sign the body alone; the generic scheme is configurable. Any listed
//! signature may match any listed secret (rotation); comparisons are constant time.
//!
//! A source's `signature` setting ([`SignatureConfig`]) is turned into its verifier once, when
//! the settings are validated ([`Signature::build`]): a setting that cannot be built makes the
//! settings invalid, so a receiver never runs a source whose signatures it cannot check.

pub mod header_hmac;
pub mod mac;
pub mod standard;
pub mod stripe;

use std::sync::Arc;

use serde::Deserialize;

use super::auth::Verifier;
pub use header_hmac::{Encoding, HeaderHmac};
pub use mac::{hmac, Algorithm, DEFAULT_TOLERANCE_SECONDS};
pub use standard::StandardWebhooks;
pub use stripe::Stripe;

/// A provider signature to verify, as the `signature` setting of a source spells it.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub scheme: SignatureScheme,
    pub secrets: Vec<String>,
    pub tolerance_seconds: Option<i64>,
    pub allow_sha1: Option<bool>,
    pub header: Option<String>,
    pub algorithm: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    pub timestamp_header: Option<String>,
    pub signed_content: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    StandardWebhooks,
    Svix,
    Stripe,
    Github,
    Shopify,
    Hmac,
}

/// A source's signature verifier, built from its setting when the settings were validated and
/// kept there: the receiver runs it on every delivery of the source.
#[derive(Clone)]
pub struct Signature {
    scheme: SignatureScheme,
    verifier: Arc<dyn Verifier>,
}

/// The scheme only: a verifier holds secrets, which never reach a log.
impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Signature {
    /// Builds the verifier a `signature` setting describes; the error says what is wrong with
    /// the setting (the caller names the source).
    pub fn build(c: &SignatureConfig) -> Result<Signature, String> {
        Ok(Signature {
            scheme: c.scheme,
            verifier: build(c)?,
        })
    }

    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    pub fn verifier(&self) -> Arc<dyn Verifier> {
        self.verifier.clone()
    }
}

fn build(c: &SignatureConfig) -> Result<Arc<dyn Verifier>, String> {
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
            Arc::new(StandardWebhooks::new(&c.secrets, tolerance)?)
        }
        SignatureScheme::Stripe => Arc::new(Stripe {
            secrets: c.secrets.clone(),
            tolerance,
        }),
        SignatureScheme::Github => Arc::new(HeaderHmac::github(
            c.secrets.clone(),
            c.allow_sha1.unwrap_or(false),
        )),
        SignatureScheme::Shopify => Arc::new(HeaderHmac::shopify(c.secrets.clone())),
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
            Arc::new(HeaderHmac {
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
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> SignatureConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn settings_that_cannot_be_built_say_why() {
        let cases = [
            (
                serde_json::json!({"scheme": "standard-webhooks", "secrets": ["whsec_not base64!"]}),
                "base64",
            ),
            (
                serde_json::json!({"scheme": "svix", "secrets": []}),
                "at least one",
            ),
            (
                serde_json::json!({"scheme": "stripe", "secrets": ["s"], "tolerance_seconds": 0}),
                "tolerance_seconds",
            ),
            (
                serde_json::json!({"scheme": "github", "secrets": ["s"], "header": "x"}),
                "`header` applies to the `hmac` scheme only",
            ),
            (
                serde_json::json!({"scheme": "hmac", "secrets": ["s"]}),
                "`header` is required",
            ),
            (
                serde_json::json!({"scheme": "hmac", "secrets": ["s"], "header": "x", "algorithm": "md5"}),
                "unknown algorithm",
            ),
        ];
        for (c, why) in cases {
            let e = Signature::build(&config(c.clone())).unwrap_err();
            assert!(e.contains(why), "{c}: {e}");
        }
        let ok = Signature::build(&config(
            serde_json::json!({"scheme": "github", "secrets": ["s3cr3t-value"]}),
        ))
        .unwrap();
        assert_eq!(ok.scheme(), SignatureScheme::Github);
        assert!(!format!("{ok:?}").contains("s3cr3t"), "{ok:?}");
    }
}
