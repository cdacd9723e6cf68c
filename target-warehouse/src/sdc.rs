//! The Singer metadata columns the target reads and fills (the SDK's `_sdc_*` names, Stitch's
//! generated key) and the clock that stamps them. The names both crates share will move to
//! `singer/`; until then this is the target's one place for them.

/// The generated key of keyless streams: a table keyed only by it stays append-only (Stitch).
pub const GENERATED_KEY: &str = "__sdc_primary_key";
pub const SEQUENCE: &str = "_sdc_sequence";
pub const DELETED_AT: &str = "_sdc_deleted_at";
pub const TABLE_VERSION: &str = "_sdc_table_version";
pub const EXTRACTED_AT: &str = "_sdc_extracted_at";
pub const RECEIVED_AT: &str = "_sdc_received_at";
pub const BATCHED_AT: &str = "_sdc_batched_at";

/// Now, in microseconds since the Unix epoch (0 for a clock before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Now, in milliseconds since the Unix epoch (Delta's `modificationTime`).
pub fn now_millis() -> i64 {
    now_micros() / 1000
}

/// `_sdc_sequence` for records without one: epoch microseconds, strictly increasing.
#[derive(Debug, Default)]
pub struct SeqClock(i64);

impl SeqClock {
    pub fn tick(&mut self) -> i64 {
        self.0 = now_micros().max(self.0 + 1);
        self.0
    }
}
