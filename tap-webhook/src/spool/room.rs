//! Room on the spool's disk, kept so that a full spool can still be emptied.
//!
//! Emptying a spool writes: the tap's prune appends the pages it changes to the WAL, and a
//! checkpoint moves the WAL's pages into the database file, which grows by as much as the WAL
//! holds that the file does not. A spool that filled its own filesystem could do neither:
//! every run handed a state failed, the receiver refused every delivery, and nothing would ever
//! free the disk. So the receiver refuses deliveries (503 `SPOOL_FULL`, as above
//! `max_spool_bytes`) while the [`room`] left, beyond what a checkpoint of the WAL needs, is
//! below a [`reserve`] for the prune; what the tap prunes becomes room again.

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
