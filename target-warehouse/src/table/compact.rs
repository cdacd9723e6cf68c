//! Compaction: cron runs every few minutes leave many small files; merge them into fewer,
//! larger ones (by copying their encoded column chunks, see [`super::concat::Concat`]) in one
//! commit (`dataChange: false`, so streaming readers skip it), keeping the stream's `txn`
//! high-water mark. Runs automatically past a threshold, or `target-warehouse compact`. A file
//! whose deletion vector deletes at least half its rows is rewritten without them whatever its
//! size, alone if need be (the space of replaced rows comes back).

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::{Action, Add};
use deltalake::protocol::DeltaOperation;
use serde_json::{json, Map};

use super::error::TableError;
use super::marks::BatchMarks;
use super::{FileInfo, Table};
use crate::failpoint::{self, Step};
use crate::registry::Registry;

/// Files below this size are worth merging.
pub const SMALL_FILE_BYTES: i64 = 16 * 1024 * 1024;
/// Upper bound of input bytes merged into one output file (bounds memory: one group at a time).
pub const GROUP_BYTES: i64 = 32 * 1024 * 1024;
/// Automatic compaction once a table has this many small files.
pub const AUTO_COMPACT_FILES: usize = 32;

/// Merges `group` by copying the files' encoded column chunks (no decode, no re-encode), or
/// `None` when one of them cannot be copied (not written by us, or without statistics) or the
/// merged file would have more than [`MAX_COPIED_ROW_GROUPS`](super::concat::MAX_COPIED_ROW_GROUPS) row groups: the caller then
/// decodes the group instead.
fn concat(
    table: &Table,
    schema: &SchemaRef,
    group: &[FileInfo],
    written: &mut Vec<String>,
) -> Result<Option<Add>, TableError> {
    if group.iter().any(|f| f.dv.is_some()) {
        return Ok(None); // its deleted rows must go: the file is decoded
    }
    let Some(sink) = table.concat_sink(schema)? else {
        return Ok(None);
    };
    // One pass, each file read once; the first that cannot be copied abandons the merged file
    // (never committed) and the group is decoded instead.
    let sources = group
        .iter()
        .map(|f| Ok::<_, TableError>((table.read_bytes(&f.path)?, f.stats.as_ref())));
    match sink.copy_all(sources)? {
        Some(add) => {
            written.push(add.path.clone());
            Ok(Some(table.publish(add)?))
        }
        None => Ok(None),
    }
}

/// Merges each group of small files into one new file (listed in `written` as it is
/// created): the compaction's actions, how many files it merged, and whether every group was
/// merged by copying column chunks.
fn merge_groups(
    table: &Table,
    schema: &SchemaRef,
    groups: Vec<Vec<FileInfo>>,
    written: &mut Vec<String>,
) -> Result<(Vec<Action>, usize, bool), TableError> {
    let mut actions = Vec::new();
    let mut merged = 0;
    let mut copied = true;
    for group in groups
        .into_iter()
        .filter(|g| g.len() >= 2 || g.iter().any(mostly_deleted))
    {
        let mut add = match concat(table, schema, &group, written)? {
            Some(add) => add,
            None => {
                copied = false;
                // Decoded and re-encoded: one batch of one input file in memory at a time,
                // streamed into one output file.
                // Rows a deletion vector deletes are left out.
                let mut sink = table.file_sink(schema)?;
                written.push(sink.name().to_string());
                let mut dv_files = super::dv::Cache::default();
                for f in &group {
                    let deleted = table.deleted_rows(f, &mut dv_files)?;
                    table.copy_live_rows(&f.path, schema, &deleted, &mut sink)?;
                }
                table.publish(sink.finish()?)?
            }
        };
        add.data_change = false;
        actions.push(Action::Add(add));
        for f in group {
            let mut remove = f.remove;
            remove.data_change = false;
            actions.push(Action::Remove(remove));
            merged += 1;
        }
    }
    Ok((actions, merged, copied))
}

/// Whether `f`'s deletion vector deletes at least half of its rows: compaction rewrites such a
/// file whatever its size, so the space of rows replaced by upserts comes back.
fn mostly_deleted(f: &FileInfo) -> bool {
    let rows = f
        .stats
        .as_ref()
        .and_then(|s| s.get("numRecords"))
        .and_then(serde_json::Value::as_i64);
    match (&f.dv, rows) {
        (Some(dv), Some(rows)) => dv.cardinality * 2 >= rows,
        _ => false,
    }
}

/// How many small files the table has.
pub fn small_files(table: &Table) -> Result<usize, TableError> {
    Ok(table
        .files()?
        .iter()
        .filter(|f| f.size < SMALL_FILE_BYTES)
        .count())
}

/// What a compaction did.
#[derive(Debug)]
pub struct Compacted {
    /// Small files merged.
    pub files: usize,
    pub version: u64,
    /// Whether every group was merged by copying column chunks (no decoding).
    pub copied: bool,
}

/// Merges the table's small files (and rewrites its mostly deleted ones), or returns `None` if
/// there was nothing to do.
pub async fn compact(
    table: &mut Table,
    registry: &mut Registry,
) -> Result<Option<Compacted>, TableError> {
    let mut small: Vec<_> = table
        .files()?
        .into_iter()
        .filter(|f| f.size < SMALL_FILE_BYTES || mostly_deleted(f))
        .collect();
    small.sort_by(|a, b| a.path.cmp(&b.path)); // time-ordered names: keep rows roughly in load order
    let schema = registry.arrow_schema();
    let mut groups: Vec<Vec<_>> = vec![Vec::new()];
    let mut group_bytes = 0;
    for f in small {
        if group_bytes + f.size > GROUP_BYTES && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            group_bytes = 0;
        }
        group_bytes += f.size;
        if let Some(g) = groups.last_mut() {
            g.push(f);
        }
    }
    // The files written so far: removed if the compaction stops before its commit.
    let mut written = Vec::new();
    let merging = merge_groups(table, &schema, groups, &mut written).and_then(|m| {
        failpoint::hit(Step::Compaction).map_err(|source| TableError::Io {
            table: table.stream.clone(),
            source,
        })?;
        Ok(m)
    });
    let (actions, merged, copied) = match merging {
        Ok(m) => m,
        Err(e) => {
            for path in &written {
                table.discard_new_file(path);
            }
            return Err(e);
        }
    };
    if actions.is_empty() {
        return Ok(None);
    }
    let mut info = Map::new();
    info.insert(
        "targetWarehouse".into(),
        json!({"stream": table.stream, "compactedFiles": merged}),
    );
    let op = DeltaOperation::Optimize {
        predicate: None,
        target_size: GROUP_BYTES,
    };
    let version = table
        .commit(
            registry,
            usize::MAX,
            actions,
            op,
            &BatchMarks::default(),
            info,
        )
        .await?;
    Ok(Some(Compacted {
        files: merged,
        version,
        copied,
    }))
}
