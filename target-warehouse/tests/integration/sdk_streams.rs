//! The Singer SDK's standard target test streams (tests/fixtures/sdk_streams).

use std::path::Path;

use serde_json::json;

use crate::harness::*;

const MUST_FAIL: &[(&str, &str)] = &[
    ("record_before_schema", "RECORD before its SCHEMA"),
    ("record_missing_key_property", "key property \"id\""),
];

#[test]
fn every_sdk_stream_loads_or_fails_clearly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk_streams");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "singer"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures present");
    for path in names {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let input = std::fs::read_to_string(&path).expect("read fixture");
        let (_d, wh) = warehouse();
        let r = run(&wh, json!({}), &input);
        match MUST_FAIL.iter().find(|(n, _)| *n == stem) {
            Some((_, msg)) => {
                assert!(!r.ok(), "{stem} must fail");
                assert!(
                    r.stderr().contains(msg) && r.stderr().contains("line "),
                    "{stem}: {}",
                    r.stderr()
                );
            }
            None => assert!(r.ok(), "{stem} must load: {}", r.stderr()),
        }
    }
}

#[test]
fn duplicate_records_upserts_to_two_rows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk_streams");
    let input = std::fs::read_to_string(dir.join("duplicate_records.singer")).expect("fixture");
    let (_d, wh) = warehouse();
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), vec![json!({"test_duplicate_records": 2})]);
    let t = read_table(&wh.join("test_duplicate_records"), "test_duplicate_records");
    let got: Vec<_> = t
        .sorted_by("id")
        .iter()
        .map(|r| (r["id"].clone(), r["metric"].clone()))
        .collect();
    assert_eq!(got, vec![(json!(1), json!(100)), (json!(2), json!(20))]);
}

#[test]
fn encoded_strings_survive_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk_streams");
    let input = std::fs::read_to_string(dir.join("encoded_string_data.singer")).expect("fixture");
    let (_d, wh) = warehouse();
    assert!(run(&wh, json!({}), &input).ok());
    let t = read_table(&wh.join("test_strings"), "test_strings");
    let info: Vec<_> = t
        .sorted_by("id")
        .iter()
        .map(|r| r["info"].clone())
        .collect();
    assert!(info.contains(&json!("various \" \\ / \n escape sequences")));
    assert!(info.contains(&json!("简单的字串")));
}
