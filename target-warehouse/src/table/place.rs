//! Where a stream's table lives: the directory under the warehouse that `Table::open` opens
//! (issue 20: one stream's data ended up in two tables when streams sanitize alike).
//!
//! The rule, in one place:
//! - A directory belongs to a stream only if its Delta log says so: the table's name (its
//!   `metaData.name`, written by the CREATE) is the Singer stream name. Which directories
//!   exist, which are empty, and in which order streams arrive say nothing.
//! - A stream's candidate directories are its sanitized name, then `<name>__2`, `<name>__3`…
//!   (streams such as `a-b` and `a_b` sanitize alike). Names the Delta format gives a meaning
//!   (`_delta_log`: a path through it is read as a table's log) are never a table's directory:
//!   such a stream's name gets the suffix `__stream` first.
//! - On open, every candidate the warehouse holds is looked at (a listing, not a probe that
//!   stops at the first gap: an empty directory can be removed, and an object store has no
//!   empty ones). The one whose log names the stream is its table. Without one, the stream
//!   takes the first candidate that holds no table and that no other stream of this run took;
//!   its first commit creates the table there, and only if no other load created one first
//!   (`commit.rs`: the loser commits nothing; its rerun opens again and finds where it is).
//! - A directory holding another stream's table, or a table not named by us, is never taken
//!   over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::TableError;
use super::store;
use crate::names::sanitize;

/// Directory names a table never gets (compared without case: a case-insensitive file system
/// holds one of them under any spelling).
const RESERVED: [&str; 1] = ["_delta_log"];

/// The first candidate directory name of `stream`.
pub fn base_name(stream: &str) -> String {
    let name = sanitize(stream);
    if is_reserved(&name) {
        format!("{name}__stream")
    } else {
        name
    }
}

/// Whether `dir` is a name no table of ours has (`compact` passes such directories by).
pub fn is_reserved(dir: &str) -> bool {
    RESERVED.iter().any(|r| dir.eq_ignore_ascii_case(r))
}

/// The `n`th candidate directory name of `base` (1: `base` itself).
pub fn candidate(base: &str, n: u64) -> String {
    if n == 1 {
        base.to_string()
    } else {
        format!("{base}__{n}")
    }
}

/// Which candidate of `base` the directory `name` is, if any.
fn candidate_number(base: &str, name: &str) -> Option<u64> {
    if name == base {
        return Some(1);
    }
    let digits = name.strip_prefix(base)?.strip_prefix("__")?;
    // `__02` is not a name we give; `__1` neither (the first is the bare name).
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 2)
}

/// The candidates of `base` the warehouse holds, by number.
pub async fn listed(
    warehouse: &Path,
    base: &str,
    storage_options: &HashMap<String, String>,
) -> Result<BTreeMap<u64, PathBuf>, TableError> {
    let children: Vec<PathBuf> = if store::is_remote(warehouse) {
        store::list_tables(warehouse, storage_options).await?
    } else {
        match std::fs::read_dir(warehouse) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(TableError::Io {
                    table: warehouse.display().to_string(),
                    source,
                })
            }
        }
    };
    Ok(children
        .into_iter()
        .filter_map(|p| {
            let n = candidate_number(base, &p.file_name()?.to_string_lossy())?;
            Some((n, warehouse.join(candidate(base, n))))
        })
        .collect())
}

/// What a look at one candidate found.
pub enum Found {
    /// A table of another stream (or not named by us): never this stream's.
    Taken,
    /// No table (yet).
    Free,
}

/// The first candidate a stream without a table takes: not taken by a table (`found`, for
/// the listed ones), not claimed by another stream of this run.
pub fn first_free(
    warehouse: &Path,
    base: &str,
    found: &BTreeMap<u64, Found>,
    claimed: &HashSet<PathBuf>,
) -> (u64, PathBuf) {
    let mut n = 1;
    loop {
        let root = warehouse.join(candidate(base, n));
        if !matches!(found.get(&n), Some(Found::Taken)) && !claimed.contains(&root) {
            return (n, root);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_format_uses_are_never_a_directory() {
        assert_eq!(base_name("_delta_log"), "_delta_log__stream");
        assert_eq!(base_name("_DELTA_LOG"), "_DELTA_LOG__stream");
        assert_eq!(base_name("_delta-log"), "_delta_log__stream");
        assert_eq!(base_name("."), "_");
        assert_eq!(base_name(".."), "__");
        assert_eq!(base_name(""), "_");
        assert_eq!(base_name("a-b"), "a_b");
    }

    #[test]
    fn candidates_are_the_name_then_numbered_from_two() {
        assert_eq!(candidate_number("a_b", "a_b"), Some(1));
        assert_eq!(candidate_number("a_b", "a_b__2"), Some(2));
        assert_eq!(candidate_number("a_b", "a_b__13"), Some(13));
        for other in [
            "a_b__1",
            "a_b__02",
            "a_b__x",
            "a_b_2",
            "a_b__",
            "a_bc",
            "a_b__2__2",
        ] {
            assert_eq!(candidate_number("a_b", other), None, "{other}");
        }
        assert_eq!(candidate("a_b", 1), "a_b");
        assert_eq!(candidate("a_b", 3), "a_b__3");
    }

    #[test]
    fn a_stream_without_a_table_takes_the_first_free_candidate() {
        let wh = Path::new("/w");
        let found = BTreeMap::from([(1, Found::Taken), (2, Found::Free), (3, Found::Taken)]);
        let none = HashSet::new();
        assert_eq!(first_free(wh, "a", &found, &none).0, 2);
        let claimed = HashSet::from([PathBuf::from("/w/a__2")]);
        assert_eq!(first_free(wh, "a", &found, &claimed).0, 4);
        assert_eq!(first_free(wh, "a", &BTreeMap::new(), &none).0, 1);
    }
}
