//! A stream's high-water marks: the Delta `txn {appId: "target-warehouse:<stream>", version}`
//! each commit carries, the highest tap `_sdc_sequence` the table holds. A rerun skips input
//! records at or below the mark read at open (replays); each commit carries the highest
//! sequence of its own batch, never less than the mark already committed.
//!
//! The commit rule (a mark covers only records in its commit or in earlier committed ones) is
//! kept by the order of commits, see `commits.rs`; this is the one place marks are read,
//! compared and carried, so marks per producer (several `txn` actions per commit) change here.

use deltalake::kernel::Transaction;
use deltalake::logstore::LogStore;
use deltalake::table::state::DeltaTableState;
use deltalake::DeltaTableError;

/// The Delta `txn` app id of a stream.
pub fn app_id(stream: &str) -> String {
    format!("target-warehouse:{stream}")
}

/// The marks of one table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    /// Committed by earlier runs: input records at or below it are replays.
    replay: Option<i64>,
    /// The latest committed (carried into commits that add no sequences).
    committed: Option<i64>,
}

impl Marks {
    /// The marks a table's log holds for `stream`.
    pub async fn read(
        state: &DeltaTableState,
        log_store: &dyn LogStore,
        stream: &str,
    ) -> Result<Marks, DeltaTableError> {
        let mark = state.transaction_version(log_store, app_id(stream)).await?;
        Ok(Marks {
            replay: mark,
            committed: mark,
        })
    }

    /// The mark earlier runs committed (for the log).
    pub fn replay(&self) -> Option<i64> {
        self.replay
    }

    /// Whether a record with tap sequence `seq` was committed by an earlier run.
    pub fn is_replay(&self, seq: Option<i64>) -> bool {
        matches!((seq, self.replay), (Some(s), Some(w)) if s <= w)
    }

    /// The `txn` a commit carries: its batch's highest tap sequence (`batch`), never below the
    /// mark already committed; `None` when neither exists.
    pub fn transaction(&self, stream: &str, batch: Option<i64>) -> Option<Transaction> {
        self.next(batch)
            .map(|v| Transaction::new(app_id(stream), v))
    }

    /// A commit carrying [`Self::transaction`] of `batch` is in the log.
    pub fn committed(&mut self, batch: Option<i64>) {
        self.committed = self.next(batch);
    }

    fn next(&self, batch: Option<i64>) -> Option<i64> {
        match (batch, self.committed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The highest tap sequence among the rows of the batch being built: the mark of its commit.
#[derive(Debug, Default)]
pub struct BatchMark(Option<i64>);

impl BatchMark {
    pub fn observe(&mut self, seq: Option<i64>) {
        self.0 = match (self.0, seq) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The batch is cut: its mark goes with it, the next batch starts without one.
    pub fn take(&mut self) -> Option<i64> {
        self.0.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_carries_its_batch_mark_never_below_the_committed_one() {
        let mut marks = Marks {
            replay: Some(10),
            committed: Some(10),
        };
        assert!(marks.is_replay(Some(10)) && !marks.is_replay(Some(11)));
        assert!(
            !marks.is_replay(None),
            "records without a tap sequence are never replays"
        );
        let v = |t: Option<Transaction>| t.map(|t| t.version);
        assert_eq!(v(marks.transaction("s", Some(15))), Some(15));
        assert_eq!(
            v(marks.transaction("s", None)),
            Some(10),
            "compaction keeps the mark"
        );
        assert_eq!(v(marks.transaction("s", Some(3))), Some(10));
        marks.committed(Some(15));
        assert_eq!(v(marks.transaction("s", None)), Some(15));
        assert!(
            !marks.is_replay(Some(12)),
            "replays are judged by the mark read at open"
        );
        let mut batch = BatchMark::default();
        batch.observe(Some(4));
        batch.observe(None);
        batch.observe(Some(2));
        assert_eq!((batch.take(), batch.take()), (Some(4), None));
        assert_eq!(v(Marks::default().transaction("s", None)), None);
    }
}
