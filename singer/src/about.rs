//! `--about`: what a plugin is, its capabilities and its settings, as text, JSON or Markdown.
//!
//! Everything is rendered from one JSON Schema of the settings (the file under `schemas/` that
//! also validates the config), so the documentation cannot drift from what is accepted. Secrets
//! are marked `writeOnly: true` (the Singer SDK's spelling also sets `secret: true`).

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct About {
    pub name: String,
    pub description: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// JSON Schema of the plugin's config file.
    pub settings: Value,
}

/// `--format` of `--about` (with the `clap` feature, a `clap::ValueEnum`: `text`, `json`,
/// `markdown` or `md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum AboutFormat {
    #[default]
    Text,
    Json,
    #[cfg_attr(feature = "clap", value(alias = "md"))]
    Markdown,
}

/// One documented setting, flattened from the schema (`sources.*.api_keys` for nested ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub default: Option<Value>,
    pub required: bool,
    pub secret: bool,
    /// The values an `enum` setting accepts (empty: any of its type).
    pub allowed: Vec<Value>,
}

impl Setting {
    /// `string`, or `string, one of "a", "b"` for an enum: the allowed values are shown
    /// wherever the type is, so a user never has to guess them from an error.
    pub fn kind_and_values(&self) -> String {
        if self.allowed.is_empty() {
            return self.kind.clone();
        }
        let values: Vec<String> = self.allowed.iter().map(Value::to_string).collect();
        format!("{}, one of {}", self.kind, values.join(", "))
    }
}

/// Flattens a settings schema into documented settings, depth first, in schema order.
pub fn settings(schema: &Value) -> Vec<Setting> {
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

fn walk(schema: &Value, prefix: &str, out: &mut Vec<Setting>) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let full = format!("{prefix}{name}");
        out.push(Setting {
            name: full.clone(),
            kind: kind_of(prop),
            description: prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            default: prop.get("default").cloned(),
            required: required.contains(&name.as_str()),
            secret: is_secret(prop),
            allowed: prop
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        });
        walk(prop, &format!("{full}."), out);
        if let Some(items) = prop.get("additionalProperties").filter(|v| v.is_object()) {
            walk(items, &format!("{full}.*."), out);
        }
        if let Some(items) = prop.get("items").filter(|v| v.is_object()) {
            walk(items, &format!("{full}[]."), out);
        }
    }
}

fn is_secret(prop: &Value) -> bool {
    [prop.get("writeOnly"), prop.get("secret")]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(true))
        || prop
            .get("items")
            .is_some_and(|items| items.get("writeOnly").and_then(Value::as_bool) == Some(true))
}

fn kind_of(prop: &Value) -> String {
    match prop.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            // Not `|`: the kind lands in a Markdown table cell.
            .join(" or "),
        _ => "any".to_owned(),
    }
}

pub fn render(about: &About, format: AboutFormat) -> String {
    match format {
        AboutFormat::Json => {
            let v = json!({
                "name": about.name,
                "description": about.description,
                "version": about.version,
                "capabilities": about.capabilities,
                "settings": about.settings,
            });
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        AboutFormat::Text => {
            let mut s = format!(
                "Name: {}\nDescription: {}\nVersion: {}\nCapabilities: {}\nSettings:\n",
                about.name,
                about.description,
                about.version,
                about.capabilities.join(", ")
            );
            for st in settings(&about.settings) {
                s.push_str(&format!(
                    "  - {} ({}{}{}){}{}\n",
                    st.name,
                    st.kind_and_values(),
                    if st.required { ", required" } else { "" },
                    if st.secret { ", secret" } else { "" },
                    st.default
                        .as_ref()
                        .map(|d| format!(" [default: {d}]"))
                        .unwrap_or_default(),
                    if st.description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", st.description)
                    }
                ));
            }
            s
        }
        AboutFormat::Markdown => {
            let mut s = format!(
                "# `{}`\n\n{}\n\nBuilt with version {}.\n\n## Capabilities\n\n",
                about.name, about.description, about.version
            );
            for c in &about.capabilities {
                s.push_str(&format!("* `{c}`\n"));
            }
            s.push_str("\n## Settings\n\n");
            s.push_str(&settings_table(&about.settings));
            s
        }
    }
}

/// The Markdown settings table, also used to generate the README's configuration reference.
pub fn settings_table(schema: &Value) -> String {
    let mut s = String::from(
        "| Setting | Type | Required | Default | Description |\n|:--|:--|:--|:--|:--|\n",
    );
    for st in settings(schema) {
        let desc = st.description.replace('|', "\\|").replace('\n', " ");
        let kind = if st.allowed.is_empty() {
            st.kind.clone()
        } else {
            let values: Vec<String> = st.allowed.iter().map(|v| format!("`{v}`")).collect();
            format!("{}: {}", st.kind, values.join(", "))
        };
        s.push_str(&format!(
            "| `{}` | {}{} | {} | {} | {} |\n",
            st.name,
            kind,
            if st.secret { " (secret)" } else { "" },
            if st.required { "yes" } else { "no" },
            st.default
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| "".into()),
            desc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about() -> About {
        About {
            name: "tap-x".into(),
            description: "A tap.".into(),
            version: "1.2.3".into(),
            capabilities: vec!["discover".into(), "state".into()],
            settings: json!({
                "type": "object",
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "Where | it is.", "default": "./x"},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "sources": {"type": "object", "additionalProperties": {
                        "type": "object",
                        "properties": {"api_keys": {"type": "array", "items": {"type": "string", "writeOnly": true}}}
                    }}
                }
            }),
        }
    }

    #[test]
    fn flattens_nested_settings_and_marks_secrets() {
        let names: Vec<(String, bool, bool)> = settings(&about().settings)
            .into_iter()
            .map(|s| (s.name, s.required, s.secret))
            .collect();
        assert_eq!(
            names,
            vec![
                ("mode".into(), false, false),
                ("path".into(), true, false),
                ("sources".into(), false, false),
                ("sources.*.api_keys".into(), false, true),
            ]
        );
    }

    #[test]
    fn renders_three_formats() {
        let a = about();
        let j: Value = serde_json::from_str(&render(&a, AboutFormat::Json)).unwrap();
        assert_eq!(j["capabilities"], json!(["discover", "state"]));
        assert_eq!(j["settings"]["required"], json!(["path"]));
        let md = render(&a, AboutFormat::Markdown);
        assert!(
            md.contains("| `path` | string | yes | `\"./x\"` | Where \\| it is. |"),
            "{md}"
        );
        assert!(
            md.contains("| `sources.*.api_keys` | array (secret) |"),
            "{md}"
        );
        assert!(
            md.contains("| `mode` | string: `\"a\"`, `\"b\"` | no |"),
            "{md}"
        );
        let t = render(&a, AboutFormat::Text);
        assert!(t.contains("mode (string, one of \"a\", \"b\")"), "{t}");
        assert!(t.contains("Version: 1.2.3"));
        assert!(t.contains("sources.*.api_keys (array, secret)"), "{t}");
    }
}
