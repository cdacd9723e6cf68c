//! The receiver's watch over its spool: a thread with its own connection that, every
//! [`WATCH_INTERVAL`], re-reads the spool's size and depth and checks that the file at the
//! spool's path is still the one the receiver opened.
//!
//! The size is read on a timer, not after writes: a full spool refuses deliveries before any
//! write, so a size read only after writes would keep `SPOOL_FULL` until a restart even after
//! the tap pruned the spool empty. `/metrics` shows the same reading.
//!
//! A spool file removed or replaced under a running receiver (a cleanup script, a restore)
//! would take every later write into an unlinked file that nothing will ever read: each 200
//! would be a lost message. So the spool is marked failed ([`SpoolStats::fail`]), which the
//! writer and the receiver check before storing (503 `SPOOL_UNAVAILABLE`) until restarted. A
//! write that SQLite reports as hitting a corrupt database marks it failed the same way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::{is_corruption, open, SpoolError};

/// How often the size, depth and file identity are re-read.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Spool size and depth, refreshed by the watch; read by /metrics and the SPOOL_FULL check.
/// Also whether the spool has failed for good (until a restart).
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub bytes: AtomicU64,
    pub depth: AtomicU64,
    /// Why the spool can take no more writes; set once.
    failed: OnceLock<String>,
}

impl SpoolStats {
    /// Why the spool can take no more writes, once it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Marks the spool failed until restart; the first reason is kept and logged.
    pub fn fail(&self, reason: String) {
        if self.failed.set(reason).is_ok() {
            tracing::error!(
                reason = self.failure().unwrap_or_default(),
                "the spool can take no more writes: every delivery gets 503 SPOOL_UNAVAILABLE \
                 until tap-webhook serve is restarted on a healthy spool"
            );
        }
    }
}

/// The file a path names: its device and inode.
#[cfg(unix)]
pub(super) fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Elsewhere only removal is noticed.
#[cfg(not(unix))]
pub(super) fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// Reads the stats once, then keeps them current from a thread of their own until `stats` is
/// dropped by everyone else. Call right after the writer opened the spool: the file found at
/// `path` now is the one every later check compares with.
pub fn start(path: &Path, stats: &Arc<SpoolStats>) -> Result<(), SpoolError> {
    let conn = open(path)?;
    let opened =
        identity(path).map_err(|e| SpoolError::Commit(format!("{}: {e}", path.display())))?;
    refresh(&conn, stats);
    let watch = Watch {
        conn,
        path: path.to_path_buf(),
        opened,
        stats: Arc::downgrade(stats),
    };
    std::thread::Builder::new()
        .name("spool-watch".into())
        .spawn(move || watch.run())
        .map_err(|e| SpoolError::Commit(format!("starting the spool watch: {e}")))?;
    Ok(())
}

struct Watch {
    conn: Connection,
    path: PathBuf,
    opened: (u64, u64),
    stats: Weak<SpoolStats>,
}

impl Watch {
    fn run(self) {
        loop {
            std::thread::sleep(WATCH_INTERVAL);
            let Some(stats) = self.stats.upgrade() else {
                return;
            };
            if stats.failure().is_none() {
                match identity(&self.path) {
                    Ok(id) if id == self.opened => {}
                    Ok(_) => stats.fail(format!(
                        "spool file {} was replaced by another file while the receiver had it open",
                        self.path.display()
                    )),
                    Err(e) => stats.fail(format!(
                        "spool file {} can no longer be found ({e}): it was removed or moved \
                         while the receiver had it open",
                        self.path.display()
                    )),
                }
            }
            refresh(&self.conn, &stats);
        }
    }
}

/// Live bytes (pages in use, so pruned messages no longer count) and message count.
fn refresh(conn: &Connection, stats: &SpoolStats) {
    let pragma = |name: &str| -> u64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|v| u64::try_from(v).unwrap_or(0))
            .unwrap_or(0)
    };
    let used = pragma("page_count").saturating_sub(pragma("freelist_count"));
    stats
        .bytes
        .store(used.saturating_mul(pragma("page_size")), Ordering::Relaxed);
    let depth: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap_or(0);
    stats
        .depth
        .store(u64::try_from(depth).unwrap_or(0), Ordering::Relaxed);
}

/// True when SQLite's error says the database file itself is damaged or gone: no later write
/// can be trusted, so the spool is failed rather than the one batch.
pub fn is_fatal(e: &rusqlite::Error) -> bool {
    is_corruption(e)
        || matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_READONLY_DBMOVED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_kept_once() {
        let s = SpoolStats::default();
        assert_eq!(s.failure(), None);
        s.fail("first".into());
        s.fail("second".into());
        assert_eq!(s.failure(), Some("first"));
    }
}
