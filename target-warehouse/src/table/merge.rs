//! Upserts and deletes by key, without a query engine: with deletion vectors, or copy-on-write.
//!
//! Within a batch the latest `_sdc_sequence` per key wins. Rows already in the table whose key
//! is in the batch are removed by rewriting only the files that can hold them: a file is read
//! only when its Delta statistics (min/max of the first key column) cover one of the batch's
//! keys, so an upsert's cost follows the rows it touches, not the table's size. The rewrite's
//! `remove` + `add` actions go into the same commit as the batch's own file.

use std::collections::{HashMap, HashSet};

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::{Action, Add, DeletionVectorDescriptor};
use roaring::RoaringTreemap;
use serde_json::Value as Json;

use super::error::TableError;
use super::{dv, FileInfo, Table};

/// Encoded keys (see [`encode_key`]).
pub type KeySet = HashSet<Vec<u8>, foldhash::fast::RandomState>;
use crate::failpoint::{self, Step};
use crate::registry::Registry;

/// The physical columns of each key property (base first, then siblings).
pub fn key_columns(registry: &Registry, keys: &[String]) -> Vec<Vec<usize>> {
    keys.iter()
        .map(|k| {
            registry
                .property(k)
                .map(|p| p.all().collect())
                .unwrap_or_default()
        })
        .collect()
}

/// Appends a type-tagged, unambiguous encoding of row `row`'s key to `out`. The same value
/// always lands in the same column (types never change), so files and batches agree.
pub fn encode_key(batch: &RecordBatch, cols: &[Vec<usize>], row: usize, out: &mut Vec<u8>) {
    for prop in cols {
        let hit = prop
            .iter()
            .map(|&c| batch.column(c))
            .find(|a| a.is_valid(row));
        let Some(a) = hit else {
            out.push(b'0');
            continue;
        };
        match a.data_type() {
            DataType::Int64 => push(
                out,
                b'i',
                &a.as_primitive::<Int64Type>().value(row).to_le_bytes(),
            ),
            DataType::Float64 => push(
                out,
                b'f',
                &a.as_primitive::<Float64Type>().value(row).to_le_bytes(),
            ),
            DataType::Boolean => push(out, b'b', &[u8::from(a.as_boolean().value(row))]),
            DataType::Date32 => push(
                out,
                b'd',
                &a.as_primitive::<Date32Type>().value(row).to_le_bytes(),
            ),
            DataType::Timestamp(..) => push(
                out,
                b't',
                &a.as_primitive::<TimestampMicrosecondType>()
                    .value(row)
                    .to_le_bytes(),
            ),
            DataType::Decimal128(..) => push(
                out,
                b'n',
                &a.as_primitive::<Decimal128Type>().value(row).to_le_bytes(),
            ),
            DataType::Utf8 => push(out, b's', a.as_string::<i32>().value(row).as_bytes()),
            _ => out.push(b'?'),
        }
    }
}

fn push(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Keeps, for each key, the row with the highest sequence (the later row on a tie). Returns
/// the mask of rows to write (deleted rows excluded) and every key the batch touches.
pub fn latest_per_key(
    batch: &RecordBatch,
    cols: &[Vec<usize>],
    seqs: &[i64],
    deleted: &[bool],
) -> (BooleanArray, KeySet) {
    let mut winner: HashMap<Vec<u8>, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(batch.num_rows(), Default::default());
    let mut buf = Vec::new();
    for row in 0..batch.num_rows() {
        buf.clear();
        encode_key(batch, cols, row, &mut buf);
        match winner.get_mut(&buf) {
            Some(w) => {
                if seqs[row] >= seqs[*w] {
                    *w = row;
                }
            }
            None => {
                winner.insert(buf.clone(), row);
            }
        }
    }
    let mut keep = vec![false; batch.num_rows()];
    for &row in winner.values() {
        keep[row] = !deleted.get(row).copied().unwrap_or(false);
    }
    (BooleanArray::from(keep), winner.into_keys().collect())
}

/// What the batch's first key column can match, for pruning files by their statistics.
pub struct KeyProbe {
    /// Per physical column name: sorted integer or string values; `None` = cannot prune.
    columns: Vec<(String, Option<Probe>)>,
    /// A row whose first key property is null everywhere: every file may match.
    any_null: bool,
}

enum Probe {
    Ints(Vec<i64>),
    Strs(Vec<String>),
}

impl KeyProbe {
    pub fn new(batch: &RecordBatch, cols: &[Vec<usize>]) -> KeyProbe {
        let Some(first) = cols.first() else {
            return KeyProbe {
                columns: Vec::new(),
                any_null: true,
            };
        };
        let any_null =
            (0..batch.num_rows()).any(|r| first.iter().all(|&c| batch.column(c).is_null(r)));
        let schema = batch.schema();
        let columns = first
            .iter()
            .filter(|&&c| batch.column(c).null_count() < batch.num_rows())
            .map(|&c| {
                let a = batch.column(c);
                let probe = match a.data_type() {
                    DataType::Int64 => {
                        let mut v: Vec<i64> =
                            a.as_primitive::<Int64Type>().iter().flatten().collect();
                        v.sort_unstable();
                        Some(Probe::Ints(v))
                    }
                    DataType::Utf8 => {
                        let mut v: Vec<String> = a
                            .as_string::<i32>()
                            .iter()
                            .flatten()
                            .map(str::to_string)
                            .collect();
                        v.sort_unstable();
                        Some(Probe::Strs(v))
                    }
                    _ => None,
                };
                (schema.field(c).name().clone(), probe)
            })
            .collect();
        KeyProbe { columns, any_null }
    }

    /// Whether a file with these Delta statistics could hold one of the keys.
    pub fn may_match(&self, stats: Option<&Json>) -> bool {
        let Some(stats) = stats else { return true };
        if self.any_null {
            return true;
        }
        let records = stats.get("numRecords").and_then(Json::as_i64);
        self.columns.iter().any(|(name, probe)| {
            let nulls = stats
                .pointer(&format!("/nullCount/{}", escape(name)))
                .and_then(Json::as_i64);
            if nulls.is_some() && nulls == records {
                return false; // the column is all null in this file
            }
            let (lo, hi) = (
                stats.pointer(&format!("/minValues/{}", escape(name))),
                stats.pointer(&format!("/maxValues/{}", escape(name))),
            );
            match (probe, lo, hi) {
                (Some(Probe::Ints(v)), Some(lo), Some(hi)) => match (lo.as_i64(), hi.as_i64()) {
                    (Some(lo), Some(hi)) => {
                        let i = v.partition_point(|x| *x < lo);
                        v.get(i).is_some_and(|x| *x <= hi)
                    }
                    _ => true,
                },
                (Some(Probe::Strs(v)), Some(lo), Some(hi)) => match (lo.as_str(), hi.as_str()) {
                    (Some(lo), Some(hi)) => {
                        let i = v.partition_point(|x| x.as_str() < lo);
                        v.get(i).is_some_and(|x| x.as_str() <= hi)
                    }
                    _ => true,
                },
                _ => true,
            }
        })
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// What [`rewrite_files`] did: the actions for the batch's commit, the rows it removed, and the
/// new files it wrote for them (to remove if the commit is not made).
#[derive(Default)]
pub struct Rewrite {
    pub actions: Vec<Action>,
    pub removed: usize,
    pub new_files: Vec<String>,
}

/// Removes the rows `matches` picks from the files that may hold them. `columns` are the
/// registry columns `matches` looks at: it is given batches of exactly those columns, in that
/// order, and pushes one flag per row (true: the row goes). A candidate file is first read for those columns only; files where nothing matches
/// are left alone.
///
/// On a table with deletion vectors, a file where rows match keeps its data: the rows are added
/// to its deletion vector (one DV file per call holds the vectors of every file touched), and
/// the file is `remove`d and `add`ed again with the new vector, so the cost follows the rows
/// touched. Otherwise (copy-on-write) the file is read whole and its other rows streamed into
/// a new file, one batch at a time (memory stays at one batch, whatever the file's size).
pub fn rewrite_files(
    table: &Table,
    registry: &Registry,
    columns: &[usize],
    candidate: impl Fn(Option<&Json>) -> bool,
    matches: impl FnMut(&RecordBatch, &mut Vec<bool>),
) -> Result<Rewrite, TableError> {
    let mut out = Rewrite::default();
    match rewrite_into(table, registry, columns, candidate, matches, &mut out) {
        Ok(()) => Ok(out),
        Err(e) => {
            // Nothing of a rewrite that failed is committed: its files go.
            for path in &out.new_files {
                table.discard_new_file(path);
            }
            Err(e)
        }
    }
}

/// [`rewrite_files`]' work; the files it writes are listed in `out.new_files` as they are
/// written (the DV file before its write).
fn rewrite_into(
    table: &Table,
    registry: &Registry,
    columns: &[usize],
    candidate: impl Fn(Option<&Json>) -> bool,
    mut matches: impl FnMut(&RecordBatch, &mut Vec<bool>),
    out: &mut Rewrite,
) -> Result<(), TableError> {
    let arrow_err = |source| TableError::Arrow {
        table: table.stream.clone(),
        source,
    };
    let schema = &registry.arrow_schema();
    let probe_schema = &std::sync::Arc::new(schema.project(columns).map_err(arrow_err)?);
    let use_dvs = table.deletion_vectors();
    let mut vectors = dv::DvFile::default();
    let mut dv_files = dv::Cache::default();
    let mut marked = Vec::new();
    let mut mask = Vec::new();
    for file in table.files()? {
        if !candidate(file.stats.as_ref()) {
            continue;
        }
        let Some(Picked {
            rows: newly,
            deleted,
            count: row,
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
        out.removed += newly.len() as usize;
        out.actions.push(Action::Remove(file.remove.clone()));
        let all = &deleted | &newly;
        if all.len() >= row {
            continue; // every row is gone: the file goes
        }
        if use_dvs {
            let descriptor = vectors
                .push(&all)
                .map_err(|detail| TableError::DeletionVector {
                    table: table.stream.clone(),
                    file: file.path.clone(),
                    detail,
                })?;
            marked.push((file, descriptor, row));
            continue;
        }
        let mut sink = table.file_sink(schema)?;
        // Listed before it is written: a rewrite that fails halfway removes it.
        out.new_files.push(sink.name().to_string());
        if table.copy_live_rows(&file.path, schema, &all, &mut sink)? > row {
            return Err(arrow_err(ArrowError::InvalidArgumentError(format!(
                "data file {} read back with more rows than its key columns had",
                file.path
            ))));
        }
        failpoint::hit(Step::RewriteFile).map_err(|source| TableError::Io {
            table: table.stream.clone(),
            source,
        })?;
        let add = table.publish(sink.finish()?)?;
        out.actions.push(Action::Add(add));
    }
    if !marked.is_empty() {
        out.new_files.push(vectors.path()); // first: a write that fails halfway is removed
        table.write_dv_file(&vectors)?;
        for (file, descriptor, rows) in marked {
            out.actions.push(Action::Add(readd(file, descriptor, rows)));
        }
    }
    Ok(())
}

/// Which of `wanted` (keys encoded as [`encode_key`] does, over `local`: the positions of each
/// key property's columns in `columns`) a live row of the table holds; a row its file's
/// deletion vector deletes is not live. Only the key columns of the files `candidate` lets
/// through (by their statistics) are read. An insert's first step: a key found is skipped.
pub fn existing_keys(
    table: &Table,
    registry: &Registry,
    columns: &[usize],
    local: &[Vec<usize>],
    candidate: impl Fn(Option<&Json>) -> bool,
    wanted: &KeySet,
) -> Result<KeySet, TableError> {
    let arrow_err = |source| TableError::Arrow {
        table: table.stream.clone(),
        source,
    };
    let probe_schema = &std::sync::Arc::new(
        registry
            .arrow_schema()
            .project(columns)
            .map_err(arrow_err)?,
    );
    let mut dv_files = dv::Cache::default();
    let mut found = KeySet::default();
    let mut buf = Vec::new();
    for file in table.files()? {
        if found.len() == wanted.len() {
            break;
        }
        if !candidate(file.stats.as_ref()) {
            continue;
        }
        let deleted = table.deleted_rows(&file, &mut dv_files)?;
        let mut at = 0u64;
        for b in table.read_file(&file.path, probe_schema)? {
            let b = b?;
            for r in 0..b.num_rows() {
                if deleted.contains(at + r as u64) {
                    continue;
                }
                buf.clear();
                encode_key(&b, local, r, &mut buf);
                if wanted.contains(&buf) && !found.contains(&buf) {
                    found.insert(buf.clone());
                }
            }
            at += b.num_rows() as u64;
        }
    }
    Ok(found)
}

/// The rows of one data file a rewrite takes: those `matches` picks that its deletion vector does
/// not already delete (a deleted row neither matches nor stays), the rows it deletes, and the
/// file's physical row count. `None` when nothing is picked. The first step of every rewrite:
/// upserts and deletes here, ACTIVATE_VERSION's stamps (`stamp.rs`).
pub(super) struct Picked {
    pub rows: RoaringTreemap,
    pub deleted: RoaringTreemap,
    pub count: u64,
}

pub(super) fn picked_rows(
    table: &Table,
    file: &FileInfo,
    probe_schema: &deltalake::arrow::datatypes::SchemaRef,
    matches: &mut impl FnMut(&RecordBatch, &mut Vec<bool>),
    mask: &mut Vec<bool>,
    dv_files: &mut dv::Cache,
) -> Result<Option<Picked>, TableError> {
    let mut hits = RoaringTreemap::new();
    let mut count = 0u64;
    for b in table.read_file(&file.path, probe_schema)? {
        let b = b?;
        mask.clear();
        matches(&b, mask);
        for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            hits.insert(count + i as u64);
        }
        count += b.num_rows() as u64;
    }
    if hits.is_empty() {
        return Ok(None);
    }
    let deleted = table.deleted_rows(file, dv_files)?;
    let rows = &hits - &deleted;
    Ok((!rows.is_empty()).then_some(Picked {
        rows,
        deleted,
        count,
    }))
}

/// The `add` of a file whose deletion vector changed: same data, same statistics, except that
/// the bounds are no longer tight (they may name deleted rows' values) and `numRecords`, which
/// the protocol requires beside a vector, is the file's physical row count as read.
fn readd(file: FileInfo, dv: DeletionVectorDescriptor, rows: u64) -> Add {
    let mut stats = file
        .stats
        .unwrap_or_else(|| Json::Object(Default::default()));
    if let Some(o) = stats.as_object_mut() {
        o.insert("numRecords".into(), Json::from(rows));
        o.insert("tightBounds".into(), Json::Bool(false));
    }
    Add {
        path: file.path,
        partition_values: file.remove.partition_values.unwrap_or_default(),
        size: file.size,
        modification_time: file.modification_time,
        data_change: true,
        stats: Some(stats.to_string()),
        tags: None,
        deletion_vector: Some(dv),
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}
