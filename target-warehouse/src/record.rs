//! Splits a RECORD's raw JSON object into its top-level fields with a streaming serde visitor.
//!
//! Values are kept as borrowed [`RawValue`] slices of the input line: nested objects and arrays
//! are never parsed into a DOM (BRIEF §7); [`crate::columns::Value::from_raw`] classifies each
//! one afterwards, straight into the column builders.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of one record, in input order, borrowed from the line.
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Parses `raw` (a JSON object) into its fields; `capacity` is a hint (the previous row's width).
pub fn split_fields(raw: &str, capacity: usize) -> Result<Fields<'_>, serde_json::Error> {
    let mut out = Vec::with_capacity(capacity);
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(FieldsVisitor { out: &mut out })?;
    de.end()?;
    Ok(out)
}

struct FieldsVisitor<'v, 'de> {
    out: &'v mut Fields<'de>,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            self.out.push((key, value));
        }
        Ok(())
    }
}

/// Borrows a key from the input unless it contains escapes (serde's own `Cow` always copies).
struct KeySeed;

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
    }

    #[test]
    fn refuses_non_objects() {
        assert!(split_fields("[1, 2]", 0).is_err());
        assert!(split_fields("3", 0).is_err());
        assert!(split_fields(r#"{"a": }"#, 0).is_err());
    }
}
