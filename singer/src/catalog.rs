//! Singer catalogs: what `--discover` prints and what `--catalog` (legacy `--properties`) hands in.
//!
//! Taps, Meltano and the SDK spell the same facts several ways (metadata `table-key-properties` or
//! `key-properties` or a top-level `key_properties`; `replication-method`,
//! `forced-replication-method` or `replication_method`); the accessors here accept them all.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub streams: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub tap_stream_id: String,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub schema: Value,
    #[serde(default)]
    pub metadata: Vec<MetadataEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_properties: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_key: Option<String>,
    /// Fields we do not interpret (`table_name`, `database_name`, ...), kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub breadcrumb: Vec<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading catalog {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog {path} is not a Singer catalog: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Catalog {
    pub fn load(path: &str) -> Result<Catalog, CatalogError> {
        let text = std::fs::read(path).map_err(|source| CatalogError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| CatalogError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The entry for a stream, by `tap_stream_id` or `stream` name.
    pub fn entry(&self, stream: &str) -> Option<&CatalogEntry> {
        self.streams
            .iter()
            .find(|e| e.tap_stream_id == stream || e.stream.as_deref() == Some(stream))
    }
}

impl CatalogEntry {
    pub fn metadata_at(&self, breadcrumb: &[&str]) -> Option<&Map<String, Value>> {
        self.metadata
            .iter()
            .find(|m| {
                m.breadcrumb
                    .iter()
                    .map(String::as_str)
                    .eq(breadcrumb.iter().copied())
            })
            .map(|m| &m.metadata)
    }

    fn root(&self, key: &str) -> Option<&Value> {
        self.metadata_at(&[]).and_then(|m| m.get(key))
    }

    /// Singer's rule: a stream is synced only when selected. The legacy `schema.selected` and
    /// `selected-by-default` stand in when no explicit choice was made.
    pub fn is_selected(&self) -> bool {
        self.root("selected")
            .or_else(|| self.schema.get("selected"))
            .or_else(|| self.root("selected-by-default"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether a top-level property is to be emitted. Properties the catalog does not mention are
    /// kept: a webhook stream's fields are only known once payloads arrive.
    pub fn is_field_selected(&self, field: &str) -> bool {
        let Some(m) = self.metadata_at(&["properties", field]) else {
            return true;
        };
        match m.get("inclusion").and_then(Value::as_str) {
            Some("automatic") => return true,
            Some("unsupported") => return false,
            _ => {}
        }
        m.get("selected")
            .or_else(|| m.get("selected-by-default"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    pub fn key_properties(&self) -> Option<Vec<String>> {
        self.root("table-key-properties")
            .or_else(|| self.root("key-properties"))
            .and_then(string_list)
            .or_else(|| self.key_properties.clone())
    }

    pub fn replication_method(&self) -> Option<String> {
        self.root("replication-method")
            .or_else(|| self.root("forced-replication-method"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.replication_method.clone())
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> CatalogEntry {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn selection_rules() {
        let e = entry(
            r#"{"tap_stream_id":"data","schema":{},"metadata":[
            {"breadcrumb":[],"metadata":{"selected":true}},
            {"breadcrumb":["properties","a"],"metadata":{"selected":false}},
            {"breadcrumb":["properties","b"],"metadata":{"inclusion":"automatic","selected":false}},
            {"breadcrumb":["properties","c"],"metadata":{"inclusion":"unsupported"}}]}"#,
        );
        assert!(e.is_selected());
        assert!(!e.is_field_selected("a"));
        assert!(e.is_field_selected("b"));
        assert!(!e.is_field_selected("c"));
        assert!(e.is_field_selected("never_mentioned"));
        assert!(!entry(r#"{"tap_stream_id":"x"}"#).is_selected());
        assert!(entry(r#"{"tap_stream_id":"x","schema":{"selected":true}}"#).is_selected());
        assert!(entry(
            r#"{"tap_stream_id":"x","metadata":[{"breadcrumb":[],"metadata":{"selected-by-default":true}}]}"#
        )
        .is_selected());
    }

    #[test]
    fn key_and_replication_spellings() {
        for json in [
            r#"{"tap_stream_id":"x","metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":["id"],"replication-method":"INCREMENTAL"}}]}"#,
            r#"{"tap_stream_id":"x","metadata":[{"breadcrumb":[],"metadata":{"key-properties":["id"],"forced-replication-method":"INCREMENTAL"}}]}"#,
            r#"{"tap_stream_id":"x","key_properties":["id"],"replication_method":"INCREMENTAL"}"#,
        ] {
            let e = entry(json);
            assert_eq!(e.key_properties(), Some(vec!["id".to_owned()]));
            assert_eq!(e.replication_method().as_deref(), Some("INCREMENTAL"));
        }
    }
}
