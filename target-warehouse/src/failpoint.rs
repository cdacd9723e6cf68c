//! Failpoints: a failure injected at one write, fsync, upload or commit step of a load, so that
//! tests can show, step by step, that a failed run leaves what a rerun completes exactly once.
//!
//! `TARGET_WAREHOUSE_FAILPOINT=<step>[:<nth>][,<step>[:<nth>]…]` makes the `nth` time (default:
//! the first) this process reaches `<step>` fail with an I/O error, as a full disk or a refused
//! upload would. Compiled in always, like the tap's `TAP_WEBHOOK_FAILPOINT`: a test runs the
//! same binary users run. Unset, a check is one atomic load, at most a few per batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "TARGET_WAREHOUSE_FAILPOINT";

/// Every step of a load that writes, syncs, uploads or commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A record batch written into a batch's data file (or one of its parts).
    DataFileWrite,
    /// The parts of a batch's data file merged into one file.
    PartMerge,
    /// A new data or deletion vector file fsync'd.
    Fsync,
    /// A new file made part of the table's storage (the upload of an object-store table).
    Publish,
    /// A commit's deletion vector file written.
    DvWrite,
    /// A copy-on-write upsert's rewritten file finished.
    RewriteFile,
    /// A commit, before its log entry is written.
    CommitBeforeLog,
    /// A commit, after its log entry is written (before it is fsync'd).
    CommitAfterLog,
    /// An automatic compaction, before its commit (its merged files written).
    Compaction,
    /// A log checkpoint.
    Checkpoint,
    /// ACTIVATE_VERSION's commit.
    ActivateVersion,
}

impl Step {
    pub const ALL: [Step; 11] = [
        Step::DataFileWrite,
        Step::PartMerge,
        Step::Fsync,
        Step::Publish,
        Step::DvWrite,
        Step::RewriteFile,
        Step::CommitBeforeLog,
        Step::CommitAfterLog,
        Step::Compaction,
        Step::Checkpoint,
        Step::ActivateVersion,
    ];

    /// The step's name in [`ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Step::DataFileWrite => "data-file-write",
            Step::PartMerge => "part-merge",
            Step::Fsync => "fsync",
            Step::Publish => "publish",
            Step::DvWrite => "dv-write",
            Step::RewriteFile => "rewrite-file",
            Step::CommitBeforeLog => "commit-before-log",
            Step::CommitAfterLog => "commit-after-log",
            Step::Compaction => "compaction",
            Step::Checkpoint => "checkpoint",
            Step::ActivateVersion => "activate-version",
        }
    }
}

#[derive(Debug)]
struct Armed {
    step: Step,
    nth: u64,
    hits: AtomicU64,
}

/// The failpoints of [`ENV`], or why its value is not understood.
fn armed() -> &'static Result<Vec<Armed>, String> {
    static ARMED: OnceLock<Result<Vec<Armed>, String>> = OnceLock::new();
    ARMED.get_or_init(|| match std::env::var(ENV) {
        Ok(v) => parse(&v),
        Err(_) => Ok(Vec::new()),
    })
}

fn parse(value: &str) -> Result<Vec<Armed>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|spec| {
            let (name, nth) = spec.split_once(':').unwrap_or((spec, "1"));
            let step = Step::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
                    format!("{ENV}: unknown step {name:?} (steps: {})", names.join(", "))
                })?;
            let nth = nth
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{ENV}: {spec:?}: the count must be an integer >= 1"))?;
            Ok(Armed {
                step,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .collect()
}

/// Checks [`ENV`] once, at the start of a run: a mistyped failpoint is an error, not a test
/// that silently injects nothing.
pub fn check_setting() -> Result<(), String> {
    armed().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Reaching `step`: an error when a failpoint is armed for this hit of it.
pub fn hit(step: Step) -> std::io::Result<()> {
    let Ok(armed) = armed() else { return Ok(()) };
    for a in armed.iter().filter(|a| a.step == step) {
        let n = a.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if n == a.nth {
            tracing::error!(step = step.name(), hit = n, "failpoint fired");
            return Err(std::io::Error::other(format!(
                "injected failure at step {} (hit {n}, {ENV})",
                step.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_known_steps_and_positive_counts() {
        let armed = parse("publish:3, commit-after-log").expect("valid");
        assert_eq!(
            armed.iter().map(|a| (a.step, a.nth)).collect::<Vec<_>>(),
            vec![(Step::Publish, 3), (Step::CommitAfterLog, 1)]
        );
        assert!(parse("publsh")
            .unwrap_err()
            .contains("unknown step \"publsh\""));
        assert!(parse("fsync:0").unwrap_err().contains("integer >= 1"));
        assert!(parse("").expect("nothing armed").is_empty());
    }
}
