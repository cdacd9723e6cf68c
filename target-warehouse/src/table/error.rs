//! What can go wrong with a table: each error names the table (and the file, version or
//! column) a user needs to act.

use deltalake::DeltaTableError;

use super::files;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: {source}")]
    Delta {
        table: String,
        source: DeltaTableError,
    },
    #[error("table {table}: {detail}")]
    Schema { table: String, detail: String },
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("table {table}: {source}")]
    Io {
        table: String,
        source: std::io::Error,
    },
    #[error("table {table}: deletion vector of {file}: {detail}")]
    DeletionVector {
        table: String,
        file: String,
        detail: String,
    },
    #[error(
        "table {table}: version {version}, committed by another writer since this commit read \
         the table, replaced {file}, which this commit removes; nothing was committed (a rerun \
         redoes it against the table as it is then)"
    )]
    Conflict {
        table: String,
        version: u64,
        file: String,
    },
    #[error(
        "table {table}: version {version} was committed, but version {winner}, committed by \
         another writer a moment before it, had replaced {file}, which version {version} \
         removes: rows of that file may now be in the table twice"
    )]
    ConflictAfterCommit {
        table: String,
        version: u64,
        winner: u64,
        file: String,
    },
    #[error(
        "table {table}: another load committed to the table since this batch read it, and this \
         commit depends on what it read ({detail}); nothing was committed (a rerun redoes it \
         against the table as it is then)"
    )]
    ConcurrentCommit { table: String, detail: String },
    #[error(
        "table {table}: created by another load at the same moment (its CREATE TABLE won); \
         nothing of this batch was committed and no STATE covering it was printed: a rerun \
         loads it into the stream's table (that one, or the next free directory when the \
         winner was another stream whose name sanitizes alike)"
    )]
    CreatedConcurrently { table: String },
    #[error("table {table}: high-water mark: {source}")]
    Mark {
        table: String,
        source: super::marks::MarkError,
    },
    #[error("table {table}: {source}")]
    Arrow {
        table: String,
        source: deltalake::arrow::error::ArrowError,
    },
}
