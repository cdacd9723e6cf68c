//! Turns a stored message into a record's JSON text, spliced from the stored bytes.
//!
//! Only the payload's top level is parsed (values stay raw JSON text), which is all the unpacked
//! shape needs: its fields become the record's fields beside the `_sdc_` ones. Identity fields
//! come from the stored message alone, so a message emitted twice yields the same record.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::inference::field_hash;
use crate::spool::MessageRef;

pub const SDC_SEQUENCE: &str = "_sdc_sequence";
pub const SDC_RECEIVED_AT: &str = "_sdc_received_at";
pub const SDC_PRIMARY_KEY: &str = "__sdc_primary_key";

/// Namespace for generated primary keys (UUIDv5): fixed forever, since keys must be stable.
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1c_4c8e_0f1d_4e0a_9b7e_5d3c_2a10_f00d);

/// One top-level field of a payload: its (unescaped) name and its value's raw JSON text.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: &'a str,
    /// [`field_hash`] of the key.
    pub hash: u64,
}

/// The hashes of the field names pushed so far, as a 1,024-bit filter: most names miss it, and
/// only a hit looks for an earlier field of the same name. (A 64-bit filter filled up after a few
/// dozen names, and every later field of a wide payload then scanned the fields before it.)
struct Seen([u64; 16]);

impl Seen {
    fn new() -> Seen {
        Seen([0; 16])
    }

    /// Marks `hash`; whether it was marked already.
    fn insert(&mut self, hash: u64) -> bool {
        let bit = hash >> 54;
        let (word, mask) = ((bit >> 6) as usize, 1u64 << (bit & 63));
        let hit = self.0[word] & mask != 0;
        self.0[word] |= mask;
        hit
    }
}

/// Appends a field; an earlier field of the same name is dropped (the last occurrence wins).
fn push_field<'a>(out: &mut Vec<Field<'a>>, seen: &mut Seen, key: Cow<'a, str>, value: &'a str) {
    let hash = field_hash(&key);
    if seen.insert(hash) {
        if let Some(i) = out.iter().position(|f| f.hash == hash && f.key == key) {
            out.remove(i);
        }
    }
    out.push(Field { key, value, hash });
}

/// A field name borrowed from the payload when it has no escapes (serde's own `Cow<str>`
/// always allocates).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The payload's top-level fields, in order, values raw. Later duplicates of a key win, as in
/// JavaScript's `JSON.parse`, and earlier ones are dropped.
pub fn top_level(body: &str) -> Result<Vec<Field<'_>>, serde_json::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<Field<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<Field<'de>> = Vec::with_capacity(32);
            let mut seen = Seen::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                let value: &RawValue = map.next_value()?;
                push_field(&mut out, &mut seen, key, value.get());
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let fields = (&mut de).deserialize_map(Fields)?;
    de.end()?;
    Ok(fields)
}

/// [`top_level`] of a body already known to be a valid JSON object (it went through
/// [`top_level`] earlier in the run): finds the same fields without validating the values again,
/// skipping strings with `memchr`. Returns `None` where it would have to unescape a name, or on
/// anything that does not look like the valid object it expects; callers then use [`top_level`].
pub fn top_level_trusted(body: &str) -> Option<Vec<Field<'_>>> {
    let b = body.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out: Vec<Field<'_>> = Vec::with_capacity(32);
    let mut seen = Seen::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = string_end(b, i)?;
            let key = body.get(i + 1..key_end - 1)?;
            if key.contains('\\') {
                return None;
            }
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = skip_ws(b, i + 1);
            let end = value_end(b, start)?;
            push_field(
                &mut out,
                &mut seen,
                Cow::Borrowed(key),
                body.get(start..end)?,
            );
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(out)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// `b[start]` is an opening quote: the index just past the closing one.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The index just past the value starting at `b[start]`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match b.get(start)? {
        b'"' => string_end(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match b.get(i)? {
                    b'"' => i = string_end(b, i)?,
                    b'{' | b'[' => {
                        depth += 1;
                        i += 1;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => i += 1,
                }
            }
        }
        _ => {
            let n = b[start..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            Some(start + n)
        }
    }
}

/// The generated primary key: from the provider's delivery id when there is one (so a retried
/// delivery stored twice gets one key), else the message's own id.
pub fn generated_key<'a>(m: &MessageRef<'a>) -> Cow<'a, str> {
    match m.delivery_id {
        Some(d) => {
            let name = format!("{}\n{}\n{}", m.source, d, m.part);
            Cow::Owned(uuid::Uuid::new_v5(&KEY_NAMESPACE, name.as_bytes()).to_string())
        }
        None => Cow::Borrowed(m.id),
    }
}

/// True when serde_json writes `s` as a JSON string without any escape.
fn needs_no_escape(s: &str) -> bool {
    // No early exit: the loop vectorises, and names and values are short or clean.
    !s.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Appends `s` as a JSON string, exactly as serde_json writes it.
pub fn push_json_str(out: &mut String, s: &str) {
    if needs_no_escape(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Writing a &str as JSON cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Appends `"key":` to a JSON object being built.
pub fn push_key(out: &mut String, key: &str) {
    if out.as_bytes().last() != Some(&b'{') {
        out.push(',');
    }
    push_json_str(out, key);
    out.push(':');
}

pub fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_str(out, value);
}

/// Starts a record with the `_sdc_` fields every shape carries; `received_at` is the message's
/// receipt time as [`crate::spool::format_us`] writes it.
pub fn start_record(
    out: &mut String,
    m: &MessageRef<'_>,
    received_at: &str,
    with_generated_key: bool,
) {
    out.clear();
    out.push('{');
    push_key(out, SDC_SEQUENCE);
    let _ = write!(out, "{}", m.seq);
    push_str_field(out, SDC_RECEIVED_AT, received_at);
    if with_generated_key {
        push_str_field(out, SDC_PRIMARY_KEY, &generated_key(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::StoredMessage;

    fn msg(delivery: Option<&str>, part: u32, id: &str) -> StoredMessage {
        StoredMessage {
            seq: 1,
            id: id.into(),
            source: "data".into(),
            received_at_us: 0,
            delivery_id: delivery.map(str::to_owned),
            part,
            headers: "{}".into(),
            query: "{}".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn top_level_keeps_raw_values_and_last_duplicate() {
        let f = top_level(r#"{"a": {"x": [1, 2]}, "b\n": 1, "a": 2}"#).unwrap();
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.key.as_ref(), f.value)).collect();
        assert_eq!(got, vec![("b\n", "1"), ("a", "2")]);
        assert!(top_level("[1]").is_err());
        assert!(top_level("{} x").is_err());
    }

    #[test]
    fn a_wide_payload_keeps_each_name_once_at_its_last_place() {
        // 300 names, every seventh repeated after all the others: the repeats must replace
        // the earlier occurrences however full the filter of names seen is.
        let mut parts: Vec<String> = (0..300).map(|i| format!("\"f{i}\":{i}")).collect();
        parts.extend((0..300).step_by(7).map(|i| format!("\"f{i}\":\"again\"")));
        let body = format!("{{{}}}", parts.join(","));
        let mut want: Vec<(String, String)> = (0..300)
            .filter(|i| i % 7 != 0)
            .map(|i| (format!("f{i}"), i.to_string()))
            .collect();
        want.extend(
            (0..300)
                .step_by(7)
                .map(|i| (format!("f{i}"), "\"again\"".to_string())),
        );
        for split in [top_level(&body).unwrap(), top_level_trusted(&body).unwrap()] {
            let got: Vec<(String, String)> = split
                .into_iter()
                .map(|f| (f.key.into_owned(), f.value.to_owned()))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn trusted_split_finds_what_the_parser_finds() {
        for body in [
            "{}",
            " { } ",
            r#"{"a":1}"#,
            "\t{\n\"a\" : -1.5e3 ,\r\n \"b\":true,\"c\":null}\n",
            r#"{"s":"x\"}{][\\","n":{"a":["]","}",{"b":"\\\""}]},"e":[],"o":{}}"#,
            r#"{"a": {"x": [1, 2]}, "b": 1, "a": 2, "é": "ü"}"#,
            r#"{"last":12345678901234567890123}"#,
        ] {
            let slow: Vec<(String, String)> = top_level(body)
                .unwrap()
                .into_iter()
                .map(|f| (f.key.into_owned(), f.value.to_owned()))
                .collect();
            let fast: Vec<(String, String)> = top_level_trusted(body)
                .unwrap()
                .into_iter()
                .map(|f| (f.key.into_owned(), f.value.to_owned()))
                .collect();
            assert_eq!(slow, fast, "{body}");
        }
        // Names with escapes are left to the parser.
        assert!(top_level_trusted(r#"{"b\n": 1}"#).is_none());
        assert!(top_level_trusted("[1]").is_none());
        assert!(top_level_trusted("{} x").is_none());
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in ["plain", "é ü", "q\"b\\", "c\u{1}\n\u{7f}", ""] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn generated_keys_follow_the_delivery_id() {
        let a = generated_key(&msg(Some("d-1"), 0, "m1").view()).into_owned();
        assert_eq!(a, generated_key(&msg(Some("d-1"), 0, "m2").view()));
        assert_ne!(a, generated_key(&msg(Some("d-1"), 1, "m1").view()));
        assert_ne!(a, generated_key(&msg(Some("d-2"), 0, "m1").view()));
        assert_eq!(generated_key(&msg(None, 0, "m1").view()), "m1");
    }
}
