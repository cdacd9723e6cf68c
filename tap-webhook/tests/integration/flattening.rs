//! Flattening (`flattening_enabled`, `flattening_max_depth`) through the real receiver and the
//! real tap: with routing, a primary key, operations, redaction and catalog selection; and two
//! fields that would share a column stopping the run where they meet, losing nothing.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{client, records, run_tap, write_config, Server, BIN};

const SALT: &str = "pepper-0123456789";

async fn post(server: &Server, source: &str, body: &str) {
    let resp = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

fn schema_of<'a>(lines: &'a [Value], stream: &str) -> &'a Value {
    &lines
        .iter()
        .rev()
        .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
        .unwrap_or_else(|| panic!("no SCHEMA of {stream}"))["schema"]["properties"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flattening_composes_with_routing_keys_operations_redaction_and_selection() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {"shop": {
            "stream_from": {"pointer": "/type"}, "primary_key": "id",
            "operation": {"preset": "valmi"},
            "redact": {"hash": ["/customer/email"], "salt": SALT},
            "flattening_enabled": true, "flattening_max_depth": 2}}}),
    );
    let server = Server::start(&config);
    let meta = |op: &str| format!(r#""_valmi_meta":{{"_valmi_sync_op":"{op}"}}"#);
    post(&server, "shop", &format!(r#"{{"type":"order.created","id":"o1","customer":{{"email":"ann@example.com","addr":{{"city":"Oslo","geo":{{"lat":59.9}}}}}},{}}}"#, meta("upsert"))).await;
    post(
        &server,
        "shop",
        &format!(
            r#"{{"type":"order.deleted","id":"o1","customer":{{"email":"ann@example.com"}},{}}}"#,
            meta("delete")
        ),
    )
    .await;
    // A key that is an object cannot be one: rejected with its payload as stored (redacted).
    post(&server, "shop", &format!(r#"{{"type":"order.created","id":{{"n":1}},"customer":{{"addr":{{"city":"Rome"}}}},{}}}"#, meta("upsert"))).await;
    drop(server);

    let out = run_tap(&config, &[]);
    let text = out.iter().map(Value::to_string).collect::<String>();
    assert!(
        !text.contains("ann@example.com"),
        "a redacted value reached the output"
    );
    let created = records(&out, "shop__order_created");
    let deleted = records(&out, "shop__order_deleted");
    assert_eq!((created.len(), deleted.len()), (1, 1));
    let (c, d) = (created[0], deleted[0]);
    // Redaction happened before storage: the flattened column holds the hash, the same in
    // both streams.
    let hash = c["customer__email"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{c}");
    assert_eq!(d["customer__email"], json!(hash));
    assert_eq!(c["customer__addr__city"], json!("Oslo"));
    assert_eq!(c["customer__addr__geo"], json!(r#"{"lat":59.9}"#));
    assert!(c.get("customer").is_none(), "{c}");
    // The key stays the top-level field; the operation was read from the payload as stored,
    // and the sender's field is flattened like any other.
    assert_eq!(c["id"], json!("o1"));
    assert_eq!(c["_sdc_operation"], json!("upsert"));
    assert_eq!(c["_valmi_meta___valmi_sync_op"], json!("upsert"));
    assert_eq!(d["_sdc_operation"], json!("delete"));
    assert!(d["_sdc_deleted_at"].is_string(), "{d}");
    let props = schema_of(&out, "shop__order_created");
    for column in [
        "customer__email",
        "customer__addr__city",
        "customer__addr__geo",
        "id",
    ] {
        assert!(props.get(column).is_some(), "{column} missing from {props}");
    }
    assert!(props.get("customer").is_none(), "{props}");
    let schema_line = out
        .iter()
        .find(|m| m["type"] == "SCHEMA" && m["stream"] == "shop__order_created")
        .unwrap();
    assert_eq!(schema_line["key_properties"], json!(["id"]));
    let rejected = records(&out, "shop__order_created__rejected");
    assert_eq!(rejected.len(), 1);
    let payload: Value = serde_json::from_str(rejected[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["customer"]["addr"]["city"], json!("Rome"));

    // Discovery lists the flattened columns; the catalog deselects one of them.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--discover")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = catalog["streams"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["tap_stream_id"] == "shop__order_created")
        .unwrap();
    assert!(
        stream["schema"]["properties"]["customer__addr__geo"].is_object(),
        "{stream}"
    );
    let geo = stream["metadata"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["breadcrumb"] == json!(["properties", "customer__addr__geo"]))
        .unwrap();
    geo["metadata"]["selected"] = json!(false);
    let catalog_file = dir.path().join("catalog.json");
    std::fs::write(&catalog_file, catalog.to_string()).unwrap();
    let out = run_tap(&config, &["--catalog", catalog_file.to_str().unwrap()]);
    let c = records(&out, "shop__order_created")[0];
    assert!(c.get("customer__addr__geo").is_none(), "{c}");
    assert_eq!(c["customer__addr__city"], json!("Oslo"));
    assert!(schema_of(&out, "shop__order_created")
        .get("customer__addr__geo")
        .is_none());
}

/// Runs the tap expecting it to fail: (stdout lines, stderr).
fn failing_tap(config: &std::path::Path, state: Option<&Value>) -> (Vec<Value>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config);
    let state_file = config.with_file_name("state.json");
    if let Some(s) = state {
        std::fs::write(&state_file, s.to_string()).unwrap();
        cmd.arg("--state").arg(&state_file);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the tap should have failed");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fields_sharing_a_column_stop_the_run_where_they_meet() {
    for prescan in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        // Retention keeps what a state covers, so the later runs see every message.
        let flat = json!({"schema_prescan": prescan, "state_interval_records": 1, "retention_hours": 1000,
                          "flattening_enabled": true, "flattening_max_depth": 1});
        let config = write_config(dir.path(), flat.clone());
        let server = Server::start(&config);
        post(&server, "data", r#"{"a":{"b":1},"n":1}"#).await;
        post(&server, "data", r#"{"a__b":2,"n":2}"#).await;
        post(&server, "data", r#"{"n":3}"#).await;
        // A payload field cannot become one of the tap's own either.
        post(&server, "data", r#"{"":{"sdc_primary_key":"forged"}}"#).await;
        drop(server);

        let (lines, stderr) = failing_tap(&config, None);
        let recs = records(&lines, "data");
        assert_eq!(recs.len(), 1, "prescan {prescan}: {lines:?}");
        let first_seq = recs[0]["_sdc_sequence"].as_i64().unwrap();
        for needle in [
            "source data",
            "stream data",
            "\"a__b\"",
            "/a/b",
            "/a__b",
            "sequence",
        ] {
            assert!(stderr.contains(needle), "{needle} not in: {stderr}");
        }
        // The last STATE covers only the record before the refused message.
        let state = lines.iter().rev().find(|m| m["type"] == "STATE").unwrap();
        let mark = &state["value"]["bookmarks"]["data"]["replication_key_value"];
        assert_eq!(mark.as_i64(), Some(first_seq));
        // Run again: the same records, the same stop (no STATE past the refused message).
        let (again, stderr) = failing_tap(&config, None);
        assert_eq!(records(&again, "data"), recs);
        assert!(stderr.contains("\"a__b\""), "{stderr}");

        // Flattening off: column a__b holds /a/b (the spool remembers), so the top-level
        // a__b is refused there too rather than mixed into it.
        let mut off = flat.clone();
        off["flattening_enabled"] = json!(false);
        let config = write_config(dir.path(), off);
        let (out, stderr) = failing_tap(&config, None);
        let recs = records(&out, "data");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["a"], json!({"b": 1}));
        assert!(
            stderr.contains("/a/b") && stderr.contains("/a__b"),
            "{stderr}"
        );

        // Past the first collision, the tap's own column is defended too.
        let config = write_config(dir.path(), flat);
        let listed = Command::new(BIN)
            .args(["deliveries", "--format", "jsonl", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(listed.status.success());
        let third: Value = String::from_utf8(listed.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .nth(2)
            .unwrap();
        let mark = third["seq"].clone();
        let (_, stderr) = failing_tap(
            &config,
            Some(&json!({"bookmarks": {"data": {"replication_key_value": mark}}})),
        );
        assert!(
            stderr.contains("__sdc_primary_key") && stderr.contains("the tap's own field"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_flattening_past_max_fields_per_message_is_rejected_with_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"max_fields_per_message": 20,
               "flattening_enabled": true, "flattening_max_depth": 3}),
    );
    let server = Server::start(&config);
    // One top-level field (the receiver's bound holds), 30 columns once flattened.
    let wide: Vec<String> = (0..30).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let body = format!(r#"{{"o":{{{}}}}}"#, wide.join(","));
    post(&server, "data", &body).await;
    post(&server, "data", r#"{"o":{"k1":1}}"#).await;
    drop(server);
    let out = run_tap(&config, &[]);
    let rejected = records(&out, "data__rejected");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_fields_per_message"),
        "{}",
        rejected[0]
    );
    assert_eq!(rejected[0]["payload"], json!(body));
    let recs = records(&out, "data");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["o__k1"], json!(1));
    // The rejected message typed nothing: its 30 columns are not in the SCHEMA.
    assert!(schema_of(&out, "data").get("o__k29").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_an_earlier_run_loaded_is_defended_in_later_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"flattening_enabled": true, "flattening_max_depth": 2,
               "sources": {"gh": {"stream_from": {"pointer": "/kind"}}}}),
    );
    let server = Server::start(&config);
    post(&server, "gh", r#"{"kind":"push","a":{"b":1}}"#).await;
    let first = run_tap(&config, &[]);
    assert_eq!(records(&first, "gh__push")[0]["a__b"], json!(1));
    let state = first.iter().rev().find(|m| m["type"] == "STATE").unwrap()["value"].clone();
    // The next run sees only this message: its `a__b` is another field than the column holds.
    post(&server, "gh", r#"{"kind":"push","a__b":"x"}"#).await;
    // The same name in another stream is another table: no clash.
    post(&server, "gh", r#"{"kind":"pull","a__b":"y"}"#).await;
    drop(server);
    let (lines, stderr) = failing_tap(&config, Some(&state));
    assert!(records(&lines, "gh__push").is_empty(), "{lines:?}");
    for needle in ["stream gh__push", "\"a__b\"", "/a/b", "/a__b"] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
    // Another stream's column of that name is its own (another table).
    let config_off = write_config(
        dir.path(),
        json!({"flattening_enabled": true, "flattening_max_depth": 2,
               "sources": {"gh": {"stream_from": {"pointer": "/kind"}, "exclude": ["push"]}}}),
    );
    let out = run_tap(
        &config_off,
        &["--state", dir.path().join("state.json").to_str().unwrap()],
    );
    assert_eq!(records(&out, "gh__pull")[0]["a__b"], json!("y"));
}

/// Found by attack (issue 23's review): the spool noted the columns of flattened runs only, so
/// a source whose table already had a top-level `a__b` (loaded with flattening off) took the
/// flattened `a`/`b` into that column once flattening was turned on, and the other way round:
/// two fields in one column, unnoticed. Both ways must stop as within flattened runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_flattening_on_or_off_cannot_mix_two_fields_in_a_column() {
    for (first, then) in [
        (r#"{"a__b":"top"}"#, r#"{"a":{"b":"nested"}}"#),
        (r#"{"a":{"b":"nested"}}"#, r#"{"a__b":"top"}"#),
    ] {
        let flattened_first = first.contains("nested");
        let dir = tempfile::tempdir().unwrap();
        let settings = |on: bool| {
            json!({"flattening_enabled": on, "flattening_max_depth": 1,
                   "sources": {"data": {}}})
        };
        let config = write_config(dir.path(), settings(flattened_first));
        let server = Server::start(&config);
        post(&server, "data", first).await;
        let out = run_tap(&config, &[]);
        assert_eq!(records(&out, "data").len(), 1);
        let state = out.iter().rev().find(|m| m["type"] == "STATE").unwrap()["value"].clone();
        post(&server, "data", then).await;
        drop(server);
        let config = write_config(dir.path(), settings(!flattened_first));
        let (lines, stderr) = failing_tap(&config, Some(&state));
        assert!(
            records(&lines, "data").is_empty(),
            "{first} then {then}: {lines:?}"
        );
        for needle in ["\"a__b\"", "/a/b", "/a__b"] {
            assert!(stderr.contains(needle), "{needle} not in: {stderr}");
        }
    }
}
