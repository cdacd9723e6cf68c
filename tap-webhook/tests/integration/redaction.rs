//! Redaction before storage (`redact`) through the real receiver and the real tap: a signed
//! delivery is verified over its raw bytes, then its personal values are hashed or dropped
//! before the spool write; the raw values are found nowhere on disk nor in the Singer output.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{client, records, run_tap, write_config, Server};

const SECRET: &str = "It's a Secret to Everybody";
const SALT: &str = "pepper-0123456789";
const EMAIL: &str = "ann.private@example.org";
const CARD: &str = "4242424242424242";
const PHONE: &str = "+49-170-5550123";

fn sign(body: &str) -> String {
    use tap_webhook::receiver::signature::{hmac, Algorithm};
    let mac = hmac(Algorithm::Sha256, SECRET.as_bytes(), &[body.as_bytes()]);
    format!("sha256={}", hex::encode(mac))
}

/// Every file of the spool (database, WAL, shared memory), concatenated.
fn spool_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("spool.sqlite")
        {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_values_never_reach_the_spool_nor_the_output_and_hashes_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {"shop": {
            "signature": {"scheme": "github", "secrets": [SECRET]},
            "primary_key": "id",
            "allow_get": true,
            "redact": {"hash": ["/customer/email", "/phone"], "drop": ["/card"], "salt": SALT}
        }}}),
    );
    let server = Server::start(&config);
    let http = client();
    let post = |body: String, sig: String| {
        http.post(server.url("/webhooks/shop"))
            .header("X-Hub-Signature-256", sig)
            .body(body)
            .send()
    };
    // Two orders by the same customer (one delivery, an array), then one alone; the signature
    // is over the raw bytes, before redaction.
    let two = json!([
        {"id": 1, "customer": {"email": EMAIL, "name": "Ann"}, "card": {"number": CARD}, "phone": PHONE},
        {"id": 2, "customer": {"email": EMAIL}, "total": 9.5}
    ])
    .to_string();
    let resp = post(two.clone(), sign(&two)).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let one = format!(r#"{{"id":3,"customer":{{"email":"{EMAIL}"}},"card":"{CARD}"}}"#);
    assert_eq!(post(one.clone(), sign(&one)).await.unwrap().status(), 200);
    // A GET's parameters are its payload: stored redacted, and not again as the query. A
    // signed source's GET is signed too (over its empty body); an unsigned one is refused.
    let get_url = server.url(&format!(
        "/webhooks/shop?id=6&phone={}",
        PHONE.replace('+', "%2B")
    ));
    let resp = http.get(get_url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401, "{}", resp.text().await.unwrap());
    let resp = http
        .get(get_url)
        .header("X-Hub-Signature-256", sign(""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // A forged signature and a body that is not JSON are refused: neither is kept anywhere.
    let forged = format!(r#"{{"id":4,"phone":"{PHONE}"}}"#);
    assert_eq!(post(forged, sign("other")).await.unwrap().status(), 401);
    let broken = format!(r#"{{"id":5,"card":"{CARD}""#);
    assert_eq!(
        post(broken.clone(), sign(&broken)).await.unwrap().status(),
        400
    );

    // The three refusals are in the ledger (written off the request) before the spool is read.
    let refused = crate::operate::refused_rows(&config, 3);
    assert_eq!(refused.len(), 3, "{refused:?}");
    let spool = spool_bytes(dir.path());
    assert!(contains(&spool, "Ann"), "the spool holds the deliveries");
    for raw in [EMAIL, CARD, PHONE] {
        assert!(!contains(&spool, raw), "{raw} is in the spool");
    }

    let lines = run_tap(&config, &[]);
    let text = lines.iter().map(Value::to_string).collect::<String>();
    for raw in [EMAIL, CARD, PHONE] {
        assert!(!text.contains(raw), "{raw} is in the Singer output");
    }
    let hash = |v: &str| hex::encode(Sha256::digest(format!("{SALT}{v}")));
    let rows = records(&lines, "shop");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["phone"], json!(hash(PHONE)), "{}", rows[3]);
    for r in &rows[..3] {
        // The same email, the same hash in every record: joins still work.
        assert_eq!(r["customer"]["email"], json!(hash(EMAIL)), "{r}");
        assert!(r.get("card").is_none(), "{r}");
    }
    assert_eq!(rows[0]["phone"], json!(hash(PHONE)));
    assert_eq!(rows[0]["customer"]["name"], "Ann");
    assert_eq!(rows[1]["total"], 9.5);
}

/// Values beside a redacted one keep their exact text: only the redacted value is rewritten.
/// (Parsed into a tree and written again, an integer past 64 bits became `1.2345678901234568e+22`
/// and a long decimal lost its digits, silently, in the stored body.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_beside_a_redacted_value_keep_their_exact_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        json!({"sources": {"shop": {"primary_key": {"pointer": "/customer/id"},
            "redact": {"hash": ["/customer/email"], "drop": ["/customer/card"], "salt": SALT}}}}),
    );
    let server = Server::start(&path);
    let body = format!(
        r#"{{"customer":{{"id":42,"email":"{EMAIL}","card":"{CARD}","big":12345678901234567890123,"amount":1234567890.123456789012,"z":1.50}}}}"#
    );
    let resp = client()
        .post(server.url("/webhooks/shop"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(server);

    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().find(|l| l.contains(r#""RECORD""#)).unwrap();
    for exact in [
        r#""big":12345678901234567890123"#,
        r#""amount":1234567890.123456789012"#,
        r#""z":1.50"#,
    ] {
        assert!(line.contains(exact), "{exact} not in {line}");
    }
    let h = hex::encode(Sha256::digest(format!("{SALT}{EMAIL}")));
    assert!(line.contains(&format!(r#""email":"{h}""#)), "{line}");
    assert!(!line.contains(EMAIL) && !line.contains(CARD), "{line}");
    let rec: Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["record"]["customer__id"], 42);
}
