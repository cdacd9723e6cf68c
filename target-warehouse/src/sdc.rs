//! The Singer metadata columns the target reads and fills, under the target's names: the names
//! and the clock are `singer`'s (shared with the tap); the sequence clock for records without a
//! tap sequence is the target's own.

/// The generated key of keyless streams: a table keyed only by it stays append-only (Stitch).
pub use singer::sdc::PRIMARY_KEY as GENERATED_KEY;
pub use singer::sdc::{
    BATCHED_AT, DELETED_AT, EXTRACTED_AT, PREFIX, RECEIVED_AT, SEQUENCE, SYNC_STARTED_AT,
    TABLE_VERSION,
};

pub use singer::clock::{now_micros, now_millis};

/// `_sdc_sequence` for records without one: epoch microseconds, strictly increasing.
#[derive(Debug, Default)]
pub struct SeqClock(i64);

impl SeqClock {
    pub fn tick(&mut self) -> i64 {
        self.0 = now_micros().max(self.0 + 1);
        self.0
    }
}
