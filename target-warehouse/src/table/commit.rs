//! The one Delta commit of a batch: its `add`/`remove` actions, a `metaData` action when
//! columns were added, and the stream's `txn` high-water mark, atomically; then the log entry
//! made durable, and a checkpoint every [`CHECKPOINT_INTERVAL`] versions. Also the check that
//! refuses a commit removing a file another writer's compaction replaced meanwhile.

use std::collections::HashSet;

use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, MetadataExt, StructType};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::TableProperty;
use serde_json::{Map, Value as Json};

use super::error::TableError;
use super::Table;
use crate::registry::Registry;

/// A checkpoint every this many commits (Delta's own default interval).
pub const CHECKPOINT_INTERVAL: u64 = 100;

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
    /// commit's files were written with; `usize::MAX` for all), the stream's high-water mark and
    /// `info` (the latest Singer STATE, row counts) in commit info, in ONE atomic commit, then
    /// makes the log entry durable. Returns the new table version.
    pub async fn commit(
        &mut self,
        registry: &mut Registry,
        columns: usize,
        actions: Vec<Action>,
        operation: DeltaOperation,
        high_water: Option<i64>,
        info: Map<String, Json>,
    ) -> Result<u64, TableError> {
        let mut props = CommitProperties::default()
            .with_metadata(info)
            .with_create_checkpoint(false);
        if let Some(txn) = self.marks.transaction(&self.stream, high_water) {
            props = props.with_application_transaction(txn);
        }
        let columns = columns.min(registry.specs.len()).max(registry.committed);
        let arrow = registry.arrow_schema_upto(columns);
        let schema =
            StructType::try_from_arrow(arrow.as_ref()).map_err(|e| TableError::Schema {
                table: self.name(),
                detail: e.to_string(),
            })?;
        let version = if !self.exists && self.create_with_deletion_vectors {
            self.create_with_deletion_vectors(schema, actions, props)
                .await?
        } else if !self.exists {
            let mut create = CreateBuilder::new();
            if self.remote.is_some() {
                create = create.with_log_store(self.delta.log_store());
            }
            let table = create
                .with_location(self.root.to_string_lossy())
                .with_table_name(self.stream.clone())
                .with_columns(schema.fields().cloned())
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_actions(actions)
                .with_commit_properties(props)
                .await
                .map_err(|e| self.delta_err(e))?;
            self.delta = table;
            self.exists = true;
            0
        } else {
            let state = self.delta.snapshot().map_err(|e| self.delta_err(e))?;
            let mut all = Vec::with_capacity(actions.len() + 1);
            if registry.committed < columns {
                let meta = state.metadata().clone().with_schema(&schema).map_err(|e| {
                    TableError::Schema {
                        table: self.name(),
                        detail: e.to_string(),
                    }
                })?;
                all.push(Action::Metadata(meta));
            }
            all.extend(actions);
            let ours = removed_paths(&all);
            let checked = match self.check_concurrent_removes(state.version(), &ours).await {
                Err(e @ TableError::Conflict { .. }) => {
                    self.discard_refused(&all, &ours);
                    return Err(e);
                }
                other => other?,
            };
            let done = CommitBuilder::from(props)
                .with_actions(all)
                .build(
                    Some(state as &dyn TableReference),
                    self.delta.log_store(),
                    operation,
                )
                .await
                .map_err(|e| self.delta_err(e))?;
            let version = done.version();
            self.delta.state = Some(done.snapshot);
            // A commit that landed between the check and this one went through deltalake's
            // checker alone: say so if it replaced a file this commit removed.
            if !ours.is_empty() && version > checked + 1 {
                if let Some((winner, file)) =
                    self.find_removes(checked + 1..=version - 1, &ours).await?
                {
                    return Err(TableError::ConflictAfterCommit {
                        table: self.name(),
                        version,
                        winner,
                        file,
                    });
                }
            }
            version
        };
        registry.committed = columns;
        self.marks.committed(high_water);
        self.sync_log(version)?;
        if version > 0 && version % CHECKPOINT_INTERVAL == 0 {
            // The commit is already durable; a failed checkpoint only costs log-replay time.
            if let Err(e) = deltalake::checkpoints::create_checkpoint(&self.delta, None).await {
                tracing::warn!(table = %self.name(), version, error = %e, "checkpoint failed");
            }
        }
        Ok(version)
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

    /// Removes the files a refused commit (nothing of it in the log) would have added: not a
    /// file it also removes (`removed`: re-added with a deletion vector), nor any file the
    /// table holds.
    fn discard_refused(&self, actions: &[Action], removed: &HashSet<String>) {
        let live: HashSet<String> = match self.files() {
            Ok(files) => files.into_iter().map(|f| f.path).collect(),
            Err(_) => return, // unsure what is the table's: leave everything
        };
        for a in actions {
            if let Action::Add(add) = a {
                if !removed.contains(add.path.as_str()) && !live.contains(&add.path) {
                    self.discard_new_file(&add.path);
                }
            }
        }
    }

    /// Creates the table with the `deletionVectors` feature in the commit that carries its first
    /// batch. Not through deltalake's `CreateBuilder`: at writer version 7 it lists the
    /// `invariants` feature, which deltalake then refuses to write without its query engine.
    async fn create_with_deletion_vectors(
        &mut self,
        schema: StructType,
        actions: Vec<Action>,
        props: CommitProperties,
    ) -> Result<u64, TableError> {
        let protocol: deltalake::kernel::Protocol = serde_json::from_value(serde_json::json!({
            "minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"],
        }))
        .map_err(|e| TableError::Schema {
            table: self.name(),
            detail: format!("deletion vector protocol: {e}"),
        })?;
        let metadata = deltalake::kernel::new_metadata(
            &schema,
            Vec::<String>::new(),
            [(TableProperty::EnableDeletionVectors.as_ref(), "true")],
        )
        .map_err(|e| TableError::Schema {
            table: self.name(),
            detail: e.to_string(),
        })?
        .with_name(self.stream.clone())
        .map_err(|e| TableError::Schema {
            table: self.name(),
            detail: e.to_string(),
        })?;
        let location = deltalake::ensure_table_uri(self.root.to_string_lossy())
            .map_err(|e| self.delta_err(e))?;
        let operation = DeltaOperation::Create {
            mode: SaveMode::ErrorIfExists,
            location,
            protocol: protocol.clone(),
            metadata: metadata.clone(),
        };
        let mut all = vec![Action::Protocol(protocol), Action::Metadata(metadata)];
        all.extend(actions);
        let done = CommitBuilder::from(props)
            .with_actions(all)
            .build(None, self.delta.log_store(), operation)
            .await
            .map_err(|e| self.delta_err(e))?;
        let version = done.version();
        self.delta.load().await.map_err(|e| self.delta_err(e))?;
        self.exists = true;
        Ok(version)
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
