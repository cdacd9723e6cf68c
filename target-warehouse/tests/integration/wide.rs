//! Bounded columns per table (issue 20, `overflow.rs`): the values of properties beyond
//! `max_columns` are kept, one JSON object per row, in `_sdc_overflow`; nothing is dropped,
//! nothing fails, one warning per stream per run. The wide-body case: one record with 250k
//! top-level keys.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use target_warehouse::registry::{is_json, META_PROPERTY};

use crate::harness::*;

/// Each row's properties as the table holds them: its columns (by the property each holds;
/// nulls and metadata left out; JSON text parsed) merged with its `_sdc_overflow` object,
/// keyed by `id`.
fn rebuilt(t: &TableRead) -> BTreeMap<i64, Map<String, Value>> {
    let columns: BTreeMap<&str, (String, bool)> = t
        .schema
        .fields()
        .iter()
        .map(|f| {
            let property = f
                .metadata()
                .get(META_PROPERTY)
                .cloned()
                .unwrap_or_else(|| f.name().clone());
            (f.name().as_str(), (property, is_json(f)))
        })
        .collect();
    t.rows
        .iter()
        .map(|r| {
            let mut props = Map::new();
            for (name, v) in r {
                let (property, json) = &columns[name.as_str()];
                if v.is_null() || property.starts_with("_sdc_") {
                    continue;
                }
                let v = match (json, v) {
                    (true, Value::String(text)) => serde_json::from_str(text).expect("JSON"),
                    _ => v.clone(),
                };
                assert!(
                    props.insert(property.clone(), v).is_none(),
                    "{property} twice"
                );
            }
            if let Some(text) = r.get("_sdc_overflow").and_then(Value::as_str) {
                let over: Map<String, Value> = serde_json::from_str(text).expect("a JSON object");
                for (k, v) in over {
                    assert!(props.insert(k.clone(), v).is_none(), "{k} twice");
                }
            }
            (props["id"].as_i64().expect("id"), props)
        })
        .collect()
}

#[test]
fn properties_beyond_max_columns_are_kept_in_sdc_overflow_and_nothing_is_dropped() {
    let (_d, wh) = warehouse();
    let config = json!({"max_columns": 16, "batch_size_rows": 3});
    let schema = schema_msg(
        "w",
        json!({"id": {"type": "integer"}, "a": {"type": "string"}}),
        &["id"],
    );
    // Rows with 30 properties each, numbers, strings and nested values; shifted by 7 in the
    // second run, where each property's values have another type than in the first.
    let row = |id: i64, shift: i64| {
        let mut r = json!({"id": id, "a": format!("a{id}"), "_sdc_sequence": id + 100 * shift});
        for p in 0..30 {
            let v = match p % 3 {
                0 => json!(p * id),
                1 => json!({"n": [p, "x\"y"]}),
                _ => json!(format!("s{p}")),
            };
            r[format!("p{:02}", p + shift)] = v;
        }
        r
    };
    let mut want = BTreeMap::new();
    let mut msgs = vec![schema.clone()];
    for id in 1..=7 {
        let r = row(id, 0);
        msgs.push(record("w", r.clone()));
        want.insert(id, r);
    }
    msgs.push(state(json!({"run": 1})));
    let r = run(&wh, config.clone(), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(
        r.stderr()
            .matches("as many columns as max_columns allows")
            .count(),
        1,
        "one warning per stream per run, over three batches: {}",
        r.stderr()
    );
    // 8 columns (id, a, the sequence and 5 metadata), a place for _sdc_overflow: room for
    // p00..p06; the first batch overflows p07..p29.
    assert!(r.stderr().contains("properties=23"), "{}", r.stderr());
    // A second run: new properties, and new values of types needing siblings; upserts too.
    let mut msgs = vec![schema];
    for id in 5..=9 {
        let r = row(id, 7);
        msgs.push(record("w", r.clone()));
        want.insert(id, r);
    }
    msgs.push(state(json!({"run": 2})));
    let r = run(&wh, config, &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("w"), "w");
    assert_eq!(t.schema.fields().len(), 16, "{:?}", t.column_names());
    assert!(t.column_names().contains(&"_sdc_overflow".to_string()));
    let want: BTreeMap<i64, Map<String, Value>> = want
        .into_iter()
        .map(|(id, r)| {
            let mut r = r.as_object().cloned().expect("object");
            r.remove("_sdc_sequence");
            (id, r)
        })
        .collect();
    assert_eq!(
        rebuilt(&t),
        want,
        "every value, in a column or in _sdc_overflow"
    );
}

#[test]
fn a_record_with_250k_top_level_keys_gets_at_most_max_columns() {
    // Issue 20: 8.4 GB of memory, and every later load of the stream cost seconds and GBs.
    let (_d, wh) = warehouse();
    let keys = 250_000;
    let mut wide = Map::new();
    wide.insert("id".into(), json!(1));
    for k in 0..keys {
        wide.insert(format!("k{k}"), json!(k));
    }
    let schema = schema_msg("big", json!({"id": {"type": "integer"}}), &["id"]);
    let input = lines(&[
        schema.clone(),
        record("big", Value::Object(wide.clone())),
        state(json!({"n": 1})),
    ]);
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("big"), "big");
    let columns = t.schema.fields().len();
    assert!(
        columns <= 1000,
        "{columns} columns: at most max_columns (1,000)"
    );
    let got = rebuilt(&t);
    assert_eq!(got.len(), 1);
    assert_eq!(got[&1], wide, "all 250k values kept");
    // The stream's next load is an ordinary one: a narrow record, into the same table.
    let r = run(
        &wh,
        json!({}),
        &lines(&[schema, record("big", json!({"id": 2, "k7": 7}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("big"), "big");
    assert_eq!(t.schema.fields().len(), columns);
    assert_eq!(rebuilt(&t).len(), 2);
}
