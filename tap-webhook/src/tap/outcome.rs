//! What a tap run did ([`Summary`]) or why it stopped ([`TapError`]).

use std::collections::BTreeMap;

use crate::spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Boxed: the error travels through every emission step's `Result`.
    #[error(transparent)]
    MissingKey(Box<MissingKey>),
    #[error(
        "source {source_name}, stream {stream}: message {message_id} (sequence {seq}): {detail}"
    )]
    Flattening {
        source_name: String,
        stream: String,
        message_id: String,
        seq: i64,
        /// The column and the two fields that would share it (`tap::flatten::Columns`).
        detail: String,
    },
    #[error("state: {0}")]
    State(String),
    #[error("schema prescan: {0}")]
    Prescan(String),
}

/// A message without a usable primary key when `on_missing_key` is `fail`.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}, stream {stream}: message {message_id} (sequence {seq}) lacks primary key {key}: it {reason}, and on_missing_key is \"fail\"")]
pub struct MissingKey {
    pub source_name: String,
    pub stream: String,
    pub message_id: String,
    pub seq: i64,
    /// The part, as the user wrote it (`"id"`, `pointer "/data/id"`).
    pub key: String,
    /// Why the value cannot be a key (`tap::key::check`).
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Records emitted per stream (rejected streams included).
    pub records: BTreeMap<String, u64>,
    pub pruned: u64,
    /// Messages passed over: filtered out by `include` / `exclude`, or of a deselected stream.
    pub dropped: u64,
    /// True when max_records or max_seconds ended the run before the high-water mark.
    pub truncated: bool,
}

impl Summary {
    pub(super) fn count_record(&mut self, stream: &str) {
        match self.records.get_mut(stream) {
            Some(n) => *n += 1,
            None => {
                self.records.insert(stream.to_owned(), 1);
            }
        }
    }
}
