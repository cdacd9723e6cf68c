//! Which directory holds a stream's table (issue 20, `table/place.rs`): streams whose names
//! sanitize alike (`a-b`, `a_b`) each keep their one table across runs, whatever earlier runs
//! left behind; a directory whose log names another stream is never taken over; names the
//! format or the file system give a meaning (`_delta_log`, `.`, `..`, empty) get a safe
//! directory and load like any other.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::*;

/// Singer lines: the SCHEMA of each of `streams`, then records `1..=upto` of `stream` (the
/// sequence is the record's `n`), then a STATE.
fn input(streams: &[&str], stream: &str, upto: i64) -> String {
    let mut msgs: Vec<Value> = streams
        .iter()
        .map(|s| schema_msg(s, json!({"n": {"type": "integer"}}), &[]))
        .collect();
    for n in 1..=upto {
        msgs.push(record(stream, json!({"n": n, "_sdc_sequence": n})));
    }
    msgs.push(state(json!({stream: upto})));
    lines(&msgs)
}

fn load(wh: &Path, input: &str) -> Run {
    let r = run(wh, json!({}), input);
    assert!(r.ok(), "{}", r.stderr());
    r
}

/// The name the table at `dir` has in its log (`None`: no table there).
fn table_name(dir: &Path) -> Option<String> {
    let first = dir.join("_delta_log").join(format!("{:020}.json", 0));
    let entry = std::fs::read_to_string(first).ok()?;
    entry
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|a| a["metaData"]["name"].as_str().map(str::to_string))
}

/// The sorted `n`s of the table at `dir`.
fn ns(dir: &Path, stream: &str) -> Vec<i64> {
    let mut ns: Vec<i64> = read_table(dir, stream)
        .rows
        .iter()
        .map(|r| r["n"].as_i64().expect("n"))
        .collect();
    ns.sort_unstable();
    ns
}

#[test]
fn streams_that_sanitize_alike_keep_their_one_table_whatever_was_left_behind() {
    let (_d, wh) = warehouse();
    // A first run in which `a-b` took the directory `a_b` and committed nothing (it failed, or
    // had no records): `a_b` went to `a_b__2`, and `a_b` is an empty directory.
    load(&wh, &input(&["a-b", "a_b"], "a_b", 5));
    assert_eq!(table_name(&wh.join("a_b")), None);
    assert_eq!(table_name(&wh.join("a_b__2")).as_deref(), Some("a_b"));
    // Issue 20: the next run of `a_b` alone took the empty `a_b`: a second table of the
    // stream, without its mark, so every record was loaded again.
    let r = load(&wh, &input(&["a_b"], "a_b", 8));
    assert!(r.stderr().contains("skipped=5"), "{}", r.stderr());
    assert_eq!(table_name(&wh.join("a_b")), None, "a_b has one table");
    assert_eq!(ns(&wh.join("a_b__2"), "a_b"), (1..=8).collect::<Vec<_>>());
    // The empty directory is removed (as on an object store, which has none): the same.
    std::fs::remove_dir(wh.join("a_b")).expect("an empty directory");
    load(&wh, &input(&["a_b"], "a_b", 10));
    assert_eq!(table_name(&wh.join("a_b")), None, "a_b has one table");
    assert_eq!(ns(&wh.join("a_b__2"), "a_b"), (1..=10).collect::<Vec<_>>());
    // `a-b` gets the free directory; then both streams, in either order, find their own.
    load(&wh, &input(&["a-b"], "a-b", 3));
    assert_eq!(table_name(&wh.join("a_b")).as_deref(), Some("a-b"));
    load(&wh, &input(&["a_b", "a-b"], "a-b", 4));
    load(&wh, &input(&["a-b", "a_b"], "a_b", 12));
    assert_eq!(ns(&wh.join("a_b"), "a-b"), (1..=4).collect::<Vec<_>>());
    assert_eq!(ns(&wh.join("a_b__2"), "a_b"), (1..=12).collect::<Vec<_>>());
    let dirs: Vec<String> = std::fs::read_dir(&wh)
        .expect("warehouse")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 2, "no third directory: {dirs:?}");
}

#[test]
fn a_directory_holding_another_streams_table_is_never_taken_over() {
    let (_d, wh) = warehouse();
    // `a_b__2` is the table of a stream literally named so; `a-b` owns `a_b`.
    load(&wh, &input(&["a_b__2"], "a_b__2", 2));
    load(&wh, &input(&["a-b"], "a-b", 3));
    // `a_b` finds `a_b` and `a_b__2` taken by other streams' tables, and takes `a_b__3`.
    load(&wh, &input(&["a_b"], "a_b", 4));
    assert_eq!(table_name(&wh.join("a_b")).as_deref(), Some("a-b"));
    assert_eq!(table_name(&wh.join("a_b__2")).as_deref(), Some("a_b__2"));
    assert_eq!(table_name(&wh.join("a_b__3")).as_deref(), Some("a_b"));
    assert_eq!(ns(&wh.join("a_b"), "a-b"), vec![1, 2, 3]);
    assert_eq!(ns(&wh.join("a_b__2"), "a_b__2"), vec![1, 2]);
    assert_eq!(ns(&wh.join("a_b__3"), "a_b"), vec![1, 2, 3, 4]);
}

#[test]
fn streams_named_like_the_log_or_a_path_get_a_safe_directory_and_load() {
    // Issue 20: a stream named `_delta_log` broke its run ("Not a Delta table": a path through
    // `_delta_log` is read as a log) and blocked the commits of the streams after it.
    let (_d, wh) = warehouse();
    let names = ["_delta_log", ".", "..", "", "x"];
    let mut msgs: Vec<Value> = names
        .iter()
        .map(|s| schema_msg(s, json!({"n": {"type": "integer"}}), &[]))
        .collect();
    for (i, s) in names.iter().enumerate() {
        for n in 1..=(i as i64 + 1) {
            msgs.push(record(s, json!({"n": n, "_sdc_sequence": n})));
        }
    }
    msgs.push(state(json!({"all": true})));
    let r = load(&wh, &lines(&msgs));
    assert_eq!(r.stdout_lines(), vec![json!({"all": true})]);
    let mut tables: Vec<(String, String, usize)> = std::fs::read_dir(&wh)
        .expect("warehouse")
        .map(|e| e.expect("entry").path())
        .map(|dir| {
            let name = table_name(&dir).expect("every directory holds a table");
            let rows = ns(&dir, &name).len();
            let dir = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, dir, rows)
        })
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        vec![
            ("".into(), "___2".into(), 4),
            (".".into(), "_".into(), 2),
            ("..".into(), "__".into(), 3),
            ("_delta_log".into(), "_delta_log__stream".into(), 1),
            ("x".into(), "x".into(), 5),
        ]
    );
    // Replays are skipped: each stream found its table again.
    let again = load(&wh, &lines(&msgs));
    assert!(again.stderr().contains("skipped=15"), "{}", again.stderr());
}
