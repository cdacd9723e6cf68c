//! The message loop: SCHEMA / RECORD / STATE / ACTIVATE_VERSION → per-stream buffers → commits
//! → STATE lines on the output, in the order the durability chain demands (BRIEF §2).
//!
//! This module decides *when*: a batch is cut on the byte budget (all streams together), a
//! stream's row limit or its age; a stream hands its rows to its data file in eighths of the
//! budget. The streams own their rows (`stream/`), the commit queue orders the commits
//! (`commits.rs`), and STATEs wait for the commits they cover (`states.rs`).
//! BATCH messages' rows and the quarantine of invalid records are in `ingest/rows.rs`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use singer::message::{Message, RecordMessage, SchemaMessage};
use singer::reader::Line;

use crate::batch::StreamBuffer;
use crate::commits::Commits;
use crate::error::Error;
use crate::pump::{Chunk, Pump};
use crate::quarantine::Origin;
use crate::record::Fields;
use crate::sdc::SeqClock;
use crate::settings::Settings;
use crate::states::States;
use crate::stream::{Loaded, Stream};
use crate::table::{orphans, Table};

mod rows;

/// What a run did, for the closing log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub skipped: u64,
    pub rows_written: u64,
    /// Records `load_method: insert` did not write because their key was in the table (or
    /// earlier in the batch): valmi's Create of a row that exists is no error.
    pub inserts_skipped: u64,
    pub commits: u64,
    pub states: u64,
    /// Batches cut at the end of the input while an earlier batch's file was still being
    /// written (see `Ingest::flush_stream`).
    pub overlapped_cuts: u64,
}

pub struct Ingest<'s, W: Write> {
    settings: &'s Settings,
    rt: tokio::runtime::Runtime,
    streams: HashMap<String, Stream>,
    claimed: HashSet<PathBuf>,
    states: States,
    clock: SeqClock,
    output: W,
    /// Input lines and bytes read, logged at intervals on stderr.
    progress: singer::metrics::Progress,
    /// The previous record's field count: the capacity hint of the next one's.
    width: usize,
    /// Batches whose data files are being written, committed in the order they were cut: the
    /// one written while the next is parsed, and at the end of the input possibly the last
    /// two (see [`Self::flush_stream`]).
    commits: Commits,
    /// The input has ended: the last batches are being cut.
    ending: bool,
    /// The first compaction or checkpoint that failed after a commit (the data is committed):
    /// the run exits non-zero with it once the load is done.
    maintenance: Option<Error>,
    summary: Summary,
    /// When the run started: files of ours older than it (by a margin) that no commit
    /// references are another run's leftovers.
    started: std::time::SystemTime,
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
            states: States::default(),
            progress: singer::metrics::Progress::new("target"),
            clock: SeqClock::default(),
            output,
            commits: Commits::default(),
            ending: false,
            maintenance: None,
            width: 16,
            summary: Summary::default(),
            started: std::time::SystemTime::now(),
        })
    }

    pub fn run(mut self, input: impl BufRead + Send + 'static) -> Result<Summary, Error> {
        crate::failpoint::check_setting().map_err(Error::Setting)?;
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
        match self.maintenance.take() {
            Some(e) => Err(e),
            None => Ok(self.summary),
        }
    }

    /// After a failure (`e`, returned): the stream it is a failure of commits nothing more;
    /// the batches of other streams already cut are committed, in order, as they would have
    /// been had their files not been written in the background, each stream stopping at its
    /// own first failure, and the STATEs they release printed (see `commits.rs`); then the
    /// data files of rows not committed go.
    fn fail(&mut self, e: Error) -> Error {
        self.commits.stream_failed(&e);
        loop {
            match self.complete_next() {
                Ok(true) => {}
                Ok(false) => break,
                Err(later) => {
                    tracing::error!(error = %later, "a batch cut before the failure was not committed either");
                }
            }
        }
        self.discard_uncommitted();
        e
    }

    /// The data files of rows not committed (batches cut but not committed, because a commit
    /// before them failed; rows handed to a file since the last cut) are removed, so that a
    /// failed run leaves nothing outside a local table's log.
    fn discard_uncommitted(&mut self) {
        self.commits.discard_all(&self.streams);
        for stream in self.streams.values_mut() {
            stream.discard_writer();
        }
    }

    fn run_lines(&mut self, pump: &Pump, line_no: &mut u64) -> Result<(), Error> {
        loop {
            let mut wait = self.until_next_age_flush();
            if !self.commits.is_empty() {
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
            let loaded = self.on_fields(
                line_no,
                &r.stream,
                r.fields,
                r.version,
                r.time_extracted,
                line.bytes.len(),
            );
            let origin = Origin::Record {
                line: line_no,
                raw_line: line.bytes,
            };
            return self.quarantine_if_invalid(origin, loaded);
        }
        match line.message()? {
            Message::Schema(m) => self.on_schema(line_no, m)?,
            Message::Record(r) => {
                let loaded = self.on_record(line_no, r, line.bytes.len());
                let origin = Origin::Record {
                    line: line_no,
                    raw_line: line.bytes,
                };
                self.quarantine_if_invalid(origin, loaded)?
            }
            Message::State(s) => {
                self.states.receive(s.value, &self.streams);
                self.emit_states()?;
            }
            Message::ActivateVersion(a) => {
                // Rows of the new version are committed first, then older versions dropped.
                self.stream_mut(line_no, &a.stream)?;
                self.flush_stream(line_no, &a.stream)?;
                self.complete_flush()?;
                let state = self.states.last();
                let stream =
                    self.streams
                        .get_mut(&a.stream)
                        .ok_or_else(|| Error::RecordBeforeSchema {
                            line: line_no,
                            stream: a.stream.to_string(),
                        })?;
                stream
                    .activate_version(&self.rt, a.version, self.settings.hard_delete, state)
                    .map_err(|source| Error::Table {
                        line: line_no,
                        stream: a.stream.to_string(),
                        source: Box::new(source),
                    })?;
            }
            Message::Batch(b) => self.on_batch(line_no, b)?,
        }
        Ok(())
    }

    /// How long until the oldest buffered row reaches `max_batch_age` (`None`: nothing buffered).
    fn until_next_age_flush(&self) -> Option<std::time::Duration> {
        let age = self.settings.max_batch_age;
        self.streams
            .values()
            .filter_map(Stream::oldest)
            .map(|t| age.saturating_sub(t.elapsed()))
            .min()
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
            tracing::info!(stream = %m.stream, table = %table.root.display(), watermark = ?table.marks.replay(), "opened table");
            let cutoff = orphans::cutoff(self.started, self.settings.max_batch_age);
            match table.remove_orphans(cutoff) {
                Ok(removed) if !removed.is_empty() => {
                    tracing::warn!(stream = %m.stream, files = ?removed, "removed files of earlier runs that no commit references");
                }
                Ok(_) => {}
                // Hygiene only: the load goes on (it writes new files, never those).
                Err(e) => {
                    tracing::warn!(stream = %m.stream, error = %e, "could not sweep the table for orphan files")
                }
            }
            let stream = Stream::new(
                &m.stream,
                table,
                StreamBuffer::new(registry).with_max_columns(self.settings.max_columns),
            );
            self.streams.insert(m.stream.clone(), stream);
        } else if self
            .streams
            .get(&m.stream)
            .is_some_and(|s| s.keys() != m.key_properties.as_slice() && s.pending_rows() > 0)
        {
            // Rows buffered under the old keys are merged under the old keys.
            self.flush_stream(line, &m.stream)?;
        }
        if let Some(stream) = self.streams.get_mut(&m.stream) {
            stream.apply_schema(self.settings, props, &m.key_properties);
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
                detail: format!("{}: {e}", crate::quarantine::NOT_AN_OBJECT),
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

    /// Loads one record's top-level fields into its stream, then cuts or hands over the
    /// stream's rows when they reach a limit.
    fn on_fields(
        &mut self,
        line: u64,
        stream_name: &str,
        fields: Fields<'_>,
        version: Option<i64>,
        time_extracted: Option<Cow<'_, str>>,
        bytes: usize,
    ) -> Result<(), Error> {
        let add_meta = self.settings.add_record_metadata;
        let assigned = self.clock.tick();
        let stream =
            self.streams
                .get_mut(stream_name)
                .ok_or_else(|| Error::RecordBeforeSchema {
                    line,
                    stream: stream_name.to_string(),
                })?;
        let loaded = stream.load(
            &self.rt,
            line,
            &fields,
            version,
            time_extracted.as_ref(),
            bytes,
            assigned,
            add_meta,
        )?;
        if loaded == Loaded::Replay {
            self.summary.skipped += 1;
            return Ok(());
        }
        self.summary.records += 1;
        if let Some(limit) = self.settings.batch_size_rows {
            if stream.pending_rows() >= limit {
                return self.flush_stream(line, stream_name);
            }
        }
        if let Some(spill) = self.settings.spill_bytes() {
            if stream.buffered_bytes() >= spill && stream.streams_to_file() {
                stream.spill(self.settings).map_err(|source| Error::Table {
                    line,
                    stream: stream_name.to_string(),
                    source: Box::new(source),
                })?;
            }
        }
        Ok(())
    }

    /// Prints the newest STATE whose rows are all committed.
    fn emit_states(&mut self) -> Result<(), Error> {
        if self.states.emit(&self.streams, &mut self.output)? {
            self.summary.states += 1;
        }
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
            .filter(|s| s.oldest().is_some_and(|t| t.elapsed() >= age))
            .map(|s| s.name().to_string())
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
    fn flush_stream(&mut self, line: u64, name: &str) -> Result<(), Error> {
        let Some(stream) = self.streams.get(name).filter(|s| s.pending_rows() > 0) else {
            return Ok(());
        };
        if stream.appends_only() && self.ending {
            self.complete_ready()?;
            while self.commits.len() > MAX_FLUSHING {
                self.complete_next()?;
            }
        } else {
            self.complete_flush()?;
        }
        let state = self.states.last();
        let Some(stream) = self.streams.get_mut(name) else {
            return Ok(());
        };
        let flushing = stream
            .prepare(self.settings, state, line)
            .map_err(|source| Error::Table {
                line,
                stream: name.to_string(),
                source: Box::new(source),
            })?;
        if !self.commits.is_empty() {
            self.summary.overlapped_cuts += 1;
            tracing::debug!(stream = %name, earlier = self.commits.len(), "batch cut while earlier ones are being written");
        }
        self.commits.push(flushing);
        Ok(())
    }

    /// Commits every batch being written, in the order they were cut, then prints any STATE
    /// that was waiting for them.
    fn complete_flush(&mut self) -> Result<(), Error> {
        while self.complete_next()? {}
        Ok(())
    }

    /// Commits the batches at the head of the queue whose data files are written.
    fn complete_ready(&mut self) -> Result<(), Error> {
        while self.commits.head_ready() {
            self.complete_next()?;
        }
        Ok(())
    }

    /// Commits the oldest batch being written (waiting for its file), then prints any STATE
    /// that was waiting for it; `false` when no batch was left.
    fn complete_next(&mut self) -> Result<bool, Error> {
        let Some(done) = self.commits.complete_next(&self.rt, &mut self.streams)? else {
            return Ok(false);
        };
        self.summary.rows_written += done.rows as u64;
        self.summary.inserts_skipped += done.skipped as u64;
        self.summary.commits += 1;
        if let Some((what, source)) = done.maintenance {
            // Reported when the load ends: the batch is committed, the data safe.
            self.maintenance.get_or_insert(Error::Maintenance {
                stream: done.stream,
                what: what.name(),
                source: Box::new(source),
            });
        }
        self.emit_states()?;
        Ok(true)
    }
}

/// Batches whose files may still be in writing when the last ones are cut at the end of the
/// input (each cut then joins them).
const MAX_FLUSHING: usize = 1;

/// How often the loop looks whether the batch being written can be committed.
const FLUSH_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The `properties` of an object schema. `{"type": "object"}` without properties is fine
/// (columns come from the records); a schema that is not an object schema is an error.
pub fn object_properties(
    schema: &serde_json::Value,
) -> Result<Vec<(&str, &serde_json::Value)>, String> {
    use serde_json::Value as Json;
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
