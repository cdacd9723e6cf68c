//! Exact decimals (issue 29 item 7): properties declared as the SDK declares SQL NUMERIC
//! (`singer.decimal` strings) or with `multipleOf` become Decimal128 columns that DuckDB and
//! Python `deltalake` read back digit for digit; a value with more decimals than the column
//! keeps its exact text in a sibling column.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{peers, pipe_into, read_table, target_bin};

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn declared_decimals_are_stored_exactly_and_read_back_by_duckdb_and_deltalake() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({"type": "SCHEMA", "stream": "money", "key_properties": ["n"], "schema": {
    "properties": {
        "n": {"type": "integer"},
        // The tap's own form for cents.
        "price": {"type": ["number", "null"], "multipleOf": 0.01},
        // What singer-sdk 0.53 emits for NUMERIC with use_singer_decimal.
        "amount": {"type": ["string", "null"], "format": "singer.decimal"},
        // What SDK targets read with precision and scale.
        "rate": {"type": ["string", "null"], "format": "x-singer.decimal", "precision": 6, "scale": 4},
        "ratio": {"type": ["number", "null"]},
    }}});
    // Raw lines: the numbers' text must reach the target as written, not through an f64.
    let rows = [
        r#"{"n": 1, "price": 19.99, "amount": "12345678901234567890.123456789", "rate": "0.0125", "ratio": 0.5}"#,
        r#"{"n": 2, "price": 0.1, "amount": "0.1", "rate": "12.5", "ratio": 0.1}"#,
        r#"{"n": 3, "price": 123456789012345678901234567890123456.78, "amount": "-7", "rate": "-99.9999", "ratio": 2}"#,
        // Too many decimals for each column: kept exactly in the siblings.
        r#"{"n": 4, "price": 0.125, "amount": "1.0000000001", "rate": "100.00001", "ratio": null}"#,
        r#"{"n": 5, "price": 7, "amount": "not a number", "rate": "123.4", "ratio": 1e2}"#,
    ];
    let mut input = format!("{schema}\n");
    for r in rows {
        input.push_str(&format!(
            r#"{{"type": "RECORD", "stream": "money", "record": {r}}}"#
        ));
        input.push('\n');
    }
    let wh = dir.path().join("wh");
    let config = dir.path().join("target.json");
    std::fs::write(&config, json!({"warehouse_path": wh}).to_string()).unwrap();
    pipe_into(
        Command::new(target_bin()).arg("--config").arg(&config),
        input.as_bytes(),
    );
    let table = read_table(&peers, &wh.join("money"));
    let cols = &table["deltalake"]["columns"];
    assert_eq!(cols["price"], "decimal128(38, 2)", "{cols}");
    assert_eq!(cols["amount"], "decimal128(38, 9)", "{cols}");
    assert_eq!(cols["rate"], "decimal128(6, 4)", "{cols}");
    assert_eq!(
        cols["ratio"], "double",
        "a plain number stays a double: {cols}"
    );
    assert_eq!(table["duckdb"]["columns"]["price"], "DECIMAL(38,2)");
    let mut rows: Vec<&Value> = table["duckdb"]["rows"].as_array().unwrap().iter().collect();
    rows.sort_by_key(|r| r["n"].as_i64());
    let got: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r["price"],
                r["price__json"],
                r["amount"],
                r["amount__string"],
                r["rate"],
                r["rate__string"]
            ])
        })
        .collect();
    assert_eq!(
        got,
        vec![
            json!([
                "19.99",
                null,
                "12345678901234567890.123456789",
                null,
                "0.0125",
                null
            ]),
            json!(["0.10", null, "0.100000000", null, "12.5000", null]),
            json!([
                "123456789012345678901234567890123456.78",
                null,
                "-7.000000000",
                null,
                "-99.9999",
                null
            ]),
            json!([null, "0.125", null, "1.0000000001", null, "100.00001"]),
            json!(["7.00", null, null, "not a number", null, "123.4"]),
        ]
    );
    assert_eq!(table["deltalake"]["count"], 5, "nothing lost");
}
