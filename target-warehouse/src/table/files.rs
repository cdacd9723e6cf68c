//! Our Parquet data files: their names, how they are written (zstd, chunk statistics, a
//! dictionary only where values repeat, the table's full schema), a file written batch by batch
//! ([`FileSink`]), fsync, and the Delta `add` action that names a finished file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef,
    TimestampMicrosecondType, ToByteSlice,
};
use deltalake::kernel::Add;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
};
use deltalake::parquet::schema::types::ColumnPath;
use serde_json::Value as Json;

use crate::failpoint::{self, Step};
use crate::registry::is_json;
use crate::sdc::now_millis;

use super::stats::{stats_json, BatchStats, ColumnStats};

/// Rows per Parquet row group: small enough that readers can skip, large enough to compress.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// A row group is closed once its encoded pages reach this size (whichever comes first).
const ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        path: String,
        source: deltalake::parquet::errors::ParquetError,
    },
    #[error("file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("file {path}: {source}")]
    Arrow {
        path: String,
        source: deltalake::arrow::error::ArrowError,
    },
}

/// A new data file's name: unique and time-ordered (compaction keeps load order by it).
pub fn new_file_name() -> String {
    format!("part-{}.zstd.parquet", uuid::Uuid::now_v7())
}

/// A finished data file not yet fsync'd (see [`write_parts`]), with its schema.
pub struct Part {
    pub add: Add,
    pub schema: SchemaRef,
    /// The `add` statistics, as JSON (a merge reads them without parsing `add.stats` back).
    pub stats: Json,
}

/// [`sync_file`] by path.
pub(super) fn sync(path: &Path) -> Result<(), FileError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| FileError::Io {
        path: shown.clone(),
        source,
    })?;
    sync_file(&file, &shown)
}

/// The commit that references a file must never be durable before the file is.
fn sync_file(file: &File, shown: &str) -> Result<(), FileError> {
    failpoint::hit(Step::Fsync)
        .and_then(|()| file.sync_all())
        .map_err(|source| FileError::Io {
            path: shown.to_string(),
            source,
        })
}

/// A Parquet file written batch by batch (compaction streams through it, one input file at a
/// time), with its Delta statistics accumulated along the way.
pub struct FileSink {
    pub(super) name: String,
    path: std::path::PathBuf,
    shown: String,
    pub(super) schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: usize,
    stats: Vec<ColumnStats>,
}

impl FileSink {
    pub fn create(table_root: &Path, name: &str, schema: SchemaRef) -> Result<FileSink, FileError> {
        FileSink::create_with(table_root, name, schema, &[])
    }

    /// A file whose columns in `plain` are written without a dictionary.
    pub(super) fn create_with(
        table_root: &Path,
        name: &str,
        schema: SchemaRef,
        plain: &[usize],
    ) -> Result<FileSink, FileError> {
        let path = table_root.join(name);
        let shown = path.display().to_string();
        let mut props = writer_properties(&schema);
        for &i in plain {
            let path = ColumnPath::from(schema.field(i).name().as_str());
            props = props.set_column_dictionary_enabled(path, false);
        }
        let props = props.build();
        let file = File::create(&path).map_err(|source| FileError::Io {
            path: shown.clone(),
            source,
        })?;
        let stats = schema.fields().iter().map(|_| ColumnStats::new()).collect();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            // The file exists (a full disk fails the header's write): it goes.
            let _ = std::fs::remove_file(&path);
            FileError::Parquet {
                path: shown.clone(),
                source,
            }
        })?;
        Ok(FileSink {
            name: name.to_string(),
            path,
            shown,
            schema,
            writer,
            rows: 0,
            stats,
        })
    }

    /// The file's name, relative to its directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        self.write_with(batch, BatchStats::of(batch))
    }

    /// [`Self::write`] with the batch's statistics computed beforehand (on another thread).
    pub fn write_with(&mut self, batch: &RecordBatch, stats: BatchStats) -> Result<(), FileError> {
        for (acc, col) in self.stats.iter_mut().zip(stats.0) {
            acc.add_nulls(col.nulls);
            if !col.exact {
                acc.widen(None);
            } else if let Some(b) = col.bounds {
                acc.widen(Some(b));
            }
        }
        self.rows += batch.num_rows();
        let parquet_err = |source| FileError::Parquet {
            path: self.shown.clone(),
            source,
        };
        self.writer.write(batch).map_err(parquet_err)?;
        // The writer keeps a whole row group encoded in memory until it closes it; wide rows
        // with KB-sized JSON columns make 64k rows tens of MB. Closing row groups by bytes keeps
        // a compaction of many files as small in memory as one batch.
        if self.writer.in_progress_size() >= ROW_GROUP_BYTES {
            self.writer.flush().map_err(parquet_err)?;
        }
        Ok(())
    }

    /// Writes the footer and fsyncs the file. On an error the file is removed: it never
    /// reaches a commit.
    pub fn finish(self) -> Result<Add, FileError> {
        let path = self.path.clone();
        self.close()
            .and_then(|(file, shown, part)| sync_file(&file, &shown).map(|()| part.add))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })
    }

    /// Finishes the file without fsync (for [`write_parts`](super::parts::write_parts)); on
    /// an error the file is removed.
    pub(super) fn finish_part(self) -> Result<Part, FileError> {
        let path = self.path.clone();
        self.close().map(|(_, _, part)| part).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    }

    /// Writes the footer: the file, its name as shown in errors, and its `add` action.
    fn close(self) -> Result<(File, String, Part), FileError> {
        let FileSink {
            name,
            shown,
            path: _,
            schema,
            writer,
            rows,
            stats,
        } = self;
        let file = writer.into_inner().map_err(|source| FileError::Parquet {
            path: shown.clone(),
            source,
        })?;
        let stats = stats_json(&schema, rows as i64, stats);
        let add = new_add(&file, name, shown.clone(), &stats)?;
        Ok((file, shown, Part { add, schema, stats }))
    }
}

/// How every data file is written: zstd, chunk statistics, row groups of at most 64k rows.
pub(super) fn writer_properties(schema: &SchemaRef) -> WriterPropertiesBuilder {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for field in schema.fields() {
        if is_json(field) {
            // JSON text (payloads of KBs) rarely repeats and its min/max mean nothing:
            // a dictionary attempt and statistics only cost encoding time.
            let path = ColumnPath::from(field.name().as_str());
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    props
}

/// Values sampled per column to judge whether a dictionary could pay.
const DICTIONARY_SAMPLE: usize = 1024;

/// Columns of `batch` (the first of a file) whose sampled values nearly never repeat: ids,
/// sequences, timestamps. A dictionary for them is built value by value (each hashed and
/// interned) until it outgrows its page and is given up, or kept with as many entries as
/// values; either way it costs the encoding thread and saves nothing. Columns whose values
/// repeat (event types, states, currencies) keep their dictionary, which readers use to filter.
pub(super) fn unique_columns(batch: &RecordBatch) -> Vec<usize> {
    let schema = batch.schema();
    let mut unique = Vec::new();
    for (i, (field, col)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if is_json(field) {
            continue; // no dictionary anyway
        }
        let (distinct, n) = match col.data_type() {
            DataType::Utf8 => sample_distinct(
                col.as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(|v| hash_bytes(v.as_bytes())),
            ),
            DataType::Int64 => sample_primitive::<Int64Type>(col),
            DataType::Float64 => sample_primitive::<Float64Type>(col),
            DataType::Timestamp(..) => sample_primitive::<TimestampMicrosecondType>(col),
            DataType::Decimal128(..) => sample_primitive::<Decimal128Type>(col),
            _ => continue,
        };
        // Enough values to judge, and at least nine in ten of them different.
        if n >= 64 && distinct * 10 >= n * 9 {
            unique.push(i);
        }
    }
    unique
}

/// [`sample_distinct`] over a primitive column's non-null values.
fn sample_primitive<T: ArrowPrimitiveType>(col: &ArrayRef) -> (usize, usize) {
    sample_distinct(
        col.as_primitive::<T>()
            .iter()
            .flatten()
            .map(|v| hash_bytes(v.to_byte_slice())),
    )
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(bytes)
}

/// Distinct values (by their hashes) among the first [`DICTIONARY_SAMPLE`] of `hashes`, and
/// how many were sampled.
fn sample_distinct(hashes: impl Iterator<Item = u64>) -> (usize, usize) {
    let mut seen = std::collections::HashSet::with_capacity(DICTIONARY_SAMPLE);
    let mut n = 0;
    for h in hashes.take(DICTIONARY_SAMPLE) {
        n += 1;
        seen.insert(h);
    }
    (seen.len(), n)
}

/// Flushes and fsyncs a finished data file and returns its Delta `add` action.
pub(super) fn durable_add(
    file: File,
    name: String,
    shown: String,
    stats: Json,
) -> Result<Add, FileError> {
    sync_file(&file, &shown)?;
    new_add(&file, name, shown, &stats)
}

/// The `add` action of a written file.
fn new_add(file: &File, name: String, shown: String, stats: &Json) -> Result<Add, FileError> {
    let size = file
        .metadata()
        .map_err(|source| FileError::Io {
            path: shown,
            source,
        })?
        .len();
    Ok(Add {
        path: name,
        partition_values: HashMap::new(),
        size: size as i64,
        modification_time: now_millis(),
        data_change: true,
        stats: Some(stats.to_string()),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}
