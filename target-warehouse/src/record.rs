//! Splits a RECORD's raw JSON object into its top-level fields with a streaming serde visitor.
//!
//! Values are kept as borrowed [`RawValue`] slices of the input line: nested objects and arrays
//! are never parsed into a DOM (BRIEF §7); [`crate::columns::Value::from_raw`] classifies each
//! one afterwards, straight into the column builders.
//!
//! [`record_line`] is the fast path for whole RECORD lines: the envelope and the record's fields
//! in ONE pass over the line (the generic [`singer::message`] parser skims the record once and
//! [`split_fields`] would read it again). Anything unusual (another message type, a record that
//! is not an object, a duplicate envelope field, a non-integer version) makes it step aside, and
//! the generic path handles the line with its exact errors.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

pub use singer::fields::{split_fields, Fields};
use singer::fields::{FieldsVisitor, KeySeed};

/// A RECORD line parsed in one pass: the envelope fields the target uses and the record's fields.
#[derive(Debug)]
pub struct RecordLine<'a> {
    pub stream: Cow<'a, str>,
    pub fields: Fields<'a>,
    pub version: Option<i64>,
    pub time_extracted: Option<Cow<'a, str>>,
}

/// Parses `line` as a RECORD message whose record is a JSON object, in one pass; `None` when
/// the line is anything else (or anything odd): the caller then takes the generic path.
pub fn record_line(line: &[u8], capacity: usize) -> Option<RecordLine<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let env = de
        .deserialize_map(EnvelopeVisitor { capacity })
        .ok()
        .flatten()?;
    de.end().ok()?;
    Some(env)
}

struct EnvelopeVisitor {
    capacity: usize,
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Option<RecordLine<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Singer message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut is_record, mut stream, mut fields) = (None, None, None);
        let (mut version, mut time_extracted) = (None, None);
        // A duplicate envelope field is an error of the generic parser: step aside for it.
        fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
            slot.replace(v).is_none().then_some(())
        }
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let ok = match key.as_ref() {
                "type" => {
                    let t: Cow<'de, str> = map.next_value_seed(KeySeed)?;
                    once(&mut is_record, t == "RECORD")
                }
                "stream" => {
                    let s: Option<Cow<'de, str>> = map.next_value_seed(OptStr)?;
                    s.and_then(|s| once(&mut stream, s))
                }
                "record" => {
                    let mut out = Vec::with_capacity(self.capacity);
                    let obj = map.next_value_seed(ObjectSeed { out: &mut out })?;
                    obj.and_then(|()| once(&mut fields, out))
                }
                "version" => {
                    let v: &'de RawValue = map.next_value()?;
                    let v = match v.get() {
                        "null" => Some(None),
                        t => t.parse::<i64>().ok().map(Some),
                    };
                    v.and_then(|v| once(&mut version, v))
                }
                "time_extracted" => {
                    let t: Option<Cow<'de, str>> = map.next_value_seed(OptStr)?;
                    once(&mut time_extracted, t)
                }
                "schema"
                | "key_properties"
                | "bookmark_properties"
                | "value"
                | "encoding"
                | "manifest" => None, // not a field of a RECORD: let the generic parser judge
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    Some(())
                }
            };
            if ok.is_none() {
                // Skim the rest so the map is well-formed, then decline.
                while map.next_key::<de::IgnoredAny>()?.is_some() {
                    map.next_value::<de::IgnoredAny>()?;
                }
                return Ok(None);
            }
        }
        if is_record != Some(true) {
            return Ok(None);
        }
        Ok(Some(RecordLine {
            stream: stream.ok_or_else(|| de::Error::custom("no stream"))?,
            fields: fields.ok_or_else(|| de::Error::custom("no record"))?,
            version: version.flatten(),
            time_extracted: time_extracted.flatten(),
        }))
    }
}

/// A record value: `Some(())` with its fields pushed when it is an object, `None` otherwise.
struct ObjectSeed<'v, 'de> {
    out: &'v mut Fields<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, 'de> {
    type Value = Option<()>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ObjectVisitor { out: self.out })
    }
}

struct ObjectVisitor<'v, 'de> {
    out: &'v mut Fields<'de>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, 'de> {
    type Value = Option<()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        FieldsVisitor { out: self.out }.visit_map(map).map(Some)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A string or null, borrowed unless it has escapes.
struct OptStr;

impl<'de> DeserializeSeed<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(OptStrVisitor)
    }
}

struct OptStrVisitor;

impl<'de> Visitor<'de> for OptStrVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        KeySeed.deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(line: &str) -> Option<RecordLine<'_>> {
        record_line(line.as_bytes(), 4)
    }

    fn texts<'a>(r: &'a RecordLine<'_>) -> Vec<(&'a str, &'a str)> {
        r.fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect()
    }

    #[test]
    fn record_line_reads_envelope_and_fields_in_one_pass() {
        let line = r#"{"type":"RECORD","stream":"s\"q","record":{"id":1,"n":{"a":[1,{"b":"x\ny"}]},"s":"é☃"},"version":7,"time_extracted":"2024-01-01T00:00:00Z","extra":[1,2]}"#;
        let r = fast(line).expect("a record line");
        assert_eq!(r.stream, "s\"q");
        assert_eq!(r.version, Some(7));
        assert_eq!(r.time_extracted.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(
            texts(&r),
            vec![
                ("id", "1"),
                ("n", r#"{"a":[1,{"b":"x\ny"}]}"#),
                ("s", "\"é☃\"")
            ]
        );
        // Nested values stay valid JSON text, exactly as written.
        let nested: serde_json::Value = serde_json::from_str(r.fields[1].1.get()).expect("json");
        assert_eq!(nested["a"][1]["b"], "x\ny");
        // Field order does not matter: record before type and stream.
        let r = fast(r#"{"record":{"a":null},"stream":"t","type":"RECORD","version":null,"time_extracted":null}"#)
            .expect("a record line");
        assert_eq!((r.stream.as_ref(), r.version), ("t", None));
        assert_eq!(r.time_extracted, None);
        assert_eq!(texts(&r), vec![("a", "null")]);
    }

    #[test]
    fn record_line_keys_with_escapes_duplicates_and_huge_integers() {
        let line = r#"{"type":"RECORD","stream":"s","record":{"a\tb":1,"\u00e9":2,"é":3,"dup":1,"dup":2,"big":123456789012345678901234567890,"neg":-18446744073709551616,"f":1e999}}"#;
        let r = fast(line).expect("a record line");
        assert_eq!(
            texts(&r),
            vec![
                ("a\tb", "1"),
                ("é", "2"),
                ("é", "3"),
                ("dup", "1"),
                ("dup", "2"),
                ("big", "123456789012345678901234567890"),
                ("neg", "-18446744073709551616"),
                ("f", "1e999")
            ]
        );
        assert!(
            matches!(r.fields[0].0, Cow::Owned(_)),
            "escaped key is decoded"
        );
        assert!(matches!(r.fields[2].0, Cow::Borrowed(_)));
        // The same fields as the generic path's split_fields over the record text.
        let raw = &line[line.find(r#"{"a\t"#).expect("record")..line.len() - 1];
        let generic = split_fields(raw, 0).expect("object");
        let generic: Vec<(&str, &str)> =
            generic.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(texts(&r), generic);
    }

    #[test]
    fn record_line_steps_aside_for_anything_else() {
        for line in [
            r#"{"type":"STATE","value":{"a":1}}"#,
            r#"{"type":"SCHEMA","stream":"s","schema":{},"key_properties":[]}"#,
            r#"{"type":"RECORD","stream":"s","record":[1,2]}"#,
            r#"{"type":"RECORD","stream":"s","record":"x"}"#,
            r#"{"type":"RECORD","stream":"s","record":null}"#,
            r#"{"type":"RECORD","stream":"s"}"#,
            r#"{"type":"RECORD","record":{"a":1}}"#,
            r#"{"type":"RECORD","stream":null,"record":{"a":1}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1},"version":1.7e12}"#,
            r#"{"type":"RECORD","type":"RECORD","stream":"s","record":{"a":1}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1},"record":{"a":2}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1}} x"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":}}"#,
            r#"{"stream":"s","record":{"a":1}}"#,
            "[1]",
        ] {
            assert!(fast(line).is_none(), "{line}");
        }
        assert!(record_line(
            b"{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"\xff\"}}",
            0
        )
        .is_none());
    }
}
