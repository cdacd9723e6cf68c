//! `target-warehouse doctor` for one table: what a reader meets when it opens it (protocol,
//! features, which common readers open it), how healthy it is to open (files, small files,
//! log length since the last checkpoint, unreferenced files) and what it remembers (the Singer
//! stream, every producer's high-water mark). Problems that make the table unreadable (the log,
//! a referenced file missing, a corrupt deletion vector) are listed in `broken`.

use std::collections::BTreeMap;

use deltalake::kernel::Action;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::LogStore;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::Path as StorePath;
use serde::Serialize;

use super::compact::SMALL_FILE_BYTES;
use super::readers::{opens, Opens, READERS};
use super::{dv, Table};

/// What `doctor` says about one table.
#[derive(Debug, Default, Serialize)]
pub struct Health {
    /// The table's directory (or `s3://` location).
    pub table: String,
    /// The Singer stream the table's log names (`metaData.name`).
    pub stream: Option<String>,
    pub version: Option<u64>,
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    pub reader_features: Vec<String>,
    pub writer_features: Vec<String>,
    /// Each common reader and whether it opens the table (see `readers.rs`).
    pub readers: Vec<ReaderVerdict>,
    pub files: usize,
    pub small_files: usize,
    pub bytes: i64,
    /// Rows deleted by deletion vectors (still on disk until compaction).
    pub deleted_rows: u64,
    pub last_checkpoint: Option<u64>,
    /// Commits a reader replays as JSON after the last checkpoint.
    pub commits_since_checkpoint: u64,
    /// Seconds opening the table took here (reading its log to the current version): what
    /// every reader pays first, and what a long log or a missed checkpoint shows in.
    pub open_seconds: Option<f64>,
    /// Files in the directory the current version does not reference (older versions' files,
    /// what a failed run left): what `vacuum` considers, whatever their age.
    pub unreferenced_files: usize,
    pub unreferenced_bytes: i64,
    /// Every `txn` application id the table holds and its version: the producers' high-water
    /// marks (`<stream>` alone is the legacy stream-wide mark, see `marks.rs`).
    pub marks: BTreeMap<String, i64>,
    /// What makes the table unreadable; empty when it is healthy.
    pub broken: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ReaderVerdict {
    pub reader: &'static str,
    #[serde(flatten)]
    pub opens: Opens,
}

impl Health {
    /// A table that could not be opened at all.
    pub fn unreadable(table: String, why: String) -> Health {
        Health {
            table,
            broken: vec![why],
            ..Health::default()
        }
    }

    /// Share of the files below the small-file size, in percent.
    pub fn small_file_percent(&self) -> u64 {
        (self.small_files * 100)
            .checked_div(self.files)
            .map_or(0, |p| p as u64)
    }
}

impl Table {
    /// Inspects the table (opened with `open_dir`). Never fails: what goes wrong is a problem
    /// in the report.
    pub async fn health(&self) -> Health {
        let mut h = Health {
            table: self.root.display().to_string(),
            stream: Some(self.stream.clone()).filter(|s| !s.is_empty()),
            ..Health::default()
        };
        let state = match self.delta.snapshot() {
            Ok(s) => s,
            Err(e) => return Health::unreadable(h.table, format!("log: {e}")),
        };
        let version = state.version();
        h.version = Some(version);
        let protocol = state.protocol();
        h.min_reader_version = protocol.min_reader_version();
        h.min_writer_version = protocol.min_writer_version();
        h.reader_features = protocol
            .reader_features()
            .map(|f| f.iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        h.writer_features = protocol
            .writer_features()
            .map(|f| f.iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        h.readers = READERS
            .iter()
            .map(|r| ReaderVerdict {
                reader: r.name,
                opens: opens(r, h.min_reader_version, &h.reader_features),
            })
            .collect();
        let files = match self.files() {
            Ok(f) => f,
            Err(e) => {
                h.broken.push(format!("files: {e}"));
                return h;
            }
        };
        h.files = files.len();
        h.small_files = files.iter().filter(|f| f.size < SMALL_FILE_BYTES).count();
        h.bytes = files.iter().map(|f| f.size).sum();
        let store = self.delta.log_store().object_store(None);
        let mut dvs = dv::Cache::default();
        for f in &files {
            if let Err(e) = store.head(&StorePath::from(f.path.as_str())).await {
                h.broken
                    .push(format!("referenced file {} is missing: {e}", f.path));
                continue;
            }
            match self.deleted_rows(f, &mut dvs) {
                Ok(rows) => h.deleted_rows += rows.len(),
                Err(e) => h.broken.push(e.to_string()),
            }
        }
        let log_store = self.delta.log_store();
        h.last_checkpoint = last_checkpoint(log_store.as_ref()).await;
        let from = h.last_checkpoint.map_or(0, |c| c + 1);
        h.commits_since_checkpoint = (version + 1).saturating_sub(from);
        match marks(log_store.as_ref(), h.last_checkpoint, version).await {
            Ok(m) => h.marks = m,
            Err(e) => h.broken.push(format!("log: {e}")),
        }
        match self.unreferenced_files(0).await {
            Ok(list) => {
                h.unreferenced_files = list.len();
                h.unreferenced_bytes = list.iter().map(|(_, size)| size).sum();
            }
            Err(e) => h.broken.push(format!("listing the table's files: {e}")),
        }
        h
    }
}

/// The version `_delta_log/_last_checkpoint` names, if any.
async fn last_checkpoint(log_store: &dyn LogStore) -> Option<u64> {
    let store = log_store.object_store(None);
    let bytes = store
        .get(&StorePath::from("_delta_log/_last_checkpoint"))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("version")?.as_u64()
}

/// Every `txn` of the table: the checkpoint's, then those of the commits after it (later wins).
async fn marks(
    log_store: &dyn LogStore,
    checkpoint: Option<u64>,
    version: u64,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    if let Some(c) = checkpoint {
        let path = StorePath::from(format!("_delta_log/{c:020}.checkpoint.parquet"));
        let bytes = log_store
            .object_store(None)
            .get(&path)
            .await
            .map_err(|e| format!("checkpoint {c}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("checkpoint {c}: {e}"))?;
        checkpoint_txns(bytes, &mut out).map_err(|e| format!("checkpoint {c}: {e}"))?;
    }
    for v in checkpoint.map_or(0, |c| c + 1)..=version {
        let Some(bytes) = log_store
            .read_commit_entry(v)
            .await
            .map_err(|e| format!("commit {v}: {e}"))?
        else {
            return Err(format!("commit {v} is missing"));
        };
        let actions =
            deltalake::logstore::get_actions(v, &bytes).map_err(|e| format!("commit {v}: {e}"))?;
        for a in actions {
            if let Action::Txn(t) = a {
                out.insert(t.app_id, t.version);
            }
        }
    }
    Ok(out)
}

/// The `txn` rows of a (single-part) checkpoint.
fn checkpoint_txns(bytes: bytes::Bytes, out: &mut BTreeMap<String, i64>) -> Result<(), String> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::Int64Type;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let Some(txn) = batch.column_by_name("txn") else {
            return Ok(());
        };
        let txn = txn.as_struct();
        let (Some(ids), Some(versions)) =
            (txn.column_by_name("appId"), txn.column_by_name("version"))
        else {
            return Err("txn without appId or version".into());
        };
        let ids = ids.as_string::<i32>();
        let versions = versions.as_primitive::<Int64Type>();
        for row in 0..txn.len() {
            if txn.is_valid(row) && ids.is_valid(row) {
                out.insert(ids.value(row).to_string(), versions.value(row));
            }
        }
    }
    Ok(())
}

/// The human form of a report.
pub fn render(h: &Health) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let state = if h.broken.is_empty() {
        "healthy"
    } else {
        "BROKEN"
    };
    let _ = writeln!(s, "{}: {state}", h.table);
    for b in &h.broken {
        let _ = writeln!(s, "  problem: {b}");
    }
    let _ = writeln!(
        s,
        "  stream {:?}, version {}",
        h.stream.as_deref().unwrap_or("?"),
        h.version.map_or("?".into(), |v| v.to_string())
    );
    let _ = writeln!(
        s,
        "  protocol: reader {} writer {}; reader features [{}], writer features [{}]",
        h.min_reader_version,
        h.min_writer_version,
        h.reader_features.join(", "),
        h.writer_features.join(", ")
    );
    for r in &h.readers {
        let verdict = match &r.opens {
            Opens::Yes => "opens it".to_string(),
            Opens::No(why) => format!("refuses it ({why})"),
            Opens::Unknown(why) => format!("not known ({why})"),
        };
        let _ = writeln!(s, "    {}: {verdict}", r.reader);
    }
    let _ = writeln!(
        s,
        "  files: {} ({} bytes), {}% small; {} rows deleted by deletion vectors",
        h.files,
        h.bytes,
        h.small_file_percent(),
        h.deleted_rows
    );
    let _ = writeln!(
        s,
        "  log: last checkpoint {}, {} commits since; opened in {}",
        h.last_checkpoint.map_or("none".into(), |v| v.to_string()),
        h.commits_since_checkpoint,
        h.open_seconds.map_or("?".into(), |t| format!("{:.3} s", t))
    );
    let _ = writeln!(
        s,
        "  unreferenced files: {} ({} bytes; `vacuum` removes those past the retention)",
        h.unreferenced_files, h.unreferenced_bytes
    );
    for (app, v) in &h.marks {
        let _ = writeln!(s, "  mark {app} = {v}");
    }
    s
}
