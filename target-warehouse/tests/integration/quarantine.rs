//! `on_invalid_record: quarantine`: records the target cannot store land in
//! `<stream>__rejected` with the reason, the line number and the raw line; the good ones load, the
//! STATE is printed, and a replay of the same input quarantines nothing twice.

use serde_json::{json, Value};

use crate::harness::*;

fn input() -> String {
    let s = schema_msg(
        "s",
        json!({"id": {"type": ["null", "integer"]}, "v": {"type": "string"}}),
        &["id"],
    );
    let p = "producer-1";
    lines(&[
        s,
        record(
            "s",
            json!({"id": 1, "v": "a", "_sdc_sequence": 1, "_sdc_producer": p}),
        ),
        record(
            "s",
            json!({"v": "no key", "_sdc_sequence": 2, "_sdc_producer": p}),
        ),
        record(
            "s",
            json!({"id": null, "v": "null key", "_sdc_sequence": 3, "_sdc_producer": p}),
        ),
        json!({"type": "RECORD", "stream": "s", "record": ["not", "an", "object"]}),
        record(
            "s",
            json!({"id": 2, "v": "b", "_sdc_sequence": 5, "_sdc_producer": p}),
        ),
        state(json!({"bookmarks": {"s": 5}})),
    ])
}

#[test]
fn invalid_records_are_quarantined_with_reason_and_raw_line_and_never_twice() {
    let (_d, wh) = warehouse();
    let config = json!({"on_invalid_record": "quarantine"});
    let r = run(&wh, config.clone(), &input());
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.stdout_lines(), vec![json!({"bookmarks": {"s": 5}})]);

    let good = read_table(&wh.join("s"), "s");
    let ids: Vec<Value> = good
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2)]);

    let q = read_table(&wh.join("s__rejected"), "s__rejected");
    let rows = q.sorted_by("line");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let expected = [
        (3, "key property \"id\"", "no key", Some(2)),
        (4, "key property \"id\" is null", "null key", Some(3)),
        (5, "not a JSON object", "[\"not\",\"an\",\"object\"]", None),
    ];
    for (row, (line, reason, raw, seq)) in rows.iter().zip(expected) {
        assert_eq!(row["line"], json!(line), "{row:?}");
        assert_eq!(row["stream"], json!("s"));
        let why = row["reason"].as_str().unwrap();
        assert!(
            why.contains(reason) && why.contains(&format!("line {line}")),
            "{why}"
        );
        let line_text = row["raw_line"].as_str().unwrap();
        assert!(
            line_text.contains(raw) && line_text.contains("\"type\":\"RECORD\""),
            "{row:?}"
        );
        if let Some(seq) = seq {
            assert_eq!(row["_sdc_sequence"], json!(seq), "{row:?}");
            assert_eq!(row["message_id"], json!(format!("seq:{seq}")));
        } else {
            assert_eq!(row["message_id"], json!(format!("line:{line}")));
        }
    }

    // The same input again (a retried run): the tap's sequences mark what was committed; the
    // record without one has no identity and is quarantined again (append-only, by line).
    let again = run(&wh, config, &input());
    assert!(again.ok(), "{}", again.stderr());
    assert_eq!(read_table(&wh.join("s"), "s").rows.len(), 2);
    let q = read_table(&wh.join("s__rejected"), "s__rejected");
    let ids = |prefix: &str| {
        q.rows
            .iter()
            .filter(|r| r["message_id"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!((ids("seq:"), ids("line:")), (2, 2), "{:?}", q.rows);

    // The default still stops at the first such record, naming it.
    let (_d2, wh2) = warehouse();
    let r = run(&wh2, json!({}), &input());
    assert!(!r.ok());
    assert!(
        r.stderr().contains("line 3") && r.stderr().contains("key property \"id\""),
        "{}",
        r.stderr()
    );
    assert!(!wh2.join("s__rejected").exists());
}
