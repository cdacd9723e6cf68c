//! The rows an upsert batch writes and replaces: within the batch the latest `_sdc_sequence` per
//! key wins (hard deletes drop their key); in the table, the rows whose key the batch holds are
//! removed from the files that can hold them (deletion vectors, or copy-on-write rewrites).

use std::collections::HashSet;

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;

use crate::registry::Registry;
use crate::table::error::TableError;
use crate::table::merge::Rewrite;
use crate::table::merge::{encode_key, key_columns, latest_per_key, rewrite_files, KeyProbe};
use crate::table::Table;

/// For each of `batch`'s rows, whether it is written (the latest of its key, and not a
/// deletion), and the rewrite of the table's files holding rows those keys replace: its
/// actions and new files go into the batch's commit.
pub fn replace_by_key(
    table: &Table,
    registry: &Registry,
    keys: &[String],
    batch: &RecordBatch,
    seqs: &[i64],
    deletes: &[bool],
) -> Result<(BooleanArray, Rewrite), TableError> {
    let cols = key_columns(registry, keys);
    let (mask, batch_keys) = latest_per_key(batch, &cols, seqs, deletes);
    let probe = KeyProbe::new(batch, &cols);
    let (needed, local) = probe_columns(&cols);
    // One integer column holding every key of the batch (the usual case): the tables' keys
    // are compared as integers, without encoding each row's key (the scan of every candidate
    // file's keys is what grows with the table).
    let int_keys: Option<HashSet<i64, foldhash::fast::RandomState>> = match needed.as_slice() {
        [c] => batch
            .column(*c)
            .as_primitive_opt::<Int64Type>()
            .filter(|a| a.null_count() == 0)
            .map(|a| a.values().iter().copied().collect()),
        _ => None,
    };
    let mut buf = Vec::new();
    let rewrite = rewrite_files(
        table,
        registry,
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
                batch_keys.contains(&buf)
            })),
        },
    )?;
    Ok((mask, rewrite))
}

/// The registry columns a table read needs for keys `cols` (each key property's columns, in
/// order), and where each property's columns sit among them: reads hand over batches of the key
/// columns only.
pub(super) fn probe_columns(cols: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let needed: Vec<usize> = cols.iter().flatten().copied().collect();
    let mut at = 0;
    let local = cols
        .iter()
        .map(|p| {
            at += p.len();
            (at - p.len()..at).collect()
        })
        .collect();
    (needed, local)
}
