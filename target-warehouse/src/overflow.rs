//! Bounded columns per table (issue 20: one record with 250k top-level keys made the target
//! use 8.4 GB, and every later load of that stream cost seconds): the rule for which
//! properties get a column, and the `_sdc_overflow` column holding the others. Used by the
//! stream buffer (`batch.rs`), which creates columns.
//!
//! - A table has at most `max_columns` columns, siblings, metadata and `_sdc_overflow`
//!   counted. While there is room (one place is kept for `_sdc_overflow`), a property gets a
//!   column in the order it first appears (declared in a SCHEMA, or seen in a record); a
//!   property waiting for its type holds its place.
//! - The stream's key properties and the Singer metadata (`_sdc_*` the SDK and we set,
//!   `__sdc_primary_key`) always get their columns: upserts, replays and readers need them.
//!   They count towards the bound.
//! - A value with no column (a new property, or a value needing a new sibling, once the table
//!   is full) goes into its row's `_sdc_overflow` (JSON text): one object `{"prop": value, …}`
//!   of the row's values that had no column, each value its JSON text as received. Nothing is
//!   dropped, nothing fails; a warning is logged once per stream per run with the count.
//!   Nulls are left out, as in every column. A record's own property named `_sdc_overflow`
//!   goes into that object too, so the column only ever holds our objects.
//! - Raising `max_columns` later gives new properties columns; values already in
//!   `_sdc_overflow` stay there.

use std::collections::{BTreeMap, HashSet};

use crate::columns::Value;
use crate::sdc;
use crate::table::marks::PRODUCER;

/// The column holding, per row, the values that got no column of their own.
pub const OVERFLOW: &str = "_sdc_overflow";

/// Columns per table unless configured: far above real webhook tables (~230 columns for the
/// widest measured), far below what makes every load of a stream slow.
pub const DEFAULT_MAX_COLUMNS: usize = 1000;

/// The smallest bound that leaves room for the metadata columns and `_sdc_overflow`.
pub const MIN_MAX_COLUMNS: usize = 16;

/// Metadata properties that always get a column.
const METADATA: [&str; 9] = [
    sdc::SEQUENCE,
    sdc::RECEIVED_AT,
    sdc::EXTRACTED_AT,
    sdc::BATCHED_AT,
    sdc::DELETED_AT,
    sdc::TABLE_VERSION,
    sdc::GENERATED_KEY,
    sdc::SYNC_STARTED_AT,
    PRODUCER,
];

/// Which properties always get a column (the metadata and the stream's keys).
#[derive(Debug, Clone, Default)]
pub struct Exempt {
    keys: Vec<String>,
}

impl Exempt {
    pub fn set_keys(&mut self, keys: &[String]) {
        self.keys = keys.to_vec();
    }

    pub fn contains(&self, property: &str) -> bool {
        METADATA.contains(&property) || self.keys.iter().any(|k| k == property)
    }
}

/// The overflow objects of the rows of the batch being built.
#[derive(Debug, Default)]
pub struct Overflow {
    /// Row → its object so far (without the closing brace). Rows arrive in order except when a
    /// property's type is fixed late (its earlier values are placed then).
    rows: BTreeMap<usize, String>,
    /// Values put here in this batch.
    values: usize,
    /// Distinct properties that overflowed, collected until the warning is logged.
    names: HashSet<String>,
    warned: bool,
}

impl Overflow {
    /// Puts `property: value` into `row`'s object (a null is left out, as in a column).
    pub fn push(&mut self, row: usize, property: &str, value: &Value<'_>) {
        if matches!(value, Value::Null) {
            return;
        }
        let text = self.rows.entry(row).or_insert_with(|| String::from("{"));
        singer::json::push_key(text, property);
        write_json(text, value);
        self.values += 1;
        if !self.warned {
            self.names.insert(property.to_string());
        }
    }

    /// The batch is cut: each row's object, in row order; the first batch with any also logs
    /// the stream's warning.
    pub fn take(&mut self, stream_columns: usize, max_columns: usize) -> Vec<(usize, String)> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                properties = self.names.len(),
                values = self.values,
                rows = self.rows.len(),
                columns = stream_columns,
                max_columns,
                "the table has as many columns as max_columns allows: properties without a \
                 column are kept, as JSON, in {OVERFLOW} (logged once per stream per run)"
            );
            self.names = HashSet::new();
        }
        self.values = 0;
        std::mem::take(&mut self.rows)
            .into_iter()
            .map(|(row, mut text)| {
                text.push('}');
                (row, text)
            })
            .collect()
    }
}

/// Appends `value` as JSON text: as received where the value kept its text.
fn write_json(out: &mut String, value: &Value<'_>) {
    use std::fmt::Write;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(t) | Value::Float(_, t) | Value::Json(t) => out.push_str(t),
        Value::Str(s) => singer::json::push_str(out, s),
        // Only the target's own `_sdc_received_at` is such a value, and it always has a
        // column; written as its timestamp text all the same.
        Value::Micros(m) => singer::json::push_str(out, &crate::timefmt::format_micros(*m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn each_row_gets_one_object_of_its_values_as_received() {
        let mut o = Overflow::default();
        o.push(3, "b", &Value::from_raw("1.50"));
        o.push(1, "a\"q", &Value::Str(Cow::Borrowed("x\ny")));
        o.push(1, "n", &Value::Null);
        o.push(1, "big", &Value::from_raw("123456789012345678901234567890"));
        o.push(3, "j", &Value::from_raw("{\"k\": [1, 2]}"));
        o.push(3, "i", &Value::Int(-7));
        let rows = o.take(10, 10);
        assert_eq!(
            rows,
            vec![
                (
                    1,
                    r#"{"a\"q":"x\ny","big":123456789012345678901234567890}"#.to_string()
                ),
                (3, r#"{"b":1.50,"j":{"k": [1, 2]},"i":-7}"#.to_string()),
            ]
        );
        for (_, text) in &rows {
            serde_json::from_str::<serde_json::Value>(text).expect("JSON");
        }
        assert!(
            o.take(10, 10).is_empty(),
            "taken: the next batch starts empty"
        );
    }

    #[test]
    fn keys_and_metadata_always_get_a_column() {
        let mut e = Exempt::default();
        assert!(e.contains("_sdc_sequence") && e.contains("_sdc_producer"));
        assert!(e.contains("__sdc_primary_key") && !e.contains("id"));
        assert!(!e.contains("_sdc_whatever"), "only the names we know");
        e.set_keys(&["id".to_string()]);
        assert!(e.contains("id"));
    }
}
