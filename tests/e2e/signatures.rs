//! Deliveries signed by the providers' own libraries (svix, standardwebhooks, stripe from
//! PyPI) are accepted by the receiver; the same deliveries tampered with are refused.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{peers, repo_root, run_ok, write_tap_config, Receiver};

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn provider_libraries_signatures_verify_and_tampering_does_not() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let whsec = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let stripe_secret = "whsec_test_secret_for_stripe";
    let config = write_tap_config(
        dir.path(),
        json!({"sources": {
                 "svix": {"signature": {"scheme": "svix", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", whsec]}},
                 "standardwebhooks": {"signature": {"scheme": "standard-webhooks", "secrets": [whsec]}},
                 "stripe": {"signature": {"scheme": "stripe", "secrets": [stripe_secret]}}}}),
    );
    let receiver = Receiver::start(&config);
    for (source, secret) in [
        ("svix", whsec),
        ("standardwebhooks", whsec),
        ("stripe", stripe_secret),
    ] {
        let body = format!(r#"{{"type": "invoice.paid",  "source": "{source}", "amount": 1999}}"#);
        let body_file = dir.path().join(format!("{source}.json"));
        std::fs::write(&body_file, &body).unwrap();
        let headers: Value = serde_json::from_str(&run_ok(
            Command::new(&peers["VENV_PYTHON"])
                .arg(repo_root().join("tests/python/sign.py"))
                .args([source, secret])
                .arg(&body_file),
        ))
        .unwrap();
        let pairs: Vec<(&str, &str)> = headers
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        assert_eq!(
            receiver.post(source, &body, &pairs),
            200,
            "{source}: the library's signature verifies"
        );
        let tampered = body.replace("1999", "1");
        assert_eq!(
            receiver.post(source, &tampered, &pairs),
            401,
            "{source}: a tampered body is refused"
        );
    }
}
