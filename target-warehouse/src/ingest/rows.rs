//! Records that do not come as RECORD lines, and records the target cannot store: a BATCH
//! message's rows, each loaded as a RECORD of its stream at the BATCH's input line
//! (`batchfiles.rs` reads them), and, with `on_invalid_record: quarantine`, the move of an
//! invalid record (a RECORD's or a BATCH row's) into `<stream>__rejected` (`quarantine.rs`).
//!
//! A quarantined row goes through the same loading as any record (`Ingest::on_fields`): same
//! replay skipping by `_sdc_sequence`, same commits and marks, same STATE holding, so the
//! quarantine table is as exactly-once as the stream's own.

use std::io::Write;

use singer::message::BatchMessage;

use super::Ingest;
use crate::batchfiles::{self, Row};
use crate::error::Error;
use crate::quarantine::{self, Origin};
use crate::settings::OnInvalidRecord;

impl<W: Write> Ingest<'_, W> {
    /// Loads every row of a BATCH message's files as a RECORD of its stream at `line`
    /// (replay skips and marks alike); an invalid row is quarantined or stops the load with
    /// its file and row.
    pub(super) fn on_batch(&mut self, line: u64, b: BatchMessage) -> Result<(), Error> {
        if !self.streams.contains_key(&b.stream) {
            return Err(Error::RecordBeforeSchema {
                line,
                stream: b.stream,
            });
        }
        let settings = self.settings;
        let stores = batchfiles::Stores {
            storage_options: &settings.storage_options,
            rt: self.rt.handle().clone(),
        };
        batchfiles::for_each_row(line, &b, &stores, |at: Row<'_>| {
            let not_object = |e: &dyn std::fmt::Display| Error::BadRecord {
                line,
                stream: b.stream.clone(),
                detail: format!("{}: {e}", quarantine::NOT_AN_OBJECT),
            };
            let loaded = match at.not_utf8 {
                Some(why) => Err(not_object(&why)),
                None => match crate::record::split_fields(at.text, self.width) {
                    Ok(fields) => {
                        self.on_fields(line, &b.stream, fields, None, None, at.text.len())
                    }
                    Err(e) => Err(not_object(&e)),
                },
            };
            let origin = Origin::BatchRow {
                line,
                file: at.file,
                row: at.number,
                text: at.text,
            };
            self.quarantine_if_invalid(origin, loaded)
        })
    }

    /// With `on_invalid_record: quarantine`, turns the error of a record the target cannot
    /// store into a row of `<stream>__rejected`; any other result passes. The key checks come
    /// before anything of a record is buffered, so nothing of it is kept in its stream.
    pub(super) fn quarantine_if_invalid(
        &mut self,
        origin: Origin<'_>,
        result: Result<(), Error>,
    ) -> Result<(), Error> {
        let stream = match &result {
            Err(Error::MissingKey { stream, .. } | Error::NullKey { stream, .. }) => stream,
            Err(Error::BadRecord { stream, detail, .. })
                if detail.starts_with(quarantine::NOT_AN_OBJECT) =>
            {
                stream
            }
            _ => return result,
        };
        if self.settings.on_invalid_record != OnInvalidRecord::Quarantine {
            return result;
        }
        let stream = stream.clone();
        let Err(e) = result else { return Ok(()) };
        // The reason reads as the error `fail` would stop with (a BATCH row's names its file).
        let reason = match origin {
            Origin::Record { .. } => e.to_string(),
            Origin::BatchRow { file, row, .. } => Error::InBatch {
                file: file.to_owned(),
                row,
                source: Box::new(e),
            }
            .to_string(),
        };
        self.quarantine(origin, &stream, &reason)
    }

    /// Writes a record the target cannot store to `<stream>__rejected` (`quarantine.rs`).
    fn quarantine(&mut self, origin: Origin<'_>, stream: &str, reason: &str) -> Result<(), Error> {
        let line = origin.line();
        let q = quarantine::stream_name(stream);
        if !self.streams.contains_key(&q) {
            self.on_schema(line, quarantine::schema_message(&q))?;
        }
        tracing::warn!(stream, line, reason, "record quarantined in {q}");
        let text = quarantine::record(stream, reason, origin);
        let fields =
            crate::record::split_fields(&text, self.width).map_err(|e| Error::BadRecord {
                line,
                stream: q.clone(),
                detail: e.to_string(),
            })?;
        self.on_fields(line, &q, fields, None, None, text.len())
    }
}
