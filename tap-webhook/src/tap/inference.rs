//! Streaming schema inference for the SCHEMA messages the tap emits.
//!
//! Each stream keeps one small set of JSON types per top-level field, never the messages: a run
//! over millions of messages holds as much as the number of distinct fields. When a message
//! brings a field or a type not seen before, the stream's schema changes and is sent again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::payload::field_hash;

/// A set of JSON types, as bits.
pub type Bits = u16;

/// JSON types seen for one field, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeSet(Bits);

impl TypeSet {
    pub const NULL: Bits = 1;
    pub const BOOLEAN: Bits = 2;
    /// An integer that fits a signed 64-bit integer.
    pub const INTEGER: Bits = 4;
    pub const NUMBER: Bits = 8;
    /// A string in RFC 3339 date-time form.
    pub const DATE_TIME: Bits = 16;
    /// Any other string.
    pub const STRING: Bits = 32;
    pub const OBJECT: Bits = 64;
    pub const ARRAY: Bits = 128;
    /// An integer beyond 64 bits.
    pub const BIG_INTEGER: Bits = 256;

    pub fn has(self, bits: Bits) -> bool {
        self.0 & bits != 0
    }

    /// The JSON Schema for a field with these types. Every payload field is nullable: a later
    /// message may lack it.
    pub fn to_schema(self) -> Value {
        let mut types = vec!["null"];
        if self.has(Self::BOOLEAN) {
            types.push("boolean");
        }
        if self.has(Self::NUMBER | Self::BIG_INTEGER) {
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
        if self.has(Self::BIG_INTEGER) && !self.has(Self::NUMBER) {
            // Integers only, some beyond 64 bits: SDK targets make `integer` BIGINT whatever
            // its `minimum`/`maximum` (target-postgres 0.7), which refuses them, and `number`
            // NUMERIC, which keeps them exactly; `multipleOf: 1` still says integers (our
            // target: Decimal128(38, 0)).
            schema["multipleOf"] = json!(1);
        }
        schema
    }
}

/// Classifies one raw JSON value by its first bytes, parsing only strings (for date-time).
pub fn classify(raw: &RawValue) -> Bits {
    classify_text(raw.get())
}

/// The bits [`classify_text`] may return for a value starting with this byte: a field whose
/// set already holds all of them cannot change, so its value need not be classified.
fn possible(first: Option<&u8>) -> Bits {
    match first {
        Some(b'n') => TypeSet::NULL,
        Some(b't' | b'f') => TypeSet::BOOLEAN,
        Some(b'{') => TypeSet::OBJECT,
        Some(b'[') => TypeSet::ARRAY,
        Some(b'"') => TypeSet::DATE_TIME | TypeSet::STRING,
        _ => TypeSet::INTEGER | TypeSet::NUMBER | TypeSet::BIG_INTEGER,
    }
}

/// [`classify`] over a raw JSON value's text.
pub fn classify_text(text: &str) -> Bits {
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
        // 18 characters (`-` and 17 digits, or 18 digits) always fit: parse only longer ones.
        _ if text.len() <= 18 || text.parse::<i64>().is_ok() => TypeSet::INTEGER,
        _ => TypeSet::BIG_INTEGER,
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

/// [`field_hash`] as a `Hasher`, for maps keyed by field name.
#[derive(Default)]
pub struct FieldHasher(u64);

impl Hasher for FieldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let h = match std::str::from_utf8(bytes) {
            Ok(s) => field_hash(s),
            Err(_) => bytes
                .iter()
                .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b)),
        };
        self.0 = self.0.rotate_left(7) ^ h;
    }
}

pub type FieldMap<V> = HashMap<String, V, BuildHasherDefault<FieldHasher>>;

/// Field name to type set, open addressing over precomputed [`field_hash`]es: a record's names
/// are hashed once, when its top level is split, and looked up here without hashing again.
#[derive(Debug, Default)]
struct FieldTable {
    /// Index + 1 into `entries`; 0 is an empty slot. Length a power of two, at most half full.
    slots: Vec<u32>,
    entries: Vec<(u64, String, TypeSet)>,
}

impl FieldTable {
    fn find(&self, hash: u64, name: &str) -> Result<usize, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            match self.slots[i] {
                0 => return Err(i),
                e => {
                    let (h, n, _) = &self.entries[e as usize - 1];
                    if *h == hash && n == name {
                        return Ok(e as usize - 1);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, hash: u64, name: &str, set: TypeSet) {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(64);
            self.slots = vec![0; size];
            for (e, (h, _, _)) in self.entries.iter().enumerate() {
                let mut i = (*h as usize) & (size - 1);
                while self.slots[i] != 0 {
                    i = (i + 1) & (size - 1);
                }
                self.slots[i] = u32::try_from(e + 1).unwrap_or(u32::MAX);
            }
        }
        if let Err(slot) = self.find(hash, name) {
            self.entries.push((hash, name.to_owned(), set));
            self.slots[slot] = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        }
    }
}

/// Fields and their types for one stream, plus the fixed fields the tap adds.
#[derive(Debug, Default)]
pub struct StreamSchema {
    fixed: Map<String, Value>,
    fields: FieldTable,
}

impl StreamSchema {
    pub fn new(fixed: Map<String, Value>) -> StreamSchema {
        StreamSchema {
            fixed,
            fields: FieldTable::default(),
        }
    }

    /// Records a field's value type; returns true when the schema changed.
    pub fn observe(&mut self, field: &str, bits: Bits) -> bool {
        self.merge(field_hash(field), field, bits, || bits)
    }

    /// [`observe`](Self::observe) of a raw JSON value's text.
    pub fn observe_text(&mut self, field: &str, text: &str) -> bool {
        self.observe_hashed(field_hash(field), field, text)
    }

    /// [`observe_text`](Self::observe_text) with the name's [`field_hash`] at hand; the value is
    /// classified only when its type could still change the field's set (date-time parsing is
    /// the costly part).
    pub fn observe_hashed(&mut self, hash: u64, field: &str, text: &str) -> bool {
        let could_be = possible(text.as_bytes().first());
        self.merge(hash, field, could_be, || classify_text(text))
    }

    /// Adds `bits()` to the field's set unless every bit it could give (`could_be`) is already
    /// there; returns true when the set changed. Fixed fields are looked up only on a miss.
    fn merge(
        &mut self,
        hash: u64,
        field: &str,
        could_be: Bits,
        bits: impl FnOnce() -> Bits,
    ) -> bool {
        match self.fields.find(hash, field) {
            Ok(e) => {
                let set = &mut self.fields.entries[e].2;
                if set.0 & could_be == could_be {
                    return false;
                }
                let bits = bits();
                let changed = set.0 & bits != bits;
                set.0 |= bits;
                changed
            }
            Err(_) if self.fixed.contains_key(field) => false,
            Err(_) => {
                self.fields.insert(hash, field, TypeSet(bits()));
                true
            }
        }
    }

    /// Adds every field and type `other` has seen (the schema of another range of messages).
    pub fn absorb(&mut self, other: StreamSchema) {
        for (hash, name, set) in other.fields.entries {
            self.merge(hash, &name, set.0, || set.0);
        }
    }

    pub fn to_json_schema(&self) -> Value {
        let mut props = self.fixed.clone();
        let mut names: Vec<(&String, &TypeSet)> =
            self.fields.entries.iter().map(|(_, n, s)| (n, s)).collect();
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
            ("123456789012345678", TypeSet::INTEGER),
            ("-9223372036854775808", TypeSet::INTEGER),
            ("9223372036854775807", TypeSet::INTEGER),
            ("9223372036854775808", TypeSet::BIG_INTEGER),
            ("123456789012345678901234567890", TypeSet::BIG_INTEGER),
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
    fn many_fields_survive_the_table_growing() {
        let mut s = StreamSchema::new(Map::new());
        for i in 0..1000 {
            assert!(s.observe_text(&format!("f{i}"), "1"));
        }
        for i in 0..1000 {
            assert!(!s.observe_text(&format!("f{i}"), "2"));
            assert!(s.observe_text(&format!("f{i}"), "\"x\""));
        }
        let v = s.to_json_schema();
        assert_eq!(v["properties"].as_object().unwrap().len(), 1000);
        assert_eq!(
            v["properties"]["f999"],
            json!({"type": ["null", "integer", "string"]})
        );
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
        // Integers beyond 64 bits: a number SQL targets keep exactly, still integers.
        assert!(s.observe("big", TypeSet::INTEGER));
        assert!(s.observe_text("big", "123456789012345678901234567890"));
        assert_eq!(
            s.to_json_schema()["properties"]["big"],
            json!({"type": ["null", "number"], "multipleOf": 1})
        );
        assert!(s.observe("big", TypeSet::NUMBER));
        assert_eq!(
            s.to_json_schema()["properties"]["big"],
            json!({"type": ["null", "number"]})
        );
        assert!(s.observe("t", TypeSet::STRING));
        assert_eq!(
            s.to_json_schema()["properties"]["t"],
            json!({"type": ["null", "string"]})
        );
        assert_eq!(v["properties"]["_sdc_sequence"], json!({"type": "integer"}));
    }
}
