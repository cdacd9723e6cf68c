//! A table's high-water marks, one per producer: the Delta `txn {appId, version}` actions its
//! commits carry, each the highest tap `_sdc_sequence` of one producer the table holds. The one
//! place marks are read, compared and carried (the producer contract, docs/ and BRIEF §2.6).
//!
//! - A producer is one sequence space (one spool), named by the record property
//!   `_sdc_producer` (a string). Its mark is `appId = "target-warehouse:<stream>:<producer>"`.
//!   Records without a producer (any other tap) share the stream's legacy mark,
//!   `appId = "target-warehouse:<stream>"`, as before producers existed.
//! - A record is a replay, and skipped, when its tap sequence is at or below its producer's
//!   mark as read before the run loaded any of that producer's records; a producer without a
//!   mark of its own falls back on the stream's legacy mark, so tables loaded before producers
//!   existed keep skipping what they hold. A producer's mark is read from the log when its
//!   first record arrives (a run sees few producers; the log is read once for each).
//! - A commit carries one `txn` per producer whose records it holds (the legacy one for
//!   records without a producer): the highest sequence of that producer in the commit or in
//!   earlier commits of the run, never below the mark the table held for it. A commit without
//!   records (compaction, ACTIVATE_VERSION) carries none: a table's mark for an app id is its
//!   latest `txn`, whichever commit carried it.
//!
//! Two loads of one producer at once both carry its `txn`: deltalake refuses the second
//! commit (a concurrent transaction of the same app id), so a producer's mark never covers
//! another load's records. Two producers' loads commit side by side.
//!
//! The commit rule (a mark covers only records in its commit or in earlier committed ones) is
//! kept by the order of commits, see `commits.rs`.

use std::collections::HashMap;

use deltalake::kernel::Transaction;
use deltalake::logstore::LogStore;
use deltalake::table::state::DeltaTableState;
use deltalake::DeltaTableError;

/// The record property naming a record's producer (one spool: one sequence space).
pub use singer::sdc::PRODUCER;

/// Distinct producers one stream may see in one run: each costs a read of the log and a `txn`
/// in every commit holding its records, and a producer names a spool, not a record.
pub const MAX_PRODUCERS: usize = 1000;

/// The Delta `txn` app id of a stream's producer (`None`: records without a producer).
pub fn app_id(stream: &str, producer: Option<&str>) -> String {
    match producer {
        Some(p) => format!("target-warehouse:{stream}:{p}"),
        None => format!("target-warehouse:{stream}"),
    }
}

/// One app id's marks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    /// Input records of this producer at or below it are replays.
    replay: Option<i64>,
    /// The latest this app id carries in the table (its commits never go below it).
    committed: Option<i64>,
}

/// The marks of one table.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    stream: String,
    /// Records without a producer; also the replay mark of a producer without its own.
    legacy: Mark,
    /// Producers whose mark was read (or found absent), by id.
    producers: HashMap<String, Mark>,
}

/// Why a producer's mark is not known.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    #[error(
        "more than {MAX_PRODUCERS} distinct {PRODUCER} values in one stream in one run: \
         {PRODUCER} names a spool (one sequence space), not a record"
    )]
    TooManyProducers,
}

impl Marks {
    /// The marks of a table that does not exist yet: none.
    pub fn new(stream: &str) -> Marks {
        Marks {
            stream: stream.to_string(),
            ..Marks::default()
        }
    }

    /// The stream's legacy mark in a table's log (producers' marks are read as they appear,
    /// [`Self::learn`]).
    pub async fn read(
        state: &DeltaTableState,
        log_store: &dyn LogStore,
        stream: &str,
    ) -> Result<Marks, DeltaTableError> {
        let mark = state
            .transaction_version(log_store, app_id(stream, None))
            .await?;
        Ok(Marks {
            stream: stream.to_string(),
            legacy: Mark {
                replay: mark,
                committed: mark,
            },
            producers: HashMap::new(),
        })
    }

    /// The legacy mark earlier runs committed (for the log).
    pub fn replay(&self) -> Option<i64> {
        self.legacy.replay
    }

    /// Whether `producer`'s mark is known (read, or found absent).
    pub fn knows(&self, producer: &str) -> bool {
        self.producers.contains_key(producer)
    }

    /// Reads `producer`'s mark from the table's log (`None`: the table does not exist yet).
    pub async fn learn(
        &mut self,
        table: Option<(&DeltaTableState, &dyn LogStore)>,
        producer: &str,
    ) -> Result<(), MarkError> {
        if self.producers.len() >= MAX_PRODUCERS {
            return Err(MarkError::TooManyProducers);
        }
        let own = match table {
            Some((state, log_store)) => {
                state
                    .transaction_version(log_store, app_id(&self.stream, Some(producer)))
                    .await?
            }
            None => None,
        };
        let mark = Mark {
            replay: own.or(self.legacy.replay),
            committed: own,
        };
        self.producers.insert(producer.to_string(), mark);
        Ok(())
    }

    /// Whether a record of `producer` with tap sequence `seq` was committed by an earlier run
    /// (the producer's mark must be known, see [`Self::learn`]).
    pub fn is_replay(&self, producer: Option<&str>, seq: Option<i64>) -> bool {
        let mark = match producer {
            Some(p) => self.producers.get(p).unwrap_or(&self.legacy),
            None => &self.legacy,
        };
        matches!((seq, mark.replay), (Some(s), Some(w)) if s <= w)
    }

    /// The `txn` actions a commit of `batch` carries, one per app id whose records it holds.
    pub fn transactions(&self, batch: &BatchMarks) -> Vec<Transaction> {
        batch
            .iter()
            .map(|(producer, seq)| {
                let version = self.next(producer, seq);
                Transaction::new(app_id(&self.stream, producer), version)
            })
            .collect()
    }

    /// A commit carrying [`Self::transactions`] of `batch` is in the log.
    pub fn committed(&mut self, batch: &BatchMarks) {
        for (producer, seq) in batch.iter() {
            let version = self.next(producer, seq);
            let mark = match producer {
                Some(p) => self.producers.entry(p.to_string()).or_default(),
                None => &mut self.legacy,
            };
            mark.committed = Some(version);
        }
    }

    /// The version a commit carries for `producer` holding records up to `seq`.
    fn next(&self, producer: Option<&str>, seq: i64) -> i64 {
        let committed = match producer {
            Some(p) => self.producers.get(p).and_then(|m| m.committed),
            None => self.legacy.committed,
        };
        committed.map_or(seq, |c| c.max(seq))
    }
}

/// The highest tap sequence of each producer among the rows of the batch being built: the
/// marks of its commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchMarks {
    /// Records without a producer.
    legacy: Option<i64>,
    producers: HashMap<String, i64>,
}

impl BatchMarks {
    /// A row of `producer` with tap sequence `seq` (`None`: not the tap's, no mark) is in the
    /// batch.
    pub fn observe(&mut self, producer: Option<&str>, seq: Option<i64>) {
        let Some(seq) = seq else { return };
        let slot = match producer {
            None => &mut self.legacy,
            Some(p) => match self.producers.get_mut(p) {
                Some(m) => {
                    *m = (*m).max(seq);
                    return;
                }
                None => {
                    self.producers.insert(p.to_string(), seq);
                    return;
                }
            },
        };
        *slot = Some(slot.map_or(seq, |m| m.max(seq)));
    }

    /// The batch is cut: its marks go with it, the next batch starts without any.
    pub fn take(&mut self) -> BatchMarks {
        std::mem::take(self)
    }

    /// Each app id's highest sequence in the batch, the legacy one first, then by producer.
    fn iter(&self) -> impl Iterator<Item = (Option<&str>, i64)> {
        let mut producers: Vec<(&str, i64)> = self
            .producers
            .iter()
            .map(|(p, s)| (p.as_str(), *s))
            .collect();
        producers.sort_unstable();
        self.legacy
            .map(|s| (None, s))
            .into_iter()
            .chain(producers.into_iter().map(|(p, s)| (Some(p), s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(marks: &Marks, batch: &BatchMarks) -> Vec<(String, i64)> {
        marks
            .transactions(batch)
            .into_iter()
            .map(|t| (t.app_id, t.version))
            .collect()
    }

    fn batch(rows: &[(Option<&str>, Option<i64>)]) -> BatchMarks {
        let mut b = BatchMarks::default();
        for (p, s) in rows {
            b.observe(*p, *s);
        }
        b
    }

    #[tokio::test]
    async fn each_producer_has_its_mark_and_falls_back_on_the_legacy_one() {
        // A table loaded before producers existed: legacy mark 10, no producer marks.
        let mut marks = Marks {
            stream: "s".into(),
            legacy: Mark {
                replay: Some(10),
                committed: Some(10),
            },
            producers: HashMap::new(),
        };
        marks.learn(None, "a").await.expect("learn");
        marks.producers.insert(
            "b".into(),
            Mark {
                replay: Some(3),
                committed: Some(3),
            },
        );
        assert!(marks.knows("a") && marks.knows("b") && !marks.knows("c"));
        // Producer a has no mark of its own: the legacy one says what the table holds.
        assert!(marks.is_replay(Some("a"), Some(10)) && !marks.is_replay(Some("a"), Some(11)));
        // Producer b has its own, lower, mark: its records above 3 are new.
        assert!(marks.is_replay(Some("b"), Some(3)) && !marks.is_replay(Some("b"), Some(4)));
        assert!(marks.is_replay(None, Some(10)) && !marks.is_replay(None, Some(11)));
        assert!(
            !marks.is_replay(Some("a"), None),
            "records without a tap sequence are never replays"
        );

        let b = batch(&[
            (Some("b"), Some(7)),
            (Some("a"), Some(12)),
            (None, None),
            (Some("b"), Some(5)),
            (None, Some(11)),
        ]);
        assert_eq!(
            versions(&marks, &b),
            vec![
                ("target-warehouse:s".into(), 11),
                ("target-warehouse:s:a".into(), 12),
                ("target-warehouse:s:b".into(), 7),
            ],
            "one txn per app id whose records the commit holds"
        );
        marks.committed(&b);
        // A later commit of the run never carries less than what is committed.
        let later = batch(&[(Some("a"), Some(2)), (Some("c"), Some(1))]);
        assert_eq!(
            versions(&marks, &later),
            vec![
                ("target-warehouse:s:a".into(), 12),
                ("target-warehouse:s:c".into(), 1)
            ]
        );
        // Replays are judged by the marks read before the run loaded the producer.
        assert!(!marks.is_replay(Some("a"), Some(12)));
        assert_eq!(
            versions(&marks, &BatchMarks::default()),
            vec![],
            "a commit without records carries no txn"
        );
        let mut b = batch(&[(None, Some(4))]);
        assert_eq!(b.take(), batch(&[(None, Some(4))]));
        assert_eq!(b, BatchMarks::default());
    }

    #[tokio::test]
    async fn a_stream_sees_a_bounded_number_of_producers() {
        let mut marks = Marks::new("s");
        for i in 0..MAX_PRODUCERS {
            marks.learn(None, &format!("p{i}")).await.expect("learn");
        }
        assert!(matches!(
            marks.learn(None, "one more").await,
            Err(MarkError::TooManyProducers)
        ));
    }
}
