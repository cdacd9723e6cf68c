//! Where the receiver puts a delivery once every check passed: the embedded spool (group
//! commit, fsync) or the SQS queue (SendMessageBatch, claim check). Either way the reply waits
//! for the store's acknowledgement; what a store's failure means to the sender is decided here.

use crate::queue::sender::QueueSender;
use crate::queue::QueueError;
use crate::spool::watch::SpoolStats;
use crate::spool::writer::{SpoolWriter, WriteOutcome};
use crate::spool::{NewMessage, SpoolError};

use super::body::BodyError;
use super::reply::ReceiveError;

pub enum Store {
    /// The embedded spool of this machine (`tap-webhook serve` with no `queue`).
    Spool(SpoolWriter),
    /// The SQS backend: a stateless receiver with no spool file.
    Queue(QueueSender),
}

impl Store {
    /// The spool's size and depth, refreshed by its watch; `None` for the queue, which has no
    /// size limit of ours.
    pub fn spool_stats(&self) -> Option<&SpoolStats> {
        match self {
            Store::Spool(w) => Some(&w.stats),
            Store::Queue(_) => None,
        }
    }

    /// Whether a delivery may be stored now: not when the spool has failed for good (removed,
    /// replaced, corrupt: 503 `SPOOL_UNAVAILABLE` until restart), holds more than `max_bytes`
    /// or has too little room left on its disk to be pruned (503 `SPOOL_FULL`, which clears
    /// once the tap prunes). A queue is never full.
    pub fn check(&self, max_bytes: u64, retry_after_seconds: u64) -> Result<(), ReceiveError> {
        let Store::Spool(w) = self else {
            return Ok(());
        };
        if w.stats.failure().is_some() {
            return Err(ReceiveError::SpoolUnavailable);
        }
        if w.is_full(max_bytes) {
            return Err(ReceiveError::SpoolFull {
                retry_after_seconds,
            });
        }
        Ok(())
    }

    /// True when refusals are recorded: the spool with its ledger on (never with SQS, which
    /// has no spool of the receiver's).
    pub fn keeps_ledger(&self) -> bool {
        matches!(self, Store::Spool(w) if w.ledger.is_some())
    }

    /// Hands a refusal to the spool's ledger, never waiting ([`SpoolWriter::refused`]).
    pub fn refused(&self, r: crate::spool::ledger::Refusal) {
        if let Store::Spool(w) = self {
            w.refused(r);
        }
    }

    /// Refusals the ledger could not take (its queue was full).
    pub fn refusals_unrecorded(&self) -> u64 {
        match self {
            Store::Spool(w) => w.ledger.as_ref().map_or(0, |q| {
                q.unrecorded.load(std::sync::atomic::Ordering::Relaxed)
            }),
            Store::Queue(_) => 0,
        }
    }

    /// Stores one delivery's messages durably; returns once the store acknowledged them. A
    /// failure is logged here and answered 503 (the provider retries), except a delivery too
    /// large for SQS without a claim-check bucket: 413. A delivery the spool's disk has no room
    /// for beside a prune's reserve is answered 503 `SPOOL_FULL` after `retry_after_seconds`.
    pub async fn store(
        &self,
        messages: Vec<NewMessage>,
        retry_after_seconds: u64,
    ) -> Result<WriteOutcome, ReceiveError> {
        let source = messages
            .first()
            .map(|m| m.source.clone())
            .unwrap_or_default();
        match self {
            Store::Spool(spool) => spool.write(messages).await.map_err(|e| match e {
                // Too big for the room left above the prune's reserve (logged by the writer).
                SpoolError::NoRoom => ReceiveError::SpoolFull {
                    retry_after_seconds,
                },
                e => {
                    tracing::error!(error = %e, source, "storing a delivery failed");
                    ReceiveError::SpoolUnavailable
                }
            }),
            Store::Queue(queue) => queue.send(messages).await.map_err(|e| {
                tracing::error!(error = %e, source, "queueing a delivery failed");
                match e {
                    QueueError::TooLarge { limit, .. } => BodyError::TooLarge { limit }.into(),
                    _ => ReceiveError::SpoolUnavailable,
                }
            }),
        }
    }
}
