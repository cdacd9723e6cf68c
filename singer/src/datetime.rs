//! Calendar dates and RFC 3339 text of epoch microseconds, as Singer streams carry them
//! (`_sdc_received_at`, `time_extracted`, timestamp columns): the calendar is the `time` crate's.
//!
//! `time` covers the years -9999 to 9999; the Gregorian calendar repeats every 400 years
//! (146,097 days), so any day count is shifted by whole 400-year cycles into that range and the
//! year shifted back: every `i64` of days or microseconds has its date.

use std::fmt::Write as _;

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
/// Days in 400 Gregorian years: the calendar's period.
const DAYS_PER_CYCLE: i64 = 146_097;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date; `None` when there is no such date
/// (February 30, month 13).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> Option<i64> {
    let cycles = year.div_euclid(400);
    // Years 2000 to 2399, well inside `time`'s range.
    let in_range = i32::try_from(year.rem_euclid(400) + 2000).ok()?;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(in_range, month, day).ok()?;
    let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
    // `in_range` is `year` moved by (5 - cycles) cycles.
    days.checked_add(cycles.checked_sub(5)?.checked_mul(DAYS_PER_CYCLE)?)
}

/// (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let cycles = days.div_euclid(DAYS_PER_CYCLE);
    // 1970-01-01 to 2369-12-31: always a date `time` has.
    let in_range = days.rem_euclid(DAYS_PER_CYCLE) + UNIX_EPOCH_JULIAN_DAY;
    let date = i32::try_from(in_range)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .unwrap_or(time::Date::MIN);
    let (year, month, day) = date.to_calendar_date();
    (i64::from(year) + cycles * 400, u8::from(month), day)
}

/// Appends the RFC 3339 text of `us` microseconds since the epoch, in UTC with six fractional
/// digits: `2023-11-14T22:13:20.123456Z` (what the tap writes in `_sdc_received_at`).
pub fn push_micros(out: &mut String, us: i64) {
    let (year, month, day) = civil_from_days(us.div_euclid(MICROS_PER_DAY));
    let in_day = us.rem_euclid(MICROS_PER_DAY);
    let secs = in_day / 1_000_000;
    if (0..=9999).contains(&year) {
        push_digits(out, year, 4);
    } else {
        let _ = write!(out, "{year:04}");
    }
    out.push('-');
    push_digits(out, i64::from(month), 2);
    out.push('-');
    push_digits(out, i64::from(day), 2);
    out.push('T');
    push_digits(out, secs / 3600, 2);
    out.push(':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(':');
    push_digits(out, secs % 60, 2);
    out.push('.');
    push_digits(out, in_day % 1_000_000, 6);
    out.push('Z');
}

/// [`push_micros`] into a new string.
pub fn format_micros(us: i64) -> String {
    let mut s = String::with_capacity(27);
    push_micros(&mut s, us);
    s
}

/// Appends `v` (0 ≤ v < 10^width) as exactly `width` decimal digits.
fn push_digits(out: &mut String, v: i64, width: usize) {
    let mut buf = [b'0'; 8];
    let mut v = v;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend(buf[..width].iter().map(|&b| char::from(b)));
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Howard Hinnant's civil-from-days, the algorithm both crates carried before: an oracle
    /// for every year, including those outside `time`'s range.
    fn hinnant(z: i64) -> (i64, u8, u8) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let y = yoe + era * 400;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    #[test]
    fn dates_agree_with_the_calendar_everywhere() {
        let mut days = -4_000_000_i64;
        while days < 4_000_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!((y, m, d), hinnant(days), "{days}");
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
            days += 997;
        }
        for days in [
            0,
            -1,
            DAYS_PER_CYCLE - 1,
            DAYS_PER_CYCLE,
            i64::MAX / 2,
            i64::MIN / 2,
            i64::MAX / MICROS_PER_DAY + 1,
            i64::MIN / MICROS_PER_DAY - 1,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!((y, m, d), hinnant(days), "{days}");
        }
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2100, 2, 29), None);
        assert_eq!(days_from_civil(2000, 2, 29), Some(11_016));
        assert_eq!(days_from_civil(2024, 13, 1), None);
        assert_eq!(days_from_civil(2024, 4, 31), None);
        assert_eq!(days_from_civil(1, 1, 1), Some(-719_162));
    }

    #[test]
    fn formats_microseconds_in_utc_as_time_does() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_micros(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            format_micros(253_402_300_800_000_000),
            "10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(format_micros(i64::MAX), "294247-01-10T04:00:54.775807Z");
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let mut us = -62_135_596_800_000_000_i64; // 0001-01-01
        while us < 253_402_300_800_000_000 {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
                .unwrap()
                .format(&fmt)
                .unwrap();
            assert_eq!(format_micros(us), t, "{us}");
            // Steps that land on every month, leap days and every time of day.
            us += 5 * MICROS_PER_DAY + 1_234_567_891;
        }
    }
}
