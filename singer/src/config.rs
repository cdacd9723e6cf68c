//! Configuration loading: `--config FILE` (repeatable, later files win) and `--config ENV`.
//!
//! `ENV` reads `<PREFIX>_<SETTING>` variables the way Meltano sets them. Meltano's own
//! double-underscore variables (`TAP_WEBHOOK__SELECT`) are not settings and are ignored. Values
//! arrive as text; the settings' JSON Schema says which are numbers, booleans, arrays or objects.
//! Every layer (file or environment) is then given Meltano's forms of object settings nested
//! ([`crate::flattened`]: dotted keys, JSON text) before the layers merge.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("config file {path} must hold a JSON object")]
    NotAnObject { path: String },
    #[error("environment variable {var}: {detail}")]
    Env { var: String, detail: String },
    #[error("invalid config: setting `{setting}`: {detail}")]
    Invalid { setting: String, detail: String },
    #[error("the settings schema itself is invalid: {0}")]
    Schema(String),
}

/// Checks a merged config against the settings' JSON Schema; the first error names the setting
/// (`sources.github.api_keys`) and what is wrong with it.
pub fn validate(schema: &Value, config: &Map<String, Value>) -> Result<(), ConfigError> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| ConfigError::Schema(e.to_string()))?;
    let instance = Value::Object(config.clone());
    let Some(error) = validator.iter_errors(&instance).next() else {
        return Ok(());
    };
    let pointer = error.instance_path().to_string();
    let setting = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".");
    Err(ConfigError::Invalid {
        setting: if setting.is_empty() {
            "(top level)".into()
        } else {
            setting
        },
        detail: error.to_string(),
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
    let text = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_slice(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::NotAnObject {
            path: path.to_owned(),
        }),
        Err(source) => Err(ConfigError::Parse {
            path: path.to_owned(),
            source,
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
        assert!(e.to_string().contains("sourcez"), "{e}");
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
