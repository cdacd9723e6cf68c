//! Progress and Singer metrics on stderr.
//!
//! Long runs log their progress (records, bytes, rates) at intervals; `METRIC:` lines in the
//! Singer SDK's format (`{"type": "counter"|"timer", "metric": …, "value": …, "tags": {…}}`) are
//! what Meltano and other runners parse from a plugin's stderr. Stdout is never touched.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How often a long run reports.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

pub struct Progress {
    what: &'static str,
    started: Instant,
    last: Instant,
    interval: Duration,
    pub records: u64,
    pub bytes: u64,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        Progress::with_interval(what, PROGRESS_INTERVAL)
    }

    pub fn with_interval(what: &'static str, interval: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            started: now,
            last: now,
            interval,
            records: 0,
            bytes: 0,
        }
    }

    /// Counts work done; logs when the interval has passed (checked every 4,096 records, so the
    /// clock is not read per record).
    pub fn add(&mut self, records: u64, bytes: u64) {
        let before = self.records;
        self.records += records;
        self.bytes += bytes;
        if before >> 12 != self.records >> 12 && self.last.elapsed() >= self.interval {
            self.last = Instant::now();
            self.log("progress");
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn log(&self, label: &str) {
        let secs = self.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            records = self.records,
            bytes = self.bytes,
            records_per_second = (self.records as f64 / secs).round(),
            megabytes_per_second = ((self.bytes as f64 / 1e6 / secs) * 10.0).round() / 10.0,
            seconds = (secs * 10.0).round() / 10.0,
            "{} {label}",
            self.what
        );
    }
}

/// The text of one Singer metric line (without the log prefix).
pub fn metric_line(kind: &str, metric: &str, value: Value, tags: Value) -> String {
    json!({"type": kind, "metric": metric, "value": value, "tags": tags}).to_string()
}

/// Prints a Singer metric line on stderr, as the SDK's loggers do.
pub fn emit_metric(kind: &str, metric: &str, value: Value, tags: Value) {
    eprintln!("INFO METRIC: {}", metric_line(kind, metric, value, tags));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_follow_the_sdk_format() {
        let line = metric_line(
            "counter",
            "record_count",
            json!(5),
            json!({"stream": "data"}),
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"type": "counter", "metric": "record_count", "value": 5, "tags": {"stream": "data"}})
        );
    }

    #[test]
    fn progress_counts() {
        let mut p = Progress::with_interval("test", Duration::ZERO);
        for _ in 0..5000 {
            p.add(1, 10);
        }
        assert_eq!((p.records, p.bytes), (5000, 50_000));
    }
}
