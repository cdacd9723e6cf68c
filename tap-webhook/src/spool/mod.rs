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

pub mod reader;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use reader::SpoolReader;
pub use writer::{SpoolWriter, WriteOutcome};

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
-- Ids of messages drained from a queue, kept after the messages themselves are pruned: SQS may
-- redeliver a message whose delete failed long after it was emitted and pruned from `messages`.
CREATE TABLE IF NOT EXISTS drained_ids (
    id           TEXT    PRIMARY KEY,
    drained_at   INTEGER NOT NULL
) WITHOUT ROWID;
";

/// How long the drain remembers a drained message id: longer than SQS keeps any message
/// (14 days at most), so a redelivery or a redrive from the dead-letter queue is always known.
pub const DRAINED_ID_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(15 * 24 * 3600);

/// Opens (creating if needed) the spool database with the settings every connection needs.
pub fn open(path: &Path) -> Result<Connection, SpoolError> {
    let err = |source| SpoolError::Sqlite {
        path: path.display().to_string(),
        source,
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

pub fn now_us() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC with microseconds, as `_sdc_received_at` and replies carry it.
pub fn format_us(us: i64) -> String {
    let mut s = String::with_capacity(27);
    format_us_into(&mut s, us);
    s
}

/// Microseconds in the years 1970 to 9999, where [`format_us_into`] computes the date itself.
const FAST_RANGE_US: std::ops::Range<i64> = 0..253_402_300_800_000_000;

/// [`format_us`], appended to `out` (once per record in the tap: no allocation, no `time`).
pub fn format_us_into(out: &mut String, us: i64) {
    if !FAST_RANGE_US.contains(&us) {
        out.push_str(&format_us_slow(us));
        return;
    }
    let days = us / 86_400_000_000;
    let in_day = us % 86_400_000_000;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), days >= 0 here.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = in_day / 1_000_000;
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    put(20, 6, in_day % 1_000_000);
    out.extend(buf.iter().map(|&b| char::from(b)));
}

fn format_us_slow(us: i64) -> String {
    let nanos = i128::from(us) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => String::from("1970-01-01T00:00:00.000000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_formatting_agrees_with_the_calendar() {
        let mut us = 0i64;
        while us < FAST_RANGE_US.end {
            let mut fast = String::new();
            format_us_into(&mut fast, us);
            assert_eq!(fast, format_us_slow(us), "{us}");
            // Steps that land on every month, leap days and the end of the range.
            us += 5 * 86_400_000_000 + 1_234_567_891;
        }
        for us in [
            FAST_RANGE_US.end - 1,
            FAST_RANGE_US.end,
            -1,
            i64::MIN,
            i64::MAX,
        ] {
            let mut fast = String::new();
            format_us_into(&mut fast, us);
            assert_eq!(fast, format_us_slow(us), "{us}");
        }
    }

    #[test]
    fn formats_microseconds_in_utc() {
        assert_eq!(format_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_us(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
