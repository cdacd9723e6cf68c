//! The receiver's routes (`receiver::app`) called directly with `tower::ServiceExt::oneshot`, no
//! socket: every reply code of the receiver with its status, the 200 reply's shape, duplicate
//! deliveries, and the router's own 404 and 405; nothing refused is stored.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tap_webhook::receiver::store::Store;
use tap_webhook::receiver::{app, AppState};
use tap_webhook::settings::Settings;
use tap_webhook::spool::reader::SpoolReader;
use tap_webhook::spool::writer::SpoolWriter;
use tower::ServiceExt;

/// Every code `ReceiveError::code` can give (README: "Errors").
const CODES: &[&str] = &[
    "UNKNOWN_SOURCE",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "MISSING_CREDENTIALS",
    "INVALID_CREDENTIALS",
    "MISSING_SIGNATURE",
    "INVALID_SIGNATURE",
    "TIMESTAMP_OUT_OF_TOLERANCE",
    "NO_BODY_PROVIDED",
    "BODY_READ_FAILED",
    "REQUEST_TIMEOUT",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_CONTENT_ENCODING",
    "INVALID_GZIP",
    "INVALID_JSON",
    "UNSUPPORTED_JSON_TYPE",
    "TOO_MANY_FIELDS",
    "TOO_MANY_MESSAGES",
    "SPOOL_FULL",
    "SPOOL_UNAVAILABLE",
];

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// The code before the colon of an error reply.
    fn code(&self) -> String {
        let v = self.json();
        assert_eq!(v["success"], false, "{}", self.text);
        let error = v["error"].as_str().unwrap().to_owned();
        error.split(": ").next().unwrap().to_owned()
    }
}

async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn settings(dir: &Path, extra: Value) -> Settings {
    let mut config = json!({
        "spool_path": dir.join("spool.sqlite").display().to_string(),
        "max_body_bytes": 4096,
        "body_read_timeout_seconds": 0.2,
        "sources": {
            "data": {},
            "keyed": {"api_keys": ["key-aaaaaaaa"]},
            "tokened": {"url_tokens": ["tok-11111111"], "allow_get": true},
            "gh": {"signature": {"scheme": "github", "secrets": ["It's a Secret to Everybody"]}},
            "stripe": {"signature": {"scheme": "stripe", "secrets": ["whsec_test_secret"]}}
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let Value::Object(map) = config else {
        unreachable!()
    };
    Settings::from_map(map).unwrap()
}

/// The app on a fresh spool (its writer thread runs until the state is dropped).
fn start(dir: &Path, extra: Value) -> Router {
    let settings = settings(dir, extra);
    let (writer, _thread) = SpoolWriter::start(
        &settings.spool_path,
        settings.dedupe_window,
        settings.ledger,
    )
    .unwrap();
    app(Arc::new(AppState::new(&settings, Store::Spool(writer))))
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).body(body.into()).unwrap()
}

fn stored(dir: &Path, source: &str) -> i64 {
    SpoolReader::open(&dir.join("spool.sqlite"))
        .unwrap()
        .count(source)
        .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_code_with_its_status_and_nothing_refused_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(
        dir.path(),
        json!({"max_fields_per_message": 5, "max_messages_per_delivery": 5}),
    );
    let failing_body = Body::from_stream(tokio_stream::iter(vec![
        Ok(Bytes::from_static(b"{\"a\":")),
        Err(std::io::Error::other("connection reset")),
    ]));
    let silent_body = Body::from_stream(tokio_stream::pending::<Result<Bytes, std::io::Error>>());
    let cases: Vec<(&str, Request<Body>, u16, &str)> = vec![
        (
            "unknown source",
            post("/webhooks/nope", "{}"),
            404,
            "UNKNOWN_SOURCE",
        ),
        ("no such path", post("/hooks/data", "{}"), 404, "NOT_FOUND"),
        (
            "GET not enabled",
            Request::get("/webhooks/data?a=1")
                .body(Body::empty())
                .unwrap(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "no API key",
            post("/webhooks/keyed", "{}"),
            401,
            "MISSING_CREDENTIALS",
        ),
        (
            "wrong API key",
            Request::post("/webhooks/keyed")
                .header("x-api-key", "key-bbbbbbbb")
                .body(Body::from("{}"))
                .unwrap(),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "wrong token",
            post("/webhooks/tokened?token=tok-22222222", "{}"),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "no signature",
            post("/webhooks/gh", "{}"),
            401,
            "MISSING_SIGNATURE",
        ),
        (
            "forged signature",
            Request::post("/webhooks/gh")
                .header("x-hub-signature-256", format!("sha256={}", "00".repeat(32)))
                .body(Body::from("{}"))
                .unwrap(),
            401,
            "INVALID_SIGNATURE",
        ),
        (
            "stale timestamp",
            Request::post("/webhooks/stripe")
                .header("stripe-signature", "t=1700000000,v1=00")
                .body(Body::from("{}"))
                .unwrap(),
            401,
            "TIMESTAMP_OUT_OF_TOLERANCE",
        ),
        (
            "empty body",
            post("/webhooks/data", ""),
            400,
            "NO_BODY_PROVIDED",
        ),
        (
            "body cut off",
            post("/webhooks/data", failing_body),
            400,
            "BODY_READ_FAILED",
        ),
        (
            "body never sent",
            post("/webhooks/data", silent_body),
            408,
            "REQUEST_TIMEOUT",
        ),
        (
            "oversize",
            post(
                "/webhooks/data",
                format!(r#"{{"x":"{}"}}"#, "y".repeat(5000)),
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "gzip bomb",
            Request::post("/webhooks/data")
                .header("content-encoding", "gzip")
                .body(Body::from(gzip(&vec![b' '; 1 << 20])))
                .unwrap(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "brotli",
            Request::post("/webhooks/data")
                .header("content-encoding", "br")
                .body(Body::from("{}"))
                .unwrap(),
            415,
            "UNSUPPORTED_CONTENT_ENCODING",
        ),
        (
            "not gzip",
            Request::post("/webhooks/data")
                .header("content-encoding", "gzip")
                .body(Body::from("{}"))
                .unwrap(),
            400,
            "INVALID_GZIP",
        ),
        (
            "invalid JSON",
            post("/webhooks/data", r#"{"a": }"#),
            400,
            "INVALID_JSON",
        ),
        (
            "a number",
            post("/webhooks/data", "42"),
            400,
            "UNSUPPORTED_JSON_TYPE",
        ),
        (
            "array of scalars",
            post("/webhooks/data", r#"[{"a":1}, 2]"#),
            400,
            "UNSUPPORTED_JSON_TYPE",
        ),
        (
            "six fields",
            post("/webhooks/data", r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}"#),
            413,
            "TOO_MANY_FIELDS",
        ),
        (
            "an element of six fields",
            post(
                "/webhooks/data",
                r#"[{"a":1},{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}]"#,
            ),
            413,
            "TOO_MANY_FIELDS",
        ),
        (
            "six messages",
            post("/webhooks/data", "[{},{},{},{},{},{}]"),
            413,
            "TOO_MANY_MESSAGES",
        ),
    ];
    let mut seen = BTreeSet::new();
    for (name, req, status, code) in cases {
        let reply = call(&app, req).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text);
        assert_eq!(reply.code(), code, "{name}");
        assert_eq!(reply.headers["content-type"], "application/json", "{name}");
        assert!(reply.headers.get("retry-after").is_none(), "{name}");
        seen.insert(code);
    }
    for source in ["data", "keyed", "tokened", "gh", "stripe"] {
        assert_eq!(stored(dir.path(), source), 0, "{source}: nothing stored");
    }

    // Full: 503 with the configured Retry-After (any spool holds more than 0 bytes).
    let full_dir = tempfile::tempdir().unwrap();
    let full = start(
        full_dir.path(),
        json!({"max_spool_bytes": 0, "retry_after_seconds": 7}),
    );
    let reply = call(&full, post("/webhooks/data", "{}")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (503, "SPOOL_FULL")
    );
    assert_eq!(reply.headers["retry-after"], "7");
    seen.insert("SPOOL_FULL");

    // A commit that fails (the table is gone underneath the writer): 503, retry in 5 s.
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = start(broken_dir.path(), json!({}));
    rusqlite::Connection::open(broken_dir.path().join("spool.sqlite"))
        .unwrap()
        .execute_batch("DROP TABLE messages")
        .unwrap();
    let reply = call(&broken, post("/webhooks/data", "{}")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (503, "SPOOL_UNAVAILABLE")
    );
    assert_eq!(reply.headers["retry-after"], "5");
    assert!(
        !reply.text.contains("no such table"),
        "internals are logged, not told: {}",
        reply.text
    );
    seen.insert("SPOOL_UNAVAILABLE");

    assert_eq!(seen, CODES.iter().copied().collect(), "every code is shown");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for code in CODES {
        assert!(
            readme.contains(&format!("`{code}`")),
            "README's error list lacks `{code}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_deliveries_duplicates_and_the_routers_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), json!({}));

    // An object: one message, `{"data":{"message_id","received_at"},"success":true}`.
    let reply = call(&app, post("/webhooks/data", r#"{"id": 1}"#)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/json");
    let v = reply.json();
    let id = v["data"]["message_id"].as_str().unwrap().to_owned();
    let received_at = v["data"]["received_at"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.text,
        format!(
            r#"{{"data":{{"message_id":"{id}","received_at":"{received_at}"}},"success":true}}"#
        )
    );
    assert!(
        received_at.len() == 27 && received_at.ends_with('Z'),
        "{received_at}"
    );

    // An array: every message id, the first also as `message_id`; an empty array stores none.
    let v = call(&app, post("/webhooks/data", r#"[{"a":1},{"a":2}]"#))
        .await
        .json();
    let ids = v["data"]["message_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(v["data"]["message_id"], ids[0]);
    let v = call(&app, post("/webhooks/data", "[]")).await.json();
    assert_eq!(v["data"]["message_id"], Value::Null);
    assert_eq!(v["data"]["message_ids"], json!([]));

    // A provider's retry of one delivery: the original id, `duplicate`, stored once.
    let delivery = || {
        Request::post("/webhooks/data")
            .header("webhook-id", "msg_retried")
            .body(Body::from(r#"{"d":1}"#))
            .unwrap()
    };
    let first = call(&app, delivery()).await.json();
    assert_eq!(first["data"].get("duplicate"), None);
    let again = call(&app, delivery()).await.json();
    assert_eq!(again["data"]["duplicate"], true);
    assert_eq!(again["data"]["message_id"], first["data"]["message_id"]);
    assert_eq!(stored(dir.path(), "data"), 4);

    // GET where allowed: the query is the payload, without its token.
    let reply = call(
        &app,
        Request::get("/webhooks/tokened?token=tok-11111111&a=1&b=two+words")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(stored(dir.path(), "tokened"), 1);

    // The router's own answers, in the JSON error shape too: no such path, no such method.
    for path in ["/hooks/data", "/", "/webhooks/data/", "/webhooks/"] {
        let reply = call(&app, post(path, "{}")).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned()),
            "{path}: {}",
            reply.text
        );
    }
    // A trailing slash is not the source's URL: the reply names the one to configure.
    let reply = call(&app, post("/webhooks/data/", "{}")).await;
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("did you mean /webhooks/data?"),
        "{}",
        reply.text
    );
    for (method, path, allow) in [
        (Method::PUT, "/webhooks/data", "GET,HEAD,POST"),
        (Method::DELETE, "/webhooks/data", "GET,HEAD,POST"),
        (Method::POST, "/healthz", "GET,HEAD"),
    ] {
        let reply = call(
            &app,
            Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.code()),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED".to_owned()
            ),
            "{method} {path}: {}",
            reply.text
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
    }
    assert_eq!(stored(dir.path(), "data"), 4, "nothing more stored");

    let reply = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "ok\n")
    );
    let metrics = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        metrics
            .text
            .contains(r#"webhook_messages_accepted_total{source="data"} 4"#)
            && metrics
                .text
                .contains("webhook_duplicate_deliveries_total 1"),
        "{}",
        metrics.text
    );
}
