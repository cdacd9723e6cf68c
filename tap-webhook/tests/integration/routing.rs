//! Routing (`stream_from`) and filtering (`include` / `exclude`) through the real receiver and
//! the real tap, with GitHub's own example payloads and event headers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::harness::{client, last_state, records, run_tap, write_config, Server};

/// The committed subset of `@octokit/webhooks-examples`: (event, payload) pairs.
fn github_examples() -> Vec<(String, Value)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/github/events.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_str().unwrap().to_owned(),
                v["payload"].clone(),
            )
        })
        .collect()
}

async fn post(server: &Server, source: &str, event: Option<&str>, delivery: &str, body: &Value) {
    let mut req = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_string());
    if let Some(e) = event {
        req = req.header("X-GitHub-Event", e);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// The payload properties of the stream's last SCHEMA (the tap's own fields left out).
fn payload_columns(lines: &[Value], stream: &str) -> BTreeSet<String> {
    let schema = lines
        .iter()
        .rev()
        .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
        .unwrap_or_else(|| panic!("no SCHEMA for {stream}"));
    schema["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            !k.starts_with("_sdc_") && !k.starts_with("__sdc_") && !k.starts_with("webhook_")
        })
        .cloned()
        .collect()
}

fn streams_with_records(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in lines.iter().filter(|m| m["type"] == "RECORD") {
        *out.entry(m["stream"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_examples_land_in_a_stream_per_event_type_with_ping_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {"github": {
            "stream_from": {"header": "X-GitHub-Event"}, "exclude": ["ping"]
        }}}),
    );
    let server = Server::start(&config);
    let examples = github_examples();
    let mut posted: BTreeMap<String, usize> = BTreeMap::new();
    let mut columns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, (event, payload)) in examples.iter().enumerate() {
        post(&server, "github", Some(event), &format!("d{i}"), payload).await;
        *posted.entry(event.clone()).or_default() += 1;
        let keys = payload.as_object().unwrap().keys().cloned();
        columns.entry(event.clone()).or_default().extend(keys);
    }
    // No event header: the source's own stream. A hostile value: a sanitized name.
    post(&server, "github", None, "n1", &json!({"id": 1, "zen": "x"})).await;
    post(
        &server,
        "github",
        Some("../../Etc Passwd"),
        "h1",
        &json!({"id": 2}),
    )
    .await;
    // A dropped message last: the bookmark still moves past it.
    post(
        &server,
        "github",
        Some("ping"),
        "p9",
        &json!({"zen": "last"}),
    )
    .await;

    let lines = run_tap(&config, &[]);
    let mut expected: BTreeMap<String, usize> = posted
        .iter()
        .filter(|(e, _)| *e != "ping")
        .map(|(e, n)| (format!("github__{e}"), *n))
        .collect();
    expected.insert("github".into(), 1);
    expected.insert("github__etc_passwd".into(), 1);
    assert_eq!(streams_with_records(&lines), expected);
    assert!(expected.len() >= 12, "{expected:?}");
    // Each stream carries its own type's columns and nothing else.
    for (event, cols) in columns.iter().filter(|(e, _)| *e != "ping") {
        assert_eq!(
            &payload_columns(&lines, &format!("github__{event}")),
            cols,
            "{event}"
        );
    }
    assert_eq!(
        payload_columns(&lines, "github"),
        BTreeSet::from(["id".to_owned(), "zen".to_owned()])
    );
    // One bookmark for the source, past the last record: at the dropped ping.
    let last_record = lines
        .iter()
        .filter_map(|m| m["record"]["_sdc_sequence"].as_i64())
        .max()
        .unwrap();
    let state = last_state(&lines).unwrap();
    let total = state["bookmarks"]["github"]["replication_key_value"]
        .as_i64()
        .unwrap();
    assert!(total > last_record, "{state} vs {last_record}");
    assert_eq!(state["bookmarks"].as_object().unwrap().len(), 1, "{state}");

    // Discovery lists the routed streams the spool holds (not the excluded one), each typed
    // with its own columns; the catalog then selects streams one by one.
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--config")
        .arg(&config)
        .arg("--discover")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: BTreeSet<String> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected.keys().cloned().collect());
    for s in catalog["streams"].as_array_mut().unwrap() {
        let id = s["tap_stream_id"].as_str().unwrap().to_owned();
        if let Some(event) = id
            .strip_prefix("github__")
            .filter(|e| columns.contains_key(*e))
        {
            let props: BTreeSet<String> = s["schema"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !k.starts_with('_') && !k.starts_with("webhook_"))
                .cloned()
                .collect();
            assert_eq!(props, columns[event], "{id}");
        }
        if id == "github__push" {
            s["metadata"][0]["metadata"]["selected"] = json!(false);
        }
    }
    let catalog_file = dir.path().join("catalog.json");
    std::fs::write(&catalog_file, catalog.to_string()).unwrap();
    let selected = run_tap(&config, &["--catalog", catalog_file.to_str().unwrap()]);
    let mut without_push = expected.clone();
    without_push.remove("github__push");
    assert_eq!(streams_with_records(&selected), without_push);
    assert_eq!(
        last_state(&selected).unwrap()["bookmarks"]["github"]["replication_key_value"],
        total
    );

    // The next run from that state (which prunes what it covers) emits nothing and keeps
    // the bookmark.
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let again = run_tap(&config, &["--state", state_file.to_str().unwrap()]);
    assert!(records(&again, "github__push").is_empty());
    assert!(streams_with_records(&again).is_empty(), "{again:?}");
    assert_eq!(
        last_state(&again).unwrap()["bookmarks"]["github"]["replication_key_value"],
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_routing_include_and_the_stream_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {
            "stripe": {"stream_from": {"pointer": "/type"}, "primary_key": "id",
                       "include": ["customer.created", "invoice.paid", "charge.failed"],
                       "max_streams": 2}
        }}),
    );
    let server = Server::start(&config);
    let events = [
        ("evt_1", json!("customer.created")),
        ("evt_2", json!("invoice.paid")),
        ("evt_3", json!("customer.created")),
        // Listed but past the bound of two routed streams: the source's own stream.
        ("evt_4", json!("charge.failed")),
        // Not listed: dropped.
        ("evt_5", json!("payout.sent")),
        // No usable value: the own stream, whatever the filter.
        ("evt_6", json!({"nested": 1})),
    ];
    for (id, ty) in &events {
        let body = json!({"id": id, "type": ty, "data": {"object": {"amount": 1}}});
        let resp = client()
            .post(server.url("/webhooks/stripe"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let lines = run_tap(&config, &[]);
    let ids = |stream: &str| -> Vec<String> {
        records(&lines, stream)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("stripe__customer_created"), ["evt_1", "evt_3"]);
    assert_eq!(ids("stripe__invoice_paid"), ["evt_2"]);
    assert_eq!(ids("stripe"), ["evt_4", "evt_6"]);
    assert_eq!(streams_with_records(&lines).values().sum::<usize>(), 5);
    // Every routed stream keys on the source's primary key.
    for s in lines.iter().filter(|m| m["type"] == "SCHEMA") {
        assert_eq!(s["key_properties"], json!(["id"]), "{s}");
    }
    // The bookmark is the last message's (evt_6, in the own stream).
    let last = lines
        .iter()
        .filter_map(|m| m["record"]["_sdc_sequence"].as_i64())
        .max()
        .unwrap();
    assert_eq!(
        last_state(&lines).unwrap()["bookmarks"]["stripe"]["replication_key_value"],
        last
    );
}

#[test]
fn routing_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (config, expected) in [
        (
            json!({"sources": {"a": {"exclude": ["ping"]}}}),
            "sources.a.exclude",
        ),
        (
            json!({"sources": {"a": {"stream_from": {"pointer": "type"}}}}),
            "sources.a.stream_from",
        ),
        (
            json!({"sources": {"a": {"stream_from": {"header": "x-e"}}, "a__push": {}}}),
            "sources.a__push",
        ),
    ] {
        let path = write_config(dir.path(), config);
        let out = std::process::Command::new(crate::harness::BIN)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(out.stdout.is_empty());
    }
}
