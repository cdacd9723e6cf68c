//! ACTIVATE_VERSION: once a stream's rows of a new table version are committed, the rows of
//! older versions (`_sdc_table_version` below it, or null) are marked deleted, in one commit, as
//! the SDK targets do: `_sdc_deleted_at` set (soft delete, [`crate::table::stamp`]; rows already
//! marked keep their time), or removed with `hard_delete: true`. Never before the new version's
//! rows are committed (the message loop flushes the stream first), so a sync that dies after
//! the message leaves the table whole.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::protocol::DeltaOperation;
use serde_json::{json, Map, Value as Json};

use super::Stream;
use crate::columns::ColType;
use crate::failpoint::{self, Step};
use crate::sdc::{DELETED_AT, TABLE_VERSION};
use crate::table::error::TableError;
use crate::table::marks::BatchMarks;
use crate::table::merge::rewrite_files;
use crate::table::stamp::stamp_rows;

impl Stream {
    /// Marks deleted (`hard`: removes) the rows whose `_sdc_table_version` is older than
    /// `version` (or null), in one commit carrying `state` (the latest Singer STATE) in its
    /// info. Every batch of the stream must be committed first.
    pub fn activate_version(
        &mut self,
        rt: &tokio::runtime::Runtime,
        version: i64,
        hard: bool,
        state: Option<Json>,
    ) -> Result<(), TableError> {
        let Some(col) = self
            .buf
            .registry
            .property(TABLE_VERSION)
            .and_then(|p| p.base)
        else {
            tracing::warn!(stream = %self.name, "ACTIVATE_VERSION without a _sdc_table_version column: nothing removed");
            return Ok(());
        };
        let col_name = self.buf.registry.specs[col].name.clone();
        let older = |b: &RecordBatch, r: usize| {
            let a = b.column(0); // the rewrite hands over the version column alone
            a.is_null(r)
                || (a.data_type() == &DataType::Int64
                    && a.as_primitive::<Int64Type>().value(r) < version)
        };
        let maybe_older = |stats: Option<&Json>| {
            let Some(s) = stats else { return true };
            let nulls = s
                .pointer(&format!("/nullCount/{col_name}"))
                .and_then(Json::as_i64);
            let min = s
                .pointer(&format!("/minValues/{col_name}"))
                .and_then(Json::as_i64);
            !(nulls == Some(0) && min.is_some_and(|m| m >= version))
        };
        let predicate = format!("{TABLE_VERSION} < {version} OR {TABLE_VERSION} IS NULL");
        let (rewrite, op, counted) = if hard {
            let rewrite = rewrite_files(
                &self.table,
                &self.buf.registry,
                &[col],
                maybe_older,
                |b, out| out.extend((0..b.num_rows()).map(|r| older(b, r))),
            )?;
            let op = DeltaOperation::Delete {
                predicate: Some(predicate),
            };
            (rewrite, op, "rowsRemoved")
        } else {
            // The column exists with the record metadata; otherwise it is added by this commit.
            self.buf.declare(DELETED_AT, ColType::Timestamp);
            let Some(deleted_col) = self.buf.registry.property(DELETED_AT).and_then(|p| p.base)
            else {
                return Ok(());
            };
            let now = crate::sdc::now_micros();
            let rewrite = stamp_rows(
                &self.table,
                &self.buf.registry,
                &[col, deleted_col],
                deleted_col,
                now,
                maybe_older,
                |b, out| {
                    let marked = b.column(1);
                    out.extend((0..b.num_rows()).map(|r| older(b, r) && marked.is_null(r)));
                },
            )?;
            let op = DeltaOperation::Update {
                predicate: Some(format!("({predicate}) AND {DELETED_AT} IS NULL")),
            };
            (rewrite, op, "rowsMarkedDeleted")
        };
        let (actions, removed, new_files) = (rewrite.actions, rewrite.removed, rewrite.new_files);
        if actions.is_empty() {
            return Ok(());
        }
        let mut info = Map::new();
        info.insert(
            "targetWarehouse".into(),
            json!({"stream": self.name, "activateVersion": version, counted: removed}),
        );
        if let Some(state) = state {
            info.insert("singerState".into(), state);
        }
        if let Err(source) = failpoint::hit(Step::ActivateVersion) {
            for path in &new_files {
                self.table.discard_new_file(path);
            }
            return Err(TableError::Io {
                table: self.name.clone(),
                source,
            });
        }
        // A commit that fails before its log entry removes the rewrite's new files itself.
        rt.block_on(self.table.commit(
            &mut self.buf.registry,
            usize::MAX,
            actions,
            op,
            &BatchMarks::default(),
            info,
        ))?;
        tracing::info!(stream = %self.name, version, rows = removed, hard, "activated version");
        Ok(())
    }
}
