//! Batching concurrent deliveries into SendMessageBatch calls (≤ 10 entries, ≤ 1 MiB in all).
//!
//! Like the spool's group commit: handlers queue their envelope on a channel and await a
//! oneshot; one task takes whatever is waiting (up to the limits) and sends it as one batch,
//! with several batches in flight at once. An entry is answered `Ok` only when SQS listed it in
//! `Successful`; entries in `Failed` that were not the sender's fault (throttling, internal
//! errors) are retried with backoff, the rest answered `Err`, which the receiver turns into 503
//! (the provider retries). A whole call that fails has already been retried by the SDK (its
//! retry configuration, `sqs.rs`) and is answered `Err` at once. Either retry can duplicate a
//! message SQS did accept, which the drain drops by its id.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// SQS: at most 10 entries per batch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS: at most 1 MiB (1,048,576 bytes) per batch, all bodies together.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Batches sent at once; more concurrency gathers into fuller batches instead.
const MAX_IN_FLIGHT: usize = 32;
/// Attempts for an entry SendMessageBatch listed as failed through no fault of ours (the SDK
/// retries whole calls, never single entries of a batch it sent).
const ATTEMPTS: u32 = 4;

/// One entry SQS did not accept.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryFailure {
    /// True when SQS says the entry itself is wrong (retrying cannot help).
    pub sender_fault: bool,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Where batches go: SQS in production, a fake in tests.
pub trait BatchSink: Send + Sync + 'static {
    /// Sends the bodies as one batch; returns one result per body, in order, or an error for
    /// the whole call.
    fn send_batch(
        &self,
        bodies: &[String],
    ) -> impl Future<Output = Result<Vec<Result<(), EntryFailure>>, String>> + Send;
}

/// Whether a body of `next` bytes still fits a batch of `entries` bodies holding `bytes`.
pub fn fits(entries: usize, bytes: usize, next: usize) -> bool {
    entries < MAX_BATCH_ENTRIES && bytes + next <= MAX_BATCH_BYTES
}

/// How a sequence of bodies (by size) is cut into batches, in order (what [`Batcher`] does when
/// they are all waiting at once). A body alone in its batch is always sent.
pub fn plan(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &s in sizes {
        match out.last_mut() {
            Some(b) if fits(b.len(), bytes, s) => {
                b.push(s);
                bytes += s;
            }
            _ => {
                out.push(vec![s]);
                bytes = s;
            }
        }
    }
    out
}

struct Pending {
    body: String,
    reply: oneshot::Sender<Result<(), String>>,
}

/// Handle to the batching task; cheap to clone into handlers.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts the batching task on the current runtime.
    pub fn start<S: BatchSink>(sink: S) -> Batcher {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(Arc::new(sink), rx));
        Batcher { tx }
    }

    /// Sends one body; returns once SQS accepted it (or gave up on it).
    pub async fn send(&self, body: String) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { body, reply })
            .await
            .map_err(|_| "the queue sender has stopped".to_owned())?;
        rx.await
            .unwrap_or_else(|_| Err("the queue sender has stopped".to_owned()))
    }
}

async fn run<S: BatchSink>(sink: Arc<S>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_ENTRIES {
            match rx.try_recv() {
                Ok(p) if fits(batch.len(), bytes, p.body.len()) => {
                    bytes += p.body.len();
                    batch.push(p);
                }
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let sink = sink.clone();
        tokio::spawn(async move {
            send_with_retries(sink.as_ref(), batch).await;
            drop(slot);
        });
    }
}

async fn send_with_retries<S: BatchSink>(sink: &S, mut pending: Vec<Pending>) {
    for attempt in 1..=ATTEMPTS {
        let bodies: Vec<String> = pending.iter().map(|p| p.body.clone()).collect();
        let last = attempt == ATTEMPTS;
        match sink.send_batch(&bodies).await {
            Ok(results) => {
                let mut retry = Vec::new();
                for (i, p) in pending.into_iter().enumerate() {
                    match results.get(i) {
                        Some(Ok(())) => {
                            let _ = p.reply.send(Ok(()));
                        }
                        Some(Err(f)) if f.sender_fault || last => {
                            tracing::warn!(code = %f.code, attempt, "SQS refused a message: {}", f.message);
                            let _ = p.reply.send(Err(f.to_string()));
                        }
                        None if last => {
                            let _ = p.reply.send(Err("SQS did not report the entry".into()));
                        }
                        _ => retry.push(p),
                    }
                }
                pending = retry;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, "SendMessageBatch failed");
                for p in pending {
                    let _ = p.reply.send(Err(e.clone()));
                }
                return;
            }
        }
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn ten_entries_or_one_mib_whichever_first() {
        let small = vec![100; 25];
        let sizes: Vec<usize> = plan(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        // 400 KiB bodies: two fit in 1 MiB, a third does not.
        let big = vec![400 * 1024; 5];
        let sizes: Vec<usize> = plan(&big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        // Exactly 1 MiB in all fits; one byte more does not.
        assert!(fits(1, MAX_BATCH_BYTES - 10, 10));
        assert!(!fits(1, MAX_BATCH_BYTES - 10, 11));
        assert!(!fits(MAX_BATCH_ENTRIES, 0, 1));
        // A body alone is sent even at the limit.
        assert_eq!(
            plan(&[MAX_BATCH_BYTES, 1]),
            [vec![MAX_BATCH_BYTES], vec![1]]
        );
    }

    /// Fails the entries whose body says so, `times` times each; records every call.
    struct Flaky {
        calls: Mutex<Vec<Vec<String>>>,
        transient_failures: Mutex<u32>,
    }

    impl BatchSink for Arc<Flaky> {
        async fn send_batch(
            &self,
            bodies: &[String],
        ) -> Result<Vec<Result<(), EntryFailure>>, String> {
            self.calls.lock().unwrap().push(bodies.to_vec());
            let mut transient = self.transient_failures.lock().unwrap();
            Ok(bodies
                .iter()
                .map(|b| {
                    if b.contains("bad") {
                        Err(EntryFailure {
                            sender_fault: true,
                            code: "InvalidMessageContents".into(),
                            message: "no".into(),
                        })
                    } else if b.contains("flaky") && *transient > 0 {
                        *transient -= 1;
                        Err(EntryFailure {
                            sender_fault: false,
                            code: "InternalError".into(),
                            message: "try again".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn partial_failures_are_retried_or_reported_per_entry() {
        let sink = Arc::new(Flaky {
            calls: Mutex::new(Vec::new()),
            transient_failures: Mutex::new(2),
        });
        let batcher = Batcher::start(sink.clone());
        let sends = ["ok-1", "flaky", "bad", "ok-2"].map(|b| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.send(b.to_owned()).await })
        });
        let mut results = Vec::new();
        for s in sends {
            results.push(s.await.unwrap());
        }
        assert!(results[0].is_ok() && results[3].is_ok());
        assert!(
            results[1].is_ok(),
            "a transient failure is retried: {results:?}"
        );
        assert!(
            results[2]
                .as_ref()
                .unwrap_err()
                .contains("InvalidMessageContents"),
            "a sender fault is reported, not retried"
        );
        let calls = sink.calls.lock().unwrap();
        let sent_bad = calls.iter().flatten().filter(|b| *b == "bad").count();
        assert_eq!(sent_bad, 1, "sender faults are not retried");
        let sent_flaky = calls.iter().flatten().filter(|b| *b == "flaky").count();
        assert_eq!(sent_flaky, 3, "two transient failures, then success");
        assert!(calls.iter().all(|c| c.len() <= MAX_BATCH_ENTRIES));
    }

    #[tokio::test]
    async fn persistent_failures_end_in_an_error() {
        let sink = Arc::new(Flaky {
            calls: Mutex::new(Vec::new()),
            transient_failures: Mutex::new(100),
        });
        let batcher = Batcher::start(sink.clone());
        assert!(batcher.send("flaky".into()).await.is_err());
        assert_eq!(sink.calls.lock().unwrap().len(), ATTEMPTS as usize);
    }

    /// Fails every whole call.
    struct Down(Mutex<u32>);

    impl BatchSink for Arc<Down> {
        async fn send_batch(
            &self,
            _bodies: &[String],
        ) -> Result<Vec<Result<(), EntryFailure>>, String> {
            *self.0.lock().unwrap() += 1;
            Err("dispatch failure: connection refused".into())
        }
    }

    #[tokio::test]
    async fn a_failed_call_is_answered_at_once_the_sdk_having_retried_it() {
        let sink = Arc::new(Down(Mutex::new(0)));
        let batcher = Batcher::start(sink.clone());
        let e = batcher.send("ok".into()).await.unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
        assert_eq!(*sink.0.lock().unwrap(), 1, "no second layer of retries");
    }
}
