//! The Singer tap: drains the spool into SCHEMA / RECORD / STATE lines.
//!
//! A run: read the incoming bookmarks ([`state`]); prune what they prove committed downstream;
//! note the spool's high-water mark; then per selected stream type the run's messages
//! ([`prescan`]) and emit every message after its bookmark up to that mark, in sequence order
//! ([`emitter`]: schema, selection, keys, record shape), with a STATE every N records and at the
//! end ([`emission`]); a following run then keeps emitting what arrives ([`follow`]).
//! STATE always follows the records it covers, and every identity field
//! comes from the stored message ([`record`]), so a replay from an older state emits identical
//! records. What a run did, or why it stopped: [`outcome`].

pub mod discover;
pub mod drain;
pub mod emission;
pub mod emitter;
pub mod flatten;
pub mod follow;
pub mod inference;
pub mod key;
pub mod origins;
pub mod outcome;
pub mod prescan;
pub mod record;
pub mod router;
pub mod sdk_json;
pub mod state;

use std::io::Write;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use crate::settings::{RecordShape, Settings};
use crate::spool::reader::SpoolReader;
use emission::Emission;
pub use outcome::{Summary, TapError};
use router::SourceStreams;
use singer::catalog::Catalog;

/// Runs the tap: emits what is pending (and, with `follow`, what arrives until a budget ends
/// the run) and returns what it did.
pub fn run(
    settings: &Settings,
    catalog: Option<&Catalog>,
    state: Option<&Value>,
    out: impl Write,
) -> Result<Summary, TapError> {
    run_until(settings, catalog, state, out, &AtomicBool::new(false))
}

/// [`run`], also stopping (between two records, with the final STATE) once `stop` is set: what
/// a SIGTERM or SIGINT does to a following run.
pub fn run_until(
    settings: &Settings,
    catalog: Option<&Catalog>,
    state: Option<&Value>,
    out: impl Write,
    stop: &AtomicBool,
) -> Result<Summary, TapError> {
    run_with(settings, catalog, state, None, out, stop)
}

/// Replays what the spool still holds of a receipt window `[since_us, until_us]`: the same
/// records as their first emission (`_sdc_sequence`, keys, `time_extracted` all come from the
/// stored message), ignoring any bookmark, pruning nothing, writing no STATE, never following.
pub fn replay(
    settings: &Settings,
    catalog: Option<&Catalog>,
    since_us: i64,
    until_us: i64,
    out: impl Write,
) -> Result<Summary, TapError> {
    let stop = AtomicBool::new(false);
    run_with(
        settings,
        catalog,
        None,
        Some((since_us, until_us)),
        out,
        &stop,
    )
}

fn run_with(
    settings: &Settings,
    catalog: Option<&Catalog>,
    state: Option<&Value>,
    window: Option<(i64, i64)>,
    out: impl Write,
    stop: &AtomicBool,
) -> Result<Summary, TapError> {
    let mut spool = SpoolReader::open(&settings.spool_path)?;
    // One source: its messages are (nearly) all the spool holds, so a scan in sequence order
    // beats walking the source's index and seeking every row.
    spool.scan_by_seq(settings.sources.len() == 1);
    if let Some((since, until)) = window {
        spool.receipt_window(since, until);
    }
    // Bookmarks of another spool's state are not ours: nothing is pruned on them.
    let marks = state::own_bookmarks(state, spool.producer())?;
    let mut summary = Summary::default();
    for source in settings.sources.values().filter(|_| window.is_none()) {
        if let Some(&mark) = marks.get(&source.name) {
            let n = spool.prune(&source.name, mark, settings.retention)?;
            if n > 0 {
                tracing::info!(stream = %source.name, pruned = n, bookmark = mark, "pruned messages the state proves committed");
            }
            summary.pruned += n as u64;
        }
    }
    let until = spool.high_water_mark()?;
    // A replay is a producer of its own for the target's marks: its records are a window, not
    // a gapless run from a bookmark, so under the spool's producer a target's mark would jump
    // past messages before the window that it never loaded, and the next regular run's records
    // would be skipped as replays (found by attack), or an earlier window replayed second.
    let replay_producer = window.map(|_| replay_producer(spool.producer()));
    let producer = replay_producer.as_deref().unwrap_or(spool.producer());
    let mut run = Emission::new(settings, out, marks, producer);
    if window.is_some() {
        run = run.without_states();
    }
    run.stop_on(stop);
    // Flattened columns are checked against those earlier runs loaded (`origins`), and so are
    // unflattened fields named like one (`a__b`): flattening can be turned on or off.
    let origins = settings
        .sources
        .values()
        .any(|s| s.record_shape == RecordShape::Unpacked)
        .then(|| origins::OriginStore::open(&settings.spool_path))
        .transpose()?;
    let mut emitters = Vec::with_capacity(settings.sources.len());
    for source in settings.sources.values() {
        let Some(mut streams) = SourceStreams::new(source, catalog, producer) else {
            continue;
        };
        streams.keep_origins(origins.as_ref());
        let after = run.marks.get(&source.name).copied().unwrap_or(0);
        if settings.schema_prescan && source.record_shape == RecordShape::Unpacked {
            prescan::prescan(&spool, &mut streams, after, until)?;
        }
        let stopped = run.stream(&spool, &mut streams, &mut summary, after, until)?;
        emitters.push(streams);
        if stopped {
            summary.truncated = true;
            break;
        }
    }
    if settings.follow && window.is_none() && !summary.truncated {
        let ended = follow::follow(&spool, &mut run, &mut emitters, &mut summary, until)?;
        tracing::info!(?ended, "stopped following the spool");
    }
    run.finish()?;
    Ok(summary)
}

/// The `_sdc_producer` of one replay's records: the spool's, marked as a replay, unique to
/// the run (`<producer>/replay-<uuid v7>`).
pub fn replay_producer(spool_producer: &str) -> String {
    format!("{spool_producer}/replay-{}", uuid::Uuid::now_v7())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A spool of `n` messages of the default source: sparse fields, a key that some lack, and
    /// bodies that are not JSON objects at `bad`.
    fn fill_spool(path: &std::path::Path, n: i64, bad: &[i64]) {
        let mut conn = crate::spool::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        for seq in 1..=n {
            let body = if bad.contains(&seq) {
                "[\"not an object\"]".to_owned()
            } else if seq % 997 == 0 {
                format!(r#"{{"x":{seq}}}"#)
            } else {
                format!(
                    r#"{{"id":"k{}","n":{seq},"f{}":"{}","nested":{{"a":[{seq}]}}}}"#,
                    seq % 5_000,
                    seq % 13,
                    "é\\\"q"
                )
            };
            tx.execute(
                "INSERT INTO messages (seq, id, source, received_at, delivery_id, part, headers, query, body)
                 VALUES (?1, ?2, 'data', ?1, ?3, 0, '{}', '{}', ?4)",
                rusqlite::params![
                    seq,
                    format!("m{seq}"),
                    (seq % 3 == 0).then(|| format!("d{seq}")),
                    body
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// The run's output lines, parsed, and its summary (or its error).
    fn output(settings: &Settings, state: Option<&Value>) -> (Vec<Value>, Result<Summary, String>) {
        let mut out = Vec::new();
        let summary = run(settings, None, state, &mut out).map_err(|e| e.to_string());
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, summary)
    }

    fn settings(config: Value) -> Settings {
        let Value::Object(map) = config else {
            unreachable!()
        };
        Settings::from_map(map).unwrap()
    }

    /// Every STATE's bookmark is the sequence of the last record before it (rejected ones
    /// included: they are emitted too); returns the number of STATE lines.
    fn states_follow_their_records(lines: &[Value]) -> usize {
        let mut last_seq = None;
        let mut states = 0;
        for l in lines {
            match l["type"].as_str().unwrap() {
                "RECORD" => last_seq = l["record"]["_sdc_sequence"].as_i64(),
                "STATE" => {
                    states += 1;
                    let mark = &l["value"]["bookmarks"]["data"]["replication_key_value"];
                    assert_eq!(mark.as_i64(), last_seq, "{l}");
                }
                _ => {}
            }
        }
        states
    }

    fn count(lines: &[Value], kind: &str, stream: &str) -> usize {
        lines
            .iter()
            .filter(|l| l["type"] == kind && l["stream"] == stream)
            .count()
    }

    #[test]
    fn states_budgets_rejections_and_failures_fall_where_the_records_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        // Three bodies that are not objects; every 997th message lacks `id`.
        fill_spool(&path, 5_000, &[3, 1_234, 4_999]);
        let spool = path.display().to_string();

        // One SCHEMA (the prescan typed the run), a STATE every 333 records and at the end.
        let (lines, summary) = output(
            &settings(json!({"spool_path": spool, "state_interval_records": 333})),
            None,
        );
        let summary = summary.unwrap();
        assert_eq!(count(&lines, "SCHEMA", "data"), 1);
        let props = &lines[0]["schema"]["properties"];
        for field in ["id", "n", "nested", "x", "f0", "f12", "__sdc_primary_key"] {
            assert!(props.get(field).is_some(), "{field} missing from {props}");
        }
        assert_eq!(count(&lines, "RECORD", "data"), 4_997);
        assert_eq!(count(&lines, "RECORD", "data__rejected"), 3);
        assert_eq!(summary.records["data"], 4_997);
        assert_eq!(states_follow_their_records(&lines), 5_000 / 333 + 1);
        assert!(!summary.truncated);

        // A primary key: messages without it are rejected beside the bodies that are not objects.
        let keyed = json!({"spool_path": spool, "state_interval_records": 1_000,
                           "sources": {"data": {"primary_key": "id"}}});
        let (lines, summary) = output(&settings(keyed), None);
        assert_eq!(count(&lines, "RECORD", "data__rejected"), 3 + 5);
        assert_eq!(summary.unwrap().records["data"], 5_000 - 8);
        states_follow_their_records(&lines);

        // The budget stops the run between two records, with a last STATE covering them.
        let (lines, summary) = output(
            &settings(json!({"spool_path": spool, "max_records": 2_500})),
            None,
        );
        assert!(summary.unwrap().truncated);
        assert_eq!(states_follow_their_records(&lines), 1);
        assert_eq!(
            lines.last().unwrap()["value"]["bookmarks"]["data"]["replication_key_value"],
            2_500
        );

        // A budget spent before the first message lacking its key stops the run there, no error.
        let fail = json!({"spool_path": spool, "max_records": 996, "state_interval_records": 100,
                          "sources": {"data": {"primary_key": "id", "on_missing_key": "fail"}}});
        let (_, summary) = output(&settings(fail.clone()), None);
        assert!(summary.unwrap().truncated);

        // Without the budget that message fails the run: the records before it, their STATEs,
        // then the error naming it; no final STATE past it.
        let mut fail = fail;
        fail.as_object_mut().unwrap().remove("max_records");
        let (lines, summary) = output(&settings(fail), None);
        let e = summary.unwrap_err();
        assert!(e.contains("m997") && e.contains("\"id\""), "{e}");
        assert_eq!(states_follow_their_records(&lines), 9);
        let last = lines.last().unwrap();
        assert_eq!(
            (
                last["type"].as_str(),
                last["record"]["_sdc_sequence"].as_i64()
            ),
            (Some("RECORD"), Some(996))
        );

        // From a bookmark: what it covers is pruned (retention 0) and the run starts after it.
        let state = json!({"bookmarks": {"data": {"_sdc_sequence": 3_100}}});
        let (lines, summary) = output(&settings(json!({"spool_path": spool})), Some(&state));
        let summary = summary.unwrap();
        assert_eq!(summary.pruned, 3_100);
        let first = lines.iter().find(|l| l["type"] == "RECORD").unwrap();
        assert_eq!(first["record"]["_sdc_sequence"], 3_101);
        assert_eq!(summary.records.values().sum::<u64>(), 1_900);
    }
}
