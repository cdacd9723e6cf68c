//! Singer messages: SCHEMA, RECORD, STATE, ACTIVATE_VERSION and the SDK's BATCH.
//!
//! Parsing borrows from the line: a RECORD's `record` stays a [`RawValue`], so a target decodes it
//! once, straight into its own column builders, instead of building a DOM here first.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One Singer message, borrowing from the line it was parsed from.
#[derive(Debug)]
pub enum Message<'a> {
    Schema(SchemaMessage),
    Record(RecordMessage<'a>),
    State(StateMessage),
    ActivateVersion(ActivateVersionMessage),
    Batch(BatchMessage),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaMessage {
    pub stream: String,
    /// The stream's JSON Schema, as sent.
    pub schema: Value,
    pub key_properties: Vec<String>,
    pub bookmark_properties: Vec<String>,
}

#[derive(Debug)]
pub struct RecordMessage<'a> {
    pub stream: Cow<'a, str>,
    /// The record's JSON text exactly as it stood in the line.
    pub record: &'a RawValue,
    /// The table version for ACTIVATE_VERSION (full-table) streams.
    pub version: Option<i64>,
    /// RFC 3339, with `Z` or `+00:00`; kept as text for the target to parse.
    pub time_extracted: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateMessage {
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivateVersionMessage {
    pub stream: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchEncoding {
    pub format: String,
    #[serde(default)]
    pub compression: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    pub stream: String,
    pub encoding: BatchEncoding,
    /// URLs of the files holding the batch's records.
    pub manifest: Vec<String>,
}

/// Why a line is not a Singer message. The reader adds the line number.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{kind} message has no {field:?}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("{kind} message: {detail}")]
    Invalid { kind: &'static str, detail: String },
}

/// Every field any message type may carry; each type then takes what it needs.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    key_properties: Option<Vec<String>>,
    #[serde(default)]
    bookmark_properties: Option<Vec<String>>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(borrow, default)]
    time_extracted: Option<Cow<'a, str>>,
    #[serde(default)]
    encoding: Option<BatchEncoding>,
    #[serde(default)]
    manifest: Option<Vec<String>>,
}

/// Parses one line (without its newline) into a message.
pub fn parse_message(line: &[u8]) -> Result<Message<'_>, MessageError> {
    let env: Envelope<'_> = serde_json::from_slice(line)?;
    let stream = |kind| {
        env.stream.clone().ok_or(MessageError::MissingField {
            kind,
            field: "stream",
        })
    };
    Ok(match env.kind.as_ref() {
        "RECORD" => {
            let record = env.record.ok_or(MessageError::MissingField {
                kind: "RECORD",
                field: "record",
            })?;
            Message::Record(RecordMessage {
                stream: stream("RECORD")?,
                record,
                version: version_of(&env.version, "RECORD")?,
                time_extracted: env.time_extracted,
            })
        }
        "SCHEMA" => {
            let schema = env.schema.clone().ok_or(MessageError::MissingField {
                kind: "SCHEMA",
                field: "schema",
            })?;
            Message::Schema(SchemaMessage {
                stream: stream("SCHEMA")?.into_owned(),
                schema,
                key_properties: env.key_properties.clone().unwrap_or_default(),
                bookmark_properties: env.bookmark_properties.clone().unwrap_or_default(),
            })
        }
        "STATE" => Message::State(StateMessage {
            value: env.value.clone().ok_or(MessageError::MissingField {
                kind: "STATE",
                field: "value",
            })?,
        }),
        "ACTIVATE_VERSION" => Message::ActivateVersion(ActivateVersionMessage {
            stream: stream("ACTIVATE_VERSION")?.into_owned(),
            version: version_of(&env.version, "ACTIVATE_VERSION")?.ok_or(
                MessageError::MissingField {
                    kind: "ACTIVATE_VERSION",
                    field: "version",
                },
            )?,
        }),
        "BATCH" => Message::Batch(BatchMessage {
            stream: stream("BATCH")?.into_owned(),
            encoding: env.encoding.clone().ok_or(MessageError::MissingField {
                kind: "BATCH",
                field: "encoding",
            })?,
            manifest: env.manifest.clone().ok_or(MessageError::MissingField {
                kind: "BATCH",
                field: "manifest",
            })?,
        }),
        other => return Err(MessageError::UnknownType(other.to_owned())),
    })
}

/// Versions are integers, but some taps send them as floats (`1.7e12`) or null.
fn version_of(v: &Option<Value>, kind: &'static str) -> Result<Option<i64>, MessageError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| MessageError::Invalid {
                kind,
                detail: format!("version {n} is not an integer"),
            }),
        Some(other) => Err(MessageError::Invalid {
            kind,
            detail: format!("version {other} is not an integer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_raw_text_and_time_extracted_spellings() {
        for te in ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00"] {
            let line = format!(
                r#"{{"type":"RECORD","stream":"s\"q","record":{{"a": [1, 2]}},"time_extracted":"{te}"}}"#
            );
            let Message::Record(r) = parse_message(line.as_bytes()).unwrap() else {
                panic!("not a record")
            };
            assert_eq!(r.stream, "s\"q");
            assert_eq!(r.record.get(), r#"{"a": [1, 2]}"#);
            assert_eq!(r.time_extracted.as_deref(), Some(te));
        }
    }

    #[test]
    fn schema_state_activate_batch() {
        let m = parse_message(
            br#"{"type":"SCHEMA","stream":"t","schema":{"type":"object"},"key_properties":["id"]}"#,
        )
        .unwrap();
        assert!(matches!(m, Message::Schema(ref s) if s.key_properties == ["id"]));
        let m = parse_message(br#"{"type":"STATE","value":{"a":1}}"#).unwrap();
        assert!(matches!(m, Message::State(ref s) if s.value["a"] == 1));
        let m =
            parse_message(br#"{"type":"ACTIVATE_VERSION","stream":"t","version":1.7e12}"#).unwrap();
        assert!(matches!(m, Message::ActivateVersion(ref a) if a.version == 1_700_000_000_000));
        let m = parse_message(
            br#"{"type":"BATCH","stream":"t","encoding":{"format":"jsonl","compression":"gzip"},"manifest":["file:///x"]}"#,
        )
        .unwrap();
        assert!(matches!(m, Message::Batch(ref b) if b.manifest.len() == 1));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_message(br#"{"type":"RECORD","stream":"t"}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"RECORD message has no "record""#);
        let e = parse_message(br#"{"type":"NOPE"}"#).unwrap_err();
        assert!(e.to_string().contains("NOPE"));
        let e = parse_message(br#"{"type":"RECORD""#).unwrap_err();
        assert!(e.to_string().starts_with("not valid JSON"));
        let e = parse_message(br#"{"type":"STATE"}"#).unwrap_err();
        assert!(e.to_string().contains("value"));
    }
}
