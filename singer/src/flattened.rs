//! Meltano's forms of object settings, made nested before a config is checked against its schema
//! (part of config loading, [`crate::config`]).
//!
//! Meltano hands an object setting written in `meltano.yml` over in shapes a plain JSON config
//! never has (Meltano 4.4, `meltano invoke`):
//! - dotted keys, at any level: `TAP_WEBHOOK_SOURCES={"orders.primary_key": "order_id",
//!   "gh": {}}`, or `{"sources.orders.primary_key": "order_id"}` at the top;
//! - the whole object as JSON text: `"sources": "{\"orders\": {}}"`;
//! - one more variable per leaf, its path joined by `_` (`TAP_WEBHOOK_SOURCES_ORDERS_PRIMARY_KEY`),
//!   beside the object's own variable: lossy (names hold `_`), so [`redundant_env_leaves`] drops
//!   them when that variable is there, and they stay unknown settings when it is not.
//!
//! A dotted key is split only where the schema says it is a path: in an object with declared
//! properties when the whole key is not one of them, in a map of objects (`sources`) always (a
//! source's name has no dot). Maps of strings (`storage_options`) keep their keys as written.
//! Unknown settings still reach the schema check, which refuses them by name.

use serde_json::{Map, Value};

use crate::config_error::ConfigError;

/// Nests dotted keys and parses JSON-text objects in `layer`, guided by the settings' schema.
pub fn unflatten(
    layer: Map<String, Value>,
    schema: &Value,
) -> Result<Map<String, Value>, ConfigError> {
    unflatten_at(layer, schema, "")
}

fn unflatten_at(
    obj: Map<String, Value>,
    schema: &Value,
    path: &str,
) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    for (key, value) in obj {
        let (name, value) = match key.split_once('.') {
            Some((head, rest)) if is_path(schema, &key) => {
                let mut inner = Map::new();
                inner.insert(rest.to_owned(), value);
                (head.to_owned(), Value::Object(inner))
            }
            _ => (key, value),
        };
        insert(&mut out, name, value, path)?;
    }
    let mut done = Map::new();
    for (key, value) in out {
        let setting = join(path, &key);
        let child = child_schema(schema, &key);
        let value = match value {
            Value::String(text) if wants_object(child) && text.trim_start().starts_with('{') => {
                serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
                    setting: setting.clone(),
                    detail: format!("an object given as JSON text that does not parse: {e}"),
                })?
            }
            other => other,
        };
        let value = match (value, child) {
            (Value::Object(m), Some(child)) => Value::Object(unflatten_at(m, child, &setting)?),
            (other, _) => other,
        };
        done.insert(key, value);
    }
    Ok(done)
}

/// Whether a dotted `key` of an object with this schema is a path rather than a name.
fn is_path(schema: &Value, key: &str) -> bool {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        return !props.contains_key(key);
    }
    schema
        .get("additionalProperties")
        .is_some_and(|s| wants_object(Some(s)))
}

fn child_schema<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()))
}

/// True when the schema takes an object and not a string (so JSON text must be parsed).
fn wants_object(schema: Option<&Value>) -> bool {
    let types: Vec<&str> = match schema.and_then(|s| s.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    types.contains(&"object") && !types.contains(&"string")
}

/// Adds `name: value`, merging objects given in parts (`"gh": {}` and `"gh.primary_key"`).
fn insert(
    out: &mut Map<String, Value>,
    name: String,
    value: Value,
    path: &str,
) -> Result<(), ConfigError> {
    match (out.get_mut(&name), value) {
        (None, value) => {
            out.insert(name, value);
            Ok(())
        }
        (Some(Value::Object(into)), Value::Object(from)) => {
            let path = join(path, &name);
            for (k, v) in from {
                insert(into, k, v, &path)?;
            }
            Ok(())
        }
        (Some(_), _) => Err(ConfigError::Invalid {
            setting: join(path, &name),
            detail: "given twice (as a value and as dotted keys, or as two values)".into(),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Drops the `<object>_<path>` leaf variables Meltano sets beside an object setting's own
/// variable (`sources_orders_primary_key` beside `sources`): the object already holds them.
/// `settings` are the lower-cased names read from the environment.
pub fn redundant_env_leaves(settings: &mut Map<String, Value>, schema: &Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let objects: Vec<String> = props
        .iter()
        .filter(|(name, s)| wants_object(Some(s)) && settings.contains_key(name.as_str()))
        .map(|(name, _)| format!("{name}_"))
        .collect();
    settings.retain(|name, _| {
        props.contains_key(name) || !objects.iter().any(|o| name.starts_with(o.as_str()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": {
            "port": {"type": "integer"},
            "sources": {"type": "object", "additionalProperties": {"type": "object",
                "additionalProperties": false, "properties": {
                    "primary_key": {"type": "string"},
                    "api_keys": {"type": "array"},
                    "signature": {"type": "object", "properties": {"scheme": {"type": "string"}}}}}},
            "queue": {"type": "object", "properties": {"backend": {"type": "string"}}},
            "storage_options": {"type": "object", "additionalProperties": {"type": "string"}}}})
    }

    fn run(v: Value) -> Result<Value, ConfigError> {
        unflatten(v.as_object().unwrap().clone(), &schema()).map(Value::Object)
    }

    #[test]
    fn meltano_dotted_keys_at_every_level_are_nested() {
        // As `meltano invoke` sets TAP_WEBHOOK_SOURCES (Meltano 4.4).
        let got = run(json!({"sources": {"orders.primary_key": "order_id",
            "orders.api_keys": ["a", "b"], "gh": {}, "gh.signature.scheme": "github"}}));
        assert_eq!(
            got.unwrap(),
            json!({"sources": {"orders": {"primary_key": "order_id", "api_keys": ["a", "b"]},
                "gh": {"signature": {"scheme": "github"}}}})
        );
        let got = run(
            json!({"sources.orders.primary_key": "id", "queue.backend": "spool",
            "port": 1, "storage_options": {"a.b": "kept"}}),
        );
        assert_eq!(
            got.unwrap(),
            json!({"sources": {"orders": {"primary_key": "id"}}, "queue": {"backend": "spool"},
                "port": 1, "storage_options": {"a.b": "kept"}})
        );
    }

    #[test]
    fn json_text_objects_are_parsed_and_conflicts_named() {
        let got = run(json!({"sources": "{\"orders\": {\"primary_key\": \"id\"}}",
            "queue": " {\"backend\": \"spool\"}"}));
        assert_eq!(
            got.unwrap(),
            json!({"sources": {"orders": {"primary_key": "id"}}, "queue": {"backend": "spool"}})
        );
        let e = run(json!({"sources": "{broken"})).unwrap_err();
        assert!(e.to_string().contains("`sources`"), "{e}");
        let e = run(json!({"sources": {"orders": 1, "orders.primary_key": "id"}})).unwrap_err();
        assert!(e.to_string().contains("`sources.orders`"), "{e}");
        // Unknown names stay for the schema check to refuse.
        let got = run(json!({"sourcez.x": 1, "queue.bogus": 2})).unwrap();
        assert_eq!(got, json!({"sourcez": {"x": 1}, "queue": {"bogus": 2}}));
    }

    #[test]
    fn meltano_leaf_variables_are_dropped_only_beside_their_object() {
        let mut m = json!({"sources": {}, "sources_orders_primary_key": "id",
            "queue_backend": "spool", "port": 1})
        .as_object()
        .unwrap()
        .clone();
        redundant_env_leaves(&mut m, &schema());
        assert_eq!(
            Value::Object(m),
            json!({"sources": {}, "queue_backend": "spool", "port": 1})
        );
    }
}
