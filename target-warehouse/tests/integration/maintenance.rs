//! Small files: automatic compaction, `target-warehouse compact`, and log checkpoints.

use serde_json::json;

use crate::harness::*;

#[test]
fn many_small_commits_are_compacted_and_checkpointed() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("f", json!({"id": {"type": "integer"}}), &[])];
    for i in 1..=110 {
        msgs.push(record("f", json!({"id": i, "_sdc_sequence": i})));
    }
    // One commit per row: automatic compaction keeps the file count down, a checkpoint is
    // written at version 100, and the table still holds every row exactly once.
    let r = run(&wh, json!({"batch_size_rows": 1}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("f"), "f");
    assert_eq!(t.rows.len(), 110);
    assert_eq!(t.txn, Some(110));
    assert!(t.file_schemas.len() < 40, "{} files", t.file_schemas.len());
    assert!(wh
        .join("f/_delta_log/00000000000000000100.checkpoint.parquet")
        .exists());
    assert!(r.stderr().contains("compacted small files"));
    // The first compaction merges 32 one-row files by copying their chunks (32 row groups);
    // the next ones would pile row groups onto that file, so they re-encode instead.
    assert!(
        r.stderr().contains("copied=true") && r.stderr().contains("copied=false"),
        "{}",
        r.stderr()
    );
}

#[test]
fn compact_subcommand_merges_every_tables_small_files() {
    let (_d, wh) = warehouse();
    let s = schema_msg("g", json!({"id": {"type": "integer"}}), &["id"]);
    for i in 0..3 {
        let r = run(
            &wh,
            json!({}),
            &lines(&[s.clone(), record("g", json!({"id": i}))]),
        );
        assert!(r.ok(), "{}", r.stderr());
    }
    assert_eq!(read_table(&wh.join("g"), "g").file_schemas.len(), 3);
    let out = compact(&wh);
    assert!(out.stdout.is_empty(), "compact prints nothing on stdout");
    let t = read_table(&wh.join("g"), "g");
    assert_eq!((t.file_schemas.len(), t.rows.len()), (1, 3));
}
