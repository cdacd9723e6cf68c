//! The spool's single writer: group commit.
//!
//! Requests from every connection queue on a channel; the writer thread takes all that are
//! waiting, writes them in one transaction, and answers each only after the commit's fsync.
//! While one fsync runs the next batch gathers, so durability costs one fsync per batch, not per
//! request.
//!
//! The same thread records refused requests ([`ledger`]): queued apart from the deliveries, they
//! ride in the next delivery transaction, or in one of their own when none is waiting.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::ledger::{self, LedgerLimits, LedgerQueue, Refusal};
use super::watch::{self, SpoolStats};
use super::{
    expire_deliveries, last_seq, micros, open_checked, producer_id, room, NewMessage, SpoolError,
};

/// Most requests in one transaction; bounds the latency of the first one in a batch.
const MAX_BATCH_REQUESTS: usize = 1024;

/// What the spool did with one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteOutcome {
    /// Ids of the stored messages, one per message (the originals' for a duplicate delivery).
    pub message_ids: Vec<String>,
    pub seqs: Vec<i64>,
    /// True when the delivery id was seen within the dedupe window and nothing was stored.
    pub duplicate: bool,
}

struct WriteRequest {
    messages: Vec<NewMessage>,
    reply: oneshot::Sender<Result<WriteOutcome, NotWritten>>,
}

impl WriteRequest {
    /// What writing it costs the disk ([`room::cost`]).
    fn cost(&self) -> u64 {
        let bytes: usize = self
            .messages
            .iter()
            .map(|m| {
                m.body.len()
                    + m.headers.len()
                    + m.query.len()
                    + m.source.len()
                    + m.delivery_id.as_ref().map_or(0, String::len)
            })
            .sum();
        room::cost(bytes as u64)
    }
}

/// Why a request was not written.
enum NotWritten {
    /// Its bytes would eat into the room a prune needs.
    NoRoom,
    /// The transaction failed.
    Failed(String),
}

/// What the writer thread is woken for.
enum Job {
    Write(WriteRequest),
    /// Refusals are queued for the ledger.
    Ledger,
}

/// Handle to the writer thread; cheap to clone into request handlers.
#[derive(Clone)]
pub struct SpoolWriter {
    tx: mpsc::Sender<Job>,
    /// Refused requests on their way to the ledger; `None` with the ledger off.
    pub ledger: Option<Arc<LedgerQueue>>,
    pub stats: Arc<SpoolStats>,
    /// The room on the spool file's disk, which [`Self::is_full`] asks about.
    room: Arc<room::Gauge>,
}

pub struct WriterThread {
    handle: JoinHandle<()>,
}

impl WriterThread {
    /// Waits until every queued request is committed and answered (after all handles dropped).
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

impl SpoolWriter {
    /// Opens the spool and starts its writer thread and its watch ([`watch`]).
    pub fn start(
        path: &Path,
        dedupe_window: Duration,
        limits: LedgerLimits,
    ) -> Result<(SpoolWriter, WriterThread), SpoolError> {
        let conn = open_checked(path)?;
        // Made now if the spool has none, so the id exists from the spool's first write.
        let producer = producer_id(&conn).map_err(|source| SpoolError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        tracing::debug!(producer, "spool producer id");
        let stats = Arc::new(SpoolStats::default());
        watch::start(path, &stats)?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH_REQUESTS);
        let path = path.to_path_buf();
        let thread_stats = stats.clone();
        let thread_path = path.clone();
        let (ledger, refusals) = match limits.max_rows {
            0 => (None, None),
            _ => {
                let (q, rx) = LedgerQueue::new();
                (Some(Arc::new(q)), Some(rx))
            }
        };
        if ledger.is_some() {
            if let Err(e) = ledger::trim(&conn, limits) {
                tracing::warn!(error = %e, "trimming the refused-deliveries ledger failed");
            }
        }
        let thread_ledger = ledger.clone();
        let room = Arc::new(room::Gauge::new(&path));
        let thread_room = room.clone();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                let ledger = thread_ledger.zip(refusals).map(|(queue, rx)| LedgerSide {
                    queue,
                    rx,
                    limits,
                    since_trim: 0,
                });
                let side = Side {
                    ledger,
                    stats: thread_stats,
                    room: thread_room,
                };
                run(conn, thread_path, rx, side, dedupe_window)
            })
            .map_err(|e| SpoolError::Commit(format!("starting the writer thread: {e}")))?;
        Ok((
            SpoolWriter {
                tx,
                ledger,
                stats,
                room,
            },
            WriterThread { handle },
        ))
    }

    /// True when deliveries must be refused: more than `max_bytes` in use, or too little room
    /// left on the spool's disk to prune it ([`room::Gauge`]: near the reserve the disk is asked
    /// on every call, so the refusal ends as soon as a prune made room).
    pub fn is_full(&self, max_bytes: u64) -> bool {
        let used = self.stats.bytes.load(Ordering::Relaxed);
        used > max_bytes || self.room.too_little(used)
    }

    /// Stores the messages of one request durably; returns once they are fsync'd.
    pub async fn write(&self, messages: Vec<NewMessage>) -> Result<WriteOutcome, SpoolError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Write(WriteRequest { messages, reply }))
            .await
            .map_err(|_| SpoolError::WriterGone)?;
        match rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(NotWritten::Failed(detail))) => Err(SpoolError::Commit(detail)),
            Ok(Err(NotWritten::NoRoom)) => Err(SpoolError::NoRoom),
            Err(_) => Err(SpoolError::WriterGone),
        }
    }

    /// Hands a refused request to the ledger without waiting: queued for the writer thread,
    /// which is woken if idle; counted as unrecorded when the queue is full.
    pub fn refused(&self, r: Refusal) {
        let Some(q) = &self.ledger else { return };
        if q.record(r) && !q.wake_pending.swap(true, Ordering::AcqRel) {
            // One wake-up at a time; a full channel means the writer is busy and will see
            // the refusals after its current batch anyway.
            if self.tx.try_send(Job::Ledger).is_err() {
                q.wake_pending.store(false, Ordering::Release);
            }
        }
    }
}

/// The writer's end of the ledger.
struct LedgerSide {
    queue: Arc<LedgerQueue>,
    rx: std::sync::mpsc::Receiver<Refusal>,
    limits: LedgerLimits,
    /// Refusals inserted since the table was last trimmed.
    since_trim: usize,
}

/// Trim the ledger after this many inserts (and after every transaction of its own).
const TRIM_EVERY: usize = 256;

impl LedgerSide {
    /// The queued refusals, or none when writing them would eat into the room a prune needs
    /// ([`room`]): on a nearly full disk, refusals (no credential needed, up to ~2 KB a row)
    /// would otherwise fill it, and a spool that cannot be pruned is never emptied.
    fn take(&mut self, path: &Path, stats: &SpoolStats) -> Vec<Refusal> {
        self.queue.wake_pending.store(false, Ordering::Release);
        let refusals: Vec<Refusal> = self
            .rx
            .try_iter()
            .take(ledger::MAX_PER_TRANSACTION)
            .collect();
        if refusals.is_empty() {
            return refusals;
        }
        // Written twice before a checkpoint settles them: into the WAL, then into the file.
        let need = 2 * refusals.iter().map(ledger::row_bytes).sum::<u64>();
        let used = stats.bytes.load(Ordering::Relaxed);
        if room::room(path, used).is_some_and(|r| r < room::reserve(used).saturating_add(need)) {
            self.queue.unrecorded(
                refusals.len() as u64,
                "the spool's disk is nearly full: refused requests are not recorded, the room is the prune's",
            );
            return Vec::new();
        }
        refusals
    }

    /// Inserts inside the caller's transaction; a failure is logged, never fails the caller's
    /// deliveries. Trims when due.
    fn insert(&mut self, conn: &Connection, refusals: &[Refusal], trim_now: bool) {
        if refusals.is_empty() && !trim_now {
            return;
        }
        if let Err(e) = ledger::insert(conn, refusals) {
            tracing::warn!(error = %e, "recording refused requests failed");
        }
        self.since_trim += refusals.len();
        if trim_now || self.since_trim >= TRIM_EVERY {
            self.since_trim = 0;
            if let Err(e) = ledger::trim(conn, self.limits) {
                tracing::warn!(error = %e, "trimming the refused-deliveries ledger failed");
            }
        }
    }
}

/// What the writer thread keeps beside its connection.
struct Side {
    ledger: Option<LedgerSide>,
    stats: Arc<SpoolStats>,
    room: Arc<room::Gauge>,
}

/// The requests of `batch` whose bytes the disk can take while keeping the prune's reserve;
/// the others are answered [`NotWritten::NoRoom`] (the receiver's check, before it read their
/// bodies, could not know their sizes nor those of the bodies read beside them). Returns the
/// kept ones and what they cost.
fn within_room(
    batch: Vec<WriteRequest>,
    room: &room::Gauge,
    stats: &SpoolStats,
) -> (Vec<WriteRequest>, u64) {
    let costs: Vec<u64> = batch.iter().map(WriteRequest::cost).collect();
    let used = stats.bytes.load(Ordering::Relaxed);
    let mut left = room.left(used, costs.iter().sum());
    let mut kept = Vec::with_capacity(batch.len());
    let mut spent = 0u64;
    for (req, cost) in batch.into_iter().zip(costs) {
        if cost <= left {
            left -= cost;
            spent += cost;
            kept.push(req);
        } else {
            tracing::warn!(
                cost,
                left,
                "delivery refused: storing it would leave the spool's disk too little room to be pruned"
            );
            let _ = req.reply.send(Err(NotWritten::NoRoom));
        }
    }
    (kept, spent)
}

fn run(
    conn: Connection,
    path: PathBuf,
    mut rx: mpsc::Receiver<Job>,
    side: Side,
    dedupe_window: Duration,
) {
    let Side {
        mut ledger,
        stats,
        room,
    } = side;
    let window_us = micros(dedupe_window);
    let mut batches: u64 = 0;
    let mut requests: u64 = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::new();
        let mut job = Some(first);
        while let Some(j) = job.take() {
            if let Job::Write(r) = j {
                batch.push(r);
            }
            if batch.len() < MAX_BATCH_REQUESTS {
                job = rx.try_recv().ok();
            }
        }
        let refusals = ledger
            .as_mut()
            .map(|l| l.take(&path, &stats))
            .unwrap_or_default();
        if batch.is_empty() {
            // Only refusals: a transaction of their own (the spool is idle).
            if let (Some(l), false) = (ledger.as_mut(), refusals.is_empty()) {
                if stats.failure().is_none() {
                    let r = in_write_transaction(&conn, |tx, _| {
                        l.insert(tx, &refusals, true);
                        Ok(())
                    });
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "recording refused requests failed");
                    }
                }
            }
            continue;
        }
        requests += batch.len() as u64;
        // Checked again here, not only by the receiver: a request queued before the watch
        // saw the file removed must not be written into the unlinked file and answered 200.
        if let Some(reason) = stats.failure() {
            for req in batch {
                let _ = req.reply.send(Err(NotWritten::Failed(reason.to_owned())));
            }
            continue;
        }
        let (batch, cost) = within_room(batch, &room, &stats);
        let result = in_write_transaction(&conn, |tx, last| {
            let outcomes = batch
                .iter()
                .map(|req| write_request(tx, &req.messages, None, window_us, last))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if let Some(l) = ledger.as_mut() {
                l.insert(tx, &refusals, false);
            }
            Ok(outcomes)
        });
        match result {
            Ok(outcomes) => {
                room.spend(cost);
                for (req, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(spool = %path.display(), error = %e, "spool commit failed");
                if watch::is_fatal(&e) {
                    stats.fail(format!("spool {}: {e}", path.display()));
                }
                for req in batch {
                    let _ = req
                        .reply
                        .send(Err(NotWritten::Failed(format!("{}: {e}", path.display()))));
                }
            }
        }
        batches += 1;
        if batches.is_multiple_of(10_000) {
            if let Err(e) = expire_deliveries(&conn, dedupe_window) {
                tracing::warn!(error = %e, "pruning expired delivery ids failed");
            }
        }
    }
    tracing::info!(
        batches,
        requests,
        "spool writer stopped ({:.1} requests per commit)",
        requests as f64 / batches.max(1) as f64
    );
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction (the write lock, taken at once) and commits it;
/// `f` gets the last sequence assigned, read inside the lock so that sequences stay increasing
/// whoever else writes (a tap draining SQS into this spool), and moves it on. Rolled back on
/// any error. BEGIN and COMMIT are cached statements: parsed once, not once per batch.
fn in_write_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection, &mut i64) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = last_seq(conn)
        .and_then(|mut last| f(conn, &mut last))
        .and_then(|out| conn.prepare_cached("COMMIT")?.execute([]).map(|_| out));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Appends deliveries that already carry their message ids (drained from a queue, where the
/// receiver assigned them) in ONE transaction, returning once it is fsync'd. The same rules as
/// the receiver's writes: `seq = max(previous + 1, received_at)`, and a delivery id seen within
/// the window is a duplicate. A message whose id is already stored (SQS redelivered it) is
/// skipped, so it is never stored, hence never emitted, twice.
pub fn append_with_ids(
    conn: &Connection,
    deliveries: &[(Vec<NewMessage>, Vec<String>)],
    dedupe_window: Duration,
) -> rusqlite::Result<Vec<WriteOutcome>> {
    let window_us = micros(dedupe_window);
    let now = singer::clock::now_micros();
    in_write_transaction(conn, |tx, last| {
        deliveries
            .iter()
            .map(|(messages, ids)| append_delivery(tx, messages, ids, window_us, now, last))
            .collect()
    })
}

/// One delivery of [`append_with_ids`].
fn append_delivery(
    tx: &Connection,
    messages: &[NewMessage],
    ids: &[String],
    window_us: i64,
    now: i64,
    last: &mut i64,
) -> rusqlite::Result<WriteOutcome> {
    // A delivery's ids are stored together, so one known id means the whole delivery was
    // drained before (its messages may since have been emitted and pruned).
    let known = match ids.first() {
        Some(id) => tx
            .prepare_cached("SELECT 1 FROM drained_ids WHERE id = ?1")?
            .query_row([id], |_| Ok(()))
            .optional()?
            .is_some(),
        None => false,
    };
    if known {
        return Ok(WriteOutcome {
            message_ids: Vec::new(),
            seqs: Vec::new(),
            duplicate: true,
        });
    }
    let outcome = write_request(tx, messages, Some(ids), window_us, last)?;
    let mut remember =
        tx.prepare_cached("INSERT OR IGNORE INTO drained_ids (id, drained_at) VALUES (?1, ?2)")?;
    for id in ids {
        remember.execute(params![id, now])?;
    }
    Ok(outcome)
}

fn write_request(
    tx: &Connection,
    messages: &[NewMessage],
    ids: Option<&[String]>,
    window_us: i64,
    last: &mut i64,
) -> rusqlite::Result<WriteOutcome> {
    let delivery = messages.first().and_then(|m| {
        Some((
            m.source.as_str(),
            m.delivery_id.as_deref()?,
            m.received_at_us,
        ))
    });
    if let (Some((source, id, at)), true) = (delivery, window_us > 0) {
        let seen: Option<String> = tx
            .prepare_cached(
                "SELECT message_ids FROM deliveries
                 WHERE source = ?1 AND delivery_id = ?2 AND received_at >= ?3",
            )?
            .query_row(params![source, id, at.saturating_sub(window_us)], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(ids) = seen {
            return Ok(WriteOutcome {
                message_ids: serde_json::from_str(&ids).unwrap_or_default(),
                seqs: Vec::new(),
                duplicate: true,
            });
        }
    }
    // `id` is UNIQUE: with given ids (a queue's redelivery), an id already stored is skipped.
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (seq, id, source, received_at, delivery_id, part, headers, query, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut outcome = WriteOutcome {
        message_ids: Vec::with_capacity(messages.len()),
        seqs: Vec::with_capacity(messages.len()),
        duplicate: false,
    };
    for (i, m) in messages.iter().enumerate() {
        let seq = (*last + 1).max(m.received_at_us);
        let id = match ids.and_then(|ids| ids.get(i)) {
            Some(id) => id.clone(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let stored = insert.execute(params![
            seq,
            id,
            m.source,
            m.received_at_us,
            m.delivery_id,
            m.part,
            m.headers,
            m.query,
            m.body
        ])?;
        if stored == 0 {
            continue;
        }
        *last = seq;
        outcome.message_ids.push(id);
        outcome.seqs.push(seq);
    }
    if let (Some((source, id, at)), true) =
        (delivery, window_us > 0 && !outcome.message_ids.is_empty())
    {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO deliveries (source, delivery_id, received_at, message_ids)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            source,
            id,
            at,
            serde_json::to_string(&outcome.message_ids).unwrap_or_default()
        ])?;
    }
    Ok(outcome)
}
