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
    #[error("emitting records: {0}")]
    Emission(String),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Records emitted per stream (rejected streams included).
    pub records: BTreeMap<String, u64>,
    pub pruned: u64,
    /// True when max_records or max_seconds ended the run before the high-water mark.
    pub truncated: bool,
}

impl Summary {
    fn count_record(&mut self, stream: &str) {
        match self.records.get_mut(stream) {
            Some(n) => *n += 1,
            None => {
                self.records.insert(stream.to_owned(), 1);
            }
        }
    }
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let parallel = Parallelism {
        threads,
        chunk: EMIT_CHUNK,
    };
    run_with(settings, catalog, state, out, parallel)
}

/// How a run spreads over threads (the output never depends on it).
#[derive(Debug, Clone, Copy)]
struct Parallelism {
    /// Threads for the prescan and for formatting records.
    threads: usize,
    /// Messages per chunk of the parallel prescan and emission; a stream of one chunk stays on
    /// the main thread.
    chunk: usize,
}

fn run_with(
    settings: &Settings,
    catalog: Option<&Catalog>,
    state: Option<&Value>,
    out: impl Write,
    parallel: Parallelism,
) -> Result<Summary, TapError> {
    let mut spool = SpoolReader::open(&settings.spool_path)?;
    // One source: its messages are (nearly) all the spool holds, so a scan in sequence order
    // beats walking the source's index and seeking every row.
    spool.scan_by_seq(settings.sources.len() == 1);
    let marks = bookmarks(state)?;
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
    let mut run = Emission {
        settings,
        w: MessageWriter::new(std::io::BufWriter::with_capacity(1 << 20, out)),
        marks,
        emitted_total: 0,
        since_state: 0,
        progress: singer::metrics::Progress::new("tap"),
        started: Instant::now(),
    };
    let threads = parallel.threads;
    for source in settings.sources.values() {
        let entry = match catalog {
            Some(c) => match c.entry(&source.name) {
                Some(e) if e.is_selected() => Some(e),
                _ => continue,
            },
            None => None,
        };
        let after = run.marks.get(&source.name).copied().unwrap_or(0);
        let mut emitter = StreamEmitter::new(source, entry);
        // Chunks for the threads (read off the index): worth it only with a thread to spare.
        let prescan_wanted =
            settings.schema_prescan && source.record_shape == RecordShape::Unpacked;
        let cuts = if prescan_wanted && threads > 1 {
            spool.cut_every(&source.name, after, until, parallel.chunk)?
        } else {
            Vec::new()
        };
        let ranges = Ranges { after, cuts, until };
        if prescan_wanted {
            prescan(&spool, &mut emitter, &ranges, threads)?;
        }
        let stopped = if emitter.prescanned && threads > 1 && ranges.len() > 1 {
            emit_parallel(
                &spool,
                &mut emitter,
                &mut run,
                &mut summary,
                &ranges,
                threads,
            )?
        } else {
            emit_sequential(&spool, &mut emitter, &mut run, &mut summary, after, until)?
        };
        if stopped {
            summary.truncated = true;
            break;
        }
    }
    // The final STATE: every stream's bookmark, even untouched ones, so none is lost.
    if !run.marks.is_empty() {
        run.w.write_state(&state_value(&run.marks))?;
    }
    run.w.flush()?;
    Ok(summary)
}

/// A run's output and where it stands: bookmarks, counts, and when the next STATE is due.
struct Emission<'s, W: Write> {
    settings: &'s Settings,
    w: MessageWriter<std::io::BufWriter<W>>,
    marks: BTreeMap<String, i64>,
    emitted_total: u64,
    since_state: u64,
    progress: singer::metrics::Progress,
    started: Instant,
}

impl<W: Write> Emission<'_, W> {
    /// True once `max_records` or `max_seconds` says the run must stop before the next record.
    fn out_of_budget(&self) -> bool {
        self.settings
            .max_records
            .is_some_and(|max| self.emitted_total >= max)
            || self
                .settings
                .max_duration
                .is_some_and(|d| self.started.elapsed() >= d)
    }

    /// Accounts for a record just written; writes a STATE every `state_interval_records`.
    fn emitted(&mut self, stream: &str, seq: i64, body_bytes: usize) -> Result<(), TapError> {
        if self.count(stream, seq, body_bytes) {
            self.write_state()?;
        }
        Ok(())
    }

    /// Accounts for a record; true when a STATE is due after it.
    fn count(&mut self, stream: &str, seq: i64, body_bytes: usize) -> bool {
        self.progress.add(1, body_bytes as u64);
        match self.marks.get_mut(stream) {
            Some(mark) => *mark = seq,
            None => {
                self.marks.insert(stream.to_owned(), seq);
            }
        }
        self.emitted_total += 1;
        self.since_state += 1;
        self.since_state >= self.settings.state_interval_records
    }

    fn write_state(&mut self) -> Result<(), TapError> {
        self.w.write_state(&state_value(&self.marks))?;
        self.w.flush()?;
        self.since_state = 0;
        Ok(())
    }
}

/// Emits a stream's messages in `(after, until]` on this thread. Returns true when the run's
/// budget stopped it.
fn emit_sequential<W: Write>(
    spool: &SpoolReader,
    emitter: &mut StreamEmitter<'_>,
    run: &mut Emission<'_, W>,
    summary: &mut Summary,
    after: i64,
    until: i64,
) -> Result<bool, TapError> {
    let stream = emitter.source.name.as_str();
    let mut stop = false;
    spool.for_each_ref::<TapError>(stream, after, until, |m| {
        if run.out_of_budget() {
            stop = true;
            return Ok(false);
        }
        emitter.emit(&mut run.w, &m, summary)?;
        run.emitted(stream, m.seq, m.body.len()).map(|()| true)
    })?;
    Ok(stop)
}

/// Messages per chunk of the parallel prescan and emission.
const EMIT_CHUNK: usize = 4_096;

/// `(after, until]` cut into chunks: chunk `i` is `(bound(i), bound(i + 1)]`.
struct Ranges {
    after: i64,
    cuts: Vec<i64>,
    until: i64,
}

impl Ranges {
    fn len(&self) -> usize {
        self.cuts.len() + 1
    }

    fn get(&self, i: usize) -> (i64, i64) {
        let bound = |i: usize| match i {
            0 => self.after,
            i if i > self.cuts.len() => self.until,
            i => self.cuts[i - 1],
        };
        (bound(i), bound(i + 1))
    }
}

/// Record lines a worker formatted for one chunk, in sequence order.
#[derive(Default)]
struct Chunk {
    lines: Vec<u8>,
    /// Per message: its sequence, where its line ends in `lines`, its body's size, and whether
    /// it went to the rejected stream.
    records: Vec<(i64, usize, usize, bool)>,
    /// Message id and reason of each rejected record, in order.
    warnings: Vec<(String, String)>,
    /// What stopped the worker after the records above (a missing key, a spool error).
    error: Option<TapError>,
}

/// Lines of a chunk formatted but not yet written: `lines[from..to]`.
struct Pending<'c> {
    lines: &'c [u8],
    from: usize,
    to: usize,
}

impl Pending<'_> {
    fn write<W: Write>(&mut self, w: &mut MessageWriter<W>) -> std::io::Result<()> {
        w.write_lines(self.lines.get(self.from..self.to).unwrap_or_default())?;
        self.from = self.to;
        Ok(())
    }
}

/// Emits a prescanned stream on `threads` threads: workers format the records of chunks `k`,
/// `k + threads`, … through their own connections, and this thread writes the chunks in order,
/// with the SCHEMA lines, the bookkeeping and the STATE lines exactly where a sequential run
/// puts them (the output is the same byte for byte). Returns true when the run's budget
/// stopped it.
fn emit_parallel<W: Write>(
    spool: &SpoolReader,
    emitter: &mut StreamEmitter<'_>,
    run: &mut Emission<'_, W>,
    summary: &mut Summary,
    ranges: &Ranges,
    threads: usize,
) -> Result<bool, TapError> {
    let (source, entry) = (emitter.source, emitter.entry);
    let stream = source.name.as_str();
    let rejected = discover::rejected_stream(source);
    let unparsable = emitter.unparsable.clone();
    let unparsable = &unparsable;
    std::thread::scope(|s| {
        let mut inboxes = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        // Written chunks' line buffers go back to their worker for reuse: a fresh 4 MB buffer
        // per chunk was grown by copying and faulted in page by page.
        let mut returns = Vec::with_capacity(threads);
        for k in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
            inboxes.push(rx);
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            returns.push(back_tx);
            let reader = spool.reopen();
            handles.push(s.spawn(move || {
                let reader = match reader {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Chunk {
                            error: Some(e.into()),
                            ..Chunk::default()
                        });
                        return;
                    }
                };
                let mut worker = StreamEmitter::new(source, entry);
                worker.prescanned = true;
                worker.unparsable = unparsable.clone();
                // SCHEMA lines are the writing thread's to place.
                worker.schema_sent = true;
                worker.rejected_schema_sent = true;
                // Rejections are logged when written: a worker runs ahead of what is written.
                worker.held_warnings = Some(Vec::new());
                let mut w = MessageWriter::new(Vec::with_capacity(1 << 20));
                let mut ignored = Summary::default();
                for i in (k..ranges.len()).step_by(threads) {
                    let (lo, hi) = ranges.get(i);
                    let mut records = Vec::new();
                    let done = reader.for_each_ref::<TapError>(stream, lo, hi, |m| {
                        let kind = worker.emit(&mut w, &m, &mut ignored)?;
                        let end = w.get_mut().len();
                        records.push((m.seq, end, m.body.len(), kind == Emitted::Rejected));
                        Ok(true)
                    });
                    let fresh = back_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(1 << 20));
                    let lines = std::mem::replace(w.get_mut(), fresh);
                    let warnings = worker.held_warnings.replace(Vec::new()).unwrap_or_default();
                    let error = done.err();
                    let failed = error.is_some();
                    let chunk = Chunk {
                        lines,
                        records,
                        warnings,
                        error,
                    };
                    if tx.send(chunk).is_err() || failed {
                        return;
                    }
                }
            }));
        }
        for i in 0..ranges.len() {
            let Ok(chunk) = inboxes[i % threads].recv() else {
                // Only a worker that panicked hangs up early: join them to say so.
                drop(inboxes);
                let panicked = handles.into_iter().any(|h| h.join().is_err());
                return Err(TapError::Emission(format!(
                    "stream {stream}: an emission thread {}",
                    if panicked {
                        "panicked"
                    } else {
                        "stopped without a reason"
                    }
                )));
            };
            let mut warnings = chunk.warnings.iter();
            // Lines go out in runs, cut only where a SCHEMA or STATE line goes between them: a
            // run is written in one call, straight through when larger than the buffer.
            let mut pending = Pending {
                lines: &chunk.lines,
                from: 0,
                to: 0,
            };
            for &(seq, line_end, body_bytes, is_rejected) in &chunk.records {
                if run.out_of_budget() {
                    pending.write(&mut run.w)?;
                    return Ok(true);
                }
                if is_rejected && !emitter.rejected_schema_sent {
                    pending.write(&mut run.w)?;
                    emitter.send_rejected_schema(&mut run.w)?;
                } else if !is_rejected && !emitter.schema_sent {
                    pending.write(&mut run.w)?;
                    emitter.send_schema(&mut run.w)?;
                }
                pending.to = line_end;
                let name = if is_rejected {
                    if let Some((id, reason)) = warnings.next() {
                        tracing::warn!(stream, message_id = %id, reason = %reason, "message sent to {rejected}");
                    }
                    &rejected
                } else {
                    stream
                };
                summary.count_record(name);
                if run.count(stream, seq, body_bytes) {
                    pending.write(&mut run.w)?;
                    run.write_state()?;
                }
            }
            pending.write(&mut run.w)?;
            if let Some(e) = chunk.error {
                // The one-thread path looks at the budget before each message, so it stops
                // before the message that failed here when the budget is already spent.
                if run.out_of_budget() {
                    return Ok(true);
                }
                return Err(e);
            }
            let mut lines = chunk.lines;
            lines.clear();
            // A worker that has finished no longer listens: the buffer is then dropped.
            let _ = returns[i % threads].send(lines);
        }
        Ok(false)
    })
}

/// Types every message of the stream in `ranges` before the first record is emitted. With
/// more than one chunk and thread, `threads` threads take the chunks in turn (the next free
/// chunk, so a thread slowed by large messages takes fewer), each through its own connection,
/// and their findings are merged: the schema is a union of type sets, sorted by name, so the
/// order of the merge does not show, and the unparsable sequences are sorted.
fn prescan(
    spool: &SpoolReader,
    emitter: &mut StreamEmitter<'_>,
    ranges: &Ranges,
    threads: usize,
) -> Result<(), TapError> {
    let stream = emitter.source.name.as_str();
    if threads < 2 || ranges.len() < 2 {
        spool.for_each_body::<TapError>(stream, ranges.after, ranges.until, |seq, body| {
            emitter.prescan(seq, body);
            Ok(())
        })?;
        emitter.prescanned = true;
        return Ok(());
    }
    let (source, entry) = (emitter.source, emitter.entry);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let next = &next;
    let parts = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let reader = spool.reopen();
                s.spawn(move || -> Result<StreamEmitter<'_>, TapError> {
                    let reader = reader?;
                    let mut part = StreamEmitter::new(source, entry);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= ranges.len() {
                            return Ok(part);
                        }
                        let (lo, hi) = ranges.get(i);
                        reader.for_each_body::<TapError>(stream, lo, hi, |seq, body| {
                            part.prescan(seq, body);
                            Ok(())
                        })?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(TapError::Prescan(format!(
                        "stream {stream}: a schema prescan thread panicked"
                    )))
                })
            })
            .collect::<Vec<_>>()
    });
    for part in parts {
        let part = part?;
        emitter.schema.absorb(part.schema);
        emitter.unparsable.extend(part.unparsable);
    }
    emitter.unparsable.sort_unstable();
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
    /// `Some`: rejections are collected (message id, reason) instead of logged at once.
    held_warnings: Option<Vec<(String, String)>>,
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
            held_warnings: None,
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
    ) -> Result<Emitted, TapError> {
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
            self.write_schema(w)?;
        }
        w.write_record_raw(&self.source.name, &self.line, Some(&self.received_at))?;
        summary.count_record(&self.source.name);
        Ok(Emitted::Record)
    }

    /// Writes the stream's SCHEMA: every field and type seen so far (selected by the catalog).
    fn write_schema<W: Write>(&mut self, w: &mut MessageWriter<W>) -> Result<(), TapError> {
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
        Ok(())
    }

    /// The stream's SCHEMA, unless it was sent already.
    fn send_schema<W: Write>(&mut self, w: &mut MessageWriter<W>) -> Result<(), TapError> {
        if !self.schema_sent {
            self.write_schema(w)?;
        }
        Ok(())
    }

    /// The rejected stream's SCHEMA, unless it was sent already.
    fn send_rejected_schema<W: Write>(&mut self, w: &mut MessageWriter<W>) -> Result<(), TapError> {
        if !self.rejected_schema_sent {
            w.write_schema(
                &discover::rejected_stream(self.source),
                &discover::rejected_schema(),
                &["message_id".into()],
                &[],
            )?;
            self.rejected_schema_sent = true;
        }
        Ok(())
    }

    fn reject<W: Write>(
        &mut self,
        w: &mut MessageWriter<W>,
        m: &MessageRef<'_>,
        reason: &str,
        summary: &mut Summary,
    ) -> Result<Emitted, TapError> {
        let stream = discover::rejected_stream(self.source);
        self.send_rejected_schema(w)?;
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
        match &mut self.held_warnings {
            Some(held) => held.push((m.id.to_owned(), reason.to_owned())),
            None => {
                tracing::warn!(stream = %self.source.name, message_id = %m.id, reason, "message sent to {stream}")
            }
        }
        summary.count_record(&stream);
        Ok(Emitted::Rejected)
    }
}

/// Where [`StreamEmitter::emit`] sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emitted {
    Record,
    Rejected,
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

    /// A spool of `n` messages of the default source: sparse fields, a key that some lack, and
    /// bodies that are not JSON objects at `bad`.
    fn fill_spool(path: &std::path::Path, n: i64, bad: &[i64]) {
        let mut conn = crate::spool::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        for seq in 1..=n {
            let body = if bad.contains(&seq) {
                "[\"not an object\"]".to_owned()
            } else if seq % 997 == 0 {
                format!(r#"{{"x":{seq}}}"#)
            } else {
                format!(
                    r#"{{"id":"k{}","n":{seq},"f{}":"{}","nested":{{"a":[{seq}]}}}}"#,
                    seq % 5_000,
                    seq % 13,
                    "é\\\"q"
                )
            };
            tx.execute(
                "INSERT INTO messages (seq, id, source, received_at, delivery_id, part, headers, query, body)
                 VALUES (?1, ?2, 'data', ?1, ?3, 0, '{}', '{}', ?4)",
                rusqlite::params![
                    seq,
                    format!("m{seq}"),
                    (seq % 3 == 0).then(|| format!("d{seq}")),
                    body
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn output(
        settings: &Settings,
        state: Option<&Value>,
        parallel: Parallelism,
    ) -> (String, Result<Summary, String>) {
        let mut out = Vec::new();
        let summary =
            run_with(settings, None, state, &mut out, parallel).map_err(|e| e.to_string());
        (String::from_utf8(out).unwrap(), summary)
    }

    #[test]
    fn records_formatted_on_several_threads_come_out_as_one_thread_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        fill_spool(&path, 5_000, &[3, 1_234, 4_999]);
        let one = Parallelism {
            threads: 1,
            chunk: 1,
        };
        let three = Parallelism {
            threads: 3,
            chunk: 211,
        };
        // The parallel path is taken: the chunk bounds cut the run (and a cut never leaves an
        // empty last chunk).
        let reader = SpoolReader::open(&path).unwrap();
        let cuts = reader.cut_every("data", 0, 5_000, 211).unwrap();
        assert_eq!(cuts.len(), 5_000 / 211);
        assert_eq!((cuts[0], cuts[1]), (211, 422));
        assert_eq!(reader.cut_every("data", 0, 422, 211).unwrap(), [211]);
        assert!(reader.cut_every("data", 0, 211, 211).unwrap().is_empty());
        let spool = path.display().to_string();
        let cases = [
            (
                json!({"spool_path": spool, "state_interval_records": 333}),
                None,
            ),
            // Rejected messages (no key) interleave with records; STATE lines fall mid-chunk.
            (
                json!({"spool_path": spool, "state_interval_records": 1_000,
                       "sources": {"data": {"primary_key": "id"}}}),
                None,
            ),
            // The budget stops the run inside a chunk.
            (json!({"spool_path": spool, "max_records": 2_500}), None),
            // The budget runs out just before the first message that lacks the key (seq 997):
            // the run stops there, as one thread does, instead of failing.
            (
                json!({"spool_path": spool, "max_records": 996,
                       "sources": {"data": {"primary_key": "id", "on_missing_key": "fail"}}}),
                None,
            ),
            // A missing key that must fail the run: the records before it, then the error.
            (
                json!({"spool_path": spool, "state_interval_records": 100,
                       "sources": {"data": {"primary_key": "id", "on_missing_key": "fail"}}}),
                None,
            ),
            // From a bookmark in the middle (last: the first of the two runs prunes up to it).
            (
                json!({"spool_path": spool}),
                Some(json!({"bookmarks": {"data": {"_sdc_sequence": 3_100}}})),
            ),
        ];
        for (config, state) in cases {
            let serde_json::Value::Object(map) = config.clone() else {
                unreachable!()
            };
            let settings = Settings::from_map(map).unwrap();
            let (seq_out, seq_summary) = output(&settings, state.as_ref(), one);
            let (par_out, par_summary) = output(&settings, state.as_ref(), three);
            assert!(seq_out.lines().count() > 3, "{config}: {seq_out:.300}");
            // The first run prunes what a bookmark covers; the second finds nothing to prune.
            let emitted = |s: Result<Summary, String>| s.map(|s| (s.records, s.truncated));
            assert_eq!(emitted(seq_summary), emitted(par_summary), "{config}");
            assert!(seq_out == par_out, "{config}: outputs differ");
        }
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
        let whole = Ranges {
            after: 0,
            cuts: Vec::new(),
            until: 3_000,
        };
        // Chunks of 250: twelve, taken by three threads in whatever order they come free.
        let chunked = Ranges {
            after: 0,
            cuts: spool.cut_every("data", 0, 3_000, 250).unwrap(),
            until: 3_000,
        };
        assert_eq!(chunked.len(), 12);
        assert_eq!(chunked.get(0), (0, 250));
        assert_eq!(chunked.get(11), (2_750, 3_000));
        let mut one = StreamEmitter::new(source, None);
        prescan(&spool, &mut one, &whole, 3).unwrap();
        let mut three = StreamEmitter::new(source, None);
        prescan(&spool, &mut three, &chunked, 3).unwrap();
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
