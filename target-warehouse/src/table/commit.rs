//! The one Delta commit of a batch: its `add`/`remove` actions, a `metaData` action when
//! columns were added, and the stream's `txn` high-water mark, atomically; then the log entry
//! made durable, and a checkpoint every [`CHECKPOINT_INTERVAL`] versions (then the log entries
//! past `delta.logRetentionDuration` are removed). Also the check that
//! refuses a commit removing a file another writer's compaction replaced meanwhile.

use std::collections::HashSet;

use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitData, CommitProperties, TableReference, TransactionError,
};
use deltalake::kernel::{Action, MetadataExt, StructType, Transaction};
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTableError, TableProperty};
use serde_json::{json, Map, Value as Json};

use super::error::TableError;
use super::marks::BatchMarks;
use super::{dv, Table};
use crate::failpoint::{self, Step};
use crate::registry::Registry;

/// A checkpoint every this many commits (Delta's own default interval).
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// Whether the log entry of a commit that failed exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    /// It was never written: the commit's new files can go.
    No,
    /// It is in the log: the commit's files are the table's.
    Yes,
    /// Not known (deltalake's commit failed; an object store's write may still land).
    Unknown,
}

/// A commit whose log entry was not written, or may have been.
type Failed = (Box<TableError>, Landed);

/// The paths of the files `actions` remove.
fn removed_paths(actions: &[Action]) -> HashSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Remove(r) => Some(r.path.clone()),
            _ => None,
        })
        .collect()
}

/// A path as another writer put it in a `remove` (percent-encoded, as the protocol says, and
/// perhaps absolute) in the form our actions carry: relative to the table, decoded (as
/// deltalake's file listing gives it).
fn log_path_as_ours<'a>(raw: &'a str, table_url: &str) -> std::borrow::Cow<'a, str> {
    let root = table_url.trim_end_matches('/');
    let relative = raw
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(raw);
    percent_encoding::percent_decode_str(relative).decode_utf8_lossy()
}

impl Table {
    /// Commits `actions` with the registry's new columns (the first `columns` of them: those the
    /// commit's files were written with; `usize::MAX` for all), the high-water marks of the
    /// producers whose records it holds (`batch`, see `marks.rs`) and `info` (the latest Singer
    /// STATE, row counts) in commit info, in ONE atomic commit, then makes the log entry
    /// durable. Returns the new table version.
    ///
    /// A commit that fails before its log entry exists removes the new files it would have
    /// added (data files, rewritten files, deletion vector files; never a file the table
    /// holds). When deltalake's own commit fails, whether the entry exists is looked up in the
    /// log (each commit carries a unique id in its info); on an object store, where a request
    /// that failed may still land, nothing is removed then. After the entry exists (a failed
    /// fsync of the log, a conflict found afterwards) nothing is removed.
    pub async fn commit(
        &mut self,
        registry: &mut Registry,
        columns: usize,
        actions: Vec<Action>,
        operation: DeltaOperation,
        batch: &BatchMarks,
        mut info: Map<String, Json>,
    ) -> Result<u64, TableError> {
        let id = uuid::Uuid::new_v4().to_string();
        if let Some(o) = info
            .entry("targetWarehouse")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            o.insert("commitId".into(), json!(id));
        }
        let read = if self.exists {
            Some(
                self.delta
                    .snapshot()
                    .map_err(|e| self.delta_err(e))?
                    .version(),
            )
        } else {
            None
        };
        let new = self.new_files_of(&actions);
        let columns = columns.min(registry.specs.len()).max(registry.committed);
        let version = match self
            .write_entry(registry, columns, actions, operation, batch, info)
            .await
        {
            Ok(version) => version,
            Err((e, landed)) => {
                let landed = match landed {
                    Landed::Unknown => self.landed(read, &id).await,
                    known => known,
                };
                if landed == Landed::No {
                    self.discard_new(&new);
                } else {
                    tracing::warn!(table = %self.name(), ?landed, error = %e, "the commit failed; its files are kept");
                }
                return Err(*e);
            }
        };
        // The entry is in the log: whatever fails now, the commit may be read.
        registry.committed = columns;
        self.marks.committed(batch);
        failpoint::hit(Step::CommitAfterLog).map_err(|source| TableError::Io {
            table: self.name(),
            source,
        })?;
        self.sync_log(version)?;
        if version > 0 && version % CHECKPOINT_INTERVAL == 0 {
            // The commit is durable; a failed checkpoint costs log-replay time only, and is
            // reported when the load ends (see `take_checkpoint_failure`).
            let done = match failpoint::hit(Step::Checkpoint) {
                Err(source) => Err(TableError::Io {
                    table: self.name(),
                    source,
                }),
                Ok(()) => {
                    match deltalake::checkpoints::create_checkpoint(&self.delta, None).await {
                        // Log entries older than `delta.logRetentionDuration` (30 days unless set)
                        // and before the checkpoint are no longer needed to open the table.
                        Ok(()) => deltalake::checkpoints::cleanup_metadata(&self.delta, None)
                            .await
                            .map(|_| ())
                            .map_err(|e| self.delta_err(e)),
                        Err(e) => Err(self.delta_err(e)),
                    }
                }
            };
            if let Err(e) = done {
                tracing::warn!(table = %self.name(), version, error = %e, "checkpoint failed");
                self.checkpoint_failure.get_or_insert(e);
            }
        }
        Ok(version)
    }

    /// A checkpoint that failed after its commit (the commit stands): taken once.
    pub fn take_checkpoint_failure(&mut self) -> Option<TableError> {
        self.checkpoint_failure.take()
    }

    /// Writes the commit's log entry; an error says whether the entry may exist.
    async fn write_entry(
        &mut self,
        registry: &Registry,
        columns: usize,
        actions: Vec<Action>,
        operation: DeltaOperation,
        batch: &BatchMarks,
        info: Map<String, Json>,
    ) -> Result<u64, Failed> {
        let not_written = |e| (Box::new(e), Landed::No);
        let txns = self.marks.transactions(batch);
        let arrow = registry.arrow_schema_upto(columns);
        let schema = StructType::try_from_arrow(arrow.as_ref())
            .map_err(|e| TableError::Schema {
                table: self.name(),
                detail: e.to_string(),
            })
            .map_err(not_written)?;
        let before_log = || {
            failpoint::hit(Step::CommitBeforeLog).map_err(|source| {
                not_written(TableError::Io {
                    table: self.name(),
                    source,
                })
            })
        };
        if !self.exists {
            before_log()?;
            return self.create(schema, actions, info, txns).await;
        }
        let props = CommitProperties::default()
            .with_metadata(info)
            .with_create_checkpoint(false)
            .with_application_transactions(txns);
        let state = self
            .delta
            .snapshot()
            .map_err(|e| self.delta_err(e))
            .map_err(not_written)?;
        let mut all = Vec::with_capacity(actions.len() + 1);
        if registry.committed < columns {
            let meta = state
                .metadata()
                .clone()
                .with_schema(&schema)
                .map_err(|e| TableError::Schema {
                    table: self.name(),
                    detail: e.to_string(),
                })
                .map_err(not_written)?;
            all.push(Action::Metadata(meta));
        }
        all.extend(actions);
        let ours = removed_paths(&all);
        let checked = self
            .check_concurrent_removes(state.version(), &ours)
            .await
            .map_err(not_written)?;
        before_log()?;
        let done = CommitBuilder::from(props)
            .with_actions(all)
            .build(
                Some(state as &dyn TableReference),
                self.delta.log_store(),
                operation,
            )
            .await
            .map_err(|e| match e {
                // Found by deltalake's check of the commits since the read, before any write.
                DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(c),
                } => {
                    let e = TableError::ConcurrentCommit {
                        table: self.name(),
                        detail: c.to_string(),
                    };
                    (Box::new(e), Landed::No)
                }
                e => (Box::new(self.delta_err(e)), Landed::Unknown),
            })?;
        let version = done.version();
        self.delta.state = Some(done.snapshot);
        // A commit that landed between the check and this one went through deltalake's
        // checker alone: say so if it replaced a file this commit removed.
        if !ours.is_empty() && version > checked + 1 {
            let found = self
                .find_removes(checked + 1..=version - 1, &ours)
                .await
                .map_err(|e| (Box::new(e), Landed::Yes))?;
            if let Some((winner, file)) = found {
                let e = TableError::ConflictAfterCommit {
                    table: self.name(),
                    version,
                    winner,
                    file,
                };
                return Err((Box::new(e), Landed::Yes));
            }
        }
        Ok(version)
    }

    /// Whether the commit carrying `id` is in the log after version `read` (`None`: the table
    /// did not exist). Only a local log is asked: there a failed commit has nothing in flight.
    async fn landed(&self, read: Option<u64>, id: &str) -> Landed {
        if self.remote.is_some() {
            return Landed::Unknown;
        }
        let store = self.delta.log_store();
        let mut version = read.map_or(0, |v| v + 1);
        loop {
            match store.read_commit_entry(version).await {
                Ok(Some(bytes)) if memchr::memmem::find(&bytes, id.as_bytes()).is_some() => {
                    return Landed::Yes;
                }
                Ok(Some(_)) => version += 1,
                Ok(None) => return Landed::No,
                Err(_) => return Landed::Unknown,
            }
        }
    }

    /// The files `actions` would bring into the table: the data files they add (not a file
    /// they also remove: re-added with a deletion vector), and the deletion vector files the
    /// adds name.
    fn new_files_of(&self, actions: &[Action]) -> Vec<String> {
        let removed = removed_paths(actions);
        let mut new = Vec::new();
        for a in actions {
            let Action::Add(add) = a else { continue };
            if !removed.contains(add.path.as_str()) {
                new.push(add.path.clone());
            }
            if let Some(Ok(dv::Location::File { path, .. })) =
                add.deletion_vector.as_ref().map(dv::locate)
            {
                if !new.contains(&path) {
                    new.push(path);
                }
            }
        }
        new
    }

    /// Removes files of a commit that was not made: never one the table holds (a data file,
    /// or the deletion vector file of one).
    fn discard_new(&self, new: &[String]) {
        let Ok(files) = self.files() else {
            return; // unsure what is the table's: leave everything
        };
        let mut live: HashSet<String> = HashSet::new();
        for f in files {
            if let Some(Ok(dv::Location::File { path, .. })) = f.dv.as_ref().map(dv::locate) {
                live.insert(path);
            }
            live.insert(f.path);
        }
        for path in new.iter().filter(|p| !live.contains(*p)) {
            self.discard_new_file(path);
        }
    }

    /// Refuses a commit that removes a file another writer's commit has removed since `read`;
    /// returns the latest version checked. deltalake's conflict checker ignores removes with
    /// `dataChange: false`, which is how a compaction (ours, or anyone's OPTIMIZE) replaces
    /// files: an upsert that re-adds a file with a deletion vector, or removes it for its
    /// rewrite, after a compaction merged that file into another would leave the merged copy
    /// of every row besides its own (an overwrite would leave the merged file, a second
    /// compaction a second copy). So the commits since the read are searched for removes of the
    /// files this one removes. What remains is the moment between this check and the write of
    /// the commit itself, checked after it ([`TableError::ConflictAfterCommit`]).
    async fn check_concurrent_removes(
        &self,
        read: u64,
        ours: &HashSet<String>,
    ) -> Result<u64, TableError> {
        if ours.is_empty() {
            return Ok(read);
        }
        let latest = self
            .delta
            .log_store()
            .get_latest_version(read)
            .await
            .map_err(|e| self.delta_err(e))?;
        match self.find_removes(read + 1..=latest, ours).await? {
            Some((version, file)) => Err(TableError::Conflict {
                table: self.name(),
                version,
                file,
            }),
            None => Ok(latest),
        }
    }

    /// The first commit of `versions` that removes one of `paths`, and the path.
    async fn find_removes(
        &self,
        versions: std::ops::RangeInclusive<u64>,
        paths: &HashSet<String>,
    ) -> Result<Option<(u64, String)>, TableError> {
        let store = self.delta.log_store();
        let root = self.delta.table_url().as_str();
        for version in versions {
            let bytes = store
                .read_commit_entry(version)
                .await
                .map_err(|e| self.delta_err(e))?
                .ok_or_else(|| TableError::Schema {
                    table: self.name(),
                    detail: format!("log entry {version} is missing"),
                })?;
            let theirs =
                deltalake::logstore::get_actions(version, &bytes).map_err(|e| self.delta_err(e))?;
            for action in theirs {
                if let Action::Remove(r) = action {
                    if paths.contains(r.path.as_str())
                        || paths.contains(log_path_as_ours(&r.path, root).as_ref())
                    {
                        return Ok(Some((version, r.path)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Creates the table in the commit that carries its first batch: version 0, written only if
    /// no version 0 exists (a conditional write: a hard link on local disk, `If-None-Match` on
    /// an object store), so that of two loads racing to create one table exactly one does.
    ///
    /// Not through deltalake's `CreateBuilder` nor a `CommitBuilder` without a snapshot: when
    /// version 0 is taken between their look and their write, they load the table and write
    /// their whole CREATE (protocol, metaData, the batch's files) as the next version, without
    /// a conflict check, so both batches land, an upsert's against a table it never read
    /// (issue 20: 2,500 rows for 2,000 keys). Here the loser writes nothing
    /// ([`TableError::CreatedConcurrently`]): its files go, its stream commits nothing more in
    /// the run, and the rerun loads the batch into the winner's table as an ordinary writer.
    /// (Also, at writer version 7 `CreateBuilder` lists the `invariants` feature, which
    /// deltalake then refuses to write without its query engine.)
    async fn create(
        &mut self,
        schema: StructType,
        actions: Vec<Action>,
        info: Map<String, Json>,
        txns: Vec<Transaction>,
    ) -> Result<u64, Failed> {
        let not_written = |e| (Box::new(e), Landed::No);
        let schema_err = |detail: String| {
            not_written(TableError::Schema {
                table: self.name(),
                detail,
            })
        };
        let dv = self.create_with_deletion_vectors;
        let protocol = if dv {
            json!({
                "minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"],
            })
        } else {
            // deltalake's default for a new table.
            json!({"minReaderVersion": 1, "minWriterVersion": 2})
        };
        let protocol: deltalake::kernel::Protocol =
            serde_json::from_value(protocol).map_err(|e| schema_err(format!("protocol: {e}")))?;
        let configuration: &[(&str, &str)] = if dv {
            &[(TableProperty::EnableDeletionVectors.as_ref(), "true")]
        } else {
            &[]
        };
        let metadata = deltalake::kernel::new_metadata(
            &schema,
            Vec::<String>::new(),
            configuration.iter().copied(),
        )
        .and_then(|m| m.with_name(self.stream.clone()))
        .map_err(|e| schema_err(e.to_string()))?;
        let location = deltalake::ensure_table_uri(self.root.to_string_lossy())
            .map_err(|e| not_written(self.delta_err(e)))?;
        let operation = DeltaOperation::Create {
            mode: SaveMode::ErrorIfExists,
            location,
            protocol: protocol.clone(),
            metadata: metadata.clone(),
        };
        let mut all = vec![Action::Protocol(protocol), Action::Metadata(metadata)];
        all.extend(actions);
        let entry = CommitData::new(all, operation, info.into_iter().collect(), txns)
            .get_bytes()
            .map_err(|e| not_written(self.delta_err(e.into())))?;
        let written = self
            .delta
            .log_store()
            .write_commit_entry(0, CommitOrBytes::LogBytes(entry), uuid::Uuid::new_v4())
            .await;
        match written {
            Ok(()) => {}
            Err(TransactionError::VersionAlreadyExists(_)) => {
                return Err(not_written(TableError::CreatedConcurrently {
                    table: self.name(),
                }));
            }
            Err(e) => return Err((Box::new(self.delta_err(e.into())), Landed::Unknown)),
        }
        self.delta
            .load()
            .await
            .map_err(|e| (Box::new(self.delta_err(e)), Landed::Yes))?;
        self.exists = true;
        Ok(0)
    }

    /// fsyncs the commit file and its directory: the object store's local backend renames
    /// without syncing, and a STATE must never be printed for a commit a power cut could undo.
    fn sync_log(&self, version: u64) -> Result<(), TableError> {
        if self.remote.is_some() {
            // An object store's PUT is durable when it returns.
            return Ok(());
        }
        let log = self.root.join("_delta_log");
        let io = |source| TableError::Io {
            table: self.name(),
            source,
        };
        std::fs::File::open(log.join(format!("{version:020}.json")))
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::File::open(&log)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::File::open(&self.root)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::log_path_as_ours;

    #[test]
    fn another_writers_remove_paths_compare_as_ours() {
        let root = "s3://bucket/wh/orders/";
        // Percent-encoded, as the protocol writes paths.
        assert_eq!(
            log_path_as_ours("date%3D2026-12-02/part%20a.parquet", root),
            "date=2026-12-02/part a.parquet"
        );
        // Absolute, under the table.
        assert_eq!(
            log_path_as_ours("s3://bucket/wh/orders/part-1.parquet", root),
            "part-1.parquet"
        );
        // Ours: unchanged.
        assert_eq!(
            log_path_as_ours("part-01a2.zstd.parquet", root),
            "part-01a2.zstd.parquet"
        );
        // Another table's absolute path stays absolute (never one of ours).
        assert_eq!(
            log_path_as_ours("s3://bucket/wh/other/part-1.parquet", root),
            "s3://bucket/wh/other/part-1.parquet"
        );
    }
}
