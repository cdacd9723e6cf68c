//! The scale-out queue: stateless receivers send each delivery to Amazon SQS; one scheduled tap
//! run drains SQS into its local spool (`tap/drain.rs`) and emits from there.
//!
//! ```text
//! provider ─▶ N × `serve` ──SendMessageBatch──▶ SQS ──receive──▶ drain ─▶ spool (fsync) ─▶ delete
//!                  └── body > threshold ─▶ S3 (claim check), pointer in SQS
//! ```
//!
//! - [`envelope`]: the message body (one delivery, with the receiver-assigned message ids);
//! - [`batcher`]: concurrent deliveries packed into SendMessageBatch calls, partial failures;
//! - [`claim`]: the claim check for envelopes too large for SQS;
//! - [`sqs`]: the SDK clients and calls;
//! - [`sender`]: the receiver's handle, putting those together.
//!
//! This file holds the `queue` setting, validated, and the errors.
//!
//! The durability chain: a delivery is answered 2xx only once SendMessageBatch listed its entry
//! as successful (and, for a claim check, once the S3 object was written before that).

pub mod batcher;
pub mod claim;
pub mod envelope;
pub mod sender;
pub mod sqs;

use aws_sdk_sqs::error::DisplayErrorContext;
use serde::Deserialize;

/// SQS's maximum message size is 1 MiB (1,048,576 bytes); envelopes above this much less a
/// little headroom go by claim check.
pub const DEFAULT_CLAIM_CHECK_THRESHOLD_BYTES: usize = 1024 * 1024 - 8 * 1024;
const _: () = assert!(DEFAULT_CLAIM_CHECK_THRESHOLD_BYTES < batcher::MAX_BATCH_BYTES);
pub const DEFAULT_CLAIM_CHECK_PREFIX: &str = "tap-webhook/claim-check/";
/// Longer than a drain round takes (receive, spool commit, delete), short enough that a crashed
/// drain's messages come back soon.
pub const DEFAULT_VISIBILITY_TIMEOUT_SECONDS: i32 = 120;
/// Long polling: an empty queue is confirmed after this long, which ends the drain.
pub const DEFAULT_WAIT_TIME_SECONDS: i32 = 5;
pub const DEFAULT_RECEIVE_CONCURRENCY: usize = 4;

/// Which queue the receiver stores into.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite spool (one machine).
    #[default]
    Spool,
    /// Amazon SQS (or a compatible server): many stateless receivers, one drain.
    Sqs,
}

/// The `queue` setting as written (schemas/tap-webhook.config.schema.json).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub backend: Option<Backend>,
    pub queue_url: Option<String>,
    pub queue_name: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub claim_check_bucket: Option<String>,
    pub claim_check_prefix: Option<String>,
    pub claim_check_threshold_bytes: Option<usize>,
    pub visibility_timeout_seconds: Option<i32>,
    pub wait_time_seconds: Option<i32>,
    pub max_receive_batches: Option<u64>,
    pub receive_concurrency: Option<usize>,
}

/// The SQS backend's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    pub queue_url: Option<String>,
    pub queue_name: Option<String>,
    /// Unset: the standard chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// A local server or an S3/SQS-compatible service; unset: AWS.
    pub endpoint_url: Option<String>,
    /// Without a bucket, an envelope above the threshold is refused with 413.
    pub claim_check_bucket: Option<String>,
    pub claim_check_prefix: String,
    pub claim_check_threshold_bytes: usize,
    pub visibility_timeout_seconds: i32,
    pub wait_time_seconds: i32,
    /// Most ReceiveMessage calls one tap run makes (unset: until the queue is empty).
    pub max_receive_batches: Option<u64>,
    pub receive_concurrency: usize,
}

impl QueueSettings {
    /// `None` for the embedded spool.
    pub fn from_config(c: Option<QueueConfig>) -> Result<Option<QueueSettings>, String> {
        let Some(c) = c else { return Ok(None) };
        if c.backend.unwrap_or_default() == Backend::Spool {
            return Ok(None);
        }
        if c.queue_url.is_none() == c.queue_name.is_none() {
            return Err(
                "the sqs backend needs exactly one of `queue.queue_url` and `queue.queue_name`"
                    .into(),
            );
        }
        let threshold = c
            .claim_check_threshold_bytes
            .unwrap_or(DEFAULT_CLAIM_CHECK_THRESHOLD_BYTES);
        if !(1024..=batcher::MAX_BATCH_BYTES).contains(&threshold) {
            return Err(format!(
                "`queue.claim_check_threshold_bytes` must be between 1024 and {} (the SQS maximum)",
                batcher::MAX_BATCH_BYTES
            ));
        }
        let visibility = c
            .visibility_timeout_seconds
            .unwrap_or(DEFAULT_VISIBILITY_TIMEOUT_SECONDS);
        if !(1..=43_200).contains(&visibility) {
            return Err(
                "`queue.visibility_timeout_seconds` must be between 1 and 43200 (12 h)".into(),
            );
        }
        let wait = c.wait_time_seconds.unwrap_or(DEFAULT_WAIT_TIME_SECONDS);
        if !(0..=20).contains(&wait) {
            return Err("`queue.wait_time_seconds` must be between 0 and 20".into());
        }
        let concurrency = c.receive_concurrency.unwrap_or(DEFAULT_RECEIVE_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err("`queue.receive_concurrency` must be between 1 and 64".into());
        }
        Ok(Some(QueueSettings {
            queue_url: c.queue_url,
            queue_name: c.queue_name,
            region: c.region,
            endpoint_url: c.endpoint_url,
            claim_check_bucket: c.claim_check_bucket,
            claim_check_prefix: c
                .claim_check_prefix
                .unwrap_or_else(|| DEFAULT_CLAIM_CHECK_PREFIX.into()),
            claim_check_threshold_bytes: threshold,
            visibility_timeout_seconds: visibility,
            wait_time_seconds: wait,
            max_receive_batches: c.max_receive_batches,
            receive_concurrency: concurrency,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS: {what}: {detail}")]
    Sqs { what: String, detail: String },
    #[error("S3 claim check: {what}: {detail}")]
    S3 { what: String, detail: String },
    #[error("a delivery of {bytes} bytes exceeds the SQS limit ({limit}) and no `queue.claim_check_bucket` is configured")]
    TooLarge { bytes: usize, limit: usize },
    #[error("SQS did not accept the message: {0}")]
    NotAccepted(String),
}

/// An SDK error as text: its whole chain of causes (its `Display` alone is often "service
/// error"), as the SDK's own `DisplayErrorContext` writes it.
pub fn sdk_error(e: impl std::error::Error) -> String {
    DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Option<QueueSettings>, String> {
        QueueSettings::from_config(Some(serde_json::from_value(v).map_err(|e| e.to_string())?))
    }

    #[test]
    fn spool_is_the_default_and_sqs_needs_one_queue() {
        assert_eq!(QueueSettings::from_config(None), Ok(None));
        assert_eq!(parse(serde_json::json!({"backend": "spool"})), Ok(None));
        assert!(parse(serde_json::json!({"backend": "sqs"})).is_err());
        assert!(
            parse(serde_json::json!({"backend": "sqs", "queue_url": "u", "queue_name": "n"}))
                .is_err()
        );
        let q = parse(serde_json::json!({"backend": "sqs", "queue_name": "n"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            q.claim_check_threshold_bytes,
            DEFAULT_CLAIM_CHECK_THRESHOLD_BYTES
        );
        assert_eq!(
            q.visibility_timeout_seconds,
            DEFAULT_VISIBILITY_TIMEOUT_SECONDS
        );
        assert!(parse(serde_json::json!({"backend": "sqs", "queue_name": "n", "claim_check_threshold_bytes": 2_000_000})).is_err());
        assert!(parse(
            serde_json::json!({"backend": "sqs", "queue_name": "n", "wait_time_seconds": 21})
        )
        .is_err());
        assert!(parse(serde_json::json!({"backend": "sqs", "queue_nam": "n"})).is_err());
    }
}
