//! The ledger of refused deliveries: every 4xx/5xx answer of `serve`, kept in the spool's
//! `refused` table so that "why does this source get 401s since yesterday?" has an answer
//! (`tap-webhook deliveries --refused`, `status`, the admin page).
//!
//! Best-effort and off the accepted path: the receiver hands a [`Refusal`] to a bounded queue
//! ([`LedgerQueue::record`], never waiting); the spool's writer thread inserts what is queued in
//! its next transaction, or in one of its own when no delivery is being stored, and trims the
//! table to [`LedgerLimits`] there. A full queue counts the refusal as unrecorded (a `/metrics`
//! counter and a warning at most every 10 s). A crash loses the refusals not yet committed.
//! Nothing secret is kept: no headers but the user agent, no query, the body only for
//! `INVALID_JSON` / `UNSUPPORTED_JSON_TYPE` and at most [`MAX_BODY_BYTES`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::Serialize;

use super::micros;

/// Bytes of a refused body kept (for the codes that keep one).
pub const MAX_BODY_BYTES: usize = 4096;
/// Characters kept of the reason, the user agent, the source name and the delivery id.
const MAX_TEXT_CHARS: usize = 512;
/// Refusals waiting for the writer; beyond, they are counted and dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// Most refusals the writer takes in one transaction: all a full queue holds, so none is left
/// behind without a wake-up (one pushed after the writer started taking sends its own).
pub const MAX_PER_TRANSACTION: usize = QUEUE_CAPACITY;

/// How much the ledger keeps (settings `refused_ledger_max_rows`, `_max_age_hours`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerLimits {
    /// 0: no ledger.
    pub max_rows: u64,
    pub max_age: Duration,
}

/// One refused request, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Refusal {
    /// Filled from the table's rowid when read back; 0 when new.
    pub id: i64,
    /// Receipt time, microseconds since the epoch.
    pub at_us: i64,
    /// The source named in the path (`-` when the path named none).
    pub source: String,
    pub status: u16,
    pub code: String,
    /// The reply's error text (no secret is ever in it: see `receiver::reply`).
    pub reason: String,
    /// Body bytes read, else the declared `Content-Length`.
    pub size: Option<u64>,
    /// The peer's address (no proxy header is trusted).
    pub remote: Option<String>,
    pub user_agent: Option<String>,
    pub delivery_id: Option<String>,
    /// The body, lossy UTF-8, at most [`MAX_BODY_BYTES`]: `INVALID_JSON`, `UNSUPPORTED_JSON_TYPE`.
    pub body: Option<String>,
}

/// True for the codes whose body is kept: the sender's payload is the thing to look at.
pub fn keeps_body(code: &str) -> bool {
    matches!(code, "INVALID_JSON" | "UNSUPPORTED_JSON_TYPE")
}

/// `s` cut to at most `max` characters.
pub fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// The first [`MAX_BODY_BYTES`] of a body as text (cut on a character boundary).
pub fn body_excerpt(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(MAX_BODY_BYTES)];
    let text = String::from_utf8_lossy(head);
    // A cut through a multi-byte character shows as one replacement character at the end.
    text.into_owned()
}

/// The receiver's end: a bounded queue to the writer thread, which it never waits on.
pub struct LedgerQueue {
    tx: SyncSender<Refusal>,
    /// Refusals dropped because the queue was full (`/metrics`).
    pub unrecorded: AtomicU64,
    last_warning_us: AtomicI64,
    /// Set while a wake-up for the writer is queued, so a flood queues one, not one each.
    pub wake_pending: AtomicBool,
}

impl LedgerQueue {
    pub fn new() -> (LedgerQueue, Receiver<Refusal>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let q = LedgerQueue {
            tx,
            unrecorded: AtomicU64::new(0),
            last_warning_us: AtomicI64::new(0),
            wake_pending: AtomicBool::new(false),
        };
        (q, rx)
    }

    /// Queues a refusal; true when queued. A full queue (or a stopped writer) counts it.
    pub fn record(&self, r: Refusal) -> bool {
        match self.tx.try_send(r) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.unrecorded(
                    1,
                    "refused requests arrive faster than the ledger records them",
                );
                false
            }
        }
    }

    /// Counts `n` refusals left out of the ledger, with a warning at most every 10 s.
    pub fn unrecorded(&self, n: u64, why: &str) {
        let total = self.unrecorded.fetch_add(n, Ordering::Relaxed) + n;
        let now = singer::clock::now_micros();
        let last = self.last_warning_us.load(Ordering::Relaxed);
        if now - last > 10_000_000
            && self
                .last_warning_us
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                unrecorded = total,
                "{why}; some are only counted (webhook_refusals_unrecorded_total)"
            );
        }
    }
}

/// An upper bound of the bytes a refusal's row takes (its texts as given, and the rest).
pub fn row_bytes(r: &Refusal) -> u64 {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    (64 + r.source.len()
        + r.code.len()
        + r.reason.len()
        + text(&r.remote)
        + text(&r.user_agent)
        + text(&r.delivery_id)
        + text(&r.body)) as u64
}

/// Inserts refusals (inside the caller's transaction).
pub fn insert(conn: &Connection, refusals: &[Refusal]) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO refused (at, source, status, code, reason, size, remote, user_agent,
                              delivery_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for r in refusals {
        let capped = |s: &Option<String>| s.as_deref().map(|s| cap(s, MAX_TEXT_CHARS));
        st.execute(params![
            r.at_us,
            cap(&r.source, MAX_TEXT_CHARS),
            r.status,
            cap(&r.code, 64),
            cap(&r.reason, MAX_TEXT_CHARS),
            r.size.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            capped(&r.remote),
            capped(&r.user_agent),
            capped(&r.delivery_id),
            r.body.as_deref().map(|b| body_excerpt(b.as_bytes()))
        ])?;
    }
    Ok(())
}

/// Drops rows older than the age limit and all but the newest `max_rows`.
pub fn trim(conn: &Connection, limits: LedgerLimits) -> rusqlite::Result<usize> {
    let cutoff = singer::clock::now_micros().saturating_sub(micros(limits.max_age));
    let old = conn
        .prepare_cached("DELETE FROM refused WHERE at < ?1")?
        .execute([cutoff])?;
    let over = conn
        .prepare_cached("DELETE FROM refused WHERE id <= (SELECT max(id) FROM refused) - ?1")?
        .execute([i64::try_from(limits.max_rows).unwrap_or(i64::MAX)])?;
    Ok(old + over)
}

/// Which refusals to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RefusedFilter {
    pub source: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub delivery_id: Option<String>,
    pub limit: u64,
}

const COLUMNS: &str =
    "id, at, source, status, code, reason, size, remote, user_agent, delivery_id, body";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Refusal> {
    Ok(Refusal {
        id: r.get(0)?,
        at_us: r.get(1)?,
        source: r.get(2)?,
        status: r.get(3)?,
        code: r.get(4)?,
        reason: r.get(5)?,
        size: r.get::<_, Option<i64>>(6)?.map(|n| n.max(0).unsigned_abs()),
        remote: r.get(7)?,
        user_agent: r.get(8)?,
        delivery_id: r.get(9)?,
        body: r.get(10)?,
    })
}

/// Refusals matching `f`, newest first.
pub fn list(conn: &Connection, f: &RefusedFilter) -> rusqlite::Result<Vec<Refusal>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM refused
         WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR at >= ?2)
           AND (?3 IS NULL OR at <= ?3) AND (?4 IS NULL OR delivery_id = ?4)
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    let rows = st.query_map(
        params![f.source, f.since_us, f.until_us, f.delivery_id, limit],
        from_row,
    )?;
    rows.collect()
}

/// One refusal by its ledger id.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Refusal>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM refused WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

/// Refusals since `since_us`, counted by source and code (sorted).
pub fn counts_since(
    conn: &Connection,
    since_us: i64,
) -> rusqlite::Result<Vec<(String, String, u64)>> {
    let mut st = conn.prepare_cached(
        "SELECT source, code, count(*) FROM refused WHERE at >= ?1
         GROUP BY source, code ORDER BY source, code",
    )?;
    let rows = st.query_map([since_us], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(at_us: i64, code: &str) -> Refusal {
        Refusal {
            at_us,
            source: "gh".into(),
            status: 401,
            code: code.into(),
            reason: format!("{code}: x"),
            ..Refusal::default()
        }
    }

    #[test]
    fn the_ledger_is_bounded_by_count_and_age_and_caps_what_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("s.sqlite")).unwrap();
        let now = singer::clock::now_micros();
        let limits = LedgerLimits {
            max_rows: 50,
            max_age: Duration::from_secs(3600),
        };
        let old: Vec<_> = (0..10)
            .map(|i| refusal(now - 7_200_000_000 + i, "OLD"))
            .collect();
        insert(&conn, &old).unwrap();
        let mut fresh: Vec<_> = (0..120).map(|i| refusal(now + i, "INVALID_JSON")).collect();
        fresh[119].body = Some("é".repeat(MAX_BODY_BYTES));
        fresh[119].user_agent = Some("u".repeat(10_000));
        insert(&conn, &fresh).unwrap();
        trim(&conn, limits).unwrap();
        let all = list(
            &conn,
            &RefusedFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(all.len(), 50);
        assert!(all.iter().all(|r| r.code == "INVALID_JSON"));
        assert_eq!(all[0].at_us, now + 119, "newest first");
        assert!(all[0].body.as_ref().unwrap().len() <= MAX_BODY_BYTES + 3);
        assert_eq!(all[0].user_agent.as_ref().unwrap().len(), MAX_TEXT_CHARS);
        assert_eq!(get(&conn, all[3].id).unwrap().unwrap(), all[3]);
        assert_eq!(
            counts_since(&conn, now).unwrap(),
            [("gh".to_owned(), "INVALID_JSON".to_owned(), 50)]
        );
    }

    #[test]
    fn a_full_queue_counts_instead_of_waiting() {
        let (q, rx) = LedgerQueue::new();
        for i in 0..QUEUE_CAPACITY + 5 {
            q.record(refusal(i as i64, "X"));
        }
        assert_eq!(q.unrecorded.load(Ordering::Relaxed), 5);
        assert_eq!(rx.try_iter().count(), QUEUE_CAPACITY);
    }
}
