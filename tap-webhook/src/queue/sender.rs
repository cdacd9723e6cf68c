//! The receiver's side of the queue: one delivery in, one envelope out to SQS (or to S3 with a
//! pointer in SQS), answered once SQS accepted it.

use super::{batcher, claim, envelope, sqs, QueueError, QueueSettings};
use crate::spool::writer::WriteOutcome;
use crate::spool::NewMessage;

/// The receiver's handle on the queue.
pub struct QueueSender {
    batcher: batcher::Batcher,
    claim: Option<claim::ClaimCheck>,
    threshold: usize,
}

/// The claim-check threshold in use: the configured one, lowered to what the queue accepts.
fn effective_threshold(configured: usize, queue_max: Option<usize>) -> usize {
    queue_max.map_or(configured, |max| configured.min(max))
}

impl QueueSender {
    /// Builds the clients and resolves the queue URL (a misconfiguration fails at start-up,
    /// not on the first delivery). Needs a tokio runtime.
    pub async fn connect(q: &QueueSettings) -> Result<QueueSender, QueueError> {
        let sdk = sqs::sdk_config(q).await;
        let client = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs::queue_url(&client, q).await?;
        let claim = q
            .claim_check_bucket
            .as_ref()
            .map(|bucket| claim::ClaimCheck {
                client: sqs::s3_client(&sdk, q),
                bucket: bucket.clone(),
                prefix: q.claim_check_prefix.clone(),
            });
        // A queue created with a smaller MaximumMessageSize (256 KiB was the SQS default)
        // refuses envelopes below the configured threshold: those go by claim check too.
        let queue_max = sqs::max_message_bytes(&client, &queue_url).await;
        let threshold = effective_threshold(q.claim_check_threshold_bytes, queue_max);
        if threshold < q.claim_check_threshold_bytes {
            tracing::warn!(
                queue_url,
                queue_max_bytes = ?queue_max,
                configured = q.claim_check_threshold_bytes,
                threshold,
                "the queue's MaximumMessageSize is below the claim-check threshold; larger deliveries go by claim check"
            );
        }
        tracing::info!(queue_url, claim_check_bucket = ?q.claim_check_bucket, threshold, "storing deliveries in SQS");
        Ok(QueueSender {
            batcher: batcher::Batcher::start(sqs::SqsSink { client, queue_url }),
            claim,
            threshold,
        })
    }

    /// Sends one delivery (its messages) to the queue; returns once SQS accepted it. The ids
    /// are assigned here, travel in the envelope, and become the spool's ids at the drain.
    pub async fn send(&self, messages: Vec<NewMessage>) -> Result<WriteOutcome, QueueError> {
        let ids: Vec<String> = messages
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let mut body = envelope::encode(&messages, &ids);
        if claim::needs_claim_check(&body, self.threshold) {
            match &self.claim {
                Some(claim) => {
                    let key = ids
                        .first()
                        .cloned()
                        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                    let pointer = claim.put(&key, body).await?;
                    body = envelope::encode_pointer(&pointer);
                }
                None if body.len() > self.threshold => {
                    return Err(QueueError::TooLarge {
                        bytes: body.len(),
                        limit: self.threshold,
                    })
                }
                // Characters SQS refuses and no bucket to route around them: SQS refuses the
                // entry (a sender fault), which is answered 503.
                None => {}
            }
        }
        self.batcher
            .send(body)
            .await
            .map_err(QueueError::NotAccepted)?;
        Ok(WriteOutcome {
            message_ids: ids,
            seqs: Vec::new(),
            duplicate: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_follows_a_smaller_queue_maximum() {
        assert_eq!(effective_threshold(1_040_384, Some(262_144)), 262_144);
        assert_eq!(effective_threshold(1_040_384, Some(1_048_576)), 1_040_384);
        assert_eq!(effective_threshold(100_000, None), 100_000);
    }
}
