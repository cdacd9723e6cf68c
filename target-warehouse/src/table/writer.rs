//! The data file of a batch, written on a thread of its own while the batch is parsed: Parquet
//! encoding, the costliest step of a load, overlaps the parsing of the next rows on the other
//! core. The file is written in parts and merged when the batch ends (see `parts.rs`).

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Add;

use super::error::TableError;
use super::stats::BatchStats;
use super::{parts, Table};

/// The data file of a commit being written (see [`Table::spawn_writer`]).
pub struct FileWriter {
    tx: std::sync::mpsc::SyncSender<(RecordBatch, BatchStats)>,
    file: ClosedFile,
}

impl FileWriter {
    /// Hands a batch to the writer (waits while it is busy with the previous one); `false`
    /// when the writer has stopped on an error, which [`ClosedFile::join`] returns.
    pub fn send(&mut self, batch: RecordBatch) -> bool {
        // Computed here, on the parsing thread: one pass over the values present, cheaper
        // than on the encoding thread, which would walk the batch again.
        let stats = BatchStats::of(&batch);
        self.tx.send((batch, stats)).is_ok()
    }

    /// No more batches: the writer finishes the file.
    pub fn close(self) -> ClosedFile {
        self.file
    }
}

/// A commit's data file whose writing is ending (see [`FileWriter::close`]): the file written
/// batch by batch, then its parts (batches of different schemas) merged.
pub struct ClosedFile {
    table: String,
    dir: std::path::PathBuf,
    handle: std::thread::JoinHandle<Result<Vec<Add>, TableError>>,
}

impl ClosedFile {
    /// Whether [`Self::join`] would not wait.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The file's `add` actions: one, or its parts when they could not be merged.
    pub fn join(self) -> Result<Vec<Add>, TableError> {
        self.handle.join().unwrap_or_else(|_| {
            Err(TableError::Schema {
                table: self.table,
                detail: "the data file writer panicked".into(),
            })
        })
    }

    /// Waits for the file and removes it: its batch will not be committed (the run failed).
    pub fn discard(self) {
        let dir = self.dir.clone();
        for add in self.join().unwrap_or_default() {
            let _ = std::fs::remove_file(dir.join(&add.path));
        }
    }
}

impl Table {
    /// Opens the data file of a commit, written on a thread of its own from the batches
    /// [sent](FileWriter::send) to it. [`ClosedFile::join`] gives its `add` actions, to
    /// [`publish`](Self::publish) (an object-store table's file is staged locally).
    pub fn spawn_writer(&self) -> Result<FileWriter, TableError> {
        // Named now, on the parsing thread: file names follow the order batches began in.
        let (dir, name) = self.new_file()?;
        // One batch waiting while one is encoded: parsing runs ahead by at most that much.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let at = dir.clone();
        let handle = std::thread::spawn(move || {
            let written = parts::write_parts(&at, rx)?;
            Ok(parts::merge_parts(&at, &name, written)?)
        });
        Ok(FileWriter {
            tx,
            file: ClosedFile {
                table: self.name(),
                dir,
                handle,
            },
        })
    }
}
