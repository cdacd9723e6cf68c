//! `on_invalid_record: quarantine`: a record the target cannot store (not a JSON object, a key
//! property missing, or null where rows merge by key) is written to `<stream>__rejected` with
//! the reason, the input line number and the raw text that carried it, instead of stopping the
//! load (`fail`, the default, stops it with the error).
//!
//! Where it was ([`Origin`]): `line` is always the input line of the Singer message (the RECORD,
//! or the BATCH whose file held the row) and `raw_line` the text of the record as received (the
//! RECORD line, or the row of the BATCH file); `batch_file` (the manifest entry) and `batch_row`
//! (from 1 within that file) are set for a BATCH row only.
//!
//! A quarantined row keeps the record's `_sdc_sequence` and `_sdc_producer` when it had them,
//! so a replayed run skips it as it skips any committed record. Its `message_id` is never null
//! (`seq:<n>`, else `line:<n>`, with `:row:<r>:<file>` for a BATCH row): tap-webhook's own
//! `<stream>__rejected` stream is keyed on it and the two may share the table.

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
            "batch_file": {"type": ["null", "string"]},
            "batch_row": {"type": ["null", "integer"]},
            SEQUENCE: {"type": ["null", "integer"]},
            PRODUCER: {"type": ["null", "string"]},
        }}),
        key_properties: vec![],
        bookmark_properties: vec![],
    }
}

/// How the error of a record that is not a JSON object begins.
pub const NOT_AN_OBJECT: &str = "record is not a JSON object";

/// Where a quarantined record was in the input.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A RECORD message: its input line and the line's text.
    Record { line: u64, raw_line: &'a [u8] },
    /// A row of a BATCH message's file: the BATCH's input line, the manifest entry, the row's
    /// number from 1 within that file and its text (the record itself).
    BatchRow {
        line: u64,
        file: &'a str,
        row: u64,
        text: &'a str,
    },
}

impl Origin<'_> {
    /// The input line of the Singer message that carried the record.
    pub fn line(&self) -> u64 {
        match *self {
            Origin::Record { line, .. } | Origin::BatchRow { line, .. } => line,
        }
    }

    /// The record's `_sdc_sequence` (an integer) and `_sdc_producer` (a string), when present
    /// (read only for a quarantined record: the rare path).
    fn identity(&self) -> (Option<i64>, Option<String>) {
        let (text, envelope) = match *self {
            Origin::Record { raw_line, .. } => (raw_line, true),
            Origin::BatchRow { text, .. } => (text.as_bytes(), false),
        };
        let v: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
        let r = if envelope { &v["record"] } else { &v };
        (
            r[SEQUENCE].as_i64(),
            r[PRODUCER].as_str().map(str::to_owned),
        )
    }
}

/// The quarantined row's JSON text: the reason, where the record was and its raw text.
pub fn record(stream: &str, reason: &str, origin: Origin<'_>) -> String {
    let (seq, producer) = origin.identity();
    let line = origin.line();
    let message_id = match (seq, origin) {
        (Some(s), _) => format!("seq:{s}"),
        (None, Origin::Record { .. }) => format!("line:{line}"),
        (None, Origin::BatchRow { file, row, .. }) => format!("line:{line}:row:{row}:{file}"),
    };
    let mut row = json!({
        "message_id": message_id,
        "stream": stream,
        "reason": reason,
        "line": line,
    });
    match origin {
        Origin::Record { raw_line, .. } => {
            row["raw_line"] = String::from_utf8_lossy(raw_line).into();
        }
        Origin::BatchRow {
            file, row: n, text, ..
        } => {
            row["raw_line"] = text.into();
            row["batch_file"] = file.into();
            row["batch_row"] = n.into();
        }
    }
    // Absent rather than null: a record without a sequence gets the target's own.
    if let Some(s) = seq {
        row[SEQUENCE] = s.into();
    }
    if let Some(p) = producer {
        row[PRODUCER] = p.into();
    }
    row.to_string()
}
