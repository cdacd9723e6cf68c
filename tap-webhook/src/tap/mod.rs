//! The Singer tap: drains the spool into SCHEMA / RECORD / STATE lines.
//!
//! A run: read the incoming bookmarks; prune what they prove committed downstream; note the
//! spool's high-water mark; then per selected stream emit every message after its bookmark up
//! to that mark, in sequence order, with a STATE every N records and at the end. STATE always
//! follows the records it covers, and every identity field comes from the stored message, so a
//! replay from an older state emits identical records.

pub mod discover;
pub mod drain;
pub mod inference;
pub mod record;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use crate::settings::{OnMissingKey, RecordShape, Settings, Source};
use crate::spool::{format_us, SpoolError, SpoolReader, StoredMessage};
use inference::{classify, StreamSchema};
use record::{push_key, push_str_field, start_record, top_level, SDC_SEQUENCE};
use singer::catalog::{Catalog, CatalogEntry};
use singer::writer::MessageWriter;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("stream {stream}: message {message_id} (sequence {seq}) lacks primary key {key:?} and on_missing_key is \"fail\"")]
    MissingKey {
        stream: String,
        message_id: String,
        seq: i64,
        key: String,
    },
    #[error("state: {0}")]
    State(String),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Records emitted per stream (rejected streams included).
    pub records: BTreeMap<String, u64>,
    pub pruned: u64,
    /// True when max_records or max_seconds ended the run before the high-water mark.
    pub truncated: bool,
}

/// The bookmark of each stream in a Singer state value (`{"bookmarks": {stream: {...}}}`).
pub fn bookmarks(state: Option<&Value>) -> Result<BTreeMap<String, i64>, TapError> {
    let mut out = BTreeMap::new();
    let Some(state) = state else { return Ok(out) };
    // Some tools hand the whole STATE message instead of its value.
    let state = state
        .get("value")
        .filter(|v| v.get("bookmarks").is_some())
        .unwrap_or(state);
    let Some(marks) = state.get("bookmarks") else {
        return Ok(out);
    };
    let marks = marks
        .as_object()
        .ok_or_else(|| TapError::State("`bookmarks` is not an object".into()))?;
    for (stream, mark) in marks {
        let value = mark
            .get("replication_key_value")
            .or_else(|| mark.get(SDC_SEQUENCE))
            .ok_or_else(|| {
                TapError::State(format!("bookmark of {stream} has no replication_key_value"))
            })?;
        let seq = value
            .as_i64()
            .or_else(|| value.as_str()?.parse().ok())
            .ok_or_else(|| {
                TapError::State(format!("bookmark of {stream} is not an integer: {value}"))
            })?;
        out.insert(stream.clone(), seq);
    }
    Ok(out)
}

fn state_value(marks: &BTreeMap<String, i64>) -> Value {
    let b: serde_json::Map<String, Value> = marks
        .iter()
        .map(|(s, v)| {
            (
                s.clone(),
                json!({"replication_key": SDC_SEQUENCE, "replication_key_value": v}),
            )
        })
        .collect();
    json!({ "bookmarks": b })
}

/// Runs the tap: emits what is pending and returns what it did.
pub fn run(
    settings: &Settings,
    catalog: Option<&Catalog>,
    state: Option<&Value>,
    out: impl Write,
) -> Result<Summary, TapError> {
    let spool = SpoolReader::open(&settings.spool_path)?;
    let mut marks = bookmarks(state)?;
    let mut summary = Summary::default();
    for source in settings.sources.values() {
        if let Some(&mark) = marks.get(&source.name) {
            let n = spool.prune(&source.name, mark, settings.retention)?;
            if n > 0 {
                tracing::info!(stream = %source.name, pruned = n, bookmark = mark, "pruned messages the state proves committed");
            }
            summary.pruned += n as u64;
        }
    }
    let until = spool.high_water_mark()?;
    let started = Instant::now();
    let mut w = MessageWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let mut emitted_total: u64 = 0;
    let mut progress = singer::metrics::Progress::new("tap");
    let mut since_state: u64 = 0;
    'streams: for source in settings.sources.values() {
        let entry = match catalog {
            Some(c) => match c.entry(&source.name) {
                Some(e) if e.is_selected() => Some(e),
                _ => continue,
            },
            None => None,
        };
        let after = marks.get(&source.name).copied().unwrap_or(0);
        let mut emitter = StreamEmitter::new(source, entry);
        if settings.schema_prescan {
            spool.for_each::<TapError>(&source.name, after, until, |m| {
                emitter.prescan(&m);
                Ok(true)
            })?;
        }
        let mut stop = false;
        spool.for_each::<TapError>(&source.name, after, until, |m| {
            if settings.max_records.is_some_and(|max| emitted_total >= max)
                || settings
                    .max_duration
                    .is_some_and(|d| started.elapsed() >= d)
            {
                stop = true;
                return Ok(false);
            }
            emitter.emit(&mut w, &m, &mut summary)?;
            progress.add(1, m.body.len() as u64);
            marks.insert(source.name.clone(), m.seq);
            emitted_total += 1;
            since_state += 1;
            if since_state >= settings.state_interval_records {
                w.write_state(&state_value(&marks))?;
                w.flush()?;
                since_state = 0;
            }
            Ok(true)
        })?;
        if stop {
            summary.truncated = true;
            break 'streams;
        }
    }
    // The final STATE: every stream's bookmark, even untouched ones, so none is lost.
    if !marks.is_empty() {
        w.write_state(&state_value(&marks))?;
    }
    w.flush()?;
    Ok(summary)
}

/// Per-stream emission: schema tracking, record shaping, key checks.
struct StreamEmitter<'a> {
    source: &'a Source,
    entry: Option<&'a CatalogEntry>,
    schema: StreamSchema,
    schema_sent: bool,
    rejected_schema_sent: bool,
    line: String,
}

impl<'a> StreamEmitter<'a> {
    fn new(source: &'a Source, entry: Option<&'a CatalogEntry>) -> Self {
        StreamEmitter {
            source,
            entry,
            schema: StreamSchema::new(discover::fixed_fields(source)),
            schema_sent: false,
            rejected_schema_sent: false,
            line: String::with_capacity(4096),
        }
    }

    fn selected(&self, field: &str) -> bool {
        self.entry.is_none_or(|e| e.is_field_selected(field))
    }

    /// Types the message's fields without emitting it.
    fn prescan(&mut self, m: &StoredMessage) {
        if self.source.record_shape != RecordShape::Unpacked {
            return;
        }
        if let Ok(fields) = top_level(&m.body) {
            for (k, v) in &fields {
                if !is_reserved(k) && self.selected(k) {
                    self.schema.observe(k, classify(v));
                }
            }
        }
    }

    fn emit<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &StoredMessage,
        summary: &mut Summary,
    ) -> Result<(), TapError> {
        let fields = match top_level(&m.body) {
            Ok(f) => f,
            // The receiver stored only JSON objects; a row edited by hand could still break.
            Err(e) => {
                return self.reject(w, m, &format!("payload is not a JSON object: {e}"), summary)
            }
        };
        let pk = self.source.primary_key.as_deref();
        if let Some(key) = pk {
            let present = fields.iter().any(|(k, v)| k == key && v.get() != "null");
            if !present {
                if self.source.on_missing_key == OnMissingKey::Fail {
                    return Err(TapError::MissingKey {
                        stream: self.source.name.clone(),
                        message_id: m.id.clone(),
                        seq: m.seq,
                        key: key.to_owned(),
                    });
                }
                return self.reject(
                    w,
                    m,
                    &format!("primary key {key:?} is missing or null"),
                    summary,
                );
            }
        }
        let mut changed = !self.schema_sent;
        start_record(&mut self.line, m, pk.is_none());
        match self.source.record_shape {
            RecordShape::Unpacked => {
                for (k, v) in &fields {
                    if is_reserved(k) || !self.selected(k) {
                        continue;
                    }
                    changed |= self.schema.observe(k, classify(v));
                    push_key(&mut self.line, k);
                    self.line.push_str(v.get());
                }
            }
            RecordShape::Packed => {
                push_str_field(&mut self.line, "message_id", &m.id);
                push_str_field(&mut self.line, "payload", &m.body);
                push_str_field(
                    &mut self.line,
                    "webhook_received_at",
                    &format_us(m.received_at_us),
                );
                for (name, json) in [("headers", &m.headers), ("query", &m.query)] {
                    if self.selected(name) {
                        push_key(&mut self.line, name);
                        self.line.push_str(json);
                    }
                }
                if let Some(key) = pk {
                    if let Some((_, v)) = fields.iter().find(|(k, _)| k == key) {
                        push_key(&mut self.line, key);
                        self.line.push_str(v.get());
                    }
                }
            }
        }
        self.line.push('}');
        if changed {
            let mut schema = self.schema.to_json_schema();
            if let (Some(entry), Some(props)) = (self.entry, schema["properties"].as_object_mut()) {
                props.retain(|k, _| entry.is_field_selected(k));
            }
            w.write_schema(
                &self.source.name,
                &schema,
                &discover::key_properties(self.source),
                &[SDC_SEQUENCE.to_owned()],
            )?;
            self.schema_sent = true;
        }
        w.write_record_raw(
            &self.source.name,
            &self.line,
            Some(&format_us(m.received_at_us)),
        )?;
        *summary.records.entry(self.source.name.clone()).or_default() += 1;
        Ok(())
    }

    fn reject<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &StoredMessage,
        reason: &str,
        summary: &mut Summary,
    ) -> Result<(), TapError> {
        let stream = discover::rejected_stream(self.source);
        if !self.rejected_schema_sent {
            w.write_schema(
                &stream,
                &discover::rejected_schema(),
                &["message_id".into()],
                &[],
            )?;
            self.rejected_schema_sent = true;
        }
        let record = json!({
            "message_id": m.id,
            SDC_SEQUENCE: m.seq,
            record::SDC_RECEIVED_AT: format_us(m.received_at_us),
            "reason": reason,
            "payload": m.body,
        });
        w.write_record_raw(
            &stream,
            &record.to_string(),
            Some(&format_us(m.received_at_us)),
        )?;
        tracing::warn!(stream = %self.source.name, message_id = %m.id, reason, "message sent to {stream}");
        *summary.records.entry(stream).or_default() += 1;
        Ok(())
    }
}

/// Payload fields that would collide with the ones the tap sets are dropped from the payload.
fn is_reserved(field: &str) -> bool {
    matches!(
        field,
        record::SDC_SEQUENCE | record::SDC_RECEIVED_AT | record::SDC_PRIMARY_KEY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_read_both_spellings_and_reject_garbage() {
        let s = json!({"bookmarks": {"a": {"replication_key": "_sdc_sequence", "replication_key_value": 5},
                                      "b": {"_sdc_sequence": "7"}}});
        assert_eq!(
            bookmarks(Some(&s)).unwrap(),
            BTreeMap::from([("a".into(), 5), ("b".into(), 7)])
        );
        let wrapped = json!({"value": s});
        assert_eq!(bookmarks(Some(&wrapped)).unwrap().len(), 2);
        assert!(bookmarks(Some(
            &json!({"bookmarks": {"a": {"replication_key_value": "x"}}})
        ))
        .is_err());
        assert!(bookmarks(Some(&json!({}))).unwrap().is_empty());
    }
}
