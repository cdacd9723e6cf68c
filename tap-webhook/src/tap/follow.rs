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
//! follows at least every `state_interval_seconds` while records flow.
//!
//! Pruning happens only at a run's start: the tap never sees the target's state lines, so
//! mid-run it has no proof of what was committed. A follower is therefore meant to be
//! restarted (`max_seconds`, a timer) with the latest state, which prunes.

use std::io::Write;
use std::time::{Duration, Instant};

use super::emission::Emission;
use super::emitter::StreamEmitter;
use super::outcome::{Summary, TapError};
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
    emitters: &mut [StreamEmitter<'_>],
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use crate::settings::Settings;

    /// The run's output as it is written, shared with the test thread.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    fn insert(conn: &rusqlite::Connection, seq: i64, body: &str) {
        conn.execute(
            "INSERT INTO messages (seq, id, source, received_at, part, headers, query, body)
             VALUES (?1, ?2, 'data', ?1, 0, '{}', '{}', ?3)",
            rusqlite::params![seq, format!("m{seq}"), body],
        )
        .unwrap();
    }

    fn seqs(lines: &[Value]) -> Vec<i64> {
        lines
            .iter()
            .filter(|l| l["type"] == "RECORD")
            .map(|l| l["record"]["_sdc_sequence"].as_i64().unwrap())
            .collect()
    }

    /// Waits (bounded) until the output holds the record of sequence `seq`.
    fn wait_for(out: &Shared, seq: i64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = out.lines();
            if seqs(&lines).contains(&seq) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "seq {seq} never emitted: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_follower_emits_later_commits_in_order_types_new_fields_and_stops_with_a_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let conn = crate::spool::open(&path).unwrap();
        for seq in 1..=3 {
            insert(&conn, seq, &format!(r#"{{"i":{seq}}}"#));
        }
        let Value::Object(map) = json!({"spool_path": path.display().to_string(),
                                        "follow": true, "state_interval_seconds": 0.05})
        else {
            unreachable!()
        };
        let settings = Settings::from_map(map).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let out = Shared::default();
        let runner = {
            let (out, stop) = (out.clone(), stop.clone());
            std::thread::spawn(move || super::super::run_until(&settings, None, None, out, &stop))
        };
        // The backlog, then commits by another connection while the run follows.
        wait_for(&out, 3);
        for seq in 4..=6 {
            insert(&conn, seq, &format!(r#"{{"i":{seq}}}"#));
        }
        wait_for(&out, 6);
        insert(&conn, 7, r#"{"i":7,"late":"new field"}"#);
        wait_for(&out, 7);
        // A STATE follows the records without waiting for more (state_interval_seconds).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = out.lines();
            if l.last().is_some_and(|l| l["type"] == "STATE") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no STATE after the records: {l:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let summary = runner.join().unwrap().unwrap();
        assert_eq!(summary.records["data"], 7);
        let all = out.lines();
        assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());
        // The new field got a SCHEMA holding it before its record.
        let at = all
            .iter()
            .position(|l| l["record"]["_sdc_sequence"] == 7)
            .unwrap();
        let schema = all[..at]
            .iter()
            .rev()
            .find(|l| l["type"] == "SCHEMA")
            .unwrap();
        assert!(
            schema["schema"]["properties"].get("late").is_some(),
            "{schema}"
        );
        // Every STATE covers exactly the records before it; the last one all seven.
        let mut last = 0;
        for l in &all {
            match l["type"].as_str().unwrap() {
                "RECORD" => last = l["record"]["_sdc_sequence"].as_i64().unwrap(),
                "STATE" => assert_eq!(
                    l["value"]["bookmarks"]["data"]["replication_key_value"], last,
                    "{l}"
                ),
                _ => {}
            }
        }
        assert_eq!(all.last().unwrap()["type"], "STATE");
        assert_eq!(last, 7);
    }
}
