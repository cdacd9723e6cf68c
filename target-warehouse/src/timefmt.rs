//! RFC 3339 date-times and dates, parsed to and formatted from microseconds / days since the
//! epoch: strict, and lossless-or-refuse. The calendar (which dates exist, days since the epoch)
//! is `singer::datetime`'s, shared with the tap; the text forms the target accepts are here.
//!
//! Used by the column coercions (a `date-time` string into a timestamp column only when the
//! instant survives exactly) and by the Delta file statistics.

use singer::datetime::{civil_from_days, days_from_civil};

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: the one RFC 3339 formatter both programs use.
pub use singer::datetime::format_micros;

const MICROS_PER_SEC: i64 = 1_000_000;

fn num(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

fn date_part(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(num(&b[0..4])?);
    let m = u8::try_from(num(&b[5..7])?).ok()?;
    let d = u8::try_from(num(&b[8..10])?).ok()?;
    if y == 0 {
        return None;
    }
    days_from_civil(y, m, d)
}

/// `YYYY-MM-DD` exactly.
pub fn parse_date(s: &str) -> Option<i32> {
    date_part(s.as_bytes()).and_then(|d| i32::try_from(d).ok())
}

/// RFC 3339 (`T` or space separator, `Z`, `±HH:MM`, `±HHMM`, or no offset meaning UTC) to
/// microseconds. Refuses anything it cannot keep exactly: sub-microsecond digits, leap seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let days = date_part(&b[..10])?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros: i64 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let (digits, tail) = frac.split_at(n);
        for (i, &c) in digits.iter().enumerate() {
            let d = i64::from(c - b'0');
            if i < 6 {
                micros += d * 10_i64.pow(5 - i as u32);
            } else if d != 0 {
                return None; // nanoseconds would be lost
            }
        }
        rest = tail;
    }
    let offset_secs: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), hh @ ..] => {
            let (oh, om) = match hh {
                [a, b, b':', c, d] | [a, b, c, d] => (num(&[*a, *b])?, num(&[*c, *d])?),
                [a, b] => (num(&[*a, *b])?, 0),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset_secs;
    secs.checked_mul(MICROS_PER_SEC)?.checked_add(micros)
}

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
