//! `/metrics`: Prometheus text counters of what the receiver accepted and rejected.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::spool::watch::SpoolStats;

#[derive(Default)]
pub struct Metrics {
    /// Messages stored, by source (fixed at start-up from the configured sources).
    accepted: BTreeMap<String, AtomicU64>,
    duplicates: AtomicU64,
    bytes: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a String>) -> Metrics {
        Metrics {
            accepted: sources
                .into_iter()
                .map(|s| (s.clone(), AtomicU64::new(0)))
                .collect(),
            ..Metrics::default()
        }
    }

    pub fn accepted(&self, source: &str, messages: u64, bytes: u64) {
        if let Some(c) = self.accepted.get(source) {
            c.fetch_add(messages, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// The counters as Prometheus text; the spool gauges read 0 without a spool (SQS backend).
    pub fn render(&self, spool: Option<&SpoolStats>, refusals_unrecorded: u64) -> String {
        let gauge =
            |g: fn(&SpoolStats) -> &AtomicU64| spool.map_or(0, |s| g(s).load(Ordering::Relaxed));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP webhook_messages_accepted_total Messages stored in the spool."
        );
        let _ = writeln!(s, "# TYPE webhook_messages_accepted_total counter");
        for (source, c) in &self.accepted {
            let _ = writeln!(
                s,
                "webhook_messages_accepted_total{{source=\"{source}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP webhook_requests_rejected_total Requests refused, by error code."
        );
        let _ = writeln!(s, "# TYPE webhook_requests_rejected_total counter");
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "webhook_requests_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        for (name, help, kind, v) in [
            (
                "webhook_duplicate_deliveries_total",
                "Deliveries answered with an earlier message id (same delivery id).",
                "counter",
                self.duplicates.load(Ordering::Relaxed),
            ),
            (
                "webhook_received_bytes_total",
                "Body bytes stored, after decompression.",
                "counter",
                self.bytes.load(Ordering::Relaxed),
            ),
            (
                "webhook_refusals_unrecorded_total",
                "Refused requests the ledger had no room to queue (counted, not recorded).",
                "counter",
                refusals_unrecorded,
            ),
            (
                "webhook_spool_messages",
                "Messages in the spool (not yet pruned).",
                "gauge",
                gauge(|s| &s.depth),
            ),
            (
                "webhook_spool_bytes",
                "Bytes in use in the spool file.",
                "gauge",
                gauge(|s| &s.bytes),
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        s
    }
}
