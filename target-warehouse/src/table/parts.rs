//! A batch's data file written in parts: a batch handed over while it is parsed may gain
//! columns mid-way, so each run of same-schema record batches is a part file, and at the end the
//! parts are merged into the one file the commit adds (by copying their column chunks).

use std::fs::File;
use std::path::Path;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::Add;

use super::concat::Concat;
use super::files::{new_file_name, sync, unique_columns, FileError, FileSink, Part};
use super::stats::BatchStats;
use crate::failpoint::{self, Step};

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
            failpoint::hit(Step::DataFileWrite).map_err(|source| FileError::Io {
                path: dir.join(&s.name).display().to_string(),
                source,
            })?;
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

/// `parts` copied into one new file `name`, or `None` (nothing left behind) when one of them
/// cannot be copied or the file would hold over
/// [`MAX_COPIED_ROW_GROUPS`](super::concat::MAX_COPIED_ROW_GROUPS) row groups. Parts are read
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
    if let Err(source) = failpoint::hit(Step::PartMerge) {
        out.abandon();
        return Err(FileError::Io {
            path: dir.join(name).display().to_string(),
            source,
        });
    }
    out.copy_all(parts.iter().map(|part| {
        let path = dir.join(&part.add.path);
        let file = File::open(&path).map_err(|source| FileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok((file, Some(&part.stats)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{AsArray, BooleanArray, Int64Array, StringArray};
    use deltalake::arrow::compute;
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::{json, Value as Json};
    use std::sync::Arc;

    use crate::table::read::read_conformed;

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
}
