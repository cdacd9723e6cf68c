//! Turning a stream's buffer into one Delta commit, per load method: append, upsert (with
//! hard deletes), overwrite; and ACTIVATE_VERSION's removal of older versions.

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, SaveMode};
use serde_json::{json, Map, Value as Json};

use crate::ingest::{now_micros, Ingest, Stream, BATCHED_AT, TABLE_VERSION};
use crate::settings::{LoadMethod, Settings};
use crate::table::merge::{encode_key, key_columns, latest_per_key, rewrite_files, KeyProbe};
use crate::table::{append_operation, ClosedFile, FileWriter, TableError};
use crate::Error;

/// A stream's batch on its way to the table: the rewrites (upserts) are done, its data file is
/// being written on its own thread, and [`complete`] commits it. Encoding the Parquet file (the
/// costliest step of a flush) thus overlaps parsing the next batch on the other core.
pub struct Flushing {
    pub stream: String,
    /// The input line that triggered the flush (named by errors).
    pub line: u64,
    actions: Vec<Action>,
    operation: DeltaOperation,
    /// The registry's column count when the batch was built: the schema this commit records.
    columns: usize,
    high_water: Option<i64>,
    info: Map<String, Json>,
    /// Rows buffered by the stream up to this batch: what its STATEs wait for.
    buffered_total: u64,
    rows: usize,
    replaced: usize,
    file: Option<ClosedFile>,
    /// Files the upsert wrote besides the data file (rewritten files, a deletion vector file).
    new_files: Vec<String>,
}

impl Flushing {
    /// Whether [`complete`] would not have to wait for the data file.
    pub fn is_ready(&self) -> bool {
        self.file.as_ref().is_none_or(ClosedFile::is_finished)
    }

    /// The batch will not be committed (the run failed): its data file goes, and the files
    /// its upsert wrote (never the files it re-`add`s with a new deletion vector: they hold
    /// committed rows).
    pub fn discard(self, table: &crate::table::Table) {
        if let Some(file) = self.file {
            file.discard();
        }
        discard_new(table, &self.new_files);
    }
}

/// For a commit's error: a conflict is found before the log is written, so the deletion
/// vector and rewritten files an upsert wrote for it go too (the commit itself removes the
/// data files it would have added).
fn discard_if_refused<'a>(
    table: &'a crate::table::Table,
    paths: &'a [String],
) -> impl Fn(&TableError) + 'a {
    move |e| {
        if matches!(e, TableError::Conflict { .. }) {
            discard_new(table, paths);
        }
    }
}

/// Removes files an upsert wrote for a batch that will not be committed.
fn discard_new(table: &crate::table::Table, paths: &[String]) {
    for path in paths {
        table.discard_new_file(path);
    }
}

/// Hands the stream's buffered rows to its data file being written (opened now if need be)
/// without committing them: the file grows while the input is parsed, and the commit at the
/// end of the batch ([`prepare`], [`complete`]) finds most of it encoded already. Only for
/// streams that are not upserted (an upsert needs the whole batch to pick the latest row of
/// each key), see [`Stream::streams_to_file`].
pub fn spill(stream: &mut Stream, settings: &Settings) -> Result<(), TableError> {
    let (rows, bytes) = (stream.buf.rows(), stream.buf.bytes());
    let batch = cut(stream, settings)?;
    // Sequences and deletions only serve an upsert's choice of rows.
    stream.seqs.clear();
    stream.deleted.clear();
    send(stream, batch)?;
    stream.spilled_rows += rows;
    stream.spilled_bytes += bytes;
    Ok(())
}

/// The stream's buffered rows as a batch (with `_sdc_batched_at` stamped); the buffer empties.
fn cut(stream: &mut Stream, settings: &Settings) -> Result<RecordBatch, TableError> {
    let arrow_err = |source| TableError::Arrow {
        table: stream.name.clone(),
        source,
    };
    let started = std::time::Instant::now();
    let batch = stream.buf.finish().map_err(arrow_err)?;
    tracing::debug!(stream = %stream.name, rows = batch.num_rows(), elapsed = ?started.elapsed(), "batch built");
    if settings.add_record_metadata {
        stamp_batched_at(&stream.buf.registry, batch).map_err(arrow_err)
    } else {
        Ok(batch)
    }
}

/// Sends `batch` to the stream's data file being written, opening one if need be.
fn send(stream: &mut Stream, batch: RecordBatch) -> Result<(), TableError> {
    let writer = match &mut stream.writer {
        Some(w) => w,
        None => stream.writer.insert(stream.table.spawn_writer()?),
    };
    if writer.send(batch) {
        return Ok(());
    }
    // The writer stopped on an error: that error is the one to report.
    let stopped = stream.writer.take().map(|w| w.close().join());
    Err(match stopped {
        Some(Err(e)) => e,
        _ => TableError::Schema {
            table: stream.name.clone(),
            detail: "the data file writer stopped".into(),
        },
    })
}

/// Empties the stream's buffer into a batch, prepares its actions (upsert rewrites, overwrite
/// removes) and closes its data file, whose writing may still go on. Nothing is committed
/// until [`complete`]. A batch whose preparation reads the table (upsert rewrites, an
/// overwrite's removes) must have no other batch of this stream between the two calls; appended
/// batches may queue (see `Ingest::flush_stream`).
pub fn prepare(
    stream: &mut Stream,
    settings: &Settings,
    state: Option<Json>,
    line: u64,
) -> Result<Flushing, TableError> {
    let batch = cut(stream, settings)?;
    let arrow_err = |source| TableError::Arrow {
        table: stream.name.clone(),
        source,
    };
    let seqs = std::mem::take(&mut stream.seqs);
    let deleted = std::mem::take(&mut stream.deleted);
    // Rows already handed to the data file (streams that are not upserted).
    let spilled = std::mem::take(&mut stream.spilled_rows);
    stream.spilled_bytes = 0;
    let received = spilled + batch.num_rows();
    let keyed = !stream.keys.is_empty();
    let mut actions: Vec<Action> = Vec::new();
    let mut new_files = Vec::new();
    let (to_write, operation, replaced) = match stream.method {
        LoadMethod::Upsert if keyed => {
            let cols = key_columns(&stream.buf.registry, &stream.keys);
            let deletes = if settings.hard_delete {
                deleted.as_slice()
            } else {
                &[]
            };
            let (mask, keys) = latest_per_key(&batch, &cols, &seqs, deletes);
            let probe = KeyProbe::new(&batch, &cols);
            // The rewrite hands over batches of the key columns only, in this order.
            let needed: Vec<usize> = cols.iter().flatten().copied().collect();
            let mut at = 0;
            let local: Vec<Vec<usize>> = cols
                .iter()
                .map(|p| {
                    at += p.len();
                    (at - p.len()..at).collect()
                })
                .collect();
            // One integer column holding every key of the batch (the usual case): the tables'
            // keys are compared as integers, without encoding each row's key (the scan of
            // every candidate file's keys is what grows with the table).
            let int_keys: Option<HashSet<i64, foldhash::fast::RandomState>> =
                match needed.as_slice() {
                    [c] => batch
                        .column(*c)
                        .as_primitive_opt::<Int64Type>()
                        .filter(|a| a.null_count() == 0)
                        .map(|a| a.values().iter().copied().collect()),
                    _ => None,
                };
            let mut buf = Vec::new();
            let rewrite = rewrite_files(
                &stream.table,
                &stream.buf.registry,
                &needed,
                |s| probe.may_match(s),
                |b, out| match (&int_keys, b.column(0).as_primitive_opt::<Int64Type>()) {
                    (Some(set), Some(a)) if a.null_count() == 0 => {
                        out.extend(a.values().iter().map(|v| set.contains(v)));
                    }
                    (Some(set), Some(a)) => {
                        out.extend(a.iter().map(|v| v.is_some_and(|v| set.contains(&v))));
                    }
                    _ => out.extend((0..b.num_rows()).map(|r| {
                        buf.clear();
                        encode_key(b, &local, r, &mut buf);
                        keys.contains(&buf)
                    })),
                },
            )?;
            actions.extend(rewrite.actions);
            new_files = rewrite.new_files;
            let replaced = rewrite.removed;
            let op = DeltaOperation::Merge {
                predicate: Some(format!("upsert on ({})", stream.keys.join(", "))),
                merge_predicate: None,
                matched_predicates: Vec::new(),
                not_matched_predicates: Vec::new(),
                not_matched_by_source_predicates: Vec::new(),
            };
            (
                filter_record_batch(&batch, &mask)
                    .map_err(arrow_err)
                    .inspect_err(|_| discard_new(&stream.table, &new_files))?,
                op,
                replaced,
            )
        }
        LoadMethod::Overwrite if !stream.overwritten => {
            actions.extend(
                stream
                    .table
                    .files()?
                    .into_iter()
                    .map(|f| Action::Remove(f.remove)),
            );
            stream.overwritten = true;
            (
                batch,
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: None,
                    predicate: None,
                },
                0,
            )
        }
        _ => {
            if stream.method == LoadMethod::Upsert {
                tracing::warn!(stream = %stream.name, "upsert without key properties: appending");
            }
            (batch, append_operation(), 0)
        }
    };
    let rows = spilled + to_write.num_rows();
    // Sent even without rows to a file already open: a property declared since the last
    // hand-over widens the file to the schema this commit records.
    if to_write.num_rows() > 0 || stream.writer.is_some() {
        send(stream, to_write).inspect_err(|_| discard_new(&stream.table, &new_files))?;
    }
    let file = stream.writer.take().map(FileWriter::close);
    let mut info = Map::new();
    info.insert("targetWarehouse".into(), json!({"stream": stream.name, "rowsReceived": received, "rowsWritten": rows, "rowsReplaced": replaced}));
    if let Some(state) = state {
        // Informational: the latest Singer STATE seen when this batch was cut.
        info.insert("singerState".into(), state);
    }
    stream.oldest = None;
    Ok(Flushing {
        stream: stream.name.clone(),
        line,
        actions,
        operation,
        columns: stream.buf.registry.specs.len(),
        high_water: stream.max_tap_seq.take(),
        info,
        buffered_total: stream.buffered_total,
        rows,
        replaced,
        file,
        new_files,
    })
}

/// Waits for the batch's data file, then makes the ONE commit holding it (with its rewrites,
/// new columns and high-water mark); compacts small files when they have piled up.
pub fn complete(
    rt: &tokio::runtime::Runtime,
    stream: &mut Stream,
    f: Flushing,
) -> Result<usize, TableError> {
    let started = std::time::Instant::now();
    let Flushing {
        mut actions,
        operation,
        columns,
        high_water,
        info,
        buffered_total,
        rows,
        replaced,
        file,
        new_files,
        ..
    } = f;
    if let Some(writer) = file {
        // Up to the commit, a failure leaves nothing of the batch behind (after it, the log
        // entry may exist whatever the error says, so nothing is removed).
        let adds = writer
            .join()
            .inspect_err(|_| discard_new(&stream.table, &new_files))?;
        for add in adds {
            let add = stream
                .table
                .publish(add)
                .inspect_err(|_| discard_new(&stream.table, &new_files))?;
            actions.push(Action::Add(add));
        }
    }
    tracing::debug!(stream = %stream.name, waited = ?started.elapsed(), "data file written");
    let version = rt
        .block_on(stream.table.commit(
            &mut stream.buf.registry,
            columns,
            actions,
            operation,
            high_water,
            info,
        ))
        .inspect_err(discard_if_refused(&stream.table, &new_files))?;
    tracing::info!(stream = %stream.name, version, rows, replaced, "committed");
    stream.committed_total = buffered_total;
    if crate::table::compact::small_files(&stream.table)?
        >= crate::table::compact::AUTO_COMPACT_FILES
    {
        match rt.block_on(crate::table::compact::compact(
            &mut stream.table,
            &mut stream.buf.registry,
        )) {
            Ok(Some(c)) => {
                tracing::info!(stream = %stream.name, files = c.files, version = c.version, copied = c.copied, "compacted small files");
            }
            Ok(None) => {}
            // Another writer changed those files: the batch is committed, and compaction,
            // which changes no data, waits for a later batch.
            Err(e @ TableError::Conflict { .. }) => {
                tracing::warn!(stream = %stream.name, error = %e, "compaction skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

/// `_sdc_batched_at` is the time the rows were cut into a batch (a flush, or a hand-over to the
/// data file): filled in now for every row that did not carry one.
fn stamp_batched_at(
    registry: &crate::registry::Registry,
    batch: RecordBatch,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let Some(col) = registry.property(BATCHED_AT).and_then(|p| p.base) else {
        return Ok(batch);
    };
    let a = batch.column(col);
    if !matches!(a.data_type(), DataType::Timestamp(..)) {
        return Ok(batch);
    }
    let now = now_micros();
    let filled: TimestampMicrosecondArray = a
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|v| Some(v.unwrap_or(now)))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[col] = Arc::new(filled.with_timezone("UTC"));
    RecordBatch::try_new(batch.schema(), columns)
}

/// ACTIVATE_VERSION: rows whose `_sdc_table_version` is older than `version` (or null) go.
pub fn activate_version<W: std::io::Write>(
    ingest: &mut Ingest<'_, W>,
    line: u64,
    name: &str,
    version: i64,
) -> Result<(), Error> {
    let state = ingest_state(ingest);
    let Some(stream) = ingest.streams.get_mut(name) else {
        return Ok(());
    };
    let table_err = |source| Error::Table {
        line,
        stream: name.to_string(),
        source: Box::new(source),
    };
    let Some(col) = stream
        .buf
        .registry
        .property(TABLE_VERSION)
        .and_then(|p| p.base)
    else {
        tracing::warn!(stream = %name, "ACTIVATE_VERSION without a _sdc_table_version column: nothing removed");
        return Ok(());
    };
    let col_name = stream.buf.registry.specs[col].name.clone();
    let older = |b: &RecordBatch, r: usize| {
        let a = b.column(0); // the rewrite hands over the version column alone
        a.is_null(r)
            || (a.data_type() == &DataType::Int64
                && a.as_primitive::<Int64Type>().value(r) < version)
    };
    let maybe_older = |stats: Option<&Json>| {
        let Some(s) = stats else { return true };
        let nulls = s
            .pointer(&format!("/nullCount/{col_name}"))
            .and_then(Json::as_i64);
        let min = s
            .pointer(&format!("/minValues/{col_name}"))
            .and_then(Json::as_i64);
        !(nulls == Some(0) && min.is_some_and(|m| m >= version))
    };
    let rewrite = rewrite_files(
        &stream.table,
        &stream.buf.registry,
        &[col],
        maybe_older,
        |b, out| out.extend((0..b.num_rows()).map(|r| older(b, r))),
    )
    .map_err(table_err)?;
    let (actions, removed, new_files) = (rewrite.actions, rewrite.removed, rewrite.new_files);
    if actions.is_empty() {
        return Ok(());
    }
    let mut info = Map::new();
    info.insert(
        "targetWarehouse".into(),
        json!({"stream": name, "activateVersion": version, "rowsRemoved": removed}),
    );
    if let Some(state) = state {
        info.insert("singerState".into(), state);
    }
    let op = DeltaOperation::Delete {
        predicate: Some(format!(
            "{TABLE_VERSION} < {version} OR {TABLE_VERSION} IS NULL"
        )),
    };
    ingest
        .rt
        .block_on(stream.table.commit(
            &mut stream.buf.registry,
            usize::MAX,
            actions,
            op,
            None,
            info,
        ))
        .inspect_err(discard_if_refused(&stream.table, &new_files))
        .map_err(table_err)?;
    tracing::info!(stream = %name, version, removed, "activated version");
    Ok(())
}

fn ingest_state<W: std::io::Write>(ingest: &Ingest<'_, W>) -> Option<Json> {
    ingest.last_state()
}
