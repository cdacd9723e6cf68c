//! The columns of one table: which property each column holds, of which fixed type, and which
//! columns are siblings holding the values that did not fit (see `columns`).
//!
//! The registry is rebuilt from the Delta table's schema at start (the mapping is stored in each
//! field's metadata), grows as new properties and conflicts appear, and is turned back into the
//! Arrow schema every Parquet file of the table is written with.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::columns::ColType;
use crate::names::{sanitize, NameSet};

/// Field metadata key: the record property a column holds.
pub const META_PROPERTY: &str = "target_warehouse.property";
/// Field metadata key: the column's type tag (distinguishes JSON text from plain strings).
pub const META_TYPE: &str = "target_warehouse.type";
/// Field metadata key: present ("true") on sibling columns.
pub const META_SIBLING: &str = "target_warehouse.sibling";

/// One column of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub property: String,
    pub ty: ColType,
    /// A sibling holds the values of `property` that its base column could not take losslessly.
    pub sibling: bool,
}

/// The columns holding one property: its base column and its siblings.
#[derive(Debug, Clone, Default)]
pub struct PropertyColumns {
    pub base: Option<usize>,
    pub siblings: Vec<(ColType, usize)>,
}

impl PropertyColumns {
    pub fn sibling(&self, ty: ColType) -> Option<usize> {
        self.siblings
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, i)| *i)
    }

    /// Base first, then siblings in creation order: the order a key value is looked up in.
    pub fn all(&self) -> impl Iterator<Item = usize> + '_ {
        self.base
            .into_iter()
            .chain(self.siblings.iter().map(|(_, i)| *i))
    }
}

#[derive(Debug, Default, Clone)]
pub struct Registry {
    pub specs: Vec<ColumnSpec>,
    /// How many of `specs` are already in the table's committed schema.
    pub committed: usize,
    props: HashMap<String, PropertyColumns, foldhash::fast::RandomState>,
    names: NameSet,
}

impl Registry {
    /// Rebuilds the registry from a table schema written by us (or by anyone: columns without
    /// our metadata are taken as base columns of a property of the same name).
    pub fn from_schema(schema: &Schema) -> Result<Registry, String> {
        let mut reg = Registry::default();
        for field in schema.fields() {
            let meta = field.metadata();
            let property = meta
                .get(META_PROPERTY)
                .cloned()
                .unwrap_or_else(|| field.name().clone());
            let tagged = meta.get(META_TYPE).and_then(|t| ColType::from_tag(t));
            let ty = match (tagged, type_of(field.data_type())) {
                // The tag says decimal; precision and scale are the field's own.
                (Some(ColType::Decimal { .. }), Some(d @ ColType::Decimal { .. })) => d,
                (Some(t), _) => t,
                (None, found) => found.ok_or_else(|| {
                    format!(
                        "column {:?} has type {} which target-warehouse does not write",
                        field.name(),
                        field.data_type()
                    )
                })?,
            };
            let spec = ColumnSpec {
                name: field.name().clone(),
                property,
                ty,
                sibling: meta.get(META_SIBLING).is_some_and(|s| s == "true"),
            };
            reg.push(spec);
        }
        reg.committed = reg.specs.len();
        Ok(reg)
    }

    fn push(&mut self, spec: ColumnSpec) -> usize {
        let idx = self.specs.len();
        self.names.insert_existing(&spec.name);
        let entry = self.props.entry(spec.property.clone()).or_default();
        if spec.sibling {
            entry.siblings.push((spec.ty, idx));
        } else if entry.base.is_none() {
            entry.base = Some(idx);
        }
        self.specs.push(spec);
        idx
    }

    pub fn property(&self, property: &str) -> Option<&PropertyColumns> {
        self.props.get(property)
    }

    /// Creates the base column of `property` (which must not have one yet).
    pub fn add_base(&mut self, property: &str, ty: ColType) -> usize {
        let name = self.names.claim(&sanitize(property));
        self.push(ColumnSpec {
            name,
            property: property.to_string(),
            ty,
            sibling: false,
        })
    }

    /// Returns the sibling column of `property` for values of type `ty`, creating it if needed.
    pub fn sibling_for(&mut self, property: &str, ty: ColType) -> usize {
        if let Some(i) = self.props.get(property).and_then(|p| p.sibling(ty)) {
            return i;
        }
        let base_name = self
            .props
            .get(property)
            .and_then(|p| p.base)
            .map(|i| self.specs[i].name.clone())
            .unwrap_or_else(|| sanitize(property));
        let name = self.names.claim(&format!("{base_name}__{}", ty.tag()));
        self.push(ColumnSpec {
            name,
            property: property.to_string(),
            ty,
            sibling: true,
        })
    }

    pub fn has_uncommitted(&self) -> bool {
        self.committed < self.specs.len()
    }

    /// The Arrow schema of every file: all columns, committed first, in creation order.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema_upto(self.specs.len())
    }

    /// The schema of the first `columns` columns (a batch cut before later columns appeared).
    pub fn arrow_schema_upto(&self, columns: usize) -> SchemaRef {
        Arc::new(Schema::new(
            self.specs[..columns.min(self.specs.len())]
                .iter()
                .map(field_of)
                .collect::<Vec<_>>(),
        ))
    }
}

/// Whether a field of a table's schema holds JSON text (our type tag in its metadata).
pub fn is_json(field: &Field) -> bool {
    field
        .metadata()
        .get(META_TYPE)
        .is_some_and(|t| t == ColType::Json.tag())
}

pub fn data_type(ty: ColType) -> DataType {
    match ty {
        ColType::Int64 => DataType::Int64,
        ColType::Float64 => DataType::Float64,
        ColType::Boolean => DataType::Boolean,
        ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColType::Date => DataType::Date32,
        ColType::Utf8 | ColType::Json => DataType::Utf8,
        ColType::Decimal { precision, scale } => {
            DataType::Decimal128(precision, i8::try_from(scale).unwrap_or(i8::MAX))
        }
    }
}

fn type_of(dt: &DataType) -> Option<ColType> {
    Some(match dt {
        DataType::Int64 => ColType::Int64,
        DataType::Float64 => ColType::Float64,
        DataType::Boolean => ColType::Boolean,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ColType::Timestamp,
        DataType::Date32 => ColType::Date,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColType::Utf8,
        DataType::Decimal128(precision, scale) => ColType::Decimal {
            precision: *precision,
            scale: u8::try_from(*scale).ok()?,
        },
        _ => return None,
    })
}

fn field_of(spec: &ColumnSpec) -> Field {
    let mut meta = HashMap::new();
    meta.insert(META_PROPERTY.to_string(), spec.property.clone());
    meta.insert(META_TYPE.to_string(), spec.ty.tag().to_string());
    if spec.sibling {
        meta.insert(META_SIBLING.to_string(), "true".to_string());
    }
    Field::new(&spec.name, data_type(spec.ty), true).with_metadata(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_and_names_survive_a_round_trip_through_the_schema() {
        let mut reg = Registry::default();
        let price = reg.add_base("price", ColType::Float64);
        let s = reg.sibling_for("price", ColType::Utf8);
        assert_eq!(reg.specs[s].name, "price__string");
        assert_eq!(reg.sibling_for("price", ColType::Utf8), s);
        reg.add_base("Price", ColType::Int64);
        reg.add_base("price__string", ColType::Utf8);
        let back = Registry::from_schema(&reg.arrow_schema()).expect("our own schema");
        assert_eq!(back.specs, reg.specs);
        assert_eq!(back.specs[2].name, "Price__2");
        assert_eq!(back.specs[3].name, "price__string__2");
        let p = back.property("price").expect("known");
        assert_eq!(p.base, Some(price));
        assert_eq!(p.sibling(ColType::Utf8), Some(s));
        assert_eq!(back.committed, 4);
    }
}
