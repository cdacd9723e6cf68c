//! Reading our data files back (upsert rewrites, compaction's decoding path, ACTIVATE_VERSION),
//! batch by batch, conformed to the table's current schema.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::file::reader::ChunkReader;

use super::files::FileError;

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
    use deltalake::arrow::array::{Array, AsArray, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use serde_json::{json, Value as Json};
    use std::fs::File;
    use std::sync::Arc;

    use crate::table::files::FileSink;

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
