//! Where the tables live: a local directory (the default), or an object store such as
//! `s3://bucket/prefix`, reached through the object store `deltalake` itself uses.
//!
//! On a local warehouse the table code writes and fsyncs files directly (`files.rs`,
//! `Table::sync_log`). On an object store every byte goes through the table's log store
//! (`DeltaTable::log_store().object_store()`): a Parquet file is written to a local staging file
//! exactly as before, then PUT at its name under the table (a PUT returns only once S3 stored
//! the object durably), and only then is the commit that references it attempted.
//!
//! Commits on S3: delta-rs 1.x writes the log entry `_delta_log/<version>.json` with a
//! conditional PUT (`If-None-Match: *`, S3's native conditional writes): of two writers
//! racing for the same version exactly one succeeds, the other sees the conflict and retries on
//! top of the new version (its transaction conflict checker decides whether it may). No lock
//! service (DynamoDB) is needed; delta-rs 1.x removed it. ARCHITECTURE.md, "S3 commits".

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::logstore::object_store::{
    path::Path as ObjectPath, GetOptions, GetRange, ObjectStoreExt, PutPayload,
};
use deltalake::{DeltaTable, ObjectStore};

use super::error::TableError;

/// URL schemes that name an object store rather than a directory.
const REMOTE_SCHEMES: [&str; 2] = ["s3://", "s3a://"];

/// Whether a warehouse or table path is an object-store URL.
pub fn is_remote(path: &Path) -> bool {
    let s = path.to_string_lossy();
    REMOTE_SCHEMES.iter().any(|p| s.starts_with(p))
}

/// Registers deltalake's `s3://` and `s3a://` handlers (its constructor does too; explicit and
/// idempotent, so opening an S3 table never depends on link-time constructors).
pub fn register_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| deltalake::aws::register_handlers(None));
}

/// Storage options handed to `deltalake` for every table: the `aws_*` settings first, then the
/// `storage_options` map (which wins). Credentials are never set here: the standard AWS chain
/// (environment, profile, web identity, instance role) supplies them.
pub fn storage_options(
    region: Option<&str>,
    endpoint_url: Option<&str>,
    allow_http: Option<bool>,
    extra: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut o = HashMap::new();
    if let Some(r) = region {
        o.insert("aws_region".to_owned(), r.to_owned());
    }
    if let Some(e) = endpoint_url {
        o.insert("aws_endpoint".to_owned(), e.to_owned());
    }
    if let Some(h) = allow_http {
        o.insert("aws_allow_http".to_owned(), h.to_string());
    }
    o.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    o
}

/// The bytes one ranged GET of [`download`] holds in memory.
const DOWNLOAD_CHUNK: u64 = 8 << 20;

/// Copies the object at `url` (`s3://bucket/key`, e.g. a file an SDK `BATCH` manifest names)
/// to the local file `dest`, through an object store built from the same storage options,
/// handlers and credential chain as the tables'. Ranged GETs of [`DOWNLOAD_CHUNK`] bytes keep
/// memory bounded whatever the object's size; each is pinned to the ETag the first request saw,
/// so an object replaced mid-copy fails instead of mixing two versions. Returns the size.
pub async fn download(
    url: &str,
    storage_options: &HashMap<String, String>,
    dest: &Path,
) -> Result<u64, String> {
    use std::io::Write;
    register_handlers();
    let (scheme, rest) = REMOTE_SCHEMES
        .iter()
        .find_map(|p| url.strip_prefix(p).map(|rest| (*p, rest)))
        .ok_or_else(|| format!("not an object-store URL (expected one of {REMOTE_SCHEMES:?})"))?;
    let (bucket, key) = rest
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or("expected s3://bucket/key")?;
    let root =
        deltalake::ensure_table_uri(format!("{scheme}{bucket}")).map_err(|e| e.to_string())?;
    let store =
        deltalake::logstore::store_for(&root, storage_options.iter()).map_err(|e| e.to_string())?;
    let path = ObjectPath::from_url_path(key).map_err(|e| e.to_string())?;
    let meta = store.head(&path).await.map_err(|e| e.to_string())?;
    let mut file = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    let mut at = 0;
    while at < meta.size {
        let end = (at + DOWNLOAD_CHUNK).min(meta.size);
        let options = GetOptions {
            range: Some(GetRange::Bounded(at..end)),
            if_match: meta.e_tag.clone(),
            ..GetOptions::default()
        };
        let part = store.get_opts(&path, options).await;
        let bytes = match part {
            Ok(p) => p.bytes().await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string())?;
        if bytes.len() as u64 != end - at {
            return Err(format!(
                "short read at byte {at}: {} of {} bytes",
                bytes.len(),
                end - at
            ));
        }
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        at = end;
    }
    // No fsync: the copy is read once right away and removed; a crash re-reads the object.
    Ok(meta.size)
}

/// The table directories directly under a warehouse on an object store (for `compact`).
pub async fn list_tables(
    warehouse: &Path,
    storage_options: &HashMap<String, String>,
) -> Result<Vec<PathBuf>, TableError> {
    register_handlers();
    let shown = warehouse.display().to_string();
    let delta_err = |source| TableError::Delta {
        table: shown.clone(),
        source,
    };
    let url = deltalake::ensure_table_uri(warehouse.to_string_lossy()).map_err(delta_err)?;
    let root = deltalake::DeltaTableBuilder::from_url(url)
        .map(|b| b.with_storage_options(storage_options.clone()))
        .and_then(|b| b.build())
        .map_err(delta_err)?;
    let listing = root
        .log_store()
        .object_store(None)
        .list_with_delimiter(None)
        .await
        .map_err(|e| object_err(&shown, "", e))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.parts().next_back())
        .map(|name| warehouse.join(name.as_ref()))
        .collect())
}

/// A table on an object store: the store (rooted at the table) and the runtime to drive it
/// from the synchronous flush code.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
}

impl Remote {
    /// The object store of `delta`; call inside the runtime (table opening is async).
    pub fn of(delta: &DeltaTable) -> Remote {
        Remote {
            store: delta.log_store().object_store(None),
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Runs `f` to completion from synchronous code, whether or not this thread is a runtime
    /// worker (compaction reads files from inside an async fn).
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.rt.block_on(f))
    }

    /// Uploads a staged local file as `name` under the table, then removes the staged copy.
    pub fn upload(&self, table: &str, staged: &Path, name: &str) -> Result<(), TableError> {
        let io = |source| TableError::Io {
            table: table.to_owned(),
            source,
        };
        let bytes = std::fs::read(staged).map_err(io)?;
        self.block_on(
            self.store
                .put(&ObjectPath::from(name), PutPayload::from(bytes)),
        )
        .map_err(|e| object_err(table, name, e))?;
        std::fs::remove_file(staged).map_err(io)?;
        Ok(())
    }

    /// Deletes a file of the table that no commit references (deleting a missing one is
    /// no error).
    pub fn delete(&self, table: &str, name: &str) -> Result<(), TableError> {
        match self.block_on(self.store.delete(&ObjectPath::from(name))) {
            Ok(()) | Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_err(table, name, e)),
        }
    }

    /// Reads a data file of the table.
    pub fn read(&self, table: &str, name: &str) -> Result<bytes::Bytes, TableError> {
        let path = ObjectPath::from(name);
        self.block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| object_err(table, name, e))
    }
}

fn object_err(table: &str, name: &str, e: deltalake::ObjectStoreError) -> TableError {
    TableError::Io {
        table: table.to_owned(),
        source: std::io::Error::other(format!("{name}: {e}")),
    }
}

/// Where Parquet files for an object-store table are written before their upload.
pub fn staging_dir() -> Result<PathBuf, std::io::Error> {
    let dir = staging_path();
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn staging_path() -> PathBuf {
    std::env::temp_dir().join(format!("target-warehouse-staging-{}", std::process::id()))
}

/// Removes this process's staging directory, if it made one.
pub fn remove_staging_dir() {
    let dir = staging_path();
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the staging directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_and_options() {
        assert!(is_remote(Path::new("s3://bucket/prefix")));
        assert!(is_remote(&Path::new("s3://bucket/prefix").join("data")));
        assert_eq!(
            Path::new("s3://bucket/prefix")
                .join("data")
                .to_string_lossy(),
            "s3://bucket/prefix/data"
        );
        assert!(!is_remote(Path::new("./warehouse")));
        let extra = HashMap::from([("aws_region".to_owned(), "eu-west-1".to_owned())]);
        let o = storage_options(
            Some("us-east-1"),
            Some("http://127.0.0.1:5000"),
            Some(true),
            &extra,
        );
        assert_eq!(o["aws_region"], "eu-west-1", "storage_options wins");
        assert_eq!(o["aws_endpoint"], "http://127.0.0.1:5000");
        assert_eq!(o["aws_allow_http"], "true");
    }

    #[test]
    fn download_names_a_malformed_url_before_any_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let to = dest.path().join("copy");
        for (url, want) in [
            ("s3://bucket", "s3://bucket/key"),
            ("s3:///key", "s3://bucket/key"),
            ("gs://bucket/key", "not an object-store URL"),
        ] {
            let err = rt
                .block_on(download(url, &HashMap::new(), &to))
                .unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
        assert!(!to.exists(), "nothing written for a malformed URL");
    }
}
