//! Everything that stops a run. Each error names the input line and stream a user needs to act.

use crate::table::TableError;

/// Everything that stops a run. Each names the input line and stream a user needs to act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] singer::reader::ReadError),
    #[error("line {line}: stream {stream:?}: RECORD before its SCHEMA")]
    RecordBeforeSchema { line: u64, stream: String },
    #[error("line {line}: stream {stream:?}: record has no key property {key:?}")]
    MissingKey {
        line: u64,
        stream: String,
        key: String,
    },
    #[error(
        "line {line}: stream {stream:?}: key property {key:?} is null: an upserted table cannot \
         tell such records apart (they would collapse into one row); send them to another stream \
         (tap-webhook routes them to <stream>__rejected) or give them a key"
    )]
    NullKey {
        line: u64,
        stream: String,
        key: String,
    },
    #[error("line {line}: stream {stream:?}: SCHEMA is not an object schema: {detail}")]
    NotObjectSchema {
        line: u64,
        stream: String,
        detail: String,
    },
    #[error("line {line}: stream {stream:?}: invalid record: {detail}")]
    BadRecord {
        line: u64,
        stream: String,
        detail: String,
    },
    #[error("line {line}: stream {stream:?}: {what} are not supported")]
    Unsupported {
        line: u64,
        stream: String,
        what: &'static str,
    },
    #[error("line {line}: stream {stream:?}: BATCH file {file}: {detail}")]
    BadBatchFile {
        line: u64,
        stream: String,
        file: String,
        detail: String,
    },
    /// A row of a BATCH file failed as a RECORD would (`source` names the line and stream).
    #[error("BATCH file {file}, row {row}: {source}")]
    InBatch {
        file: String,
        row: u64,
        source: Box<Error>,
    },
    #[error("line {line}: stream {stream:?}: {source}")]
    Table {
        line: u64,
        stream: String,
        source: Box<TableError>,
    },
    #[error(
        "stream {stream:?}: the {what} after a commit failed; every batch was committed and \
         its STATE printed, nothing is lost (a later run retries it): {source}"
    )]
    Maintenance {
        stream: String,
        what: &'static str,
        source: Box<TableError>,
    },
    #[error("{0}")]
    Setting(String),
    #[error("writing STATE to the output: {0}")]
    Output(std::io::Error),
    #[error("compacting {table}: {source}")]
    Compact {
        table: String,
        source: Box<TableError>,
    },
    #[error("vacuuming {table}: {source}")]
    Vacuum {
        table: String,
        source: Box<TableError>,
    },
    #[error("reading the warehouse directory: {0}")]
    Warehouse(std::io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// The stream whose batch a write, upload or commit failed for: after such a failure the
    /// stream commits nothing more in the run (see `commits.rs`).
    pub fn failed_stream(&self) -> Option<&str> {
        match self {
            Error::Table { stream, .. } => Some(stream),
            Error::InBatch { source, .. } => source.failed_stream(),
            _ => None,
        }
    }
}
