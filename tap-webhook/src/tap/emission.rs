//! A run's output and where it stands: the writer, the bookmarks, the budget (`max_records`,
//! `max_seconds`, a stop signal) and when the next STATE is due (`state_interval_records`,
//! `state_interval_seconds`).
//!
//! The durability chain's second link lives here: a stream's bookmark moves to a record's
//! sequence only after that record is written, and a STATE is written from the bookmarks, so a
//! STATE always follows every record it covers (BRIEF §2).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use singer::writer::MessageWriter;

use super::outcome::{Summary, TapError};
use super::router::SourceStreams;
use super::state::state_value;
use crate::settings::Settings;
use crate::spool::reader::SpoolReader;

pub struct Emission<'s, W: Write> {
    settings: &'s Settings,
    pub w: MessageWriter<BufWriter<W>>,
    /// Each stream's bookmark: the sequence of its last record written.
    pub marks: BTreeMap<String, i64>,
    /// The spool's producer id, written in every STATE.
    producer: &'s str,
    emitted_total: u64,
    since_state: u64,
    progress: singer::metrics::Progress,
    started: Instant,
    /// False in a replay: its records cover a window, not everything up to a bookmark, so no
    /// STATE may claim they do (a replay's state handed to a regular run would prune messages
    /// before the window that the regular target has not committed).
    states: bool,
    /// When the last STATE was written (or the run started).
    last_state: Instant,
    /// Set by SIGTERM/SIGINT in a following run: stop before the next record.
    stop: Option<&'s AtomicBool>,
}

impl<'s, W: Write> Emission<'s, W> {
    pub fn new(
        settings: &'s Settings,
        out: W,
        marks: BTreeMap<String, i64>,
        producer: &'s str,
    ) -> Self {
        Emission {
            settings,
            w: MessageWriter::new(BufWriter::with_capacity(1 << 20, out)),
            marks,
            producer,
            emitted_total: 0,
            since_state: 0,
            progress: singer::metrics::Progress::new("tap"),
            started: Instant::now(),
            states: true,
            last_state: Instant::now(),
            stop: None,
        }
    }

    /// A run that writes no STATE (a replay).
    pub fn without_states(mut self) -> Self {
        self.states = false;
        self
    }

    /// The run also stops (between two records, with its final STATE) once `stop` is set.
    pub fn stop_on(&mut self, stop: &'s AtomicBool) {
        self.stop = Some(stop);
    }

    /// True once a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// True once a stop signal, `max_records` or `max_seconds` says the run must stop before
    /// the next record. The budget never cuts a replay: it writes no STATE to continue from,
    /// so a cut would silently give back only part of the window.
    pub fn out_of_budget(&self) -> bool {
        self.stopped()
            || (self.states
                && (self
                    .settings
                    .max_records
                    .is_some_and(|max| self.emitted_total >= max)
                    || self
                        .settings
                        .max_duration
                        .is_some_and(|d| self.started.elapsed() >= d)))
    }

    /// Moves the source's bookmark to `seq`.
    fn advance(&mut self, source: &str, seq: i64) {
        match self.marks.get_mut(source) {
            Some(mark) => *mark = seq,
            None => {
                self.marks.insert(source.to_owned(), seq);
            }
        }
    }

    /// Accounts for a record just written; writes a STATE every `state_interval_records`.
    fn emitted(&mut self, source: &str, seq: i64, body_bytes: usize) -> Result<(), TapError> {
        self.progress.add(1, body_bytes as u64);
        self.advance(source, seq);
        self.emitted_total += 1;
        self.since_state += 1;
        if self.since_state >= self.settings.state_interval_records {
            if self.states {
                self.write_state()?;
            }
        } else {
            self.state_if_due()?;
        }
        Ok(())
    }

    /// Writes a STATE when records were written since the last one and
    /// `state_interval_seconds` has passed.
    pub fn state_if_due(&mut self) -> Result<(), TapError> {
        let due = self
            .settings
            .state_interval()
            .is_some_and(|i| self.last_state.elapsed() >= i);
        if self.states && self.since_state > 0 && due {
            self.write_state()?;
        }
        Ok(())
    }

    /// Hands every record written so far to the reader (a following run, after each wake).
    pub fn flush(&mut self) -> Result<(), TapError> {
        self.w.flush()?;
        Ok(())
    }

    fn write_state(&mut self) -> Result<(), TapError> {
        self.w
            .write_state(&state_value(&self.marks, self.producer))?;
        self.w.flush()?;
        self.since_state = 0;
        self.last_state = Instant::now();
        Ok(())
    }

    /// Emits a source's messages in `(after, until]`, in sequence order, each to its stream;
    /// a dropped one only moves the bookmark. Returns true when the run's budget stopped it.
    pub fn stream(
        &mut self,
        spool: &SpoolReader,
        streams: &mut SourceStreams<'_>,
        summary: &mut Summary,
        after: i64,
        until: i64,
    ) -> Result<bool, TapError> {
        let source = streams.source();
        let mut stop = false;
        spool.for_each_ref::<TapError>(source, after, until, |m| {
            if self.out_of_budget() {
                stop = true;
                return Ok(false);
            }
            match streams.pick(&m) {
                Some(emitter) => {
                    emitter.emit(&mut self.w, &m, summary)?;
                    self.emitted(source, m.seq, m.body.len())?;
                }
                None => {
                    summary.dropped += 1;
                    self.advance(source, m.seq);
                }
            }
            Ok(true)
        })?;
        Ok(stop)
    }

    /// The final STATE: every stream's bookmark, even untouched ones, so none is lost.
    pub fn finish(mut self) -> Result<(), TapError> {
        if self.states && !self.marks.is_empty() {
            self.w
                .write_state(&state_value(&self.marks, self.producer))?;
        }
        self.w.flush()?;
        Ok(())
    }
}
