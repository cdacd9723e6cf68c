//! Interop with Python Singer plugins from PyPI, both directions:
//! tap-webhook → target-duckdb, tap-jsonl and a singer-sdk tap → target-warehouse.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{
    peers, pipe_into, read_table, run_ok, tap_bin, target_bin, write_tap_config, Receiver,
};

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn tap_webhook_loads_into_target_duckdb_with_every_column() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let config = write_tap_config(dir.path(), json!({}));
    let receiver = Receiver::start(&config);
    let bodies = [
        r#"{"id":"a","amount":10,"at":"2026-11-25T10:00:00Z","meta":{"k":1}}"#,
        r#"{"id":"b","amount":2.5,"paid":true,"items":[1,2]}"#,
        r#"{"id":"c","note":"late field"}"#,
    ];
    for b in bodies {
        assert_eq!(receiver.post("data", b, &[]), 200);
    }
    let tap_out = run_ok(Command::new(tap_bin()).arg("--config").arg(&config));
    let db = dir.path().join("out.duckdb");
    let target_config = dir.path().join("target-duckdb.json");
    std::fs::write(
        &target_config,
        json!({"filepath": db, "default_target_schema": "raw"}).to_string(),
    )
    .unwrap();
    pipe_into(
        Command::new(&peers["TARGET_DUCKDB"])
            .arg("--config")
            .arg(&target_config),
        tap_out.as_bytes(),
    );
    let query = r#"
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
cols = [r[0] for r in con.execute("select column_name from information_schema.columns where table_schema='raw' and table_name='data'").fetchall()]
rows = con.execute("select id, amount, paid, note from raw.data order by _sdc_sequence").fetchall()
print(json.dumps({"columns": sorted(cols), "rows": [[str(v) if v is not None else None for v in r] for r in rows]}))
"#;
    let result: Value = serde_json::from_str(&run_ok(
        Command::new(&peers["VENV_PYTHON"])
            .args(["-c", query])
            .arg(&db),
    ))
    .unwrap();
    let cols: Vec<&str> = result["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "id",
        "amount",
        "at",
        "meta",
        "paid",
        "items",
        "note",
        "_sdc_sequence",
        "_sdc_received_at",
        "__sdc_primary_key",
    ] {
        assert!(
            cols.contains(&c),
            "column {c} missing from target-duckdb's table: {cols:?}"
        );
    }
    assert_eq!(
        result["rows"],
        json!([
            ["a", "10.0", null, null],
            ["b", "2.5", "True", null],
            ["c", null, null, "late field"]
        ])
    );
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn tap_jsonl_loads_into_target_warehouse() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("orders.jsonl");
    std::fs::write(
        &data,
        "{\"id\": 1, \"amount\": 10, \"ts\": \"2026-11-25T10:00:00Z\", \"tags\": [\"x\"]}\n\
         {\"id\": 2, \"amount\": 12.5, \"ts\": \"2026-11-25T11:00:00Z\"}\n\
         {\"id\": 1, \"amount\": 11, \"ts\": \"2026-11-25T12:00:00Z\"}\n",
    )
    .unwrap();
    let tap_config = dir.path().join("tap-jsonl.json");
    std::fs::write(
        &tap_config,
        json!({"path": format!("{}/*.jsonl", dir.path().display()), "stream_name": "orders", "primary_keys": ["id"]}).to_string(),
    )
    .unwrap();
    let tap_out = run_ok(
        Command::new(&peers["TAP_JSONL"])
            .arg("--config")
            .arg(&tap_config),
    );
    let target_config = dir.path().join("target.json");
    std::fs::write(
        &target_config,
        json!({"warehouse_path": dir.path().join("wh")}).to_string(),
    )
    .unwrap();
    let states = pipe_into(
        Command::new(target_bin())
            .arg("--config")
            .arg(&target_config),
        tap_out.as_bytes(),
    );
    assert!(
        states
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object())),
        "{states}"
    );

    let table = read_table(&peers, &dir.path().join("wh/orders"));
    // Keyed by id: upserted, id 1's latest version wins.
    assert_eq!(table["duckdb"]["count"], 2);
    let cols = &table["duckdb"]["columns"];
    for c in ["id", "amount", "ts", "tags", "_sdc_sequence"] {
        assert!(cols.get(c).is_some(), "column {c} missing: {cols}");
    }
    let rows = table["duckdb"]["rows"].as_array().unwrap();
    let one = rows.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(one["amount"], 11.0);
}

/// Upserts that replace rows of earlier runs mark them in deletion vectors: DuckDB's delta
/// extension and deltalake (Python) must both leave those rows out, before and after
/// `target-warehouse compact` drops them from the small files it merges.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn deletion_vectors_written_by_upserts_are_honoured_by_duckdb_and_deltalake() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let target_config = dir.path().join("target.json");
    std::fs::write(
        &target_config,
        json!({"warehouse_path": dir.path().join("wh"), "deletion_vectors": true}).to_string(),
    )
    .unwrap();
    let schema = json!({"type": "SCHEMA", "stream": "accounts", "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "v": {"type": "string"}}}});
    let run = |records: &[(i64, &str)]| {
        let mut input = format!("{schema}\n");
        for (id, v) in records {
            input.push_str(&format!(
                "{}\n",
                json!({"type": "RECORD", "stream": "accounts", "record": {"id": id, "v": v}})
            ));
        }
        pipe_into(
            Command::new(target_bin())
                .arg("--config")
                .arg(&target_config),
            input.as_bytes(),
        );
    };
    let first: Vec<(i64, String)> = (0..1000).map(|i| (i, format!("v{i}"))).collect();
    run(&first
        .iter()
        .map(|(i, v)| (*i, v.as_str()))
        .collect::<Vec<_>>());
    run(&[(0, "a"), (500, "a"), (999, "a"), (1000, "a")]);
    run(&[(500, "b"), (1, "b")]);
    let table = dir.path().join("wh/accounts");
    let log = std::fs::read_to_string(table.join("_delta_log/00000000000000000002.json")).unwrap();
    assert!(log.contains("\"deletionVector\""), "{log}");
    let want = |id: i64| match id {
        1 | 500 => "b".to_string(),
        0 | 999 | 1000 => "a".to_string(),
        _ => format!("v{id}"),
    };
    let check = |when: &str| {
        let t = read_table(&peers, &table);
        assert_eq!(t["duckdb"]["count"], 1001, "{when}: DuckDB");
        assert_eq!(t["deltalake"]["count"], 1001, "{when}: deltalake");
        let rows = t["duckdb"]["rows"].as_array().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for r in rows {
            let id = r["id"].as_i64().unwrap();
            assert!(ids.insert(id), "{when}: id {id} twice");
            assert_eq!(r["v"], json!(want(id)), "{when}: id {id}");
        }
        t["deltalake"]["files"].as_u64().unwrap()
    };
    assert_eq!(check("with deletion vectors"), 3);
    let out = std::process::Command::new(target_bin())
        .arg("--config")
        .arg(&target_config)
        .arg("compact")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(check("compacted"), 1);

    // One commit per record past version 100: the checkpoint written there must carry the
    // vectors (automatic compaction runs along the way too).
    std::fs::write(
        &target_config,
        json!({"warehouse_path": dir.path().join("wh"), "batch_size_rows": 1}).to_string(),
    )
    .unwrap();
    let updates: Vec<(i64, String)> = (0..110).map(|i| (i % 40, format!("u{i}"))).collect();
    run(&updates
        .iter()
        .map(|(i, v)| (*i, v.as_str()))
        .collect::<Vec<_>>());
    assert!(table
        .join("_delta_log/00000000000000000100.checkpoint.parquet")
        .exists());
    let t = read_table(&peers, &table);
    assert_eq!(
        (
            t["duckdb"]["count"].clone(),
            t["deltalake"]["count"].clone()
        ),
        (json!(1001), json!(1001))
    );
    let latest: std::collections::BTreeMap<i64, &str> =
        updates.iter().map(|(i, v)| (*i, v.as_str())).collect();
    for r in t["duckdb"]["rows"].as_array().unwrap() {
        let id = r["id"].as_i64().unwrap();
        let want = latest.get(&id).map_or_else(|| want(id), |v| v.to_string());
        assert_eq!(r["v"], json!(want), "after the checkpoint: id {id}");
    }
}

/// ACTIVATE_VERSION as a singer-sdk tap emits it (tests/python/sdk_tap.py, a FULL_TABLE stream
/// with `emit_activate_version_messages`), loaded as the SDK's SQL targets load it: without
/// `hard_delete` the rows of older versions stay with `_sdc_deleted_at` set; with it they go.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn sdk_activate_version_soft_deletes_unless_hard_delete() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    // One sync of the SDK tap; its version is the sync's start in seconds.
    let sync = |rows: Value| -> (String, i64) {
        let config = dir.path().join("sdk-tap.json");
        std::fs::write(
            &config,
            json!({"rows": rows, "emit_activate_version_messages": true}).to_string(),
        )
        .unwrap();
        let out = run_ok(
            Command::new(&peers["VENV_PYTHON"])
                .arg(crate::harness::repo_root().join("tests/python/sdk_tap.py"))
                .arg("--config")
                .arg(&config),
        );
        let version = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|m| m["type"] == "ACTIVATE_VERSION")
            .and_then(|m| m["version"].as_i64())
            .expect("the SDK tap emits ACTIVATE_VERSION");
        (out, version)
    };
    let first = sync(json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]));
    let mut second = sync(json!([{"id": 2, "name": "b2"}, {"id": 3, "name": "c"}]));
    // Versions are seconds: a second sync in the same second is the same version; sync again.
    for _ in 0..50 {
        if second.1 > first.1 {
            break;
        }
        second = sync(json!([{"id": 2, "name": "b2"}, {"id": 3, "name": "c"}]));
    }
    assert!(second.1 > first.1, "the second sync has a newer version");
    for hard in [false, true] {
        let wh = dir.path().join(format!("wh-{hard}"));
        let target_config = dir.path().join("target.json");
        std::fs::write(
            &target_config,
            json!({"warehouse_path": wh, "hard_delete": hard}).to_string(),
        )
        .unwrap();
        for (input, _) in [&first, &second] {
            pipe_into(
                Command::new(target_bin())
                    .arg("--config")
                    .arg(&target_config),
                input.as_bytes(),
            );
        }
        let table = read_table(&peers, &wh.join("items"));
        let mut rows: Vec<(i64, String, bool)> = table["duckdb"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["name"].as_str().unwrap().to_owned(),
                    !r["_sdc_deleted_at"].is_null(),
                )
            })
            .collect();
        rows.sort();
        let expected: Vec<(i64, String, bool)> = if hard {
            vec![(2, "b2".into(), false), (3, "c".into(), false)]
        } else {
            vec![
                (1, "a".into(), true),
                (2, "b2".into(), false),
                (3, "c".into(), false),
            ]
        };
        assert_eq!(rows, expected, "hard_delete {hard}");
    }
}

/// BATCH messages as a singer-sdk tap writes them (`batch_config`: jsonl + gzip, and parquet)
/// load the same rows as the same tap's RECORDs.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn sdk_batch_messages_jsonl_gzip_and_parquet_load_like_records() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let rows = json!([{"id": 1, "name": "a"}, {"id": 2, "name": "ü"}, {"id": 3, "name": null}]);
    let load = |name: &str, batch_config: Option<Value>| -> Vec<Value> {
        let mut config = json!({"rows": rows});
        if let Some(b) = batch_config {
            config["batch_config"] = b;
        }
        let config_path = dir.path().join(format!("{name}.json"));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let out = run_ok(
            Command::new(&peers["VENV_PYTHON"])
                .arg(crate::harness::repo_root().join("tests/python/sdk_tap.py"))
                .arg("--config")
                .arg(&config_path),
        );
        let kinds: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(
            kinds.iter().any(|k| k == "\"BATCH\""),
            name != "records",
            "{name}: {kinds:?}"
        );
        let wh = dir.path().join(format!("wh-{name}"));
        let target_config = dir.path().join(format!("target-{name}.json"));
        std::fs::write(&target_config, json!({"warehouse_path": wh}).to_string()).unwrap();
        pipe_into(
            Command::new(target_bin())
                .arg("--config")
                .arg(&target_config),
            out.as_bytes(),
        );
        let table = read_table(&peers, &wh.join("items"));
        let mut got: Vec<Value> = table["duckdb"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["id"], r["name"]]))
            .collect();
        got.sort_by_key(|v| v[0].as_i64());
        got
    };
    let records = load("records", None);
    assert_eq!(
        records,
        vec![json!([1, "a"]), json!([2, "ü"]), json!([3, null])]
    );
    for (name, encoding) in [
        (
            "jsonl-gzip",
            json!({"format": "jsonl", "compression": "gzip"}),
        ),
        ("jsonl", json!({"format": "jsonl", "compression": "none"})),
        (
            "parquet",
            json!({"format": "parquet", "compression": "gzip"}),
        ),
    ] {
        let storage = json!({"root": format!("file://{}", dir.path().display()), "prefix": format!("{name}-")});
        let got = load(
            name,
            Some(json!({"encoding": encoding, "storage": storage})),
        );
        assert_eq!(got, records, "{name}");
    }
}
