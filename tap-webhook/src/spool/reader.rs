//! The tap's side of the spool: a bounded snapshot to drain, and pruning of what a handed-in
//! state proves committed.
//!
//! A run drains up to the highest sequence present when it started: anything committed later
//! has a higher sequence (sequences are assigned inside the write lock), so a run never chases
//! arrivals and two runs over the same spool and state emit the same messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};

use super::{last_seq, micros, open_checked, producer_id, MessageRef, SpoolError, StoredMessage};

/// Bytes of the spool file a reader maps into memory (SQLite caps it at its compile-time limit).
const READ_MMAP_BYTES: i64 = 1 << 30;

pub struct SpoolReader {
    conn: Connection,
    path: PathBuf,
    /// The spool's producer id ([`super::producer_id`]).
    producer: String,
    /// Scan messages by sequence and filter the source, instead of walking the
    /// (source, seq) index and seeking each row in the table: cheaper when (nearly) every
    /// message is of the source read, as in a spool of one source.
    scan_by_seq: bool,
    /// A replay's receipt window (microseconds, both ends included): only messages received
    /// in it are read.
    window: Option<(i64, i64)>,
    /// Device and inode of the file opened, to notice it removed or replaced under a long
    /// (following) run.
    identity: Option<(u64, u64)>,
}

impl SpoolReader {
    /// Opens the spool for a run, checked ([`super::open_checked`]).
    pub fn open(path: &Path) -> Result<SpoolReader, SpoolError> {
        let conn = open_checked(path)?;
        // A run reads every pending page once or twice (schema prescan): mapping the file saves
        // a read() and a copy per page. Only reads use the map; writes (pruning) stay write().
        conn.pragma_update(None, "mmap_size", READ_MMAP_BYTES)
            .map_err(|source| SpoolError::Sqlite {
                path: path.display().to_string(),
                source,
            })?;
        let producer = producer_id(&conn).map_err(|source| SpoolError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        Ok(SpoolReader {
            conn,
            path: path.to_path_buf(),
            producer,
            scan_by_seq: false,
            window: None,
            identity: super::watch::identity(path).ok(),
        })
    }

    /// Reads messages in sequence order filtering the source (true), or through the
    /// source's index (false, the default). Same rows either way; only the cost differs.
    pub fn scan_by_seq(&mut self, yes: bool) {
        self.scan_by_seq = yes;
    }

    /// Reads only messages received in `[since_us, until_us]` (a replay, `--replay-since`).
    pub fn receipt_window(&mut self, since_us: i64, until_us: i64) {
        self.window = Some((since_us, until_us));
    }

    fn range_query(&self, columns: &str) -> String {
        let source = if self.scan_by_seq {
            "+source"
        } else {
            "source"
        };
        // Numbers, so written into the statement rather than bound.
        let window = self
            .window
            .map(|(a, b)| format!(" AND received_at >= {a} AND received_at <= {b}"))
            .unwrap_or_default();
        format!(
            "SELECT {columns} FROM messages
             WHERE {source} = ?1 AND seq > ?2 AND seq <= ?3{window} ORDER BY seq"
        )
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The spool's producer id: its sequence space's name in records and STATE.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The highest sequence ever assigned (0 for a new spool).
    pub fn high_water_mark(&self) -> Result<i64, SpoolError> {
        last_seq(&self.conn).map_err(|e| self.err(e))
    }

    /// Fails when the file at the spool's path is no longer the one this reader opened
    /// (removed, or replaced by a restore or a cleanup): a following run would otherwise wait
    /// on a file nothing writes any more.
    pub fn still_at_path(&self) -> Result<(), SpoolError> {
        match super::watch::identity(&self.path) {
            Ok(now) if Some(now) == self.identity => Ok(()),
            _ => Err(SpoolError::Replaced {
                path: self.path.display().to_string(),
            }),
        }
    }

    /// SQLite's `data_version`: changes whenever another connection (the receiver, a drain)
    /// commits to the spool, never for this reader's own writes. One cheap read of a counter
    /// in shared memory, no I/O: what a following run polls.
    pub fn data_version(&self) -> Result<i64, SpoolError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Deletes a source's messages with `seq <= bookmark` received before the retention cutoff.
    /// Returns how many were deleted.
    pub fn prune(
        &self,
        source: &str,
        bookmark: i64,
        retention: Duration,
    ) -> Result<usize, SpoolError> {
        let cutoff = singer::clock::now_micros().saturating_sub(micros(retention));
        self.conn
            .execute(
                "DELETE FROM messages WHERE source = ?1 AND seq <= ?2 AND received_at <= ?3",
                params![source, bookmark, cutoff],
            )
            .map_err(|e| self.err(e))
    }

    /// Calls `f` for each message of `source` with `after < seq <= until`, in sequence order,
    /// until `f` returns `Ok(false)`.
    pub fn for_each<E>(
        &self,
        source: &str,
        after: i64,
        until: i64,
        mut f: impl FnMut(StoredMessage) -> Result<bool, E>,
    ) -> Result<(), E>
    where
        E: From<SpoolError>,
    {
        self.for_each_ref(source, after, until, |m| f(m.to_stored()))
    }

    /// Like [`for_each`](Self::for_each), lending each message as it lies in SQLite's row
    /// instead of copying it out: a run allocates and copies nothing per row.
    pub fn for_each_ref<E>(
        &self,
        source: &str,
        after: i64,
        until: i64,
        mut f: impl FnMut(MessageRef<'_>) -> Result<bool, E>,
    ) -> Result<(), E>
    where
        E: From<SpoolError>,
    {
        let mut stmt = self
            .conn
            .prepare_cached(
                &self.range_query("seq, id, received_at, delivery_id, part, headers, query, body"),
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![source, after, until])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let m = (|| {
                Ok(MessageRef {
                    seq: row.get(0)?,
                    id: text(row, 1)?,
                    source,
                    received_at_us: row.get(2)?,
                    delivery_id: match row.get_ref(3)? {
                        ValueRef::Null => None,
                        _ => Some(text(row, 3)?),
                    },
                    part: row.get(4)?,
                    headers: text(row, 5)?,
                    query: text(row, 6)?,
                    body: text(row, 7)?,
                })
            })()
            .map_err(|e| self.err(e))?;
            if !f(m)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` with the body of each message of `source` with `after < seq <= until`, in
    /// sequence order; the body is borrowed from SQLite's row (no copy). For passes that look at
    /// payloads only (the schema prescan).
    pub fn for_each_body<E>(
        &self,
        source: &str,
        after: i64,
        until: i64,
        mut f: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<SpoolError>,
    {
        let mut stmt = self
            .conn
            .prepare_cached(&self.range_query("body"))
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![source, after, until])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let body = row
                .get_ref(0)
                .and_then(|v| v.as_str().map_err(rusqlite::Error::from))
                .map_err(|e| self.err(e))?;
            f(body)?;
        }
        Ok(())
    }

    /// Messages of a source now in the spool (for tests and --test).
    pub fn count(&self, source: &str) -> Result<i64, SpoolError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM messages WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// A text column, borrowed from the row.
fn text<'r>(row: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(idx)?.as_str().map_err(rusqlite::Error::from)
}
