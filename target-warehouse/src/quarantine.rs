//! `on_invalid_record: quarantine`: a record the target cannot store (not a JSON object, a key
//! property missing, or null where rows merge by key) is written to `<stream>__rejected` with
//! the reason, the input line number and the raw Singer line, instead of stopping the
//! load (`fail`, the default, stops it with the error).
//!
//! A quarantined row keeps the record's `_sdc_sequence` and `_sdc_producer` when it had them,
//! so a replayed run skips it as it skips any committed record. Its `message_id` is never null
//! (`seq:<n>` or `line:<n>`): tap-webhook's own `<stream>__rejected` stream is keyed on it and
//! the two may share the table.

use serde_json::{json, Value};
use singer::message::SchemaMessage;

use singer::sdc::{PRODUCER, SEQUENCE};

/// The quarantine stream of `stream`.
pub fn stream_name(stream: &str) -> String {
    format!("{stream}__rejected")
}

/// The quarantine stream's SCHEMA (append-only: no key properties).
pub fn schema_message(quarantine: &str) -> SchemaMessage {
    SchemaMessage {
        stream: quarantine.to_owned(),
        schema: json!({"type": "object", "properties": {
            "message_id": {"type": "string"},
            "stream": {"type": "string"},
            "reason": {"type": "string"},
            "line": {"type": "integer"},
            "raw_line": {"type": "string"},
            SEQUENCE: {"type": ["null", "integer"]},
            PRODUCER: {"type": ["null", "string"]},
        }}),
        key_properties: vec![],
        bookmark_properties: vec![],
    }
}

/// How the error of a record that is not a JSON object begins.
pub const NOT_AN_OBJECT: &str = "record is not a JSON object";

/// The record's `_sdc_sequence` (an integer) and `_sdc_producer` (a string) in a RECORD line,
/// when present (read only for a quarantined record: the rare path).
fn identity(raw_line: &[u8]) -> (Option<i64>, Option<String>) {
    let v: Value = serde_json::from_slice(raw_line).unwrap_or(Value::Null);
    let r = &v["record"];
    (
        r[SEQUENCE].as_i64(),
        r[PRODUCER].as_str().map(str::to_owned),
    )
}

/// The quarantined row's JSON text: the reason, the line number and the raw line.
pub fn record(stream: &str, reason: &str, line: u64, raw_line: &[u8]) -> String {
    let (seq, producer) = identity(raw_line);
    let message_id = match seq {
        Some(s) => format!("seq:{s}"),
        None => format!("line:{line}"),
    };
    let mut row = json!({
        "message_id": message_id,
        "stream": stream,
        "reason": reason,
        "line": line,
        "raw_line": String::from_utf8_lossy(raw_line),
    });
    // Absent rather than null: a record without a sequence gets the target's own.
    if let Some(s) = seq {
        row[SEQUENCE] = s.into();
    }
    if let Some(p) = producer {
        row[PRODUCER] = p.into();
    }
    row.to_string()
}
