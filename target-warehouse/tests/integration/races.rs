//! Loads racing on one table (issue 20): two `target-warehouse` processes at once, on a new
//! table or an existing one, local disk. One is held by a failpoint between its read of the
//! table and its commit while the other commits (`<step>@<file>`, see `failpoint.rs`), so the
//! race happens on every run, not once in many.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use target_warehouse::failpoint::ENV;

use crate::harness::*;

/// Singer lines of stream `r`: one record per id, from `producer`, sequences from `seq0`.
fn input(keys: &[&str], ids: std::ops::Range<i64>, producer: &str, seq0: i64) -> String {
    let mut msgs = vec![schema_msg(
        "r",
        json!({"id": {"type": "integer"}, "src": {"type": "string"}, "_sdc_producer": {"type": "string"}}),
        keys,
    )];
    for (i, id) in ids.clone().enumerate() {
        msgs.push(record(
            "r",
            json!({"id": id, "src": producer, "_sdc_producer": producer, "_sdc_sequence": seq0 + i as i64}),
        ));
    }
    msgs.push(state(json!({producer: ids.end})));
    lines(&msgs)
}

/// Starts a load held at the `nth` commit's last moment before its log entry, and waits until
/// it is there; it goes on once the returned file exists.
fn start_held(wh: &Path, dir: &Path, config: Value, input: &str, nth: u32) -> (Started, PathBuf) {
    let go = dir.join(format!("go-{nth}-{}", rand_suffix()));
    let spec = format!("commit-before-log:{nth}@{}", go.display());
    let mut held = start(wh, config, input, &[(ENV, &spec)]);
    let mut flag = go.as_os_str().to_owned();
    flag.push(".held");
    let flag = PathBuf::from(flag);
    while !flag.exists() {
        if held.exited() {
            panic!("the held load ended first: {}", held.finish().stderr());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (held, go)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// How many log entries of the table create it (only a CREATE carries a `protocol` action).
pub fn creates(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .expect("log")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json").then(|| std::fs::read_to_string(p).ok())?
        })
        .filter(|entry| entry.contains("\"protocol\""))
        .count()
}

/// (src, id) of every row, sorted.
fn rows(wh: &Path) -> Vec<(String, i64)> {
    let t = read_table(&wh.join("r"), "r");
    let mut rows: Vec<(String, i64)> = t
        .rows
        .iter()
        .map(|r| {
            (
                r["src"].as_str().expect("src").to_string(),
                r["id"].as_i64().expect("id"),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn two_loads_racing_to_create_one_table_create_it_once_and_load_every_row_once() {
    for keys in [&["id"][..], &[][..]] {
        let (d, wh) = warehouse();
        let a = input(keys, 0..200, "pa", 1);
        let b = input(keys, 100..300, "pb", 1);
        // A finds no table and is held just before it creates one; B creates it meanwhile.
        let (held, go) = start_held(&wh, d.path(), json!({}), &a, 1);
        let rb = run(&wh, json!({}), &b);
        assert!(rb.ok(), "{keys:?}: {}", rb.stderr());
        std::fs::write(&go, "").expect("release");
        let ra = held.finish();
        assert_eq!(
            creates(&wh.join("r")),
            1,
            "{keys:?}: exactly one CREATE TABLE: {}",
            ra.stderr()
        );
        // The loser wrote nothing and printed no state; its rerun is an ordinary load.
        assert!(!ra.ok(), "{keys:?}: the held load lost the race");
        assert!(
            ra.stderr().contains("created by another load"),
            "{}",
            ra.stderr()
        );
        assert_eq!(ra.stdout_lines(), Vec::<Value>::new());
        assert_eq!(unreferenced_files(&wh.join("r")), Vec::<String>::new());
        let again = run(&wh, json!({}), &a);
        assert!(again.ok(), "{}", again.stderr());
        assert_eq!(again.stdout_lines(), vec![json!({"pa": 200})]);
        let want: Vec<(String, i64)> = if keys.is_empty() {
            let mut all: Vec<(String, i64)> = (0..200)
                .map(|id| ("pa".to_string(), id))
                .chain((100..300).map(|id| ("pb".to_string(), id)))
                .collect();
            all.sort();
            all
        } else {
            // A committed last: its rows replaced B's for the keys both hold.
            let mut all: Vec<(String, i64)> = (0..200)
                .map(|id| ("pa".to_string(), id))
                .chain((200..300).map(|id| ("pb".to_string(), id)))
                .collect();
            all.sort();
            all
        };
        assert_eq!(rows(&wh), want, "{keys:?}: every row once");
    }
}

#[test]
fn an_upsert_racing_another_load_of_new_keys_is_refused_and_its_rerun_loads_every_key_once() {
    // The table exists; two producers upsert keys it does not hold yet, some keys in both.
    // A read the table before B committed: its batch replaces nothing, so were it committed
    // on top of B's, keys 150..200 would be in the table twice. It is refused instead.
    let (d, wh) = warehouse();
    let r = run(&wh, json!({}), &input(&["id"], 0..10, "pa", 1));
    assert!(r.ok(), "{}", r.stderr());
    let a = input(&["id"], 100..200, "pa", 11);
    let (held, go) = start_held(&wh, d.path(), json!({}), &a, 1);
    let rb = run(&wh, json!({}), &input(&["id"], 150..250, "pb", 1));
    assert!(rb.ok(), "{}", rb.stderr());
    std::fs::write(&go, "").expect("release");
    let ra = held.finish();
    assert!(
        !ra.ok(),
        "A's upsert never read B's rows: it must not commit"
    );
    assert!(ra.stderr().contains("concurrent"), "{}", ra.stderr());
    assert_eq!(ra.stdout_lines(), Vec::<Value>::new());
    assert_eq!(unreferenced_files(&wh.join("r")), Vec::<String>::new());
    let again = run(&wh, json!({}), &a);
    assert!(again.ok(), "{}", again.stderr());
    let mut want: Vec<(String, i64)> = (0..10)
        .chain(100..200)
        .map(|id| ("pa".to_string(), id))
        .chain((200..250).map(|id| ("pb".to_string(), id)))
        .collect();
    want.sort();
    assert_eq!(rows(&wh), want, "every key once, A's rows last");
}

#[test]
fn an_insert_racing_another_load_of_new_keys_is_refused_and_its_rerun_skips_the_keys_it_lost() {
    // As above with `load_method: insert`: A found keys 150..200 absent before B inserted
    // them; committed, they would be in the table twice. Refused; its rerun finds B's rows
    // and skips those keys (the first insert of a key wins).
    let config = json!({"load_method": "insert"});
    let (d, wh) = warehouse();
    let r = run(&wh, config.clone(), &input(&["id"], 0..10, "pa", 1));
    assert!(r.ok(), "{}", r.stderr());
    let a = input(&["id"], 100..200, "pa", 11);
    let (held, go) = start_held(&wh, d.path(), config.clone(), &a, 1);
    let rb = run(&wh, config.clone(), &input(&["id"], 150..250, "pb", 1));
    assert!(rb.ok(), "{}", rb.stderr());
    std::fs::write(&go, "").expect("release");
    let ra = held.finish();
    assert!(
        !ra.ok(),
        "A's insert never read B's rows: it must not commit"
    );
    assert!(ra.stderr().contains("concurrent"), "{}", ra.stderr());
    assert_eq!(ra.stdout_lines(), Vec::<Value>::new());
    assert_eq!(unreferenced_files(&wh.join("r")), Vec::<String>::new());
    let again = run(&wh, config, &a);
    assert!(again.ok(), "{}", again.stderr());
    assert!(
        again.stderr().contains("inserts_skipped=50"),
        "{}",
        again.stderr()
    );
    let mut want: Vec<(String, i64)> = (0..10)
        .chain(100..150)
        .map(|id| ("pa".to_string(), id))
        .chain((150..250).map(|id| ("pb".to_string(), id)))
        .collect();
    want.sort();
    assert_eq!(
        rows(&wh),
        want,
        "every key once, B's where it inserted first"
    );
}
