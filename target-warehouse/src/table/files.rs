//! Parquet data files: written by us (zstd, column statistics, the table's full schema), their
//! Delta `add` statistics, and reading a file back into the current schema for a rewrite.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute;
use deltalake::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Field, Float64Type, Int64Type,
    SchemaRef, TimestampMicrosecondType, ToByteSlice,
};
use deltalake::kernel::Add;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::{
    add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter, ArrowWriter, ProjectionMask,
};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::column::writer::{ColumnCloseResult, ColumnWriter};
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use deltalake::parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
};
use deltalake::parquet::file::reader::ChunkReader;
use deltalake::parquet::file::writer::SerializedFileWriter;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::parquet::schema::types::SchemaDescriptor;
use serde_json::{json, Map, Value as Json};

use crate::timefmt;

/// Strings longer than this get no min/max statistics: a truncated bound would be wrong.
const MAX_STAT_STRING: usize = 256;

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

/// What [`write_parts`] wrote: its part files, and the widest schema of the batches it got
/// (a batch of no rows writes nothing but may still widen it: a property declared after the
/// last row).
pub struct Parts {
    pub parts: Vec<Part>,
    pub schema: Option<SchemaRef>,
}

/// Writes batches into data files in `dir`, one per run of batches with the same schema (a
/// batch arriving while the input is parsed may carry columns an earlier one lacked: the
/// table's schema grew meanwhile). The files are not fsync'd: [`merge_parts`] does it, on the
/// files it keeps. On an error, nothing it wrote is left behind.
pub fn write_parts(
    dir: &Path,
    batches: impl IntoIterator<Item = (RecordBatch, BatchStats)>,
) -> Result<Parts, FileError> {
    let mut out = Parts {
        parts: Vec::new(),
        schema: None,
    };
    let mut sink: Option<FileSink> = None;
    let written = || -> Result<(), FileError> {
        for (batch, stats) in batches {
            if out
                .schema
                .as_ref()
                .is_none_or(|w| w.fields().len() < batch.num_columns())
            {
                out.schema = Some(batch.schema());
            }
            if batch.num_rows() == 0 {
                continue;
            }
            if let Some(done) = sink.take_if(|s| s.schema != batch.schema()) {
                out.parts.push(done.finish_part()?);
            }
            let s = match &mut sink {
                Some(s) => s,
                None => sink.insert(FileSink::create_with(
                    dir,
                    &new_file_name(),
                    batch.schema(),
                    &unique_columns(&batch),
                )?),
            };
            s.write_with(&batch, stats)?;
        }
        if let Some(last) = sink.take() {
            out.parts.push(last.finish_part()?);
        }
        Ok(())
    };
    if let Err(e) = written() {
        if let Some(s) = sink {
            let _ = std::fs::remove_file(dir.join(&s.name));
        }
        remove_parts(dir, &out.parts);
        return Err(e);
    }
    Ok(out)
}

fn remove_parts(dir: &Path, parts: &[Part]) {
    for part in parts {
        // Never referenced by the log: a leftover would only take space.
        let _ = std::fs::remove_file(dir.join(&part.add.path));
    }
}

/// The data file(s) of one commit from what [`write_parts`] wrote, fsync'd, the first named
/// `name` (chosen when the batch began, so that file names follow the load order that
/// compaction keeps): a part as it is; several parts, or one narrower than the widest batch,
/// merged into one file by copying their encoded column chunks (schemas only ever gain columns
/// at the end; a column a part lacks becomes an all-null chunk), in the order given; or, should
/// a chunk copy not merge them, the parts themselves (each a valid data file of the table). On
/// an error, nothing is left behind.
pub fn merge_parts(dir: &Path, name: &str, written: Parts) -> Result<Vec<Add>, FileError> {
    let Parts { mut parts, schema } = written;
    let Some(schema) = schema.filter(|_| !parts.is_empty()) else {
        return Ok(Vec::new());
    };
    let kept = (|| {
        if parts.len() > 1 || parts[0].schema.fields().len() < schema.fields().len() {
            if let Some(merged) = concat_parts(dir, name, schema, &parts)? {
                remove_parts(dir, &parts);
                return Ok(vec![merged]);
            }
        }
        let first = &mut parts[0].add;
        rename(dir, &first.path, name)?;
        first.path = name.to_string();
        for part in &parts {
            sync(&dir.join(&part.add.path))?;
        }
        Ok(parts.iter().map(|p| p.add.clone()).collect())
    })();
    if kept.is_err() {
        remove_parts(dir, &parts);
    }
    kept
}

fn rename(dir: &Path, from: &str, to: &str) -> Result<(), FileError> {
    std::fs::rename(dir.join(from), dir.join(to)).map_err(|source| FileError::Io {
        path: dir.join(from).display().to_string(),
        source,
    })
}

/// [`sync_file`] by path.
fn sync(path: &Path) -> Result<(), FileError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| FileError::Io {
        path: shown.clone(),
        source,
    })?;
    sync_file(&file, &shown)
}

/// The commit that references a file must never be durable before the file is.
fn sync_file(file: &File, shown: &str) -> Result<(), FileError> {
    file.sync_all().map_err(|source| FileError::Io {
        path: shown.to_string(),
        source,
    })
}

/// `parts` copied into one new file `name`, or `None` (nothing left behind) when one of them
/// cannot be copied or the file would hold over
/// [`MAX_COPIED_ROW_GROUPS`](super::compact::MAX_COPIED_ROW_GROUPS) row groups. Parts are read
/// from their files as needed, never whole in memory.
fn concat_parts(
    dir: &Path,
    name: &str,
    schema: SchemaRef,
    parts: &[Part],
) -> Result<Option<Add>, FileError> {
    let Some(out) = Concat::create(dir, name, schema)? else {
        return Ok(None);
    };
    out.copy_all(parts.iter().map(|part| {
        let path = dir.join(&part.add.path);
        let file = File::open(&path).map_err(|source| FileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok((file, Some(&part.stats)))
    }))
}

/// A Parquet file written batch by batch (compaction streams through it, one input file at a
/// time), with its Delta statistics accumulated along the way.
pub struct FileSink {
    name: String,
    shown: String,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: usize,
    stats: Vec<ColumnStats>,
}

/// One column's Delta statistics, accumulated over the batches of a written file or the
/// files of a merged one.
struct ColumnStats {
    /// `None` once a source did not say.
    nulls: Option<i64>,
    bounds: Option<(Json, Json)>,
    /// False once a source had values without bounds: then no bounds at all.
    exact: bool,
}

impl ColumnStats {
    fn new() -> ColumnStats {
        ColumnStats {
            nulls: Some(0),
            bounds: None,
            exact: true,
        }
    }

    fn add_nulls(&mut self, n: Option<i64>) {
        self.nulls = self.nulls.zip(n).map(|(a, b)| a + b);
    }

    /// Widens the bounds by a source's own, or gives them up (`None`: it had values but no
    /// bounds).
    fn widen(&mut self, source: Option<(Json, Json)>) {
        if !self.exact {
            return;
        }
        match source {
            None => (self.exact, self.bounds) = (false, None),
            Some((lo, hi)) => {
                self.bounds = Some(match self.bounds.take() {
                    None => (lo, hi),
                    Some((a, b)) => (pick(a, lo, true), pick(b, hi, false)),
                })
            }
        }
    }
}

/// One batch's Delta statistics, column by column: computed where the batch is built (one
/// pass over each column's values present), so that the thread encoding the file does not
/// have to.
pub struct BatchStats(Vec<ColumnStats>);

impl BatchStats {
    pub fn of(batch: &RecordBatch) -> BatchStats {
        let schema = batch.schema();
        BatchStats(
            schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, col)| {
                    let mut acc = ColumnStats::new();
                    acc.add_nulls(Some(col.null_count() as i64));
                    if col.null_count() < col.len() {
                        acc.widen(bounds(col, is_json(field)));
                    }
                    acc
                })
                .collect(),
        )
    }
}

impl FileSink {
    pub fn create(table_root: &Path, name: &str, schema: SchemaRef) -> Result<FileSink, FileError> {
        FileSink::create_with(table_root, name, schema, &[])
    }

    /// A file whose columns in `plain` are written without a dictionary.
    fn create_with(
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
            FileError::Parquet {
                path: shown.clone(),
                source,
            }
        })?;
        Ok(FileSink {
            name: name.to_string(),
            shown,
            schema,
            writer,
            rows: 0,
            stats,
        })
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

    pub fn finish(self) -> Result<Add, FileError> {
        let (file, shown, part) = self.close()?;
        sync_file(&file, &shown)?;
        Ok(part.add)
    }

    /// Finishes the file without fsync (for [`write_parts`]).
    fn finish_part(self) -> Result<Part, FileError> {
        Ok(self.close()?.2)
    }

    /// Writes the footer: the file, its name as shown in errors, and its `add` action.
    fn close(self) -> Result<(File, String, Part), FileError> {
        let FileSink {
            name,
            shown,
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
fn writer_properties(schema: &SchemaRef) -> WriterPropertiesBuilder {
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
fn unique_columns(batch: &RecordBatch) -> Vec<usize> {
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

fn is_json(field: &Field) -> bool {
    field
        .metadata()
        .get(crate::registry::META_TYPE)
        .is_some_and(|t| t == "json")
}

/// Concatenates data files into one by copying their encoded column chunks: no decoding, no
/// re-encoding, so compaction costs about a file copy. Each input row group becomes a row
/// group of the output; a column the input lacks (added to the table after the file was
/// written) is written as an all-null chunk. The Delta statistics of the output are merged
/// from the inputs' own.
pub struct Concat {
    name: String,
    path: std::path::PathBuf,
    schema: SchemaRef,
    descr: SchemaDescriptor,
    writer: SerializedFileWriter<File>,
    rows: i64,
    stats: Vec<ColumnStats>,
}

impl Concat {
    /// `None` when the schema has a column the byte copy cannot fill with nulls (every column
    /// we write is a nullable top-level primitive, so this is a safety net).
    pub fn create(
        table_root: &Path,
        name: &str,
        schema: SchemaRef,
    ) -> Result<Option<Concat>, FileError> {
        let path = table_root.join(name);
        let shown = path.display().to_string();
        let parquet_err = |source| FileError::Parquet {
            path: shown.clone(),
            source,
        };
        let descr = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(parquet_err)?;
        if descr.columns().len() != schema.fields().len()
            || descr
                .columns()
                .iter()
                .any(|c| c.max_def_level() != 1 || c.max_rep_level() != 0)
        {
            return Ok(None);
        }
        let mut props = writer_properties(&schema).build();
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let file = File::create(&path).map_err(|source| FileError::Io {
            path: shown.clone(),
            source,
        })?;
        let writer = SerializedFileWriter::new(file, descr.root_schema_ptr(), Arc::new(props))
            .map_err(parquet_err)?;
        let stats = schema.fields().iter().map(|_| ColumnStats::new()).collect();
        Ok(Some(Concat {
            name: name.to_string(),
            path,
            schema,
            descr,
            writer,
            rows: 0,
            stats,
        }))
    }

    /// Reads a file's footer and says whether its chunks can be copied: each of its columns is
    /// a column of the output, encoded alike (types never change, so this holds for every file
    /// we wrote), and it has Delta statistics to merge.
    pub fn accepts<R: ChunkReader>(
        &self,
        data: &R,
        stats: Option<&Json>,
    ) -> Option<ParquetMetaData> {
        stats?.get("numRecords")?.as_i64()?;
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(data)
            .ok()?;
        let ok = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .all(|c| {
                self.descr
                    .columns()
                    .iter()
                    .any(|o| o.path() == c.path() && o.as_ref() == c.as_ref())
            });
        ok.then_some(meta)
    }

    /// Appends every row group of a file [`accepted`](Self::accepts) with `meta`.
    pub fn append<R: ChunkReader>(
        &mut self,
        data: &R,
        meta: &ParquetMetaData,
        stats: &Json,
    ) -> Result<(), FileError> {
        let shown = self.path.display().to_string();
        let parquet_err = |source| FileError::Parquet {
            path: shown.clone(),
            source,
        };
        let input = meta.file_metadata().schema_descr();
        // Output column i ← input column position, by name.
        let source: Vec<Option<usize>> = self
            .descr
            .columns()
            .iter()
            .map(|o| input.columns().iter().position(|c| c.path() == o.path()))
            .collect();
        for (rg_idx, rg) in meta.row_groups().iter().enumerate() {
            let column_index = meta.column_index().and_then(|ci| ci.get(rg_idx));
            let offset_index = meta.offset_index().and_then(|oi| oi.get(rg_idx));
            let mut out = self.writer.next_row_group().map_err(parquet_err)?;
            for from in &source {
                match from {
                    Some(j) => {
                        let column = rg.column(*j);
                        let close = ColumnCloseResult {
                            bytes_written: column.compressed_size() as u64,
                            rows_written: rg.num_rows() as u64,
                            metadata: column.clone(),
                            bloom_filter: None,
                            column_index: column_index.and_then(|r| r.get(*j)).cloned(),
                            offset_index: offset_index.and_then(|r| r.get(*j)).cloned(),
                        };
                        out.append_column(data, close).map_err(parquet_err)?;
                    }
                    None => {
                        let mut col = out.next_column().map_err(parquet_err)?.ok_or_else(|| {
                            parquet_err(ParquetError::General("no column".into()))
                        })?;
                        write_nulls(col.untyped(), rg.num_rows() as usize).map_err(parquet_err)?;
                        col.close().map_err(parquet_err)?;
                    }
                }
            }
            out.close().map_err(parquet_err)?;
        }
        // Statistics: counts add up; bounds widen; a column the file lacks is all null there.
        let n = stats.get("numRecords").and_then(Json::as_i64).unwrap_or(0);
        self.rows += n;
        for ((field, acc), from) in self
            .schema
            .fields()
            .iter()
            .zip(&mut self.stats)
            .zip(&source)
        {
            let name = field.name().as_str();
            if from.is_none() {
                acc.add_nulls(Some(n));
                continue;
            }
            let nulls = stats
                .get("nullCount")
                .and_then(|m| m.get(name))
                .and_then(Json::as_i64);
            acc.add_nulls(nulls);
            if nulls == Some(n) || !acc.exact {
                continue; // no values here, or bounds already given up
            }
            let lo = stats.get("minValues").and_then(|m| m.get(name));
            let hi = stats.get("maxValues").and_then(|m| m.get(name));
            acc.widen(match (lo, hi, nulls) {
                (Some(lo), Some(hi), Some(_)) => Some((lo.clone(), hi.clone())),
                _ => None,
            });
        }
        Ok(())
    }

    /// Copies every source (a file's data and its Delta statistics) in order and finishes the
    /// file; `None` (the file removed) at the first source that cannot be copied or once the
    /// file would hold over [`MAX_COPIED_ROW_GROUPS`](super::compact::MAX_COPIED_ROW_GROUPS)
    /// row groups. On an error nothing is left behind either.
    pub fn copy_all<'a, R: ChunkReader, E: From<FileError>>(
        mut self,
        sources: impl IntoIterator<Item = Result<(R, Option<&'a Json>), E>>,
    ) -> Result<Option<Add>, E> {
        let mut row_groups = 0;
        for source in sources {
            let (data, stats) = match source {
                Ok(s) => s,
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            };
            match (self.accepts(&data, stats), stats) {
                (Some(meta), Some(stats))
                    if row_groups + meta.num_row_groups()
                        <= super::compact::MAX_COPIED_ROW_GROUPS =>
                {
                    row_groups += meta.num_row_groups();
                    if let Err(e) = self.append(&data, &meta, stats) {
                        self.abandon();
                        return Err(e.into());
                    }
                }
                _ => {
                    self.abandon();
                    return Ok(None);
                }
            }
        }
        let path = self.path.clone();
        let merged = self.finish();
        if merged.is_err() {
            let _ = std::fs::remove_file(path);
        }
        Ok(Some(merged?))
    }

    /// Gives up on the file (nothing was appended): it is removed, never committed.
    pub fn abandon(self) {
        drop(self.writer);
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn finish(self) -> Result<Add, FileError> {
        let Concat {
            name,
            path,
            schema,
            writer,
            rows,
            stats,
            ..
        } = self;
        let shown = path.display().to_string();
        let file = writer.into_inner().map_err(|source| FileError::Parquet {
            path: shown.clone(),
            source,
        })?;
        durable_add(file, name, shown, stats_json(&schema, rows, stats))
    }
}

/// A data file's Delta `add` statistics: its row count and, per column, the null count and the
/// bounds where they are known.
fn stats_json(schema: &SchemaRef, rows: i64, stats: Vec<ColumnStats>) -> Json {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    for (field, acc) in schema.fields().iter().zip(stats) {
        let name = field.name();
        if let Some(n) = acc.nulls {
            nulls.insert(name.clone(), json!(n));
        }
        if let Some((lo, hi)) = acc.bounds {
            mins.insert(name.clone(), lo);
            maxs.insert(name.clone(), hi);
        }
    }
    json!({"numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})
}

/// `n` nulls into a nullable top-level column of any physical type.
fn write_nulls(col: &mut ColumnWriter<'_>, n: usize) -> Result<(), ParquetError> {
    let defs = vec![0i16; n];
    let defs = Some(defs.as_slice());
    match col {
        ColumnWriter::BoolColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::Int32ColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::Int64ColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::Int96ColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::FloatColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::DoubleColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::ByteArrayColumnWriter(w) => w.write_batch(&[], defs, None),
        ColumnWriter::FixedLenByteArrayColumnWriter(w) => w.write_batch(&[], defs, None),
    }
    .map(|_| ())
}

/// Flushes and fsyncs a finished data file and returns its Delta `add` action.
fn durable_add(file: File, name: String, shown: String, stats: Json) -> Result<Add, FileError> {
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

/// The smaller (or larger) of two bounds of the same column: numbers by value, strings by
/// bytes (ISO dates and timestamps order correctly as text).
fn pick(a: Json, b: Json, smaller: bool) -> Json {
    let a_first = match (&a, &b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x <= y,
            _ => x.as_f64().unwrap_or(0.0) <= y.as_f64().unwrap_or(0.0),
        },
        (Json::String(x), Json::String(y)) => x <= y,
        _ => true,
    };
    if a_first == smaller {
        a
    } else {
        b
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn bounds(col: &ArrayRef, is_json: bool) -> Option<(Json, Json)> {
    Some(match col.data_type() {
        DataType::Int64 => {
            let (lo, hi) = min_max::<Int64Type>(col)?;
            (json!(lo), json!(hi))
        }
        DataType::Float64 => {
            let (lo, hi) = min_max::<Float64Type>(col)?;
            (json!(lo), json!(hi))
        }
        DataType::Date32 => {
            let (lo, hi) = min_max::<Date32Type>(col)?;
            (
                json!(timefmt::format_days(lo)),
                json!(timefmt::format_days(hi)),
            )
        }
        DataType::Timestamp(..) => {
            let (lo, hi) = min_max::<TimestampMicrosecondType>(col)?;
            (
                json!(timefmt::format_stats_millis(lo, false)),
                json!(timefmt::format_stats_millis(hi, true)),
            )
        }
        DataType::Decimal128(..) => {
            // JSON numbers beyond i64 would be read back as floats: no statistics then.
            let (lo, hi) = min_max::<Decimal128Type>(col)?;
            (
                json!(i64::try_from(lo).ok()?),
                json!(i64::try_from(hi).ok()?),
            )
        }
        DataType::Utf8 if !is_json => {
            let a = col.as_string::<i32>();
            let (lo, hi) = fold_min_max(valid_rows(col), |i| a.value(i), |x, y| x < y)?;
            if lo.len() > MAX_STAT_STRING || hi.len() > MAX_STAT_STRING {
                return None;
            }
            (json!(lo), json!(hi))
        }
        _ => return None,
    })
}

/// The rows of `col` that hold a value, in order: every row when none is null, else only the
/// set bits of the validity bitmap (webhook columns are mostly null: most rows are skipped).
fn valid_rows(col: &ArrayRef) -> Box<dyn Iterator<Item = usize> + '_> {
    // Primitive and string arrays: their null buffer is their logical nulls.
    match col.nulls().filter(|n| n.null_count() > 0) {
        None => Box::new(0..col.len()),
        Some(nulls) => Box::new(nulls.valid_indices()),
    }
}

/// Smallest and largest of the values at `rows`, in one pass (`lt`: the order; floats by
/// `total_cmp`, as Arrow's own `min`/`max` order them).
fn fold_min_max<V: Copy>(
    mut rows: impl Iterator<Item = usize>,
    get: impl Fn(usize) -> V,
    lt: impl Fn(&V, &V) -> bool,
) -> Option<(V, V)> {
    let first = get(rows.next()?);
    let (mut lo, mut hi) = (first, first);
    for i in rows {
        let v = get(i);
        if lt(&v, &lo) {
            lo = v;
        } else if lt(&hi, &v) {
            hi = v;
        }
    }
    Some((lo, hi))
}

/// [`fold_min_max`] of a primitive column; `None` when every value is null.
fn min_max<T: ArrowPrimitiveType>(col: &ArrayRef) -> Option<(T::Native, T::Native)> {
    use deltalake::arrow::datatypes::ArrowNativeTypeOp;
    let values = col.as_primitive::<T>().values();
    fold_min_max(valid_rows(col), |i| values[i], |x, y| x.is_lt(*y))
}

/// Rows per batch when a file is read back: a batch of wide rows with KB-sized JSON columns is
/// a few MB, and compaction and rewrites hold one batch at a time.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// A data file read back batch by batch, each batch conformed to the schema asked for.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, FileError>> + Send>;

/// Reads a Parquet file batch by batch, conformed to `schema`: columns added to the table since
/// the file was written become nulls (types never change, so nothing is cast). `schema` may
/// name only some of the table's columns: only those are read from the file (a rewrite's first
/// pass reads just the key columns).
pub fn read_conformed<R: ChunkReader + 'static>(
    name: &str,
    data: R,
    schema: &SchemaRef,
) -> Result<Batches, FileError> {
    let parquet_err = |source| FileError::Parquet {
        path: name.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(parquet_err)?;
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| schema.field_with_name(f.name()).is_ok())
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    let (name, schema) = (name.to_string(), schema.clone());
    Ok(Box::new(reader.map(move |batch| {
        batch
            .and_then(|b| conform(&b, &schema))
            .map_err(|source| FileError::Arrow {
                path: name.clone(),
                source,
            })
    })))
}

pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => compute::cast(c, f.data_type()),
            None => Ok(deltalake::arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &deltalake::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(batch.num_rows())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use deltalake::arrow::array::{BooleanArray, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn one_pass_bounds_agree_with_arrow_on_sparse_dense_and_sliced_columns() {
        use deltalake::arrow::array::Float64Array;
        // A small deterministic generator: no dependency for a test.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for density in [0, 1, 5, 50, 100] {
            let n = 3_000;
            let ints: Int64Array = (0..n)
                .map(|_| (next() % 100 < density).then(|| (next() % 2_000) as i64 - 1_000))
                .collect();
            let floats: Float64Array = (0..n)
                .map(|_| {
                    let v = match next() % 5 {
                        0 => -0.0,
                        1 => 0.0,
                        _ => (next() % 10_000) as f64 / 7.0 - 700.0,
                    };
                    (next() % 100 < density).then_some(v)
                })
                .collect();
            let texts: StringArray = (0..n)
                .map(|_| (next() % 100 < density).then(|| format!("v{}", next() % 5_000)))
                .collect();
            for (off, len) in [(0, n), (17, 1_500), (n - 1, 1)] {
                let i = ints.slice(off, len);
                let f = floats.slice(off, len);
                let t = texts.slice(off, len);
                let arrow_i = compute::min(&i).zip(compute::max(&i));
                let arrow_f = compute::min(&f).zip(compute::max(&f));
                let arrow_t = compute::min_string(&t)
                    .zip(compute::max_string(&t))
                    .map(|(a, b)| (json!(a), json!(b)));
                let (i, f, t): (ArrayRef, ArrayRef, ArrayRef) =
                    (Arc::new(i), Arc::new(f), Arc::new(t));
                let ctx = format!("density {density}%, slice {off}+{len}");
                assert_eq!(min_max::<Int64Type>(&i), arrow_i, "{ctx}");
                let ours_f = min_max::<Float64Type>(&f);
                assert_eq!(
                    ours_f.map(|(a, b)| (a.to_bits(), b.to_bits())),
                    arrow_f.map(|(a, b)| (a.to_bits(), b.to_bits())),
                    "{ctx} (-0.0 and 0.0 told apart)"
                );
                assert_eq!(bounds(&t, false), arrow_t, "{ctx}");
                assert_eq!(bounds(&i, false).is_none(), arrow_i.is_none(), "{ctx}");
            }
        }
    }

    #[test]
    fn statistics_accumulate_over_batches_and_read_back_conformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |n: Vec<Option<i64>>, s: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(n)),
                    Arc::new(StringArray::from(s)),
                ],
            )
            .expect("batch")
        };
        let mut sink = FileSink::create(dir.path(), "f.parquet", schema.clone()).expect("sink");
        sink.write(&batch(vec![Some(5), Some(7)], vec![Some("b"), None]))
            .expect("write");
        sink.write(&batch(vec![Some(1), None], vec![Some("c"), Some("a")]))
            .expect("write");
        let add = sink.finish().expect("finish");
        let stats: Json =
            serde_json::from_str(add.stats.as_deref().unwrap_or("{}")).expect("stats");
        assert_eq!(
            stats,
            json!({"numRecords": 4, "minValues": {"n": 1, "s": "a"}, "maxValues": {"n": 7, "s": "c"}, "nullCount": {"n": 1, "s": 1}})
        );
        let wider = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("later", DataType::Boolean, true),
        ]));
        let file = File::open(dir.path().join("f.parquet")).expect("open");
        let back: Vec<RecordBatch> = read_conformed("f.parquet", file, &wider)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("batches");
        let rows: usize = back.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 4);
        assert_eq!(back[0].column(2).null_count(), back[0].num_rows());
        // Only the columns asked for are read, in the order asked for.
        let only_s = Arc::new(Schema::new(vec![
            Field::new("later", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let file = File::open(dir.path().join("f.parquet")).expect("open");
        let back: Vec<RecordBatch> = read_conformed("f.parquet", file, &only_s)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("batches");
        let back = deltalake::arrow::compute::concat_batches(&only_s, &back).expect("concat");
        assert_eq!(back.num_columns(), 2);
        let s: Vec<_> = back.column(1).as_string::<i32>().iter().collect();
        assert_eq!(s, vec![Some("b"), None, Some("c"), Some("a")]);
        assert_eq!(back.column(0).null_count(), 4);
    }

    /// Batches of a growing schema, as a spilled batch hands them over: n, s; n, s; n, s, b.
    fn growing_batches() -> Vec<RecordBatch> {
        let narrow = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let mut wide_fields = narrow.fields().to_vec();
        wide_fields.push(Arc::new(Field::new("b", DataType::Boolean, true)));
        let wide = Arc::new(Schema::new(wide_fields));
        let two = |n: Vec<Option<i64>>, s: Vec<Option<&str>>| {
            RecordBatch::try_new(
                narrow.clone(),
                vec![
                    Arc::new(Int64Array::from(n)),
                    Arc::new(StringArray::from(s)),
                ],
            )
            .expect("batch")
        };
        vec![
            two(vec![Some(3), Some(4)], vec![Some("c"), None]),
            two(vec![None], vec![Some("a")]),
            RecordBatch::try_new(
                wide,
                vec![
                    Arc::new(Int64Array::from(vec![Some(9), Some(1)])),
                    Arc::new(StringArray::from(vec![Some("q"), Some("b")])),
                    Arc::new(BooleanArray::from(vec![Some(true), None])),
                ],
            )
            .expect("batch"),
        ]
    }

    fn with_stats(batches: Vec<RecordBatch>) -> Vec<(RecordBatch, BatchStats)> {
        batches
            .into_iter()
            .map(|b| {
                let stats = BatchStats::of(&b);
                (b, stats)
            })
            .collect()
    }

    fn parquet_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn parts_of_a_growing_schema_merge_into_one_file_in_batch_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_parts(dir.path(), with_stats(growing_batches())).expect("parts");
        assert_eq!(written.parts.len(), 2, "one part per schema");
        assert_eq!(parquet_files(dir.path()).len(), 2);
        let adds = merge_parts(dir.path(), "f.parquet", written).expect("merge");
        assert_eq!(adds.len(), 1);
        // The parts are gone: only the merged file is left, under the name given.
        assert_eq!(adds[0].path, "f.parquet");
        assert_eq!(parquet_files(dir.path()), vec!["f.parquet".to_string()]);
        let stats: Json =
            serde_json::from_str(adds[0].stats.as_deref().unwrap_or("{}")).expect("stats");
        assert_eq!(
            stats,
            json!({"numRecords": 5, "minValues": {"n": 1, "s": "a"},
                   "maxValues": {"n": 9, "s": "q"}, "nullCount": {"n": 1, "s": 1, "b": 4}})
        );
        let file = File::open(dir.path().join(&adds[0].path)).expect("open");
        let wide = growing_batches()[2].schema();
        let back: Vec<RecordBatch> = read_conformed("merged", file, &wide)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("batches");
        let back = compute::concat_batches(&wide, &back).expect("concat");
        let n: Vec<_> = back.column(0).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(n, vec![Some(3), Some(4), None, Some(9), Some(1)]);
        let b: Vec<_> = back.column(2).as_boolean().iter().collect();
        assert_eq!(b, vec![None, None, None, Some(true), None]);
    }

    #[test]
    fn only_columns_whose_sampled_values_nearly_never_repeat_lose_their_dictionary() {
        let n = 200;
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, true),
            Field::new("kind", DataType::Utf8, true),
            Field::new("key", DataType::Utf8, true),
            Field::new("few", DataType::Int64, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["push", "pull", "issue"][i % 3]),
                )),
                Arc::new(StringArray::from_iter_values(keys.iter())),
                // Unique, but too few values to judge.
                Arc::new(Int64Array::from(
                    (0..n)
                        .map(|i| (i < 10).then_some(i as i64))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0)))),
            ],
        )
        .expect("batch");
        assert_eq!(unique_columns(&batch), vec![0, 2]);
        // Written with those choices: no dictionary page for seq and key, one for kind.
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_parts(dir.path(), with_stats(vec![batch])).expect("parts");
        let adds = merge_parts(dir.path(), "f.parquet", written).expect("merge");
        assert_eq!(adds.len(), 1);
        let file = File::open(dir.path().join("f.parquet")).expect("open");
        let meta = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .metadata()
            .clone();
        let has_dict: Vec<bool> = meta
            .row_group(0)
            .columns()
            .iter()
            .map(|c| c.dictionary_page_offset().is_some())
            .collect();
        assert_eq!(has_dict[..3], [false, true, false]);
    }

    #[test]
    fn a_batch_of_no_rows_still_widens_the_file_to_its_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut batches = growing_batches();
        let wide = batches[2].schema();
        batches.truncate(2);
        batches.push(RecordBatch::new_empty(wide.clone()));
        let written = write_parts(dir.path(), with_stats(batches)).expect("parts");
        assert_eq!(written.parts.len(), 1, "no part for a batch of no rows");
        let adds = merge_parts(dir.path(), "f.parquet", written).expect("merge");
        assert_eq!(adds.len(), 1);
        assert_eq!(parquet_files(dir.path()), vec!["f.parquet".to_string()]);
        let file = File::open(dir.path().join("f.parquet")).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
        assert_eq!(reader.schema().fields().len(), 3, "b is in the file");
        let stats: Json =
            serde_json::from_str(adds[0].stats.as_deref().unwrap_or("{}")).expect("stats");
        assert_eq!(stats["numRecords"], json!(3));
        assert_eq!(stats["nullCount"]["b"], json!(3));
    }

    #[test]
    fn parts_that_cannot_be_merged_are_kept_as_files_of_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut written = write_parts(dir.path(), with_stats(growing_batches())).expect("parts");
        // A part without a row count in its statistics cannot be merged by a chunk copy.
        written.parts[0].stats = json!({});
        let second = written.parts[1].add.path.clone();
        let adds = merge_parts(dir.path(), "f.parquet", written).expect("merge");
        // The first part takes the name given; nothing else is left behind (the abandoned
        // merged file is removed).
        let names: Vec<String> = adds.iter().map(|a| a.path.clone()).collect();
        assert_eq!(names, vec!["f.parquet".to_string(), second]);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(parquet_files(dir.path()), sorted);
        let rows: usize = names
            .iter()
            .map(|n| {
                let file = File::open(dir.path().join(n)).expect("open");
                read_conformed(n, file, &growing_batches()[2].schema())
                    .expect("read")
                    .map(|b| b.expect("batch").num_rows())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(rows, 5);
    }

    #[test]
    fn concat_copies_chunks_fills_new_columns_with_nulls_and_merges_statistics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let narrow = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let wide = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        let mut sink = FileSink::create(dir.path(), "old.parquet", narrow.clone()).expect("sink");
        sink.write(
            &RecordBatch::try_new(
                narrow.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![Some(5), None, Some(9)])),
                    Arc::new(StringArray::from(vec![Some("m"), Some("z"), None])),
                ],
            )
            .expect("batch"),
        )
        .expect("write");
        let old = sink.finish().expect("finish");
        let mut sink = FileSink::create(dir.path(), "new.parquet", wide.clone()).expect("sink");
        sink.write(
            &RecordBatch::try_new(
                wide.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![Some(-3), Some(4)])),
                    Arc::new(StringArray::from(vec![None, Some("a")])),
                    Arc::new(BooleanArray::from(vec![Some(true), None])),
                ],
            )
            .expect("batch"),
        )
        .expect("write");
        let new = sink.finish().expect("finish");
        let stats = |a: &Add| -> Json {
            serde_json::from_str(a.stats.as_deref().unwrap_or("")).expect("stats")
        };

        let mut concat = Concat::create(dir.path(), "merged.parquet", wide.clone())
            .expect("create")
            .expect("every column is a nullable primitive");
        for (name, add) in [("old.parquet", &old), ("new.parquet", &new)] {
            let data = Bytes::from(std::fs::read(dir.path().join(name)).expect("read"));
            let meta = concat.accepts(&data, Some(&stats(add))).expect("copyable");
            concat.append(&data, &meta, &stats(add)).expect("append");
        }
        let merged = concat.finish().expect("finish");
        // Booleans get no bounds from FileSink; a merge does not invent them.
        assert_eq!(
            stats(&merged),
            json!({"numRecords": 5,
                   "minValues": {"n": -3, "s": "a"},
                   "maxValues": {"n": 9, "s": "z"},
                   "nullCount": {"n": 1, "s": 2, "b": 4}})
        );
        let file = File::open(dir.path().join("merged.parquet")).expect("open");
        let back: Vec<RecordBatch> = read_conformed("merged.parquet", file, &wide)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("batches");
        let back = deltalake::arrow::compute::concat_batches(&wide, &back).expect("concat");
        let n: Vec<_> = back.column(0).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(n, vec![Some(5), None, Some(9), Some(-3), Some(4)]);
        let s: Vec<_> = back.column(1).as_string::<i32>().iter().collect();
        assert_eq!(s, vec![Some("m"), Some("z"), None, None, Some("a")]);
        let b: Vec<_> = back.column(2).as_boolean().iter().collect();
        assert_eq!(b, vec![None, None, None, Some(true), None]);

        // A file with a column the table does not have is not copied.
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let mut sink = FileSink::create(dir.path(), "x.parquet", other.clone()).expect("sink");
        sink.write(
            &RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).expect("b"),
        )
        .expect("write");
        let x = sink.finish().expect("finish");
        let concat = Concat::create(dir.path(), "m2.parquet", wide)
            .expect("create")
            .expect("concat");
        let data = Bytes::from(std::fs::read(dir.path().join("x.parquet")).expect("read"));
        assert!(concat.accepts(&data, Some(&stats(&x))).is_none());
        assert!(
            concat.accepts(&data, None).is_none(),
            "no statistics: not copied"
        );
        concat.abandon();
        assert!(!dir.path().join("m2.parquet").exists());
    }

    #[test]
    fn concat_keeps_every_row_group_of_a_multi_group_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let write = |name: &str, values: Vec<i64>| {
            let mut sink = FileSink::create(dir.path(), name, schema.clone()).expect("sink");
            sink.write(
                &RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .expect("batch"),
            )
            .expect("write");
            sink.finish().expect("finish")
        };
        // 70,000 rows: two row groups (at most 64k rows each).
        let big = write("big.parquet", (0..70_000).collect());
        let small = write("small.parquet", vec![-1, 100_000]);
        let mut concat = Concat::create(dir.path(), "m.parquet", schema.clone())
            .expect("create")
            .expect("concat");
        for (name, add) in [("big.parquet", &big), ("small.parquet", &small)] {
            let stats: Json =
                serde_json::from_str(add.stats.as_deref().unwrap_or("")).expect("stats");
            let data = Bytes::from(std::fs::read(dir.path().join(name)).expect("read"));
            let meta = concat.accepts(&data, Some(&stats)).expect("copyable");
            if name == "big.parquet" {
                assert_eq!(meta.num_row_groups(), 2);
            }
            concat.append(&data, &meta, &stats).expect("append");
        }
        let merged = concat.finish().expect("finish");
        let stats: Json =
            serde_json::from_str(merged.stats.as_deref().unwrap_or("")).expect("stats");
        assert_eq!(stats["numRecords"], 70_002);
        assert_eq!(
            (
                stats["minValues"]["n"].clone(),
                stats["maxValues"]["n"].clone()
            ),
            (json!(-1), json!(100_000))
        );
        let file = File::open(dir.path().join("m.parquet")).expect("open");
        let mut all = Vec::new();
        for b in read_conformed("m.parquet", file, &schema).expect("read") {
            all.extend(
                b.expect("batch")
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        let mut want: Vec<i64> = (0..70_000).collect();
        want.extend([-1, 100_000]);
        assert_eq!(all, want);
    }
}
