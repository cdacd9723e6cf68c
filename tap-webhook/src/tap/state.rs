//! Bookmarks: what a Singer state says was committed downstream, and the state the tap writes.
//!
//! One bookmark per stream, the `_sdc_sequence` of the last record the target committed:
//! `{"bookmarks": {stream: {"replication_key": "_sdc_sequence", "replication_key_value": N}}}`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use singer::sdc;

use super::outcome::TapError;

/// The bookmark of each stream in a Singer state value (`{"bookmarks": {stream: {...}}}`).
pub fn bookmarks(state: Option<&Value>) -> Result<BTreeMap<String, i64>, TapError> {
    let mut out = BTreeMap::new();
    let Some(state) = state else { return Ok(out) };
    // Some tools hand the whole STATE message instead of its value.
    let state = state
        .get("value")
        .filter(|v| v.get("bookmarks").is_some())
        .unwrap_or(state);
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

/// The state value the tap writes: every stream's bookmark.
pub fn state_value(marks: &BTreeMap<String, i64>) -> Value {
    let b: serde_json::Map<String, Value> = marks
        .iter()
        .map(|(s, v)| {
            (
                s.clone(),
                json!({"replication_key": sdc::SEQUENCE, "replication_key_value": v}),
            )
        })
        .collect();
    json!({ "bookmarks": b })
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
        assert_eq!(bookmarks(Some(&state_value(&marks))).unwrap(), marks);
    }
}
