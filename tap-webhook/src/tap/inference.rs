//! Streaming schema inference for the SCHEMA messages the tap emits.
//!
//! Each stream keeps one small set of JSON types per top-level field, never the messages: a run
//! over millions of messages holds as much as the number of distinct fields. When a message
//! brings a field or a type not seen before, the stream's schema changes and is sent again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// JSON types seen for one field, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeSet(u8);

impl TypeSet {
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 2;
    pub const INTEGER: u8 = 4;
    pub const NUMBER: u8 = 8;
    /// A string in RFC 3339 date-time form.
    pub const DATE_TIME: u8 = 16;
    /// Any other string.
    pub const STRING: u8 = 32;
    pub const OBJECT: u8 = 64;
    pub const ARRAY: u8 = 128;

    pub fn has(self, bits: u8) -> bool {
        self.0 & bits != 0
    }

    /// The JSON Schema for a field with these types. Every payload field is nullable: a later
    /// message may lack it.
    pub fn to_schema(self) -> Value {
        let mut types = vec!["null"];
        if self.has(Self::BOOLEAN) {
            types.push("boolean");
        }
        if self.has(Self::NUMBER) {
            types.push("number");
        } else if self.has(Self::INTEGER) {
            types.push("integer");
        }
        if self.has(Self::STRING | Self::DATE_TIME) {
            types.push("string");
        }
        if self.has(Self::OBJECT) {
            types.push("object");
        }
        if self.has(Self::ARRAY) {
            types.push("array");
        }
        let mut schema = json!({ "type": types });
        if self.has(Self::DATE_TIME) && !self.has(Self::STRING) {
            schema["format"] = json!("date-time");
        }
        if self.has(Self::ARRAY) {
            schema["items"] = json!({});
        }
        schema
    }
}

/// Classifies one raw JSON value by its first bytes, parsing only strings (for date-time).
pub fn classify(raw: &RawValue) -> u8 {
    classify_text(raw.get())
}

/// The bits [`classify_text`] may return for a value starting with this byte: a field whose
/// set already holds all of them cannot change, so its value need not be classified.
fn possible(first: Option<&u8>) -> u8 {
    match first {
        Some(b'n') => TypeSet::NULL,
        Some(b't' | b'f') => TypeSet::BOOLEAN,
        Some(b'{') => TypeSet::OBJECT,
        Some(b'[') => TypeSet::ARRAY,
        Some(b'"') => TypeSet::DATE_TIME | TypeSet::STRING,
        _ => TypeSet::INTEGER | TypeSet::NUMBER,
    }
}

/// [`classify`] over a raw JSON value's text.
pub fn classify_text(text: &str) -> u8 {
    match text.as_bytes().first() {
        Some(b'n') => TypeSet::NULL,
        Some(b't' | b'f') => TypeSet::BOOLEAN,
        Some(b'{') => TypeSet::OBJECT,
        Some(b'[') => TypeSet::ARRAY,
        Some(b'"') => {
            // Date-times have no escapes; anything with a backslash is an ordinary string.
            let inner = &text[1..text.len().saturating_sub(1)];
            if !inner.contains('\\') && is_rfc3339(inner) {
                TypeSet::DATE_TIME
            } else {
                TypeSet::STRING
            }
        }
        _ if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => TypeSet::NUMBER,
        _ => TypeSet::INTEGER,
    }
}

/// RFC 3339 date-time (`2024-05-01T12:00:00Z`, fractions and offsets allowed).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// FNV-1a: field names are short and chosen by webhook senders, not by an attacker who gains
/// anything from collisions (a collision costs a comparison, nothing more), and SipHash's setup
/// dominates on names of ten bytes.
#[derive(Default)]
pub struct FieldHasher(u64);

impl Hasher for FieldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub type FieldMap<V> = HashMap<String, V, BuildHasherDefault<FieldHasher>>;

/// Fields and their types for one stream, plus the fixed fields the tap adds.
#[derive(Debug, Default)]
pub struct StreamSchema {
    fixed: Map<String, Value>,
    fields: FieldMap<TypeSet>,
}

impl StreamSchema {
    pub fn new(fixed: Map<String, Value>) -> StreamSchema {
        StreamSchema {
            fixed,
            fields: FieldMap::default(),
        }
    }

    /// Records a field's value type; returns true when the schema changed.
    pub fn observe(&mut self, field: &str, bits: u8) -> bool {
        match self.fields.get_mut(field) {
            Some(set) if set.0 & bits == bits => false,
            Some(set) => {
                set.0 |= bits;
                true
            }
            // Fixed fields never enter `fields`, so they are looked up only on a miss.
            None if self.fixed.contains_key(field) => false,
            None => {
                self.fields.insert(field.to_owned(), TypeSet(bits));
                true
            }
        }
    }

    /// [`observe`](Self::observe) of a raw JSON value's text, classifying it only when its type
    /// could still change the field's set (date-time parsing is the costly part).
    pub fn observe_text(&mut self, field: &str, text: &str) -> bool {
        match self.fields.get_mut(field) {
            Some(set) => {
                let could_be = possible(text.as_bytes().first());
                if set.0 & could_be == could_be {
                    return false;
                }
                let bits = classify_text(text);
                if set.0 & bits == bits {
                    false
                } else {
                    set.0 |= bits;
                    true
                }
            }
            None if self.fixed.contains_key(field) => false,
            None => {
                self.fields
                    .insert(field.to_owned(), TypeSet(classify_text(text)));
                true
            }
        }
    }

    pub fn to_json_schema(&self) -> Value {
        let mut props = self.fixed.clone();
        let mut names: Vec<(&String, &TypeSet)> = self.fields.iter().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, set) in names {
            props.insert(name.clone(), set.to_schema());
        }
        json!({"type": "object", "properties": props, "additionalProperties": true})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn classifies_values() {
        for (text, bits) in [
            ("null", TypeSet::NULL),
            ("true", TypeSet::BOOLEAN),
            ("12", TypeSet::INTEGER),
            ("123456789012345678901234567890", TypeSet::INTEGER),
            ("-1.5e3", TypeSet::NUMBER),
            ("\"2024-05-01T12:00:00Z\"", TypeSet::DATE_TIME),
            ("\"2024-05-01T12:00:00.123+02:00\"", TypeSet::DATE_TIME),
            ("\"2024-05-01\"", TypeSet::STRING),
            ("\"2024-13-01T12:00:00Z\"", TypeSet::STRING),
            ("\"hello\"", TypeSet::STRING),
            ("{\"a\":1}", TypeSet::OBJECT),
            ("[1]", TypeSet::ARRAY),
        ] {
            assert_eq!(classify(&raw(text)), bits, "{text}");
        }
    }

    #[test]
    fn schema_grows_and_reports_change() {
        let mut s = StreamSchema::new(
            json!({"_sdc_sequence": {"type": "integer"}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(s.observe("a", TypeSet::INTEGER));
        assert!(!s.observe("a", TypeSet::INTEGER));
        assert!(!s.observe("_sdc_sequence", TypeSet::STRING));
        assert!(s.observe("a", TypeSet::NUMBER));
        assert!(s.observe("t", TypeSet::DATE_TIME));
        let v = s.to_json_schema();
        assert_eq!(v["properties"]["a"], json!({"type": ["null", "number"]}));
        assert_eq!(
            v["properties"]["t"],
            json!({"type": ["null", "string"], "format": "date-time"})
        );
        assert!(s.observe("t", TypeSet::STRING));
        assert_eq!(
            s.to_json_schema()["properties"]["t"],
            json!({"type": ["null", "string"]})
        );
        assert_eq!(v["properties"]["_sdc_sequence"], json!({"type": "integer"}));
    }
}
