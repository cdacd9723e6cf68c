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

#[test]
fn compact_rewrites_a_file_whose_vector_deletes_most_of_its_rows() {
    // One data file, alone in its table (nothing to merge it with), most of whose rows hard
    // deletes removed: compaction rewrites it without them.
    let (_d, wh) = warehouse();
    let s = id_v_schema("p");
    let cfg = json!({"hard_delete": true, "deletion_vectors": true});
    let mut msgs = vec![s.clone()];
    msgs.extend((0..1000).map(|i| record("p", json!({"id": i, "v": format!("v{i}")}))));
    assert!(run(&wh, cfg.clone(), &lines(&msgs)).ok());
    let delete = |range: std::ops::Range<i64>| {
        let mut msgs = vec![s.clone()];
        msgs.extend(range.map(|i| {
            record(
                "p",
                json!({"id": i, "_sdc_deleted_at": "2026-12-02T00:00:00Z"}),
            )
        }));
        let r = run(&wh, cfg.clone(), &lines(&msgs));
        assert!(r.ok(), "{}", r.stderr());
    };
    let files = |wh: &std::path::Path| read_table(&wh.join("p"), "p").file_schemas.len();
    // Under half deleted: nothing to do.
    delete(0..400);
    compact(&wh);
    let t = read_table(&wh.join("p"), "p");
    assert_eq!((t.file_schemas.len(), t.rows.len(), t.version), (1, 600, 1));
    // Half or more: the file is rewritten with its 400 live rows and no vector.
    delete(400..600);
    compact(&wh);
    let t = read_table(&wh.join("p"), "p");
    assert_eq!((files(&wh), t.rows.len(), t.version), (1, 400, 3));
    let log = std::fs::read_to_string(wh.join("p/_delta_log/00000000000000000003.json")).unwrap();
    let adds: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("add").cloned())
        .collect();
    assert_eq!(adds.len(), 1, "{log}");
    assert!(
        adds[0].get("deletionVector").is_none_or(|d| d.is_null()),
        "{log}"
    );
    let mut ids: Vec<i64> = t.rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (600..1000).collect::<Vec<_>>());
}

#[test]
fn a_commit_removing_files_a_concurrent_compaction_merged_is_refused() {
    // Two writers on one table: the first reads it (as an upsert or an overwrite does before
    // removing files), the second compacts it, then the first commits the removal of a file
    // the compaction merged. deltalake's conflict checker lets that through (compaction's
    // removes say `dataChange: false`), and the table would keep the merged copy of the rows
    // the first writer meant to remove, so the target refuses the commit itself.
    use deltalake::kernel::Action;
    use deltalake::protocol::DeltaOperation;
    use std::collections::{HashMap, HashSet};
    use target_warehouse::table::compact::compact;
    use target_warehouse::table::{Table, TableError};

    let (_d, wh) = warehouse();
    let s = schema_msg("c", json!({"id": {"type": "integer"}}), &["id"]);
    for i in 0..2 {
        let r = run(
            &wh,
            json!({}),
            &lines(&[s.clone(), record("c", json!({"id": i}))]),
        );
        assert!(r.ok(), "{}", r.stderr());
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (version, err, paths) = rt.block_on(async {
        let opts = HashMap::new();
        let (mut first, mut first_reg) = Table::open(&wh, "c", &mut HashSet::new(), &opts)
            .await
            .expect("open");
        let (mut second, mut second_reg) = Table::open(&wh, "c", &mut HashSet::new(), &opts)
            .await
            .expect("open");
        let files = first.files().expect("files");
        assert_eq!(files.len(), 2);
        let merged = compact(&mut second, &mut second_reg)
            .await
            .expect("compact")
            .expect("two small files merged");
        // The first writer's commit: the file it replaces out, a file of its own in.
        let own = wh.join("c/part-own.zstd.parquet");
        std::fs::copy(wh.join("c").join(&files[1].path), &own).expect("copy");
        let add = |path: &str| -> Action {
            Action::Add(
                serde_json::from_value(json!({
                    "path": path, "partitionValues": {}, "dataChange": false,
                    "size": std::fs::metadata(wh.join("c").join(path)).expect("size").len(),
                    "modificationTime": 0,
                }))
                .expect("add"),
            )
        };
        // Besides its own new file, it adds again a file the table holds (as a fix of its
        // statistics would): that file is the table's, and must outlive the refusal.
        let actions = vec![
            Action::Remove(files[0].remove.clone()),
            add("part-own.zstd.parquet"),
            add(&files[1].path),
        ];
        let err = first
            .commit(
                &mut first_reg,
                usize::MAX,
                actions,
                DeltaOperation::Delete { predicate: None },
                &Default::default(),
                Default::default(),
            )
            .await
            .expect_err("the removed file was merged by the compaction");
        let paths: Vec<String> = files.into_iter().map(|f| f.path).collect();
        (merged.version, err, paths)
    });
    assert!(
        matches!(err, TableError::Conflict { version: v, .. } if v == version),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("nothing was committed") && text.contains(".parquet"),
        "{text}"
    );
    // Nothing after the compaction: both rows once, in its one file.
    let t = read_table(&wh.join("c"), "c");
    assert_eq!((t.file_schemas.len(), t.rows.len()), (1, 2));
    assert!(!wh
        .join(format!("c/_delta_log/{:020}.json", version + 1))
        .exists());
    // The refused commit's own new file is gone; the table's files stay (the compacted ones
    // for readers of older versions).
    assert!(!wh.join("c/part-own.zstd.parquet").exists());
    assert!(paths.iter().all(|p| wh.join("c").join(p).exists()));
}

#[test]
fn files_no_commit_references_are_removed_when_older_than_the_run_by_an_hour() {
    // What a killed run leaves (a partial data file, a deletion vector file) goes when the
    // table is next opened for a load; what a commit names (even one a later commit removed:
    // time travel reads it), what is recent (another load may be about to commit it), and
    // what another writer named its way, stays.
    let (_d, wh) = warehouse();
    let s = id_v_schema("o");
    let cow = json!({"deletion_vectors": false});
    let load = |msgs: &[serde_json::Value]| {
        let r = run(&wh, cow.clone(), &lines(msgs));
        assert!(r.ok(), "{}", r.stderr());
        r
    };
    load(&[
        s.clone(),
        record("o", json!({"id": 1, "v": "a"})),
        record("o", json!({"id": 2, "v": "a"})),
    ]);
    // Replaces id 1: the first file is rewritten, removed by this commit.
    load(&[s.clone(), record("o", json!({"id": 1, "v": "b"}))]);
    let table = wh.join("o");
    let first_add = std::fs::read_to_string(table.join("_delta_log/00000000000000000000.json"))
        .expect("log")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|a| Some(a.get("add")?.get("path")?.as_str()?.to_string()))
        .expect("the first file");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    let write = |name: &str, age: std::time::SystemTime| {
        let path = table.join(name);
        std::fs::write(&path, b"PAR1 partial").expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_modified(age).expect("mtime");
    };
    let v7 = || uuid::Uuid::now_v7();
    let orphan = format!("part-{}.zstd.parquet", v7());
    let orphan_dv = format!("deletion_vector_{}.bin", v7());
    let young = format!("part-{}.zstd.parquet", v7());
    let not_ours = format!("part-{}.zstd.parquet", uuid::Uuid::new_v4());
    let spark = format!("part-00000-{}-c000.snappy.parquet", uuid::Uuid::new_v4());
    write(&orphan, old);
    write(&orphan_dv, old);
    write(&not_ours, old);
    write(&spark, old);
    // Every file is old, the log's too: only the log keeps them.
    for e in std::fs::read_dir(&table).expect("dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            let f = std::fs::File::options()
                .write(true)
                .open(e.path())
                .expect("open");
            f.set_modified(old).expect("mtime");
        }
    }
    // Written a moment ago: maybe by a load of the same table running now.
    write(&young, std::time::SystemTime::now());
    let r = load(&[s, record("o", json!({"id": 3, "v": "c"}))]);
    assert!(
        r.stderr().contains("removed files of earlier runs"),
        "{}",
        r.stderr()
    );
    assert!(!table.join(&orphan).exists() && !table.join(&orphan_dv).exists());
    for kept in [&young, &not_ours, &spark, &first_add] {
        assert!(table.join(kept).exists(), "{kept} must stay");
    }
    assert!(unreferenced_files(&table)
        .iter()
        .all(|f| [&young, &not_ours, &spark].contains(&f)));
    let t = read_table(&table, "o");
    assert_eq!(t.rows.len(), 3);
}

#[test]
fn a_compaction_racing_an_append_is_retried_and_keeps_the_appended_rows() {
    // A compaction read the table, then another load appended a file before the compaction
    // committed. The compaction's commit (`dataChange: false`, removing only files it merged)
    // must land after the append instead of failing, and the appended rows must stay.
    use std::collections::HashSet;
    use target_warehouse::table::compact::compact;
    use target_warehouse::table::Table;

    let (_d, wh) = warehouse();
    let s = schema_msg("c", json!({"id": {"type": "integer"}}), &["id"]);
    let load = |i: i64| {
        let r = run(
            &wh,
            json!({}),
            &lines(&[s.clone(), record("c", json!({"id": i}))]),
        );
        assert!(r.ok(), "{}", r.stderr());
    };
    load(0);
    load(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let compacted = rt.block_on(async {
        let (mut table, mut reg) = Table::open(&wh, "c", &mut HashSet::new(), &Default::default())
            .await
            .expect("open");
        assert_eq!(table.files().expect("files").len(), 2);
        // The other load commits version 2 while this handle still sees version 1.
        load(2);
        compact(&mut table, &mut reg)
            .await
            .expect("a compaction racing an append is retried, not failed")
            .expect("two small files merged")
    });
    assert_eq!(compacted.version, 3, "committed after the append");
    let t = read_table(&wh.join("c"), "c");
    let mut ids: Vec<i64> = t.rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
    // The merged file and the appended one.
    assert_eq!(t.file_schemas.len(), 2);
}
