//! append-only, upsert, overwrite, hard delete, ACTIVATE_VERSION, schema evolution, state timing.

use serde_json::json;

use crate::harness::*;

#[test]
fn append_only_loads_rows_and_prints_the_bare_state_last() {
    let (_d, wh) = warehouse();
    let input = lines(&[
        schema_msg(
            "events",
            json!({"id": {"type": "integer"}, "name": {"type": "string"}}),
            &["__sdc_primary_key"],
        ),
        record(
            "events",
            json!({"__sdc_primary_key": "a", "id": 1, "name": "x"}),
        ),
        state(json!({"bookmarks": {"events": 1}})),
        record(
            "events",
            json!({"__sdc_primary_key": "b", "id": 1, "name": "y"}),
        ),
        state(json!({"bookmarks": {"events": 2}})),
    ]);
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    // Both states wait for the one commit at end of input: only the last is printed, bare.
    assert_eq!(r.stdout_lines(), vec![json!({"bookmarks": {"events": 2}})]);
    let t = read_table(&wh.join("events"), "events");
    assert_eq!(
        t.rows.len(),
        2,
        "append-only keeps both rows with the same id"
    );
    for c in [
        "_sdc_sequence",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_extracted_at",
        "_sdc_deleted_at",
        "_sdc_table_version",
    ] {
        assert!(
            t.column_names().contains(&c.to_string()),
            "metadata column {c}"
        );
    }
    assert!(t
        .rows
        .iter()
        .all(|r| r.get("_sdc_batched_at").is_some() && r.get("_sdc_sequence").is_some()));
}

#[test]
fn upsert_keeps_the_latest_sequence_per_key_across_runs() {
    let (_d, wh) = warehouse();
    let s = schema_msg(
        "m",
        json!({"id": {"type": "integer"}, "metric": {"type": "integer"}}),
        &["id"],
    );
    let input = lines(&[
        s.clone(),
        record("m", json!({"id": 1, "metric": 1})),
        record("m", json!({"id": 2, "metric": 2})),
        record("m", json!({"id": 1, "metric": 100})),
    ]);
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("m"), "m");
    let rows = t.sorted_by("id");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["id"].clone(), rows[0]["metric"].clone()),
        (json!(1), json!(100))
    );
    // A second run replaces id 2 only: the rewrite touches files holding the key.
    let r = run(
        &wh,
        json!({}),
        &lines(&[
            s.clone(),
            record("m", json!({"id": 2, "metric": 20})),
            record("m", json!({"id": 3, "metric": 3})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("m"), "m");
    let got: Vec<(serde_json::Value, serde_json::Value)> = t
        .sorted_by("id")
        .iter()
        .map(|r| (r["id"].clone(), r["metric"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(1), json!(100)),
            (json!(2), json!(20)),
            (json!(3), json!(3))
        ]
    );
    // A tap-provided sequence decides, not arrival order.
    let r = run(
        &wh,
        json!({}),
        &lines(&[
            s,
            record("m", json!({"id": 3, "metric": 33, "_sdc_sequence": 9})),
            record("m", json!({"id": 3, "metric": 30, "_sdc_sequence": 8})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("m"), "m");
    let three: Vec<_> = t.rows.iter().filter(|r| r["id"] == json!(3)).collect();
    assert_eq!(three.len(), 1);
    assert_eq!(three[0]["metric"], json!(33));
}

/// The actions of the table's latest commit.
fn last_commit(table: &std::path::Path) -> Vec<serde_json::Value> {
    let log = table.join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .expect("log")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    std::fs::read_to_string(commits.last().expect("a commit"))
        .expect("read")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The actions of the table's latest commit, by kind.
pub(crate) fn last_commit_actions(table: &std::path::Path) -> (usize, usize) {
    let actions = last_commit(table);
    let count = |kind: &str| actions.iter().filter(|v| v.get(kind).is_some()).count();
    (count("add"), count("remove"))
}

#[test]
fn upsert_streams_a_file_of_many_read_batches_and_skips_files_without_a_match() {
    // 20,000 rows with even ids 0..40,000 in one file: more than two of the rewrite's read
    // batches (8,192 rows), so the row mask must line up across batch boundaries.
    let (_d, wh) = warehouse();
    let s = id_v_schema("big");
    let mut msgs = vec![s.clone()];
    msgs.extend((0..20_000).map(|i| record("big", json!({"id": 2 * i, "v": format!("v{i}")}))));
    let r = run(&wh, json!({}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    // An odd id inside the file's key range: the key columns are read, nothing matches, the
    // file is left alone (the commit adds the new row's file and removes nothing).
    let r = run(
        &wh,
        json!({}),
        &lines(&[s.clone(), record("big", json!({"id": 101, "v": "odd"}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(last_commit_actions(&wh.join("big")), (1, 0));
    // Keys at both sides of each batch boundary, the first and the last row.
    let touched = [0, 16_382, 16_384, 32_766, 32_768, 39_998];
    let mut msgs = vec![s];
    msgs.extend(
        touched
            .iter()
            .map(|&id| record("big", json!({"id": id, "v": "new"}))),
    );
    let r = run(&wh, json!({}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        last_commit_actions(&wh.join("big")),
        (2, 1),
        "the big file rewritten, the batch's own file added"
    );
    let t = read_table(&wh.join("big"), "big");
    assert_eq!(t.rows.len(), 20_001);
    let mut seen = std::collections::BTreeSet::new();
    for row in &t.rows {
        let id = row["id"].as_i64().expect("id");
        assert!(seen.insert(id), "id {id} twice");
        let want = if touched.contains(&id) {
            "new".to_string()
        } else if id == 101 {
            "odd".to_string()
        } else {
            format!("v{}", id / 2)
        };
        assert_eq!(row["v"], json!(want), "id {id}");
    }
}

#[test]
fn hard_delete_removes_the_key() {
    let (_d, wh) = warehouse();
    let s = schema_msg(
        "u",
        json!({"id": {"type": "integer"}, "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"}}),
        &["id"],
    );
    let r = run(
        &wh,
        json!({"hard_delete": true}),
        &lines(&[
            s.clone(),
            record("u", json!({"id": 1})),
            record("u", json!({"id": 2})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let r = run(
        &wh,
        json!({"hard_delete": true}),
        &lines(&[
            s,
            record(
                "u",
                json!({"id": 1, "_sdc_deleted_at": "2024-01-01T00:00:00Z"}),
            ),
            record("u", json!({"id": 3, "_sdc_deleted_at": null})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let ids: Vec<_> = read_table(&wh.join("u"), "u")
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(2), json!(3)]);
}

#[test]
fn overwrite_replaces_the_table_contents() {
    let (_d, wh) = warehouse();
    let s = schema_msg("o", json!({"id": {"type": "integer"}}), &[]);
    let cfg = json!({"load_method": "overwrite", "batch_size_rows": 1});
    assert!(run(
        &wh,
        cfg.clone(),
        &lines(&[
            s.clone(),
            record("o", json!({"id": 1})),
            record("o", json!({"id": 2}))
        ])
    )
    .ok());
    assert!(run(
        &wh,
        cfg,
        &lines(&[
            s,
            record("o", json!({"id": 3})),
            record("o", json!({"id": 4}))
        ])
    )
    .ok());
    let ids: Vec<_> = read_table(&wh.join("o"), "o")
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(3), json!(4)],
        "the second run's batches both stay"
    );
}

#[test]
fn activate_version_removes_older_versions_with_hard_delete() {
    let (_d, wh) = warehouse();
    let s = schema_msg("v", json!({"id": {"type": "integer"}}), &[]);
    let rec = |id: i64, v: i64| json!({"type": "RECORD", "stream": "v", "record": {"id": id}, "version": v});
    let av = |v: i64| json!({"type": "ACTIVATE_VERSION", "stream": "v", "version": v});
    let hard = json!({"hard_delete": true});
    assert!(run(
        &wh,
        hard.clone(),
        &lines(&[s.clone(), av(1), rec(1, 1), rec(2, 1), av(1)])
    )
    .ok());
    let r = run(&wh, hard, &lines(&[s, rec(3, 2), av(2)]));
    assert!(r.ok(), "{}", r.stderr());
    let ids: Vec<_> = read_table(&wh.join("v"), "v")
        .rows
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(3)]);
}

/// Without `hard_delete`, as the SDK targets do: older versions' rows stay, `_sdc_deleted_at`
/// set once (a second activation keeps the first time), in both table modes.
#[test]
fn activate_version_soft_deletes_older_versions_without_hard_delete() {
    for dvs in [true, false] {
        let (_d, wh) = warehouse();
        let s = schema_msg("v", json!({"id": {"type": "integer"}}), &["id"]);
        let rec = |id: i64, v: i64| json!({"type": "RECORD", "stream": "v", "record": {"id": id}, "version": v});
        let av = |v: i64| json!({"type": "ACTIVATE_VERSION", "stream": "v", "version": v});
        let cfg = json!({"deletion_vectors": dvs});
        let r = run(
            &wh,
            cfg.clone(),
            &lines(&[s.clone(), av(1), rec(1, 1), rec(2, 1), av(1)]),
        );
        assert!(r.ok(), "{}", r.stderr());
        let deleted = |wh: &std::path::Path| -> Vec<(i64, Option<String>)> {
            let mut rows: Vec<_> = read_table(&wh.join("v"), "v")
                .rows
                .iter()
                .map(|r| {
                    let at = r
                        .get("_sdc_deleted_at")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    (r.get("id").and_then(|v| v.as_i64()).unwrap(), at)
                })
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(deleted(&wh), vec![(1, None), (2, None)], "dvs {dvs}");
        let r = run(&wh, cfg.clone(), &lines(&[s.clone(), rec(3, 2), av(2)]));
        assert!(r.ok(), "{}", r.stderr());
        let after = deleted(&wh);
        assert_eq!(after.len(), 3, "dvs {dvs}: rows stay: {after:?}");
        assert!(after[0].1.is_some() && after[1].1.is_some(), "{after:?}");
        assert_eq!(after[2], (3, None));
        // Activated again: nothing changes, the first deletion time stays.
        let r = run(&wh, cfg, &lines(&[s, av(2)]));
        assert!(r.ok(), "{}", r.stderr());
        assert_eq!(deleted(&wh), after, "dvs {dvs}");
    }
}

#[test]
fn new_columns_are_added_and_every_file_has_the_full_schema() {
    let (_d, wh) = warehouse();
    let s = schema_msg("e", json!({}), &[]);
    assert!(run(
        &wh,
        json!({}),
        &lines(&[s.clone(), record("e", json!({"a": 1}))])
    )
    .ok());
    assert!(run(
        &wh,
        json!({}),
        &lines(&[s.clone(), record("e", json!({"b": "x"}))])
    )
    .ok());
    let t = read_table(&wh.join("e"), "e");
    assert_eq!(t.file_schemas.len(), 2);
    let names = |s: &deltalake::arrow::datatypes::SchemaRef| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    // The first file predates column b: readers see it through the table schema; the second
    // file carries every column.
    assert!(
        names(&t.file_schemas[0]).contains(&"a".to_string())
            || names(&t.file_schemas[1]).contains(&"a".to_string())
    );
    assert!(t
        .file_schemas
        .iter()
        .any(|f| names(f).contains(&"a".to_string()) && names(f).contains(&"b".to_string())));
    assert_eq!(t.rows.len(), 2);
}

#[test]
fn state_waits_for_the_commit_of_every_record_before_it() {
    let (_d, wh) = warehouse();
    let s = schema_msg("k", json!({"id": {"type": "integer"}}), &["id"]);
    // STATE 1 follows a record that is never committed (the run fails on line 4): not printed.
    let input = lines(&[
        s.clone(),
        record("k", json!({"id": 1})),
        state(json!({"n": 1})),
        record("k", json!({"nope": 1})),
    ]);
    let r = run(&wh, json!({}), &input);
    assert!(!r.ok());
    assert!(
        r.stdout_lines().is_empty(),
        "no state for uncommitted records"
    );
    // With one row per batch the record is committed first, so STATE 1 is printed before the failure.
    let r = run(&wh, json!({"batch_size_rows": 1}), &input);
    assert!(!r.ok());
    assert_eq!(r.stdout_lines(), vec![json!({"n": 1})]);
    // A STATE with nothing pending is printed at once; `{}` never is.
    let r = run(
        &wh,
        json!({}),
        &lines(&[state(json!({})), state(json!({"n": 2}))]),
    );
    assert_eq!(r.stdout_lines(), vec![json!({"n": 2})]);
}

/// The `add` actions of the table's latest commit.
#[test]
fn composite_and_string_keys_replace_rows_of_earlier_runs() {
    // Keys that are not one integer column take the encoded-key comparison.
    let (_d, wh) = warehouse();
    let s = schema_msg(
        "ck",
        json!({"region": {"type": "string"}, "id": {"type": "integer"}, "v": {"type": "string"}}),
        &["region", "id"],
    );
    let mut msgs = vec![s.clone()];
    for region in ["eu", "us"] {
        msgs.extend((0..3).map(|i| record("ck", json!({"region": region, "id": i, "v": "old"}))));
    }
    assert!(run(&wh, json!({"deletion_vectors": true}), &lines(&msgs)).ok());
    let r = run(
        &wh,
        json!({"deletion_vectors": true}),
        &lines(&[
            s,
            record("ck", json!({"region": "eu", "id": 1, "v": "new"})),
            record("ck", json!({"region": "us", "id": 2, "v": "new"})),
            record("ck", json!({"region": "ap", "id": 1, "v": "new"})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let adds = last_commit_adds(&wh.join("ck"));
    assert!(
        adds.iter()
            .any(|a| a["deletionVector"]["cardinality"] == json!(2)),
        "{adds:?}"
    );
    let t = read_table(&wh.join("ck"), "ck");
    let mut got: Vec<(String, i64, String)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_string(),
                r["id"].as_i64().unwrap(),
                r["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, i64, String)> = [
        ("ap", 1, "new"),
        ("eu", 0, "old"),
        ("eu", 1, "new"),
        ("eu", 2, "old"),
        ("us", 0, "old"),
        ("us", 1, "old"),
        ("us", 2, "new"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), *b, c.to_string()))
    .collect();
    assert_eq!(got, want);
}

pub(crate) fn last_commit_adds(table: &std::path::Path) -> Vec<serde_json::Value> {
    last_commit(table)
        .into_iter()
        .filter_map(|v| v.get("add").cloned())
        .collect()
}

/// Found by the soak's attack: a record field named like the target's own metadata (a webhook
/// body is anyone's JSON; the tap's SCHEMA then declares the field) decided that column's type
/// when the table was created: `_sdc_batched_at: "x"` made it text, after which no row ever got
/// its batch time, and `_sdc_extracted_at: 5` made it an integer, every later extraction time
/// going to a sibling. The metadata columns keep their types; such values go to siblings.
#[test]
fn a_field_named_like_the_metadata_does_not_retype_its_column() {
    let (_d, wh) = warehouse();
    let input = lines(&[
        schema_msg(
            "events",
            json!({"id": {"type": "integer"}, "_sdc_batched_at": {"type": ["string"]},
                   "_sdc_extracted_at": {"type": ["integer"]}}),
            &[],
        ),
        json!({"type": "RECORD", "stream": "events", "record": {"id": 1},
               "time_extracted": "2026-01-01T00:00:00Z"}),
        json!({"type": "RECORD", "stream": "events",
               "record": {"id": 2, "_sdc_batched_at": "x", "_sdc_extracted_at": 5},
               "time_extracted": "2026-01-01T00:00:00Z"}),
    ]);
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("events"), "events");
    for c in ["_sdc_batched_at", "_sdc_extracted_at"] {
        assert!(
            matches!(
                t.schema.field_with_name(c).map(|f| f.data_type()),
                Ok(deltalake::arrow::datatypes::DataType::Timestamp(..))
            ),
            "{c} is a timestamp column: {:?}",
            t.schema.field_with_name(c)
        );
    }
    let row = |id: i64| {
        t.rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("row {id}"))
    };
    assert!(
        t.rows.iter().all(|r| r.get("_sdc_batched_at").is_some()),
        "every row has its batch time: {:?}",
        t.rows
    );
    assert!(row(1).get("_sdc_extracted_at").is_some());
    assert_eq!(
        row(2)["_sdc_batched_at__string"],
        "x",
        "the field's value is kept"
    );
    assert_eq!(
        row(2)["_sdc_extracted_at__int"],
        5,
        "the field's value is kept"
    );
}
