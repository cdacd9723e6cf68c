//! Query parameters back into the nested payload a sender flattened them from, for GET
//! deliveries (`unflatten_query`), so that a sender's POST and GET deliveries land in the same
//! columns.
//!
//! valmi.io sends a POST body `{"_valmi_meta": {"_valmi_sync_op": "upsert"}, …}` as
//! `GET ?_valmi_meta__valmi_sync_op=upsert&…`: the object's name, `_`, the field's name (which
//! starts with `_` itself). Such a join cannot be undone without knowing the object's name, so
//! the setting is either the list of object names (`["_valmi_meta"]`: `<name>_<field>` becomes
//! `{"<name>": {"<field>": …}}`, exactly valmi's inverse), or `true`: every name is split at
//! each `__` (`a__b__c` becomes `{"a": {"b": {"c": …}}}`).
//!
//! Nothing is lost: a name that cannot be nested (its object's name is also a plain parameter,
//! a part would be empty, it nests deeper than [`MAX_DEPTH`], or its object would be a field
//! the tap sets, such as `_sdc_deleted_at`, which the tap drops from payloads) stays a
//! top-level field as it came. Values stay strings, as every
//! query parameter is.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The deepest nesting a name makes; deeper names stay flat. A request head of 64 KiB holds a
/// name of 20,000 `__`: nested that deep, the payload would overflow the stack of whatever
/// serialises it, and no JSON body may nest past 128 anyway.
pub const MAX_DEPTH: usize = 32;

/// The `unflatten_query` setting as written: `true`/`false`, or the names of the objects.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum UnflattenConfig {
    All(bool),
    Objects(Vec<String>),
}

/// How GET query parameters are nested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unflatten {
    /// Every name split at each `__`.
    DoubleUnderscore,
    /// `<name>_<field>` for these object names.
    Objects(Vec<String>),
}

impl Unflatten {
    /// `None`: parameters stay as they came.
    pub fn build(c: Option<UnflattenConfig>) -> Result<Option<Unflatten>, String> {
        match c {
            None | Some(UnflattenConfig::All(false)) => Ok(None),
            Some(UnflattenConfig::All(true)) => Ok(Some(Unflatten::DoubleUnderscore)),
            Some(UnflattenConfig::Objects(names)) if names.iter().any(String::is_empty) => {
                Err("object names must not be empty".into())
            }
            Some(UnflattenConfig::Objects(names)) => Ok(Some(Unflatten::Objects(names))),
        }
    }

    /// The path a parameter name nests into; `None`: it stays top-level (also when its first
    /// part is a name `taken` says the tap sets).
    fn path<'a>(&self, name: &'a str, taken: &impl Fn(&str) -> bool) -> Option<Vec<&'a str>> {
        let parts: Vec<&str> = match self {
            Unflatten::DoubleUnderscore => name.split("__").collect(),
            Unflatten::Objects(objects) => {
                // The longest object name first: `a` and `a_b` both listed, `a_b_c` is in `a_b`.
                let object = objects
                    .iter()
                    .filter(|o| name.len() > o.len() + 1 && name.starts_with(o.as_str()))
                    .filter(|o| name.as_bytes()[o.len()] == b'_')
                    .max_by_key(|o| o.len())?;
                vec![&name[..object.len()], &name[object.len() + 1..]]
            }
        };
        (parts.len() > 1
            && parts.len() <= MAX_DEPTH
            && parts.iter().all(|p| !p.is_empty())
            && !taken(parts[0]))
        .then_some(parts)
    }

    /// Nests `flat`'s fields (a JSON object of parameters). Plain names are placed first, so
    /// the result does not depend on the parameters' order. `taken`: the top-level names the
    /// tap sets itself; nothing nests into them.
    pub fn apply(
        &self,
        flat: Map<String, Value>,
        taken: impl Fn(&str) -> bool,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let mut nested = Vec::new();
        for (k, v) in flat {
            match self.path(&k, &taken) {
                None => {
                    out.insert(k, v);
                }
                Some(_) => nested.push((k, v)),
            }
        }
        for (k, v) in nested {
            let Some(path) = self.path(&k, &taken) else {
                continue;
            };
            if !place(&mut out, &path, &v) {
                out.insert(k, v);
            }
        }
        out
    }
}

/// Puts `v` at `path` under `map`, creating objects; false (nothing changed) when a value is
/// in the way (a parent that is not an object, or the leaf already set).
fn place(map: &mut Map<String, Value>, path: &[&str], v: &Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    // Checked before anything is created, so a refused placement leaves no empty objects.
    let mut at = Some(&*map);
    for p in parents {
        at = match at.map(|m| m.get(*p)) {
            Some(Some(Value::Object(m))) => Some(m),
            Some(Some(_)) => return false,
            _ => None,
        };
    }
    if at.is_some_and(|m| m.contains_key(*last)) {
        return false;
    }
    let mut at = map;
    for p in parents {
        let slot = at
            .entry((*p).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(m) = slot else {
            return false;
        };
        at = m;
    }
    at.insert((*last).to_owned(), v.clone());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(u: &Unflatten, v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(u.apply(m, |n| n == "_sdc_deleted_at")),
            _ => unreachable!(),
        }
    }

    #[test]
    fn valmis_get_parameters_become_its_post_body() {
        let u = Unflatten::Objects(vec!["_valmi_meta".into()]);
        let got = apply(
            &u,
            json!({"_valmi_meta__valmi_row_num": "347", "_valmi_meta__valmi_sync_op": "upsert",
                   "my_first_name": "Ryan", "_message_id": "346", "_sync_mode": "upsert"}),
        );
        assert_eq!(
            got,
            json!({"_valmi_meta": {"_valmi_row_num": "347", "_valmi_sync_op": "upsert"},
                   "my_first_name": "Ryan", "_message_id": "346", "_sync_mode": "upsert"})
        );
    }

    #[test]
    fn double_underscores_nest_and_nothing_is_lost() {
        let u = Unflatten::DoubleUnderscore;
        assert_eq!(
            apply(&u, json!({"a__b": "1", "a__c__d": "2", "x": "3"})),
            json!({"a": {"b": "1", "c": {"d": "2"}}, "x": "3"})
        );
        // `a` is a plain parameter: `a__b` cannot go inside it and stays as it came, whatever
        // the order; empty parts do not nest.
        for v in [
            json!({"a__b": "1", "a": "p"}),
            json!({"a": "p", "a__b": "1"}),
        ] {
            assert_eq!(apply(&u, v), json!({"a": "p", "a__b": "1"}));
        }
        assert_eq!(
            apply(&u, json!({"__x": "1", "y__": "2", "p____q": "3"})),
            json!({"__x": "1", "y__": "2", "p____q": "3"})
        );
        // A leaf and a deeper path through it: the second stays flat.
        assert_eq!(
            apply(&u, json!({"a__b": "1", "a__b__c": "2"})),
            json!({"a": {"b": "1"}, "a__b__c": "2"})
        );
        // A name nesting deeper than MAX_DEPTH stays flat (a hostile GET cannot build a
        // payload too deep to serialise or parse).
        let deep = vec!["x"; 20_000].join("__");
        let ok = vec!["x"; MAX_DEPTH].join("__");
        let got = apply(&u, json!({deep.clone(): "1", ok.clone(): "2"}));
        assert_eq!(got[&deep], "1");
        let path = format!("/{}", vec!["x"; MAX_DEPTH].join("/"));
        assert_eq!(got.pointer(&path), Some(&json!("2")));
        // Nothing nests into a name the tap sets: it would be dropped as forged.
        assert_eq!(
            apply(&u, json!({"_sdc_deleted_at__x": "1"})),
            json!({"_sdc_deleted_at__x": "1"})
        );
        // Repeated parameters (arrays) nest like any value.
        assert_eq!(
            apply(&u, json!({"a__b": ["1", "2"]})),
            json!({"a": {"b": ["1", "2"]}})
        );
    }

    #[test]
    fn settings() {
        let b = |v: Value| Unflatten::build(Some(serde_json::from_value(v).unwrap()));
        assert_eq!(b(json!(false)), Ok(None));
        assert_eq!(b(json!(true)), Ok(Some(Unflatten::DoubleUnderscore)));
        assert!(b(json!([""])).is_err());
        assert!(serde_json::from_value::<UnflattenConfig>(json!("yes")).is_err());
    }
}
