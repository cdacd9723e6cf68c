//! `on_invalid_record: quarantine` for the rows of SDK `BATCH` files (real local files, one
//! gzipped): a bad row lands in `<stream>__rejected` with the reason, the BATCH's line, the file
//! and the row; the good rows of the same file load; a rerun quarantines nothing twice, and a
//! run that fails between the two tables' commits is completed exactly once by the next.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use target_warehouse::failpoint::ENV;

use crate::harness::*;

const P: &str = "producer-1";

/// The two BATCH files: a gzipped jsonl with good and bad rows, and a plain one; returns their
/// manifest entries (a `file://` URL and a plain path).
fn files(dir: &Path) -> (String, String) {
    let rows: Vec<Vec<u8>> = vec![
        json!({"id": 1, "v": "a", "_sdc_sequence": 2, "_sdc_producer": P})
            .to_string()
            .into(),
        json!({"v": "no key", "_sdc_sequence": 3, "_sdc_producer": P})
            .to_string()
            .into(),
        json!({"id": null, "v": "null key", "_sdc_sequence": 4, "_sdc_producer": P})
            .to_string()
            .into(),
        b"[\"not\", \"an\", \"object\"]".to_vec(),
        b"{\"id\": 9, \"v\": ".to_vec(),
        b"{\"id\": 10, \"v\": \"\xff\xfe\"}".to_vec(),
        Vec::new(),        // a blank line is not a row
        b" \t\r".to_vec(), // nor is a line of white space (Singer's line rule)
        json!({"id": 5, "v": "e", "_sdc_sequence": 8, "_sdc_producer": P})
            .to_string()
            .into(),
    ];
    let gz = dir.join("part 1.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    for r in &rows {
        enc.write_all(r).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap();
    let plain = dir.join("part2.jsonl");
    let second = [
        json!({"id": 6, "v": "f", "_sdc_sequence": 9, "_sdc_producer": P}),
        json!({"v": "no key either", "_sdc_sequence": 10, "_sdc_producer": P}),
    ];
    std::fs::write(&plain, lines(&second)).unwrap();
    let url = format!("file://{}", gz.display()).replace(' ', "%20");
    (url, plain.display().to_string())
}

/// SCHEMA, a bad RECORD, the BATCH of both files (line 3), a good RECORD, STATE.
fn input(gz: &str, plain: &str) -> Vec<Value> {
    vec![
        schema_msg(
            "s",
            json!({"id": {"type": ["null", "integer"]}, "v": {"type": "string"}}),
            &["id"],
        ),
        record(
            "s",
            json!({"v": "record without key", "_sdc_sequence": 1, "_sdc_producer": P}),
        ),
        json!({"type": "BATCH", "stream": "s", "encoding": {"format": "jsonl", "compression": "gzip"},
               "manifest": [gz, plain]}),
        record(
            "s",
            json!({"id": 7, "v": "g", "_sdc_sequence": 11, "_sdc_producer": P}),
        ),
        state(json!({"bookmarks": {"s": 11}})),
    ]
}

/// A row expected in `s__rejected`.
struct Expected<'a> {
    /// The BATCH file and row (`None`: a RECORD, line 2).
    at: Option<(&'a str, u64)>,
    /// What the reason says.
    why: &'a str,
    /// Part of the raw text.
    raw: &'a str,
    /// The tap's sequence.
    seq: Option<i64>,
}

/// A column of a row read back (a null is absent from it).
fn col(row: &serde_json::Map<String, Value>, name: &str) -> Value {
    row.get(name).cloned().unwrap_or(Value::Null)
}

fn good_ids(wh: &Path) -> Vec<Value> {
    let t = read_table(&wh.join("s"), "s");
    t.sorted_by("id").iter().map(|r| r["id"].clone()).collect()
}

fn rejected(wh: &Path) -> Vec<serde_json::Map<String, Value>> {
    read_table(&wh.join("s__rejected"), "s__rejected").rows
}

/// The rejected rows' tap sequences, sorted (the rows without one get the target's own
/// `_sdc_sequence` and a `line:` message id).
fn rejected_seqs(wh: &Path) -> Vec<i64> {
    let mut seqs: Vec<i64> = rejected(wh)
        .iter()
        .filter(|r| r["message_id"].as_str().unwrap().starts_with("seq:"))
        .map(|r| r["_sdc_sequence"].as_i64().unwrap())
        .collect();
    seqs.sort();
    seqs
}

#[test]
fn invalid_batch_rows_are_quarantined_with_file_and_row_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (gz, plain) = files(dir.path());
    let messages = input(&gz, &plain);
    let input = lines(&messages);
    let (_d, wh) = warehouse();
    let config = json!({"on_invalid_record": "quarantine"});
    let r = run(&wh, config.clone(), &input);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), vec![json!({"bookmarks": {"s": 11}})]);
    assert_eq!(good_ids(&wh), vec![json!(1), json!(5), json!(6), json!(7)]);

    let mut rows = rejected(&wh);
    rows.sort_by_key(|r| {
        (
            r["line"].as_u64(),
            col(r, "batch_file") == json!(plain), // the manifest's order
            col(r, "batch_row").as_u64(),
        )
    });
    let bad = |at, why, raw, seq| Expected { at, why, raw, seq };
    let key = "key property \"id\"";
    let expected = [
        bad(None, key, "record without key", Some(1)),
        bad(Some((&gz, 2)), key, "\"v\":\"no key\"", Some(3)),
        bad(
            Some((&gz, 3)),
            "\"id\" is null",
            "\"v\":\"null key\"",
            Some(4),
        ),
        bad(
            Some((&gz, 4)),
            "not a JSON object",
            "[\"not\", \"an\", \"object\"]",
            None,
        ),
        bad(
            Some((&gz, 5)),
            "not a JSON object",
            "{\"id\": 9, \"v\": ",
            None,
        ),
        bad(
            Some((&gz, 6)),
            "not UTF-8",
            "{\"id\": 10, \"v\": \"\u{fffd}\u{fffd}\"}",
            None,
        ),
        bad(Some((&plain, 2)), key, "no key either", Some(10)),
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, e) in rows.iter().zip(expected) {
        let line = if e.at.is_some() { 3 } else { 2 };
        assert_eq!(row["line"], json!(line), "{row:?}");
        assert_eq!(row["stream"], json!("s"));
        assert_eq!(col(row, "batch_file"), json!(e.at.map(|a| a.0)), "{row:?}");
        assert_eq!(col(row, "batch_row"), json!(e.at.map(|a| a.1)), "{row:?}");
        let reason = row["reason"].as_str().unwrap();
        assert!(
            reason.contains(e.why) && reason.contains(&format!("line {line}")),
            "{reason}"
        );
        let text = row["raw_line"].as_str().unwrap();
        assert!(text.contains(e.raw), "{row:?}");
        // A RECORD's raw line is the Singer line; a BATCH row's is the row as in the file.
        assert_eq!(
            text.contains("\"type\":\"RECORD\""),
            e.at.is_none(),
            "{row:?}"
        );
        if let Some((file, n)) = e.at {
            let at = format!("BATCH file {file}, row {n}:");
            assert!(reason.contains(&at), "{reason}");
        }
        match (e.seq, e.at) {
            (Some(seq), _) => {
                assert_eq!(row["_sdc_sequence"], json!(seq), "{row:?}");
                assert_eq!(row["_sdc_producer"], json!(P), "{row:?}");
                assert_eq!(row["message_id"], json!(format!("seq:{seq}")));
            }
            (None, Some((file, n))) => {
                assert_eq!(row["message_id"], json!(format!("line:3:row:{n}:{file}")));
            }
            (None, None) => unreachable!("every RECORD above has a sequence"),
        }
    }

    // The same input again: the sequenced rows are skipped in both tables; the rows without
    // a sequence have no identity and are quarantined again, as RECORDs without one are.
    let again = run(&wh, config, &input);
    assert!(again.ok(), "{}", again.stderr());
    assert_eq!(good_ids(&wh).len(), 4);
    assert_eq!(rejected_seqs(&wh), vec![1, 3, 4, 10]);
    assert_eq!(rejected(&wh).len(), 4 + 2 * 3);

    // The default stops at the first bad row of the BATCH, naming its line, file and row, and
    // writes no quarantine table.
    let (_d2, wh2) = warehouse();
    let r = run(
        &wh2,
        json!({}),
        &lines(&[messages[0].clone(), messages[2].clone()]),
    );
    assert!(!r.ok());
    let needles = ["line 2", "\"s\"", "BATCH file", &gz, "row 2", key];
    for needle in needles {
        assert!(
            r.stderr().contains(needle),
            "{needle:?} not in {}",
            r.stderr()
        );
    }
    assert!(!wh2.join("s__rejected").exists());
}

/// Rows with sequences only: a run failing at any commit step of either table, then a clean
/// rerun, ends with each good row in `s` and each bad row in `s__rejected` exactly once.
#[test]
fn a_run_failing_between_the_stream_and_its_quarantine_commits_is_completed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.jsonl");
    let rows: Vec<Value> = (1..=6)
        .map(|i| match i % 3 {
            0 => json!({"v": "bad", "_sdc_sequence": i, "_sdc_producer": P}),
            _ => json!({"id": i, "v": "good", "_sdc_sequence": i, "_sdc_producer": P}),
        })
        .collect();
    std::fs::write(&file, lines(&rows)).unwrap();
    let batch = json!({"type": "BATCH", "stream": "s",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": [format!("file://{}", file.display())]});
    let input = lines(&[
        id_v_schema("s"),
        batch,
        state(json!({"bookmarks": {"s": 6}})),
    ]);
    // One commit per table, or (2 rows a batch) commits of both tables interleaved mid-BATCH.
    let configs = [
        json!({"on_invalid_record": "quarantine"}),
        json!({"on_invalid_record": "quarantine", "batch_size_rows": 2}),
    ];
    for (config, commits) in configs.iter().zip([2, 3]) {
        for step in ["data-file-write", "commit-before-log", "commit-after-log"] {
            // Every commit of the run is a failure point below (a next one is not reached).
            let (_d, wh) = warehouse();
            let beyond = format!("{step}:{}", commits + 1);
            let clean = run_env(&wh, config.clone(), &input, &[(ENV, &beyond)]);
            assert!(
                clean.ok(),
                "{config}: over {commits} commits: {}",
                clean.stderr()
            );
            for nth in 1..=commits {
                let what = format!("{config}: {step}:{nth}");
                let (_d, wh) = warehouse();
                let failpoint = format!("{step}:{nth}");
                let failed = run_env(&wh, config.clone(), &input, &[(ENV, &failpoint)]);
                assert!(!failed.ok(), "{what}: {}", failed.stderr());
                let released = failed.stdout_lines();
                assert!(
                    released.is_empty(),
                    "{what}: no STATE before every commit: {released:?}"
                );
                let r = run(&wh, config.clone(), &input);
                assert!(r.ok(), "{what}: {}", r.stderr());
                let done = vec![json!({"bookmarks": {"s": 6}})];
                assert_eq!(r.stdout_lines(), done, "{what}");
                let ids = good_ids(&wh);
                assert_eq!(ids, vec![json!(1), json!(2), json!(4), json!(5)], "{what}");
                assert_eq!(rejected_seqs(&wh), vec![3, 6], "{what}");
                assert_eq!(rejected(&wh).len(), 2, "{what}");
            }
        }
    }
}
