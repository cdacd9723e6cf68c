//! receiver → spool → `tap-webhook | target-warehouse` → Delta table, read back by DuckDB and
//! Python deltalake; a second run chained by the target's state loads only the new deliveries.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{
    peers, pipe_into, read_table, tap_bin, target_bin, write_tap_config, write_target_config,
    Receiver,
};

/// Runs `tap-webhook [--state S] | target-warehouse`; returns the target's stdout lines.
pub fn pipe(tap_config: &Path, target_config: &Path, state: Option<&Path>) -> Vec<Value> {
    let mut tap = Command::new(tap_bin());
    tap.arg("--config").arg(tap_config);
    if let Some(s) = state {
        tap.arg("--state").arg(s);
    }
    let tap_out = tap.stderr(Stdio::inherit()).output().unwrap();
    assert!(tap_out.status.success(), "tap failed");
    pipe_into(
        Command::new(target_bin())
            .arg("--config")
            .arg(target_config),
        &tap_out.stdout,
    )
    .lines()
    .map(|l| {
        serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("target stdout line is not a state ({e}): {l}"))
    })
    .collect()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn deliveries_land_once_typed_and_readable_by_duckdb_and_deltalake() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"sources": {"data": {}, "orders": {"primary_key": "order_id"}}}),
    );
    let (target_config, _) = write_target_config(
        dir.path(),
        json!({"warehouse_path": dir.path().join("warehouse")}),
    );
    let receiver = Receiver::start(&tap_config);
    let bodies = [
        r#"{"event":"push","n":1,"at":"2026-11-25T10:00:00Z","repo":{"name":"x","stars":3},"tags":["a","b"],"big":18446744073709551616}"#,
        r#"{"event":"pr","n":2,"at":"2026-11-25T10:00:01.5Z","ok":true}"#,
        r#"[{"event":"open","n":3},{"event":"click","n":4,"score":1.5}]"#,
    ];
    for b in bodies {
        assert_eq!(receiver.post("data", b, &[]), 200);
    }
    // A provider retry: the same delivery twice, stored once.
    for _ in 0..2 {
        assert_eq!(
            receiver.post(
                "data",
                r#"{"event":"retry","n":5}"#,
                &[("X-GitHub-Delivery", "d-5")]
            ),
            200
        );
    }
    assert_eq!(
        receiver.post("orders", r#"{"order_id":1,"total":10}"#, &[]),
        200
    );
    assert_eq!(
        receiver.post("orders", r#"{"order_id":1,"total":12}"#, &[]),
        200
    );

    let states = pipe(&tap_config, &target_config, None);
    let state = states.last().expect("the target printed a state").clone();
    assert!(
        state["bookmarks"]["data"]["replication_key_value"].is_i64(),
        "{state}"
    );

    let data = read_table(&peers, &dir.path().join("warehouse/data"));
    for reader in ["duckdb", "deltalake"] {
        assert_eq!(
            data[reader]["count"], 5,
            "{reader}: 4 messages + 1 (a retried delivery stored once)"
        );
    }
    let cols = &data["duckdb"]["columns"];
    assert_eq!(cols["n"], "BIGINT");
    assert_eq!(cols["_sdc_sequence"], "BIGINT");
    assert!(
        cols["at"].as_str().unwrap().starts_with("TIMESTAMP"),
        "{cols}"
    );
    assert_eq!(cols["ok"], "BOOLEAN");
    assert_eq!(cols["score"], "DOUBLE");
    let rows = data["duckdb"]["rows"].as_array().unwrap();
    let ns: Vec<i64> = rows.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, vec![1, 2, 3, 4, 5]);
    let repo: Value = serde_json::from_str(rows[0]["repo"].as_str().unwrap()).unwrap();
    assert_eq!(
        repo,
        json!({"name": "x", "stars": 3}),
        "nested objects are JSON text"
    );
    let big = rows[0].iter_big();
    assert_eq!(
        big, "18446744073709551616",
        "integers beyond i64 are kept exactly"
    );
    let keys: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["__sdc_primary_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 5);

    let orders = read_table(&peers, &dir.path().join("warehouse/orders"));
    assert_eq!(
        orders["duckdb"]["count"], 1,
        "upserted on the configured primary key"
    );
    assert_eq!(orders["duckdb"]["rows"][0]["total"], 12);

    // Chained: new deliveries, a run from the saved state loads exactly those.
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    assert_eq!(receiver.post("data", r#"{"event":"late","n":6}"#, &[]), 200);
    let states = pipe(&tap_config, &target_config, Some(&state_file));
    assert!(!states.is_empty());
    let data = read_table(&peers, &dir.path().join("warehouse/data"));
    assert_eq!(data["deltalake"]["count"], 6);
    // And a replay of the same state (the target's state was lost) adds nothing.
    let _ = pipe(&tap_config, &target_config, Some(&state_file));
    let data = read_table(&peers, &dir.path().join("warehouse/data"));
    assert_eq!(
        data["deltalake"]["count"], 6,
        "a replay is skipped, not duplicated"
    );
}

/// The huge integer's value, whichever column the target kept it in.
trait BigValue {
    fn iter_big(&self) -> String;
}

impl BigValue for Value {
    fn iter_big(&self) -> String {
        let obj = self.as_object().unwrap();
        obj.iter()
            .filter(|(k, v)| k.starts_with("big") && !v.is_null())
            .map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .next()
            .unwrap_or_default()
    }
}

/// Compaction copies the small files' encoded column chunks into one file, filling columns a
/// file lacks with nulls; DuckDB and Python deltalake must read the result like the original.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_compacted_table_with_added_columns_reads_back_in_duckdb_and_deltalake() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let config = dir.path().join("target.json");
    std::fs::write(
        &config,
        json!({"warehouse_path": warehouse, "batch_size_rows": 1}).to_string(),
    )
    .unwrap();
    // One file per record (40 > the 32 that trigger compaction); every 5 records a new column
    // of another type, so the merged files have different schemas.
    let mut input = json!({"type": "SCHEMA", "stream": "c", "schema": {"type": "object"}, "key_properties": []}).to_string();
    for i in 0..40i64 {
        let mut rec = json!({"id": i, "_sdc_sequence": i + 1});
        match i / 5 {
            0 => {}
            1 => rec["s"] = json!(format!("s{i}")),
            2 => rec["f"] = json!(i as f64 + 0.5),
            3 => rec["b"] = json!(i % 2 == 0),
            4 => rec["t"] = json!(format!("2024-01-{:02}T00:00:00Z", i - 19)),
            5 => rec["o"] = json!({"k": i}),
            _ => rec["big"] = json!(i * 1_000_000_000_000),
        }
        input.push('\n');
        input.push_str(&json!({"type": "RECORD", "stream": "c", "record": rec}).to_string());
    }
    input.push('\n');
    let out = Command::new(target_bin())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "target_warehouse=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("compacted small files") && log.contains("copied=true"),
        "compaction by chunk copy: {log}"
    );
    let data = read_table(&peers, &warehouse.join("c"));
    for reader in ["duckdb", "deltalake"] {
        assert_eq!(data[reader]["count"], 40, "{reader}");
    }
    assert!(data["deltalake"]["files"].as_i64().unwrap() < 40, "{data}");
    let rows = data["duckdb"]["rows"].as_array().unwrap();
    for (i, r) in rows.iter().enumerate() {
        let i = i as i64;
        assert_eq!(r["id"], i, "{r}");
        let set: Vec<&str> = ["s", "f", "b", "t", "o", "big"]
            .into_iter()
            .filter(|c| !r[*c].is_null())
            .collect();
        let want: &[&str] = match i / 5 {
            0 => &[],
            1 => &["s"],
            2 => &["f"],
            3 => &["b"],
            4 => &["t"],
            5 => &["o"],
            _ => &["big"],
        };
        assert_eq!(set, want, "row {i}: {r}");
    }
    assert_eq!(rows[7]["s"], "s7");
    assert_eq!(rows[12]["f"], 12.5);
    assert_eq!(rows[16]["b"], true);
    assert!(
        rows[22]["t"].as_str().unwrap().starts_with("2024-01-03"),
        "{}",
        rows[22]
    );
    assert_eq!(rows[39]["big"], 39_000_000_000_000i64);
}
