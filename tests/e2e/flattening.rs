//! Flattening (issue 23): the tap's flattened SCHEMA and RECORDs against the Singer SDK's own
//! `flatten_schema` / `flatten_record` run on the same payloads (tests/python/sdk_flatten.py),
//! at depths 0 to 3; and GitHub's payloads, routed and flattened, loaded by target-warehouse
//! into tables whose columns are the flattened names, read back by DuckDB and deltalake.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Map, Value};

use crate::harness::{
    github_examples, peers, read_table, repo_root, run_ok, tap_bin, write_tap_config,
    write_target_config, Receiver,
};
use crate::pipeline::pipe;

/// Payloads meant to find every difference: nesting past every depth, nulls where objects are
/// elsewhere, arrays of objects, type conflicts, names of 255 characters and more (the SDK's
/// reducer), unicode names and values, escapes, a lone surrogate, numbers Python prints
/// differently from how they were sent, repeated names.
fn payloads() -> Vec<String> {
    let long = "long_Key_Name_".repeat(20);
    let mid = "x".repeat(120);
    vec![
        r#"{"id":1,"customer":{"name":"Zoë","address":{"city":"Köln","geo":{"lat":50.9375,"lng":6.96}},"tags":["a","b"]},"amount":1.50,"big":1e5,"flag":true}"#.to_owned(),
        r#"{"id":2,"customer":{"name":null,"address":null},"amount":-0,"nothing":null,"items":[{"sku":"x","qty":1},{"sku":"y","qty":2.0}],"empty":{}}"#.to_owned(),
        r#"{"id":12345678901234567890,"customer":"guest","amount":"n/a","meta":{"a":{"b":{"c":{"d":1}}},"list":[]}}"#.to_owned(),
        r#"{"id":"k4","données":{"clé_été":"ÉTÉ","straße_name":"\u00df","emoji":"😀\ud83d\ude00","esc":"q\"uote\\ \n\t\u0001\u2028/"},"arr":["\ud83d",0.0000001,-0.0,12.5e1,{"z":1,"a":2,"z":3},"日本"]}"#.to_owned(),
        format!(
            r#"{{"id":5,"{long}":1,"{mid}":{{"{mid}":{{"{mid}":"deep"}}}},"Another_Parent":{{"Very_Long_Field_Name_{long}":true}}}}"#
        ),
        r#"{"id":6,"meta":{"a":{"b":"x"}},"customer":{"address":{"geo":"unknown"}}}"#.to_owned(),
        r#"{"id":7,"nested_dupe":{"k":1,"k":{"x":1}},"dup":1,"dup":2,"amount":1E-7}"#.to_owned(),
    ]
}

fn tap_config(dir: &Path, flattening: Value) -> std::path::PathBuf {
    let path = dir.join(format!("tap-{}.json", uuid_like(&flattening)));
    let mut source = Map::new();
    if let Value::Object(f) = flattening {
        source.extend(f);
    }
    std::fs::write(
        &path,
        json!({"spool_path": dir.join("spool.sqlite"), "listen_address": "127.0.0.1:0",
               "sources": {"shop": source}})
        .to_string(),
    )
    .unwrap();
    path
}

/// A file-name-safe digest of a config fragment.
fn uuid_like(v: &Value) -> String {
    v.to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn flattened_schema_and_records_equal_the_singer_sdks() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&tap_config(dir.path(), json!({})));
    let bodies = payloads();
    for b in &bodies {
        assert_eq!(receiver.post("shop", b, &[]), 200, "{b}");
    }
    drop(receiver);
    let payload_file = dir.path().join("payloads.jsonl");
    std::fs::write(&payload_file, bodies.join("\n")).unwrap();

    for (depth, key_length) in [(0, 255), (1, 255), (2, 255), (3, 255), (2, 40)] {
        let config = tap_config(
            dir.path(),
            json!({"flattening_enabled": true, "flattening_max_depth": depth,
                   "flattening_max_key_length": key_length}),
        );
        let out = run_ok(Command::new(tap_bin()).arg("--config").arg(&config));
        let out_file = dir.path().join(format!("out-{depth}-{key_length}.jsonl"));
        std::fs::write(&out_file, &out).unwrap();
        let report: Value = serde_json::from_str(&run_ok(
            Command::new(&peers["VENV_PYTHON"])
                .arg(repo_root().join("tests/python/sdk_flatten.py"))
                .arg(depth.to_string())
                .arg(key_length.to_string())
                .arg(&payload_file)
                .arg(&out_file)
                .arg("shop"),
        ))
        .unwrap();
        let at = format!("depth {depth}, max key length {key_length}: {report}");
        assert_eq!(report["errors"], json!([]), "{at}");
        assert_eq!(report["records"], json!(bodies.len()), "{at}");
        let columns: BTreeSet<&str> = report["tap_columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let record_only: BTreeSet<&str> = report["record_only"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // What each depth must have produced, so an empty comparison cannot pass.
        match depth {
            0 => assert!(columns.contains("customer") && !columns.contains("customer__name")),
            1 => assert!(
                columns.contains("customer__address")
                    && columns.contains("données__clé_été")
                    && record_only.contains("customer"),
                "{at}"
            ),
            _ => assert!(
                columns.contains("customer__address__city")
                    && columns.contains("nested_dupe__k__x")
                    && record_only.contains("customer__address"),
                "{at}"
            ),
        }
        if depth == 3 {
            assert!(record_only.contains("meta__a__b"), "{at}");
        }
        if depth > 0 {
            // The reducer ran: no column is as long as the names it was given.
            assert!(columns.iter().all(|c| c.chars().count() < 270), "{at}");
            assert!(columns.iter().any(|c| c.starts_with("ap__vlfn")), "{at}");
        }
        if key_length == 40 {
            assert!(columns.contains("xxx__xxx__xxx"), "{at}");
        }
    }
}

/// The committed GitHub example payloads, depth 1: each column of the event's payload, or
/// `parent__child` for each of an object's fields.
fn flattened_columns(payload: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in payload.as_object().unwrap() {
        match v {
            Value::Object(children) => {
                // A field null in every row makes no column (the target types columns by value).
                out.extend(
                    children
                        .iter()
                        .filter(|(_, c)| !c.is_null())
                        .map(|(c, _)| format!("{k}__{c}")),
                );
            }
            Value::Null => {}
            _ => {
                out.insert(k.clone());
            }
        }
    }
    out
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn flattened_github_events_land_in_tables_with_the_flattened_columns() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    // The SDK's settings at the top level, where SDK taps take them.
    let tap_config = write_tap_config(
        dir.path(),
        json!({"flattening_enabled": true, "flattening_max_depth": 1,
               "sources": {"github": {"stream_from": {"header": "X-GitHub-Event"},
                                      "exclude": ["ping"]}}}),
    );
    let (target_config, warehouse) = write_target_config(dir.path(), json!({}));
    let receiver = Receiver::start(&tap_config);
    let mut posted: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (i, (event, payload)) in github_examples().iter().enumerate() {
        let event = event.as_str();
        let delivery = format!("5a1c0d2e-{i:04}");
        let status = receiver.post(
            "github",
            &payload.to_string(),
            &[("X-GitHub-Event", event), ("X-GitHub-Delivery", &delivery)],
        );
        assert_eq!(status, 200, "{event}");
        posted
            .entry(event.to_owned())
            .or_default()
            .push(payload.clone());
    }
    drop(receiver);
    let states = pipe(&tap_config, &target_config, None);
    assert!(!states.is_empty());

    let mut checked_json_text = 0;
    for (event, payloads) in posted.iter().filter(|(e, _)| *e != "ping") {
        let t = read_table(&peers, &warehouse.join(format!("github__{event}")));
        assert_eq!(t["duckdb"]["count"], json!(payloads.len()), "{event}");
        assert_eq!(t["deltalake"]["count"], json!(payloads.len()), "{event}");
        let want: BTreeSet<String> = payloads.iter().flat_map(flattened_columns).collect();
        for reader in ["duckdb", "deltalake"] {
            let cols: BTreeSet<String> = t[reader]["columns"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|c| !c.starts_with('_') && !c.starts_with("webhook_"))
                .cloned()
                .collect();
            assert_eq!(cols, want, "{event}: {reader} columns");
        }
        // Values: a nested scalar in its column; an object below the depth as its JSON text.
        let row = &t["duckdb"]["rows"][0];
        let first = &payloads[0];
        if let Some(login) = first["sender"]["login"].as_str() {
            assert_eq!(row["sender__login"], json!(login), "{event}");
        }
        for (parent, children) in first.as_object().unwrap() {
            for (child, value) in children.as_object().into_iter().flatten() {
                if value.is_object() || value.is_array() {
                    let text = row[format!("{parent}__{child}")].as_str().unwrap();
                    let back: Value = serde_json::from_str(text).unwrap();
                    assert_eq!(&back, value, "{event}: {parent}__{child}");
                    assert!(text.is_ascii(), "{text}");
                    checked_json_text += 1;
                }
            }
        }
    }
    assert!(checked_json_text > 10, "{checked_json_text}");
}
