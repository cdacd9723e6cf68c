//! A stream's rows on their way to one Delta commit: handed to the batch's data file while they
//! are parsed ([`Stream::spill`]), cut into a batch whose actions are prepared per load method
//! (append, upsert with hard deletes, overwrite: [`Stream::prepare`]), then committed once the
//! data file is written ([`Stream::complete`]) or discarded with its files.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType, TimestampMicrosecondType};
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, SaveMode};
use serde_json::{json, Map, Value as Json};

use super::{insert, upsert, Stream};
use crate::registry::Registry;
use crate::sdc::{now_micros, BATCHED_AT};
use crate::settings::{LoadMethod, Settings};
use crate::table::compact::{self, AUTO_COMPACT_FILES};
use crate::table::error::TableError;
use crate::table::marks::BatchMarks;
use crate::table::writer::{ClosedFile, FileWriter};
use crate::table::{append_operation, merge_operation, Table};

/// A stream's batch on its way to the table: the rewrites (upserts) are done, its data file is
/// being written on its own thread, and [`Stream::complete`] commits it. Encoding the Parquet
/// file (the costliest step of a flush) thus overlaps parsing the next batch on the other core.
pub struct Flushing {
    pub stream: String,
    /// The input line that triggered the flush (named by errors).
    pub line: u64,
    actions: Vec<Action>,
    operation: DeltaOperation,
    /// The registry's column count when the batch was built: the schema this commit records.
    columns: usize,
    /// The highest tap sequence of each producer in the batch: its commit's `txn` marks.
    marks: BatchMarks,
    info: Map<String, Json>,
    /// Rows buffered by the stream up to this batch: what its STATEs wait for.
    buffered_total: u64,
    rows: usize,
    replaced: usize,
    /// Insert: records not written because their key was in the table or the batch already.
    skipped: usize,
    file: Option<ClosedFile>,
    /// Files the upsert wrote besides the data file (rewritten files, a deletion vector file).
    new_files: Vec<String>,
}

/// A batch committed: the rows it wrote, and a failure of the maintenance that followed its
/// commit (a checkpoint, a compaction), which changed no data.
pub struct Completed {
    pub stream: String,
    pub rows: usize,
    /// Insert: records skipped because their key was there.
    pub skipped: usize,
    pub maintenance: Option<(Maintenance, TableError)>,
}

/// Work after a commit that changes no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    Checkpoint,
    Compaction,
}

impl Maintenance {
    pub fn name(self) -> &'static str {
        match self {
            Maintenance::Checkpoint => "checkpoint",
            Maintenance::Compaction => "compaction",
        }
    }
}

impl Flushing {
    /// Whether [`Stream::complete`] would not have to wait for the data file.
    pub fn is_ready(&self) -> bool {
        self.file.as_ref().is_none_or(ClosedFile::is_finished)
    }
}

/// Removes files an upsert wrote for a batch that will not be committed.
fn discard_new(table: &Table, paths: &[String]) {
    for path in paths {
        table.discard_new_file(path);
    }
}

impl Stream {
    /// Hands the buffered rows to the batch's data file being written (opened now if need be)
    /// without committing them: the file grows while the input is parsed, and the commit at
    /// the end of the batch ([`Self::prepare`], [`Self::complete`]) finds most of it encoded
    /// already. Only for streams that are not upserted (an upsert needs the whole batch to pick
    /// the latest row of each key), see [`Stream::streams_to_file`].
    pub fn spill(&mut self, settings: &Settings) -> Result<(), TableError> {
        let (rows, bytes) = (self.buf.rows(), self.buf.bytes());
        let batch = self.cut(settings)?;
        // Sequences and deletions only serve an upsert's choice of rows.
        self.seqs.clear();
        self.deleted.clear();
        self.send(batch)?;
        self.spilled_rows += rows;
        self.spilled_bytes += bytes;
        Ok(())
    }

    /// The buffered rows as a batch (with `_sdc_batched_at` stamped); the buffer empties.
    fn cut(&mut self, settings: &Settings) -> Result<RecordBatch, TableError> {
        let arrow_err = |source| TableError::Arrow {
            table: self.name.clone(),
            source,
        };
        let started = std::time::Instant::now();
        let batch = self.buf.finish().map_err(arrow_err)?;
        tracing::debug!(stream = %self.name, rows = batch.num_rows(), elapsed = ?started.elapsed(), "batch built");
        if settings.add_record_metadata {
            stamp_batched_at(&self.buf.registry, batch).map_err(arrow_err)
        } else {
            Ok(batch)
        }
    }

    /// Sends `batch` to the data file being written, opening one if need be.
    fn send(&mut self, batch: RecordBatch) -> Result<(), TableError> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(self.table.spawn_writer()?),
        };
        if writer.send(batch) {
            return Ok(());
        }
        // The writer stopped on an error: that error is the one to report.
        let stopped = self.writer.take().map(|w| w.close().join());
        Err(match stopped {
            Some(Err(e)) => e,
            _ => TableError::Schema {
                table: self.name.clone(),
                detail: "the data file writer stopped".into(),
            },
        })
    }

    /// Empties the buffer into a batch, prepares its actions (upsert rewrites, overwrite
    /// removes) and closes its data file, whose writing may still go on. Nothing is committed
    /// until [`Self::complete`]. A batch whose preparation reads the table (upsert rewrites, an
    /// overwrite's removes) must have no other batch of this stream between the two calls;
    /// appended batches may queue (see `Ingest::flush_stream`).
    pub fn prepare(
        &mut self,
        settings: &Settings,
        state: Option<Json>,
        line: u64,
    ) -> Result<Flushing, TableError> {
        let batch = self.cut(settings)?;
        let arrow_err = |source| TableError::Arrow {
            table: self.name.clone(),
            source,
        };
        let seqs = std::mem::take(&mut self.seqs);
        let deleted = std::mem::take(&mut self.deleted);
        // Rows already handed to the data file (streams that are not upserted).
        let spilled = std::mem::take(&mut self.spilled_rows);
        self.spilled_bytes = 0;
        let received = spilled + batch.num_rows();
        let keyed = !self.keys.is_empty();
        let mut actions: Vec<Action> = Vec::new();
        let mut new_files = Vec::new();
        let mut skipped = 0;
        let (to_write, operation, replaced) = match self.method {
            LoadMethod::Insert if keyed => {
                let ins = insert::insert_new_keys(
                    &self.table,
                    &self.buf.registry,
                    &self.keys,
                    &batch,
                    &seqs,
                    &deleted,
                    settings.hard_delete,
                )?;
                actions.extend(ins.rewrite.actions);
                new_files = ins.rewrite.new_files;
                skipped = ins.skipped;
                (
                    filter_record_batch(&batch, &ins.mask)
                        .map_err(arrow_err)
                        .inspect_err(|_| discard_new(&self.table, &new_files))?,
                    // Read the table like an upsert: the same conflict check (see below).
                    merge_operation(),
                    ins.rewrite.removed,
                )
            }
            LoadMethod::Upsert if keyed => {
                let deletes = if settings.hard_delete {
                    deleted.as_slice()
                } else {
                    &[]
                };
                let (mask, rewrite) = upsert::replace_by_key(
                    &self.table,
                    &self.buf.registry,
                    &self.keys,
                    &batch,
                    &seqs,
                    deletes,
                )?;
                actions.extend(rewrite.actions);
                new_files = rewrite.new_files;
                // No predicate: the upsert read the whole table (every file that could hold one
                // of its keys), so deltalake refuses it when another load's commit since that
                // read added or removed rows: the rows it added would not be replaced, a key
                // would be in the table twice (issue 20). The keys are in the commit info.
                (
                    filter_record_batch(&batch, &mask)
                        .map_err(arrow_err)
                        .inspect_err(|_| discard_new(&self.table, &new_files))?,
                    merge_operation(),
                    rewrite.removed,
                )
            }
            LoadMethod::Overwrite if !self.overwritten => {
                actions.extend(
                    self.table
                        .files()?
                        .into_iter()
                        .map(|f| Action::Remove(f.remove)),
                );
                self.overwritten = true;
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
                if self.method.by_key() {
                    tracing::warn!(stream = %self.name, method = ?self.method, "no key properties: appending");
                }
                (batch, append_operation(), 0)
            }
        };
        let rows = spilled + to_write.num_rows();
        // Sent even without rows to a file already open: a property declared since the last
        // hand-over widens the file to the schema this commit records.
        if to_write.num_rows() > 0 || self.writer.is_some() {
            self.send(to_write)
                .inspect_err(|_| discard_new(&self.table, &new_files))?;
        }
        let file = self.writer.take().map(FileWriter::close);
        let mut info = Map::new();
        let mut ours = json!({"stream": self.name, "rowsReceived": received, "rowsWritten": rows, "rowsReplaced": replaced});
        if self.method == LoadMethod::Upsert && keyed {
            ours["upsertKeys"] = json!(self.keys);
        }
        if self.method == LoadMethod::Insert && keyed {
            ours["insertKeys"] = json!(self.keys);
            ours["rowsSkipped"] = json!(skipped);
        }
        info.insert("targetWarehouse".into(), ours);
        if let Some(state) = state {
            // Informational: the latest Singer STATE seen when this batch was cut.
            info.insert("singerState".into(), state);
        }
        self.oldest = None;
        Ok(Flushing {
            stream: self.name.clone(),
            line,
            actions,
            operation,
            columns: self.buf.registry.specs.len(),
            marks: self.mark.take(),
            info,
            buffered_total: self.buffered_total,
            rows,
            replaced,
            skipped,
            file,
            new_files,
        })
    }

    /// Waits for the batch's data file, then makes the ONE commit holding it (with its
    /// rewrites, new columns and high-water mark); compacts small files when they have piled
    /// up. A batch that fails before its commit leaves none of its files behind (the commit
    /// itself removes them when it fails before its log entry, see `Table::commit`).
    pub fn complete(
        &mut self,
        rt: &tokio::runtime::Runtime,
        f: Flushing,
    ) -> Result<Completed, TableError> {
        let started = std::time::Instant::now();
        let Flushing {
            mut actions,
            operation,
            columns,
            marks,
            info,
            buffered_total,
            rows,
            replaced,
            skipped,
            file,
            new_files,
            ..
        } = f;
        if let Some(writer) = file {
            let adds = writer
                .join()
                .inspect_err(|_| discard_new(&self.table, &new_files))?;
            let written: Vec<String> = adds.iter().map(|a| a.path.clone()).collect();
            for add in adds {
                let add = self.table.publish(add).inspect_err(|_| {
                    discard_new(&self.table, &written);
                    discard_new(&self.table, &new_files);
                })?;
                actions.push(Action::Add(add));
            }
        }
        tracing::debug!(stream = %self.name, waited = ?started.elapsed(), "data file written");
        let version = rt.block_on(self.table.commit(
            &mut self.buf.registry,
            columns,
            actions,
            operation,
            &marks,
            info,
        ))?;
        tracing::info!(stream = %self.name, version, rows, replaced, skipped, "committed");
        self.committed_total = buffered_total;
        let maintenance = self
            .table
            .take_checkpoint_failure()
            .map(|e| (Maintenance::Checkpoint, e))
            .or_else(|| {
                self.compact_if_due(rt)
                    .map(|e| (Maintenance::Compaction, e))
            });
        Ok(Completed {
            stream: self.name.clone(),
            rows,
            skipped,
            maintenance,
        })
    }

    /// Compacts the table's small files once they have piled up. A compaction changes no
    /// data and its batch is committed: a failure (its files removed) is returned to be
    /// reported when the load ends, and this stream is not compacted again in the run.
    fn compact_if_due(&mut self, rt: &tokio::runtime::Runtime) -> Option<TableError> {
        if self.compaction_failed {
            return None;
        }
        let due = compact::small_files(&self.table).map(|n| n >= AUTO_COMPACT_FILES);
        let compacted = match due {
            Ok(false) => return None,
            Ok(true) => rt.block_on(compact::compact(&mut self.table, &mut self.buf.registry)),
            Err(e) => Err(e),
        };
        match compacted {
            Ok(Some(c)) => {
                tracing::info!(stream = %self.name, files = c.files, version = c.version, copied = c.copied, "compacted small files");
                // The compaction's own commit may have been due for a checkpoint.
                self.table.take_checkpoint_failure()
            }
            Ok(None) => None,
            // Another writer changed those files: compaction waits for a later batch.
            Err(e @ TableError::Conflict { .. }) => {
                tracing::warn!(stream = %self.name, error = %e, "compaction skipped");
                None
            }
            Err(e) => {
                tracing::warn!(stream = %self.name, error = %e, "compaction failed; the batch is committed");
                self.compaction_failed = true;
                Some(e)
            }
        }
    }

    /// The batch will not be committed (the run failed): its data file goes, and the files
    /// its upsert wrote (never the files it re-`add`s with a new deletion vector: they hold
    /// committed rows).
    pub fn discard(&self, f: Flushing) {
        if let Some(file) = f.file {
            file.discard();
        }
        discard_new(&self.table, &f.new_files);
    }

    /// Rows handed to a data file since the last cut will not be committed (the run failed):
    /// the file goes.
    pub fn discard_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.close().discard();
        }
    }
}

/// `_sdc_batched_at` is the time the rows were cut into a batch (a flush, or a hand-over to the
/// data file): filled in now for every row that did not carry one.
fn stamp_batched_at(
    registry: &Registry,
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
