//! Day-two commands over the spool, for the people running the receiver: `deliveries` (what
//! arrived, what was refused and why), `status` (what waits, how full the spool is) and `urls`
//! (what to paste into each provider). Read-only; they open the spool beside a running `serve`
//! (WAL readers never block its writer).

pub mod deliveries;
pub mod status;
pub mod urls;

use std::io::Write;

use serde::Serialize;

/// How a listing is printed: an aligned table for a person, JSON lines for a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Jsonl,
}

impl Format {
    /// The format asked for, else a table on a terminal and JSON lines when piped.
    pub fn or_by_terminal(asked: Option<Format>) -> Format {
        use std::io::IsTerminal;
        asked.unwrap_or(if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Jsonl
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Arg(String),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("reading the spool: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// A time given on the command line: RFC 3339 (`2026-12-01T09:30:00Z`), a date (`2026-12-01`,
/// midnight UTC), or an age before `now_us`: a number and `s`, `m`, `h`, `d` or `w` (`2h`).
pub fn parse_time(flag: &str, text: &str, now_us: i64) -> Result<i64, OpsError> {
    let t = text.trim();
    let unit = match t.chars().last() {
        Some('s') => Some(1),
        Some('m') => Some(60),
        Some('h') => Some(3600),
        Some('d') => Some(86_400),
        Some('w') => Some(7 * 86_400),
        _ => None,
    };
    let digits = &t[..t.len().saturating_sub(1)];
    if let Some(unit) = unit.filter(|_| digits.bytes().all(|b| b.is_ascii_digit())) {
        if let Ok(n) = digits.parse::<u32>() {
            // Checked: `4294967295w` is past what a timestamp holds, an error and not a wrap.
            return i64::from(n)
                .checked_mul(unit * 1_000_000)
                .and_then(|age| now_us.checked_sub(age))
                .ok_or_else(|| OpsError::Arg(format!("{flag} {text:?}: too far back")));
        }
    }
    // A time of day without a zone is refused rather than taken as UTC: an operator's local
    // `09:00` read as UTC replays the wrong hours without a word.
    if let Some((date, time)) = t.split_once(['T', 't', ' ']) {
        let zoned = time.ends_with(['Z', 'z']) || time.contains(['+', '-']);
        if !zoned && singer::datetime::parse_date(date).is_some() {
            return Err(OpsError::Arg(format!(
                "{flag} {text:?}: give the time zone (Z for UTC, or an offset such as +01:00)"
            )));
        }
    }
    singer::datetime::parse_timestamp(t)
        .or_else(|| singer::datetime::parse_date(t).map(|d| i64::from(d) * 86_400_000_000))
        .ok_or_else(|| {
            OpsError::Arg(format!(
                "{flag} {text:?}: expected RFC 3339 (2026-12-01T09:30:00Z), a date (2026-12-01) \
                 or an age such as 30m, 2h, 7d"
            ))
        })
}

/// RFC 3339 in milliseconds, UTC: wide enough to tell deliveries apart, short enough to read.
pub fn show_time(us: i64) -> String {
    let full = singer::datetime::format_micros(us);
    // `YYYY-MM-DDTHH:MM:SS.ffffffZ` → `YYYY-MM-DDTHH:MM:SS.fffZ`.
    match full.len() {
        27 => format!("{}Z", &full[..23]),
        _ => full,
    }
}

/// Writes rows as an aligned table (a header, then one line per row; the last column free).
pub fn write_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Writes each item as one JSON line.
pub fn write_jsonl<T: Serialize>(out: &mut impl Write, items: &[T]) -> Result<(), OpsError> {
    for item in items {
        serde_json::to_writer(&mut *out, item)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Text for a table cell: control characters (a hostile user agent's escape sequences) shown
/// escaped, long text cut.
pub fn cell(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_dates_or_ages() {
        let now = 1_700_000_000_000_000;
        assert_eq!(
            parse_time("--since", "2h", now).unwrap(),
            now - 7_200_000_000
        );
        assert_eq!(parse_time("--since", "90s", now).unwrap(), now - 90_000_000);
        assert_eq!(
            parse_time("--since", "1w", now).unwrap(),
            now - 604_800_000_000
        );
        assert_eq!(
            parse_time("--since", "2023-11-14T22:13:20Z", now).unwrap(),
            now
        );
        assert_eq!(
            parse_time("--since", "2023-11-14T23:13:20+01:00", now).unwrap(),
            now
        );
        assert_eq!(
            parse_time("--until", "1970-01-02", now).unwrap(),
            86_400_000_000
        );
        // Ages past what a timestamp holds are refused, not wrapped (found by attack: a panic).
        for far in ["4294967295w", "200000000d"] {
            let e = parse_time("--since", far, now).unwrap_err().to_string();
            assert!(e.contains("--since") && e.contains("too far back"), "{e}");
        }
        // Found by attack: a time without a zone was taken as UTC, `+5m` as five minutes ago.
        for zoneless in ["2023-11-14T22:13:20", "2023-11-14 22:13:20"] {
            let e = parse_time("--since", zoneless, now)
                .unwrap_err()
                .to_string();
            assert!(e.contains("time zone"), "{e}");
        }
        for bad in ["yesterday", "2h30m", "-2h", "+5m", "2023-13-01", ""] {
            let e = parse_time("--since", bad, now).unwrap_err().to_string();
            assert!(
                e.contains("--since") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
        assert_eq!(show_time(now), "2023-11-14T22:13:20.000Z");
        assert_eq!(cell("a\u{1b}[31mb", 100), "a\\u{1b}[31mb");
    }
}
