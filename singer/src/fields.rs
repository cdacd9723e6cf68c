//! The top-level fields of a JSON object, values kept as raw JSON text: the one splitter both
//! programs use (the target on every record, the tap on every payload). Nested objects and
//! arrays are never parsed into a DOM (BRIEF §7); serde_json does the splitting.
//!
//! Repeated names are all kept, in input order: what a repeat means is the caller's rule (the
//! tap keeps the last, as JavaScript's `JSON.parse` does; the target's columns take the last).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of one object, in input order, borrowed from the text.
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Parses `raw` (a JSON object) into its fields; `capacity` is a hint (the previous row's width).
pub fn split_fields(raw: &str, capacity: usize) -> Result<Fields<'_>, serde_json::Error> {
    let mut out = Vec::with_capacity(capacity);
    for_each_field(raw, |key, value| out.push((key, value)))?;
    Ok(out)
}

/// Calls `field` with each top-level field of `raw` (a JSON object), in order: for a caller
/// keeping its own kind of list (the tap hashes each name as it goes).
pub fn for_each_field<'de>(
    raw: &'de str,
    field: impl FnMut(Cow<'de, str>, &'de RawValue),
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(Each(field))?;
    de.end()
}

/// Pushes an object's fields onto `out` (for a caller splitting an object inside a larger
/// parse, as the target's one-pass RECORD envelope does).
pub struct FieldsVisitor<'v, 'de> {
    pub out: &'v mut Fields<'de>,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Each(|key, value| self.out.push((key, value))).visit_map(map)
    }
}

/// The one loop over an object's fields.
struct Each<F>(F);

impl<'de, F: FnMut(Cow<'de, str>, &'de RawValue)> Visitor<'de> for Each<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            (self.0)(key, value);
        }
        Ok(())
    }
}

/// Borrows a key from the input unless it contains escapes (serde's own `Cow` always copies).
pub struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_top_level_fields_keeping_nested_text() {
        let raw = r#"{"id": 1, "a\tb": {"x": [1, {"y": null}]}, "s": "t"}"#;
        let fields = split_fields(raw, 0).expect("object");
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(
            got,
            vec![
                ("id", "1"),
                ("a\tb", r#"{"x": [1, {"y": null}]}"#),
                ("s", "\"t\"")
            ]
        );
        assert!(matches!(fields[0].0, Cow::Borrowed(_)));
        assert!(matches!(fields[1].0, Cow::Owned(_)));
    }

    #[test]
    fn keeps_repeated_names_in_order() {
        let fields = split_fields(r#"{"a": 1, "b": 2, "a": 3}"#, 0).expect("object");
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(got, vec![("a", "1"), ("b", "2"), ("a", "3")]);
    }

    #[test]
    fn refuses_non_objects() {
        assert!(split_fields("[1, 2]", 0).is_err());
        assert!(split_fields("3", 0).is_err());
        assert!(split_fields(r#"{"a": }"#, 0).is_err());
        assert!(split_fields(r#"{"a": 1} x"#, 0).is_err());
    }
}
