//! Signature header parsers on arbitrary header values and bodies: no panic, and no forged
//! input verifies.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tap_webhook::receiver::auth::{RequestView, Verifier};
use tap_webhook::receiver::signature::{
    Algorithm, Encoding, HeaderHmac, StandardWebhooks, Stripe, DEFAULT_TOLERANCE_SECONDS,
};

fuzz_target!(|data: &[u8]| {
    // Split the input into three header values and a body at 0xff bytes.
    let mut parts = data.split(|&b| b == 0xff);
    let mut next = || parts.next().unwrap_or_default();
    let (a, b, c, body) = (next(), next(), next(), next());
    let mut headers = HeaderMap::new();
    for (names, value) in [
        (&["webhook-id", "stripe-signature"][..], a),
        (
            &["webhook-timestamp", "x-hub-signature-256", "x-timestamp"][..],
            b,
        ),
        (
            &["webhook-signature", "x-shopify-hmac-sha256", "x-signature"][..],
            c,
        ),
    ] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            for &n in names {
                headers.insert(HeaderName::from_static(n), v.clone());
            }
        }
    }
    let view = RequestView {
        headers: &headers,
        query: &[],
        now: 1_700_000_000,
    };
    let secrets = vec!["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned()];
    let verifiers: Vec<Box<dyn Verifier>> = vec![
        Box::new(StandardWebhooks::new(&secrets, 300).unwrap()),
        Box::new(Stripe {
            secrets: secrets.clone(),
            tolerance: 300,
        }),
        Box::new(HeaderHmac::github(secrets.clone(), true)),
        Box::new(HeaderHmac::shopify(secrets.clone())),
        // The generic scheme with every option in play: prefix, timestamp header, template.
        Box::new(HeaderHmac {
            header: "x-signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "v1=".into(),
            secrets,
            timestamp_header: Some("x-timestamp".into()),
            tolerance: DEFAULT_TOLERANCE_SECONDS,
            signed_content: "{timestamp}.{body}".into(),
            legacy: None,
        }),
    ];
    for v in &verifiers {
        // Random input forging a valid HMAC would be a break of SHA-256.
        assert!(v.verify_body(&view, body).is_err());
    }
});
