//! The wall clock, in the integer units Singer streams carry: one place that reads it, so both
//! programs agree on what "now" means (UTC epoch; a clock before 1970 reads as 0).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    now_micros() / 1000
}

/// Whole seconds since the Unix epoch.
pub fn now_seconds() -> i64 {
    now_micros() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_agree() {
        let (us, ms, s) = (now_micros(), now_millis(), now_seconds());
        // 2020-01-01 and later, and each coarser unit no later than the finer one read first.
        assert!(us > 1_577_836_800_000_000);
        assert!(ms >= us / 1000 && s >= us / 1_000_000);
    }
}
