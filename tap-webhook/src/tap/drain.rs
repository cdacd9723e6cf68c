//! Before a tap run on the SQS backend: drain the queue into the local spool, then emit from the
//! spool as usual (spool bookmarks, pruning, replays all unchanged).
//!
//! One round: long-poll ReceiveMessage `receive_concurrency` times at once (10 messages each) →
//! fetch claim-checked envelopes from S3 → append every delivery to the spool in ONE
//! transaction, fsync'd (`spool::writer::append_with_ids`) → only then DeleteMessageBatch →
//! only then delete the claim-check objects. Rounds repeat until a round receives nothing (or
//! `max_receive_batches` calls were made).
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
    /// Messages left in SQS because they could not be read (they go to the queue's
    /// dead-letter queue by its redrive policy).
    pub unreadable: u64,
}

struct Item {
    receipt_handle: String,
    pointer: Option<Pointer>,
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
    let mut conn = spool::open(&settings.spool_path)?;
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
        summary.received += received.len() as u64;
        let mut items = Vec::with_capacity(received.len());
        for r in received {
            match rt.block_on(read(&s3, &r.body)) {
                Ok((pointer, d)) => {
                    summary.claim_checks += u64::from(pointer.is_some());
                    items.push(Item {
                        receipt_handle: r.receipt_handle,
                        pointer,
                        ids: d.ids,
                        messages: d.messages,
                    });
                }
                Err(ReadError::Fatal(e)) => return Err(e.into()),
                Err(ReadError::Unreadable(detail)) => {
                    tracing::error!(message_id = %r.message_id, "leaving an unreadable SQS message in the queue: {detail}");
                    summary.unreadable += 1;
                }
            }
        }
        let deliveries: Vec<(Vec<NewMessage>, Vec<String>)> = items
            .iter_mut()
            .map(|i| (std::mem::take(&mut i.messages), std::mem::take(&mut i.ids)))
            .collect();
        let offered: u64 = deliveries.iter().map(|(m, _)| m.len() as u64).sum();
        let outcomes =
            spool::writer::append_with_ids(&mut conn, &deliveries, settings.dedupe_window)
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
                set.spawn(async move { sqs::delete_batch(&client, &url, &chunk).await });
            }
            let mut failed = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(f)) => failed.extend(f),
                    Ok(Err(e)) => tracing::warn!(error = %e, "DeleteMessageBatch failed; the messages will be redelivered and skipped"),
                    Err(e) => tracing::warn!(error = %e, "a delete task failed"),
                }
            }
            failed
        });
        summary.deleted += (handles.len() - failed.len()) as u64;
        rt.block_on(async {
            for i in items.iter().filter(|i| !failed.contains(&i.receipt_handle)) {
                if let Some(p) = &i.pointer {
                    claim::delete(&s3, p).await;
                }
            }
        });
        tracing::info!(
            received = summary.received,
            stored = summary.stored,
            skipped = summary.skipped,
            "drained a round from SQS"
        );
    }
    // No receiver writes this spool on the SQS backend, so the drain expires old delivery ids
    // (the receiver's writer does it on the embedded backend).
    if !settings.dedupe_window.is_zero() {
        let window_us = i64::try_from(settings.dedupe_window.as_micros()).unwrap_or(i64::MAX);
        let cutoff = spool::now_us().saturating_sub(window_us);
        if let Err(e) = conn.execute("DELETE FROM deliveries WHERE received_at < ?1", [cutoff]) {
            tracing::warn!(error = %e, "pruning expired delivery ids failed");
        }
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

enum ReadError {
    /// S3 or the network failed: stop the run, nothing was deleted.
    Fatal(QueueError),
    /// This message cannot be read, ever: leave it to the dead-letter queue.
    Unreadable(String),
}

/// Decodes a message body, following a claim check.
async fn read(
    s3: &aws_sdk_s3::Client,
    body: &str,
) -> Result<(Option<Pointer>, envelope::Delivery), ReadError> {
    match envelope::decode(body).map_err(|e| ReadError::Unreadable(e.to_string()))? {
        Decoded::Delivery(d) => Ok((None, d)),
        Decoded::ClaimCheck(p) => {
            let text = claim::get(s3, &p).await.map_err(|e| {
                if e.to_string().contains("NoSuchKey") {
                    ReadError::Unreadable(e.to_string())
                } else {
                    ReadError::Fatal(e)
                }
            })?;
            match envelope::decode(&text).map_err(|e| ReadError::Unreadable(e.to_string()))? {
                Decoded::Delivery(d) => Ok((Some(p), d)),
                Decoded::ClaimCheck(_) => Err(ReadError::Unreadable(
                    "a claim check pointing to another claim check".into(),
                )),
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
        let mut conn = spool::open(&path).unwrap();
        let window = Duration::from_secs(3600);
        let first = [
            delivery(&["a", "b"], Some("d-1"), 1_000),
            delivery(&["c"], None, 500),
        ];
        let out = append_with_ids(&mut conn, &first, window).unwrap();
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
        let out = append_with_ids(&mut conn, &again, window).unwrap();
        let stored: Vec<usize> = out.iter().map(|o| o.seqs.len()).collect();
        assert_eq!(stored, [0, 0, 0, 1]);
        assert_eq!(out[3].seqs, [3_000]);
        let reader = spool::SpoolReader::open(&path).unwrap();
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
}
