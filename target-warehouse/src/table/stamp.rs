//! Soft deletes without a query engine: sets a timestamp column (`_sdc_deleted_at`) on the rows
//! a predicate picks, as ACTIVATE_VERSION does without `hard_delete` (the SDK targets' rule).
//!
//! Only files whose statistics may hold such rows are read, first for the predicate's columns
//! alone; a file with a picked row is rewritten whole with the column set (`remove` + `add` in
//! the caller's one commit), its deletion vector's rows left out. Copy-on-write in both table
//! modes: an update with deletion vectors would also write the changed rows to a new file, and
//! ACTIVATE_VERSION touches each old row once.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, PrimitiveArray, RecordBatch};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::Action;
use roaring::RoaringTreemap;
use serde_json::Value as Json;

use super::error::TableError;
use super::merge::{picked_rows, Picked, Rewrite};
use super::{dv, Table};
use crate::failpoint::{self, Step};
use crate::registry::Registry;

/// Sets column `target` (a µs timestamp) to `value_us` on the rows `matches` picks; `probe` are
/// the registry columns `matches` is given, in that order (one flag per row pushed: true, set
/// it). `Rewrite::removed` counts the rows set. Nothing is committed here; on an error the files
/// written so far are removed.
pub fn stamp_rows(
    table: &Table,
    registry: &Registry,
    probe: &[usize],
    target: usize,
    value_us: i64,
    candidate: impl Fn(Option<&Json>) -> bool,
    matches: impl FnMut(&RecordBatch, &mut Vec<bool>),
) -> Result<Rewrite, TableError> {
    let mut out = Rewrite::default();
    let res = stamp_into(
        table, registry, probe, target, value_us, candidate, matches, &mut out,
    );
    match res {
        Ok(()) => Ok(out),
        Err(e) => {
            for path in &out.new_files {
                table.discard_new_file(path);
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stamp_into(
    table: &Table,
    registry: &Registry,
    probe: &[usize],
    target: usize,
    value_us: i64,
    candidate: impl Fn(Option<&Json>) -> bool,
    mut matches: impl FnMut(&RecordBatch, &mut Vec<bool>),
    out: &mut Rewrite,
) -> Result<(), TableError> {
    let arrow_err = |source| TableError::Arrow {
        table: table.stream.clone(),
        source,
    };
    let schema = &registry.arrow_schema();
    let probe_schema = &Arc::new(schema.project(probe).map_err(arrow_err)?);
    let mut dv_files = dv::Cache::default();
    let mut mask = Vec::new();
    for file in table.files()? {
        if !candidate(file.stats.as_ref()) {
            continue;
        }
        let Some(Picked {
            rows: picked,
            deleted,
            ..
        }) = picked_rows(
            table,
            &file,
            probe_schema,
            &mut matches,
            &mut mask,
            &mut dv_files,
        )?
        else {
            continue;
        };
        out.removed += picked.len() as usize;
        out.actions.push(Action::Remove(file.remove.clone()));
        let mut sink = table.file_sink(schema)?;
        out.new_files.push(sink.name().to_string());
        let mut first = 0u64;
        for b in table.read_file(&file.path, schema)? {
            let b = b?;
            let n = b.num_rows() as u64;
            let b = stamp(b, target, first, &picked, value_us).map_err(arrow_err)?;
            let kept = dv::drop_deleted(b, first, &deleted).map_err(arrow_err)?;
            first += n;
            if kept.num_rows() > 0 {
                sink.write(&kept)?;
            }
        }
        failpoint::hit(Step::RewriteFile).map_err(|source| TableError::Io {
            table: table.stream.clone(),
            source,
        })?;
        let add = table.publish(sink.finish()?)?;
        out.actions.push(Action::Add(add));
    }
    Ok(())
}

/// `batch` (physical rows `first..`) with column `target` set to `value_us` where `picked`.
fn stamp(
    batch: RecordBatch,
    target: usize,
    first: u64,
    picked: &RoaringTreemap,
    value_us: i64,
) -> Result<RecordBatch, ArrowError> {
    let end = first + batch.num_rows() as u64;
    if picked.range_cardinality(first..end) == 0 {
        return Ok(batch);
    }
    let col = batch.column(target);
    let old = col
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!(
                "column {} is {}, not a timestamp",
                batch.schema().field(target).name(),
                col.data_type()
            ))
        })?;
    let new: PrimitiveArray<TimestampMicrosecondType> = (first..end)
        .enumerate()
        .map(|(i, r)| {
            if picked.contains(r) {
                Some(value_us)
            } else {
                old.is_valid(i).then(|| old.value(i))
            }
        })
        .collect();
    let new = new.with_data_type(col.data_type().clone());
    let mut columns = batch.columns().to_vec();
    columns[target] = Arc::new(new);
    RecordBatch::try_new(batch.schema(), columns)
}
