//! Which payload field each flattened column holds, kept in the spool across runs
//! (`flattened_columns`): a run only sees its own messages, and `a__b` arriving in one run
//! after `{"a": {"b": …}}` was loaded by an earlier one would otherwise mix two fields in one
//! column unnoticed ([`super::flatten::Columns`]).
//!
//! A column is written here before the record that brought it is emitted, so every record a
//! STATE covers has its columns here: a later run, from that state, knows them.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::spool::{self, SpoolError};

/// A column and the JSON pointer of the field it holds (`None`: the top-level field of its
/// name).
pub type Origin = (String, Option<String>);

/// The spool's `flattened_columns`, on a connection of its own (the run's reader keeps its
/// snapshot; these few writes wait for the receiver's like any other).
pub struct OriginStore {
    conn: Connection,
    path: PathBuf,
}

impl OriginStore {
    pub fn open(path: &Path) -> Result<OriginStore, SpoolError> {
        Ok(OriginStore {
            conn: spool::open(path)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The stream's columns and their fields, as earlier runs noted them.
    pub fn load(&self, stream: &str) -> Result<Vec<Origin>, SpoolError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, origin FROM flattened_columns WHERE stream = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![stream], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Notes columns first seen in this run (one transaction).
    pub fn save(&self, stream: &str, columns: &[Origin]) -> Result<(), SpoolError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO flattened_columns (stream, name, origin) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| self.err(e))?;
            for (name, origin) in columns {
                st.execute(params![stream, name, origin])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
}
