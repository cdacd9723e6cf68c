//! Delta `add` statistics of our data files: per column, the null count and the bounds of the
//! values present, computed batch by batch where a batch is built (one pass over each column's
//! values), accumulated over a file's batches or merged over the files of a compaction.

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, SchemaRef,
    TimestampMicrosecondType,
};
use serde_json::{json, Map, Value as Json};

use crate::registry::is_json;
use crate::timefmt;

/// Strings longer than this get no min/max statistics: a truncated bound would be wrong.
const MAX_STAT_STRING: usize = 256;

/// One column's Delta statistics, accumulated over the batches of a written file or the
/// files of a merged one.
pub(super) struct ColumnStats {
    /// `None` once a source did not say.
    pub(super) nulls: Option<i64>,
    pub(super) bounds: Option<(Json, Json)>,
    /// False once a source had values without bounds: then no bounds at all.
    pub(super) exact: bool,
}

impl ColumnStats {
    pub(super) fn new() -> ColumnStats {
        ColumnStats {
            nulls: Some(0),
            bounds: None,
            exact: true,
        }
    }

    pub(super) fn add_nulls(&mut self, n: Option<i64>) {
        self.nulls = self.nulls.zip(n).map(|(a, b)| a + b);
    }

    /// Widens the bounds by a source's own, or gives them up (`None`: it had values but no
    /// bounds).
    pub(super) fn widen(&mut self, source: Option<(Json, Json)>) {
        if !self.exact {
            return;
        }
        match source {
            None => (self.exact, self.bounds) = (false, None),
            Some((lo, hi)) => {
                self.bounds = Some(match self.bounds.take() {
                    None => (lo, hi),
                    Some((a, b)) => (pick(a, lo, true), pick(b, hi, false)),
                })
            }
        }
    }
}

/// One batch's Delta statistics, column by column: computed where the batch is built (one
/// pass over each column's values present), so that the thread encoding the file does not
/// have to.
pub struct BatchStats(pub(super) Vec<ColumnStats>);

impl BatchStats {
    pub fn of(batch: &RecordBatch) -> BatchStats {
        let schema = batch.schema();
        BatchStats(
            schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, col)| {
                    let mut acc = ColumnStats::new();
                    acc.add_nulls(Some(col.null_count() as i64));
                    if col.null_count() < col.len() {
                        acc.widen(bounds(col, is_json(field)));
                    }
                    acc
                })
                .collect(),
        )
    }
}

/// A data file's Delta `add` statistics: its row count and, per column, the null count and the
/// bounds where they are known.
pub(super) fn stats_json(schema: &SchemaRef, rows: i64, stats: Vec<ColumnStats>) -> Json {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    for (field, acc) in schema.fields().iter().zip(stats) {
        let name = field.name();
        if let Some(n) = acc.nulls {
            nulls.insert(name.clone(), json!(n));
        }
        if let Some((lo, hi)) = acc.bounds {
            mins.insert(name.clone(), lo);
            maxs.insert(name.clone(), hi);
        }
    }
    json!({"numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})
}

/// The smaller (or larger) of two bounds of the same column: numbers by value, strings by
/// bytes (ISO dates and timestamps order correctly as text).
fn pick(a: Json, b: Json, smaller: bool) -> Json {
    let a_first = match (&a, &b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x <= y,
            _ => x.as_f64().unwrap_or(0.0) <= y.as_f64().unwrap_or(0.0),
        },
        (Json::String(x), Json::String(y)) => x <= y,
        _ => true,
    };
    if a_first == smaller {
        a
    } else {
        b
    }
}

fn bounds(col: &ArrayRef, is_json: bool) -> Option<(Json, Json)> {
    Some(match col.data_type() {
        DataType::Int64 => {
            let (lo, hi) = min_max::<Int64Type>(col)?;
            (json!(lo), json!(hi))
        }
        DataType::Float64 => {
            let (lo, hi) = min_max::<Float64Type>(col)?;
            (json!(lo), json!(hi))
        }
        DataType::Date32 => {
            let (lo, hi) = min_max::<Date32Type>(col)?;
            (
                json!(timefmt::format_days(lo)),
                json!(timefmt::format_days(hi)),
            )
        }
        DataType::Timestamp(..) => {
            let (lo, hi) = min_max::<TimestampMicrosecondType>(col)?;
            (
                json!(timefmt::format_stats_millis(lo, false)),
                json!(timefmt::format_stats_millis(hi, true)),
            )
        }
        DataType::Decimal128(_, 0) => {
            // JSON numbers beyond i64 would be read back as floats: no statistics then.
            // (Other scales have none either: a JSON number 12.34 is read back as a float,
            // which could skip a file holding the exact bound.)
            let (lo, hi) = min_max::<Decimal128Type>(col)?;
            (
                json!(i64::try_from(lo).ok()?),
                json!(i64::try_from(hi).ok()?),
            )
        }
        DataType::Utf8 if !is_json => {
            let a = col.as_string::<i32>();
            let (lo, hi) = fold_min_max(valid_rows(col), |i| a.value(i), |x, y| x < y)?;
            if lo.len() > MAX_STAT_STRING || hi.len() > MAX_STAT_STRING {
                return None;
            }
            (json!(lo), json!(hi))
        }
        _ => return None,
    })
}

/// The rows of `col` that hold a value, in order: every row when none is null, else only the
/// set bits of the validity bitmap (webhook columns are mostly null: most rows are skipped).
fn valid_rows(col: &ArrayRef) -> Box<dyn Iterator<Item = usize> + '_> {
    // Primitive and string arrays: their null buffer is their logical nulls.
    match col.nulls().filter(|n| n.null_count() > 0) {
        None => Box::new(0..col.len()),
        Some(nulls) => Box::new(nulls.valid_indices()),
    }
}

/// Smallest and largest of the values at `rows`, in one pass (`lt`: the order; floats by
/// `total_cmp`, as Arrow's own `min`/`max` order them).
fn fold_min_max<V: Copy>(
    mut rows: impl Iterator<Item = usize>,
    get: impl Fn(usize) -> V,
    lt: impl Fn(&V, &V) -> bool,
) -> Option<(V, V)> {
    let first = get(rows.next()?);
    let (mut lo, mut hi) = (first, first);
    for i in rows {
        let v = get(i);
        if lt(&v, &lo) {
            lo = v;
        } else if lt(&hi, &v) {
            hi = v;
        }
    }
    Some((lo, hi))
}

/// [`fold_min_max`] of a primitive column; `None` when every value is null.
fn min_max<T: ArrowPrimitiveType>(col: &ArrayRef) -> Option<(T::Native, T::Native)> {
    use deltalake::arrow::datatypes::ArrowNativeTypeOp;
    let values = col.as_primitive::<T>().values();
    fold_min_max(valid_rows(col), |i| values[i], |x, y| x.is_lt(*y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::compute;
    use std::sync::Arc;

    #[test]
    fn one_pass_bounds_agree_with_arrow_on_sparse_dense_and_sliced_columns() {
        use deltalake::arrow::array::Float64Array;
        // A small deterministic generator: no dependency for a test.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for density in [0, 1, 5, 50, 100] {
            let n = 3_000;
            let ints: Int64Array = (0..n)
                .map(|_| (next() % 100 < density).then(|| (next() % 2_000) as i64 - 1_000))
                .collect();
            let floats: Float64Array = (0..n)
                .map(|_| {
                    let v = match next() % 5 {
                        0 => -0.0,
                        1 => 0.0,
                        _ => (next() % 10_000) as f64 / 7.0 - 700.0,
                    };
                    (next() % 100 < density).then_some(v)
                })
                .collect();
            let texts: StringArray = (0..n)
                .map(|_| (next() % 100 < density).then(|| format!("v{}", next() % 5_000)))
                .collect();
            for (off, len) in [(0, n), (17, 1_500), (n - 1, 1)] {
                let i = ints.slice(off, len);
                let f = floats.slice(off, len);
                let t = texts.slice(off, len);
                let arrow_i = compute::min(&i).zip(compute::max(&i));
                let arrow_f = compute::min(&f).zip(compute::max(&f));
                let arrow_t = compute::min_string(&t)
                    .zip(compute::max_string(&t))
                    .map(|(a, b)| (json!(a), json!(b)));
                let (i, f, t): (ArrayRef, ArrayRef, ArrayRef) =
                    (Arc::new(i), Arc::new(f), Arc::new(t));
                let ctx = format!("density {density}%, slice {off}+{len}");
                assert_eq!(min_max::<Int64Type>(&i), arrow_i, "{ctx}");
                let ours_f = min_max::<Float64Type>(&f);
                assert_eq!(
                    ours_f.map(|(a, b)| (a.to_bits(), b.to_bits())),
                    arrow_f.map(|(a, b)| (a.to_bits(), b.to_bits())),
                    "{ctx} (-0.0 and 0.0 told apart)"
                );
                assert_eq!(bounds(&t, false), arrow_t, "{ctx}");
                assert_eq!(bounds(&i, false).is_none(), arrow_i.is_none(), "{ctx}");
            }
        }
    }
}
