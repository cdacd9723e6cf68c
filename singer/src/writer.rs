//! Writes Singer messages, one JSON object a line.
//!
//! Records are written from JSON text the caller already holds (the tap splices stored payloads
//! without re-serialising them), so the writer never re-encodes a record.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

pub struct MessageWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> MessageWriter<W> {
    pub fn new(out: W) -> Self {
        MessageWriter {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    pub fn write_schema(
        &mut self,
        stream: &str,
        schema: &Value,
        key_properties: &[String],
        bookmark_properties: &[String],
    ) -> io::Result<()> {
        #[derive(Serialize)]
        struct Schema<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            stream: &'a str,
            schema: &'a Value,
            key_properties: &'a [String],
            bookmark_properties: &'a [String],
        }
        self.write_value(&Schema {
            kind: "SCHEMA",
            stream,
            schema,
            key_properties,
            bookmark_properties,
        })
    }

    /// Writes a RECORD whose `record` is `record_json`, which must be one JSON object.
    pub fn write_record_raw(
        &mut self,
        stream: &str,
        record_json: &str,
        time_extracted: Option<&str>,
    ) -> io::Result<()> {
        // Straight into the output (a BufWriter in practice): records are most of the bytes
        // and copying each into a line buffer first costs a pass over all of them.
        self.out.write_all(br#"{"type":"RECORD","stream":"#)?;
        serde_json::to_writer(&mut self.out, stream)?;
        self.out.write_all(br#","record":"#)?;
        self.out.write_all(record_json.as_bytes())?;
        if let Some(t) = time_extracted {
            self.out.write_all(br#","time_extracted":"#)?;
            serde_json::to_writer(&mut self.out, t)?;
        }
        self.out.write_all(b"}\n")
    }

    pub fn write_state(&mut self, value: &Value) -> io::Result<()> {
        self.write_value(&serde_json::json!({"type": "STATE", "value": value}))
    }

    pub fn write_activate_version(&mut self, stream: &str, version: i64) -> io::Result<()> {
        self.write_value(
            &serde_json::json!({"type": "ACTIVATE_VERSION", "stream": stream, "version": version}),
        )
    }

    /// Writes any serialisable value as one line.
    pub fn write_value<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    /// Writes lines already formatted (by another `MessageWriter`), each ending in a newline.
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        self.out.write_all(lines)
    }

    /// The output, for a caller that collects formatted lines in memory.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_message, Message};

    #[test]
    fn lines_round_trip_through_the_parser() {
        let mut w = MessageWriter::new(Vec::new());
        w.write_schema(
            "s",
            &serde_json::json!({"type":"object"}),
            &["id".into()],
            &[],
        )
        .unwrap();
        w.write_record_raw("s", r#"{"id": 1}"#, Some("2024-01-01T00:00:00Z"))
            .unwrap();
        w.write_state(&serde_json::json!({"bookmarks":{}})).unwrap();
        let out = w.into_inner();
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(matches!(
            parse_message(lines[0]).unwrap(),
            Message::Schema(_)
        ));
        match parse_message(lines[1]).unwrap() {
            Message::Record(r) => assert_eq!(r.record.get(), r#"{"id": 1}"#),
            _ => panic!("not a record"),
        }
        assert!(matches!(
            parse_message(lines[2]).unwrap(),
            Message::State(_)
        ));
    }
}
