use serde_json::json;

use super::*;
use crate::payload::top_level;

fn key(c: Value) -> Result<Option<PrimaryKey>, String> {
    PrimaryKey::build(Some(&PrimaryKeyConfig(c)), false)
}

fn parts(c: Value) -> Vec<KeyPart> {
    key(c).unwrap().unwrap().parts
}

/// Each part's value in `body` (headers `headers`): the raw text, or the error.
fn values(c: Value, headers: &str, body: &str) -> Vec<Result<Option<String>, String>> {
    let f = top_level(body).unwrap();
    parts(c)
        .iter()
        .map(|p| {
            p.value(Some(headers), &f)
                .map(|v| v.map(|(t, _)| t.into_owned()))
        })
        .collect()
}

#[test]
fn a_plain_string_is_a_top_level_field_as_before() {
    let p = parts(json!("order_id"));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].from, PartFrom::Field("order_id".into()));
    assert_eq!(p[0].property, "order_id");
    assert!(p[0].is_top_level());
    assert_eq!(p[0].describe(), "\"order_id\"");
    // A string is a field name even when it looks like a pointer (as it always was).
    assert_eq!(parts(json!("/id"))[0].property, "/id");
    for bad in [json!(""), json!("x".repeat(51))] {
        assert!(key(bad).unwrap_err().contains("1 to 50 characters"));
    }
    assert!(PrimaryKey::build(None, false).unwrap().is_none());
}

#[test]
fn pointer_properties_are_named_as_the_sdk_flattens() {
    let p = parts(json!([
        {"pointer": "/data/object/id"},
        {"pointer": "/a~1b/c~0d"},
        {"pointer": "/items/0/sku"},
        {"pointer": "/id"},
        {"header": "X-GitHub-Delivery"}
    ]));
    let names: Vec<&str> = p.iter().map(|p| p.property.as_str()).collect();
    assert_eq!(
        names,
        [
            "data__object__id",
            "a/b__c~d",
            "items__0__sku",
            "id",
            "x_github_delivery"
        ]
    );
    assert_eq!(flatten_key(&["a".into(), "b".into()]), "a__b");
    assert!(!p[0].is_top_level() && p[3].is_top_level() && !p[4].is_top_level());
    assert_eq!(p[4].header(), Some("x-github-delivery"));
    assert_eq!(p[1].describe(), r#"pointer "/a~1b/c~0d""#);
}

#[test]
fn bad_declarations_say_what_is_wrong() {
    for (c, why) in [
        (json!([]), "lists no part"),
        (json!({}), "exactly one of"),
        (json!({"pointer": "/a", "header": "b"}), "exactly one of"),
        (json!({"pointer": "id"}), "start with `/`"),
        (json!({"pointr": "/id"}), "unknown field"),
        (json!({"header": "a b"}), "header name"),
        (json!({"header": "Authorization"}), "credential"),
        (json!({"pointer": "/"}), "empty name"),
        (json!({"pointer": "/a//b"}), "empty name"),
        (json!(5), "a number is not a field name"),
        (json!([["id"]]), "part 1: an array is not"),
        (
            json!(["id", {"pointer": "/id"}]),
            "both name the property \"id\"",
        ),
        (
            json!([{"pointer": "/a/b"}, {"pointer": "/a__b"}]),
            "both name the property \"a__b\"",
        ),
        (json!({"header": "Webhook-Sequence"}), "the tap sets itself"),
        (json!({"pointer": "/_sdc_sequence"}), "the tap sets itself"),
        (json!("__sdc_primary_key"), "the tap sets itself"),
    ] {
        let e = key(c.clone()).unwrap_err();
        assert!(e.contains(why), "{c}: {e}");
    }
    // A hostile pointer: thousands of steps make a name past what the SDK keeps whole.
    let deep = "/a".repeat(2_000);
    assert!(key(json!({ "pointer": deep }))
        .unwrap_err()
        .contains("over 254"));
    // 255 characters joined: the SDK would abbreviate it, so it is refused; 254 is kept whole.
    let path = |last: usize| {
        format!(
            "/{}/{}/{}",
            "a".repeat(100),
            "b".repeat(100),
            "c".repeat(last)
        )
    };
    assert!(key(json!({ "pointer": path(51) }))
        .unwrap_err()
        .contains("255 characters"));
    let kept = &parts(json!({ "pointer": path(50) }))[0].property;
    assert_eq!(kept.len(), 254);
    let many: Vec<Value> = (0..17).map(|i| json!(format!("f{i}"))).collect();
    assert!(key(Value::Array(many)).unwrap_err().contains("over 16"));
    // A packed record's own properties are not key properties; unpacked payloads may use them.
    let packed = |c: Value| PrimaryKey::build(Some(&PrimaryKeyConfig(c)), true);
    assert!(packed(json!({"pointer": "/payload"})).is_err());
    assert!(key(json!({"pointer": "/payload"})).is_ok());
}

#[test]
fn values_are_raw_and_checked_as_keys() {
    let adyen = json!([
        {"pointer": "/notificationItems/0/NotificationRequestItem/eventCode"},
        {"pointer": "/notificationItems/0/NotificationRequestItem/pspReference"}
    ]);
    let body = r#"{"live":"false","notificationItems":[{"NotificationRequestItem":
        {"eventCode":"AUTHORISATION","pspReference":"7914073381342284","success":"true"}}]}"#;
    assert_eq!(
        values(adyen.clone(), "{}", body),
        [
            Ok(Some(r#""AUTHORISATION""#.into())),
            Ok(Some(r#""7914073381342284""#.into()))
        ]
    );
    // Numbers stay numbers, strings strings, as received.
    let c = json!([{"pointer": "/a/n"}, {"pointer": "/a/s"}, {"header": "X-Event"}]);
    let got = values(
        c.clone(),
        r#"{"x-event":"e1"}"#,
        r#"{"a":{"n":42,"s":"42"}}"#,
    );
    assert_eq!(
        got,
        [
            Ok(Some("42".into())),
            Ok(Some(r#""42""#.into())),
            Ok(Some(r#""e1""#.into()))
        ]
    );
    let f = top_level(r#"{"a":{"n":42,"s":"42"}}"#).unwrap();
    let p = parts(c);
    assert_eq!(p[0].value(None, &f).unwrap().unwrap().1, KeyKind::Integer);
    assert_eq!(p[1].value(None, &f).unwrap().unwrap().1, KeyKind::String);
    // Headers not read (a prescan of bodies): the header part is skipped, not missing.
    assert_eq!(p[2].value(None, &f).unwrap(), None);

    let one = |body: &str| values(json!({"pointer": "/a/b"}), "{}", body).remove(0);
    for (body, why) in [
        (r#"{"x":1}"#, "is missing"),
        (r#"{"a":{"b":null}}"#, "is null"),
        (r#"{"a":{"b":{"id":1}}}"#, "is an object"),
        (r#"{"a":{"b":[1]}}"#, "is an array"),
        (r#"{"a":{"b":true}}"#, "boolean"),
        (r#"{"a":{"b":1.5}}"#, "not an integer"),
        (r#"{"a":{"b":123456789012345678901234}}"#, "64-bit"),
        (r#"{"a":"b"}"#, "is missing"),
    ] {
        let e = one(body).unwrap_err();
        assert!(e.contains(why), "{body}: {e}");
    }
    let huge = format!(r#"{{"a":{{"b":"{}"}}}}"#, "x".repeat(1 << 20));
    assert!(one(&huge).unwrap_err().contains("over the 1024"));
    // Missing header.
    let e = values(json!({"header": "X-Event"}), "{}", "{}").remove(0);
    assert!(e.unwrap_err().contains("is missing"));
}

#[test]
fn a_payload_field_of_the_property_s_name_must_agree() {
    let c = json!({"pointer": "/data/id"});
    // The same value (even spelled otherwise): fine.
    for body in [
        r#"{"data":{"id":"x"},"data__id":"x"}"#,
        r#"{"data":{"id":"x"},"data__id":"\u0078"}"#,
    ] {
        assert_eq!(values(c.clone(), "{}", body)[0], Ok(Some(r#""x""#.into())));
    }
    // Another value: an error naming both, never an overwrite.
    for body in [
        r#"{"data":{"id":"x"},"data__id":"y"}"#,
        r#"{"data":{"id":1},"data__id":"1"}"#,
        r#"{"data":{"id":1},"data__id":null}"#,
    ] {
        let e = values(c.clone(), "{}", body).remove(0).unwrap_err();
        assert!(e.contains(r#"property "data__id""#), "{body}: {e}");
        assert!(e.contains("another value"), "{e}");
    }
    let h = values(
        json!({"header": "X-Event"}),
        r#"{"x-event":"e1"}"#,
        r#"{"x_event":"e2"}"#,
    );
    assert!(h[0].as_ref().unwrap_err().contains(r#"field "x_event""#));
}

#[test]
fn same_json_compares_values_and_kinds() {
    assert!(same_json(r#""\u0061""#, r#""a""#));
    assert!(same_json("5", "5"));
    assert!(!same_json("5", r#""5""#));
    assert!(!same_json("1", "1.0"));
    // Different kinds are different values (decided without parsing either).
    assert!(!same_json("[1]", "1"));
    assert!(!same_json(r#"{"id":"1"}"#, r#""1""#));
}
