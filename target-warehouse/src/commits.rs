//! The batches cut and not yet committed, in the order they were cut: each one's data file is
//! written in the background while the next rows are parsed, and they are committed in this
//! order, so a stream's commits (and the STATEs they release) follow its input.

use std::collections::{HashMap, VecDeque};

use crate::error::Error;
use crate::stream::flush::Flushing;
use crate::stream::Stream;

/// Batches whose data files are being written, oldest first.
#[derive(Default)]
pub struct Commits {
    queue: VecDeque<Flushing>,
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

    /// Commits the oldest batch (waiting for its data file); returns the rows it wrote, `None`
    /// when there was none.
    pub fn complete_next(
        &mut self,
        rt: &tokio::runtime::Runtime,
        streams: &mut HashMap<String, Stream>,
    ) -> Result<Option<usize>, Error> {
        let Some(f) = self.queue.pop_front() else {
            return Ok(None);
        };
        let (line, name) = (f.line, f.stream.clone());
        let Some(stream) = streams.get_mut(&name) else {
            return Ok(None);
        };
        let rows = stream.complete(rt, f).map_err(|source| Error::Table {
            line,
            stream: name,
            source: Box::new(source),
        })?;
        Ok(Some(rows))
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
