//! The receiver over a real socket.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tap_webhook::spool::reader::SpoolReader;

use crate::harness::{client, write_config, Server};

fn spool_bodies(dir: &std::path::Path, source: &str) -> BTreeMap<String, String> {
    let spool = SpoolReader::open(&dir.join("spool.sqlite")).unwrap();
    let mut out = BTreeMap::new();
    spool
        .for_each::<tap_webhook::spool::SpoolError>(source, 0, i64::MAX, |m| {
            assert!(
                out.insert(m.id.clone(), m.body).is_none(),
                "message stored twice"
            );
            Ok(true)
        })
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_are_each_stored_once_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(dir.path(), json!({})));
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let http = http.clone();
        let url = server.url("/webhooks/data");
        tasks.push(tokio::spawn(async move {
            // Odd spacing and key order must survive exactly.
            let body = format!("{{ \"z\":{i},\n  \"a\" : [1, {{\"n\": \"x{i}\"}}] }}  ");
            let resp = http.post(url).body(body.clone()).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["success"], true);
            (v["data"]["message_id"].as_str().unwrap().to_owned(), body)
        }));
    }
    let mut sent = BTreeMap::new();
    for t in tasks {
        let (id, body) = t.await.unwrap();
        sent.insert(id, body);
    }
    assert_eq!(sent.len(), 300, "message ids are unique");
    assert_eq!(spool_bodies(dir.path(), "data"), sent);
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({}));
    let mut server = Server::start(&config);
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (http, url, acked, stop) = (
            client(),
            server.url("/webhooks/data"),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(
                    r#"{{"worker":{worker},"i":{i},"pad":"{}"}}"#,
                    "p".repeat(i % 500)
                );
                i += 1;
                match http.post(&url).body(body.clone()).send().await {
                    Ok(resp) if resp.status() == 200 => {
                        if let Ok(v) = resp.json::<Value>().await {
                            let id = v["data"]["message_id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().insert(id, body);
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    // Let load build up, then kill the server mid-stream.
    while acked.lock().unwrap().len() < 400 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    // Restarting opens the spool cleanly (SQLite recovers the WAL) and keeps serving.
    let server = Server::start(&config);
    let resp = client()
        .post(server.url("/webhooks/data"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(integrity_check(dir.path()), "ok");
    let stored = spool_bodies(dir.path(), "data");
    for (id, body) in &acked {
        assert_eq!(
            stored.get(id),
            Some(body),
            "acknowledged message {id} lost or altered"
        );
    }
}

/// SQLite's own `PRAGMA integrity_check` of the spool, through rusqlite (the library the spool
/// uses), so the check runs wherever the tests do: "ok", or the problems it found.
fn integrity_check(dir: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(dir.join("spool.sqlite")).unwrap();
    let mut stmt = conn.prepare("PRAGMA integrity_check").unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("\n")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_code_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(
        dir.path(),
        json!({"max_body_bytes": 4096, "sources": {
            "keyed": {"api_key_header": "x-api-key", "api_keys": ["key-aaaaaaaa", "key-bbbbbbbb"]},
            "tokened": {"url_tokens": ["tok-11111111"]}}}),
    ));
    // A fresh connection per case: a refused oversize body is left unread, so the server closes
    // that connection, and a pooled client reusing it for the next case would race the close
    // (hyper's IncompleteMessage; about 1 run in 3 here).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    // 2 MiB of spaces gzip to ~2 KB: under the 4096-byte limit as sent, so the request is
    // read whole and it is the decompression limit that answers 413.
    let bomb = gzip(&vec![b' '; 2 << 20]);
    let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(5000));
    type Case<'a> = (&'a str, reqwest::RequestBuilder, u16, &'a str);
    let post = |path: &str| {
        http.post(server.url(path))
            .header("x-api-key", "key-aaaaaaaa")
    };
    let cases: Vec<Case> = vec![
        (
            "empty body",
            post("/webhooks/keyed"),
            400,
            "NO_BODY_PROVIDED",
        ),
        (
            "invalid JSON",
            post("/webhooks/keyed").body(r#"{"a": }"#),
            400,
            "INVALID_JSON",
        ),
        (
            "a scalar",
            post("/webhooks/keyed").body("42"),
            400,
            "UNSUPPORTED_JSON_TYPE",
        ),
        (
            "array of scalars",
            post("/webhooks/keyed").body(r#"[{"a":1}, 2]"#),
            400,
            "UNSUPPORTED_JSON_TYPE",
        ),
        (
            "oversize",
            post("/webhooks/keyed").body(big.clone()),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "oversize, chunked",
            post("/webhooks/keyed").body(reqwest::Body::wrap_stream(futures_stream(big.clone()))),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "gzip bomb",
            post("/webhooks/keyed")
                .header("content-encoding", "gzip")
                .body(bomb),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "bad gzip",
            post("/webhooks/keyed")
                .header("content-encoding", "gzip")
                .body("{}"),
            400,
            "INVALID_GZIP",
        ),
        (
            "brotli",
            post("/webhooks/keyed")
                .header("content-encoding", "br")
                .body("{}"),
            415,
            "UNSUPPORTED_CONTENT_ENCODING",
        ),
        (
            "missing API key",
            http.post(server.url("/webhooks/keyed")).body("{}"),
            401,
            "MISSING_CREDENTIALS",
        ),
        (
            "wrong API key",
            http.post(server.url("/webhooks/keyed"))
                .header("x-api-key", "key-cccccccc")
                .body("{}"),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "missing token",
            http.post(server.url("/webhooks/tokened")).body("{}"),
            401,
            "MISSING_CREDENTIALS",
        ),
        (
            "wrong token",
            http.post(server.url("/webhooks/tokened?token=tok-22222222"))
                .body("{}"),
            401,
            "INVALID_CREDENTIALS",
        ),
        (
            "unknown source",
            post("/webhooks/nope").body("{}"),
            404,
            "UNKNOWN_SOURCE",
        ),
        (
            "GET not enabled",
            http.get(server.url("/webhooks/tokened?token=tok-11111111&a=1")),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (name, req, status, code) in cases {
        let resp = req.send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["success"], false, "{name}");
        let error = v["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("{code}: ")), "{name}: {error}");
        assert!(
            !error.contains("key-aaaaaaaa") && !error.contains("tok-"),
            "{name}: secret leaked: {error}"
        );
    }
    for source in ["keyed", "tokened"] {
        assert!(
            spool_bodies(dir.path(), source).is_empty(),
            "{source}: nothing stored"
        );
    }
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"webhook_requests_rejected_total{reason="INVALID_CREDENTIALS"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"webhook_messages_accepted_total{source="keyed"} 0"#),
        "{metrics}"
    );
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn futures_stream(s: String) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = s
        .into_bytes()
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    tokio_stream::iter(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_gzip_get_dedupe_rotation_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(
        dir.path(),
        json!({"sources": {
            "events": {"url_tokens": ["tok-11111111", "tok-22222222"], "allow_get": true, "capture_headers": ["x-trace"]}}}),
    ));
    let http = client();
    let url = |q: &str| server.url(&format!("/webhooks/events?token={q}"));
    // SendGrid posts arrays: one message per element, each element's exact text.
    let v: Value = http
        .post(url("tok-11111111"))
        .body(r#"[{"e":1}, {"e" : 2}]"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["message_ids"].as_array().unwrap().len(), 2);
    // gzip with the second (rotated-in) token.
    let resp = http
        .post(url("tok-22222222"))
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"g": true}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // valmi-style GET: the query is the payload, without the token.
    let resp = http
        .get(url("tok-11111111") + "&a=1&b=two%20words")
        .header("x-trace", "t-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The same delivery three times: three 200s, one message id, one stored copy.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v: Value = http
            .post(url("tok-11111111"))
            .header("webhook-id", "msg_1")
            .body(r#"{"d":1}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["success"], true);
        ids.push(v["data"]["message_id"].clone());
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    let bodies: Vec<String> = spool_bodies(dir.path(), "events").into_values().collect();
    assert_eq!(
        bodies,
        vec![
            r#"{"e":1}"#,
            r#"{"e" : 2}"#,
            r#"{"g": true}"#,
            r#"{"a":"1","b":"two words"}"#,
            r#"{"d":1}"#
        ]
    );
    let spool = SpoolReader::open(&dir.path().join("spool.sqlite")).unwrap();
    let mut stored = Vec::new();
    spool
        .for_each::<tap_webhook::spool::SpoolError>("events", 0, i64::MAX, |m| {
            stored.push(m);
            Ok(true)
        })
        .unwrap();
    let get = &stored[3];
    let query: Value = serde_json::from_str(&get.query).unwrap();
    assert_eq!(query["token"], "[REDACTED]");
    let headers: Value = serde_json::from_str(&get.headers).unwrap();
    assert_eq!(headers["x-trace"], "t-1");
    assert_eq!(stored[4].delivery_id.as_deref(), Some("msg_1"));
    assert!(
        stored.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequences strictly increase"
    );

    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"webhook_messages_accepted_total{source="events"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("webhook_duplicate_deliveries_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&write_config(
        dir.path(),
        json!({"max_spool_bytes": 1, "retry_after_seconds": 7}),
    ));
    let resp = client()
        .post(server.url("/webhooks/data"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().starts_with("SPOOL_FULL: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sources_accept_valid_and_refuse_forged_deliveries() {
    use base64::Engine;
    use tap_webhook::receiver::signature::{hmac, Algorithm};
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let server = Server::start(&write_config(
        dir.path(),
        json!({"sources": {
            "svix": {"signature": {"scheme": "svix", "secrets": [secret]}},
            "gh": {"signature": {"scheme": "github", "secrets": ["It's a Secret to Everybody"]}}}}),
    ));
    let http = client();
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret[6..])
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = r#"{"type":"invoice.paid","n": 1}"#;
    let sign = |ts: u64, body: &str| {
        let mac = hmac(
            Algorithm::Sha256,
            &key,
            &[format!("msg_1.{ts}.").as_bytes(), body.as_bytes()],
        );
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac)
        )
    };
    let send = |ts: u64, sig: String, body: &'static str| {
        http.post(server.url("/webhooks/svix"))
            .header("svix-id", "msg_1")
            .header("svix-timestamp", ts.to_string())
            .header("svix-signature", sig)
            .body(body)
            .send()
    };
    let code = |v: Value| {
        v["error"]
            .as_str()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let resp = send(
        now,
        sign(now, r#"{"type":"invoice.paid","n": 2}"#),
        r#"{"type":"invoice.paid","n": 1}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(code(resp.json().await.unwrap()), "INVALID_SIGNATURE");
    let resp = send(
        now - 301,
        sign(now - 301, body),
        r#"{"type":"invoice.paid","n": 1}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        code(resp.json().await.unwrap()),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    let resp = http
        .post(server.url("/webhooks/gh"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(code(resp.json().await.unwrap()), "MISSING_SIGNATURE");
    assert!(spool_bodies(dir.path(), "svix").is_empty());
    let resp = send(now, sign(now, body), r#"{"type":"invoice.paid","n": 1}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stored = spool_bodies(dir.path(), "svix");
    assert_eq!(
        stored.into_values().collect::<Vec<_>>(),
        vec![body.to_owned()]
    );
    let spool = SpoolReader::open(&dir.path().join("spool.sqlite")).unwrap();
    spool
        .for_each::<tap_webhook::spool::SpoolError>("svix", 0, i64::MAX, |m| {
            let h: Value = serde_json::from_str(&m.headers).unwrap();
            assert_eq!(h.get("svix-signature"), None, "signatures are not captured");
            assert_eq!(m.delivery_id.as_deref(), Some("msg_1"));
            Ok(true)
        })
        .unwrap();
}

#[test]
fn serve_refuses_a_source_whose_signature_cannot_be_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {"svix": {"signature": {"scheme": "svix", "secrets": ["whsec_%%%"]}}}}),
    );
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sources.svix.signature") && stderr.contains("base64"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("spool.sqlite").exists(),
        "nothing was opened"
    );
}
