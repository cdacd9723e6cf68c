//! The claim check: envelopes too large for an SQS message travel in S3, with a pointer in SQS
//! (as the AWS extended client libraries do).
//!
//! Receiver: the object is written (PUT returns only once S3 stored it durably) BEFORE the
//! pointer is sent, and the 2xx waits for both. Drain: the object is read when its pointer is
//! received, and deleted only after the spool commit holding the delivery is fsync'd AND the
//! SQS message is deleted. An object whose pointer never made it to SQS (the send failed and the
//! provider was answered 503) is orphaned: a bucket lifecycle rule expiring the prefix after a
//! few days cleans those up (README, deployment).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::envelope::Pointer;
use super::QueueError;

/// Whether an envelope must go by claim check: too large for SQS, or holding characters SQS
/// refuses in a message body (it allows #x9, #xA, #xD, #x20–#xD7FF, #xE000–#xFFFD,
/// #x10000–#x10FFFF; valid JSON may still carry U+FFFE or U+FFFF raw inside a string). S3 takes
/// any bytes, so the body still arrives exactly as sent.
pub fn needs_claim_check(envelope: &str, threshold: usize) -> bool {
    envelope.len() > threshold || !sqs_safe(envelope)
}

fn sqs_safe(s: &str) -> bool {
    !s.chars().any(|c| {
        matches!(c, '\u{FFFE}' | '\u{FFFF}') || (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
    })
}

/// The S3 side of the claim check.
#[derive(Clone)]
pub struct ClaimCheck {
    pub client: Client,
    pub bucket: String,
    pub prefix: String,
}

impl ClaimCheck {
    /// The object key of a delivery: the prefix and the id of its first message (unique).
    pub fn key(&self, id: &str) -> String {
        format!("{}{id}.json", self.prefix)
    }

    /// Stores an envelope; returns the pointer to send in its place.
    pub async fn put(&self, id: &str, envelope: String) -> Result<Pointer, QueueError> {
        let key = self.key(id);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(envelope.into_bytes()))
            .send()
            .await
            .map_err(|e| QueueError::S3 {
                what: format!("writing s3://{}/{key}", self.bucket),
                detail: super::sdk_error(e),
            })?;
        Ok(Pointer {
            bucket: self.bucket.clone(),
            key,
        })
    }
}

/// Reads a claim-checked envelope.
pub async fn get(client: &Client, p: &Pointer) -> Result<String, QueueError> {
    let what = || format!("reading s3://{}/{}", p.bucket, p.key);
    let out = client
        .get_object()
        .bucket(&p.bucket)
        .key(&p.key)
        .send()
        .await
        .map_err(|e| QueueError::S3 {
            what: what(),
            detail: super::sdk_error(e),
        })?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| QueueError::S3 {
            what: what(),
            detail: e.to_string(),
        })?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|e| QueueError::S3 {
        what: what(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_exclusive_and_sqs_forbidden_characters_go_by_s3() {
        let t = 2048;
        assert!(!needs_claim_check(&"x".repeat(t), t));
        assert!(needs_claim_check(&"x".repeat(t + 1), t));
        assert!(!needs_claim_check("{\"a\":\"é😀\t\"}", t));
        assert!(needs_claim_check("{\"a\":\"\u{FFFF}\"}", t));
        assert!(needs_claim_check("{\"a\":\"\u{1}\"}", t));
    }
}
