//! The stream's high-water mark in the Delta `txn` action, and replays skipped.

use serde_json::json;

use crate::harness::*;

#[test]
fn replayed_records_are_skipped_even_in_append_only_tables() {
    let (_d, wh) = warehouse();
    let s = schema_msg(
        "w",
        json!({"id": {"type": "integer"}}),
        &["__sdc_primary_key"],
    );
    let rec = |seq: i64| {
        record(
            "w",
            json!({"__sdc_primary_key": format!("k{seq}"), "id": seq, "_sdc_sequence": seq}),
        )
    };
    let first = lines(&[s.clone(), rec(1), rec(2), state(json!({"b": 2}))]);
    let r = run(&wh, json!({}), &first);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(read_table(&wh.join("w"), "w").txn, Some(2));
    // The target "crashed" before the state was saved: the tap replays 1..2 and adds 3.
    let r = run(
        &wh,
        json!({}),
        &lines(&[s, rec(1), rec(2), rec(3), state(json!({"b": 3}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), vec![json!({"b": 3})]);
    let t = read_table(&wh.join("w"), "w");
    let ids: Vec<_> = t.sorted_by("id").iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!(3)]);
    assert_eq!(t.txn, Some(3));
}

#[test]
fn each_commit_carries_the_txn_and_the_state() {
    let (_d, wh) = warehouse();
    let s = schema_msg("t", json!({}), &[]);
    let r = run(
        &wh,
        json!({"batch_size_rows": 1}),
        &lines(&[
            s,
            record("t", json!({"_sdc_sequence": 5})),
            state(json!({"p": 1})),
            record("t", json!({"_sdc_sequence": 6})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("t"), "t");
    assert_eq!((t.txn, t.version), (Some(6), 1));
    let log = std::fs::read_to_string(wh.join("t/_delta_log/00000000000000000001.json"))
        .expect("commit 1");
    assert!(log.contains("\"singerState\":{\"p\":1}"), "{log}");
    assert!(
        log.contains("\"txn\":{\"appId\":\"target-warehouse:t\",\"version\":6"),
        "{log}"
    );
}

/// Input where every record is followed by a STATE naming its position, like a resumable tap.
fn resumable_input(stream: &str, keys: &[&str], from: usize, to: usize) -> String {
    let mut msgs = vec![schema_msg(
        stream,
        json!({"id": {"type": "integer"}, "n": {"type": "integer"}}),
        keys,
    )];
    for i in from..to {
        // Upserted ids repeat (i % 150); append-only rows are unique by n.
        msgs.push(record(stream, json!({"__sdc_primary_key": format!("p{i}"), "id": i % 150, "n": i, "_sdc_sequence": i + 1})));
        msgs.push(state(json!({"pos": i + 1})));
    }
    lines(&msgs)
}

fn killed_then_resumed(stream: &str, keys: &[&str], kill_after_ms: u64) -> TableRead {
    use std::io::Write;
    const TOTAL: usize = 600;
    let (_d, wh) = warehouse();
    let cfg = wh.with_extension("config.json");
    let config = json!({"warehouse_path": wh.display().to_string(), "batch_size_rows": 25});
    std::fs::write(&cfg, config.to_string()).expect("config");
    let mut child = spawn(&cfg);
    let mut stdin = child.stdin.take().expect("stdin");
    let input = resumable_input(stream, keys, 0, TOTAL);
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    std::thread::sleep(std::time::Duration::from_millis(kill_after_ms));
    let _ = child.kill(); // SIGKILL
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["pos"].as_u64())
        .next_back()
        .unwrap_or(0) as usize;
    eprintln!("{stream}: killed after {kill_after_ms} ms at state pos {last}");
    // Resume from the last state printed: the tap replays everything after it.
    let r = run(
        &wh,
        json!({"batch_size_rows": 25}),
        &resumable_input(stream, keys, last, TOTAL),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join(stream), stream);
    drop(_d);
    t
}

#[test]
fn sigkill_at_any_point_then_resume_equals_a_clean_load() {
    for kill_after in [30, 120, 400] {
        let t = killed_then_resumed("a", &["__sdc_primary_key"], kill_after);
        let mut ns: Vec<i64> = t.rows.iter().filter_map(|r| r["n"].as_i64()).collect();
        ns.sort_unstable();
        assert_eq!(
            ns,
            (0..600).collect::<Vec<i64>>(),
            "append-only, killed after {kill_after} ms"
        );
        let t = killed_then_resumed("u", &["id"], kill_after);
        let mut got: Vec<(i64, i64)> = t
            .rows
            .iter()
            .filter_map(|r| Some((r["id"].as_i64()?, r["n"].as_i64()?)))
            .collect();
        got.sort_unstable();
        let want: Vec<(i64, i64)> = (0..150).map(|id| (id, 450 + id)).collect();
        assert_eq!(got, want, "upsert, killed after {kill_after} ms");
    }
}
