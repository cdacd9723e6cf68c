//! The tap's runs, chained by state, over a spool filled through the real receiver.

use serde_json::{json, Value};

use std::process::Command;

use tap_webhook::spool::reader::SpoolReader;

use crate::harness::{client, last_state, records, run_tap, write_config, Server, BIN};

async fn post(server: &Server, source: &str, body: &str, delivery: Option<&str>) {
    let mut req = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_owned());
    if let Some(d) = delivery {
        req = req.header("x-github-delivery", d);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

fn write_state(dir: &std::path::Path, state: &Value) -> String {
    let p = dir.join(format!("state-{}.json", rand_suffix()));
    std::fs::write(&p, state.to_string()).unwrap();
    p.display().to_string()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_chain_by_state_and_replays_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({"state_interval_records": 2}));
    let server = Server::start(&config);
    for i in 0..5 {
        post(
            &server,
            "data",
            &format!(r#"{{"n":{i},"at":"2024-05-01T12:00:0{i}Z","nested":{{"k":[{i}]}}}}"#),
            None,
        )
        .await;
    }
    let first = run_tap(&config, &[]);
    let recs = records(&first, "data");
    assert_eq!(recs.len(), 5);
    let seqs: Vec<i64> = recs
        .iter()
        .map(|r| r["_sdc_sequence"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The receipt time and sequence again under names SDK targets do not overwrite.
    for r in &recs {
        assert_eq!(r["webhook_sequence"], r["_sdc_sequence"]);
        assert_eq!(r["webhook_received_at"], r["_sdc_received_at"]);
        assert!(r["webhook_received_at"].is_string());
    }
    assert_eq!(recs[2]["nested"], json!({"k": [2]}));
    // SCHEMA comes before the first record, typing payload fields and the _sdc_ ones.
    let schema = first.iter().position(|m| m["type"] == "SCHEMA").unwrap();
    let first_record = first.iter().position(|m| m["type"] == "RECORD").unwrap();
    assert!(schema < first_record);
    let props = &first[schema]["schema"]["properties"];
    assert_eq!(
        props["at"],
        json!({"type": ["null", "string"], "format": "date-time"})
    );
    assert_eq!(props["_sdc_sequence"], json!({"type": "integer"}));
    assert_eq!(props["webhook_sequence"], json!({"type": "integer"}));
    assert_eq!(
        props["webhook_received_at"],
        json!({"type": "string", "format": "date-time"})
    );
    assert_eq!(
        first[schema]["key_properties"],
        json!(["__sdc_primary_key"])
    );
    // STATE every 2 records, each after the records it covers, and one at the end.
    let states: Vec<usize> = first
        .iter()
        .enumerate()
        .filter(|(_, m)| m["type"] == "STATE")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(states.len(), 3);
    for &i in &states {
        let mark = first[i]["value"]["bookmarks"]["data"]["replication_key_value"]
            .as_i64()
            .unwrap();
        let emitted_before: Vec<i64> = first[..i]
            .iter()
            .filter(|m| m["type"] == "RECORD")
            .map(|m| m["record"]["_sdc_sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(
            Some(&mark),
            emitted_before.last(),
            "a state covers exactly what preceded it"
        );
    }
    let state1 = last_state(&first).unwrap();

    // The target failed: its state was never saved. Rerun from nothing: identical records.
    let again = run_tap(&config, &[]);
    assert_eq!(records(&again, "data"), recs);

    // Chained: the second run emits nothing.
    let s1 = write_state(dir.path(), &state1);
    let second = run_tap(&config, &["--state", &s1]);
    assert!(records(&second, "data").is_empty());
    assert_eq!(
        last_state(&second).unwrap(),
        state1,
        "the state carries over unchanged"
    );

    // New deliveries: the third run emits exactly those.
    // A payload field named like the tap's own is dropped: the receipt facts cannot be spoofed.
    post(
        &server,
        "data",
        r#"{"n":5,"new_field":true,"webhook_sequence":"spoofed"}"#,
        None,
    )
    .await;
    post(&server, "data", r#"{"n":6}"#, None).await;
    let third = run_tap(&config, &["--state", &s1]);
    let new: Vec<i64> = records(&third, "data")
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(new, vec![5, 6]);
    for r in records(&third, "data") {
        assert_eq!(r["webhook_sequence"], r["_sdc_sequence"]);
    }
    let schema = third.iter().find(|m| m["type"] == "SCHEMA").unwrap();
    assert_eq!(
        schema["schema"]["properties"]["new_field"],
        json!({"type": ["null", "boolean"]})
    );

    // The first run's messages were pruned (state 1 proved them committed); an older state
    // can no longer replay them, but the new ones are still there.
    let from_scratch = run_tap(&config, &[]);
    assert_eq!(records(&from_scratch, "data").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_committed_messages_for_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({"retention_hours": 1}));
    let server = Server::start(&config);
    post(&server, "data", r#"{"a":1}"#, None).await;
    let first = run_tap(&config, &[]);
    let s1 = write_state(dir.path(), &last_state(&first).unwrap());
    let _ = run_tap(&config, &["--state", &s1]);
    // Replay from the beginning still works: nothing is older than the retention.
    let replay = run_tap(&config, &[]);
    assert_eq!(records(&replay, "data"), records(&first, "data"));
}

/// A spool of `n` messages through a real receiver; its config.
async fn spool_of(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let config = write_config(dir, json!({}));
    let server = Server::start(&config);
    for i in 0..n {
        post(&server, "data", &format!(r#"{{"i":{i}}}"#), None).await;
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_states_name_their_spool_and_another_spools_state_prunes_nothing() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spool_of(a_dir.path(), 3).await;
    let b = spool_of(b_dir.path(), 2).await;

    // Every record and the STATE carry the spool's producer id, the same on every run; the
    // SCHEMA declares it a string.
    let first = run_tap(&a, &[]);
    let state_a = last_state(&first).unwrap();
    let producer_a = state_a["producer"].as_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&producer_a)
            .unwrap()
            .get_version_num(),
        7
    );
    let recs = records(&first, "data");
    assert_eq!(recs.len(), 3);
    assert!(recs
        .iter()
        .all(|r| r["_sdc_producer"] == producer_a.as_str()));
    let schema = first.iter().find(|m| m["type"] == "SCHEMA").unwrap();
    assert_eq!(
        schema["schema"]["properties"]["_sdc_producer"],
        json!({"type": ["string"]})
    );
    assert_eq!(last_state(&run_tap(&a, &[])).unwrap(), state_a, "stable");
    let state_b = last_state(&run_tap(&b, &[])).unwrap();
    assert_ne!(state_b["producer"], state_a["producer"]);

    // B's state handed to A: B's bookmarks say nothing of A's sequences. Everything A holds is
    // emitted, nothing is pruned, and the state printed is A's.
    let foreign = write_state(a_dir.path(), &state_b);
    let out = Command::new(BIN)
        .args(["--config", a.to_str().unwrap(), "--state", &foreign])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARN")
            && stderr.contains(&producer_a)
            && stderr.contains(state_b["producer"].as_str().unwrap()),
        "a warning naming both producers: {stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records(&lines, "data"), recs);
    assert_eq!(last_state(&lines).unwrap(), state_a);
    let spool = SpoolReader::open(&a_dir.path().join("spool.sqlite")).unwrap();
    assert_eq!(spool.count("data").unwrap(), 3, "nothing pruned");
    assert_eq!(spool.producer(), producer_a);

    // A's own state prunes what it covers; one without a producer (written before producer
    // ids) is taken as A's too.
    let mut legacy = state_a.clone();
    legacy.as_object_mut().unwrap().remove("producer");
    let legacy = write_state(a_dir.path(), &legacy);
    assert!(records(&run_tap(&a, &["--state", &legacy]), "data").is_empty());
    assert_eq!(spool.count("data").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_id_one_generated_key_and_keyed_sources() {
    let dir = tempfile::tempdir().unwrap();
    // Dedupe off so both copies are stored: the key must still be one.
    let config = write_config(
        dir.path(),
        json!({"dedupe_window_seconds": 0, "sources": {
            "gh": {},
            "orders": {"primary_key": "order_id"},
            "mixed": {"primary_key": "id"},
            "nekt": {"record_shape": "packed"}
        }}),
    );
    let server = Server::start(&config);
    post(&server, "gh", r#"{"action":"opened"}"#, Some("d-1")).await;
    post(&server, "gh", r#"{"action":"opened"}"#, Some("d-1")).await;
    post(&server, "gh", r#"{"action":"closed"}"#, Some("d-2")).await;
    post(&server, "orders", r#"{"order_id":7,"total":9.5}"#, None).await;
    post(&server, "orders", r#"{"total":1}"#, None).await;
    // Values that cannot be keys: each rejected with its reason, none emitted.
    let too_long = format!(r#"{{"order_id":"{}"}}"#, "x".repeat(1025));
    let unusable = [
        (r#"{"order_id":{"obj":2}}"#, "object"),
        (r#"{"order_id":[1]}"#, "array"),
        (r#"{"order_id":true}"#, "boolean"),
        (r#"{"order_id":null}"#, "null"),
        (r#"{"order_id":5.0}"#, "not an integer"),
        (r#"{"order_id":123456789012345678901234567890}"#, "64-bit"),
        (&too_long, "1025 bytes"),
    ];
    for (body, _) in &unusable {
        post(&server, "orders", body, None).await;
    }
    post(&server, "orders", r#"{"order_id":8}"#, None).await;
    post(&server, "mixed", r#"{"id":1}"#, None).await;
    post(&server, "mixed", r#"{"id":"gid://shopify/Order/1"}"#, None).await;
    post(&server, "nekt", "{\"raw\" :  1}\n", None).await;
    let out = run_tap(&config, &[]);
    let gh = records(&out, "gh");
    assert_eq!(gh.len(), 2 + 1);
    assert_eq!(gh[0]["__sdc_primary_key"], gh[1]["__sdc_primary_key"]);
    assert_ne!(gh[0]["__sdc_primary_key"], gh[2]["__sdc_primary_key"]);

    let orders = records(&out, "orders");
    assert_eq!(orders.len(), 2);
    assert_eq!(
        (&orders[0]["order_id"], &orders[1]["order_id"]),
        (&json!(7), &json!(8))
    );
    assert!(orders[0].get("__sdc_primary_key").is_none());
    let schema_of = |stream: &str| {
        out.iter()
            .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
            .unwrap()
            .clone()
    };
    let schema = schema_of("orders");
    assert_eq!(schema["key_properties"], json!(["order_id"]));
    // The key is declared by what was seen: integers only.
    assert_eq!(
        schema["schema"]["properties"]["order_id"],
        json!({"type": "integer"})
    );
    assert_eq!(
        schema_of("mixed")["schema"]["properties"]["id"],
        json!({"type": ["integer", "string"]})
    );
    assert_eq!(records(&out, "mixed").len(), 2);
    let rejected = records(&out, "orders__rejected");
    assert_eq!(
        rejected.len(),
        1 + unusable.len(),
        "a message without a usable key is not dropped silently"
    );
    assert_eq!(rejected[0]["payload"], r#"{"total":1}"#);
    assert!(rejected[0]["reason"].as_str().unwrap().contains("order_id"));
    for (r, (body, why)) in rejected[1..].iter().zip(&unusable) {
        assert_eq!(r["payload"], *body);
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("order_id") && reason.contains(why),
            "{reason}"
        );
    }

    // Records keep the contract in schemas/.
    let schema = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!("{}/../schemas/{name}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        )
        .unwrap()
    };
    let (unpacked, packed) = (
        schema("record-unpacked.schema.json"),
        schema("record-packed.schema.json"),
    );
    for r in gh.iter().chain(&orders) {
        singer::config::validate(&unpacked, r.as_object().unwrap()).unwrap();
    }
    let nekt = records(&out, "nekt");
    singer::config::validate(&packed, nekt[0].as_object().unwrap()).unwrap();
    let mut broken = nekt[0].as_object().unwrap().clone();
    broken.remove("payload");
    assert!(
        singer::config::validate(&packed, &broken).is_err(),
        "the schema can fail"
    );
    assert_eq!(
        nekt[0]["payload"], "{\"raw\" :  1}\n",
        "packed payload is the raw body"
    );
    assert!(nekt[0]["message_id"].is_string() && nekt[0]["webhook_received_at"].is_string());
    assert_eq!(nekt[0]["webhook_sequence"], nekt[0]["_sdc_sequence"]);
    assert_eq!(
        rejected[0]["webhook_sequence"],
        rejected[0]["_sdc_sequence"]
    );
    assert!(nekt[0]["headers"].is_object() && nekt[0]["query"].is_object());

    // on_missing_key = fail stops the run with a clear error.
    let strict = write_config(
        dir.path(),
        json!({"sources": {"orders": {"primary_key": "order_id", "on_missing_key": "fail"}}}),
    );
    let res = std::process::Command::new(crate::harness::BIN)
        .arg("--config")
        .arg(&strict)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains(r#"lacks primary key "order_id": it is missing"#),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_catalog_selection_and_bounded_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({"sources": {"a": {}, "b": {}}}));
    let server = Server::start(&config);
    for i in 0..4 {
        post(&server, "a", &format!(r#"{{"keep":{i},"drop":"x"}}"#), None).await;
        post(&server, "b", r#"{"x":1}"#, None).await;
    }
    // Meltano passes --state with --discover: accepted, and stdout is one catalog.
    let state = write_state(dir.path(), &json!({"bookmarks": {}}));
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--config")
        .arg(&config)
        .args(["--discover", "--state", &state])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = catalog["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let root = &streams[0]["metadata"][0]["metadata"];
    assert_eq!(root["forced-replication-method"], "INCREMENTAL");
    assert_eq!(root["valid-replication-keys"], json!(["_sdc_sequence"]));
    assert_eq!(
        streams[0]["schema"]["properties"]["keep"],
        json!({"type": ["null", "integer"]})
    );

    // Deselect stream b and field a.drop.
    for s in catalog["streams"].as_array_mut().unwrap() {
        let selected = s["tap_stream_id"] == "a";
        for m in s["metadata"].as_array_mut().unwrap() {
            if m["breadcrumb"] == json!([]) {
                m["metadata"]["selected"] = json!(selected);
            }
            if m["breadcrumb"] == json!(["properties", "drop"]) {
                m["metadata"]["selected"] = json!(false);
            }
        }
    }
    let cat_path = dir.path().join("catalog.json");
    std::fs::write(&cat_path, catalog.to_string()).unwrap();
    let cat = cat_path.display().to_string();
    let out = run_tap(&config, &["--catalog", &cat]);
    assert!(records(&out, "b").is_empty());
    let a = records(&out, "a");
    assert_eq!(a.len(), 4);
    assert!(a
        .iter()
        .all(|r| r.get("drop").is_none() && r.get("keep").is_some()));

    // Bounded: max_records stops early with a state covering exactly what was emitted.
    let bounded = write_config(
        dir.path(),
        json!({"max_records": 3, "sources": {"a": {}, "b": {}}}),
    );
    let out = run_tap(&bounded, &[]);
    let emitted = out.iter().filter(|m| m["type"] == "RECORD").count();
    assert_eq!(emitted, 3);
    let s = write_state(dir.path(), &last_state(&out).unwrap());
    let rest = run_tap(&bounded, &["--state", &s]);
    let rest_count = rest.iter().filter(|m| m["type"] == "RECORD").count();
    assert_eq!(
        rest_count, 3,
        "the next run continues where the bounded one stopped"
    );
}

#[test]
fn about_in_three_formats_and_config_errors_name_the_setting() {
    let run = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let json_about: Value =
        serde_json::from_slice(&run(&["--about", "--format", "json"]).stdout).unwrap();
    assert_eq!(
        json_about["capabilities"],
        json!(["catalog", "discover", "state", "about", "schema-flattening"])
    );
    assert!(json_about["settings"]["properties"]["sources"].is_object());
    let md = String::from_utf8(run(&["--about", "--format", "markdown"]).stdout).unwrap();
    assert!(
        md.contains("| `sources.*.api_keys` | array (secret) |"),
        "{md}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"sources": {"x": {"primary_key": ""}}}"#).unwrap();
    let out = run(&["--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sources.x.primary_key"));
    assert!(out.stdout.is_empty(), "errors never reach stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prescan_sends_one_complete_schema_and_streaming_resends_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), json!({}));
    let server = Server::start(&config);
    post(&server, "data", r#"{"amount":10}"#, None).await;
    post(&server, "data", r#"{"amount":2.5,"late":"x"}"#, None).await;
    let out = run_tap(&config, &[]);
    let schemas: Vec<&Value> = out.iter().filter(|m| m["type"] == "SCHEMA").collect();
    assert_eq!(
        schemas.len(),
        1,
        "one SCHEMA, complete before the first record"
    );
    assert_eq!(
        schemas[0]["schema"]["properties"]["amount"],
        json!({"type": ["null", "number"]})
    );
    assert!(schemas[0]["schema"]["properties"]["late"].is_object());

    let streaming = write_config(dir.path(), json!({"schema_prescan": false}));
    let out = run_tap(&streaming, &[]);
    let schemas: Vec<&Value> = out.iter().filter(|m| m["type"] == "SCHEMA").collect();
    assert_eq!(
        schemas.len(),
        2,
        "SCHEMA re-sent when a type and a field appear"
    );
    assert_eq!(
        schemas[0]["schema"]["properties"]["amount"],
        json!({"type": ["null", "integer"]})
    );
    assert_eq!(
        schemas[1]["schema"]["properties"]["amount"],
        json!({"type": ["null", "number"]})
    );
    let kinds: Vec<&str> = out.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["SCHEMA", "RECORD", "SCHEMA", "RECORD", "STATE"]);
}
