//! Bookmarks: what a Singer state says was committed downstream, and the state the tap writes.
//!
//! One bookmark per stream, the `_sdc_sequence` of the last record the target committed, and
//! the producer (the spool) whose sequences they are:
//! `{"bookmarks": {stream: {"replication_key": "_sdc_sequence", "replication_key_value": N}},
//!   "producer": "<spool's producer id>"}`.
//!
//! Bookmarks are sequences of one spool: a state written from another spool (two receivers,
//! a spool moved or restored) says nothing about this one's messages. Its bookmarks are
//! ignored, so everything this spool holds is emitted (the target deduplicates per producer),
//! and never pruned on. A state without `producer` was written before producer ids and is
//! taken as this spool's.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use singer::sdc;

use super::outcome::TapError;

/// The state value, when some tool handed the whole STATE message instead.
fn unwrap_message(state: &Value) -> &Value {
    state
        .get("value")
        .filter(|v| v.get("bookmarks").is_some())
        .unwrap_or(state)
}

/// The producer a state names, if any.
pub fn producer(state: Option<&Value>) -> Result<Option<&str>, TapError> {
    let Some(p) = state.and_then(|s| unwrap_message(s).get(PRODUCER_KEY)) else {
        return Ok(None);
    };
    p.as_str()
        .map(Some)
        .ok_or_else(|| TapError::State(format!("`{PRODUCER_KEY}` is not a string: {p}")))
}

/// The bookmarks this spool (producer `ours`) may start from and prune on: the state's, unless
/// it names another producer (then none, with a warning naming both).
pub fn own_bookmarks(state: Option<&Value>, ours: &str) -> Result<BTreeMap<String, i64>, TapError> {
    let marks = bookmarks(state)?;
    match producer(state)? {
        Some(theirs) if theirs != ours => {
            tracing::warn!(
                state_producer = theirs,
                spool_producer = ours,
                "the state's bookmarks belong to another spool (producer {theirs}; this spool is \
                 {ours}): ignored, every message this spool holds is emitted and none is pruned"
            );
            Ok(BTreeMap::new())
        }
        _ => Ok(marks),
    }
}

/// The key of the producer id in the state value.
const PRODUCER_KEY: &str = "producer";

/// The bookmark of each stream in a Singer state value (`{"bookmarks": {stream: {...}}}`).
pub fn bookmarks(state: Option<&Value>) -> Result<BTreeMap<String, i64>, TapError> {
    let mut out = BTreeMap::new();
    let Some(state) = state else { return Ok(out) };
    let state = unwrap_message(state);
    let Some(marks) = state.get("bookmarks") else {
        return Ok(out);
    };
    let marks = marks
        .as_object()
        .ok_or_else(|| TapError::State("`bookmarks` is not an object".into()))?;
    for (stream, mark) in marks {
        let value = mark
            .get("replication_key_value")
            .or_else(|| mark.get(sdc::SEQUENCE))
            .ok_or_else(|| {
                TapError::State(format!("bookmark of {stream} has no replication_key_value"))
            })?;
        let seq = value
            .as_i64()
            .or_else(|| value.as_str()?.parse().ok())
            .ok_or_else(|| {
                TapError::State(format!("bookmark of {stream} is not an integer: {value}"))
            })?;
        out.insert(stream.clone(), seq);
    }
    Ok(out)
}

/// The state value the tap writes: every stream's bookmark and the spool's producer id.
pub fn state_value(marks: &BTreeMap<String, i64>, producer: &str) -> Value {
    let b: serde_json::Map<String, Value> = marks
        .iter()
        .map(|(s, v)| {
            (
                s.clone(),
                json!({"replication_key": sdc::SEQUENCE, "replication_key_value": v}),
            )
        })
        .collect();
    json!({ "bookmarks": b, PRODUCER_KEY: producer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_read_both_spellings_and_reject_garbage() {
        let s = json!({"bookmarks": {"a": {"replication_key": "_sdc_sequence", "replication_key_value": 5},
                                      "b": {"_sdc_sequence": "7"}}});
        assert_eq!(
            bookmarks(Some(&s)).unwrap(),
            BTreeMap::from([("a".into(), 5), ("b".into(), 7)])
        );
        let wrapped = json!({"value": s});
        assert_eq!(bookmarks(Some(&wrapped)).unwrap().len(), 2);
        assert!(bookmarks(Some(
            &json!({"bookmarks": {"a": {"replication_key_value": "x"}}})
        ))
        .is_err());
        assert!(bookmarks(Some(&json!({}))).unwrap().is_empty());
    }

    #[test]
    fn the_state_written_reads_back() {
        let marks = BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 1 << 60)]);
        let state = state_value(&marks, "p-1");
        assert_eq!(bookmarks(Some(&state)).unwrap(), marks);
        assert_eq!(producer(Some(&state)).unwrap(), Some("p-1"));
        assert_eq!(own_bookmarks(Some(&state), "p-1").unwrap(), marks);
    }

    #[test]
    fn another_producers_bookmarks_are_not_ours_and_a_state_without_one_is() {
        let marks = BTreeMap::from([("a".to_owned(), 5)]);
        let theirs = state_value(&marks, "p-other");
        assert!(own_bookmarks(Some(&theirs), "p-1").unwrap().is_empty());
        let wrapped = json!({"type": "STATE", "value": theirs});
        assert!(own_bookmarks(Some(&wrapped), "p-1").unwrap().is_empty());
        let legacy = json!({"bookmarks": {"a": {"replication_key_value": 5}}});
        assert_eq!(own_bookmarks(Some(&legacy), "p-1").unwrap(), marks);
        assert!(own_bookmarks(None, "p-1").unwrap().is_empty());
        let bad = json!({"bookmarks": {}, "producer": 7});
        assert!(own_bookmarks(Some(&bad), "p-1").is_err());
    }
}
