//! Unit tests of flattening: names, depths, JSON text, shared columns, bounds.
use super::*;

fn flat(body: &str, depth: usize, max_key_length: usize) -> Vec<(String, String)> {
    let f = Flattening {
        max_depth: depth,
        max_key_length,
        max_columns: 10_000,
    };
    let fields = top_level(body).unwrap();
    let mut out = Vec::new();
    f.flatten(&fields, |k| k == "_sdc_sequence", None, &mut out)
        .unwrap();
    out.into_iter()
        .map(|c| (c.name.into_owned(), c.value.into_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn objects_become_columns_to_the_depth_and_the_rest_json_text() {
    let body = r#"{"id":1,"_sdc_sequence":9,"a":{"b":{"c":{"d":1}},"n":null,"l":[1, {"x":2}]},"e":{},"t":[]}"#;
    assert_eq!(
        flat(body, 1, 255),
        pairs(&[
            ("id", "1"),
            ("a__b", r#""{\"c\":{\"d\":1}}""#),
            ("a__n", "null"),
            ("a__l", r#""[1,{\"x\":2}]""#),
            ("t", r#""[]""#),
        ])
    );
    assert_eq!(
        flat(body, 3, 255),
        pairs(&[
            ("id", "1"),
            ("a__b__c__d", "1"),
            ("a__n", "null"),
            ("a__l", r#""[1,{\"x\":2}]""#),
            ("t", r#""[]""#),
        ])
    );
}

#[test]
fn long_names_are_reduced_as_the_sdk_reduces_them() {
    // From the SDK's tests (`test_flattening.py`): a key path of 255 characters and more.
    let parent = "a".repeat(130);
    let child = format!("{}_{}", "b".repeat(60), "c".repeat(70));
    let got = flatten_key(&child, &[&parent], 255);
    // The parent has no capital but its first: reduced to its first three characters.
    assert_eq!(got, format!("aaa__{child}"));
    assert_eq!(flatten_key("foo", &["bar", "baz"], 255), "bar__baz__foo");
    assert_eq!(
        flatten_key("Very_Long_Field_Name", &["Another_Parent"], 10),
        "ap__vlfn"
    );
    assert_eq!(camelize("a__b"), "A_b");
    assert_eq!(camelize("_ab"), "_ab");
    assert_eq!(camelize("ß_ßx"), "SSSSx");
    assert_eq!(camelize("a_\nb"), "A_\nb");
    // A top-level name that long is reduced too.
    let long = "x".repeat(300);
    assert_eq!(flat(&format!(r#"{{"{long}":1}}"#), 1, 255)[0].0, "xxx");
}

#[test]
fn the_walks_names_are_flatten_keys() {
    // Every path of three keys from a set of short, long, underscored and unicode ones, at
    // several lengths: the walk's shortcuts and cached reductions give flatten_key's name.
    let keys = [
        "a",
        "Ünï_cödé",
        "snake_case_key",
        "ALL_CAPS",
        "_lead",
        "x__y",
        "ß",
    ];
    let long = format!("{}_Tail", "Mid_Word_".repeat(6));
    let mut all: Vec<&str> = keys.to_vec();
    all.push(&long);
    for max in [1, 8, 20, 40, 255] {
        for k1 in &all {
            for k2 in &all {
                for k3 in &all {
                    let mut walk = Walk::default();
                    walk.enter(k1);
                    walk.enter(k2);
                    assert_eq!(walk.name(k3, max), flatten_key(k3, &[k1, k2], max));
                    walk.leave();
                    assert_eq!(walk.name(k3, max), flatten_key(k3, &[k1], max));
                }
            }
        }
    }
}

#[test]
fn two_fields_sharing_a_column_are_refused() {
    let f = Flattening {
        max_depth: 2,
        max_key_length: 255,
        max_columns: 10_000,
    };
    let mut columns = Columns::new(["_sdc_sequence", "__sdc_primary_key"]);
    let mut check = |body: &str| {
        let fields = top_level(body).unwrap();
        let mut out = Vec::new();
        f.flatten(&fields, |_| false, Some(&mut columns), &mut out)
    };
    check(r#"{"a":{"b":1,"c__d":2},"c":2,"t":[1]}"#).unwrap();
    check(r#"{"a":{"b":{"x":1},"c__d":2},"c":{"y":1},"t":3}"#).unwrap();
    // The same name from another path: a top-level name, a key holding the separator.
    let shared = |r: Result<(), Refusal>| match r {
        Err(Refusal::Shared(e)) => e,
        other => panic!("{other:?}"),
    };
    let e = shared(check(r#"{"a__b":3}"#));
    assert!(
        e.contains("\"a__b\"") && e.contains("/a/b") && e.contains("/a__b"),
        "{e}"
    );
    let e = shared(check(r#"{"a":{"c":{"d":1}}}"#));
    assert!(e.contains("/a/c/d") && e.contains("/a/c__d"), "{e}");
    let e = shared(check(r#"{"":{"sdc_primary_key":3}}"#));
    assert!(e.contains("the tap's own field"), "{e}");
    // Two long paths reduced to one name.
    let long = "k".repeat(300);
    check(&format!(r#"{{"p":{{"{long}":1}}}}"#)).unwrap();
    let e = shared(check(&format!(r#"{{"p":{{"{long}x":1}}}}"#)));
    assert!(e.contains("\"p__kkk\""), "{e}");
}

#[test]
fn columns_held_by_an_earlier_run_are_recognised_and_defended() {
    let f = Flattening {
        max_depth: 3,
        max_key_length: 255,
        max_columns: 10_000,
    };
    let body = r#"{"a":{"b~/":{"c":1}},"x__y":2}"#;
    let fields = top_level(body).unwrap();
    let mut out = Vec::new();
    let mut first = Columns::default();
    f.flatten(&fields, |_| false, Some(&mut first), &mut out)
        .unwrap();
    let kept = first.fresh();
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The next run starts from what the first kept: the same fields pass, others do not.
    let mut next = Columns::default();
    next.hold(kept);
    f.flatten(&fields, |_| false, Some(&mut next), &mut out)
        .unwrap();
    assert!(next.fresh().is_empty());
    let clash = top_level(r#"{"a__b~/__c":3}"#).unwrap();
    match f.flatten(&clash, |_| false, Some(&mut next), &mut out) {
        Err(Refusal::Shared(e)) => assert!(e.contains("/a/b~0~1/c"), "{e}"),
        other => panic!("{other:?}"),
    }
    let clash = top_level(r#"{"x":{"y":3}}"#).unwrap();
    assert!(f
        .flatten(&clash, |_| false, Some(&mut next), &mut out)
        .is_err());
}

#[test]
fn a_record_flattening_into_too_many_columns_is_refused_early() {
    let f = Flattening {
        max_depth: 128,
        max_key_length: 255,
        max_columns: 1_000,
    };
    let wide = (0..20_000)
        .map(|i| format!("\"k{i}\":{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!(r#"{{"id":1,"o":{{{wide}}}}}"#);
    let fields = top_level(&body).unwrap();
    let mut out = Vec::new();
    let r = f.flatten(&fields, |_| false, None, &mut out);
    assert_eq!(r, Err(Refusal::TooWide(1_000)));
    // Checked against a stream's columns, the refused record leaves none of them held.
    let mut columns = Columns::default();
    let r = f.flatten(&fields, |_| false, Some(&mut columns), &mut out);
    assert_eq!(r, Err(Refusal::TooWide(1_000)));
    let later = top_level(r#"{"o__k1":1}"#).unwrap();
    f.flatten(&later, |_| false, Some(&mut columns), &mut out)
        .unwrap();
    // A deep path of long keys under a wide object: each name costs its length, not its
    // length squared.
    let key = "Long_Key_".repeat(28);
    let narrower = (0..2_000)
        .map(|i| format!("\"k{i}\":{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut deep = format!("{{{narrower}}}");
    for _ in 0..100 {
        deep = format!(r#"{{"{key}":{deep}}}"#);
    }
    let fields = top_level(&deep).unwrap();
    let r = f.flatten(&fields, |_| false, None, &mut out);
    assert_eq!(r, Err(Refusal::TooWide(1_000)));
    assert!(out[0].name.starts_with("lklklklk"), "{}", out[0].name);
}

#[test]
fn the_sdk_refuses_enabling_without_a_depth_and_depth_zero_is_off() {
    let e = Flattening::build(true, None, None, false, 7).unwrap_err();
    assert_eq!(
        e.1,
        "flattening_max_depth is required when flattening is enabled"
    );
    assert_eq!(Flattening::build(true, Some(0), None, false, 7), Ok(None));
    assert_eq!(Flattening::build(false, Some(3), None, true, 7), Ok(None));
    assert!(Flattening::build(true, Some(1), None, true, 7).is_err());
    assert_eq!(
        Flattening::build(true, Some(2), None, false, 7),
        Ok(Some(Flattening {
            max_depth: 2,
            max_key_length: 255,
            max_columns: 7
        }))
    );
}
