//! receiver → spool → `tap-webhook | target-warehouse` → Delta table, read back by DuckDB and
//! Python deltalake; a second run chained by the target's state loads only the new deliveries.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{peers, pipe_into, read_table, tap_bin, target_bin, Receiver};

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
fn deliveries_land_once_typed_and_readable_by_duckdb_and_deltalake() {
    let Some(peers) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tap_config = dir.path().join("tap.json");
    std::fs::write(
        &tap_config,
        json!({"spool_path": dir.path().join("spool.sqlite"), "listen_address": "127.0.0.1:0",
               "sources": {"data": {}, "orders": {"primary_key": "order_id"}}})
        .to_string(),
    )
    .unwrap();
    let target_config = dir.path().join("target.json");
    std::fs::write(
        &target_config,
        json!({"warehouse_path": dir.path().join("warehouse")}).to_string(),
    )
    .unwrap();
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
