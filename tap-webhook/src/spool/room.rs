//! Room on the spool's disk, kept so that a full spool can still be emptied.
//!
//! Emptying a spool writes: the tap's prune appends the pages it changes to the WAL, and a
//! checkpoint moves the WAL's pages into the database file, which grows by as much as the WAL
//! holds that the file does not. A spool that filled its own filesystem could do neither:
//! every run handed a state failed, the receiver refused every delivery, and nothing would ever
//! free the disk. So the receiver refuses deliveries (503 `SPOOL_FULL`, as above
//! `max_spool_bytes`) while the [`room`] left, beyond what a checkpoint of the WAL needs, is
//! below a [`reserve`] for the prune; what the tap prunes becomes room again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The least room kept free on the spool's filesystem for a prune: its changed pages.
pub const RESERVE_MIN_BYTES: u64 = 8 << 20;

/// The room a prune needs with `used` bytes of pages in the spool: [`RESERVE_MIN_BYTES`] and a
/// 256th of the pages (a prune of everything writes the freelist's trunk pages, one for
/// about a thousand freed pages, and the index pages at the range's edges).
pub fn reserve(used: u64) -> u64 {
    RESERVE_MIN_BYTES.saturating_add(used / 256)
}

/// Bytes the spool can still take before its filesystem is full, beyond what a checkpoint of
/// its WAL as it stands would need: the filesystem's free space, plus the database file's free
/// pages (what the tap pruned: reused before the file grows), less the WAL file (`None`: the
/// filesystem cannot be asked). `used` is the bytes of pages in use.
#[cfg(unix)]
pub fn room(spool: &Path, used: u64) -> Option<u64> {
    let vfs = rustix::fs::statvfs(spool).ok()?;
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let file = std::fs::metadata(spool).map_or(0, |m| m.len());
    let mut wal = spool.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(wal).map_or(0, |m| m.len());
    Some(
        free.saturating_add(file.saturating_sub(used))
            .saturating_sub(wal),
    )
}

/// Elsewhere the filesystem is not asked: only `max_spool_bytes` limits the spool.
#[cfg(not(unix))]
pub fn room(_spool: &Path, _used: u64) -> Option<u64> {
    None
}

/// Whether a spool with `used` bytes of pages and `room` left on its disk must refuse
/// deliveries so that it can still be pruned.
pub fn too_little(used: u64, room: Option<u64>) -> bool {
    room.is_some_and(|r| r < reserve(used))
}

/// How long a roomy answer from the disk is trusted ([`Gauge`]).
pub const TRUST_FOR: Duration = Duration::from_millis(50);

/// Room beyond the reserve above which an answer is trusted for [`TRUST_FOR`]: far more than a
/// spool can write in that time (1.3 GB/s), so no delivery the disk cannot take gets through.
pub const FAR_ABOVE_RESERVE: u64 = 64 << 20;

/// What writing `bytes` into the spool may take from its [`room`]: they go into the WAL, then a
/// checkpoint copies them into the database file (as for the ledger's rows); a 16th more for
/// the pages' and WAL frames' headers.
pub fn cost(bytes: u64) -> u64 {
    bytes.saturating_mul(2).saturating_add(bytes / 16)
}

/// [`room`] asked for every delivery, but of the disk at most once per [`TRUST_FOR`] while the
/// last answer, less what the writer spent since, was [`FAR_ABOVE_RESERVE`]; nearer the
/// reserve, every time, so refusals start and end on the disk's own answer. Asking costs three
/// path lookups (`statvfs`, two `stat`s): 8.6% of the receiver's CPU per durable POST when
/// asked every time (perf, release, 2 cores).
///
/// Two ask it: the receiver before it reads a body ([`Gauge::too_little`]), and the writer
/// before it writes a batch ([`Gauge::left`]), which alone knows the bodies' sizes, those of
/// requests read side by side included: a body bigger than the room above the reserve is
/// refused there, so no delivery eats into the prune's room.
pub struct Gauge {
    path: PathBuf,
    start: Instant,
    /// When the disk was last asked, in nanoseconds since `start` (`u64::MAX`: never).
    asked_at: AtomicU64,
    /// Its answer (`u64::MAX`: the filesystem cannot be asked).
    room: AtomicU64,
    /// What the writer wrote since ([`cost`]s): added after each commit, so an answer taken
    /// meanwhile is only ever undercounted room.
    spent: AtomicU64,
}

impl Gauge {
    pub fn new(spool: &Path) -> Gauge {
        Gauge {
            path: spool.to_path_buf(),
            start: Instant::now(),
            asked_at: AtomicU64::new(u64::MAX),
            room: AtomicU64::new(u64::MAX),
            spent: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The last answer less what was spent since, when it may still be trusted for `need`
    /// more bytes.
    fn trusted_room(&self, now: u64, used: u64, need: u64) -> Option<u64> {
        let asked_at = self.asked_at.load(Ordering::Acquire);
        let last = self
            .room
            .load(Ordering::Acquire)
            .saturating_sub(self.spent.load(Ordering::Acquire));
        trusted(now, asked_at, last.saturating_sub(need), used).then_some(last)
    }

    /// Asks the disk.
    fn ask(&self, now: u64, used: u64) -> Option<u64> {
        let room = room(&self.path, used);
        self.spent.store(0, Ordering::Release);
        self.room.store(room.unwrap_or(u64::MAX), Ordering::Release);
        self.asked_at.store(now, Ordering::Release);
        room
    }

    /// The bytes of [`cost`] a spool with `used` bytes of pages can still write and keep its
    /// [`reserve`], for a batch costing `need` (`u64::MAX`: the filesystem cannot be asked).
    pub fn left(&self, used: u64, need: u64) -> u64 {
        let now = self.now();
        let room = match self.trusted_room(now, used, need) {
            Some(room) => Some(room),
            None => self.ask(now, used),
        };
        room.map_or(u64::MAX, |r| r.saturating_sub(reserve(used)))
    }

    /// The writer wrote (and committed) what costs `cost`.
    pub fn spend(&self, cost: u64) {
        self.spent.fetch_add(cost, Ordering::AcqRel);
    }

    /// Whether a spool with `used` bytes of pages must refuse deliveries ([`too_little`]).
    pub fn too_little(&self, used: u64) -> bool {
        let now = self.now();
        if self.trusted_room(now, used, 0).is_some() {
            return false;
        }
        too_little(used, self.ask(now, used))
    }
}

/// Whether the answer `last` (given at `asked_at`) still holds at `now` for `used` bytes.
fn trusted(now: u64, asked_at: u64, last: u64, used: u64) -> bool {
    asked_at != u64::MAX
        && now.saturating_sub(asked_at) < TRUST_FOR.as_nanos() as u64
        && last >= reserve(used).saturating_add(FAR_ABOVE_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_answer_far_above_the_reserve_is_trusted() {
        let far = reserve(0) + FAR_ABOVE_RESERVE;
        let window = TRUST_FOR.as_nanos() as u64;
        assert!(trusted(10, 0, far, 0));
        assert!(
            trusted(window - 1, 0, u64::MAX, 0),
            "a disk that cannot be asked"
        );
        assert!(!trusted(window, 0, far, 0), "too old");
        assert!(
            !trusted(10, 0, far - 1, 0),
            "near the reserve: ask every time"
        );
        assert!(
            !trusted(10, 0, far, 1 << 30),
            "the reserve grew with the spool"
        );
        assert!(!trusted(10, u64::MAX, u64::MAX, 0), "never asked");
    }

    #[cfg(unix)]
    #[test]
    fn the_gauge_asks_the_disk_and_refuses_nothing_on_a_roomy_one() {
        let dir = std::env::temp_dir();
        let gauge = Gauge::new(&dir);
        let room = room(&dir, 0);
        assert_eq!(gauge.too_little(0), too_little(0, room));
        assert_ne!(gauge.asked_at.load(Ordering::Relaxed), u64::MAX, "asked");
        // More in use than any disk holds: the reserve is beyond every room, asked again.
        assert!(gauge.too_little(u64::MAX / 2));
    }

    #[cfg(unix)]
    #[test]
    fn what_the_writer_spent_is_taken_from_a_trusted_answer() {
        let dir = std::env::temp_dir();
        let gauge = Gauge::new(&dir);
        let first = gauge.left(0, 0);
        // Spending the room above the reserve leaves none of the trusted answer: the disk is
        // asked again, and its answer is no larger than the first (nothing was freed).
        gauge.spend(first.saturating_add(1));
        assert!(gauge.trusted_room(gauge.now(), 0, 0).is_none());
        assert_eq!(gauge.spent.load(Ordering::Relaxed), first.saturating_add(1));
        gauge.left(0, 1);
        assert_eq!(gauge.spent.load(Ordering::Relaxed), 0, "asked again");
        assert_eq!(cost(16 << 20), (32 << 20) + (1 << 20));
    }

    #[test]
    fn the_reserve_grows_with_the_spool_and_an_unknown_room_refuses_nothing() {
        assert_eq!(reserve(0), RESERVE_MIN_BYTES);
        assert_eq!(reserve(256 << 20), RESERVE_MIN_BYTES + (1 << 20));
        assert!(too_little(0, Some(RESERVE_MIN_BYTES - 1)));
        assert!(!too_little(0, Some(RESERVE_MIN_BYTES)));
        assert!(too_little(256 << 20, Some(RESERVE_MIN_BYTES)));
        assert!(!too_little(u64::MAX, None));
    }
}
