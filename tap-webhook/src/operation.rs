//! Per-record operations from the sender: where a payload says whether it upserts, inserts
//! (creates) or deletes its row, and how the sender's words map to those three.
//!
//! valmi.io puts it in `_valmi_meta._valmi_sync_op` (flattened into the query parameter
//! `_valmi_meta__valmi_sync_op` by GET), change-data-capture feeds in `op` (`c`, `u`, `d`, `r`),
//! others in `deleted` or an event type. A source's `operation` setting names the place (a JSON
//! pointer into the payload, or a query parameter) and the mapping; the tap then writes the
//! mapped operation in `_sdc_operation` on every record and a delete's receipt time in
//! `_sdc_deleted_at` (the Singer way: targets with `hard_delete` remove the row). A value that
//! maps to nothing is never guessed: the message goes to `<stream>__rejected` with the reason.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::payload::{at_pointer, parse_pointer, show_pointer, Field};

/// What a record asks of its row.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Insert the row, or replace the row of its key.
    Upsert,
    /// Insert the row only when its key is new (valmi's Create).
    Insert,
    /// Remove the row of its key.
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Insert => "insert",
            Op::Delete => "delete",
        }
    }
}

/// The `operation` setting of a source, as written.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct OperationConfig {
    /// `valmi` or `debezium`: a field and a mapping for that sender; `field` and `values`
    /// given beside it override or extend it.
    pub preset: Option<String>,
    /// A JSON pointer into the payload (`/_valmi_meta/_valmi_sync_op`), or, not starting with
    /// `/`, a query parameter name (`_valmi_meta__valmi_sync_op`).
    pub field: Option<String>,
    /// The sender's values (strings as they are, other values as JSON text: `true`) to
    /// operations; a key starting with `*` matches every string ending with the rest
    /// (`*.deleted` for Stripe's event types), the longest such suffix first.
    pub values: Option<BTreeMap<String, Op>>,
    /// The operation of a message without the field (or with it null). Unset: such a message
    /// is rejected.
    pub default: Option<Op>,
}

/// Where the operation is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A JSON pointer, as reference tokens (`~1` and `~0` decoded); never empty.
    Pointer(Vec<String>),
    /// A query parameter of the delivery.
    Query(String),
}

/// A validated `operation` setting.
#[derive(Debug, Clone)]
pub struct Operation {
    pub place: Place,
    /// Exact values, then `*suffix` patterns, longest first.
    exact: BTreeMap<String, Op>,
    suffixes: Vec<(String, Op)>,
    pub default: Option<Op>,
}

/// A preset's field and values.
fn preset(name: &str) -> Option<(&'static str, &'static [(&'static str, Op)])> {
    match name {
        // valmi's `_valmi_sync_op`: upsert and delete (Upsert, Mirror, Delete modes); the names
        // of its other modes are taken as the rows they make.
        "valmi" => Some((
            "/_valmi_meta/_valmi_sync_op",
            &[
                ("upsert", Op::Upsert),
                ("update", Op::Upsert),
                ("mirror", Op::Upsert),
                ("create", Op::Insert),
                ("insert", Op::Insert),
                ("append", Op::Insert),
                ("delete", Op::Delete),
            ],
        )),
        // Debezium's `op`: create, update, delete, read (a snapshot row).
        "debezium" => Some((
            "/op",
            &[
                ("c", Op::Insert),
                ("u", Op::Upsert),
                ("r", Op::Upsert),
                ("d", Op::Delete),
            ],
        )),
        _ => None,
    }
}

impl Operation {
    /// Validates the setting; `Err` says what is wrong (the caller names the setting).
    pub fn build(c: &OperationConfig) -> Result<Operation, String> {
        let base = match c.preset.as_deref() {
            Some(name) => Some(preset(name).ok_or_else(|| {
                format!("unknown preset {name:?}; the presets are \"valmi\" and \"debezium\"")
            })?),
            None => None,
        };
        let field = c
            .field
            .as_deref()
            .or(base.map(|(f, _)| f))
            .ok_or("give `field` (a JSON pointer or a query parameter name) or a `preset`")?;
        let place = match parse_pointer(field) {
            Some(tokens) => Place::Pointer(tokens),
            None if field.is_empty() => return Err("`field` is empty".into()),
            None => Place::Query(field.to_owned()),
        };
        let mut exact = BTreeMap::new();
        let mut suffixes = Vec::new();
        let given = base
            .map(|(_, v)| v.iter().map(|(k, op)| ((*k).to_owned(), *op)).collect())
            .unwrap_or_else(Vec::new)
            .into_iter()
            .chain(c.values.clone().unwrap_or_default());
        for (k, op) in given {
            match k.strip_prefix('*') {
                Some(suffix) => {
                    suffixes.retain(|(s, _)| *s != suffix);
                    suffixes.push((suffix.to_owned(), op));
                }
                None => {
                    exact.insert(k, op);
                }
            }
        }
        // The longest matching suffix wins (`*` alone is a catch-all).
        suffixes.sort_by_key(|s: &(String, Op)| std::cmp::Reverse(s.0.len()));
        if exact.is_empty() && suffixes.is_empty() {
            return Err("`values` maps no value to an operation".into());
        }
        Ok(Operation {
            place,
            exact,
            suffixes,
            default: c.default,
        })
    }

    /// The operation of a message: `fields` its payload's top level, `query` the delivery's
    /// stored query parameters (a JSON object). `Err` is why there is none, worded to follow
    /// "operation ".
    pub fn resolve(&self, fields: &[Field<'_>], query: &str) -> Result<Op, String> {
        let found = match &self.place {
            Place::Pointer(tokens) if tokens.is_empty() => {
                return Err("has an empty pointer".into())
            }
            Place::Pointer(tokens) => at_pointer(fields, tokens)?,
            Place::Query(name) => match serde_json::from_str::<Value>(query) {
                Ok(Value::Object(mut m)) => m.remove(name),
                _ => None,
            },
        };
        let text = match found {
            None | Some(Value::Null) => {
                return self
                    .default
                    .ok_or_else(|| format!("is missing ({}) and no default is set", self.where_()))
            }
            Some(Value::String(s)) => s,
            Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
            Some(Value::Array(_)) => return Err(format!("({}) is an array", self.where_())),
            Some(Value::Object(_)) => return Err(format!("({}) is an object", self.where_())),
        };
        if let Some(op) = self.exact.get(&text) {
            return Ok(*op);
        }
        if let Some((_, op)) = self
            .suffixes
            .iter()
            .find(|(s, _)| text.ends_with(s.as_str()))
        {
            return Ok(*op);
        }
        let mut shown: String = text.chars().take(64).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        Err(format!(
            "value {shown:?} ({}) maps to no operation (known: {})",
            self.where_(),
            self.exact
                .keys()
                .cloned()
                .chain(self.suffixes.iter().map(|(s, _)| format!("*{s}")))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// The place, as the user wrote it, for reasons.
    fn where_(&self) -> String {
        match &self.place {
            Place::Pointer(t) => format!("at {}", show_pointer(t)),
            Place::Query(q) => format!("query parameter {q:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::top_level;

    fn op(c: serde_json::Value) -> Operation {
        Operation::build(&serde_json::from_value(c).unwrap()).unwrap()
    }

    fn resolve(o: &Operation, body: &str, query: &str) -> Result<Op, String> {
        o.resolve(&top_level(body).unwrap(), query)
    }

    #[test]
    fn the_valmi_preset_reads_the_sync_op_by_pointer_or_query() {
        let post = op(serde_json::json!({"preset": "valmi"}));
        let body = |o: &str| {
            format!(r#"{{"_valmi_meta":{{"_valmi_sync_op":"{o}","_valmi_row_num":3}},"id":1}}"#)
        };
        assert_eq!(resolve(&post, &body("upsert"), "{}"), Ok(Op::Upsert));
        assert_eq!(resolve(&post, &body("delete"), "{}"), Ok(Op::Delete));
        assert_eq!(resolve(&post, &body("create"), "{}"), Ok(Op::Insert));
        let e = resolve(&post, &body("explode"), "{}").unwrap_err();
        assert!(
            e.contains("\"explode\"") && e.contains("/_valmi_meta/_valmi_sync_op"),
            "{e}"
        );
        let e = resolve(&post, r#"{"id":1}"#, "{}").unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let get = op(serde_json::json!({"preset": "valmi", "field": "_valmi_meta__valmi_sync_op"}));
        assert_eq!(
            resolve(&get, "{}", r#"{"_valmi_meta__valmi_sync_op":"delete"}"#),
            Ok(Op::Delete)
        );
        // A repeated parameter is an array: refused, not guessed.
        let e = resolve(
            &get,
            "{}",
            r#"{"_valmi_meta__valmi_sync_op":["delete","upsert"]}"#,
        )
        .unwrap_err();
        assert!(e.contains("array"), "{e}");
    }

    #[test]
    fn values_defaults_and_suffix_patterns() {
        let o = op(
            serde_json::json!({"field": "/deleted", "values": {"true": "delete", "false": "upsert"}, "default": "upsert"}),
        );
        assert_eq!(resolve(&o, r#"{"deleted":true}"#, "{}"), Ok(Op::Delete));
        assert_eq!(resolve(&o, r#"{"deleted":false}"#, "{}"), Ok(Op::Upsert));
        assert_eq!(resolve(&o, r#"{"deleted":null}"#, "{}"), Ok(Op::Upsert));
        assert_eq!(resolve(&o, r#"{"x":1}"#, "{}"), Ok(Op::Upsert));
        let stripe = op(
            serde_json::json!({"field": "/type", "values": {"*.deleted": "delete", "*.created": "insert", "*": "upsert"}}),
        );
        assert_eq!(
            resolve(&stripe, r#"{"type":"customer.deleted"}"#, "{}"),
            Ok(Op::Delete)
        );
        assert_eq!(
            resolve(&stripe, r#"{"type":"customer.created"}"#, "{}"),
            Ok(Op::Insert)
        );
        assert_eq!(
            resolve(&stripe, r#"{"type":"customer.updated"}"#, "{}"),
            Ok(Op::Upsert)
        );
        let cdc = op(serde_json::json!({"preset": "debezium", "values": {"t": "delete"}}));
        assert_eq!(resolve(&cdc, r#"{"op":"c"}"#, "{}"), Ok(Op::Insert));
        assert_eq!(resolve(&cdc, r#"{"op":"t"}"#, "{}"), Ok(Op::Delete));
        let e = resolve(&cdc, r#"{"op":{"x":1}}"#, "{}").unwrap_err();
        assert!(e.contains("object"), "{e}");
        let slash = op(serde_json::json!({"field": "/a~1b/c~0d", "values": {"x": "delete"}}));
        assert_eq!(
            resolve(&slash, r#"{"a/b":{"c~d":"x"}}"#, "{}"),
            Ok(Op::Delete)
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let build = |v: serde_json::Value| {
            Operation::build(&serde_json::from_value(v).unwrap()).unwrap_err()
        };
        assert!(build(serde_json::json!({"preset": "stitch"})).contains("unknown preset"));
        assert!(build(serde_json::json!({"values": {"a": "delete"}})).contains("field"));
        assert!(build(serde_json::json!({"field": "/op"})).contains("no value"));
        assert!(
            build(serde_json::json!({"field": "", "values": {"a": "delete"}})).contains("empty")
        );
        assert!(serde_json::from_value::<OperationConfig>(
            serde_json::json!({"field": "/op", "values": {"a": "remove"}})
        )
        .is_err());
    }
}
