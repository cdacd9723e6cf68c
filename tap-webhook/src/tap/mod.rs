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
use crate::spool::{format_us, format_us_into, MessageRef, SpoolError, SpoolReader};
use inference::{FieldMap, StreamSchema};
use record::{
    push_key, push_str_field, start_record, top_level, top_level_trusted, Field, SDC_SEQUENCE,
};
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
    #[error("schema prescan: {0}")]
    Prescan(String),
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
    let mut spool = SpoolReader::open(&settings.spool_path)?;
    // One source: its messages are (nearly) all the spool holds, so a scan in sequence order
    // beats walking the source's index and seeking every row.
    spool.scan_by_seq(settings.sources.len() == 1);
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
        if settings.schema_prescan && source.record_shape == RecordShape::Unpacked {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            let path = &settings.spool_path;
            let min = PRESCAN_MIN_PER_THREAD;
            prescan(&spool, path, &mut emitter, after, until, threads, min)?;
        }
        let mut stop = false;
        spool.for_each_ref::<TapError>(&source.name, after, until, |m| {
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

/// Fewest messages a prescan thread is given: below this, opening a connection and starting a
/// thread cost more than they save.
const PRESCAN_MIN_PER_THREAD: i64 = 16_384;

/// Types every message of the stream in `(after, until]` before the first record is emitted,
/// on up to `threads` threads: each reads its own range of sequences through its own
/// connection (at least `min_per_thread` messages each), and their findings are merged (the schema is a union of type sets, sorted by
/// name, so the order of the merge does not show). The current thread takes the first range.
fn prescan(
    spool: &SpoolReader,
    path: &std::path::Path,
    emitter: &mut StreamEmitter<'_>,
    after: i64,
    until: i64,
    threads: usize,
    min_per_thread: i64,
) -> Result<(), TapError> {
    let stream = emitter.source.name.as_str();
    let cuts = if threads > 1 {
        spool.split_range(stream, after, until, threads, min_per_thread)?
    } else {
        Vec::new()
    };
    let mut bounds = vec![after];
    bounds.extend(&cuts);
    bounds.push(until);
    let (source, entry, by_seq) = (emitter.source, emitter.entry, spool.scans_by_seq());
    let parts = std::thread::scope(|s| {
        let workers: Vec<_> = bounds
            .windows(2)
            .skip(1)
            .map(|w| {
                let (lo, hi) = (w[0], w[1]);
                s.spawn(move || -> Result<StreamEmitter<'_>, TapError> {
                    let mut reader = SpoolReader::open(path)?;
                    reader.scan_by_seq(by_seq);
                    let mut part = StreamEmitter::new(source, entry);
                    reader.for_each_body::<TapError>(stream, lo, hi, |seq, body| {
                        part.prescan(seq, body);
                        Ok(())
                    })?;
                    Ok(part)
                })
            })
            .collect();
        let first = spool.for_each_body::<TapError>(stream, bounds[0], bounds[1], |seq, body| {
            emitter.prescan(seq, body);
            Ok(())
        });
        let rest: Vec<Result<StreamEmitter<'_>, TapError>> = workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(TapError::Prescan(format!(
                        "stream {stream}: a schema prescan thread panicked"
                    )))
                })
            })
            .collect();
        first.map(|()| rest)
    })?;
    // In range order, so the unparsable sequences stay ascending.
    for part in parts {
        let part = part?;
        emitter.schema.absorb(part.schema);
        emitter.unparsable.extend(part.unparsable);
    }
    emitter.prescanned = true;
    Ok(())
}

/// Per-stream emission: schema tracking, record shaping, key checks.
struct StreamEmitter<'a> {
    source: &'a Source,
    entry: Option<&'a CatalogEntry>,
    schema: StreamSchema,
    schema_sent: bool,
    rejected_schema_sent: bool,
    line: String,
    /// Receipt time of the message being emitted, as `format_us` writes it.
    received_at: String,
    /// Field selection by the catalog, looked up once per field name.
    selection: FieldMap<bool>,
    /// True once the prescan has parsed every message of the run: a message it found valid
    /// can then be split without validating it again.
    prescanned: bool,
    /// Sequences of the messages the prescan could not parse, ascending (they are rare).
    unparsable: Vec<i64>,
    next_unparsable: usize,
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
            received_at: String::with_capacity(32),
            selection: FieldMap::default(),
            prescanned: false,
            unparsable: Vec::new(),
            next_unparsable: 0,
        }
    }

    #[inline]
    fn selected(&mut self, field: &str) -> bool {
        self.entry.is_none() || self.selected_by_catalog(field)
    }

    fn selected_by_catalog(&mut self, field: &str) -> bool {
        let Some(entry) = self.entry else {
            return true;
        };
        if let Some(&s) = self.selection.get(field) {
            return s;
        }
        let s = entry.is_field_selected(field);
        self.selection.insert(field.to_owned(), s);
        s
    }

    /// Types the message's fields without emitting it (unpacked records only).
    fn prescan(&mut self, seq: i64, body: &str) {
        match top_level(body) {
            Ok(fields) => {
                for f in &fields {
                    if !is_reserved(&f.key) && self.selected(&f.key) {
                        self.schema.observe_hashed(f.hash, &f.key, f.value);
                    }
                }
            }
            Err(_) => self.unparsable.push(seq),
        }
    }

    /// The message's top-level fields: split without validation when the prescan has already
    /// parsed this very message, parsed (and validated) otherwise.
    fn fields<'m>(&mut self, m: &MessageRef<'m>) -> Result<Vec<Field<'m>>, serde_json::Error> {
        if self.prescanned {
            while self
                .unparsable
                .get(self.next_unparsable)
                .is_some_and(|&s| s < m.seq)
            {
                self.next_unparsable += 1;
            }
            let known_bad = self.unparsable.get(self.next_unparsable) == Some(&m.seq);
            if !known_bad {
                if let Some(fields) = top_level_trusted(m.body) {
                    return Ok(fields);
                }
            }
        }
        top_level(m.body)
    }

    fn emit<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &MessageRef<'_>,
        summary: &mut Summary,
    ) -> Result<(), TapError> {
        let fields = match self.fields(m) {
            Ok(f) => f,
            // The receiver stored only JSON objects; a row edited by hand could still break.
            Err(e) => {
                return self.reject(w, m, &format!("payload is not a JSON object: {e}"), summary)
            }
        };
        let pk = self.source.primary_key.as_deref();
        if let Some(key) = pk {
            let present = fields.iter().any(|f| f.key == key && f.value != "null");
            if !present {
                if self.source.on_missing_key == OnMissingKey::Fail {
                    return Err(TapError::MissingKey {
                        stream: self.source.name.clone(),
                        message_id: m.id.to_owned(),
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
        self.received_at.clear();
        format_us_into(&mut self.received_at, m.received_at_us);
        start_record(&mut self.line, m, &self.received_at, pk.is_none());
        match self.source.record_shape {
            RecordShape::Unpacked => {
                for f in &fields {
                    if is_reserved(&f.key) || !self.selected(&f.key) {
                        continue;
                    }
                    // After the prescan the schema holds every field and type of the run:
                    // this message was observed there already.
                    if !self.prescanned {
                        changed |= self.schema.observe_hashed(f.hash, &f.key, f.value);
                    }
                    push_key(&mut self.line, &f.key);
                    self.line.push_str(f.value);
                }
            }
            RecordShape::Packed => {
                push_str_field(&mut self.line, "message_id", m.id);
                push_str_field(&mut self.line, "payload", m.body);
                push_str_field(&mut self.line, "webhook_received_at", &self.received_at);
                for (name, json) in [("headers", m.headers), ("query", m.query)] {
                    if self.selected(name) {
                        push_key(&mut self.line, name);
                        self.line.push_str(json);
                    }
                }
                if let Some(key) = pk {
                    if let Some(f) = fields.iter().find(|f| f.key == key) {
                        push_key(&mut self.line, key);
                        self.line.push_str(f.value);
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
        w.write_record_raw(&self.source.name, &self.line, Some(&self.received_at))?;
        match summary.records.get_mut(&self.source.name) {
            Some(n) => *n += 1,
            None => {
                summary.records.insert(self.source.name.clone(), 1);
            }
        }
        Ok(())
    }

    fn reject<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &MessageRef<'_>,
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

    #[test]
    fn a_prescan_on_several_threads_finds_what_one_thread_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let mut conn = crate::spool::open(&path).unwrap();
        // 3,000 messages; fields and types that only some ranges hold, and unparsable bodies in
        // the first, second and last ranges (their sequences must come back ascending).
        let bad = [5_i64, 1_500, 2_999];
        let tx = conn.transaction().unwrap();
        for seq in 1..=3_000_i64 {
            let body = if bad.contains(&seq) {
                "{not json".to_owned()
            } else if seq < 1_000 {
                format!(r#"{{"id":{seq},"a":"x"}}"#)
            } else if seq < 2_000 {
                format!(r#"{{"id":"s{seq}","b":{{"n":1}},"c":null}}"#)
            } else {
                format!(
                    r#"{{"id":{seq}.5,"c":"2024-05-01T12:00:00Z","d{}":true}}"#,
                    seq % 7
                )
            };
            tx.execute(
                "INSERT INTO messages (seq, id, source, received_at, part, headers, query, body)
                 VALUES (?1, ?2, 'data', ?1, 0, '{}', '{}', ?3)",
                rusqlite::params![seq, format!("m{seq}"), body],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let settings = Settings::from_map(serde_json::Map::new()).unwrap();
        let source = &settings.sources["data"];
        let spool = SpoolReader::open(&path).unwrap();
        assert_eq!(
            spool.split_range("data", 0, 3_000, 3, 100).unwrap(),
            [1_000, 2_000],
            "three ranges of 1,000"
        );
        assert_eq!(
            spool.split_range("data", 0, 3_000, 3, 1_001).unwrap(),
            [1_500]
        );
        assert!(spool
            .split_range("data", 0, 3_000, 4, 3_001)
            .unwrap()
            .is_empty());
        assert_eq!(spool.split_range("data", 10, 20, 2, 1).unwrap(), [15]);
        let mut one = StreamEmitter::new(source, None);
        prescan(&spool, &path, &mut one, 0, 3_000, 1, 100).unwrap();
        let mut three = StreamEmitter::new(source, None);
        prescan(&spool, &path, &mut three, 0, 3_000, 3, 100).unwrap();
        assert!(one.prescanned && three.prescanned);
        assert_eq!(one.unparsable, bad);
        assert_eq!(three.unparsable, bad);
        let schema = three.schema.to_json_schema();
        assert_eq!(one.schema.to_json_schema(), schema);
        let props = &schema["properties"];
        assert_eq!(
            props["id"]["type"],
            json!(["null", "number", "string"]),
            "{props}"
        );
        assert_eq!(props["c"]["type"], json!(["null", "string"]));
        assert_eq!(props["c"]["format"], json!("date-time"));
        for field in ["a", "b", "d0", "d6"] {
            assert!(props.get(field).is_some(), "{field} missing from {props}");
        }
    }
}
