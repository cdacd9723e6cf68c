//! The message loop: SCHEMA / RECORD / STATE / ACTIVATE_VERSION → per-stream buffers → commits
//! → STATE lines on the output, in the order the durability chain demands (BRIEF §2).
//!
//! A STATE is printed only once every stream that had buffered rows when it arrived has
//! committed them; until then it waits in `states`. Records a previous run already committed
//! (their `_sdc_sequence` is at or below the table's `txn` version) are skipped.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value as Json};
use singer::message::{Message, RecordMessage, SchemaMessage};
use singer::reader::Line;

use crate::batch::StreamBuffer;
use crate::columns::{declared_type, key_type, ColType, Value};
use crate::flush;
use crate::pump::{Chunk, Pump};
use crate::settings::{LoadMethod, Settings};
use crate::table::Table;
use crate::{Error, Summary};

/// The generated key of keyless streams: a table keyed only by it stays append-only (Stitch).
pub const GENERATED_KEY: &str = "__sdc_primary_key";
pub const SEQUENCE: &str = "_sdc_sequence";
pub const DELETED_AT: &str = "_sdc_deleted_at";
pub const TABLE_VERSION: &str = "_sdc_table_version";
pub const EXTRACTED_AT: &str = "_sdc_extracted_at";
pub const RECEIVED_AT: &str = "_sdc_received_at";
pub const BATCHED_AT: &str = "_sdc_batched_at";

/// One stream of the input and its table.
pub struct Stream {
    pub name: String,
    pub table: Table,
    pub buf: StreamBuffer,
    pub keys: Vec<String>,
    pub method: LoadMethod,
    /// Per buffered row: its effective sequence (tap's or ours) and whether it is a deletion.
    pub seqs: Vec<i64>,
    pub deleted: Vec<bool>,
    /// Highest tap-provided `_sdc_sequence` buffered: the `txn` version of the next commit.
    pub max_tap_seq: Option<i64>,
    pub oldest: Option<Instant>,
    /// Rows buffered since the start / rows committed: a STATE waits until they meet.
    pub buffered_total: u64,
    pub committed_total: u64,
    /// `overwrite` replaces the table's contents on its first commit of the run only.
    pub overwritten: bool,
    pub skipped: u64,
    /// The data file of the next commit, fed while the batch is parsed (see [`flush::spill`]),
    /// and the rows and input bytes already handed to it.
    pub writer: Option<crate::table::FileWriter>,
    pub spilled_rows: usize,
    pub spilled_bytes: usize,
}

impl Stream {
    /// Rows received and not yet part of a commit.
    pub fn pending_rows(&self) -> usize {
        self.buf.rows() + self.spilled_rows
    }

    /// Input bytes received and not yet part of a commit (what `batch_size_bytes` bounds).
    pub fn pending_bytes(&self) -> usize {
        self.buf.bytes() + self.spilled_bytes
    }

    /// Whether buffered rows may go to the data file before the batch ends: not for an
    /// upsert, which picks each key's latest row over the whole batch.
    pub fn streams_to_file(&self) -> bool {
        self.method != LoadMethod::Upsert || self.keys.is_empty()
    }
}

/// A STATE waiting for commits: for each stream, how many rows must be committed first.
struct HeldState {
    value: Json,
    needs: Vec<(String, u64)>,
}

/// `_sdc_sequence` for records without one: epoch microseconds, strictly increasing.
struct SeqClock(i64);

impl SeqClock {
    fn next(&mut self) -> i64 {
        let now = now_micros();
        self.0 = now.max(self.0 + 1);
        self.0
    }
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub struct Ingest<'s, W: Write> {
    pub settings: &'s Settings,
    pub rt: tokio::runtime::Runtime,
    pub streams: HashMap<String, Stream>,
    claimed: HashSet<PathBuf>,
    states: Vec<HeldState>,
    last_state: Option<Json>,
    last_printed: Option<Json>,
    clock: SeqClock,
    output: W,
    /// Input lines and bytes read, logged at intervals on stderr.
    progress: singer::metrics::Progress,
    /// The previous record's field count: the capacity hint of the next one's.
    width: usize,
    /// Batches whose data files are being written, oldest first, committed in this order: the
    /// one written while the next is parsed, and at the end of the input possibly the last
    /// two (see [`Self::flush_stream`]).
    flushing: std::collections::VecDeque<flush::Flushing>,
    /// The input has ended: the last batches are being cut.
    ending: bool,
    pub summary: Summary,
}

impl<'s, W: Write> Ingest<'s, W> {
    pub fn new(settings: &'s Settings, output: W) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Ingest {
            settings,
            rt,
            streams: HashMap::new(),
            claimed: HashSet::new(),
            states: Vec::new(),
            progress: singer::metrics::Progress::new("target"),
            last_state: None,
            last_printed: None,
            clock: SeqClock(0),
            output,
            flushing: std::collections::VecDeque::new(),
            ending: false,
            width: 16,
            summary: Summary::default(),
        })
    }

    pub fn run(mut self, input: impl BufRead + Send + 'static) -> Result<Summary, Error> {
        let pump = Pump::spawn(input);
        let mut line_no = 0;
        if let Err(e) = self.run_lines(&pump, &mut line_no) {
            return Err(self.fail(e));
        }
        self.ending = true;
        if let Err(e) = self.flush_all(line_no).and_then(|()| self.complete_flush()) {
            return Err(self.fail(e));
        }
        self.emit_states()?;
        Ok(self.summary)
    }

    /// After a failure: the batches already cut are committed, as they would have been had
    /// their files not been written in the background (the failing one is not), and their
    /// STATEs printed; then the data files of rows not committed go.
    fn fail(&mut self, e: Error) -> Error {
        if self.complete_flush().is_ok() {
            let _ = self.emit_states();
        }
        self.discard_uncommitted();
        e
    }

    /// The data files of rows not committed (batches cut but not committed, because a commit
    /// before them failed; rows handed to a file since the last cut) are removed, so that a
    /// failed run leaves nothing outside a local table's log.
    fn discard_uncommitted(&mut self) {
        for f in std::mem::take(&mut self.flushing) {
            if let Some(stream) = self.streams.get(&f.stream) {
                f.discard(&stream.table);
            }
        }
        for stream in self.streams.values_mut() {
            if let Some(writer) = stream.writer.take() {
                writer.close().discard();
            }
        }
    }

    fn run_lines(&mut self, pump: &Pump, line_no: &mut u64) -> Result<(), Error> {
        loop {
            let mut wait = self.until_next_age_flush();
            if !self.flushing.is_empty() {
                // Look again soon: the commit (and the STATEs it releases) follows the file.
                wait = Some(wait.map_or(FLUSH_POLL, |w| w.min(FLUSH_POLL)));
            }
            match pump.next(wait) {
                Chunk::Lines(lines) => {
                    for (number, bytes) in lines.iter() {
                        *line_no = number;
                        self.progress.add(1, bytes.len() as u64);
                        self.on_line(Line { number, bytes })?;
                        self.maybe_flush(number)?;
                    }
                    pump.recycle(lines);
                }
                Chunk::Timeout => self.maybe_flush(*line_no)?,
                Chunk::End(None) => return Ok(()),
                Chunk::End(Some(e)) => return Err(e.into()),
            }
            self.complete_ready()?;
        }
    }

    fn on_line(&mut self, line: Line<'_>) -> Result<(), Error> {
        let line_no = line.number;
        // Fast path: a RECORD line read in one pass (any other line takes the generic parser).
        if let Some(r) = crate::record::record_line(line.bytes, self.width) {
            self.width = r.fields.len();
            return self.on_fields(
                line_no,
                &r.stream,
                r.fields,
                r.version,
                r.time_extracted,
                line.bytes.len(),
            );
        }
        match line.message()? {
            Message::Schema(m) => self.on_schema(line_no, m)?,
            Message::Record(r) => self.on_record(line_no, r, line.bytes.len())?,
            Message::State(s) => self.on_state(s.value)?,
            Message::ActivateVersion(a) => {
                // Rows of the new version are committed first, then older versions dropped.
                self.stream_mut(line_no, &a.stream)?;
                self.flush_stream(line_no, &a.stream)?;
                self.complete_flush()?;
                flush::activate_version(self, line_no, &a.stream, a.version)?;
            }
            Message::Batch(b) => {
                return Err(Error::Unsupported {
                    line: line_no,
                    stream: b.stream,
                    what: "BATCH messages",
                })
            }
        }
        Ok(())
    }

    /// How long until the oldest buffered row reaches `max_batch_age` (`None`: nothing buffered).
    fn until_next_age_flush(&self) -> Option<std::time::Duration> {
        let age = self.settings.max_batch_age;
        self.streams
            .values()
            .filter_map(|s| s.oldest)
            .map(|t| age.saturating_sub(t.elapsed()))
            .min()
    }

    /// The latest STATE received (printed or not), recorded in commit info.
    pub fn last_state(&self) -> Option<Json> {
        self.last_state.clone()
    }

    fn stream_mut(&mut self, line: u64, name: &str) -> Result<&mut Stream, Error> {
        self.streams
            .get_mut(name)
            .ok_or_else(|| Error::RecordBeforeSchema {
                line,
                stream: name.to_string(),
            })
    }

    fn on_schema(&mut self, line: u64, m: SchemaMessage) -> Result<(), Error> {
        let props = object_properties(&m.schema).map_err(|detail| Error::NotObjectSchema {
            line,
            stream: m.stream.clone(),
            detail,
        })?;
        if !self.streams.contains_key(&m.stream) {
            let (table, registry) = self
                .rt
                .block_on(Table::open(
                    &self.settings.warehouse_path,
                    &m.stream,
                    &mut self.claimed,
                    &self.settings.storage_options,
                ))
                .map_err(|source| Error::Table {
                    line,
                    stream: m.stream.clone(),
                    source: Box::new(source),
                })?;
            tracing::info!(stream = %m.stream, table = %table.root.display(), watermark = ?table.replay_watermark, "opened table");
            let stream = Stream {
                name: m.stream.clone(),
                table,
                buf: StreamBuffer::new(registry),
                keys: Vec::new(),
                method: LoadMethod::AppendOnly,
                seqs: Vec::new(),
                deleted: Vec::new(),
                max_tap_seq: None,
                oldest: None,
                buffered_total: 0,
                committed_total: 0,
                overwritten: false,
                skipped: 0,
                writer: None,
                spilled_rows: 0,
                spilled_bytes: 0,
            };
            self.streams.insert(m.stream.clone(), stream);
        } else if self
            .streams
            .get(&m.stream)
            .is_some_and(|s| s.keys != m.key_properties && s.pending_rows() > 0)
        {
            // Rows buffered under the old keys are merged under the old keys.
            self.flush_stream(line, &m.stream)?;
        }
        let add_meta = self.settings.add_record_metadata;
        let method = self
            .settings
            .load_method
            .unwrap_or(default_method(&m.key_properties));
        let Some(stream) = self.streams.get_mut(&m.stream) else {
            return Ok(());
        };
        stream.keys = m.key_properties.clone();
        stream.method = method;
        // Only tables whose rows get replaced need deletion vectors; the others stay readable
        // by readers without them. Decided when this run creates the table.
        stream.table.create_with_deletion_vectors = self.settings.deletion_vectors
            && method == LoadMethod::Upsert
            && !stream.keys.is_empty();
        for (name, schema) in props {
            let declared = declared_type(schema);
            let ty = if m.key_properties.iter().any(|k| k == name) {
                key_type(declared)
            } else {
                declared
            };
            if let Some(ty) = ty {
                stream.buf.declare(name, ty);
            }
        }
        stream.buf.declare(SEQUENCE, ColType::Int64);
        if add_meta {
            for ts in [EXTRACTED_AT, RECEIVED_AT, BATCHED_AT, DELETED_AT] {
                stream.buf.declare(ts, ColType::Timestamp);
            }
            stream.buf.declare(TABLE_VERSION, ColType::Int64);
        }
        Ok(())
    }

    fn on_record(&mut self, line: u64, r: RecordMessage<'_>, bytes: usize) -> Result<(), Error> {
        let stream_name = r.stream.as_ref();
        if !self.streams.contains_key(stream_name) {
            return Err(Error::RecordBeforeSchema {
                line,
                stream: stream_name.to_string(),
            });
        }
        let fields = crate::record::split_fields(r.record.get(), self.width).map_err(|e| {
            Error::BadRecord {
                line,
                stream: stream_name.to_string(),
                detail: format!("record is not a JSON object: {e}"),
            }
        })?;
        self.on_fields(
            line,
            stream_name,
            fields,
            r.version,
            r.time_extracted,
            bytes,
        )
    }

    /// Loads one record's top-level fields into its stream's buffer.
    fn on_fields(
        &mut self,
        line: u64,
        stream_name: &str,
        fields: crate::record::Fields<'_>,
        version: Option<i64>,
        time_extracted: Option<Cow<'_, str>>,
        bytes: usize,
    ) -> Result<(), Error> {
        let add_meta = self.settings.add_record_metadata;
        let assigned = self.clock.next();
        let stream =
            self.streams
                .get_mut(stream_name)
                .ok_or_else(|| Error::RecordBeforeSchema {
                    line,
                    stream: stream_name.to_string(),
                })?;
        let bad = |detail: String| Error::BadRecord {
            line,
            stream: stream_name.to_string(),
            detail,
        };
        for key in &stream.keys {
            if !fields.iter().any(|(k, _)| k.as_ref() == key.as_str()) {
                return Err(Error::MissingKey {
                    line,
                    stream: stream_name.to_string(),
                    key: key.clone(),
                });
            }
        }
        let mut values = Vec::with_capacity(fields.len());
        let (mut tap_seq, mut deleted) = (None, false);
        let mut seen = [false; 5]; // extracted, received, batched, deleted, table version
        for (k, raw) in &fields {
            let v = Value::from_raw(raw.get());
            if k.starts_with("_sdc_") {
                match k.as_ref() {
                    SEQUENCE => tap_seq = if let Value::Int(i) = v { Some(i) } else { None },
                    DELETED_AT => (seen[3], deleted) = (true, !matches!(v, Value::Null)),
                    EXTRACTED_AT => seen[0] = true,
                    RECEIVED_AT => seen[1] = true,
                    BATCHED_AT => seen[2] = true,
                    TABLE_VERSION => seen[4] = true,
                    _ => {}
                }
            }
            values.push(v);
        }
        if stream.method != LoadMethod::Overwrite {
            if let (Some(s), Some(w)) = (tap_seq, stream.table.replay_watermark) {
                if s <= w {
                    stream.skipped += 1;
                    self.summary.skipped += 1;
                    return Ok(());
                }
            }
        }
        let row = stream.buf.begin_row(bytes);
        for ((k, _), v) in fields.iter().zip(&values) {
            stream.buf.push(row, k, v).map_err(|e| bad(e.to_string()))?;
        }
        let has_seq = fields.iter().any(|(k, _)| k.as_ref() == SEQUENCE);
        let seq = tap_seq.unwrap_or(assigned);
        if !has_seq {
            stream
                .buf
                .push(row, SEQUENCE, &Value::Int(seq))
                .map_err(|e| bad(e.to_string()))?;
        }
        if add_meta {
            if !seen[0] {
                if let Some(t) = &time_extracted {
                    stream
                        .buf
                        .push(row, EXTRACTED_AT, &Value::Str(t.clone()))
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
            if !seen[1] {
                stream
                    .buf
                    .push(row, RECEIVED_AT, &Value::Micros(assigned)) // the clock: now, strictly increasing
                    .map_err(|e| bad(e.to_string()))?;
            }
            if !seen[4] {
                if let Some(v) = version {
                    stream
                        .buf
                        .push(row, TABLE_VERSION, &Value::Int(v))
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        stream.seqs.push(seq);
        stream.deleted.push(deleted);
        stream.max_tap_seq = match (stream.max_tap_seq, tap_seq) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        stream.oldest.get_or_insert_with(Instant::now);
        stream.buffered_total += 1;
        self.summary.records += 1;
        if let Some(limit) = self.settings.batch_size_rows {
            if stream.pending_rows() >= limit {
                let name = stream.name.clone();
                return self.flush_stream(line, &name);
            }
        }
        if let Some(spill) = self.settings.spill_bytes() {
            if stream.buf.bytes() >= spill && stream.streams_to_file() {
                flush::spill(stream, self.settings).map_err(|source| Error::Table {
                    line,
                    stream: stream_name.to_string(),
                    source: Box::new(source),
                })?;
            }
        }
        Ok(())
    }

    fn on_state(&mut self, value: Json) -> Result<(), Error> {
        let needs = self
            .streams
            .values()
            .filter(|s| s.buffered_total > s.committed_total)
            .map(|s| (s.name.clone(), s.buffered_total))
            .collect();
        self.last_state = Some(value.clone());
        self.states.push(HeldState { value, needs });
        self.emit_states()
    }

    /// Prints the newest state whose rows are all committed (older ones are implied by it).
    fn emit_states(&mut self) -> Result<(), Error> {
        let ready = self.states.iter().rposition(|h| {
            h.needs.iter().all(|(name, n)| {
                self.streams
                    .get(name)
                    .is_none_or(|s| s.committed_total >= *n)
            })
        });
        let Some(i) = ready else { return Ok(()) };
        let held: Vec<HeldState> = self.states.drain(..=i).collect();
        let Some(state) = held.into_iter().next_back().map(|h| h.value) else {
            return Ok(());
        };
        let empty = state.as_object().is_some_and(Map::is_empty) || state.is_null();
        if empty || self.last_printed.as_ref() == Some(&state) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&state).map_err(|e| Error::Output(e.into()))?;
        line.push(b'\n');
        self.output
            .write_all(&line)
            .and_then(|_| self.output.flush())
            .map_err(Error::Output)?;
        self.summary.states += 1;
        self.last_printed = Some(state);
        Ok(())
    }

    fn maybe_flush(&mut self, line: u64) -> Result<(), Error> {
        let total: usize = self.streams.values().map(Stream::pending_bytes).sum();
        if total >= self.settings.batch_size_bytes {
            return self.flush_all(line);
        }
        let age = self.settings.max_batch_age;
        let old: Vec<String> = self
            .streams
            .values()
            .filter(|s| s.oldest.is_some_and(|t| t.elapsed() >= age))
            .map(|s| s.name.clone())
            .collect();
        for name in old {
            self.flush_stream(line, &name)?;
        }
        Ok(())
    }

    fn flush_all(&mut self, line: u64) -> Result<(), Error> {
        let mut names: Vec<String> = self.streams.keys().cloned().collect();
        names.sort();
        for name in names {
            self.flush_stream(line, &name)?;
        }
        Ok(())
    }

    /// Cuts a stream's buffered rows into a batch whose data file is written in the background
    /// (mid-load, after committing the previous such batch); [`Self::complete_flush`] commits
    /// it.
    ///
    /// At the end of the input, a batch that is only appended does not wait for the previous
    /// batch's file: that file is often still being encoded (encoding runs behind parsing), and
    /// the last rows' file is then encoded beside it on the core the parsing has freed, instead
    /// of after it. (Mid-load, waiting keeps at most two batches' data in memory.) A batch that
    /// reads its table first (upsert rewrites, an overwrite's removes) always waits for every
    /// earlier commit.
    pub fn flush_stream(&mut self, line: u64, name: &str) -> Result<(), Error> {
        let Some(stream) = self.streams.get(name).filter(|s| s.pending_rows() > 0) else {
            return Ok(());
        };
        // Only appends may skip the wait: an upsert's rewrites and an overwrite's first
        // removes read the table.
        let appends = stream.streams_to_file()
            && (stream.method != LoadMethod::Overwrite || stream.overwritten);
        if appends && self.ending {
            self.complete_ready()?;
            while self.flushing.len() > MAX_FLUSHING {
                self.complete_next()?;
            }
        } else {
            self.complete_flush()?;
        }
        let state = self.last_state.clone();
        let Some(stream) = self.streams.get_mut(name) else {
            return Ok(());
        };
        let flushing =
            flush::prepare(stream, self.settings, state, line).map_err(|source| Error::Table {
                line,
                stream: name.to_string(),
                source: Box::new(source),
            })?;
        if !self.flushing.is_empty() {
            self.summary.overlapped_cuts += 1;
            tracing::debug!(stream = %name, earlier = self.flushing.len(), "batch cut while earlier ones are being written");
        }
        self.flushing.push_back(flushing);
        Ok(())
    }

    /// Commits every batch being written, in the order they were cut, then prints any STATE
    /// that was waiting for them.
    pub fn complete_flush(&mut self) -> Result<(), Error> {
        while !self.flushing.is_empty() {
            self.complete_next()?;
        }
        Ok(())
    }

    /// Commits the batches at the head of the queue whose data files are written.
    fn complete_ready(&mut self) -> Result<(), Error> {
        while self.flushing.front().is_some_and(flush::Flushing::is_ready) {
            self.complete_next()?;
        }
        Ok(())
    }

    /// Commits the oldest batch being written (waiting for its file), then prints any STATE
    /// that was waiting for it.
    fn complete_next(&mut self) -> Result<(), Error> {
        let Some(f) = self.flushing.pop_front() else {
            return Ok(());
        };
        let (line, name) = (f.line, f.stream.clone());
        let Some(stream) = self.streams.get_mut(&name) else {
            return Ok(());
        };
        let rows = flush::complete(&self.rt, stream, f).map_err(|source| Error::Table {
            line,
            stream: name,
            source: Box::new(source),
        })?;
        self.summary.rows_written += rows as u64;
        self.summary.commits += 1;
        self.emit_states()
    }
}

/// Batches whose files may still be in writing when the last ones are cut at the end of the
/// input (each cut then joins them).
const MAX_FLUSHING: usize = 1;

/// How often the loop looks whether the batch being written can be committed.
const FLUSH_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Upsert when the stream has a real key; the generated key alone means append-only (Stitch).
pub fn default_method(keys: &[String]) -> LoadMethod {
    if keys.is_empty() || (keys.len() == 1 && keys[0] == GENERATED_KEY) {
        LoadMethod::AppendOnly
    } else {
        LoadMethod::Upsert
    }
}

/// The `properties` of an object schema. `{"type": "object"}` without properties is fine
/// (columns come from the records); a schema that is not an object schema is an error.
pub fn object_properties(schema: &Json) -> Result<Vec<(&str, &Json)>, String> {
    let Some(obj) = schema.as_object() else {
        return Err("the schema is not a JSON object".into());
    };
    let is_object = match obj.get("type") {
        Some(Json::String(t)) => t == "object",
        Some(Json::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    match obj.get("properties") {
        Some(Json::Object(p)) => Ok(p.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Some(_) => Err("\"properties\" is not an object".into()),
        None if is_object => Ok(Vec::new()),
        None => Err("it has neither \"type\": \"object\" nor \"properties\"".into()),
    }
}
