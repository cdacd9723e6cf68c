//! Amazon SQS through the AWS SDK: clients from the standard configuration chain, the batch
//! sink the receiver sends through, and the receive / delete calls of the drain.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use super::batcher::{BatchSink, EntryFailure};
use super::{sdk_error, QueueError, QueueSettings};

/// The SDK configuration: region and endpoint from the settings when given, everything else
/// (credentials above all) from the standard AWS chain: environment, profile, web identity,
/// container and instance metadata.
pub async fn sdk_config(q: &QueueSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &q.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &q.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    // Transient failures of a whole call (throttling, 5xx, timeouts, connection errors) are
    // retried by the SDK with backoff; entries SendMessageBatch lists as `Failed` are the
    // batcher's to retry (`batcher.rs`).
    loader = loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4));
    // Without limits a hung connection holds a delivery (or a drain round) forever. An attempt
    // may last a long poll plus a margin; the whole operation, retries included, twice that.
    let attempt = std::time::Duration::from_secs(q.wait_time_seconds.max(0) as u64 + 10);
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 2)
            .build(),
    );
    loader.load().await
}

/// An S3 client for the claim check; path-style addressing when an endpoint is configured
/// (local servers and most S3-compatible stores do not resolve bucket subdomains).
pub fn s3_client(sdk: &SdkConfig, q: &QueueSettings) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(q.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The queue's URL: configured, or looked up by name.
pub async fn queue_url(client: &Client, q: &QueueSettings) -> Result<String, QueueError> {
    if let Some(url) = &q.queue_url {
        return Ok(url.clone());
    }
    let name = q.queue_name.clone().unwrap_or_default();
    let out = client
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .map_err(|e| QueueError::Sqs {
            what: format!("looking up queue {name}"),
            detail: sdk_error(e),
        })?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| QueueError::Sqs {
            what: format!("looking up queue {name}"),
            detail: "no QueueUrl in the reply".into(),
        })
}

/// The queue's own `MaximumMessageSize`, or `None` when it cannot be read (the
/// `sqs:GetQueueAttributes` permission is missing, say): the caller then keeps its threshold.
pub async fn max_message_bytes(client: &Client, queue_url: &str) -> Option<usize> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await;
    match out {
        Ok(out) => out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .and_then(|v| v.parse().ok()),
        Err(e) => {
            tracing::warn!(queue_url, error = %sdk_error(e), "cannot read the queue's MaximumMessageSize; keeping the configured claim-check threshold");
            None
        }
    }
}

/// Sends batches to one queue.
pub struct SqsSink {
    pub client: Client,
    pub queue_url: String,
}

impl BatchSink for SqsSink {
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<Result<(), EntryFailure>>, String> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(per_entry(
            bodies.len(),
            out.successful().iter().map(|s| s.id()),
            out.failed(),
        ))
    }
}

/// One result per entry index from a batch reply; an entry in neither list is a failure.
fn per_entry<'a>(
    n: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<Result<(), EntryFailure>> {
    let mut results: Vec<Result<(), EntryFailure>> = (0..n)
        .map(|_| {
            Err(EntryFailure {
                sender_fault: false,
                code: "NotReported".into(),
                message: "SQS listed the entry neither as successful nor as failed".into(),
            })
        })
        .collect();
    for id in successful {
        if let Some(r) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
            *r = Ok(());
        }
    }
    for f in failed {
        if let Some(r) = f
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            *r = Err(EntryFailure {
                sender_fault: f.sender_fault(),
                code: f.code().to_owned(),
                message: f.message().unwrap_or_default().to_owned(),
            });
        }
    }
    results
}

/// A message received from the queue.
pub struct Received {
    pub body: String,
    pub receipt_handle: String,
    pub message_id: String,
}

/// One long-poll ReceiveMessage call (up to 10 messages).
pub async fn receive(
    client: &Client,
    queue_url: &str,
    q: &QueueSettings,
) -> Result<Vec<Received>, QueueError> {
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(q.wait_time_seconds)
        .visibility_timeout(q.visibility_timeout_seconds)
        .send()
        .await
        .map_err(|e| QueueError::Sqs {
            what: "ReceiveMessage".into(),
            detail: sdk_error(e),
        })?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| {
            Some(Received {
                body: m.body()?.to_owned(),
                receipt_handle: m.receipt_handle()?.to_owned(),
                message_id: m.message_id().unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

/// Deletes up to 10 received messages; returns the receipt handles that could not be deleted
/// (after one retry of the failed entries). Those messages come back after the visibility
/// timeout and are recognised by their ids, so a failure here costs work, not correctness.
pub async fn delete_batch(
    client: &Client,
    queue_url: &str,
    handles: &[String],
) -> Result<Vec<String>, QueueError> {
    let mut pending: Vec<String> = handles.to_vec();
    for attempt in 1..=2 {
        let entries = pending
            .iter()
            .enumerate()
            .map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Sqs {
                what: "DeleteMessageBatch".into(),
                detail: e.to_string(),
            })?;
        let out = client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Sqs {
                what: "DeleteMessageBatch".into(),
                detail: sdk_error(e),
            })?;
        let results = per_entry(
            pending.len(),
            out.successful().iter().map(|s| s.id()),
            out.failed(),
        );
        let failed: Vec<String> = pending
            .into_iter()
            .zip(results)
            .filter_map(|(h, r)| match r {
                Ok(()) => None,
                Err(f) => {
                    tracing::warn!(code = %f.code, attempt, "DeleteMessage failed: {}", f.message);
                    Some(h)
                }
            })
            .collect();
        if failed.is_empty() {
            return Ok(failed);
        }
        pending = failed;
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::BatchResultErrorEntry;

    #[test]
    fn batch_replies_map_to_entries_by_id() {
        let failed = [BatchResultErrorEntry::builder()
            .id("1")
            .sender_fault(false)
            .code("InternalError")
            .build()
            .unwrap()];
        let r = per_entry(3, ["0"].into_iter(), &failed);
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().code, "InternalError");
        assert_eq!(
            r[2].as_ref().unwrap_err().code,
            "NotReported",
            "an entry in neither list is not taken as sent"
        );
    }
}
