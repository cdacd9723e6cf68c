//! One stream of the input and its table: the rows received and not yet committed (their Arrow
//! builders, per-row sequences and deletions, the batch's high-water mark, the data file they
//! are being handed to) and what has been committed, row counts that STATEs wait for.
//!
//! A stream owns its data; the message loop (`ingest.rs`) decides when to cut a batch, the
//! commit queue (`commits.rs`) when to commit it. Loading a record is here; cutting and
//! committing a batch in [`flush`]; an upsert's choice of rows in [`upsert`], an insert's in
//! [`insert`]; ACTIVATE_VERSION
//! in [`activate`].

pub mod activate;
pub mod flush;
pub mod insert;
pub mod upsert;

use std::borrow::Cow;
use std::time::Instant;

use serde_json::Value as Json;

use crate::batch::StreamBuffer;
use crate::columns::{declared_type, key_type, ColType, Value};
use crate::error::Error;
use crate::record::Fields;
use crate::sdc::{
    BATCHED_AT, DELETED_AT, EXTRACTED_AT, GENERATED_KEY, RECEIVED_AT, SEQUENCE, TABLE_VERSION,
};
use crate::settings::{LoadMethod, Settings};
use crate::table::marks::{BatchMarks, PRODUCER};
use crate::table::writer::FileWriter;
use crate::table::Table;

/// One stream of the input and its table.
pub struct Stream {
    name: String,
    table: Table,
    buf: StreamBuffer,
    keys: Vec<String>,
    method: LoadMethod,
    /// Per buffered row: its effective sequence (tap's or ours) and whether it is a deletion.
    seqs: Vec<i64>,
    deleted: Vec<bool>,
    /// Highest tap-provided `_sdc_sequence` of each producer buffered: the `txn` versions of
    /// the next commit.
    mark: BatchMarks,
    oldest: Option<Instant>,
    /// Rows buffered since the start / rows committed: a STATE waits until they meet.
    buffered_total: u64,
    committed_total: u64,
    /// `overwrite` replaces the table's contents on its first commit of the run only.
    overwritten: bool,
    /// The data file of the next commit, fed while the batch is parsed (see [`flush`]), and
    /// the rows and input bytes already handed to it.
    writer: Option<FileWriter>,
    spilled_rows: usize,
    spilled_bytes: usize,
    /// An automatic compaction failed in this run: it is not tried again until the next.
    compaction_failed: bool,
}

/// What became of a record given to [`Stream::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Buffered, to be committed with the stream's next batch.
    Row,
    /// A replay of a record an earlier run committed: skipped.
    Replay,
}

impl Stream {
    /// The stream `name`, whose table was opened as `table` (with its columns in `buf`).
    pub fn new(name: &str, table: Table, buf: StreamBuffer) -> Stream {
        Stream {
            name: name.to_string(),
            table,
            buf,
            keys: Vec::new(),
            method: LoadMethod::AppendOnly,
            seqs: Vec::new(),
            deleted: Vec::new(),
            mark: BatchMarks::default(),
            oldest: None,
            buffered_total: 0,
            committed_total: 0,
            overwritten: false,
            writer: None,
            spilled_rows: 0,
            spilled_bytes: 0,
            compaction_failed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Rows received and not yet part of a commit.
    pub fn pending_rows(&self) -> usize {
        self.buf.rows() + self.spilled_rows
    }

    /// Input bytes received and not yet part of a commit (what `batch_size_bytes` bounds).
    pub fn pending_bytes(&self) -> usize {
        self.buf.bytes() + self.spilled_bytes
    }

    /// Input bytes in Arrow builders, not yet handed to the data file.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.bytes()
    }

    /// When the oldest row not yet part of a batch arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    /// The stream's row count a STATE arriving now waits for, when some rows are not
    /// committed yet.
    pub fn uncommitted(&self) -> Option<u64> {
        (self.buffered_total > self.committed_total).then_some(self.buffered_total)
    }

    /// Whether the rows up to the stream's `n`th are committed.
    pub fn committed(&self, n: u64) -> bool {
        self.committed_total >= n
    }

    /// Whether buffered rows may go to the data file before the batch ends: not for an
    /// upsert or insert, which pick each key's row over the whole batch.
    pub fn streams_to_file(&self) -> bool {
        !self.method.by_key() || self.keys.is_empty()
    }

    /// Whether the next batch is only appended: it reads nothing of its table, so it need not
    /// wait for the batches before it (an upsert's rewrites and an overwrite's first removes
    /// read the table).
    pub fn appends_only(&self) -> bool {
        self.streams_to_file() && (self.method != LoadMethod::Overwrite || self.overwritten)
    }

    /// The table's mark committed by earlier runs (for the log).
    pub fn replay_mark(&self) -> Option<i64> {
        self.table.marks.replay()
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Applies a SCHEMA message: key properties, load method, declared columns.
    pub fn apply_schema(
        &mut self,
        settings: &Settings,
        props: Vec<(&str, &Json)>,
        key_properties: &[String],
    ) {
        let method = settings
            .load_method
            .unwrap_or(default_method(key_properties));
        self.keys = key_properties.to_vec();
        self.buf.set_keys(key_properties);
        self.method = method;
        // Only tables whose rows get replaced need deletion vectors; the others stay readable
        // by readers without them. Decided when this run creates the table.
        self.table.create_with_deletion_vectors =
            settings.deletion_vectors && method.by_key() && !self.keys.is_empty();
        // The metadata columns first: a record field of the same name (a webhook body is
        // anyone's JSON, and the tap declares its fields) must not decide their types, or the
        // target's own values no longer fit them; such a field's values go to siblings.
        self.buf.declare(SEQUENCE, ColType::Int64);
        if settings.add_record_metadata {
            for ts in [EXTRACTED_AT, RECEIVED_AT, BATCHED_AT, DELETED_AT] {
                self.buf.declare(ts, ColType::Timestamp);
            }
            self.buf.declare(TABLE_VERSION, ColType::Int64);
        }
        for (name, schema) in props {
            let declared = declared_type(schema);
            let ty = if key_properties.iter().any(|k| k == name) {
                key_type(declared)
            } else {
                declared
            };
            if let Some(ty) = ty {
                self.buf.declare(name, ty);
            }
        }
    }

    /// Loads one record's top-level fields into the buffer (`assigned`: the sequence and
    /// receipt time of a record without its own `_sdc_sequence`). A record an earlier run
    /// committed (its tap sequence at or below its producer's mark) is skipped, except in
    /// `overwrite`. A producer's first record reads its mark from the table (on `rt`).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        &mut self,
        rt: &tokio::runtime::Runtime,
        line: u64,
        fields: &Fields<'_>,
        version: Option<i64>,
        time_extracted: Option<&Cow<'_, str>>,
        bytes: usize,
        assigned: i64,
        add_meta: bool,
    ) -> Result<Loaded, Error> {
        let stream_name = self.name.as_str();
        let bad = |detail: String| Error::BadRecord {
            line,
            stream: stream_name.to_string(),
            detail,
        };
        // An upsert or insert merges by key: records whose key is null would collapse into
        // one row.
        let upsert = self.method.by_key();
        for key in &self.keys {
            match fields.iter().find(|(k, _)| k.as_ref() == key.as_str()) {
                None => {
                    return Err(Error::MissingKey {
                        line,
                        stream: stream_name.to_string(),
                        key: key.clone(),
                    })
                }
                Some((_, raw)) if upsert && raw.get().trim() == "null" => {
                    return Err(Error::NullKey {
                        line,
                        stream: stream_name.to_string(),
                        key: key.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        let mut values = Vec::with_capacity(fields.len());
        let (mut tap_seq, mut deleted, mut producer) = (None, false, None);
        let mut seen = [false; 5]; // extracted, received, batched, deleted, table version
        for (k, raw) in fields {
            let v = Value::from_raw(raw.get());
            if k.starts_with(crate::sdc::PREFIX) {
                match k.as_ref() {
                    SEQUENCE => tap_seq = if let Value::Int(i) = v { Some(i) } else { None },
                    // A string names the record's producer; anything else is no producer.
                    PRODUCER => {
                        producer = match &v {
                            Value::Str(s) => Some(s.clone()),
                            _ => None,
                        }
                    }
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
        let producer = producer.as_deref();
        if let (Some(p), Some(_)) = (producer, tap_seq) {
            if !self.table.marks.knows(p) {
                rt.block_on(self.table.learn_producer(p))
                    .map_err(|source| Error::Table {
                        line,
                        stream: stream_name.to_string(),
                        source: Box::new(source),
                    })?;
            }
        }
        if self.method != LoadMethod::Overwrite && self.table.marks.is_replay(producer, tap_seq) {
            return Ok(Loaded::Replay);
        }
        let buf = &mut self.buf;
        let row = buf.begin_row(bytes);
        for ((k, _), v) in fields.iter().zip(&values) {
            buf.push(row, k, v).map_err(|e| bad(e.to_string()))?;
        }
        let has_seq = fields.iter().any(|(k, _)| k.as_ref() == SEQUENCE);
        let seq = tap_seq.unwrap_or(assigned);
        if !has_seq {
            buf.push(row, SEQUENCE, &Value::Int(seq))
                .map_err(|e| bad(e.to_string()))?;
        }
        if add_meta {
            if !seen[0] {
                if let Some(t) = time_extracted {
                    buf.push(row, EXTRACTED_AT, &Value::Str(t.clone()))
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
            if !seen[1] {
                // The clock: now, strictly increasing.
                buf.push(row, RECEIVED_AT, &Value::Micros(assigned))
                    .map_err(|e| bad(e.to_string()))?;
            }
            if !seen[4] {
                if let Some(v) = version {
                    buf.push(row, TABLE_VERSION, &Value::Int(v))
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        self.seqs.push(seq);
        self.deleted.push(deleted);
        self.mark.observe(producer, tap_seq);
        self.oldest.get_or_insert_with(Instant::now);
        self.buffered_total += 1;
        Ok(Loaded::Row)
    }
}

/// Upsert when the stream has a real key; the generated key alone means append-only (Stitch).
pub fn default_method(keys: &[String]) -> LoadMethod {
    if keys.is_empty() || (keys.len() == 1 && keys[0] == GENERATED_KEY) {
        LoadMethod::AppendOnly
    } else {
        LoadMethod::Upsert
    }
}
