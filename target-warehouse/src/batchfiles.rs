//! SDK `BATCH` messages: the files a manifest names, read row by row as record JSON texts that
//! the message loop (`ingest.rs`) loads exactly as RECORDs of the stream at the BATCH's line
//! (same replay skipping, same exactly-once bookkeeping: a BATCH is a sequence of records at one
//! input line).
//!
//! Encodings as singer-sdk writes them: `jsonl` (one JSON object a line), `gzip` or not, and
//! `parquet`. A jsonl file is gunzipped when it starts with gzip's magic bytes, whatever the
//! message says: singer-sdk 0.53 taps gzip their jsonl files even with `compression: none`. Manifest entries are local `file://` URLs (or plain paths); `s3://` ones are
//! refused with a clear error for now.

use std::io::{BufRead, BufReader, Read};

use deltalake::arrow::json::LineDelimitedWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use singer::message::BatchMessage;

use crate::error::Error;

/// Calls `row(file, row number from 1, record JSON text)` for every row of every file of the
/// manifest, in order. A file that cannot be read stops with [`Error::BadBatchFile`]; an error
/// from `row` comes back wrapped with its file and row ([`Error::InBatch`]).
pub fn for_each_row(
    line: u64,
    msg: &BatchMessage,
    mut row: impl FnMut(&str) -> Result<(), Error>,
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
        let path = local_path(url).map_err(|d| bad(url, d))?;
        let file = std::fs::File::open(path).map_err(|e| bad(url, e.to_string()))?;
        let mut n = 0u64;
        let mut each = |text: &str| -> Result<(), Error> {
            n += 1;
            row(text).map_err(|source| Error::InBatch {
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
                for text in BufReader::new(input).lines() {
                    let text = text.map_err(|e| bad(url, e.to_string()))?;
                    if !text.trim().is_empty() {
                        each(&text)?;
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
                        each(line)?;
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
        return Err(
            "only local file:// manifests are read (s3:// and other stores: not yet)".into(),
        );
    }
    Ok(std::path::PathBuf::from(url))
}
