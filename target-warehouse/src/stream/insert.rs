//! The rows an insert batch writes (`load_method: insert`, valmi's Create): a key new to the
//! table is inserted by its first record (lowest `_sdc_sequence`); a record whose key the table
//! (or an earlier record of the batch) already holds is skipped and counted, never an error.
//!
//! A record carrying `_sdc_deleted_at` still deletes: the key's row leaves the table and, without
//! `hard_delete`, the delete record itself stays as the key's row, marked. After a hard delete the
//! key is new again, so a later insert of it lands; a marked row holds its key, so a later insert
//! is skipped, in the same batch as in a later one. Each key's records are applied in sequence
//! order, so the outcome is the one a row-by-row replay would give, wherever batches are cut.
//!
//! Like an upsert, an insert reads the table (the files whose statistics may hold a batch key),
//! so its commit is a merge without predicate: deltalake refuses it when another load committed
//! rows since the read, and a key cannot end up in the table twice.

use std::collections::HashMap;

use deltalake::arrow::array::{BooleanArray, RecordBatch};

use super::upsert::probe_columns;
use crate::registry::Registry;
use crate::table::error::TableError;
use crate::table::merge::{
    encode_key, existing_keys, key_columns, rewrite_files, KeyProbe, KeySet, Rewrite,
};
use crate::table::Table;

/// What an insert batch does: the rows it writes, the rewrite removing deleted keys' rows, and
/// how many records it skipped because their key was there.
pub struct Inserted {
    pub mask: BooleanArray,
    pub rewrite: Rewrite,
    pub skipped: usize,
}

/// The rows of `batch` an insert writes, given each row's sequence and whether it deletes.
pub fn insert_new_keys(
    table: &Table,
    registry: &Registry,
    keys: &[String],
    batch: &RecordBatch,
    seqs: &[i64],
    deleted: &[bool],
    hard_delete: bool,
) -> Result<Inserted, TableError> {
    let cols = key_columns(registry, keys);
    let rows_of = rows_by_key(batch, &cols);
    let wanted: KeySet = rows_of.keys().cloned().collect();
    let (needed, local) = probe_columns(&cols);
    let probe = KeyProbe::new(batch, &cols);
    let existing = existing_keys(
        table,
        registry,
        &needed,
        &local,
        |s| probe.may_match(s),
        &wanted,
    )?;
    let is_delete = |r: usize| deleted.get(r).copied().unwrap_or(false);
    let plan = plan(rows_of, &existing, seqs, is_delete, hard_delete);
    let rewrite = if plan.remove.is_empty() {
        Rewrite::default()
    } else {
        let mut buf = Vec::new();
        rewrite_files(
            table,
            registry,
            &needed,
            |s| probe.may_match(s),
            |b, out| {
                out.extend((0..b.num_rows()).map(|r| {
                    buf.clear();
                    encode_key(b, &local, r, &mut buf);
                    plan.remove.contains(&buf)
                }))
            },
        )?
    };
    Ok(Inserted {
        mask: BooleanArray::from(plan.keep(batch.num_rows())),
        rewrite,
        skipped: plan.skipped,
    })
}

type RowsByKey = HashMap<Vec<u8>, Vec<usize>, foldhash::fast::RandomState>;

fn rows_by_key(batch: &RecordBatch, cols: &[Vec<usize>]) -> RowsByKey {
    let mut by_key = RowsByKey::default();
    let mut buf = Vec::new();
    for row in 0..batch.num_rows() {
        buf.clear();
        encode_key(batch, cols, row, &mut buf);
        match by_key.get_mut(&buf) {
            Some(rows) => rows.push(row),
            None => {
                by_key.insert(buf.clone(), vec![row]);
            }
        }
    }
    by_key
}

/// The outcome of applying every key's records in order.
#[derive(Debug, Default)]
struct Plan {
    /// The batch rows written.
    written: Vec<usize>,
    /// Keys whose row in the table goes (a delete of a key the table holds).
    remove: KeySet,
    skipped: usize,
}

impl Plan {
    fn keep(&self, rows: usize) -> Vec<bool> {
        let mut keep = vec![false; rows];
        for &r in &self.written {
            keep[r] = true;
        }
        keep
    }
}

/// The pure rule: per key, records in (sequence, arrival) order; an insert lands when the key
/// is absent and is skipped when present; a delete removes the table's row and, with
/// `hard_delete`, makes the key absent; without, the delete is the key's (marked) row and the key
/// stays present.
fn plan(
    rows_of: RowsByKey,
    existing: &KeySet,
    seqs: &[i64],
    is_delete: impl Fn(usize) -> bool,
    hard_delete: bool,
) -> Plan {
    let mut out = Plan::default();
    for (key, mut rows) in rows_of {
        rows.sort_by_key(|&r| (seqs[r], r));
        let in_table = existing.contains(&key);
        let (mut present, mut chosen, mut removes) = (in_table, None, false);
        for r in rows {
            if is_delete(r) {
                removes |= in_table;
                // Without `hard_delete` the delete record is the key's (marked) row and holds
                // the key, as it does for a later batch reading it from the table: where a
                // batch is cut must not change the outcome.
                present = !hard_delete;
                chosen = (!hard_delete).then_some(r);
            } else if present {
                out.skipped += 1;
            } else {
                present = true;
                chosen = Some(r);
            }
        }
        out.written.extend(chosen);
        if removes {
            out.remove.insert(key);
        }
    }
    out.written.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are one byte here; rows are `(key, seq, delete)`.
    fn run(rows: &[(u8, i64, bool)], existing: &[u8], hard_delete: bool) -> Plan {
        let mut by_key = RowsByKey::default();
        for (i, (k, _, _)) in rows.iter().enumerate() {
            by_key.entry(vec![*k]).or_default().push(i);
        }
        let existing: KeySet = existing.iter().map(|k| vec![*k]).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
        plan(by_key, &existing, &seqs, |r| rows[r].2, hard_delete)
    }

    #[test]
    fn the_first_insert_of_a_new_key_wins_and_the_rest_are_skipped() {
        // Key 1 arrives out of order: the lowest sequence wins, whatever the arrival.
        let p = run(&[(1, 20, false), (1, 10, false), (2, 5, false)], &[], true);
        assert_eq!(p.written, [1, 2]);
        assert_eq!(p.skipped, 1);
        assert!(p.remove.is_empty());
        // A key the table holds: every insert skipped, nothing removed.
        let p = run(&[(1, 1, false), (1, 2, false)], &[1], true);
        assert!(p.written.is_empty());
        assert_eq!(p.skipped, 2);
    }

    #[test]
    fn deletes_remove_and_make_the_key_new_again() {
        // hard_delete: the table's row goes, nothing written.
        let p = run(&[(1, 1, true)], &[1], true);
        assert!(p.written.is_empty() && p.remove.contains(&vec![1]));
        // Without: the delete record is the key's (marked) row, and it holds the key: an
        // insert after it is skipped, as it would be in a later batch.
        let p = run(&[(1, 1, true)], &[1], false);
        assert_eq!(p.written, [0]);
        assert!(p.remove.contains(&vec![1]));
        let p = run(&[(1, 1, false), (1, 2, true), (1, 3, false)], &[], false);
        assert_eq!((p.written.as_slice(), p.skipped), (&[1][..], 1));
        // Insert after the delete lands; one before it is skipped (the key was there).
        let p = run(&[(1, 1, false), (1, 2, true), (1, 3, false)], &[1], true);
        assert_eq!((p.written.as_slice(), p.skipped), (&[2][..], 1));
        assert!(p.remove.contains(&vec![1]));
        // A delete of a key the table lacks removes nothing.
        let p = run(&[(3, 1, false), (3, 2, true)], &[], true);
        assert!(p.written.is_empty() && p.remove.is_empty() && p.skipped == 0);
    }
}
