//! Failpoints: a failure injected at one write, fsync, upload or commit step of a load, so that
//! tests can show, step by step, that a failed run leaves what a rerun completes exactly once.
//!
//! `TARGET_WAREHOUSE_FAILPOINT=<step>[:<nth>][,<step>[:<nth>]…]` makes the `nth` time (default:
//! the first) this process reaches `<step>` fail with an I/O error, as a full disk or a refused
//! upload would. Compiled in always, like the tap's `TAP_WEBHOOK_FAILPOINT`: a test runs the
//! same binary users run. Unset, a check is one atomic load, at most a few per batch.
//!
//! `<step>[:<nth>]@<file>` holds the process there instead of failing it: it creates
//! `<file>.held`, waits until `<file>` exists, then goes on. A test of two racing loads holds
//! one between its read of the table and its commit while the other commits, so that the race
//! happens every time rather than once in many runs.

use std::path::PathBuf;
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
    /// Hold until this file exists instead of failing.
    hold: Option<PathBuf>,
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
            let (point, hold) = match spec.split_once('@') {
                Some((point, file)) if !file.is_empty() => (point, Some(PathBuf::from(file))),
                Some(_) => return Err(format!("{ENV}: {spec:?}: a hold names a file after '@'")),
                None => (spec, None),
            };
            let (name, nth) = point.split_once(':').unwrap_or((point, "1"));
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
                hold,
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

/// Reaching `step`: an error when a failpoint is armed for this hit of it (a hold waits).
pub fn hit(step: Step) -> std::io::Result<()> {
    let Ok(armed) = armed() else { return Ok(()) };
    for a in armed.iter().filter(|a| a.step == step) {
        let n = a.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if n != a.nth {
            continue;
        }
        if let Some(file) = &a.hold {
            hold(step, file)?;
            continue;
        }
        tracing::error!(step = step.name(), hit = n, "failpoint fired");
        return Err(std::io::Error::other(format!(
            "injected failure at step {} (hit {n}, {ENV})",
            step.name()
        )));
    }
    Ok(())
}

/// Waits at `step` until `file` exists, having said so with `<file>.held`.
fn hold(step: Step, file: &std::path::Path) -> std::io::Result<()> {
    let mut held = file.as_os_str().to_owned();
    held.push(".held");
    std::fs::write(&held, step.name())?;
    tracing::warn!(step = step.name(), file = %file.display(), "failpoint holding");
    while !file.exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
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
        let held = parse("commit-before-log:2@/tmp/go").expect("a hold");
        assert_eq!(
            (held[0].step, held[0].nth, held[0].hold.as_deref()),
            (
                Step::CommitBeforeLog,
                2,
                Some(std::path::Path::new("/tmp/go"))
            )
        );
        assert!(parse("fsync@").unwrap_err().contains("names a file"));
        assert!(parse("").expect("nothing armed").is_empty());
    }
}
