//! The batches cut and not yet committed, in the order they were cut, and THE COMMIT RULE.
//!
//! Each batch's data file is written in the background while the next rows are parsed, and
//! batches are committed in the order they were cut, so a stream's commits (and the STATEs
//! they release) follow its input.
//!
//! The rule: a commit's high-water mark (its `txn` version, the highest tap `_sdc_sequence`
//! of its batch) may only cover records that are in that commit or in earlier committed ones.
//! A batch's mark covers its own rows and is never below the stream's committed mark
//! (`table/marks.rs`); what could break the rule is a later batch of a stream committing after
//! an earlier one of the same stream failed: its mark would cover the failed rows, and a rerun
//! would skip them as replays. So, here:
//! - after a failed write, upload or commit of a stream's batch (its data file, rewrites,
//!   deletion vectors, commit, or ACTIVATE_VERSION), that stream commits nothing more in the
//!   run: its batches already cut are discarded with their files ([`Commits::stream_failed`],
//!   checked by every commit, [`Commits::complete_next`]);
//! - the run then stops reading; the batches of the other streams cut before the failure are
//!   still committed, in order, each stream stopping at its own first failure
//!   ([`Commits::complete_next`] after [`Commits::stream_failed`]: bad input, too, leaves the
//!   batches cut before it to commit);
//! - STATEs are released by commits only (`states.rs`): a STATE that arrived after a failed
//!   stream's rows is never printed, and the run exits non-zero with the first error.
//!
//! A failed compaction or checkpoint after a commit is not a failure of the stream's batch:
//! that batch is committed and the maintenance changed no data (`stream/flush.rs`).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::error::Error;
use crate::stream::flush::{Completed, Flushing};
use crate::stream::Stream;

/// Batches whose data files are being written, oldest first, and the streams that failed.
#[derive(Default)]
pub struct Commits {
    queue: VecDeque<Flushing>,
    /// Streams whose batch failed to be written, uploaded or committed in this run.
    failed: HashSet<String>,
}

impl Commits {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Batches waiting to be committed.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// A batch just cut: committed after every batch cut before it.
    pub fn push(&mut self, batch: Flushing) {
        self.queue.push_back(batch);
    }

    /// Whether the oldest batch's data file is written (its commit would not wait).
    pub fn head_ready(&self) -> bool {
        self.queue.front().is_some_and(Flushing::is_ready)
    }

    /// A run stopped on `e`: when it is the failure of a stream's batch, that stream commits
    /// nothing more.
    pub fn stream_failed(&mut self, e: &Error) {
        if let Some(stream) = e.failed_stream() {
            self.failed.insert(stream.to_string());
        }
    }

    /// Commits the oldest batch of a stream that has not failed (waiting for its data file);
    /// batches of failed streams before it are discarded with their files. `None` when no
    /// batch is left. A batch that fails marks its stream failed.
    pub fn complete_next(
        &mut self,
        rt: &tokio::runtime::Runtime,
        streams: &mut HashMap<String, Stream>,
    ) -> Result<Option<Completed>, Error> {
        while let Some(f) = self.queue.pop_front() {
            let Some(stream) = streams.get_mut(&f.stream) else {
                continue;
            };
            if self.failed.contains(&f.stream) {
                tracing::warn!(stream = %f.stream, line = f.line, "a batch of a stream that failed is not committed");
                stream.discard(f);
                continue;
            }
            let (line, name) = (f.line, f.stream.clone());
            return match stream.complete(rt, f) {
                Ok(done) => Ok(Some(done)),
                Err(source) => {
                    let e = Error::Table {
                        line,
                        stream: name,
                        source: Box::new(source),
                    };
                    self.stream_failed(&e);
                    Err(e)
                }
            };
        }
        Ok(None)
    }

    /// The run failed: the batches not committed are dropped with their files.
    pub fn discard_all(&mut self, streams: &HashMap<String, Stream>) {
        for f in std::mem::take(&mut self.queue) {
            if let Some(stream) = streams.get(&f.stream) {
                stream.discard(f);
            }
        }
    }
}
