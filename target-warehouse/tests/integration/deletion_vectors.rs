//! Upserted tables with deletion vectors (the opt-in) and without: which tables get them, what
//! an upsert writes in each mode, and a table that switches them off.

use serde_json::json;

use crate::harness::*;
use crate::load_methods::{last_commit_actions, last_commit_adds};

/// The table's protocol as its first commit states it.
fn protocol(table: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(table.join("_delta_log/00000000000000000000.json"))
        .expect("first commit")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("protocol").cloned())
        .expect("a protocol action")
}

#[test]
fn upsert_marks_replaced_rows_in_deletion_vectors_and_leaves_the_files_alone() {
    let (_d, wh) = warehouse();
    let s = id_v_schema("dv");
    let mut msgs = vec![s.clone()];
    msgs.extend((0..20_000).map(|i| record("dv", json!({"id": 2 * i, "v": format!("v{i}")}))));
    let r = run(&wh, json!({"deletion_vectors": true}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let p = protocol(&wh.join("dv"));
    assert_eq!(
        (p["minReaderVersion"].clone(), p["minWriterVersion"].clone()),
        (json!(3), json!(7))
    );
    assert!(
        p["readerFeatures"]
            .as_array()
            .unwrap()
            .contains(&json!("deletionVectors")),
        "{p}"
    );
    let big = last_commit_adds(&wh.join("dv"))[0].clone();
    let big_path = big["path"].as_str().unwrap().to_string();
    let big_bytes = std::fs::read(wh.join("dv").join(&big_path)).unwrap();

    // Keys at both sides of the read batches' boundaries (8,192 rows), the first and the last.
    let touched = [0, 16_382, 16_384, 39_998];
    let mut msgs = vec![s.clone()];
    msgs.extend(
        touched
            .iter()
            .map(|&id| record("dv", json!({"id": id, "v": "new"}))),
    );
    let r = run(&wh, json!({"deletion_vectors": true}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(last_commit_actions(&wh.join("dv")), (2, 1));
    let adds = last_commit_adds(&wh.join("dv"));
    let readded = adds
        .iter()
        .find(|a| a["path"] == json!(big_path))
        .expect("the big file re-added");
    assert_eq!(readded["deletionVector"]["cardinality"], json!(4));
    assert_eq!(readded["deletionVector"]["storageType"], json!("u"));
    assert_eq!(readded["size"], big["size"]);
    assert_eq!(
        std::fs::read(wh.join("dv").join(&big_path)).unwrap(),
        big_bytes,
        "the data file is not rewritten"
    );
    let stats: serde_json::Value =
        serde_json::from_str(readded["stats"].as_str().unwrap()).unwrap();
    assert_eq!(
        (stats["numRecords"].clone(), stats["tightBounds"].clone()),
        (json!(20_000), json!(false))
    );

    // Again, over both files: the big file's vector grows (its earlier rows stay deleted), the
    // previous batch's file gets one, and an id already replaced is replaced once more.
    let again = [0, 2, 16_384];
    let mut msgs = vec![s.clone()];
    msgs.extend(
        again
            .iter()
            .map(|&id| record("dv", json!({"id": id, "v": "newer"}))),
    );
    let r = run(&wh, json!({"deletion_vectors": true}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let adds = last_commit_adds(&wh.join("dv"));
    assert_eq!(
        adds.len(),
        3,
        "two files re-added with vectors, the batch's own file"
    );
    let readded = adds.iter().find(|a| a["path"] == json!(big_path)).unwrap();
    assert_eq!(readded["deletionVector"]["cardinality"], json!(5));
    let t = read_table(&wh.join("dv"), "dv");
    assert_eq!(t.rows.len(), 20_000);
    let mut seen = std::collections::BTreeSet::new();
    for row in &t.rows {
        let id = row["id"].as_i64().expect("id");
        assert!(seen.insert(id), "id {id} twice");
        let want = if again.contains(&id) {
            "newer".to_string()
        } else if touched.contains(&id) {
            "new".to_string()
        } else {
            format!("v{}", id / 2)
        };
        assert_eq!(row["v"], json!(want), "id {id}");
    }

    // Compaction drops the deleted rows of the small files it merges.
    compact(&wh);
    let t = read_table(&wh.join("dv"), "dv");
    assert_eq!(t.rows.len(), 20_000);
    let newer = t.rows.iter().filter(|r| r["v"] == json!("newer")).count();
    let new = t.rows.iter().filter(|r| r["v"] == json!("new")).count();
    assert_eq!((newer, new), (3, 2));
}

#[test]
fn deletion_vectors_off_rewrites_and_append_only_tables_never_get_them() {
    let (_d, wh) = warehouse();
    let s = schema_msg("cow", json!({"id": {"type": "integer"}}), &["id"]);
    let a = schema_msg("log", json!({"id": {"type": "integer"}}), &[]);
    let cfg = json!({"deletion_vectors": false});
    let r = run(
        &wh,
        cfg.clone(),
        &lines(&[
            s.clone(),
            record("cow", json!({"id": 1})),
            record("cow", json!({"id": 2})),
            a,
            record("log", json!({"id": 1})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(protocol(&wh.join("cow"))["minReaderVersion"], json!(1));
    assert_eq!(protocol(&wh.join("log"))["minReaderVersion"], json!(1));
    let first = last_commit_adds(&wh.join("cow"))[0]["path"].clone();
    // A later run with the default keeps the table's copy-on-write: the file is rewritten.
    let r = run(
        &wh,
        json!({}),
        &lines(&[s, record("cow", json!({"id": 1}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let adds = last_commit_adds(&wh.join("cow"));
    assert_eq!(adds.len(), 2);
    assert!(adds
        .iter()
        .all(|a| a["path"] != first && a.get("deletionVector").is_none_or(|d| d.is_null())));
    assert_eq!(read_table(&wh.join("cow"), "cow").rows.len(), 2);
}

#[test]
fn a_table_whose_deletion_vectors_are_switched_off_gets_no_new_ones() {
    // Spark's way to drop the feature starts by setting the property to false: from then on
    // an upsert must rewrite instead of adding vectors.
    let (_d, wh) = warehouse();
    let s = schema_msg("off", json!({"id": {"type": "integer"}}), &["id"]);
    let r = run(
        &wh,
        json!({}),
        &lines(&[
            s.clone(),
            record("off", json!({"id": 1})),
            record("off", json!({"id": 2})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let log = wh.join("off/_delta_log");
    let mut meta = std::fs::read_to_string(log.join("00000000000000000000.json"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("metaData").is_some())
        .unwrap();
    meta["metaData"]["configuration"]["delta.enableDeletionVectors"] = json!("false");
    std::fs::write(
        log.join("00000000000000000001.json"),
        format!(
            "{meta}\n{}\n",
            json!({"commitInfo": {"operation": "SET TBLPROPERTIES"}})
        ),
    )
    .unwrap();
    let first = last_commit_adds(&wh.join("off"));
    assert!(first.is_empty(), "the property commit adds nothing");
    let r = run(
        &wh,
        json!({}),
        &lines(&[s, record("off", json!({"id": 1}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let adds = last_commit_adds(&wh.join("off"));
    assert_eq!(adds.len(), 2, "the rewritten file and the batch's own");
    assert!(adds
        .iter()
        .all(|a| a.get("deletionVector").is_none_or(|d| d.is_null())));
    assert_eq!(read_table(&wh.join("off"), "off").rows.len(), 2);
}
