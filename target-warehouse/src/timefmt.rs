//! RFC 3339 date-times and dates, parsed to and formatted from microseconds / days since the
//! epoch: strict, and lossless-or-refuse. The calendar (which dates exist, days since the epoch)
//! is `singer::datetime`'s, shared with the tap; the text forms the target accepts are here.
//!
//! Used by the column coercions (a `date-time` string into a timestamp column only when the
//! instant survives exactly) and by the Delta file statistics.

use singer::datetime::civil_from_days;

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: the one RFC 3339 formatter both programs use.
pub use singer::datetime::format_micros;
/// RFC 3339 and `YYYY-MM-DD` parsing, shared with the tap's `--since` / `--replay-since`.
pub use singer::datetime::{parse_date, parse_timestamp};

/// Millisecond-precision text for Delta statistics (the precision Spark writes and reads);
/// `round_up` makes a maximum never smaller than the true one.
pub fn format_stats_millis(m: i64, round_up: bool) -> String {
    let ms = if round_up {
        m.div_euclid(1000) + i64::from(m.rem_euclid(1000) != 0)
    } else {
        m.div_euclid(1000)
    };
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// `YYYY-MM-DD`.
pub fn format_days(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_variants() {
        let base = parse_timestamp("2024-02-29T12:34:56Z");
        assert_eq!(base, Some(1_709_210_096_000_000));
        assert_eq!(parse_timestamp("2024-02-29T12:34:56+00:00"), base);
        assert_eq!(parse_timestamp("2024-02-29 12:34:56"), base);
        assert_eq!(parse_timestamp("2024-02-29T14:34:56+02:00"), base);
        assert_eq!(parse_timestamp("2024-02-29T14:34:56+0200"), base);
        assert_eq!(
            parse_timestamp("2024-02-29T12:34:56.5Z"),
            base.map(|b| b + 500_000)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T12:34:56.123456000Z"),
            base.map(|b| b + 123_456)
        );
        assert_eq!(parse_timestamp("2024-02-29T12:34:56.1234567Z"), None);
        assert_eq!(parse_timestamp("2023-02-29T12:34:56Z"), None);
        assert_eq!(parse_timestamp("2024-02-29T24:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999Z"), Some(-1));
    }

    #[test]
    fn formats_round_trip() {
        for m in [0, -1, 1_709_210_096_123_456, -62_135_596_800_000_000] {
            assert_eq!(parse_timestamp(&format_micros(m)), Some(m));
        }
        assert_eq!(
            format_stats_millis(1_500, false),
            "1970-01-01T00:00:00.001Z"
        );
        assert_eq!(format_stats_millis(1_500, true), "1970-01-01T00:00:00.002Z");
        assert_eq!(parse_date("2024-03-01"), Some(19_783));
        assert_eq!(format_days(19_783), "2024-03-01");
        assert_eq!(parse_date("2024-3-1"), None);
    }
}
