//! The spool: the durable queue between the receiver and the tap.
//!
//! The embedded spool is one SQLite file in WAL mode with `synchronous=FULL`: a commit returns
//! only once the WAL is fsync'd, a SIGKILL at any instant leaves a file SQLite recovers on open,
//! and the tap (another process) reads while the receiver writes. One writer thread batches
//! concurrent deliveries into one transaction (group commit, [`writer`]); the tap reads and
//! prunes through [`reader`].
//!
//! Each message keeps what a later stage may need: its sequence (`seq`, the `_sdc_sequence`), a
//! time-ordered id, the receipt time, the source, the provider's delivery id, and the raw body.

pub mod browse;
pub mod ledger;
pub mod reader;
pub mod room;
pub mod watch;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

/// A message as the receiver hands it to the spool.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub source: String,
    /// Receipt time, microseconds since the Unix epoch (UTC).
    pub received_at_us: i64,
    /// The provider's delivery id, when one was sent; the dedupe key and the generated primary
    /// key's seed.
    pub delivery_id: Option<String>,
    /// Position in a JSON array body (0 for an object body).
    pub part: u32,
    /// JSON object of the captured, redacted request headers.
    pub headers: String,
    /// JSON object of the redacted query parameters.
    pub query: String,
    /// The message's JSON text exactly as received (after decompression).
    pub body: String,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Strictly increasing, never reused: `max(previous + 1, received_at_us)`, so it is also a
    /// Unix epoch in microseconds, ordered like receipt.
    pub seq: i64,
    /// UUIDv7: unique and time-ordered.
    pub id: String,
    pub source: String,
    pub received_at_us: i64,
    pub delivery_id: Option<String>,
    pub part: u32,
    pub headers: String,
    pub query: String,
    pub body: String,
}

impl StoredMessage {
    /// The message, borrowed.
    pub fn view(&self) -> MessageRef<'_> {
        MessageRef {
            seq: self.seq,
            id: &self.id,
            source: &self.source,
            received_at_us: self.received_at_us,
            delivery_id: self.delivery_id.as_deref(),
            part: self.part,
            headers: &self.headers,
            query: &self.query,
            body: &self.body,
        }
    }
}

/// A stored message borrowed from where it lies (a row SQLite is reading): see
/// [`StoredMessage`] for the fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageRef<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub source: &'a str,
    pub received_at_us: i64,
    pub delivery_id: Option<&'a str>,
    pub part: u32,
    pub headers: &'a str,
    pub query: &'a str,
    pub body: &'a str,
}

impl MessageRef<'_> {
    /// The message copied out of the row.
    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            seq: self.seq,
            id: self.id.to_owned(),
            source: self.source.to_owned(),
            received_at_us: self.received_at_us,
            delivery_id: self.delivery_id.map(str::to_owned),
            part: self.part,
            headers: self.headers.to_owned(),
            query: self.query.to_owned(),
            body: self.body.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("spool commit failed: {0}")]
    Commit(String),
    #[error("the spool writer has stopped")]
    WriterGone,
    #[error(
        "the spool's disk has too little room for this delivery beside the room a prune needs"
    )]
    NoRoom,
    #[error(
        "spool {path} is corrupt; SQLite says: {detail}. Stop every process using it and keep a \
         copy of the file: it holds the messages not yet loaded downstream. `sqlite3 {path} \
         .recover | sqlite3 recovered.sqlite` saves what can still be read; then point \
         spool_path at the recovered file (or at a new one) and start again"
    )]
    Corrupt { path: String, detail: String },
    #[error(
        "spool {path} was removed or replaced while the tap was following it: nothing stored \
         there now would ever reach this run. Start the run again (it opens the file at the \
         path); the state printed so far stays valid for the spool it came from"
    )]
    Replaced { path: String },
}

/// True when SQLite's error says the database file itself is damaged (or not a database).
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ffi::ErrorCode::DatabaseCorrupt | rusqlite::ffi::ErrorCode::NotADatabase)
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    source       TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    delivery_id  TEXT,
    part         INTEGER NOT NULL DEFAULT 0,
    headers      TEXT    NOT NULL,
    query        TEXT    NOT NULL,
    body         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_source ON messages (source, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    source       TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    message_ids  TEXT    NOT NULL,
    PRIMARY KEY (source, delivery_id)
) WITHOUT ROWID;
-- The spool's own facts: `producer_id`, a UUIDv7 made when the spool is first opened, names its
-- sequence space in every record (`_sdc_producer`) and in the tap's STATE.
CREATE TABLE IF NOT EXISTS meta (
    key          TEXT    PRIMARY KEY,
    value        TEXT    NOT NULL
);
-- Ids of messages drained from a queue, kept after the messages themselves are pruned: SQS may
-- redeliver a message whose delete failed long after it was emitted and pruned from `messages`.
CREATE TABLE IF NOT EXISTS drained_ids (
    id           TEXT    PRIMARY KEY,
    drained_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- Refused requests (`ledger`), bounded by count and age. A spool from before the ledger gets
-- the table when first opened by this version: every table here is created if missing.
CREATE TABLE IF NOT EXISTS refused (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    code         TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    size         INTEGER,
    remote       TEXT,
    user_agent   TEXT,
    delivery_id  TEXT,
    body         TEXT
);
CREATE INDEX IF NOT EXISTS refused_by_time ON refused (at);
-- Which payload field each flattened column of a stream holds (`tap::origins`): a later run
-- refuses another field in it. `origin` is its JSON pointer; NULL: the top-level field.
CREATE TABLE IF NOT EXISTS flattened_columns (
    stream       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    origin       TEXT,
    PRIMARY KEY (stream, name)
) WITHOUT ROWID;
";

/// How long the drain remembers a drained message id: longer than SQS keeps any message
/// (14 days at most), so a redelivery or a redrive from the dead-letter queue is always known.
pub const DRAINED_ID_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// Opens the spool as [`open`] does, then checks it (`PRAGMA quick_check`): `serve`, the tap
/// and `--test` refuse a damaged spool at start with what SQLite found and what to do, instead
/// of acknowledging deliveries into it or failing mid-run on the page a message lies in.
pub fn open_checked(path: &Path) -> Result<Connection, SpoolError> {
    let conn = open(path)?;
    let corrupt = |detail: String| SpoolError::Corrupt {
        path: path.display().to_string(),
        detail,
    };
    let found: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| match is_corruption(&e) {
            true => corrupt(e.to_string()),
            false => SpoolError::Sqlite {
                path: path.display().to_string(),
                source: e,
            },
        })?;
    if found != ["ok"] {
        return Err(corrupt(format!("quick_check: {}", found.join("; "))));
    }
    Ok(conn)
}

/// Opens (creating if needed) the spool database with the settings every connection needs.
pub fn open(path: &Path) -> Result<Connection, SpoolError> {
    let err = |source: rusqlite::Error| match is_corruption(&source) {
        true => SpoolError::Corrupt {
            path: path.display().to_string(),
            detail: source.to_string(),
        },
        false => SpoolError::Sqlite {
            path: path.display().to_string(),
            source,
        },
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A missing directory shows up as SQLite's "unable to open"; create it instead.
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    // FULL: every commit fsyncs the WAL, which is what lets the receiver answer 2xx.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

/// The spool's producer id, made on the first open by `serve` or the tap of a spool that has
/// none (new, or created before producer ids): inserted if absent and read back inside one
/// write transaction, so two processes opening it at once agree on one id.
pub fn producer_id(conn: &Connection) -> rusqlite::Result<String> {
    let read = || {
        conn.prepare_cached("SELECT value FROM meta WHERE key = 'producer_id'")?
            .query_row([], |r| r.get::<_, String>(0))
            .optional()
    };
    if let Some(id) = read()? {
        return Ok(id);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let made = conn
        .execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('producer_id', ?1)",
            [uuid::Uuid::now_v7().to_string()],
        )
        .and_then(|_| read())
        .and_then(|id| {
            conn.execute_batch("COMMIT")?;
            Ok(id)
        });
    if made.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    made?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// The highest sequence ever assigned (0 for a new spool): `sqlite_sequence` keeps it even
/// after every message is pruned, so a sequence is never reused. Read inside the write
/// transaction by writers (sequences then stay increasing whoever else writes), and at the start
/// of a tap run as its high-water mark.
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// Forgets delivery ids older than the dedupe window (nothing to do without one).
pub fn expire_deliveries(conn: &Connection, window: Duration) -> rusqlite::Result<usize> {
    if window.is_zero() {
        return Ok(0);
    }
    let cutoff = singer::clock::now_micros().saturating_sub(micros(window));
    conn.execute("DELETE FROM deliveries WHERE received_at < ?1", [cutoff])
}

/// Forgets drained message ids older than [`DRAINED_ID_RETENTION`].
pub fn expire_drained_ids(conn: &Connection) -> rusqlite::Result<usize> {
    let cutoff = singer::clock::now_micros().saturating_sub(micros(DRAINED_ID_RETENTION));
    conn.execute("DELETE FROM drained_ids WHERE drained_at < ?1", [cutoff])
}

/// A duration in microseconds, saturating.
pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_without_a_producer_id_gets_one_and_concurrent_opens_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        // A spool as created before producer ids: no `meta` table.
        open(&path)
            .unwrap()
            .execute_batch("DROP TABLE meta")
            .unwrap();
        let ids: Vec<String> = std::thread::scope(|s| {
            let opens: Vec<_> = (0..4)
                .map(|_| s.spawn(|| producer_id(&open(&path).unwrap()).unwrap()))
                .collect();
            opens.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
        assert_eq!(producer_id(&open(&path).unwrap()).unwrap(), ids[0]);
        assert_eq!(uuid::Uuid::parse_str(&ids[0]).unwrap().get_version_num(), 7);
    }
}
