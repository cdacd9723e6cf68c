//! Files a killed or failed run left in a local table's directory that no commit references:
//! removed when the table is next opened for a load, so that a partial Parquet file cannot, say,
//! keep a full disk full for the retry. (A run that fails removes what it wrote itself, where it
//! knows the commit was not made; this sweep is for what it could not: a kill, a power cut, a
//! commit whose outcome it could not learn.)
//!
//! What is removed, all of it at once:
//! - only our own names: `part-<UUIDv7>.zstd.parquet` (data files, and the parts a batch is
//!   written in) and `deletion_vector_<UUIDv7>.bin`, at the table's top level. Other writers
//!   (Spark, delta-rs) name their files differently, and our UUIDs are time-ordered v7;
//! - written before the cutoff ([`cutoff`]: the run's start minus [`ORPHAN_AGE`], or twice
//!   `max_batch_age` if longer), by modification time. A file younger than that may belong to
//!   another load of the same table running now: a batch's data file is written while its rows
//!   arrive, up to `max_batch_age`, before its commit names it;
//! - named by no commit: not a live file or its deletion vector, and not found in any log
//!   entry (every `add` and every `remove` ever committed, so time travel keeps its files).
//!   When the log no longer starts at version 0 (someone cleaned it up), files named only by a
//!   checkpoint cannot be told apart, and nothing is removed.
//!
//! Object stores are not swept (listing a large table's objects on every run costs more than
//! the space): a failed run deletes the uploads it knows were not committed, and the rest is
//! left to a vacuum.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::TableError;
use super::{dv, Table};

/// The least age of a file the sweep removes (see the module documentation).
pub const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// Files written before this are old enough to sweep, for a run that started at `started`.
pub fn cutoff(started: SystemTime, max_batch_age: Duration) -> SystemTime {
    let margin = ORPHAN_AGE.max(max_batch_age.saturating_mul(2));
    started
        .checked_sub(margin)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// How a file of ours is named in a log entry: a data file by its path, a deletion vector
/// file by the z85 encoding of its UUID (the descriptor's `pathOrInlineDv`). `None`: not ours.
fn log_name(file: &str) -> Option<String> {
    let ours = |uuid: &str| {
        uuid::Uuid::parse_str(uuid)
            .ok()
            .filter(|u| u.get_version_num() == 7)
    };
    if let Some(uuid) = file
        .strip_prefix("part-")
        .and_then(|r| r.strip_suffix(".zstd.parquet"))
    {
        return ours(uuid).map(|_| file.to_string());
    }
    let uuid = file
        .strip_prefix("deletion_vector_")
        .and_then(|r| r.strip_suffix(".bin"))?;
    ours(uuid).map(|u| z85::encode(u.as_bytes()))
}

impl Table {
    /// Removes our files in the table's directory that no commit references and that were
    /// last written before `cutoff`; returns their names.
    pub fn remove_orphans(&self, cutoff: SystemTime) -> Result<Vec<String>, TableError> {
        if self.remote.is_some() || !self.exists {
            return Ok(Vec::new());
        }
        let io = |source| TableError::Io {
            table: self.name(),
            source,
        };
        // Our names, old enough (the cheap test first: most tables have no candidate).
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(key) = log_name(&name) else { continue };
            let meta = entry.metadata().map_err(io)?;
            if meta.is_file() && meta.modified().map_err(io)? < cutoff {
                candidates.push((name, key));
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.live_paths()?;
        candidates.retain(|(name, _)| !live.contains(name));
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        if !self.unreferenced(&mut candidates).map_err(io)? {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        for (name, _) in candidates {
            match std::fs::remove_file(self.root.join(&name)) {
                Ok(()) => removed.push(name),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(removed)
    }

    /// The live data files of the snapshot and their deletion vector files (no statistics
    /// parsed: a large table has many).
    fn live_paths(&self) -> Result<HashSet<String>, TableError> {
        let state = self.delta.snapshot().map_err(|e| self.delta_err(e))?;
        let mut live = HashSet::new();
        for f in state.log_data().iter() {
            if let Some(Ok(dv::Location::File { path, .. })) =
                f.deletion_vector_descriptor().as_ref().map(dv::locate)
            {
                live.insert(path);
            }
            live.insert(f.path().into_owned());
        }
        Ok(live)
    }

    /// Keeps the `candidates` no log entry names; `false` when the log does not start at
    /// version 0 (it was cleaned up: what only a checkpoint names cannot be told).
    fn unreferenced(&self, candidates: &mut Vec<(String, String)>) -> std::io::Result<bool> {
        let log = self.root.join("_delta_log");
        if !log.join(format!("{:020}.json", 0)).exists() {
            tracing::info!(table = %self.name(), "the log does not start at version 0: no orphan sweep");
            return Ok(false);
        }
        for entry in std::fs::read_dir(&log)? {
            let path = entry?.path();
            if !is_commit_file(&path) {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            candidates.retain(|(_, key)| memchr::memmem::find(&bytes, key.as_bytes()).is_none());
            if candidates.is_empty() {
                break;
            }
        }
        Ok(true)
    }
}

/// `_delta_log/<20 digits>.json`.
fn is_commit_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_time_ordered_names_are_candidates() {
        let v7 = uuid::Uuid::now_v7();
        let v4 = uuid::Uuid::new_v4();
        let data = format!("part-{v7}.zstd.parquet");
        assert_eq!(log_name(&data), Some(data.clone()));
        assert_eq!(
            log_name(&format!("deletion_vector_{v7}.bin")),
            Some(z85::encode(v7.as_bytes()))
        );
        for other in [
            format!("part-{v4}.zstd.parquet"),
            format!("deletion_vector_{v4}.bin"),
            format!("part-00000-{v7}-c000.snappy.parquet"),
            format!("part-00001-{v7}-c000.zstd.parquet"),
            "part-x.zstd.parquet".to_string(),
            "_delta_log".to_string(),
        ] {
            assert_eq!(log_name(&other), None, "{other}");
        }
        assert!(is_commit_file(Path::new(
            "t/_delta_log/00000000000000000012.json"
        )));
        assert!(!is_commit_file(Path::new(
            "t/_delta_log/_commit_0b5e.json.tmp"
        )));
        let now = SystemTime::now();
        assert_eq!(cutoff(now, Duration::from_secs(300)), now - ORPHAN_AGE);
        assert_eq!(
            cutoff(now, Duration::from_secs(7200)),
            now - Duration::from_secs(14400)
        );
    }
}
