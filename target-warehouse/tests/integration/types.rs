//! Type conflicts and huge integers: every value recoverable from the table.

use serde_json::{json, Value};

use crate::harness::*;

#[test]
fn conflicting_values_land_in_siblings_and_all_are_recoverable() {
    let (_d, wh) = warehouse();
    // A declared-contradictory property (the one that sank a Python target), and a column whose
    // first batch fixes Int64 before strings, floats, objects and booleans arrive.
    let s = schema_msg(
        "c",
        json!({"flag": {"type": ["null", "boolean", "string"]}, "when": {"type": "string", "format": "date-time"}}),
        &[],
    );
    assert!(run(
        &wh,
        json!({}),
        &lines(&[
            s.clone(),
            record(
                "c",
                json!({"n": 1, "price": 10, "flag": true, "when": "2024-01-02T03:04:05Z"})
            )
        ])
    )
    .ok());
    let values = [
        json!("n/a"),
        json!(2.5),
        json!({"k": [1, 2]}),
        json!(false),
        json!(7),
        json!(3.0),
    ];
    let mut msgs = vec![s];
    for (i, v) in values.iter().enumerate() {
        msgs.push(record(
            "c",
            json!({"n": i + 2, "price": v, "flag": "maybe", "when": "not a time"}),
        ));
    }
    let r = run(&wh, json!({}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("c"), "c");
    let names = t.column_names();
    for c in [
        "price",
        "price__string",
        "price__float",
        "price__json",
        "price__boolean",
        "flag",
        "flag__string",
        "when",
        "when__string",
    ] {
        assert!(names.contains(&c.to_string()), "column {c} in {names:?}");
    }
    let rows = t.sorted_by("n");
    let recovered = |r: &serde_json::Map<String, Value>| -> Value {
        let hits: Vec<&Value> = [
            "price",
            "price__string",
            "price__float",
            "price__json",
            "price__boolean",
        ]
        .iter()
        .filter_map(|c| r.get(*c))
        .collect();
        assert_eq!(hits.len(), 1, "exactly one column holds the value: {r:?}");
        match r.get("price__json") {
            Some(Value::String(s)) => serde_json::from_str(s).expect("valid JSON text"),
            _ => hits[0].clone(),
        }
    };
    let got: Vec<Value> = rows.iter().map(recovered).collect();
    assert_eq!(
        got,
        vec![
            json!(10),
            json!("n/a"),
            json!(2.5),
            json!({"k": [1, 2]}),
            json!(false),
            json!(7),
            json!(3)
        ]
    );
    assert!(rows
        .iter()
        .skip(1)
        .all(|r| r["flag__string"] == json!("maybe") && r["when__string"] == json!("not a time")));
    assert_eq!(rows[0]["flag"], json!(true));
}

#[test]
fn huge_integers_are_kept_exactly() {
    let (_d, wh) = warehouse();
    let big = "123456789012345678901234567890";
    let huge = "1234567890123456789012345678901234567890123";
    let input = format!(
        "{}\n{{\"type\":\"RECORD\",\"stream\":\"h\",\"record\":{{\"n\":1,\"v\":{big}}}}}\n{{\"type\":\"RECORD\",\"stream\":\"h\",\"record\":{{\"n\":2,\"v\":{huge}}}}}\n{{\"type\":\"RECORD\",\"stream\":\"h\",\"record\":{{\"n\":3,\"v\":-5,\"i\":{huge}}}}}\n",
        schema_msg("h", json!({}), &[])
    );
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("h"), "h");
    let field = |n: &str| {
        t.schema
            .field_with_name(n)
            .map(|f| f.data_type().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("v"), "Decimal128(38, 0)");
    let rows = t.sorted_by("n");
    assert_eq!(rows[0]["v"].to_string().trim_matches('"'), big);
    assert_eq!(
        rows[1]["v__json"],
        json!(huge),
        "beyond 38 digits: the JSON text of the number"
    );
    assert_eq!(rows[2]["v"].to_string().trim_matches('"'), "-5");
    assert_eq!(rows[2]["i"], json!(huge));

    // Declared the way tap-webhook declares them (a number that is a multiple of 1, so SQL
    // targets make NUMERIC): the column exists from the SCHEMA on, exact, small ones too.
    let input = format!(
        "{}\n{{\"type\":\"RECORD\",\"stream\":\"d\",\"record\":{{\"n\":1,\"v\":7}}}}\n{{\"type\":\"RECORD\",\"stream\":\"d\",\"record\":{{\"n\":2,\"v\":{big}}}}}\n",
        schema_msg(
            "d",
            json!({"n": {"type": "integer"}, "v": {"type": ["null", "number"], "multipleOf": 1}}),
            &[]
        )
    );
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("d"), "d");
    let v = t
        .schema
        .field_with_name("v")
        .unwrap()
        .data_type()
        .to_string();
    assert_eq!(v, "Decimal128(38, 0)");
    let rows = t.sorted_by("n");
    assert_eq!(rows[0]["v"].to_string().trim_matches('"'), "7");
    assert_eq!(rows[1]["v"].to_string().trim_matches('"'), big);
}

#[test]
fn a_lone_surrogate_escape_is_kept_as_json_text_and_the_load_goes_on() {
    // JSON allows `"\ud83d"` (JavaScript writes it for a string cut mid-emoji); no UTF-8
    // string can hold it. The value lands, as its JSON text, in the `__json` sibling; the
    // records around it load as usual.
    let (_d, wh) = warehouse();
    let input = format!(
        "{}\n{}\n{}\n{}\n",
        schema_msg("u", json!({}), &[]),
        r#"{"type":"RECORD","stream":"u","record":{"n":1,"text":"plain"}}"#,
        r#"{"type":"RECORD","stream":"u","record":{"n":2,"text":"cut \ud83d"}}"#,
        r#"{"type":"RECORD","stream":"u","record":{"n":3,"text":"pair \ud83d\ude00"}}"#,
    );
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let rows = read_table(&wh.join("u"), "u").sorted_by("n");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["text"], json!("plain"));
    assert_eq!(rows[1].get("text"), None);
    assert_eq!(rows[1]["text__json"], json!(r#""cut \ud83d""#));
    assert_eq!(rows[2]["text"], json!("pair \u{1f600}"));
}

#[test]
fn nested_json_text_keeps_characters_not_their_escapes() {
    // Sources (PHP, Python's json.dumps) escape every non-ASCII character; stored as sent,
    // `LIKE '%ü%'` would find nothing. Escapes JSON needs, and lone surrogates, stay.
    let (_d, wh) = warehouse();
    let input = format!(
        "{}\n{}\n{}\n",
        schema_msg("j", json!({}), &[]),
        r#"{"type":"RECORD","stream":"j","record":{"n":1,"addr":{"stra\u00dfe":"M\u00fcller \ud83d\ude00","note":"a\"b\\c\nd\u0001","big":1.50}}}"#,
        r#"{"type":"RECORD","stream":"j","record":{"n":2,"addr":["caf\u00e9 cut \ud83d"]}}"#,
    );
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let rows = read_table(&wh.join("j"), "j").sorted_by("n");
    assert_eq!(
        rows[0]["addr"],
        json!(r#"{"straße":"Müller 😀","note":"a\"b\\c\nd\u0001","big":1.50}"#)
    );
    assert_eq!(rows[1]["addr"], json!(r#"["café cut \ud83d"]"#));
}

#[test]
fn property_names_are_sanitised_and_case_collisions_resolved() {
    let (_d, wh) = warehouse();
    let r = run(
        &wh,
        json!({}),
        &lines(&[
            schema_msg("Web Hooks", json!({}), &[]),
            record("Web Hooks", json!({"Id": 1, "id": 2, "a b": 3})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let t = read_table(&wh.join("Web_Hooks"), "Web Hooks");
    let names = t.column_names();
    for c in ["Id", "id__2", "a_b"] {
        assert!(names.contains(&c.to_string()), "{c} in {names:?}");
    }
    assert_eq!(
        (t.rows[0]["Id"].clone(), t.rows[0]["id__2"].clone()),
        (json!(1), json!(2))
    );
}

#[test]
fn a_float_literal_lands_in_an_integer_column_only_exactly_and_underflow_keeps_its_text() {
    // 9007199254740993.0 is an integer, but its f64 is 9007199254740992.0: coerced through the
    // float it lost its last digit. 1e-400 is not zero, but its f64 is 0.0.
    let (_d, wh) = warehouse();
    let input = format!(
        "{}\n{}\n{}\n{}\n",
        schema_msg(
            "x",
            json!({"k": {"type": "integer"}, "i": {"type": "integer"}, "f": {"type": "number"}}),
            &[]
        ),
        r#"{"type":"RECORD","stream":"x","record":{"k":1,"i":9007199254740993.0,"f":1e-400}}"#,
        r#"{"type":"RECORD","stream":"x","record":{"k":2,"i":2.5,"f":0.0e-400}}"#,
        r#"{"type":"RECORD","stream":"x","record":{"k":3,"i":1.5e1,"f":-1.5}}"#,
    );
    let r = run(&wh, json!({}), &input);
    assert!(r.ok(), "{}", r.stderr());
    let rows = read_table(&wh.join("x"), "x").sorted_by("k");
    assert_eq!(
        rows[0]["i"],
        json!(9007199254740993_i64),
        "exact, from the text"
    );
    assert_eq!(rows[0].get("f"), None, "not 0.0");
    assert_eq!(rows[0]["f__json"], json!("1e-400"), "the number's text");
    assert_eq!(rows[1].get("i"), None);
    assert_eq!(rows[1]["i__float"], json!(2.5));
    assert_eq!(rows[1]["f"], json!(0.0), "a zero is a zero");
    assert_eq!((&rows[2]["i"], &rows[2]["f"]), (&json!(15), &json!(-1.5)));
}
