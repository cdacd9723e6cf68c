//! Rows → Arrow record batches, with sparse builders.
//!
//! Webhook tables are wide and mostly null, so a builder only sees the rows that carry its
//! column: nulls are filled in lazily when a later value (or the flush) arrives. Columns whose
//! type is neither declared nor yet in the table collect their first values aside, so the
//! inference lattice sees the whole first batch before it fixes a type (a column seen only as
//! null never fixes one). Memory is accounted by input bytes: the caller flushes on that budget.
//! Columns are bounded per table: what gets no column goes to `_sdc_overflow` (`overflow.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use deltalake::arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use crate::columns::{coerce, merge, sibling_type, Cell, ColType, Value};
use crate::overflow::{Exempt, Overflow, DEFAULT_MAX_COLUMNS, OVERFLOW};
use crate::registry::{data_type, Registry};

/// How many values an unfixed column collects before its type is fixed from them anyway, so a
/// huge first batch does not keep every value of every new column twice.
const PENDING_LIMIT: usize = 1024;

/// A column's builder, appended sparsely: `len` rows are materialised so far.
struct Sparse {
    len: usize,
    b: Builder,
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Text(StringBuilder),
    Dec(Decimal128Builder),
}

impl Sparse {
    /// A builder sized for `rows` rows and `bytes` of text (the previous batch's size), so that
    /// it does not grow by copying itself over and over.
    fn new(ty: ColType, rows: usize, bytes: usize) -> Result<Sparse, ArrowError> {
        let b = match ty {
            ColType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
            ColType::Float64 => Builder::Float(Float64Builder::with_capacity(rows)),
            ColType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            ColType::Timestamp => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            ColType::Date => Builder::Date(Date32Builder::with_capacity(rows)),
            ColType::Utf8 | ColType::Json => {
                Builder::Text(StringBuilder::with_capacity(rows, bytes))
            }
            ColType::Decimal { precision, scale } => Builder::Dec(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(precision, i8::try_from(scale).unwrap_or(i8::MAX))?,
            ),
        };
        Ok(Sparse { len: 0, b })
    }

    /// Bytes of text held (string columns), the next batch's capacity hint.
    fn text_bytes(&self) -> usize {
        match &self.b {
            Builder::Text(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn pad(&mut self, rows: usize) {
        let n = rows.saturating_sub(self.len);
        if n == 0 {
            return;
        }
        match &mut self.b {
            Builder::Int(b) => b.append_nulls(n),
            Builder::Float(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
            Builder::Ts(b) => b.append_nulls(n),
            Builder::Date(b) => b.append_nulls(n),
            Builder::Text(b) => b.append_nulls(n),
            Builder::Dec(b) => b.append_nulls(n),
        }
        self.len = rows;
    }

    /// Appends `cell` at `row`; a cell of the wrong kind is a bug in `coerce`, never input.
    fn append(&mut self, row: usize, cell: Cell<'_>) {
        self.pad(row);
        match (&mut self.b, cell) {
            (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Ts(b), Cell::Micros(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Days(v)) => b.append_value(v),
            (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
            (Builder::Dec(b), Cell::Decimal(v)) => b.append_value(v),
            _ => {
                debug_assert!(false, "coerce produced a cell of the wrong kind");
                self.pad(row + 1); // keep the row count right whatever happens
                return;
            }
        }
        self.len = row + 1;
    }

    fn finish(mut self, rows: usize) -> ArrayRef {
        self.pad(rows);
        match self.b {
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Ts(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Dec(mut b) => Arc::new(b.finish()),
        }
    }
}

/// An owned copy of a [`Value`], for columns waiting for their type.
#[derive(Debug, Clone)]
enum Owned {
    Bool(bool),
    Int(i64),
    BigInt(String),
    Float(f64, String),
    Str(String),
    Json(String),
    Micros(i64),
}

impl Owned {
    fn of(v: &Value<'_>) -> Option<Owned> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => Owned::Bool(*b),
            Value::Int(i) => Owned::Int(*i),
            Value::BigInt(t) => Owned::BigInt((*t).to_string()),
            Value::Float(f, t) => Owned::Float(*f, (*t).to_string()),
            Value::Str(s) => Owned::Str(s.to_string()),
            Value::Json(t) => Owned::Json((*t).to_string()),
            Value::Micros(m) => Owned::Micros(*m),
        })
    }

    fn as_value(&self) -> Value<'_> {
        match self {
            Owned::Bool(b) => Value::Bool(*b),
            Owned::Int(i) => Value::Int(*i),
            Owned::BigInt(t) => Value::BigInt(t),
            Owned::Float(f, t) => Value::Float(*f, t),
            Owned::Str(s) => Value::Str(Cow::Borrowed(s)),
            Owned::Json(t) => Value::Json(t),
            Owned::Micros(m) => Value::Micros(*m),
        }
    }
}

/// Values of a property that has no column yet.
struct Pending {
    property: String,
    values: Vec<(usize, Owned)>,
}

/// Rows of one stream not yet written: the registry of the table's columns and their builders.
pub struct StreamBuffer {
    pub registry: Registry,
    builders: Vec<Option<Sparse>>,
    pending: Vec<Pending>,
    /// Property → index in `pending`.
    pending_index: std::collections::HashMap<String, usize, foldhash::fast::RandomState>,
    rows: usize,
    bytes: usize,
    /// Rows of the previous batch, and text bytes of each of its columns: capacity hints.
    last_rows: usize,
    last_text: Vec<usize>,
    /// The bound on the table's columns, the properties exempt from it, and the values of
    /// this batch that got no column (see `overflow.rs`).
    max_columns: usize,
    exempt: Exempt,
    overflow: Overflow,
}

impl StreamBuffer {
    pub fn new(registry: Registry) -> StreamBuffer {
        StreamBuffer {
            registry,
            builders: Vec::new(),
            pending: Vec::new(),
            pending_index: Default::default(),
            rows: 0,
            bytes: 0,
            last_rows: 0,
            last_text: Vec::new(),
            max_columns: DEFAULT_MAX_COLUMNS,
            exempt: Exempt::default(),
            overflow: Overflow::default(),
        }
    }

    /// At most `max_columns` columns in the table (metadata and siblings counted).
    pub fn with_max_columns(mut self, max_columns: usize) -> StreamBuffer {
        self.max_columns = max_columns;
        self
    }

    /// The stream's key properties: like the metadata, they always get a column.
    pub fn set_keys(&mut self, keys: &[String]) {
        self.exempt.set_keys(keys);
    }

    /// Whether `property` may get a new column: always for keys and metadata; otherwise while
    /// the columns and the properties waiting for their type leave a place for
    /// `_sdc_overflow` (or it exists).
    fn may_add(&self, property: &str) -> bool {
        if self.exempt.contains(property) {
            return true;
        }
        let reserved = usize::from(self.registry.property(OVERFLOW).is_none());
        self.registry.specs.len() + self.pending_index.len() + reserved < self.max_columns
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Declares `property` with a fixed type (from the SCHEMA) unless it already has a column.
    pub fn declare(&mut self, property: &str, ty: ColType) {
        let has_base = self
            .registry
            .property(property)
            .is_some_and(|p| p.base.is_some());
        // Without room, its values go to `_sdc_overflow` as they arrive.
        if !has_base
            && !self.pending_index.contains_key(property)
            && property != OVERFLOW
            && self.may_add(property)
        {
            self.registry.add_base(property, ty);
        }
    }

    /// Starts a new row of `bytes` input bytes; values are then added with [`Self::push`].
    pub fn begin_row(&mut self, bytes: usize) -> usize {
        self.bytes += bytes;
        self.rows += 1;
        self.rows - 1
    }

    /// Puts one value of the current row in its column, or in a sibling when it does not fit.
    pub fn push(
        &mut self,
        row: usize,
        property: &str,
        value: &Value<'_>,
    ) -> Result<(), ArrowError> {
        if matches!(value, Value::Null) {
            return Ok(());
        }
        if property == OVERFLOW {
            // The column holds our objects only: a record's own property of that name too.
            self.overflow.push(row, property, value);
            return Ok(());
        }
        let base = self.registry.property(property).and_then(|p| p.base);
        let Some(base) = base else {
            if self.pending_index.contains_key(property) || self.may_add(property) {
                return self.push_pending(row, property, value);
            }
            self.overflow.push(row, property, value);
            return Ok(());
        };
        let ty = self.registry.specs[base].ty;
        if let Some(cell) = coerce(ty, value) {
            return self.append(base, row, cell);
        }
        // The value does not fit its column losslessly: it goes to a sibling, of its own type
        // as a rule (`sibling_type` says when not).
        let Some(own) = sibling_type(ty, value) else {
            return Ok(());
        };
        let has_sibling = self
            .registry
            .property(property)
            .is_some_and(|p| p.sibling(own).is_some());
        if !has_sibling && !self.may_add(property) {
            self.overflow.push(row, property, value);
            return Ok(());
        }
        let sib = self.registry.sibling_for(property, own);
        match coerce(own, value) {
            Some(cell) => self.append(sib, row, cell),
            None => Ok(()),
        }
    }

    fn append(&mut self, col: usize, row: usize, cell: Cell<'_>) -> Result<(), ArrowError> {
        if self.builders.len() <= col {
            self.builders.resize_with(col + 1, || None);
        }
        let slot = &mut self.builders[col];
        let b = match slot {
            Some(b) => b,
            None => {
                // Sized like the previous batch, with a margin (capped: a batch of few rows
                // must not reserve a huge one's memory for every column).
                let rows = (self.last_rows + self.last_rows / 8).max(self.rows);
                let text = self.last_text.get(col).copied().unwrap_or(0);
                slot.insert(Sparse::new(
                    self.registry.specs[col].ty,
                    rows,
                    text + text / 8,
                )?)
            }
        };
        if b.len > row {
            // A duplicate key in one JSON object: the first occurrence is kept.
            tracing::warn!(column = %self.registry.specs[col].name, "duplicate property in a record; keeping the first value");
            return Ok(());
        }
        b.append(row, cell);
        Ok(())
    }

    fn push_pending(
        &mut self,
        row: usize,
        property: &str,
        value: &Value<'_>,
    ) -> Result<(), ArrowError> {
        let Some(owned) = Owned::of(value) else {
            return Ok(());
        };
        let idx = match self.pending_index.get(property) {
            Some(i) => *i,
            None => {
                self.pending.push(Pending {
                    property: property.to_string(),
                    values: Vec::new(),
                });
                self.pending_index
                    .insert(property.to_string(), self.pending.len() - 1);
                self.pending.len() - 1
            }
        };
        self.pending[idx].values.push((row, owned));
        if self.pending[idx].values.len() >= PENDING_LIMIT {
            self.fix_pending(idx)?;
        }
        Ok(())
    }

    /// Fixes the type of a pending property by the lattice join of its values (the first kind
    /// wins a conflict), then replays its values through the normal path.
    fn fix_pending(&mut self, idx: usize) -> Result<(), ArrowError> {
        let values = std::mem::take(&mut self.pending[idx].values);
        let property = self.pending[idx].property.clone();
        self.pending_index.remove(&property);
        let mut ty: Option<ColType> = None;
        for (_, v) in &values {
            if let Some(t) = v.as_value().natural_type() {
                ty = Some(match ty {
                    None => t,
                    Some(prev) => merge(prev, t).unwrap_or(prev),
                });
            }
        }
        let Some(ty) = ty else { return Ok(()) };
        self.registry.add_base(&property, ty);
        for (row, v) in &values {
            self.push(*row, &property, &v.as_value())?;
        }
        Ok(())
    }

    /// Builds the batch with the registry's full schema and empties the buffer. New columns
    /// (`registry.committed..`) are part of the schema; the caller marks them committed.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        for idx in 0..self.pending.len() {
            if !self.pending[idx].values.is_empty() {
                self.fix_pending(idx)?;
            }
        }
        self.pending.clear();
        self.pending_index.clear();
        let overflowed = self
            .overflow
            .take(self.registry.specs.len(), self.max_columns);
        if !overflowed.is_empty() {
            // One column of JSON text (of a table written before the bound, whatever type
            // its `_sdc_overflow` has: a value that does not fit goes to a sibling).
            let col = match self.registry.property(OVERFLOW).and_then(|p| p.base) {
                Some(col) => col,
                None => self.registry.add_base(OVERFLOW, ColType::Json),
            };
            let ty = self.registry.specs[col].ty;
            for (row, text) in &overflowed {
                let value = Value::Json(text);
                match coerce(ty, &value) {
                    Some(cell) => self.append(col, *row, cell)?,
                    None => {
                        let sib = self.registry.sibling_for(OVERFLOW, ColType::Json);
                        if let Some(cell) = coerce(ColType::Json, &value) {
                            self.append(sib, *row, cell)?;
                        }
                    }
                }
            }
        }
        let rows = self.rows;
        let schema = self.registry.arrow_schema();
        let mut builders = std::mem::take(&mut self.builders);
        builders.resize_with(self.registry.specs.len(), || None);
        if rows > 0 {
            // An empty cut (the rest of a batch already handed over) says nothing of sizes.
            self.last_rows = rows;
            self.last_text = builders
                .iter()
                .map(|b| b.as_ref().map_or(0, Sparse::text_bytes))
                .collect();
        }
        let columns: Vec<ArrayRef> = builders
            .into_iter()
            .zip(&self.registry.specs)
            .map(|(b, spec)| match b {
                Some(b) => b.finish(rows),
                None => new_null_array(&data_type(spec.ty), rows),
            })
            .collect();
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new_with_options(
            schema,
            columns,
            &deltalake::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{Float64Type, Int64Type};

    fn load(buf: &mut StreamBuffer, rows: &[&[(&str, &str)]]) -> RecordBatch {
        for fields in rows {
            let row = buf.begin_row(10);
            for (k, raw) in *fields {
                buf.push(row, k, &Value::from_raw(raw)).expect("push");
            }
        }
        buf.finish().expect("batch")
    }

    #[test]
    fn sparse_rows_and_lattice_inference() {
        let mut buf = StreamBuffer::new(Registry::default());
        let batch = load(
            &mut buf,
            &[
                &[("a", "1"), ("n", "null")],
                &[("b", "\"x\"")],
                &[("a", "2.5"), ("c", "{\"k\":1}")],
            ],
        );
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            vec!["a", "b", "c"],
            "a null-only column fixes no type"
        );
        let a = batch.column(0).as_primitive::<Float64Type>();
        assert_eq!((a.value(0), a.is_null(1), a.value(2)), (1.0, true, 2.5));
        assert_eq!(batch.column(2).as_string::<i32>().value(2), "{\"k\":1}");
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn conflicts_go_to_siblings_and_types_stay_fixed() {
        let mut buf = StreamBuffer::new(Registry::default());
        load(&mut buf, &[&[("p", "1")]]);
        buf.registry.committed = buf.registry.specs.len();
        let batch = load(
            &mut buf,
            &[
                &[("p", "\"abc\"")],
                &[("p", "2.5")],
                &[("p", "3")],
                &[("p", "true")],
            ],
        );
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, vec!["p", "p__string", "p__float", "p__boolean"]);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(2), 3);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "abc");
        assert_eq!(batch.column(2).as_primitive::<Float64Type>().value(1), 2.5);
        assert!(batch.column(3).as_boolean().value(3));
        assert_eq!(batch.column(0).null_count(), 3);
    }

    #[test]
    fn beyond_max_columns_values_go_to_the_overflow_object_of_their_row() {
        let mut buf = StreamBuffer::new(Registry::default()).with_max_columns(4);
        buf.set_keys(&["id".to_string()]);
        buf.declare("_sdc_sequence", ColType::Int64);
        let batch = load(
            &mut buf,
            &[
                &[("id", "1"), ("a", "1"), ("b", "\"x\""), ("c", "[1]")],
                &[
                    ("id", "2"),
                    ("a", "\"s\""),
                    ("_sdc_overflow", "7"),
                    ("d", "null"),
                ],
                &[("c", "2"), ("_sdc_deleted_at", "\"2026-01-01T00:00:00Z\"")],
            ],
        );
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        // Room for one property besides the key and the sequence (and _sdc_overflow's place);
        // the metadata gets its column beyond the bound.
        assert_eq!(
            names,
            vec![
                "_sdc_sequence",
                "id",
                "a",
                "_sdc_deleted_at",
                "_sdc_overflow"
            ]
        );
        let over = batch.column(4).as_string::<i32>();
        assert_eq!(over.value(0), r#"{"b":"x","c":[1]}"#);
        assert_eq!(
            over.value(1),
            r#"{"_sdc_overflow":7,"a":"s"}"#,
            "a value needing a sibling too (placed when a's type was fixed, at the cut)"
        );
        assert_eq!(over.value(2), r#"{"c":2}"#);
        // The next batch: the overflow column exists, the bound still holds.
        let batch = load(&mut buf, &[&[("e", "1"), ("a", "2")]]);
        assert_eq!(batch.num_columns(), 5);
        assert_eq!(batch.column(4).as_string::<i32>().value(0), r#"{"e":1}"#);
    }

    #[test]
    fn declared_columns_exist_even_when_null() {
        let mut buf = StreamBuffer::new(Registry::default());
        buf.declare("ts", ColType::Timestamp);
        let batch = load(&mut buf, &[&[("ts", "\"soon\"")], &[("x", "null")]]);
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, vec!["ts", "ts__string"]);
    }
}
