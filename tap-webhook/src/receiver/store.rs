//! Where the receiver puts a delivery once every check passed: the embedded spool (group
//! commit, fsync) or the SQS queue (SendMessageBatch, claim check). Either way the reply waits
//! for the store's acknowledgement; what a store's failure means to the sender is decided here.

use crate::queue::sender::QueueSender;
use crate::queue::QueueError;
use crate::spool::writer::SpoolStats;
use crate::spool::writer::{SpoolWriter, WriteOutcome};
use crate::spool::NewMessage;

use super::body::BodyError;
use super::reply::ReceiveError;

pub enum Store {
    /// The embedded spool of this machine (`tap-webhook serve` with no `queue`).
    Spool(SpoolWriter),
    /// The SQS backend: a stateless receiver with no spool file.
    Queue(QueueSender),
}

impl Store {
    /// The spool's size and depth, refreshed by its writer; `None` for the queue, which has no
    /// size limit of ours.
    pub fn spool_stats(&self) -> Option<&SpoolStats> {
        match self {
            Store::Spool(w) => Some(&w.stats),
            Store::Queue(_) => None,
        }
    }

    /// True when the spool holds more than `max_bytes` (a queue is never full).
    pub fn is_full(&self, max_bytes: u64) -> bool {
        self.spool_stats()
            .is_some_and(|s| s.bytes.load(std::sync::atomic::Ordering::Relaxed) > max_bytes)
    }

    /// Stores one delivery's messages durably; returns once the store acknowledged them. A
    /// failure is logged here and answered 503 (the provider retries), except a delivery too
    /// large for SQS without a claim-check bucket: 413.
    pub async fn store(&self, messages: Vec<NewMessage>) -> Result<WriteOutcome, ReceiveError> {
        let source = messages
            .first()
            .map(|m| m.source.clone())
            .unwrap_or_default();
        match self {
            Store::Spool(spool) => spool.write(messages).await.map_err(|e| {
                tracing::error!(error = %e, source, "storing a delivery failed");
                ReceiveError::SpoolUnavailable
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
