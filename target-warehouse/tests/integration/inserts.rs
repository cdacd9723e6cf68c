//! `load_method: insert` (valmi's Create): a key's first record lands, records of a key the table
//! holds are skipped and counted (never an error), deletes still apply, replays are skipped.

use serde_json::{json, Value};

use crate::harness::*;

fn rows(wh: &std::path::Path, stream: &str) -> Vec<(i64, String)> {
    let mut got: Vec<(i64, String)> = read_table(&wh.join(stream), stream)
        .rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().expect("id"),
                r["v"].as_str().expect("v").to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

fn rec(id: i64, v: &str, seq: i64) -> Value {
    record(
        "t",
        json!({"id": id, "v": v, "_sdc_sequence": seq, "_sdc_producer": "p"}),
    )
}

fn del(id: i64, seq: i64) -> Value {
    record(
        "t",
        json!({"id": id, "v": "deleted", "_sdc_sequence": seq, "_sdc_producer": "p",
               "_sdc_deleted_at": "2026-12-01T00:00:00Z"}),
    )
}

/// The `inserts_skipped` METRIC line's value, if the run printed one.
fn skipped_metric(r: &Run) -> Option<i64> {
    r.stderr().lines().find_map(|l| {
        let v: Value = serde_json::from_str(l.split_once("METRIC: ")?.1).ok()?;
        (v["metric"] == "inserts_skipped").then(|| v["value"].as_i64())?
    })
}

#[test]
fn inserts_keep_a_keys_first_values_across_batches_and_runs() {
    let (_d, wh) = warehouse();
    let config = json!({"load_method": "insert", "batch_size_rows": 2});
    // Key 1 arrives twice in one batch, out of sequence order: the lower sequence wins. Key 2
    // comes again in a later batch of the same run: skipped.
    let first = lines(&[
        id_v_schema("t"),
        rec(1, "second", 20),
        rec(1, "first", 10),
        rec(2, "b", 30),
        rec(3, "c", 40),
        rec(2, "b again", 50),
        state(json!({"n": 1})),
    ]);
    let r = run(&wh, config.clone(), &first);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        rows(&wh, "t"),
        [(1, "first".into()), (2, "b".into()), (3, "c".into())]
    );
    assert_eq!(skipped_metric(&r), Some(2), "{}", r.stderr());
    assert!(r.stderr().contains("inserts_skipped=2"), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), [json!({"n": 1})]);
    // A later run: an existing key is skipped, a new one lands.
    let r = run(
        &wh,
        config.clone(),
        &lines(&[id_v_schema("t"), rec(3, "c2", 60), rec(4, "d", 70)]),
    );
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        rows(&wh, "t"),
        [
            (1, "first".into()),
            (2, "b".into()),
            (3, "c".into()),
            (4, "d".into())
        ]
    );
    assert_eq!(skipped_metric(&r), Some(1));
    // The commit says what it skipped.
    let log = std::fs::read_to_string(wh.join("t/_delta_log/00000000000000000003.json"))
        .expect("the second run's commit");
    assert!(log.contains("\"rowsSkipped\":1"), "{log}");
    assert!(log.contains("\"operation\":\"MERGE\""), "{log}");
    // A replay of the first run (its records are at or below the producer's mark): nothing
    // changes, nothing is counted as skipped by the insert.
    let r = run(&wh, config, &first);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(rows(&wh, "t").len(), 4);
    assert_eq!(skipped_metric(&r), None);
}

#[test]
fn deletes_apply_in_insert_mode_and_a_deleted_key_can_be_created_again() {
    for deletion_vectors in [false, true] {
        let (_d, wh) = warehouse();
        let hard = json!({"load_method": "insert", "hard_delete": true,
                          "deletion_vectors": deletion_vectors});
        let r = run(
            &wh,
            hard.clone(),
            &lines(&[
                id_v_schema("t"),
                rec(1, "a", 1),
                rec(2, "b", 2),
                rec(3, "c", 3),
            ]),
        );
        assert!(r.ok(), "{}", r.stderr());
        // Delete 1 then create it again in one batch; delete 2; a create of 3 is skipped.
        let r = run(
            &wh,
            hard.clone(),
            &lines(&[
                id_v_schema("t"),
                del(1, 10),
                rec(1, "a again", 11),
                del(2, 12),
                rec(3, "c again", 13),
            ]),
        );
        assert!(r.ok(), "{}", r.stderr());
        assert_eq!(
            rows(&wh, "t"),
            [(1, "a again".into()), (3, "c".into())],
            "deletion vectors: {deletion_vectors}"
        );
        // The deleted key 2 is new again in a later run (a row a deletion vector deletes is
        // not there).
        let r = run(
            &wh,
            hard,
            &lines(&[id_v_schema("t"), rec(2, "b again", 20)]),
        );
        assert!(r.ok(), "{}", r.stderr());
        assert_eq!(
            rows(&wh, "t"),
            [
                (1, "a again".into()),
                (2, "b again".into()),
                (3, "c".into())
            ],
            "deletion vectors: {deletion_vectors}"
        );
    }
    // Without hard_delete the delete marks the row: it replaces the key's row, with
    // `_sdc_deleted_at` set.
    let (_d, wh) = warehouse();
    let soft = json!({"load_method": "insert"});
    let r = run(
        &wh,
        soft.clone(),
        &lines(&[id_v_schema("t"), rec(1, "a", 1), rec(2, "b", 2)]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let r = run(&wh, soft, &lines(&[id_v_schema("t"), del(1, 10)]));
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("t"), "t");
    let one: Vec<_> = t.rows.iter().filter(|r| r["id"] == json!(1)).collect();
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["v"], "deleted");
    assert!(one[0]["_sdc_deleted_at"].is_string(), "{one:?}");
}

#[test]
fn a_null_key_stops_an_insert_load_with_its_line() {
    let (_d, wh) = warehouse();
    let r = run(
        &wh,
        json!({"load_method": "insert"}),
        &lines(&[
            id_v_schema("t"),
            rec(1, "a", 1),
            record("t", json!({"id": null, "v": "x"})),
        ]),
    );
    assert!(!r.ok());
    assert!(r.stderr().contains("line 3"), "{}", r.stderr());
}

/// Without `hard_delete` a delete leaves the key's marked row, which holds the key: a later
/// insert of it is skipped whether it comes in the same batch or a later one. The outcome must
/// not depend on where `batch_size_rows` cuts (it did: in one batch the insert replaced the
/// marked row, one record a batch kept it).
#[test]
fn a_soft_delete_then_an_insert_gives_one_outcome_whatever_the_batches() {
    let mut outcomes = Vec::new();
    for batch_size_rows in [1, 1000] {
        let (_d, wh) = warehouse();
        let config = json!({"load_method": "insert", "batch_size_rows": batch_size_rows});
        let r = run(
            &wh,
            config,
            &lines(&[id_v_schema("t"), rec(1, "a", 1), del(1, 2), rec(1, "b", 3)]),
        );
        assert!(r.ok(), "{}", r.stderr());
        let t = read_table(&wh.join("t"), "t");
        let marked: Vec<bool> = t
            .rows
            .iter()
            .map(|r| r.get("_sdc_deleted_at").is_some_and(Value::is_string))
            .collect();
        outcomes.push((rows(&wh, "t"), marked, skipped_metric(&r)));
    }
    assert_eq!(outcomes[0], outcomes[1], "batch_size_rows 1 vs 1000");
    assert_eq!(
        outcomes[0],
        (vec![(1, "deleted".to_owned())], vec![true], Some(1))
    );
}
