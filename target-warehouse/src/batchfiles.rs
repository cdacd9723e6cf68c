//! SDK `BATCH` messages: the files a manifest names, read row by row as record JSON texts that
//! the message loop (`ingest.rs`) loads exactly as RECORDs of the stream at the BATCH's line
//! (same replay skipping, same exactly-once bookkeeping: a BATCH is a sequence of records at one
//! input line).
//!
//! Encodings as singer-sdk writes them: `jsonl` (one JSON object a line), `gzip` or not, and
//! `parquet`. A jsonl file is gunzipped when it starts with gzip's magic bytes, whatever the
//! message says: singer-sdk 0.53 taps gzip their jsonl files even with `compression: none`.
//!
//! Manifest entries are local `file://` URLs (or plain paths), read in place, or `s3://bucket/key`
//! objects, copied first to a local staging file through the warehouse's object-store settings
//! (`table/store.rs`, one place for how a store is reached) and then read by the same code as
//! a local file, so both have the same bounded memory (a jsonl line, a Parquet row group) and
//! the same errors. The staging copy is removed once read, whatever the outcome.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use deltalake::arrow::json::LineDelimitedWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use singer::message::BatchMessage;
use singer::reader::LineReader;

use crate::error::Error;
use crate::table::store;

/// How `s3://` manifest entries are reached: the warehouse's storage options and the runtime
/// that drives the object store from the synchronous message loop.
pub struct Stores<'a> {
    pub storage_options: &'a HashMap<String, String>,
    pub rt: tokio::runtime::Handle,
}

/// One row of a BATCH file.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The manifest entry, as the BATCH message names it.
    pub file: &'a str,
    /// From 1 within the file (blank jsonl lines are not rows).
    pub number: u64,
    /// The record's JSON text.
    pub text: &'a str,
    /// Why the row is not UTF-8 text (then `text` has U+FFFD for the bad bytes, to show, never
    /// to load): a jsonl row no record can be read from, as a row that is not JSON.
    pub not_utf8: Option<&'a str>,
}

/// Calls `row` for every row of every file of the manifest, in order. A file that cannot be
/// read stops with [`Error::BadBatchFile`]; an error from `row` comes back wrapped with its
/// file and row ([`Error::InBatch`]).
pub fn for_each_row(
    line: u64,
    msg: &BatchMessage,
    stores: &Stores<'_>,
    mut row: impl FnMut(Row<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let bad = |file: &str, detail: String| Error::BadBatchFile {
        line,
        stream: msg.stream.clone(),
        file: file.to_owned(),
        detail,
    };
    if let Some(other) = msg
        .encoding
        .compression
        .as_deref()
        .filter(|c| !matches!(*c, "gzip" | "none"))
    {
        return Err(bad(
            "(encoding)",
            format!("compression {other:?} is not gzip or none"),
        ));
    }
    for url in &msg.manifest {
        // Declared before `file` so the staging copy outlives the open file reading it.
        let staged;
        let path = if store::is_remote(Path::new(url)) {
            staged = Staged::fetch(url, stores).map_err(|d| bad(url, d))?;
            staged.0.clone()
        } else {
            local_path(url).map_err(|d| bad(url, d))?
        };
        let file = std::fs::File::open(path).map_err(|e| bad(url, e.to_string()))?;
        let mut n = 0u64;
        let mut each = |text: &str, not_utf8: Option<&str>| -> Result<(), Error> {
            n += 1;
            let at = Row {
                file: url,
                number: n,
                text,
                not_utf8,
            };
            row(at).map_err(|source| Error::InBatch {
                file: url.clone(),
                row: n,
                source: Box::new(source),
            })
        };
        match msg.encoding.format.as_str() {
            "jsonl" => {
                let mut file = BufReader::new(file);
                let gzip = file
                    .fill_buf()
                    .map_err(|e| bad(url, e.to_string()))?
                    .starts_with(&[0x1f, 0x8b]);
                let input: Box<dyn Read> = if gzip {
                    Box::new(flate2::read::MultiGzDecoder::new(file))
                } else {
                    Box::new(file)
                };
                // By bytes, not `lines()`: a row that is not UTF-8 is one bad row, not a bad file.
                // Singer's one line rule (blank lines skipped, CR cut, a line past the limit an
                // error naming it, so a file without newlines is never read whole into memory).
                let mut lines = LineReader::new(BufReader::new(input));
                while let Some(l) = lines.next_line().map_err(|e| bad(url, e.to_string()))? {
                    match std::str::from_utf8(l.bytes) {
                        Ok(t) => each(t, None)?,
                        Err(e) => {
                            let why = format!("the row is not UTF-8 text: {e}");
                            each(&String::from_utf8_lossy(l.bytes), Some(&why))?;
                        }
                    }
                }
            }
            "parquet" => {
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .map_err(|e| bad(url, e.to_string()))?;
                for batch in reader {
                    let batch = batch.map_err(|e| bad(url, e.to_string()))?;
                    let mut out = LineDelimitedWriter::new(Vec::new());
                    out.write(&batch).map_err(|e| bad(url, e.to_string()))?;
                    out.finish().map_err(|e| bad(url, e.to_string()))?;
                    let bytes = out.into_inner();
                    let text = String::from_utf8(bytes).map_err(|e| bad(url, e.to_string()))?;
                    for line in text.lines() {
                        each(line, None)?;
                    }
                }
            }
            other => {
                return Err(bad(
                    url,
                    format!("format {other:?} is not jsonl or parquet"),
                ))
            }
        }
    }
    Ok(())
}

/// The local path of a manifest entry.
fn local_path(url: &str) -> Result<std::path::PathBuf, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        let decoded = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|e| e.to_string())?;
        return Ok(std::path::PathBuf::from(decoded.as_ref()));
    }
    if url.contains("://") {
        return Err("only file:// and s3:// manifest entries are read".into());
    }
    Ok(std::path::PathBuf::from(url))
}

/// A local copy of an object-store manifest entry, removed when dropped.
struct Staged(PathBuf);

impl Staged {
    fn fetch(url: &str, stores: &Stores<'_>) -> Result<Staged, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = store::staging_dir().map_err(|e| format!("staging directory: {e}"))?;
        let staged = Staged(dir.join(format!(
            "batch-{}.part",
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        let copy = store::download(url, stores.storage_options, &staged.0);
        // `block_in_place` as in `store::Remote`: correct whether or not this thread is a
        // runtime worker.
        tokio::task::block_in_place(|| stores.rt.block_on(copy))?;
        Ok(staged)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %self.0.display(), error = %e, "could not remove a staged BATCH file");
            }
        }
    }
}
