//! High-water marks per producer (issue 20, the producer contract): records carrying
//! `_sdc_producer` are skipped as replays by their producer's own `txn`
//! (`target-warehouse:<stream>:<producer>`); records without one by the stream's legacy `txn`,
//! which is also the mark of a producer the table has no `txn` for yet.

use std::path::Path;

use serde_json::{json, Value};
use target_warehouse::failpoint::ENV;

use crate::harness::*;

/// Singer lines of the append-only stream `e`: one record per sequence of `seqs`, from
/// `producer` (`None`: no `_sdc_producer`), then a STATE naming the producer's last sequence.
fn drain(producer: Option<&str>, seqs: &[i64]) -> String {
    let mut msgs = vec![schema_msg(
        "e",
        json!({"n": {"type": "integer"}, "_sdc_producer": {"type": "string"}}),
        &["__sdc_primary_key"],
    )];
    let name = producer.unwrap_or("legacy");
    for s in seqs {
        let mut rec =
            json!({"__sdc_primary_key": format!("{name}-{s}"), "n": s, "_sdc_sequence": s});
        if let Some(p) = producer {
            rec["_sdc_producer"] = json!(p);
        }
        msgs.push(record("e", rec));
    }
    msgs.push(state(
        json!({"bookmarks": {"e": seqs.last()}, "producer": name}),
    ));
    lines(&msgs)
}

/// Sequences `from, from + 2, …` below `to`: two spools' sequences interleave.
fn every_other(from: i64, to: i64) -> Vec<i64> {
    (from..to).step_by(2).collect()
}

/// The table's (producer, n) rows, sorted.
fn rows(wh: &Path) -> Vec<(String, i64)> {
    let t = read_table(&wh.join("e"), "e");
    let mut rows: Vec<(String, i64)> = t
        .rows
        .iter()
        .map(|r| {
            let p = r
                .get("_sdc_producer")
                .and_then(Value::as_str)
                .unwrap_or("legacy");
            (p.to_string(), r["n"].as_i64().expect("n"))
        })
        .collect();
    rows.sort();
    rows
}

fn expected(parts: &[(&str, &[i64])]) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = parts
        .iter()
        .flat_map(|(p, ns)| ns.iter().map(move |n| (p.to_string(), *n)))
        .collect();
    all.sort();
    all
}

/// The `txn` version of `app_id` in the table of stream `e`.
fn txn(wh: &Path, app_id: &str) -> Option<i64> {
    txn_version(&wh.join("e"), app_id)
}

fn load_ok(wh: &Path, input: &str) -> Run {
    let r = run(wh, json!({}), input);
    assert!(r.ok(), "{}", r.stderr());
    r
}

#[test]
fn two_producers_with_interleaving_sequences_load_every_row_once_in_either_order() {
    // Issue 20: spool A then spool B into one table loaded 11 of 20 rows (B's records fell
    // below the stream's one mark and were skipped).
    let a = every_other(1, 21);
    let b = every_other(2, 22);
    for order in [["a", "b"], ["b", "a"]] {
        let (_d, wh) = warehouse();
        for p in order {
            let seqs = if p == "a" { &a } else { &b };
            let r = load_ok(&wh, &drain(Some(p), seqs));
            assert_eq!(
                r.stdout_lines().last().map(|s| s["producer"].clone()),
                Some(json!(p))
            );
        }
        assert_eq!(rows(&wh), expected(&[("a", &a), ("b", &b)]), "{order:?}");
        assert_eq!(txn(&wh, "target-warehouse:e:a"), Some(19));
        assert_eq!(txn(&wh, "target-warehouse:e:b"), Some(20));
        assert_eq!(
            txn(&wh, "target-warehouse:e"),
            None,
            "records with a producer leave the legacy mark alone"
        );
    }
}

#[test]
fn each_producers_replays_are_skipped_by_its_own_mark() {
    let (_d, wh) = warehouse();
    let a = every_other(1, 21);
    let b = every_other(2, 22);
    load_ok(&wh, &drain(Some("a"), &a));
    load_ok(&wh, &drain(Some("b"), &b));
    // Each tap resumes from a state Meltano did not save: everything again, and more.
    let a2 = every_other(1, 25);
    let b2 = every_other(2, 26);
    let r = load_ok(&wh, &drain(Some("a"), &a2));
    assert!(r.stderr().contains("skipped=10"), "{}", r.stderr());
    let r = load_ok(&wh, &drain(Some("b"), &b2));
    assert!(r.stderr().contains("skipped=10"), "{}", r.stderr());
    assert_eq!(rows(&wh), expected(&[("a", &a2), ("b", &b2)]));
    // One load holding both producers' records, replays and new ones mixed: one commit with
    // one txn per producer.
    let mut both = drain(Some("a"), &every_other(1, 29));
    both.push_str(&drain(Some("b"), &every_other(2, 30)));
    let r = load_ok(&wh, &both);
    assert!(r.stderr().contains("skipped=24"), "{}", r.stderr());
    assert_eq!(
        rows(&wh),
        expected(&[("a", &every_other(1, 29)), ("b", &every_other(2, 30))])
    );
    assert_eq!(
        (
            txn(&wh, "target-warehouse:e:a"),
            txn(&wh, "target-warehouse:e:b")
        ),
        (Some(27), Some(28))
    );
}

#[test]
fn a_table_with_only_the_legacy_mark_keeps_skipping_what_it_holds() {
    // Loaded before producers existed: records without `_sdc_producer`, the stream's mark 10.
    let (_d, wh) = warehouse();
    let old: Vec<i64> = (1..=10).collect();
    load_ok(&wh, &drain(None, &old));
    assert_eq!(txn(&wh, "target-warehouse:e"), Some(10));
    // The upgraded tap names its spool and replays from an older bookmark: what the legacy
    // mark covers is skipped, the rest loaded under the producer's own mark.
    let r = load_ok(&wh, &drain(Some("s"), &(5..=14).collect::<Vec<_>>()));
    assert!(r.stderr().contains("skipped=6"), "{}", r.stderr());
    assert_eq!(txn(&wh, "target-warehouse:e:s"), Some(14));
    assert_eq!(
        txn(&wh, "target-warehouse:e"),
        Some(10),
        "the legacy mark stays"
    );
    // From now on the producer's own mark decides (14, above the legacy 10).
    let r = load_ok(&wh, &drain(Some("s"), &(1..=16).collect::<Vec<_>>()));
    assert!(r.stderr().contains("skipped=14"), "{}", r.stderr());
    // A tap without producers still skips by the legacy mark.
    let r = load_ok(&wh, &drain(None, &(9..=12).collect::<Vec<_>>()));
    assert!(r.stderr().contains("skipped=2"), "{}", r.stderr());
    assert_eq!(
        rows(&wh),
        expected(&[
            ("legacy", &(1..=12).collect::<Vec<_>>()),
            ("s", &(11..=16).collect::<Vec<_>>())
        ])
    );
}

#[test]
fn a_producer_id_that_is_not_a_string_is_no_producer() {
    let (_d, wh) = warehouse();
    let s = schema_msg("e", json!({}), &[]);
    let rec = |seq: i64, p: Value| record("e", json!({"_sdc_sequence": seq, "_sdc_producer": p}));
    load_ok(
        &wh,
        &lines(&[s.clone(), rec(1, json!(7)), rec(2, Value::Null)]),
    );
    assert_eq!(txn(&wh, "target-warehouse:e"), Some(2));
    let r = load_ok(&wh, &lines(&[s, rec(2, json!(7)), rec(3, json!(null))]));
    assert!(r.stderr().contains("skipped=1"), "{}", r.stderr());
}

/// Starts a load held just before its first commit's log entry; returns it and the file that
/// releases it.
fn held(wh: &Path, input: &str, config: Value) -> (Started, std::path::PathBuf) {
    let go = wh.with_extension("go");
    let spec = format!("commit-before-log:1@{}", go.display());
    let mut started = start(wh, config, input, &[(ENV, &spec)]);
    let flag = wh.with_extension("go.held");
    while !flag.exists() {
        if started.exited() {
            panic!("the held load ended first: {}", started.finish().stderr());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (started, go)
}

#[test]
fn two_producers_racing_on_an_existing_table_both_commit_every_row_once() {
    let (_d, wh) = warehouse();
    load_ok(&wh, &drain(Some("a"), &[1]));
    load_ok(&wh, &drain(Some("b"), &[2]));
    // A has read the table and its marks and is about to commit; B commits meanwhile. A's
    // commit then lands on top of B's (another producer's mark: no conflict).
    let a = every_other(3, 43);
    let b = every_other(4, 44);
    let (started, go) = held(&wh, &drain(Some("a"), &a), json!({}));
    load_ok(&wh, &drain(Some("b"), &b));
    std::fs::write(&go, "").expect("release");
    let ra = started.finish();
    assert!(ra.ok(), "{}", ra.stderr());
    assert_eq!(ra.stdout_lines().len(), 1, "A's state is printed");
    let with = |first: i64, rest: &[i64]| -> Vec<i64> {
        std::iter::once(first).chain(rest.iter().copied()).collect()
    };
    assert_eq!(
        rows(&wh),
        expected(&[("a", &with(1, &a)), ("b", &with(2, &b))])
    );
    // And free-running: two loads of many small commits each, at once, side by side.
    let a2 = every_other(101, 301);
    let b2 = every_other(102, 302);
    let small = json!({"batch_size_rows": 5});
    let ra = start(&wh, small.clone(), &drain(Some("a"), &a2), &[]);
    let rb = start(&wh, small, &drain(Some("b"), &b2), &[]);
    let (ra, rb) = (ra.finish(), rb.finish());
    assert!(ra.ok() && rb.ok(), "{}\n{}", ra.stderr(), rb.stderr());
    let all_a: Vec<i64> = with(1, &a).into_iter().chain(a2.clone()).collect();
    let all_b: Vec<i64> = with(2, &b).into_iter().chain(b2.clone()).collect();
    assert_eq!(rows(&wh), expected(&[("a", &all_a), ("b", &all_b)]));
    assert_eq!(
        (
            txn(&wh, "target-warehouse:e:a"),
            txn(&wh, "target-warehouse:e:b")
        ),
        (Some(299), Some(300))
    );
}

#[test]
fn two_loads_of_one_producer_racing_commit_its_records_once() {
    // The same spool drained into two targets at once: the second commit carrying the
    // producer's mark is refused (it was read before the first landed), nothing of it lands,
    // and its rerun skips what the first committed.
    let (_d, wh) = warehouse();
    load_ok(&wh, &drain(Some("a"), &[1]));
    let input = drain(Some("a"), &(2..=30).collect::<Vec<_>>());
    let (started, go) = held(&wh, &input, json!({}));
    load_ok(&wh, &input);
    std::fs::write(&go, "").expect("release");
    let r = started.finish();
    assert!(
        !r.ok(),
        "the second commit of one producer's records is refused"
    );
    assert_eq!(r.stdout_lines(), Vec::<Value>::new());
    assert_eq!(unreferenced_files(&wh.join("e")), Vec::<String>::new());
    let again = load_ok(&wh, &input);
    assert!(again.stderr().contains("skipped=29"), "{}", again.stderr());
    assert_eq!(rows(&wh), expected(&[("a", &(1..=30).collect::<Vec<_>>())]));
}

#[test]
fn two_producers_racing_to_create_a_table_load_every_row_once() {
    // Free-running, many times: the loads race to create the table; a loser writes nothing,
    // fails saying so, and its rerun completes the table.
    let a = every_other(1, 401);
    let b = every_other(2, 402);
    let mut lost = 0;
    for _ in 0..8 {
        let (_d, wh) = warehouse();
        let small = json!({"batch_size_rows": 50});
        let ra = start(&wh, small.clone(), &drain(Some("a"), &a), &[]);
        let rb = start(&wh, small.clone(), &drain(Some("b"), &b), &[]);
        for (r, p, seqs) in [(ra.finish(), "a", &a), (rb.finish(), "b", &b)] {
            if !r.ok() {
                assert!(
                    r.stderr().contains("created by another load"),
                    "{}",
                    r.stderr()
                );
                lost += 1;
                let again = run(&wh, small.clone(), &drain(Some(p), seqs));
                assert!(again.ok(), "{}", again.stderr());
            }
        }
        assert_eq!(rows(&wh), expected(&[("a", &a), ("b", &b)]));
        assert_eq!(crate::races::creates(&wh.join("e")), 1);
    }
    eprintln!("{lost} of 8 races lost by one load");
}
