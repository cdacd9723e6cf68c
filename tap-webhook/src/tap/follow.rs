//! A following run (`follow`, `--follow`): after the backlog, the run keeps emitting each new
//! message as soon as its spool commit is visible, until a stop signal, `max_seconds` or
//! `max_records`; then the run's final STATE, exit 0.
//!
//! Waking: every [`POLL`] the run reads SQLite's `data_version` (a counter in the WAL's shared
//! memory that moves when another connection commits: the receiver, a queue drain), which costs
//! no I/O, so an idle follower sleeps; every [`FALLBACK`] it reads the high-water mark anyway.
//! Each wake reads a new mark and emits `(previous mark, new mark]`, stream by stream, under the
//! same snapshot rule as a run (sequences are assigned inside the write lock, so every message
//! up to a visible mark is visible too). The output is flushed after each wake and a STATE
//! follows at least every `state_interval_seconds` while records flow. A spool file removed or
//! replaced under the run fails it (it would wait on a file nothing writes any more).
//!
//! Pruning happens only at a run's start: the tap never sees the target's state lines, so
//! mid-run it has no proof of what was committed. A follower is therefore meant to be
//! restarted (`max_seconds`, a timer) with the latest state, which prunes.

use std::io::Write;
use std::time::{Duration, Instant};

use super::emission::Emission;
use super::outcome::{Summary, TapError};
use super::router::SourceStreams;
use crate::spool::reader::SpoolReader;

/// How often an idle follower looks at `data_version`: the added latency, at ~20 cheap reads
/// a second.
pub const POLL: Duration = Duration::from_millis(50);

/// The high-water mark is read at least this often even when `data_version` did not move (a
/// writer the counter would miss, e.g. on a file system without shared memory).
pub const FALLBACK: Duration = Duration::from_secs(1);

/// Why a following run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// SIGTERM / SIGINT.
    Signal,
    /// `max_seconds` or `max_records`.
    Budget,
}

/// Follows the spool past `until` (the mark the backlog was emitted up to) with every
/// selected stream's emitter, until the run is stopped.
pub fn follow<W: Write>(
    spool: &SpoolReader,
    run: &mut Emission<'_, W>,
    emitters: &mut [SourceStreams<'_>],
    summary: &mut Summary,
    mut until: i64,
) -> Result<Ended, TapError> {
    for e in emitters.iter_mut() {
        e.follow();
    }
    run.flush()?;
    let mut version = spool.data_version()?;
    let mut looked = Instant::now();
    loop {
        if run.stopped() {
            return Ok(Ended::Signal);
        }
        if run.out_of_budget() {
            summary.truncated = true;
            return Ok(Ended::Budget);
        }
        let now = spool.data_version()?;
        if now == version && looked.elapsed() < FALLBACK {
            // The last records of a burst get their STATE while the run waits.
            run.state_if_due()?;
            std::thread::sleep(POLL);
            continue;
        }
        version = now;
        looked = Instant::now();
        spool.still_at_path()?;
        let mark = spool.high_water_mark()?;
        if mark > until {
            for emitter in emitters.iter_mut() {
                if run.stream(spool, emitter, summary, until, mark)? {
                    // Stopped between two records: the final STATE covers what was written.
                    return Ok(if run.stopped() {
                        Ended::Signal
                    } else {
                        summary.truncated = true;
                        Ended::Budget
                    });
                }
            }
            until = mark;
        }
        run.state_if_due()?;
        run.flush()?;
    }
}
