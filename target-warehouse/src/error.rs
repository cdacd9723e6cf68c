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
    #[error("line {line}: stream {stream:?}: {source}")]
    Table {
        line: u64,
        stream: String,
        source: Box<TableError>,
    },
    #[error("writing STATE to the output: {0}")]
    Output(std::io::Error),
    #[error("compacting {table}: {source}")]
    Compact {
        table: String,
        source: Box<TableError>,
    },
    #[error("reading the warehouse directory: {0}")]
    Warehouse(std::io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}
