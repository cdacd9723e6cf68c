//! Standard Webhooks and Svix: `webhook-*` or `svix-*` headers, `whsec_` secrets (base64 after
//! the prefix), `v1,<base64>` signatures of `"{id}.{timestamp}.{body}"`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::mac::{check_timestamp, header_value, hmac, verdict, Algorithm};
use crate::receiver::auth::{AuthError, RequestView, Verifier};

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
        let id =
            header_value(req, &["webhook-id", "svix-id"]).ok_or_else(|| missing("webhook-id"))?;
        let ts = header_value(req, &["webhook-timestamp", "svix-timestamp"])
            .ok_or_else(|| missing("webhook-timestamp"))?;
        let sigs = header_value(req, &["webhook-signature", "svix-signature"])
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{headers, view};
    use super::*;

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
    fn a_timestamp_at_the_ends_of_i64_is_out_of_tolerance_not_a_panic() {
        let v =
            StandardWebhooks::new(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into()], 300).unwrap();
        for (ts, now) in [
            ("-9223372036854775808", 1649367553),
            ("9223372036854775807", -1),
            ("-9223372036854775807", 1649367553),
        ] {
            let h = headers(&[
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                ("webhook-timestamp", ts),
                ("webhook-signature", SW_SIG),
            ]);
            assert!(
                matches!(
                    v.verify_body(&view(&h, now), SW_BODY),
                    Err(AuthError::TimestampOutOfTolerance(_))
                ),
                "{ts}"
            );
        }
    }
}
