//! Parquet data files: written by us (zstd, column statistics, the table's full schema), their
//! Delta `add` statistics, and reading a file back into the current schema for a rewrite.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute;
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, SchemaRef,
    TimestampMicrosecondType,
};
use deltalake::kernel::Add;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::{ArrowWriter, ProjectionMask};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::file::reader::ChunkReader;
use deltalake::parquet::schema::types::ColumnPath;
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

/// Writes `batch` as `<table_root>/<name>`, fsync'd, and returns its Delta `add` action.
pub fn write_file(table_root: &Path, name: &str, batch: &RecordBatch) -> Result<Add, FileError> {
    let mut sink = FileSink::create(table_root, name, batch.schema())?;
    sink.write(batch)?;
    sink.finish()
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

#[derive(Default)]
struct ColumnStats {
    nulls: usize,
    /// `None` once a batch had values without exact bounds: then no bounds at all.
    bounds: Option<(Json, Json)>,
    exact: bool,
}

impl FileSink {
    pub fn create(table_root: &Path, name: &str, schema: SchemaRef) -> Result<FileSink, FileError> {
        let path = table_root.join(name);
        let shown = path.display().to_string();
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        for field in schema.fields() {
            if field
                .metadata()
                .get(crate::registry::META_TYPE)
                .map(String::as_str)
                == Some("json")
            {
                // JSON text (payloads of KBs) rarely repeats and its min/max mean nothing:
                // a dictionary attempt and statistics only cost encoding time.
                let path = ColumnPath::from(field.name().as_str());
                props = props
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
        let props = props.build();
        let file = File::create(&path).map_err(|source| FileError::Io {
            path: shown.clone(),
            source,
        })?;
        let stats = schema
            .fields()
            .iter()
            .map(|_| ColumnStats {
                exact: true,
                ..Default::default()
            })
            .collect();
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
        let schema = batch.schema();
        for ((field, col), acc) in schema
            .fields()
            .iter()
            .zip(batch.columns())
            .zip(&mut self.stats)
        {
            acc.nulls += col.null_count();
            if col.null_count() == col.len() || !acc.exact {
                continue;
            }
            let is_json = field
                .metadata()
                .get(crate::registry::META_TYPE)
                .is_some_and(|t| t == "json");
            match bounds(col, is_json) {
                None => (acc.exact, acc.bounds) = (false, None),
                Some((lo, hi)) => {
                    acc.bounds = Some(match acc.bounds.take() {
                        None => (lo, hi),
                        Some((a, b)) => (pick(a, lo, true), pick(b, hi, false)),
                    })
                }
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
        let FileSink {
            name,
            shown,
            schema,
            writer,
            rows,
            stats,
        } = self;
        let mut file = writer.into_inner().map_err(|source| FileError::Parquet {
            path: shown.clone(),
            source,
        })?;
        file.flush().map_err(|source| FileError::Io {
            path: shown.clone(),
            source,
        })?;
        // The commit that references this file must never be durable before the file is.
        file.sync_all().map_err(|source| FileError::Io {
            path: shown.clone(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| FileError::Io {
                path: shown,
                source,
            })?
            .len();
        let mut mins = Map::new();
        let mut maxs = Map::new();
        let mut nulls = Map::new();
        for (field, acc) in schema.fields().iter().zip(stats) {
            nulls.insert(field.name().clone(), json!(acc.nulls));
            if let Some((lo, hi)) = acc.bounds {
                mins.insert(field.name().clone(), lo);
                maxs.insert(field.name().clone(), hi);
            }
        }
        let stats =
            json!({"numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls});
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
            let a = col.as_primitive::<Int64Type>();
            (json!(compute::min(a)?), json!(compute::max(a)?))
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            (json!(compute::min(a)?), json!(compute::max(a)?))
        }
        DataType::Date32 => {
            let a = col.as_primitive::<Date32Type>();
            (
                json!(timefmt::format_days(compute::min(a)?)),
                json!(timefmt::format_days(compute::max(a)?)),
            )
        }
        DataType::Timestamp(..) => {
            let a = col.as_primitive::<TimestampMicrosecondType>();
            (
                json!(timefmt::format_stats_millis(compute::min(a)?, false)),
                json!(timefmt::format_stats_millis(compute::max(a)?, true)),
            )
        }
        DataType::Decimal128(..) => {
            let a = col.as_primitive::<Decimal128Type>();
            // JSON numbers beyond i64 would be read back as floats: no statistics then.
            let (lo, hi) = (compute::min(a)?, compute::max(a)?);
            (
                json!(i64::try_from(lo).ok()?),
                json!(i64::try_from(hi).ok()?),
            )
        }
        DataType::Utf8 if !is_json => {
            let a = col.as_string::<i32>();
            let (lo, hi) = (compute::min_string(a)?, compute::max_string(a)?);
            if lo.len() > MAX_STAT_STRING || hi.len() > MAX_STAT_STRING {
                return None;
            }
            (json!(lo), json!(hi))
        }
        _ => return None,
    })
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
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

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
}
