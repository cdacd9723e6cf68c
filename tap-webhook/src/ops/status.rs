//! `tap-webhook status`: per source, what waits for the next tap run (after the bookmark of a
//! given state, else everything held), the oldest and newest receipt, bytes, and the requests
//! refused in the last hour by code; the spool's size against `max_spool_bytes`; the producer.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::{show_time, OpsError};
use crate::settings::Settings;
use crate::spool::browse::{self, SourceCounts};
use crate::spool::{ledger, open, producer_id};
use crate::tap::state;

/// The report, as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub producer: String,
    pub spool_path: String,
    pub spool_bytes: u64,
    pub max_spool_bytes: u64,
    /// Whether waiting counts start after a state's bookmarks (else: everything held).
    pub from_state: bool,
    pub sources: BTreeMap<String, SourceStatus>,
    /// Refused in the last hour for a path naming no configured source, by code.
    pub refused_last_hour_elsewhere: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    /// The state's bookmark (0: none).
    pub bookmark: i64,
    #[serde(flatten)]
    pub counts: SourceCounts,
    pub oldest_received_at: Option<String>,
    pub newest_received_at: Option<String>,
    pub refused_last_hour: BTreeMap<String, u64>,
}

/// Gathers the status; `state` is the tap's state file's value, when given.
pub fn gather(settings: &Settings, state_value: Option<&Value>) -> Result<Status, OpsError> {
    // Not `open_checked`: a read-only look need not read the whole file first (`quick_check`).
    let conn = open(&settings.spool_path)?;
    let producer = producer_id(&conn)?;
    let marks = state::own_bookmarks(state_value, &producer)
        .map_err(|e| OpsError::Arg(format!("--state: {e}")))?;
    let hour_ago = singer::clock::now_micros() - 3_600_000_000;
    let mut refused: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (source, code, n) in ledger::counts_since(&conn, hour_ago)? {
        let key = match settings.sources.contains_key(&source) {
            true => source,
            false => String::new(),
        };
        *refused.entry(key).or_default().entry(code).or_default() += n;
    }
    let mut sources = BTreeMap::new();
    for name in settings.sources.keys() {
        let bookmark = marks.get(name).copied().unwrap_or(0);
        let counts = browse::source_counts(&conn, name, bookmark)?;
        sources.insert(
            name.clone(),
            SourceStatus {
                bookmark,
                oldest_received_at: counts.oldest_us.map(singer::datetime::format_micros),
                newest_received_at: counts.newest_us.map(singer::datetime::format_micros),
                counts,
                refused_last_hour: refused.remove(name).unwrap_or_default(),
            },
        );
    }
    Ok(Status {
        producer,
        spool_path: std::path::absolute(&settings.spool_path)
            .unwrap_or_else(|_| settings.spool_path.clone())
            .display()
            .to_string(),
        spool_bytes: browse::bytes_in_use(&conn)?,
        max_spool_bytes: settings.max_spool_bytes,
        from_state: state_value.is_some(),
        sources,
        refused_last_hour_elsewhere: refused.remove("").unwrap_or_default(),
    })
}

/// Prints the status for a person.
pub fn write_text(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    writeln!(out, "spool      {}", s.spool_path)?;
    writeln!(
        out,
        "size       {} of {} bytes ({:.1}% of max_spool_bytes)",
        s.spool_bytes,
        s.max_spool_bytes,
        s.spool_bytes as f64 * 100.0 / s.max_spool_bytes.max(1) as f64
    )?;
    writeln!(out, "producer   {}", s.producer)?;
    let waiting = match s.from_state {
        true => "waiting after the state's bookmark",
        false => "waiting (no --state: everything held)",
    };
    writeln!(out, "\n{waiting}:")?;
    let mut rows = Vec::new();
    for (name, st) in &s.sources {
        let refused = st
            .refused_last_hour
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        rows.push(vec![
            name.clone(),
            st.counts.waiting.to_string(),
            st.counts.waiting_bytes.to_string(),
            st.counts.held.to_string(),
            st.counts.oldest_us.map_or("-".into(), show_time),
            st.counts.newest_us.map_or("-".into(), show_time),
            if refused.is_empty() {
                "-".into()
            } else {
                refused
            },
        ]);
    }
    super::write_table(
        out,
        &[
            "SOURCE",
            "WAITING",
            "BYTES",
            "HELD",
            "OLDEST",
            "NEWEST",
            "REFUSED (LAST HOUR)",
        ],
        &rows,
    )?;
    if !s.refused_last_hour_elsewhere.is_empty() {
        let other: Vec<String> = s
            .refused_last_hour_elsewhere
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect();
        writeln!(
            out,
            "\nrefused in the last hour, no configured source: {}",
            other.join(" ")
        )?;
    }
    Ok(())
}
