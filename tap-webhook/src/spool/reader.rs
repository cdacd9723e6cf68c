//! The tap's side of the spool: a bounded snapshot to drain, and pruning of what a handed-in
//! state proves committed.
//!
//! A run drains up to the highest sequence present when it started: anything committed later
//! has a higher sequence (sequences are assigned inside the write lock), so a run never chases
//! arrivals and two runs over the same spool and state emit the same messages.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_us, open, SpoolError, StoredMessage};

pub struct SpoolReader {
    conn: Connection,
    path: String,
}

impl SpoolReader {
    pub fn open(path: &Path) -> Result<SpoolReader, SpoolError> {
        Ok(SpoolReader {
            conn: open(path)?,
            path: path.display().to_string(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The highest sequence ever assigned (0 for a new spool).
    pub fn high_water_mark(&self) -> Result<i64, SpoolError> {
        self.conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
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
        let cutoff = now_us().saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(0));
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
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, id, received_at, delivery_id, part, headers, query, body
                 FROM messages WHERE source = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![source, after, until])
            .map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let m = (|| {
                Ok(StoredMessage {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    source: source.to_owned(),
                    received_at_us: row.get(2)?,
                    delivery_id: row.get(3)?,
                    part: row.get(4)?,
                    headers: row.get(5)?,
                    query: row.get(6)?,
                    body: row.get(7)?,
                })
            })()
            .map_err(|e| self.err(e))?;
            if !f(m)? {
                break;
            }
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
