//! One Delta Lake table per stream: opening (or lazily creating) it, its files and statistics,
//! and the single commit that carries a batch's files, schema additions and high-water mark.
//!
//! Every commit holds, atomically: the `add`/`remove` actions, a `metaData` action when columns
//! were added, and `txn {appId: "target-warehouse:<stream>", version: <max _sdc_sequence>}` so a
//! replayed input is recognised after a crash (see `ingest`). Checkpoints are written every
//! [`CHECKPOINT_INTERVAL`] versions so the log stays fast after thousands of cron runs.

pub mod compact;
pub mod dv;
pub mod files;
pub mod merge;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use deltalake::arrow::datatypes::{DataType as ArrowDataType, Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::{TryFromArrow, TryFromKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{
    Action, Add, DeletionVectorDescriptor, MetadataExt, Remove, StructType, Transaction,
};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use serde_json::{Map, Value as Json};

use crate::columns::sanitize;
use crate::registry::Registry;

/// A checkpoint every this many commits (Delta's own default interval).
pub const CHECKPOINT_INTERVAL: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: {source}")]
    Delta {
        table: String,
        source: DeltaTableError,
    },
    #[error("table {table}: {detail}")]
    Schema { table: String, detail: String },
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("table {table}: {source}")]
    Io {
        table: String,
        source: std::io::Error,
    },
    #[error("table {table}: deletion vector of {file}: {detail}")]
    DeletionVector {
        table: String,
        file: String,
        detail: String,
    },
    #[error(
        "table {table}: version {version}, committed by another writer since this commit read \
         the table, replaced {file}, which this commit removes; nothing was committed (a rerun \
         redoes it against the table as it is then)"
    )]
    Conflict {
        table: String,
        version: u64,
        file: String,
    },
    #[error(
        "table {table}: version {version} was committed, but version {winner}, committed by \
         another writer a moment before it, had replaced {file}, which version {version} \
         removes: rows of that file may now be in the table twice"
    )]
    ConflictAfterCommit {
        table: String,
        version: u64,
        winner: u64,
        file: String,
    },
    #[error("table {table}: {source}")]
    Arrow {
        table: String,
        source: deltalake::arrow::error::ArrowError,
    },
}

/// A data file of the table as the log describes it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub path: String,
    pub size: i64,
    pub stats: Option<Json>,
    pub modification_time: i64,
    /// The rows of the file that are deleted, when some are (tables with deletion vectors).
    pub dv: Option<DeletionVectorDescriptor>,
    pub remove: Remove,
}

pub struct Table {
    pub stream: String,
    pub root: PathBuf,
    delta: DeltaTable,
    exists: bool,
    /// The high-water mark committed by earlier runs: input records at or below it are replays.
    pub replay_watermark: Option<i64>,
    /// The latest high-water mark committed (carried into commits that add no sequences).
    pub high_water: Option<i64>,
    /// Set when the table lives on an object store (`s3://…`): files go through it.
    remote: Option<store::Remote>,
    /// Whether the table, when this run creates it, gets the `deletionVectors` feature.
    pub create_with_deletion_vectors: bool,
}

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

/// The Delta `txn` app id of a stream.
pub fn app_id(stream: &str) -> String {
    format!("target-warehouse:{stream}")
}

impl Table {
    /// Opens the table of `stream` under `warehouse`, or prepares to create it on first commit.
    /// The directory is the sanitised stream name; a directory already holding another
    /// stream's table (or claimed in this run) makes it `<name>__2`, `__3`… (the stream name is
    /// stored as the table's name).
    pub async fn open(
        warehouse: &Path,
        stream: &str,
        claimed: &mut HashSet<PathBuf>,
        storage_options: &HashMap<String, String>,
    ) -> Result<(Table, Registry), TableError> {
        let base = sanitize(stream);
        let mut n = 1;
        loop {
            let dir = if n == 1 {
                base.clone()
            } else {
                format!("{base}__{n}")
            };
            n += 1;
            let root = warehouse.join(&dir);
            if claimed.contains(&root) {
                continue;
            }
            let err = |source| TableError::Delta {
                table: dir.clone(),
                source,
            };
            if store::is_remote(&root) {
                store::register_handlers();
            } else {
                std::fs::create_dir_all(&root).map_err(|source| TableError::Io {
                    table: dir.clone(),
                    source,
                })?;
            }
            let url = deltalake::ensure_table_uri(root.to_string_lossy()).map_err(err)?;
            let mut delta = DeltaTableBuilder::from_url(url)
                .map(|b| b.with_storage_options(storage_options.clone()))
                .and_then(|b| b.build())
                .map_err(err)?;
            let remote = store::is_remote(&root).then(|| store::Remote::of(&delta));
            let exists = delta.verify_deltatable_existence().await.map_err(err)?;
            if !exists {
                claimed.insert(root.clone());
                let table = Table {
                    stream: stream.to_string(),
                    root,
                    delta,
                    exists,
                    replay_watermark: None,
                    high_water: None,
                    remote,
                    create_with_deletion_vectors: false,
                };
                return Ok((table, Registry::default()));
            }
            delta.load().await.map_err(err)?;
            let state = delta.snapshot().map_err(err)?;
            if state.metadata().name() != Some(stream) {
                continue;
            }
            claimed.insert(root.clone());
            let registry =
                Registry::from_schema(&arrow_schema_of(&state.schema()).map_err(|detail| {
                    TableError::Schema {
                        table: dir.clone(),
                        detail,
                    }
                })?)
                .map_err(|detail| TableError::Schema {
                    table: dir.clone(),
                    detail,
                })?;
            let watermark = state
                .transaction_version(delta.log_store().as_ref(), app_id(stream))
                .await
                .map_err(err)?;
            let table = Table {
                stream: stream.to_string(),
                root,
                delta,
                exists,
                replay_watermark: watermark,
                high_water: watermark,
                remote,
                create_with_deletion_vectors: false,
            };
            return Ok((table, registry));
        }
    }

    /// Opens an existing table written by us (for `compact`), local or on an object store,
    /// with its registry; `None` when `root` holds no Delta table.
    pub async fn open_dir(
        root: &Path,
        storage_options: &HashMap<String, String>,
    ) -> Result<Option<(Table, Registry)>, TableError> {
        let dir = root.display().to_string();
        let err = |source| TableError::Delta {
            table: dir.clone(),
            source,
        };
        let is_remote = store::is_remote(root);
        if is_remote {
            store::register_handlers();
        } else if !root.join("_delta_log").is_dir() {
            return Ok(None);
        }
        let url = deltalake::ensure_table_uri(root.to_string_lossy()).map_err(err)?;
        let mut delta = DeltaTableBuilder::from_url(url)
            .map(|b| b.with_storage_options(storage_options.clone()))
            .and_then(|b| b.build())
            .map_err(err)?;
        if is_remote && !delta.verify_deltatable_existence().await.map_err(err)? {
            return Ok(None);
        }
        delta.load().await.map_err(err)?;
        let state = delta.snapshot().map_err(err)?;
        let stream = state.metadata().name().unwrap_or_default().to_string();
        let schema = arrow_schema_of(&state.schema()).map_err(|detail| TableError::Schema {
            table: dir.clone(),
            detail,
        })?;
        let registry = Registry::from_schema(&schema).map_err(|detail| TableError::Schema {
            table: dir.clone(),
            detail,
        })?;
        let watermark = state
            .transaction_version(delta.log_store().as_ref(), app_id(&stream))
            .await
            .map_err(err)?;
        let remote = is_remote.then(|| store::Remote::of(&delta));
        let table = Table {
            stream,
            root: root.to_path_buf(),
            delta,
            exists: true,
            replay_watermark: watermark,
            high_water: watermark,
            remote,
            create_with_deletion_vectors: false,
        };
        Ok(Some((table, registry)))
    }

    fn name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn delta_err(&self, source: DeltaTableError) -> TableError {
        TableError::Delta {
            table: self.name(),
            source,
        }
    }

    /// The live data files, with their statistics parsed.
    pub fn files(&self) -> Result<Vec<FileInfo>, TableError> {
        if !self.exists {
            return Ok(Vec::new());
        }
        let state = self.delta.snapshot().map_err(|e| self.delta_err(e))?;
        Ok(state
            .log_data()
            .iter()
            .map(|f| FileInfo {
                path: f.path().into_owned(),
                size: f.size(),
                stats: f.stats().and_then(|s| serde_json::from_str(&s).ok()),
                modification_time: f.modification_time(),
                dv: f.deletion_vector_descriptor(),
                remove: f.remove_action(true),
            })
            .collect())
    }

    /// Whether upserts and deletes mark rows in deletion vectors (the table has the
    /// `deletionVectors` writer feature) rather than rewriting the files that hold them.
    /// A table whose `delta.enableDeletionVectors` is set to false (on its way to dropping the
    /// feature) gets no new vectors.
    pub fn deletion_vectors(&self) -> bool {
        self.exists
            && self.delta.snapshot().is_ok_and(|s| {
                s.protocol()
                    .writer_features()
                    .is_some_and(|f| f.iter().any(|f| f.to_string() == "deletionVectors"))
                    && s.metadata()
                        .configuration()
                        .get(TableProperty::EnableDeletionVectors.as_ref())
                        .is_none_or(|v| !v.eq_ignore_ascii_case("false"))
            })
    }

    /// The rows of `file` its deletion vector deletes (empty when it has none). DV files are
    /// read once per `cache`.
    pub fn deleted_rows(
        &self,
        file: &FileInfo,
        cache: &mut dv::Cache,
    ) -> Result<roaring::RoaringTreemap, TableError> {
        let Some(d) = &file.dv else {
            return Ok(roaring::RoaringTreemap::new());
        };
        let err = |detail| TableError::DeletionVector {
            table: self.name(),
            file: file.path.clone(),
            detail,
        };
        match dv::locate(d).map_err(err)? {
            dv::Location::Inline(bytes) => dv::parse(&bytes),
            dv::Location::File { path, offset } => {
                let bytes = match cache.get(&path) {
                    Some(b) => b.clone(),
                    None => {
                        let b = self.read_bytes(&path)?;
                        cache.insert(path, b.clone());
                        b
                    }
                };
                dv::read_at(&bytes, offset, d.size_in_bytes)
            }
        }
        .map_err(err)
    }

    /// Writes a commit's deletion vectors to their file (durable before the commit that
    /// names it, like a data file) and, for an object-store table, uploads it.
    pub fn write_dv_file(&self, file: &dv::DvFile) -> Result<(), TableError> {
        let path = self.write_dir()?.join(file.path());
        let io = |source| TableError::Io {
            table: self.name(),
            source,
        };
        let mut f = std::fs::File::create(&path).map_err(io)?;
        std::io::Write::write_all(&mut f, file.bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(remote) = &self.remote {
            remote.upload(&self.name(), &path, &file.path())?;
        }
        Ok(())
    }

    /// Where a new data file is written (the table's directory, or the local staging directory
    /// of an object-store table) and its fresh unique name (time-ordered UUID).
    fn new_file(&self) -> Result<(PathBuf, String), TableError> {
        Ok((self.write_dir()?, files::new_file_name()))
    }

    /// Where new data files are written: the table's directory, or the local staging
    /// directory of an object-store table.
    fn write_dir(&self) -> Result<PathBuf, TableError> {
        match &self.remote {
            None => Ok(self.root.clone()),
            Some(_) => self.staging(),
        }
    }

    /// Removes a data file written for a commit that will not be made: from a local table's
    /// directory, or from the local staging directory of an object-store table (an uploaded
    /// copy stays outside the log, where no reader looks).
    pub fn discard_new_file(&self, path: &str) {
        if let Ok(dir) = self.write_dir() {
            let _ = std::fs::remove_file(dir.join(path));
        }
    }

    /// Local staging directory for files of an object-store table.
    fn staging(&self) -> Result<PathBuf, TableError> {
        store::staging_dir().map_err(|source| TableError::Io {
            table: self.name(),
            source,
        })
    }

    /// Makes a file written by [`file_sink`](Self::file_sink) part of the table's storage: a
    /// no-op for a local table, the upload of the staged file for an object-store one.
    pub fn publish(&self, add: Add) -> Result<Add, TableError> {
        if let Some(remote) = &self.remote {
            let staged = self.staging()?.join(&add.path);
            remote.upload(&self.name(), &staged, &add.path)?;
        }
        Ok(add)
    }

    /// Opens the data file of a commit, written on a thread of its own from the batches
    /// [sent](FileWriter::send) to it: Parquet encoding, the costliest step of a load, overlaps
    /// the parsing of the next rows on the other core. [`ClosedFile::join`] gives its `add`
    /// actions, to [`publish`](Self::publish) (an object-store table's file is staged locally).
    pub fn spawn_writer(&self) -> Result<FileWriter, TableError> {
        // Named now, on the parsing thread: file names follow the order batches began in.
        let (dir, name) = self.new_file()?;
        // One batch waiting while one is encoded: parsing runs ahead by at most that much.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let at = dir.clone();
        let handle = std::thread::spawn(move || {
            let written = files::write_parts(&at, rx)?;
            Ok(files::merge_parts(&at, &name, written)?)
        });
        Ok(FileWriter {
            tx,
            file: ClosedFile {
                table: self.name(),
                dir,
                handle,
            },
        })
    }

    /// A data file written batch by batch (for compaction).
    pub fn file_sink(
        &self,
        schema: &deltalake::arrow::datatypes::SchemaRef,
    ) -> Result<files::FileSink, TableError> {
        let (dir, name) = self.new_file()?;
        Ok(files::FileSink::create(&dir, &name, schema.clone())?)
    }

    /// A data file of this table, whole (compaction copies small files' column chunks).
    pub fn read_bytes(&self, path: &str) -> Result<bytes::Bytes, TableError> {
        match &self.remote {
            Some(remote) => remote.read(&self.name(), path),
            None => std::fs::read(self.root.join(path))
                .map(bytes::Bytes::from)
                .map_err(|source| TableError::Io {
                    table: self.name(),
                    source,
                }),
        }
    }

    /// A data file assembled from other files' encoded column chunks (for compaction), or
    /// `None` when `schema` has a column a chunk copy cannot fill.
    pub fn concat_sink(
        &self,
        schema: &deltalake::arrow::datatypes::SchemaRef,
    ) -> Result<Option<files::Concat>, TableError> {
        let (dir, name) = self.new_file()?;
        Ok(files::Concat::create(&dir, &name, schema.clone())?)
    }

    /// Streams the rows of data file `path` that `deleted` does not name into `sink`, one
    /// batch at a time (memory stays at one batch, whatever the file's size); returns how many
    /// rows the file holds.
    pub fn copy_live_rows(
        &self,
        path: &str,
        schema: &deltalake::arrow::datatypes::SchemaRef,
        deleted: &roaring::RoaringTreemap,
        sink: &mut files::FileSink,
    ) -> Result<u64, TableError> {
        let mut row = 0u64;
        for b in self.read_file(path, schema)? {
            let b = b?;
            let n = b.num_rows() as u64;
            let kept = dv::drop_deleted(b, row, deleted).map_err(|source| TableError::Arrow {
                table: self.name(),
                source,
            })?;
            row += n;
            if kept.num_rows() > 0 {
                sink.write(&kept)?;
            }
        }
        Ok(row)
    }

    /// Reads a data file of this table batch by batch, conformed to `schema` (which may name
    /// only some of the table's columns: only those are read).
    pub fn read_file(
        &self,
        path: &str,
        schema: &deltalake::arrow::datatypes::SchemaRef,
    ) -> Result<impl Iterator<Item = Result<RecordBatch, TableError>>, TableError> {
        let batches = match &self.remote {
            Some(remote) => files::read_conformed(path, remote.read(&self.name(), path)?, schema)?,
            None => {
                let full = self.root.join(path);
                let file = std::fs::File::open(&full).map_err(|source| TableError::Io {
                    table: self.name(),
                    source,
                })?;
                files::read_conformed(path, file, schema)?
            }
        };
        Ok(batches.map(|b| b.map_err(TableError::from)))
    }

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
        let high_water = match (high_water, self.high_water) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mut props = CommitProperties::default()
            .with_metadata(info)
            .with_create_checkpoint(false);
        if let Some(v) = high_water {
            props = props.with_application_transaction(Transaction::new(app_id(&self.stream), v));
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
        self.high_water = high_water;
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

/// The data file of a commit being written (see [`Table::spawn_writer`]).
pub struct FileWriter {
    tx: std::sync::mpsc::SyncSender<(RecordBatch, files::BatchStats)>,
    file: ClosedFile,
}

impl FileWriter {
    /// Hands a batch to the writer (waits while it is busy with the previous one); `false`
    /// when the writer has stopped on an error, which [`ClosedFile::join`] returns.
    pub fn send(&mut self, batch: RecordBatch) -> bool {
        // Computed here, on the parsing thread: one pass over the values present, cheaper
        // than on the encoding thread, which would walk the batch again.
        let stats = files::BatchStats::of(&batch);
        self.tx.send((batch, stats)).is_ok()
    }

    /// No more batches: the writer finishes the file.
    pub fn close(self) -> ClosedFile {
        self.file
    }
}

/// A commit's data file whose writing is ending (see [`FileWriter::close`]): the file written
/// batch by batch, then its parts (batches of different schemas) merged.
pub struct ClosedFile {
    table: String,
    dir: PathBuf,
    handle: std::thread::JoinHandle<Result<Vec<Add>, TableError>>,
}

impl ClosedFile {
    /// Whether [`Self::join`] would not wait.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The file's `add` actions: one, or its parts when they could not be merged.
    pub fn join(self) -> Result<Vec<Add>, TableError> {
        self.handle.join().unwrap_or_else(|_| {
            Err(TableError::Schema {
                table: self.table,
                detail: "the data file writer panicked".into(),
            })
        })
    }

    /// Waits for the file and removes it: its batch will not be committed (the run failed).
    pub fn discard(self) {
        let dir = self.dir.clone();
        for add in self.join().unwrap_or_default() {
            let _ = std::fs::remove_file(dir.join(&add.path));
        }
    }
}

/// The Arrow schema of a Delta schema, keeping our field metadata (the kernel's own conversion
/// drops it).
fn arrow_schema_of(schema: &StructType) -> Result<Schema, String> {
    let fields = schema
        .fields()
        .map(|f| {
            let dt = ArrowDataType::try_from_kernel(f.data_type()).map_err(|e| e.to_string())?;
            let meta: HashMap<String, String> = f
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            Ok(Field::new(f.name(), dt, true).with_metadata(meta))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Schema::new(fields))
}

/// The Delta operation recorded for a plain append.
pub fn append_operation() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
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
