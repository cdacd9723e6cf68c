//! Bad input: a clear error naming line and stream, non-zero exit, earlier commits intact.

use serde_json::json;

use crate::harness::*;

fn fails_with(input: &str, expected: &[&str]) {
    let (_d, wh) = warehouse();
    let r = run(&wh, json!({}), input);
    assert!(!r.ok(), "should fail");
    let err = r.stderr();
    for e in expected {
        assert!(err.contains(e), "{e:?} not in {err}");
    }
}

#[test]
fn record_before_schema() {
    fails_with(
        &lines(&[record("s", json!({"a": 1}))]),
        &["line 1", "\"s\"", "RECORD before its SCHEMA"],
    );
}

#[test]
fn record_missing_a_key_property() {
    let s = schema_msg("s", json!({"id": {"type": "integer"}}), &["id"]);
    fails_with(
        &lines(&[
            s,
            record("s", json!({"id": 1})),
            record("s", json!({"x": 1})),
        ]),
        &["line 3", "\"s\"", "key property \"id\""],
    );
}

#[test]
fn schema_that_is_not_an_object_schema() {
    let bad = json!({"type": "SCHEMA", "stream": "s", "schema": {"type": "string"}, "key_properties": []});
    fails_with(&lines(&[bad]), &["line 1", "\"s\"", "not an object schema"]);
}

#[test]
fn unparsable_line() {
    fails_with(
        "{\"type\":\"STATE\",\"value\":{}}\n{not json\n",
        &["line 2"],
    );
}

#[test]
fn earlier_commits_survive_a_failing_batch() {
    let (_d, wh) = warehouse();
    let s = schema_msg("s", json!({"id": {"type": "integer"}}), &["id"]);
    let input = lines(&[
        s,
        record("s", json!({"id": 1})),
        state(json!({"n": 1})),
        record("s", json!({"id": 2})),
        record("s", json!({})),
    ]);
    let r = run(&wh, json!({"batch_size_rows": 1}), &input);
    assert!(!r.ok());
    let ids: Vec<_> = read_table(&wh.join("s"), "s")
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2)]);
}

#[test]
fn object_schema_without_properties_is_fine_and_about_works() {
    let (_d, wh) = warehouse();
    let s = json!({"type": "SCHEMA", "stream": "s", "schema": {"type": "object"}, "key_properties": []});
    let r = run(&wh, json!({}), &lines(&[s, record("s", json!({"a": 1}))]));
    assert!(r.ok(), "{}", r.stderr());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .args(["--about", "--format", "json"])
        .output()
        .expect("about");
    let about: serde_json::Value = serde_json::from_slice(&out.stdout).expect("about json");
    assert!(about.to_string().contains("warehouse_path"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .arg("--version")
        .output()
        .expect("version");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("target-warehouse "));
}
