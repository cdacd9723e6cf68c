//! STATE messages held until the commits they cover are durable (BRIEF §2, link 3).
//!
//! A STATE arriving records, for each stream with rows not yet committed, the stream's row
//! count at that moment; it is printed once every one of those streams has committed that
//! many rows (older held states are implied by it and dropped). stdout carries bare state
//! values only, never `{}` and never the same value twice in a row.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Map, Value as Json};

use crate::error::Error;
use crate::stream::Stream;

/// A STATE waiting for commits: for each stream, how many rows must be committed first.
struct Held {
    value: Json,
    needs: Vec<(String, u64)>,
}

/// The STATEs received and not yet printed, and what was printed last.
#[derive(Default)]
pub struct States {
    held: Vec<Held>,
    /// The latest STATE received (printed or not), recorded in commit info.
    last: Option<Json>,
    last_printed: Option<Json>,
}

impl States {
    /// The latest STATE received, printed or not.
    pub fn last(&self) -> Option<Json> {
        self.last.clone()
    }

    /// Holds `value` until every stream's rows received so far are committed.
    pub fn receive(&mut self, value: Json, streams: &HashMap<String, Stream>) {
        let needs = streams
            .values()
            .filter_map(|s| Some((s.name().to_string(), s.uncommitted()?)))
            .collect();
        self.last = Some(value.clone());
        self.held.push(Held { value, needs });
    }

    /// Prints the newest held state whose rows are all committed; returns whether one was
    /// printed.
    pub fn emit(
        &mut self,
        streams: &HashMap<String, Stream>,
        output: &mut impl Write,
    ) -> Result<bool, Error> {
        let ready = self.held.iter().rposition(|h| {
            h.needs
                .iter()
                .all(|(name, n)| streams.get(name).is_none_or(|s| s.committed(*n)))
        });
        let Some(i) = ready else { return Ok(false) };
        let held: Vec<Held> = self.held.drain(..=i).collect();
        let Some(state) = held.into_iter().next_back().map(|h| h.value) else {
            return Ok(false);
        };
        let empty = state.as_object().is_some_and(Map::is_empty) || state.is_null();
        if empty || self.last_printed.as_ref() == Some(&state) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(&state).map_err(|e| Error::Output(e.into()))?;
        line.push(b'\n');
        output
            .write_all(&line)
            .and_then(|_| output.flush())
            .map_err(Error::Output)?;
        self.last_printed = Some(state);
        Ok(true)
    }
}
