//! Before a tap run on the SQS backend: drain the queue into the local spool, then emit from the
//! spool as usual (spool bookmarks, pruning, replays all unchanged).
//!
//! One round: long-poll ReceiveMessage `receive_concurrency` times at once (10 messages each) →
//! fetch claim-checked envelopes from S3 → append every delivery to the spool in ONE
//! transaction, fsync'd (`spool::writer::append_with_ids`, in receipt order) → only then
//! DeleteMessageBatch. Claim-check objects are left to the bucket's lifecycle rule: a message
//! SQS delivers twice (or a retried send that SQS had accepted) may point at the same object
//! later. Rounds repeat until a round comes back short of full (the queue is drained for now),
//! the tap's `max_seconds` is spent, or `max_receive_batches` calls were made.
//!
//! A crash anywhere loses nothing: before the commit the messages are still in SQS and come
//! back after the visibility timeout; after it, they come back too but their ids (assigned by
//! the receiver, carried in the envelope) are already in the spool, so they are skipped and
//! deleted. Deleting when a record is merely *printed* would lose data when the target fails;
//! here the spool keeps it until a state proves it committed (BRIEF §2).

use std::time::Instant;

use crate::queue::envelope::{self, Decoded, Pointer};
use crate::queue::{claim, sqs, QueueError, QueueSettings};
use crate::settings::Settings;
use crate::spool::{self, NewMessage, SpoolError};

/// `TAP_WEBHOOK_FAILPOINT=drain-after-spool-append` aborts the process right after the spool
/// commit, before the SQS delete: the crash the durability chain must survive (tests only).
pub const FAILPOINT_ENV: &str = "TAP_WEBHOOK_FAILPOINT";

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainSummary {
    /// SQS messages received (redeliveries included).
    pub received: u64,
    /// Spool messages stored (new ids).
    pub stored: u64,
    /// Messages skipped: id already stored (redelivered) or delivery id seen (provider retry).
    pub skipped: u64,
    pub deleted: u64,
    pub claim_checks: u64,
    /// Messages left in SQS because they could not be read now (a claim-check object S3 did
    /// not return) or ever (they go to the queue's dead-letter queue by its redrive policy).
    pub unreadable: u64,
}

struct Item {
    receipt_handle: String,
    ids: Vec<String>,
    messages: Vec<NewMessage>,
}

fn failpoint(name: &str) {
    if std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == name) {
        eprintln!("tap-webhook: failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Drains the queue into the spool at `settings.spool_path`.
pub fn drain(settings: &Settings, q: &QueueSettings) -> Result<DrainSummary, DrainError> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DrainError::Runtime)?;
    let conn = spool::open_checked(&settings.spool_path)?;
    let (client, s3, queue_url) = rt.block_on(async {
        let sdk = sqs::sdk_config(q).await;
        let client = aws_sdk_sqs::Client::new(&sdk);
        let url = sqs::queue_url(&client, q).await?;
        Ok::<_, QueueError>((client, sqs::s3_client(&sdk, q), url))
    })?;
    let mut summary = DrainSummary::default();
    let mut calls: u64 = 0;
    loop {
        let n = match q.max_receive_batches {
            Some(max) => (max.saturating_sub(calls)).min(q.receive_concurrency as u64),
            None => q.receive_concurrency as u64,
        };
        if n == 0 {
            break;
        }
        calls += n;
        let received = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let (client, url, q) = (client.clone(), queue_url.clone(), q.clone());
                set.spawn(async move { sqs::receive(&client, &url, &q).await });
            }
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(v)) => all.extend(v),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        return Err(QueueError::Sqs {
                            what: "ReceiveMessage".into(),
                            detail: e.to_string(),
                        })
                    }
                }
            }
            Ok(all)
        })?;
        if received.is_empty() {
            break;
        }
        // Fewer than a full round: the queue is drained for now. A busy queue is cut off by the
        // tap's time budget, so a run always gets to emit.
        let drained_for_now = (received.len() as u64) < n * 10;
        let out_of_time = settings
            .max_duration
            .is_some_and(|max| started.elapsed() >= max);
        summary.received += received.len() as u64;
        let mut items = Vec::with_capacity(received.len());
        for r in received {
            match rt.block_on(read(&s3, &r.body)) {
                Ok((pointer, d)) => {
                    summary.claim_checks += u64::from(pointer.is_some());
                    items.push(Item {
                        receipt_handle: r.receipt_handle,
                        ids: d.ids,
                        messages: d.messages,
                    });
                }
                Err(detail) => {
                    // Only this message stays in the queue (back after the visibility timeout,
                    // to the dead-letter queue if it never reads); the round goes on.
                    tracing::error!(message_id = %r.message_id, "leaving an SQS message in the queue: {detail}");
                    summary.unreadable += 1;
                }
            }
        }
        // Concurrent polls return in any order: the spool's sequences follow receipt time.
        items.sort_by(|a, b| {
            let key = |i: &Item| {
                (
                    i.messages.first().map(|m| m.received_at_us),
                    i.ids.first().cloned(),
                )
            };
            key(a).cmp(&key(b))
        });
        let deliveries: Vec<(Vec<NewMessage>, Vec<String>)> = items
            .iter_mut()
            .map(|i| (std::mem::take(&mut i.messages), std::mem::take(&mut i.ids)))
            .collect();
        let offered: u64 = deliveries.iter().map(|(m, _)| m.len() as u64).sum();
        let outcomes = spool::writer::append_with_ids(&conn, &deliveries, settings.dedupe_window)
            .map_err(|source| SpoolError::Sqlite {
            path: settings.spool_path.display().to_string(),
            source,
        })?;
        let stored: u64 = outcomes.iter().map(|o| o.seqs.len() as u64).sum();
        summary.stored += stored;
        summary.skipped += offered - stored;
        failpoint("drain-after-spool-append");
        // The spool commit is fsync'd: now, and only now, the messages may leave SQS.
        let handles: Vec<String> = items.iter().map(|i| i.receipt_handle.clone()).collect();
        let failed = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for chunk in handles.chunks(10) {
                let (client, url, chunk) = (client.clone(), queue_url.clone(), chunk.to_vec());
                set.spawn(async move {
                    let r = sqs::delete_batch(&client, &url, &chunk).await;
                    (chunk, r)
                });
            }
            let mut failed = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((_, Ok(f))) => failed.extend(f),
                    Ok((chunk, Err(e))) => {
                        tracing::warn!(error = %e, "DeleteMessageBatch failed; the messages will be redelivered and skipped");
                        failed.extend(chunk);
                    }
                    Err(e) => tracing::warn!(error = %e, "a delete task failed"),
                }
            }
            failed
        });
        // A task that panicked leaves its chunk uncounted: under-counting is harmless, the
        // messages come back and are skipped by id.
        summary.deleted += handles.len().saturating_sub(failed.len()) as u64;
        tracing::info!(
            received = summary.received,
            stored = summary.stored,
            skipped = summary.skipped,
            "drained a round from SQS"
        );
        if drained_for_now || out_of_time {
            break;
        }
    }
    // No receiver writes this spool on the SQS backend, so the drain expires old delivery ids
    // (the receiver's writer does it on the embedded backend).
    if let Err(e) = spool::expire_deliveries(&conn, settings.dedupe_window) {
        tracing::warn!(error = %e, "pruning expired delivery ids failed");
    }
    if let Err(e) = spool::expire_drained_ids(&conn) {
        tracing::warn!(error = %e, "pruning drained message ids failed");
    }
    tracing::info!(
        received = summary.received,
        stored = summary.stored,
        skipped = summary.skipped,
        deleted = summary.deleted,
        claim_checks = summary.claim_checks,
        unreadable = summary.unreadable,
        seconds = started.elapsed().as_secs_f64(),
        "drained SQS into the spool"
    );
    Ok(summary)
}

/// Decodes a message body, following a claim check.
async fn read(
    s3: &aws_sdk_s3::Client,
    body: &str,
) -> Result<(Option<Pointer>, envelope::Delivery), String> {
    match envelope::decode(body).map_err(|e| e.to_string())? {
        Decoded::Delivery(d) => Ok((None, d)),
        Decoded::ClaimCheck(p) => {
            let text = claim::get(s3, &p)
                .await
                .map_err(|e| format!("claim check s3://{}/{}: {e}", p.bucket, p.key))?;
            match envelope::decode(&text).map_err(|e| e.to_string())? {
                Decoded::Delivery(d) => Ok((Some(p), d)),
                Decoded::ClaimCheck(_) => {
                    Err("a claim check pointing to another claim check".into())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::writer::append_with_ids;
    use std::time::Duration;

    fn delivery(
        ids: &[&str],
        delivery_id: Option<&str>,
        at: i64,
    ) -> (Vec<NewMessage>, Vec<String>) {
        let messages = ids
            .iter()
            .enumerate()
            .map(|(part, id)| NewMessage {
                source: "data".into(),
                received_at_us: at,
                delivery_id: delivery_id.map(String::from),
                part: part as u32,
                headers: "{}".into(),
                query: "{}".into(),
                body: format!("{{\"id\":\"{id}\"}}"),
            })
            .collect();
        (messages, ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn redelivered_ids_and_retried_deliveries_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let conn = spool::open(&path).unwrap();
        let window = Duration::from_secs(3600);
        let first = [
            delivery(&["a", "b"], Some("d-1"), 1_000),
            delivery(&["c"], None, 500),
        ];
        let out = append_with_ids(&conn, &first, window).unwrap();
        assert_eq!(out[0].message_ids, ["a", "b"]);
        // seq = max(prev + 1, received_at): increasing even when received_at goes back.
        assert_eq!(out[0].seqs, [1_000, 1_001]);
        assert_eq!(out[1].seqs, [1_002]);
        // SQS redelivers both; a provider retry of d-1 reached another receiver (new ids).
        let again = [
            delivery(&["a", "b"], Some("d-1"), 1_000),
            delivery(&["c"], None, 500),
            delivery(&["x", "y"], Some("d-1"), 2_000),
            delivery(&["e"], None, 3_000),
        ];
        let out = append_with_ids(&conn, &again, window).unwrap();
        let stored: Vec<usize> = out.iter().map(|o| o.seqs.len()).collect();
        assert_eq!(stored, [0, 0, 0, 1]);
        assert_eq!(out[3].seqs, [3_000]);
        let reader = spool::reader::SpoolReader::open(&path).unwrap();
        assert_eq!(reader.count("data").unwrap(), 4);
        let mut ids = Vec::new();
        reader
            .for_each::<SpoolError>("data", 0, i64::MAX, |m| {
                ids.push(m.id);
                Ok(true)
            })
            .unwrap();
        assert_eq!(ids, ["a", "b", "c", "e"]);
    }

    #[test]
    fn a_redelivery_after_the_message_was_pruned_is_still_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let conn = spool::open(&path).unwrap();
        // No delivery id, and no dedupe window: only the drained id can recognise it.
        let d = [delivery(&["a"], None, 1_000)];
        let out = append_with_ids(&conn, &d, Duration::ZERO).unwrap();
        assert_eq!(out[0].seqs, [1_000]);
        // Emitted, committed by the target, pruned from the spool...
        conn.execute("DELETE FROM messages", []).unwrap();
        // ...then SQS redelivers it (its delete had failed).
        let out = append_with_ids(&conn, &d, Duration::ZERO).unwrap();
        assert!(
            out[0].seqs.is_empty() && out[0].duplicate,
            "{:?}",
            out[0].seqs
        );
        let left: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "not stored again, so not emitted again");
    }
}
