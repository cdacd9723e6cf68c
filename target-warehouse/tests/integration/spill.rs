//! Batches handed to their data file while they are parsed (`batch_size_bytes` / 8 at a time):
//! columns that appear mid-batch, several commits, and a SIGKILL in the middle of it all.

use std::path::Path;

use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{json, Value};

use crate::harness::*;

/// Data files in a table's directory (committed or not), with their row-group counts.
fn parquet_files(table: &Path) -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = std::fs::read_dir(table)
        .expect("table dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".parquet"))
        .map(|n| {
            let file = std::fs::File::open(table.join(&n)).expect("open");
            let groups = SerializedFileReader::new(file)
                .expect("parquet")
                .metadata()
                .num_row_groups();
            (n, groups)
        })
        .collect();
    files.sort();
    files
}

/// A ~600-byte record; `late` and `later` exist only from rows 2500 and 4000, and `n` turns
/// into text from row 5000 (a type conflict: it goes to a sibling column).
fn wide_record(i: usize) -> Value {
    let mut r = json!({"id": i, "pad": "x".repeat(600), "_sdc_sequence": i + 1});
    r["n"] = if i >= 5000 {
        json!(format!("n{i}"))
    } else {
        json!(i)
    };
    if i >= 2500 {
        r["late"] = json!(i * 2);
    }
    if i >= 4000 {
        r["later"] = json!({"nested": [i]});
    }
    r
}

#[test]
fn a_batch_handed_over_while_parsed_commits_one_file_holding_columns_that_came_mid_batch() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("s", json!({"id": {"type": "integer"}}), &[])];
    msgs.extend((0..6000).map(|i| record("s", wide_record(i))));
    msgs.push(state(json!({"pos": 6000})));
    // 6,000 records of ~700 bytes (~4.2 MB) fit one 8 MiB batch, handed over 1 MiB at a time.
    let r = run(&wh, json!({"batch_size_bytes": 8 << 20}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), vec![json!({"pos": 6000})]);
    let t = read_table(&wh.join("s"), "s");
    assert_eq!(t.version, 0, "one commit");
    // One data file, and nothing else left in the directory: the parts it was written in
    // (one per schema: before `late`, before `later`, before `n__string`, after) were merged.
    let files = parquet_files(&wh.join("s"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].1 >= 4,
        "one row group per part at least: {files:?}"
    );
    assert_eq!(t.file_schemas.len(), 1);
    for col in ["late", "later", "n__string"] {
        assert!(t.file_schemas[0].field_with_name(col).is_ok(), "{col}");
    }
    let mut rows = t.rows.clone();
    assert_eq!(rows.len(), 6000);
    rows.sort_by_key(|r| r["id"].as_i64());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], json!(i), "row {i}");
        assert_eq!(row["pad"].as_str().map(str::len), Some(600), "row {i}");
        if i >= 5000 {
            assert_eq!(row["n__string"], json!(format!("n{i}")), "row {i}");
            assert!(row.get("n").is_none_or(Value::is_null), "row {i}");
        } else {
            assert_eq!(row["n"], json!(i), "row {i}");
        }
        let late = (i >= 2500).then(|| json!(i * 2));
        assert_eq!(
            row.get("late").filter(|v| !v.is_null()),
            late.as_ref(),
            "row {i}"
        );
        let later = (i >= 4000).then(|| json!(format!("{{\"nested\":[{i}]}}")));
        assert_eq!(
            row.get("later").filter(|v| !v.is_null()),
            later.as_ref(),
            "row {i}"
        );
    }
    // The merged file's Delta statistics cover every part.
    let log =
        std::fs::read_to_string(wh.join("s/_delta_log/00000000000000000000.json")).expect("commit");
    let add = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|a| a.get("add").cloned())
        .expect("add action");
    let stats: Value = serde_json::from_str(add["stats"].as_str().expect("stats")).expect("json");
    assert_eq!(stats["numRecords"], json!(6000));
    assert_eq!(stats["nullCount"]["late"], json!(2500));
    assert_eq!(stats["nullCount"]["n__string"], json!(5000));
    assert_eq!(
        (&stats["minValues"]["id"], &stats["maxValues"]["id"]),
        (&json!(0), &json!(5999))
    );
    assert_eq!(
        (&stats["minValues"]["late"], &stats["maxValues"]["late"]),
        (&json!(5000), &json!(11998))
    );
}

/// The `add` paths of each commit, in commit order.
fn added_files(table: &Path, last_version: u64) -> Vec<String> {
    (0..=last_version)
        .flat_map(|v| {
            let log = std::fs::read_to_string(table.join(format!("_delta_log/{v:020}.json")))
                .expect("commit");
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|a| Some(a.get("add")?.get("path")?.as_str()?.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn handed_over_batches_commit_in_order_and_states_follow_their_commits() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("m", json!({"id": {"type": "integer"}}), &[])];
    for i in 0..8000 {
        let mut r = json!({"id": i, "pad": "y".repeat(500)});
        if i % 2500 == 1000 {
            // A new column now and then: some batches merge parts, others are one part.
            r[format!("c{i}")] = json!(i);
        }
        msgs.push(record("m", r));
        if (i + 1) % 1000 == 0 {
            msgs.push(state(json!({"pos": i + 1})));
        }
    }
    // ~4.5 MB in 2 MiB batches handed over 256 KiB at a time: a few commits, each a file.
    let r = run(&wh, json!({"batch_size_bytes": 2 << 20}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let states = r.stdout_lines();
    assert_eq!(states.last(), Some(&json!({"pos": 8000})));
    assert!(states.len() >= 2, "a state after each commit: {states:?}");
    let t = read_table(&wh.join("m"), "m");
    assert!(t.version >= 2, "several commits: version {}", t.version);
    let files = added_files(&wh.join("m"), t.version);
    assert_eq!(
        files.len() as u64,
        t.version + 1,
        "one file per commit: {files:?}"
    );
    // Names follow the load order (compaction keeps rows in name order), merged or not.
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
    assert_eq!(
        parquet_files(&wh.join("m")).len(),
        files.len(),
        "no file left outside the log"
    );
    let mut ids: Vec<i64> = t.rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..8000).collect::<Vec<i64>>());
}

#[test]
fn a_run_that_fails_mid_batch_leaves_no_file_of_the_batch_it_had_handed_over() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("f", json!({"id": {"type": "integer"}}), &[])];
    msgs.extend((0..3000).map(|i| record("f", wide_record(i))));
    let mut input = lines(&msgs);
    input.push_str("{\"type\":\"RECORD\",\"stream\":\"f\",\"record\":[1]}\n");
    // ~2 MB handed over 1 MiB at a time (two parts: `late` appears at row 2500), then a
    // record that is not an object: the run fails, and the batch is not committed.
    let r = run(&wh, json!({"batch_size_bytes": 8 << 20}), &input);
    assert!(!r.ok());
    assert!(r.stderr().contains("line 3002"), "{}", r.stderr());
    let files = if wh.join("f").exists() {
        parquet_files(&wh.join("f"))
    } else {
        Vec::new()
    };
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_property_declared_after_the_last_hand_over_is_in_the_file() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("p", json!({"id": {"type": "integer"}}), &[])];
    msgs.extend((0..3000).map(|i| record("p", json!({"id": i, "pad": "q".repeat(700)}))));
    // Declared when every row is already with the file: the commit records the column, and
    // the file carries it too (all null).
    msgs.push(schema_msg(
        "p",
        json!({"id": {"type": "integer"}, "added": {"type": "string"}}),
        &[],
    ));
    msgs.push(state(json!({"pos": 3000})));
    let r = run(&wh, json!({"batch_size_bytes": 8 << 20}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("p"), "p");
    assert_eq!(t.rows.len(), 3000);
    assert_eq!(t.file_schemas.len(), 1);
    assert!(t.file_schemas[0].field_with_name("added").is_ok());
}

#[test]
fn sigkill_while_batches_are_handed_over_then_resume_equals_a_clean_load() {
    use std::io::{BufRead, BufReader, Write};
    const TOTAL: usize = 3000;
    let input = |from: usize| {
        let mut msgs = vec![schema_msg("k", json!({"n": {"type": "integer"}}), &[])];
        for i in from..TOTAL {
            msgs.push(record(
                "k",
                json!({"n": i, "pad": "z".repeat(2000), "_sdc_sequence": i + 1}),
            ));
            msgs.push(state(json!({"pos": i + 1})));
        }
        lines(&msgs)
    };
    // ~6 MB in 2 MiB batches: three commits. Killed right after the first or second state
    // it prints, the target is in the middle of handing the next batch to its file.
    for kill_at_state in [1, 2] {
        let (_d, wh) = warehouse();
        let cfg = wh.with_extension("config.json");
        let config =
            json!({"warehouse_path": wh.display().to_string(), "batch_size_bytes": 2 << 20});
        std::fs::write(&cfg, config.to_string()).expect("config");
        let mut child = spawn(&cfg);
        let mut stdin = child.stdin.take().expect("stdin");
        let all = input(0);
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(all.as_bytes());
        });
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut last = 0;
        for (seen, line) in stdout.lines().map_while(Result::ok).enumerate() {
            let v: Value = serde_json::from_str(&line).expect("state line");
            last = v["pos"].as_u64().expect("pos") as usize;
            if seen + 1 == kill_at_state {
                let _ = child.kill(); // SIGKILL
                break;
            }
        }
        let _ = child.wait();
        let _ = feeder.join();
        assert!(
            0 < last && last < TOTAL,
            "killed mid-load: state pos {last}"
        );
        let r = run(&wh, json!({"batch_size_bytes": 2 << 20}), &input(last));
        assert!(r.ok(), "{}", r.stderr());
        let t = read_table(&wh.join("k"), "k");
        let mut ns: Vec<i64> = t.rows.iter().filter_map(|r| r["n"].as_i64()).collect();
        ns.sort_unstable();
        assert_eq!(
            ns,
            (0..TOTAL as i64).collect::<Vec<i64>>(),
            "killed after state {kill_at_state} (pos {last})"
        );
    }
}

#[test]
fn the_last_batches_of_several_streams_cut_together_commit_in_order_with_their_states() {
    let (_d, wh) = warehouse();
    // Three append-only streams and an upserted one, interleaved. At the end of the input the
    // last batches are cut one after the other, each appended one without waiting for the
    // file of the one cut before it; the upserted one waits for them all (it reads its table).
    let mut msgs = vec![
        schema_msg("a", json!({"n": {"type": "integer"}}), &[]),
        schema_msg("b", json!({"n": {"type": "integer"}}), &[]),
        schema_msg("c", json!({"n": {"type": "integer"}}), &[]),
        schema_msg("u", json!({"id": {"type": "integer"}}), &["id"]),
    ];
    for i in 0..3000 {
        for s in ["a", "b", "c"] {
            msgs.push(record(s, json!({"n": i, "pad": "p".repeat(400)})));
        }
        // Ids 0..1000 three times over: the latest of each wins.
        msgs.push(record(
            "u",
            json!({"id": i % 1000, "round": i / 1000, "pad": "q".repeat(400)}),
        ));
        if (i + 1) % 500 == 0 {
            msgs.push(state(json!({"pos": i + 1})));
        }
    }
    // ~5.5 MB in 2 MiB batches: mid-load flushes, then the last cut of all four at the end.
    let r = run(&wh, json!({"batch_size_bytes": 2 << 20}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let states: Vec<u64> = r
        .stdout_lines()
        .iter()
        .map(|v| v["pos"].as_u64().expect("pos"))
        .collect();
    assert_eq!(states.last(), Some(&3000), "{states:?}");
    assert!(states.windows(2).all(|w| w[0] < w[1]), "{states:?}");
    // b's last batch is cut right after a's, whose file is still being written: the path
    // this test is about was taken (the run's closing line counts it).
    let overlapped = r.stderr().split("overlapped_cuts=").nth(1).and_then(|s| {
        s.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<u64>()
            .ok()
    });
    assert!(overlapped.is_some_and(|n| n >= 1), "{}", r.stderr());
    for s in ["a", "b", "c"] {
        let t = read_table(&wh.join(s), s);
        let mut ns: Vec<i64> = t.rows.iter().filter_map(|r| r["n"].as_i64()).collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..3000).collect::<Vec<i64>>(), "stream {s}");
        let files = added_files(&wh.join(s), t.version);
        assert_eq!(
            files.len() as u64,
            t.version + 1,
            "{s}: one file per commit"
        );
        assert_eq!(
            parquet_files(&wh.join(s)).len(),
            files.len(),
            "{s}: no stray file"
        );
    }
    let u = read_table(&wh.join("u"), "u");
    assert_eq!(u.rows.len(), 1000);
    assert!(
        u.rows.iter().all(|r| r["round"] == json!(2)),
        "latest rows win"
    );
}
