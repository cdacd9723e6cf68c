//! Column and table-directory names: the one rule that turns a Singer property (or stream) name
//! into a name every engine reads, and the set that keeps a table's column names distinct.
//!
//! The rule (README "Querying the tables", "Names"; the contract is that a column's original Singer
//! property is in its `target_warehouse.property` field metadata, see `registry.rs`):
//! - Unicode letters and digits and `_` are kept as they are (`größe` stays `größe`); every
//!   other character becomes `_` (spaces, dots, parentheses, `-`, `,;{}=`, tabs, newlines,
//!   emoji, combining marks). Delta without column mapping forbids only ` ,;{}()\n\t=`; dots
//!   and `-` are legal there but need quoting in Spark and DuckDB and split nested-field paths
//!   in Spark, so they go too.
//! - A name starting with a digit gets a leading `_`; an empty name is `_`.
//! - Names longer than [`MAX_NAME`] characters are cut and end in `_` and 8 hex digits of a
//!   stable hash of the whole original (FNV-1a: the same in every run and build).
//! - Within one table no two column names are equal ignoring case (Spark, Databricks, DuckDB
//!   and deltalake ≥ 1.5.1 compare names without case): a taken name gets `__2`, `__3`…
//!   ([`NameSet::claim`]). Which property got which name is read back from the table's field
//!   metadata on every run, so the names never change once committed, whatever order the
//!   properties arrive in later.

use std::collections::HashSet;

/// Longest name we produce, in characters (Glue/Athena and Snowflake take 255, BigQuery 300;
/// 120 leaves room for the collision and sibling suffixes).
pub const MAX_NAME: usize = 120;

/// Whether `c` is kept in a name as it is (see the module documentation).
fn kept(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Turns a property or stream name into a name every engine accepts (see the module
/// documentation). Deterministic: the same input gives the same name in every run.
pub fn sanitize(property: &str) -> String {
    let mut out: String = property
        .chars()
        .map(|c| if kept(c) { c } else { '_' })
        .collect();
    if out.chars().next().is_none_or(char::is_numeric) {
        out.insert(0, '_');
    }
    if out.chars().count() > MAX_NAME {
        // The hash keeps cut names distinct and stable; properties that sanitize alike
        // ("a b", "a-b") are told apart by the collision suffix of [`NameSet::claim`].
        let mut cut: String = out.chars().take(MAX_NAME - 9).collect();
        cut.push_str(&format!("_{:08x}", fnv1a(property.as_bytes()) as u32));
        out = cut;
    }
    out
}

/// A small stable hash (FNV-1a): names must not change between runs or builds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The form names are compared in: Unicode lowercase (as Spark's `toLowerCase(Locale.ROOT)`).
fn folded(name: &str) -> String {
    name.to_lowercase()
}

/// Column names in use by one table. Engines (Spark, DuckDB) compare names case-insensitively,
/// so uniqueness is checked on the lowercase form while the original case is kept.
#[derive(Debug, Default, Clone)]
pub struct NameSet {
    taken: HashSet<String>,
}

impl NameSet {
    pub fn insert_existing(&mut self, name: &str) {
        self.taken.insert(folded(name));
    }

    /// Claims `wanted`, or `wanted__2`, `wanted__3`… when taken (ignoring case).
    pub fn claim(&mut self, wanted: &str) -> String {
        let mut candidate = wanted.to_string();
        let mut n = 2;
        while self.taken.contains(&folded(&candidate)) {
            candidate = format!("{wanted}__{n}");
            n += 1;
        }
        self.taken.insert(folded(&candidate));
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_stable_and_unique() {
        assert_eq!(sanitize("id"), "id");
        assert_eq!(sanitize("First Name"), "First_Name");
        assert_eq!(sanitize("a.b (c)"), "a_b__c_");
        assert_eq!(sanitize("x,y;z{}=\n\t-"), "x_y_z______");
        assert_eq!(sanitize("1st"), "_1st");
        assert_eq!(sanitize(""), "_");
        let long = "x".repeat(300);
        assert_eq!(sanitize(&long), sanitize(&long));
        assert_eq!(sanitize(&long).chars().count(), MAX_NAME);
        assert_ne!(
            sanitize(&long),
            sanitize(&"x".repeat(301)),
            "the hash tells cut names apart"
        );
        let mut names = NameSet::default();
        assert_eq!(names.claim("Id"), "Id");
        assert_eq!(names.claim("id"), "id__2");
        assert_eq!(names.claim("ID"), "ID__3");
    }

    #[test]
    fn unicode_letters_and_digits_are_kept() {
        assert_eq!(sanitize("größe"), "größe");
        assert_eq!(sanitize("Größe in m²"), "Größe_in_m²");
        assert_eq!(sanitize("名前"), "名前");
        assert_eq!(sanitize("٣abc"), "_٣abc", "a leading digit of any script");
        assert_eq!(sanitize("a🙂b"), "a_b");
        // A 300-character non-ASCII name is cut on a character boundary.
        let long = "ü".repeat(300);
        let cut = sanitize(&long);
        assert_eq!(cut.chars().count(), MAX_NAME);
        assert!(cut.starts_with("üü") && cut.is_char_boundary(cut.len()));
    }

    #[test]
    fn case_is_compared_beyond_ascii() {
        let mut names = NameSet::default();
        assert_eq!(names.claim("GRÖSSE"), "GRÖSSE");
        assert_eq!(names.claim("grösse"), "grösse__2");
        names.insert_existing("Ärger");
        assert_eq!(names.claim("ärger"), "ärger__2");
    }
}
