//! One Delta Lake table per stream: opening (or lazily creating) it, its files and their
//! statistics, and where new files are written (the table's directory, or the local staging
//! directory of an object-store table) and made part of it.
//!
//! The commit that carries a batch's files, schema additions and high-water mark is in
//! [`commit`]; the data file written while a batch is parsed in [`writer`]; the Parquet files
//! themselves in [`files`], [`parts`], [`concat`], [`read`] and [`stats`].

pub mod commit;
pub mod compact;
pub mod concat;
pub mod dv;
pub mod error;
pub mod files;
pub mod health;
pub mod marks;
pub mod merge;
pub mod orphans;
pub mod parts;
pub mod place;
pub mod read;
pub mod readers;
pub mod stamp;
pub mod stats;
pub mod store;
pub mod vacuum;
pub mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use deltalake::arrow::datatypes::{DataType as ArrowDataType, Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryFromKernel;
use deltalake::kernel::{Add, DeletionVectorDescriptor, Remove, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use serde_json::Value as Json;

pub use error::TableError;

use crate::failpoint::{self, Step};
use crate::registry::Registry;
use marks::Marks;

/// The name a loaded table's log gives it (ours: the Singer stream's).
fn table_name(delta: &DeltaTable) -> Option<String> {
    let state = delta.snapshot().ok()?;
    state.metadata().name().map(str::to_string)
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
    /// The high-water marks of the stream's producers: committed by earlier runs (replays), and
    /// by this one.
    pub marks: Marks,
    /// Set when the table lives on an object store (`s3://…`): files go through it.
    remote: Option<store::Remote>,
    /// Whether the table, when this run creates it, gets the `deletionVectors` feature.
    pub create_with_deletion_vectors: bool,
    /// A checkpoint that failed after its commit, to report when the load ends.
    checkpoint_failure: Option<TableError>,
}

impl Table {
    /// Opens the table of `stream` under `warehouse`, or prepares to create it on first commit:
    /// the directory whose log names the stream, else the first free one (`place.rs` has the
    /// rule). `claimed` holds the directories other streams of this run took.
    pub async fn open(
        warehouse: &Path,
        stream: &str,
        claimed: &mut HashSet<PathBuf>,
        storage_options: &HashMap<String, String>,
    ) -> Result<(Table, Registry), TableError> {
        let base = place::base_name(stream);
        let mut found = BTreeMap::new();
        for (n, root) in place::listed(warehouse, &base, storage_options).await? {
            if claimed.contains(&root) {
                continue;
            }
            let (delta, exists) = Self::probe(&root, storage_options).await?;
            if exists && table_name(&delta).as_deref() == Some(stream) {
                claimed.insert(root.clone());
                return Self::opened(stream, root, delta).await;
            }
            found.insert(
                n,
                if exists {
                    place::Found::Taken
                } else {
                    place::Found::Free
                },
            );
        }
        let (root, delta) = loop {
            let (n, root) = place::first_free(warehouse, &base, &found, claimed);
            let (delta, exists) = Self::probe(&root, storage_options).await?;
            if !exists {
                break (root, delta);
            }
            // Created since the listing by another load: whose it is decides.
            if table_name(&delta).as_deref() == Some(stream) {
                claimed.insert(root.clone());
                return Self::opened(stream, root, delta).await;
            }
            found.insert(n, place::Found::Taken);
        };
        claimed.insert(root.clone());
        let remote = store::is_remote(&root).then(|| store::Remote::of(&delta));
        let table = Table {
            stream: stream.to_string(),
            root,
            delta,
            exists: false,
            marks: Marks::new(stream),
            remote,
            create_with_deletion_vectors: false,
            checkpoint_failure: None,
        };
        Ok((table, Registry::default()))
    }

    /// The Delta table at `root` (a local directory is made), loaded when it exists.
    async fn probe(
        root: &Path,
        storage_options: &HashMap<String, String>,
    ) -> Result<(DeltaTable, bool), TableError> {
        let dir = dir_name(root);
        let err = |source| TableError::Delta {
            table: dir.clone(),
            source,
        };
        if store::is_remote(root) {
            store::register_handlers();
        } else {
            std::fs::create_dir_all(root).map_err(|source| TableError::Io {
                table: dir.clone(),
                source,
            })?;
        }
        let url = deltalake::ensure_table_uri(root.to_string_lossy()).map_err(err)?;
        let mut delta = DeltaTableBuilder::from_url(url)
            .map(|b| b.with_storage_options(storage_options.clone()))
            .and_then(|b| b.build())
            .map_err(err)?;
        let exists = delta.verify_deltatable_existence().await.map_err(err)?;
        if exists {
            delta.load().await.map_err(err)?;
        }
        Ok((delta, exists))
    }

    /// The existing table of `stream` at `root`, with its columns and marks.
    async fn opened(
        stream: &str,
        root: PathBuf,
        delta: DeltaTable,
    ) -> Result<(Table, Registry), TableError> {
        let dir = dir_name(&root);
        let err = |source| TableError::Delta {
            table: dir.clone(),
            source,
        };
        let schema_err = |detail| TableError::Schema {
            table: dir.clone(),
            detail,
        };
        let state = delta.snapshot().map_err(err)?;
        let registry =
            Registry::from_schema(&arrow_schema_of(&state.schema()).map_err(schema_err)?)
                .map_err(schema_err)?;
        let marks = Marks::read(state, delta.log_store().as_ref(), stream)
            .await
            .map_err(err)?;
        let remote = store::is_remote(&root).then(|| store::Remote::of(&delta));
        let table = Table {
            stream: stream.to_string(),
            root,
            delta,
            exists: true,
            marks,
            remote,
            create_with_deletion_vectors: false,
            checkpoint_failure: None,
        };
        Ok((table, registry))
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
        let stream = table_name(&delta).unwrap_or_default();
        Self::opened(&stream, root.to_path_buf(), delta)
            .await
            .map(Some)
    }

    fn name(&self) -> String {
        dir_name(&self.root)
    }

    fn delta_err(&self, source: DeltaTableError) -> TableError {
        TableError::Delta {
            table: self.name(),
            source,
        }
    }

    /// Reads the mark of `producer` (first seen in this run) from the log, see `marks.rs`.
    pub async fn learn_producer(&mut self, producer: &str) -> Result<(), TableError> {
        let table = match self.exists {
            true => Some(self.delta.snapshot().map_err(|e| self.delta_err(e))?),
            false => None,
        };
        let log_store = self.delta.log_store();
        self.marks
            .learn(table.map(|s| (s, log_store.as_ref())), producer)
            .await
            .map_err(|source| TableError::Mark {
                table: self.name(),
                source,
            })
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
        failpoint::hit(Step::DvWrite).map_err(io)?;
        std::io::Write::write_all(&mut f, file.bytes()).map_err(io)?;
        failpoint::hit(Step::Fsync).map_err(io)?;
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

    /// Removes a file written for a commit that will not be made (nothing of it is in the
    /// log): from a local table's directory, or from the local staging directory of an
    /// object-store table and, if it was uploaded, from the store. Best effort: what is left
    /// is never referenced (on local disk, the next run's sweep takes it, see `orphans.rs`).
    pub fn discard_new_file(&self, path: &str) {
        if let Ok(dir) = self.write_dir() {
            let _ = std::fs::remove_file(dir.join(path));
        }
        if let Some(remote) = &self.remote {
            if let Err(e) = remote.delete(&self.name(), path) {
                tracing::warn!(table = %self.name(), file = path, error = %e, "could not remove an uncommitted file from the object store");
            }
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
        failpoint::hit(Step::Publish).map_err(|source| TableError::Io {
            table: self.name(),
            source,
        })?;
        if let Some(remote) = &self.remote {
            let staged = self.staging()?.join(&add.path);
            remote.upload(&self.name(), &staged, &add.path)?;
        }
        Ok(add)
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
    ) -> Result<Option<concat::Concat>, TableError> {
        let (dir, name) = self.new_file()?;
        Ok(concat::Concat::create(&dir, &name, schema.clone())?)
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
            Some(remote) => read::read_conformed(path, remote.read(&self.name(), path)?, schema)?,
            None => {
                let full = self.root.join(path);
                let file = std::fs::File::open(&full).map_err(|source| TableError::Io {
                    table: self.name(),
                    source,
                })?;
                read::read_conformed(path, file, schema)?
            }
        };
        Ok(batches.map(|b| b.map_err(TableError::from)))
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

/// The Delta operation recorded for a batch applied by key (upsert, insert). No predicate: the
/// batch read every file that could hold one of its keys, so deltalake's conflict check refuses
/// it when another load's commit since that read added or removed rows (issue 20).
pub fn merge_operation() -> DeltaOperation {
    DeltaOperation::Merge {
        predicate: None,
        merge_predicate: None,
        matched_predicates: Vec::new(),
        not_matched_predicates: Vec::new(),
        not_matched_by_source_predicates: Vec::new(),
    }
}

/// The Delta operation recorded for a plain append.
pub fn append_operation() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    }
}

/// The last component of a table's root: how errors name the table's directory.
fn dir_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
