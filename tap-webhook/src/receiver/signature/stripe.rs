//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]`, an HMAC-SHA256 of `"{t}.{body}"`
//! keyed by the whole secret string (not decoded).

use super::mac::{check_timestamp, header_value, hmac, verdict, Algorithm};
use crate::receiver::auth::{AuthError, RequestView, Verifier};

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]`, keyed by the whole secret string.
pub struct Stripe {
    pub secrets: Vec<String>,
    pub tolerance: i64,
}

impl Verifier for Stripe {
    fn verify_body(&self, req: &RequestView<'_>, body: &[u8]) -> Result<(), AuthError> {
        let h = header_value(req, &["stripe-signature"]).ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, view};
    use super::*;

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
    fn a_timestamp_at_the_ends_of_i64_is_out_of_tolerance_not_a_panic() {
        let v = Stripe {
            secrets: vec!["whsec_test_secret".into()],
            tolerance: 300,
        };
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        for (t, now) in [
            ("-9223372036854775808", 1700000000),
            ("9223372036854775807", -1),
        ] {
            let h = headers(&[("stripe-signature", &format!("t={t},v1=00ff"))]);
            assert!(
                matches!(
                    v.verify_body(&view(&h, now), body),
                    Err(AuthError::TimestampOutOfTolerance(_))
                ),
                "{t}"
            );
        }
    }
}
