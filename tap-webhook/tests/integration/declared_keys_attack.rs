//! Declared keys under hostile or unlucky input, through the real receiver and the real tap:
//! every RECORD carries each of its stream's `key_properties` (a target refuses a record
//! without one, and the run, then every rerun, stops there); two values that differ stay two
//! keys (a target upserts one over the other otherwise); one value spelled two ways is one key
//! or refused, never two rows; a delivery is a duplicate of another only when its dedupe
//! parts are the same values.

use axum::http::HeaderValue;
use serde_json::{json, Value};

use crate::harness::{client, records, run_tap, write_config, Server};

async fn post_raw(server: &Server, source: &str, headers: &[(&str, HeaderValue)], body: &str) {
    let mut req = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v.clone());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{body}");
}

/// Every RECORD holds each key property its stream's latest SCHEMA lists.
fn assert_records_hold_their_keys(lines: &[Value]) {
    let mut keys: std::collections::HashMap<&str, &Value> = Default::default();
    for m in lines {
        let stream = m["stream"].as_str().unwrap_or_default();
        match m["type"].as_str() {
            Some("SCHEMA") => {
                keys.insert(stream, &m["key_properties"]);
            }
            Some("RECORD") => {
                for k in keys[stream].as_array().unwrap() {
                    let k = k.as_str().unwrap();
                    assert!(
                        m["record"].get(k).is_some(),
                        "stream {stream}: record without its key property {k:?}: {m}"
                    );
                }
            }
            _ => {}
        }
    }
}

/// A top-level key (a plain field or a one-token pointer) whose name flattening abbreviates
/// (`flattening_max_key_length` at or below its length) is still emitted under its whole name,
/// beside the abbreviated column, as a nested part's is: the target keys on that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_key_that_flattening_abbreviates_is_still_a_key_property() {
    let dir = tempfile::tempdir().unwrap();
    let flat = json!({"flattening_enabled": true, "flattening_max_depth": 2,
                      "flattening_max_key_length": 10});
    let mut sources = serde_json::Map::new();
    for (name, key) in [
        ("field", json!("customer_identifier")),
        ("pointer", json!({"pointer": "/customer_identifier"})),
        ("nested", json!({"pointer": "/data/customer_identifier"})),
    ] {
        let mut s = flat.clone();
        s["primary_key"] = key;
        sources.insert(name.into(), s);
    }
    let path = write_config(dir.path(), json!({ "sources": sources }));
    let server = Server::start(&path);
    for source in ["field", "pointer"] {
        let body = json!({"customer_identifier": 7, "v": 1}).to_string();
        post_raw(&server, source, &[], &body).await;
    }
    let body = json!({"data": {"customer_identifier": 7}, "v": 1}).to_string();
    post_raw(&server, "nested", &[], &body).await;
    drop(server);

    let lines = run_tap(&path, &[]);
    assert_records_hold_their_keys(&lines);
    for (stream, key, short) in [
        ("field", "customer_identifier", "ci"),
        ("pointer", "customer_identifier", "ci"),
        ("nested", "data__customer_identifier", "dat__ci"),
    ] {
        let recs = records(&lines, stream);
        assert_eq!(recs.len(), 1, "{stream}");
        // Both names, one value: the key property and flattening's (abbreviated) column.
        assert_eq!(recs[0][key], 7, "{stream}: {}", recs[0]);
        assert_eq!(recs[0][short], 7, "{stream}: {}", recs[0]);
    }
}

/// A header key's bytes that are not UTF-8 are stored as U+FFFD, so `ord-\xe9` and `ord-\xe8`
/// would become one key and one row would replace the other: such a value is not a key (the
/// message goes to the rejected stream, with its payload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_that_is_not_utf8_is_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        json!({"sources": {"h": {"primary_key": {"header": "X-Key"}}}}),
    );
    let server = Server::start(&path);
    for (byte, v) in [(0xe9u8, 1), (0xe8, 2)] {
        let value = HeaderValue::from_bytes(&[b'o', b'r', b'd', b'-', byte]).unwrap();
        post_raw(
            &server,
            "h",
            &[("X-Key", value)],
            &format!(r#"{{"v":{v}}}"#),
        )
        .await;
    }
    let ok = HeaderValue::from_str("ord-1").unwrap();
    post_raw(&server, "h", &[("X-Key", ok)], r#"{"v":3}"#).await;
    drop(server);

    let lines = run_tap(&path, &[]);
    let recs = records(&lines, "h");
    let keys: Vec<&Value> = recs.iter().map(|r| &r["x_key"]).collect();
    assert_eq!(keys, [&json!("ord-1")], "{recs:?}");
    let rejected = records(&lines, "h__rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for r in rejected {
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains("not UTF-8"), "{reason}");
    }
}

/// A string key holding a lone surrogate escape (valid JSON, no Unicode text) has no single
/// spelling: `"\ud800"` and `"\uD800"` reach a target as two JSON texts, two rows of one key.
/// It is refused as a key; a surrogate pair is an ordinary string key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_surrogate_string_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        json!({"sources": {"p": {"primary_key": {"pointer": "/data/id"}}}}),
    );
    let server = Server::start(&path);
    for body in [
        r#"{"data":{"id":"\ud800"},"v":1}"#,
        r#"{"data":{"id":"\uD800"},"v":2}"#,
        r#"{"data":{"id":"x\udfff"},"v":3}"#,
        r#"{"data":{"id":"\ud83d\ude00"},"v":4}"#,
        r#"{"data":{"id":"\u0061"},"v":5}"#,
    ] {
        post_raw(&server, "p", &[], body).await;
    }
    drop(server);

    let lines = run_tap(&path, &[]);
    let recs = records(&lines, "p");
    let keys: Vec<&Value> = recs.iter().map(|r| &r["data__id"]).collect();
    assert_eq!(keys, [&json!("\u{1F600}"), &json!("a")], "{recs:?}");
    let rejected = records(&lines, "p__rejected");
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    for r in rejected {
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains("lone surrogate"), "{reason}");
    }
}

/// `dedupe_key` parts are compared as the values sent: two deliveries whose ids differ past
/// what a 64-bit float holds (an integer past 64 bits, a long fraction) are two deliveries,
/// both stored; a true retry is still one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_parts_that_differ_only_past_a_float_are_two_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        json!({"sources": {"d": {"dedupe_key": {"pointer": "/id"}}}}),
    );
    let server = Server::start(&path);
    let send = |body: &'static str| {
        let url = server.url("/webhooks/d");
        async move {
            let resp = client().post(url).body(body).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{body}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let bodies = [
        r#"{"id":12345678901234567890123,"v":1}"#,
        r#"{"id":12345678901234567890124,"v":2}"#,
        r#"{"id":0.1,"v":3}"#,
        r#"{"id":0.10000000000000001,"v":4}"#,
    ];
    for body in bodies {
        let reply = send(body).await;
        assert!(reply["data"].get("duplicate").is_none(), "{body}: {reply}");
    }
    let retry = send(bodies[1]).await;
    assert_eq!(retry["data"]["duplicate"], true, "{retry}");
    drop(server);

    let lines = run_tap(&path, &[]);
    let vs: Vec<&Value> = records(&lines, "d").iter().map(|r| &r["v"]).collect();
    assert_eq!(vs, [&json!(1), &json!(2), &json!(3), &json!(4)]);
}

/// A header repeated in one request is one value, `e1, e2`, for the key (as it is stored) and
/// for `dedupe_key` alike: a later delivery with only `e1`, a different key, is not taken for
/// a retry of it (it was: the dedupe id read the first value only, and the delivery was
/// answered as a duplicate and never stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_header_is_one_value_for_the_key_and_the_dedupe_id() {
    let dir = tempfile::tempdir().unwrap();
    let key = json!({"header": "X-Event"});
    let path = write_config(
        dir.path(),
        json!({"sources": {"h": {"primary_key": key, "dedupe_key": key}}}),
    );
    let server = Server::start(&path);
    let send = |values: &'static [&'static str], body: &'static str| {
        let mut req = client().post(server.url("/webhooks/h")).body(body);
        for v in values {
            req = req.header("X-Event", *v);
        }
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{body}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let both = send(&["e1", "e2"], r#"{"v":1}"#).await;
    assert!(both["data"].get("duplicate").is_none(), "{both}");
    let one = send(&["e1"], r#"{"v":2}"#).await;
    assert!(one["data"].get("duplicate").is_none(), "{one}");
    let retry = send(&["e1", "e2"], r#"{"v":1}"#).await;
    assert_eq!(retry["data"]["duplicate"], true, "{retry}");
    drop(server);

    let lines = run_tap(&path, &[]);
    let keys: Vec<(&Value, &Value)> = records(&lines, "h")
        .iter()
        .map(|r| (&r["x_event"], &r["v"]))
        .collect();
    assert_eq!(
        keys,
        [(&json!("e1, e2"), &json!(1)), (&json!("e1"), &json!(2))]
    );
}
