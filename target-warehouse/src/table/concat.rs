//! Concatenating data files by copying their encoded column chunks (no decoding, no
//! re-encoding): compaction's merge, and the merge of a batch's parts into one file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::Add;
use deltalake::parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use deltalake::parquet::column::writer::{ColumnCloseResult, ColumnWriter};
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use deltalake::parquet::file::reader::ChunkReader;
use deltalake::parquet::file::writer::SerializedFileWriter;
use deltalake::parquet::schema::types::SchemaDescriptor;
use serde_json::Value as Json;

use super::files::{durable_add, writer_properties, FileError};
use super::stats::{stats_json, ColumnStats};

/// A chunk copy keeps every input row group, and each costs the footer one entry per column
/// (~40 KB for a 250-column table). Beyond this many row groups in the merged file (files of
/// a few rows each, from frequent small loads) the group is decoded and re-encoded into full
/// row groups instead, which bounds the footer whatever the compaction history.
pub const MAX_COPIED_ROW_GROUPS: usize = 32;

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
            .map_err(|e| {
                // The file exists (a full disk fails the header's write): it goes.
                let _ = std::fs::remove_file(&path);
                parquet_err(e)
            })?;
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
    /// file would hold over [`MAX_COPIED_ROW_GROUPS`]
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
                    if row_groups + meta.num_row_groups() <= MAX_COPIED_ROW_GROUPS =>
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use deltalake::arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use serde_json::json;

    use crate::table::files::FileSink;
    use crate::table::read::read_conformed;

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
