//! Configuration loading: `--config FILE` (repeatable, later files win) and `--config ENV`.
//!
//! `ENV` reads `<PREFIX>_<SETTING>` variables the way Meltano sets them. Meltano's own
//! double-underscore variables (`TAP_WEBHOOK__SELECT`) are not settings and are ignored. Values
//! arrive as text; the settings' JSON Schema says which are numbers, booleans, arrays or objects.
//! Every layer (file or environment) is then given Meltano's forms of object settings nested
//! ([`crate::flattened`]: dotted keys, JSON text) before the layers merge.

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

pub use crate::config_error::ConfigError;

/// Checks a merged config against the settings' JSON Schema; the first error names the setting
/// (`sources.github.api_keys`) and what is wrong with it: an unknown setting with the known one
/// it is closest to ("did you mean"), a value outside an enum with every allowed value.
pub fn validate(schema: &Value, config: &Map<String, Value>) -> Result<(), ConfigError> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| ConfigError::Schema(e.to_string()))?;
    let instance = Value::Object(config.clone());
    let Some(error) = validator.iter_errors(&instance).next() else {
        return Ok(());
    };
    let pointer = error.instance_path().to_string();
    let path: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (setting, detail) = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let name = unexpected.first().cloned().unwrap_or_default();
            let known = schema_at(schema, &path)
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>())
                .unwrap_or_default();
            let detail = match did_you_mean(&name, &known) {
                Some(near) => format!("unknown setting; did you mean `{near}`?"),
                None if known.is_empty() => "unknown setting".to_owned(),
                None => format!("unknown setting; known here: {}", known.join(", ")),
            };
            let mut full = path.clone();
            full.push(name);
            (full.join("."), detail)
        }
        ValidationErrorKind::Enum { options } => {
            let allowed = options
                .as_array()
                .map(|o| o.iter().map(Value::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            (
                path.join("."),
                format!(
                    "{} is not allowed; one of: {}",
                    error.instance(),
                    allowed.join(", ")
                ),
            )
        }
        _ => {
            let mut detail = error.to_string();
            // Messages quote the value: never a secret's (an API key "shorter than 8 characters").
            if is_secret_at(schema, &path) {
                detail = detail.replace(&error.instance().to_string(), "(secret value)");
            }
            (path.join("."), detail)
        }
    };
    Err(ConfigError::Invalid {
        setting: if setting.is_empty() {
            "(top level)".into()
        } else {
            setting
        },
        detail,
    })
}

/// The schema of the setting at `path` (object keys; `additionalProperties` for maps such as
/// `sources.<name>`, `items` for arrays), following local `$ref`s.
fn schema_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let resolve = |s: &'a Value| -> Option<&'a Value> {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => root.pointer(r.strip_prefix('#')?),
            None => Some(s),
        }
    };
    let mut here = resolve(root)?;
    for seg in path {
        let next = here
            .get("properties")
            .and_then(|p| p.get(seg))
            .or_else(|| here.get("additionalProperties").filter(|a| a.is_object()))
            .or_else(|| here.get("items").filter(|_| seg.parse::<usize>().is_ok()))?;
        here = resolve(next)?;
    }
    Some(here)
}

/// Whether the setting at `path`, or the array holding it, is a secret (`writeOnly`).
fn is_secret_at(root: &Value, path: &[String]) -> bool {
    let write_only = |s: Option<&Value>| {
        s.and_then(|s| s.get("writeOnly"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    write_only(schema_at(root, path))
        || (!path.is_empty() && write_only(schema_at(root, &path[..path.len() - 1])))
}

/// The known name a mistyped one most likely meant: within two edits, or one starting with
/// what was typed (`listen` → `listen_address`), or the other way round.
fn did_you_mean<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = typed.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
        .or_else(|| {
            known
                .iter()
                .copied()
                .find(|k| lower.len() >= 3 && (k.starts_with(&lower) || lower.starts_with(*k)))
        })
}

/// Loads and merges every `--config` argument, in order. `schema` is the settings' JSON Schema,
/// used to type values read from the environment.
pub fn load_config(
    args: &[String],
    env_prefix: &str,
    schema: Option<&Value>,
) -> Result<Map<String, Value>, ConfigError> {
    load_config_from(args, env_prefix, schema, std::env::vars())
}

/// As [`load_config`], with the environment given (for tests).
pub fn load_config_from(
    args: &[String],
    env_prefix: &str,
    schema: Option<&Value>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Map<String, Value>, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut merged = Map::new();
    for arg in args {
        let layer = if arg == "ENV" {
            from_env(env_prefix, schema, &env)?
        } else {
            from_file(arg)?
        };
        let layer = match schema {
            Some(schema) => crate::flattened::unflatten(layer, schema)?,
            None => layer,
        };
        merged.extend(layer);
    }
    Ok(merged)
}

fn from_file(path: &str) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read(path).map_err(|error| ConfigError::Io {
        path: path.to_owned(),
        error,
    })?;
    match serde_json::from_slice(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::NotAnObject {
            path: path.to_owned(),
        }),
        Err(error) => Err(ConfigError::Parse {
            path: path.to_owned(),
            error,
        }),
    }
}

fn from_env(
    prefix: &str,
    schema: Option<&Value>,
    env: &[(String, String)],
) -> Result<Map<String, Value>, ConfigError> {
    let prefix = format!("{}_", prefix.to_ascii_uppercase());
    let mut out = Map::new();
    for (var, raw) in env {
        let Some(name) = var.strip_prefix(&prefix) else {
            continue;
        };
        if name.is_empty() || name.starts_with('_') {
            continue;
        }
        let setting = name.to_ascii_lowercase();
        let prop = schema.and_then(|s| s.get("properties")?.get(&setting));
        let value = typed_env_value(raw, prop).map_err(|detail| ConfigError::Env {
            var: var.clone(),
            detail,
        })?;
        out.insert(setting, value);
    }
    if let Some(schema) = schema {
        crate::flattened::redundant_env_leaves(&mut out, schema);
    }
    Ok(out)
}

/// Types an environment value by its setting's schema; unknown settings stay text unless they
/// are plainly JSON arrays or objects.
fn typed_env_value(raw: &str, prop: Option<&Value>) -> Result<Value, String> {
    let types: Vec<&str> = match prop.and_then(|p| p.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let wants = |t: &str| types.contains(&t);
    if wants("boolean") {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => return Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => return Ok(Value::Bool(false)),
            _ => {}
        }
    }
    if wants("integer") {
        if let Ok(i) = raw.trim().parse::<i64>() {
            return Ok(i.into());
        }
    }
    if wants("number") {
        if let Some(n) = raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Ok(Value::Number(n));
        }
    }
    if wants("array") || wants("object") || types.is_empty() {
        let t = raw.trim_start();
        if t.starts_with('[') || t.starts_with('{') {
            return serde_json::from_str(raw).map_err(|e| format!("not valid JSON: {e}"));
        }
    }
    if wants("string") || types.is_empty() {
        return Ok(Value::String(raw.to_owned()));
    }
    if wants("null") && raw.is_empty() {
        return Ok(Value::Null);
    }
    Err(format!("{raw:?} is not of type {}", types.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_values_are_typed_by_the_schema_and_double_underscores_ignored() {
        let schema = json!({"properties": {
            "port": {"type": "integer"}, "token": {"type": "string"},
            "gzip": {"type": "boolean"}, "sources": {"type": "object"}}});
        let env = [
            ("TAP_WEBHOOK_PORT", "8080"),
            ("TAP_WEBHOOK_TOKEN", "12345"),
            ("TAP_WEBHOOK_GZIP", "true"),
            ("TAP_WEBHOOK_SOURCES", r#"{"data":{}}"#),
            ("TAP_WEBHOOK__SELECT", "[]"),
            ("TAP_WEBHOOK_OTHER", "x"),
            ("TARGET_X", "y"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let cfg = load_config_from(&["ENV".into()], "tap_webhook", Some(&schema), env).unwrap();
        assert_eq!(
            Value::Object(cfg),
            json!({"port": 8080, "token": "12345", "gzip": true,
                   "sources": {"data": {}}, "other": "x"})
        );
    }

    #[test]
    fn validation_names_the_setting() {
        let schema = json!({"type": "object", "additionalProperties": false, "properties": {
            "sources": {"type": "object", "additionalProperties": {"type": "object",
                "properties": {"primary_key": {"type": "string", "maxLength": 3}}}}}});
        let ok = json!({"sources": {"gh": {"primary_key": "id"}}});
        validate(&schema, ok.as_object().unwrap()).unwrap();
        let bad = json!({"sources": {"gh": {"primary_key": "order_id"}}});
        let e = validate(&schema, bad.as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid config: setting `sources.gh.primary_key`: "),
            "{e}"
        );
        let bad = json!({"sourcez": {}});
        let e = validate(&schema, bad.as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: setting `sourcez`: unknown setting; did you mean `sources`?"
        );
    }

    #[test]
    fn a_secret_value_is_never_quoted() {
        let schema = json!({"type": "object", "properties": {
            "keys": {"type": "array", "items": {"type": "string", "minLength": 8, "writeOnly": true}},
            "name": {"type": "string", "minLength": 8}}});
        let e = validate(&schema, json!({"keys": ["k3y"]}).as_object().unwrap()).unwrap_err();
        assert!(!e.to_string().contains("k3y"), "{e}");
        assert!(e.to_string().contains("(secret value)"), "{e}");
        let e = validate(&schema, json!({"name": "n4me"}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("n4me"), "not a secret: {e}");
    }

    #[test]
    fn unknown_settings_get_the_nearest_name_and_enums_their_values() {
        let schema = json!({"type": "object", "additionalProperties": false, "properties": {
            "listen_address": {"type": "string"},
            "max_body_bytes": {"type": "integer"},
            "sources": {"type": "object", "additionalProperties": {"$ref": "#/$defs/source"}}},
            "$defs": {"source": {"type": "object", "additionalProperties": false, "properties": {
                "api_keys": {"type": "array"},
                "scheme": {"enum": ["github", "stripe", "svix", "shopify", "hmac"]}}}}});
        let check = |config: Value, want: &str| {
            let e = validate(&schema, config.as_object().unwrap()).unwrap_err();
            assert_eq!(e.to_string(), want);
        };
        check(
            json!({"listen_adress": "x"}),
            "invalid config: setting `listen_adress`: unknown setting; did you mean `listen_address`?",
        );
        check(
            json!({"listen": "x"}),
            "invalid config: setting `listen`: unknown setting; did you mean `listen_address`?",
        );
        check(
            json!({"port": 1}),
            "invalid config: setting `port`: unknown setting; known here: listen_address, max_body_bytes, sources",
        );
        check(
            json!({"sources": {"gh": {"api_key": []}}}),
            "invalid config: setting `sources.gh.api_key`: unknown setting; did you mean `api_keys`?",
        );
        check(
            json!({"sources": {"gh": {"scheme": "gitlab"}}}),
            "invalid config: setting `sources.gh.scheme`: \"gitlab\" is not allowed; one of: \"github\", \"stripe\", \"svix\", \"shopify\", \"hmac\"",
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let schema = json!({"properties": {"port": {"type": "integer"}}});
        let env = [("T_PORT".to_owned(), "eighty".to_owned())];
        let e = load_config_from(&["ENV".into()], "T", Some(&schema), env).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"environment variable T_PORT: "eighty" is not of type integer"#
        );
    }

    #[test]
    fn files_merge_in_order_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("singer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(&a, r#"{"x": 1, "y": 1}"#).unwrap();
        std::fs::write(&b, r#"{"y": 2}"#).unwrap();
        let args = [a.display().to_string(), b.display().to_string()];
        let cfg = load_config_from(&args, "T", None, []).unwrap();
        assert_eq!(Value::Object(cfg), json!({"x": 1, "y": 2}));
        std::fs::write(&b, "[1]").unwrap();
        let e = load_config_from(&args, "T", None, []).unwrap_err();
        assert!(e.to_string().contains("must hold a JSON object"), "{e}");
        let e = load_config_from(&["/nonexistent.json".into()], "T", None, []).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.json"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
