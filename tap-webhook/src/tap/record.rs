//! Turns a stored message into a record's JSON text, spliced from the stored bytes.
//!
//! Only the payload's top level is parsed (values stay raw JSON text), which is all the unpacked
//! shape needs: its fields become the record's fields beside the `_sdc_` ones. Identity fields
//! come from the stored message alone, so a message emitted twice yields the same record.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::spool::{format_us, StoredMessage};

pub const SDC_SEQUENCE: &str = "_sdc_sequence";
pub const SDC_RECEIVED_AT: &str = "_sdc_received_at";
pub const SDC_PRIMARY_KEY: &str = "__sdc_primary_key";

/// Namespace for generated primary keys (UUIDv5): fixed forever, since keys must be stable.
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1c_4c8e_0f1d_4e0a_9b7e_5d3c_2a10_f00d);

/// The payload's top-level fields, in order, values raw. Later duplicates of a key win, as in
/// JavaScript's `JSON.parse`, and earlier ones are dropped.
pub fn top_level(body: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let value: &RawValue = map.next_value()?;
                if let Some(i) = out.iter().position(|(k, _)| *k == key) {
                    out.remove(i);
                }
                out.push((key, value));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let fields = (&mut de).deserialize_map(Fields)?;
    de.end()?;
    Ok(fields)
}

/// The generated primary key: from the provider's delivery id when there is one (so a retried
/// delivery stored twice gets one key), else the message's own id.
pub fn generated_key(m: &StoredMessage) -> String {
    match &m.delivery_id {
        Some(d) => {
            let name = format!("{}\n{}\n{}", m.source, d, m.part);
            uuid::Uuid::new_v5(&KEY_NAMESPACE, name.as_bytes()).to_string()
        }
        None => m.id.clone(),
    }
}

/// Appends `"key":` to a JSON object being built.
pub fn push_key(out: &mut String, key: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    // Writing a &str as JSON cannot fail.
    out.push_str(&serde_json::to_string(key).unwrap_or_default());
    out.push(':');
}

pub fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// Starts a record with the `_sdc_` fields every shape carries.
pub fn start_record(out: &mut String, m: &StoredMessage, with_generated_key: bool) {
    out.clear();
    out.push('{');
    push_key(out, SDC_SEQUENCE);
    out.push_str(&m.seq.to_string());
    push_str_field(out, SDC_RECEIVED_AT, &format_us(m.received_at_us));
    if with_generated_key {
        push_str_field(out, SDC_PRIMARY_KEY, &generated_key(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let got: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(got, vec![("b\n", "1"), ("a", "2")]);
        assert!(top_level("[1]").is_err());
        assert!(top_level("{} x").is_err());
    }

    #[test]
    fn generated_keys_follow_the_delivery_id() {
        let a = generated_key(&msg(Some("d-1"), 0, "m1"));
        assert_eq!(a, generated_key(&msg(Some("d-1"), 0, "m2")));
        assert_ne!(a, generated_key(&msg(Some("d-1"), 1, "m1")));
        assert_ne!(a, generated_key(&msg(Some("d-2"), 0, "m1")));
        assert_eq!(generated_key(&msg(None, 0, "m1")), "m1");
    }
}
