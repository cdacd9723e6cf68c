//! Unit tests of the settings: defaults, validation and the schema's fields.
use super::*;
use serde_json::json;

fn settings(v: Value) -> Result<Settings, SettingsError> {
    match v {
        Value::Object(m) => Settings::from_map(m),
        _ => unreachable!(),
    }
}

#[test]
fn defaults_give_one_open_data_source() {
    let s = settings(json!({})).unwrap();
    assert_eq!(s.sources.keys().collect::<Vec<_>>(), ["data"]);
    assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(s.sources["data"].record_shape, RecordShape::Unpacked);
}

#[test]
fn errors_name_the_setting() {
    let e = settings(json!({"sources": {"gh": {"primary_key": "x".repeat(51)}}})).unwrap_err();
    assert!(e.to_string().contains("sources.gh.primary_key"), "{e}");
    let e = settings(json!({"sources": {"gh": {"api_keys": ["short"]}}})).unwrap_err();
    assert!(e.to_string().contains("sources.gh.api_keys"), "{e}");
    let e = settings(json!({"sources": {"a b": {}}})).unwrap_err();
    assert!(e.to_string().contains("sources.a b"), "{e}");
    let e = settings(json!({"spool_pth": "x"})).unwrap_err();
    assert!(e.to_string().contains("spool_pth"), "{e}");
    let e = settings(json!({"sources": {"d": {"record_shape": "flat"}}})).unwrap_err();
    assert!(e.to_string().contains("flat"), "{e}");
}

#[test]
fn flattening_is_a_default_for_every_source_and_refused_without_a_depth() {
    use crate::tap::flatten::Flattening;
    let on = |depth| {
        Some(Flattening {
            max_depth: depth,
            max_key_length: 255,
            max_columns: 10_000,
        })
    };
    // The top level is every source's default; a source's own setting wins.
    let s = settings(json!({"flattening_enabled": true, "flattening_max_depth": 2,
        "sources": {"a": {}, "b": {"flattening_max_depth": 1}, "c": {"flattening_enabled": false}}}))
    .unwrap();
    assert_eq!(s.sources["a"].flattening, on(2));
    assert_eq!(s.sources["b"].flattening, on(1));
    assert_eq!(s.sources["c"].flattening, None);
    // As the SDK: enabled needs a depth; depth 0 flattens nothing.
    let e = settings(json!({"flattening_enabled": true})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid config: setting `flattening_max_depth`: flattening_max_depth is required when flattening is enabled"
    );
    let e = settings(json!({"sources": {"gh": {"flattening_enabled": true}}})).unwrap_err();
    assert!(
        e.to_string().contains("sources.gh.flattening_max_depth"),
        "{e}"
    );
    let s = settings(json!({"flattening_enabled": true, "flattening_max_depth": 0})).unwrap();
    assert_eq!(s.sources["data"].flattening, None);
    // The top level's default passes over a packed source; the source's own setting does not.
    let s = settings(
        json!({"flattening_enabled": true, "flattening_max_depth": 1,
        "sources": {"p": {"record_shape": "packed"}, "u": {}}}),
    )
    .unwrap();
    assert_eq!(
        (s.sources["p"].flattening, s.sources["u"].flattening),
        (None, on(1))
    );
    let e = settings(json!({"flattening_max_depth": 1,
        "sources": {"p": {"record_shape": "packed", "flattening_enabled": true}}}))
    .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("sources.p.flattening_enabled") && e.contains("unpacked"),
        "{e}"
    );
    let e = settings(json!({"flattening_max_depth": -1})).unwrap_err();
    assert!(
        e.to_string().contains("flattening_max_depth") || e.to_string().contains("-1"),
        "{e}"
    );
}

#[test]
fn the_admin_page_needs_tokens_off_loopback() {
    let e = settings(json!({"admin_listen_address": "0.0.0.0:9090"})).unwrap_err();
    assert!(
        e.to_string().contains("admin_tokens") && e.to_string().contains("loopback"),
        "{e}"
    );
    let e = settings(json!({"admin_listen_address": "0.0.0.0:9090", "admin_tokens": ["short"]}))
        .unwrap_err();
    assert!(e.to_string().contains("16 characters"), "{e}");
    let e = settings(json!({"admin_tokens": ["0123456789abcdef"]})).unwrap_err();
    assert!(e.to_string().contains("admin_listen_address"), "{e}");
    for local in [
        "127.0.0.1:0",
        "[::1]:9090",
        "localhost:9090",
        "127.1.2.3:80",
    ] {
        let s = settings(json!({"admin_listen_address": local})).unwrap();
        assert!(s.admin.unwrap().tokens.is_empty(), "{local}");
    }
    for open in ["0.0.0.0:1", "[::]:1", "10.0.0.1:80", "example.com:80"] {
        assert!(!is_loopback(open), "{open}");
    }
    let s = settings(json!({})).unwrap();
    assert!(s.admin.is_none());
    assert_eq!(s.ledger.max_rows, DEFAULT_REFUSED_LEDGER_MAX_ROWS);
    let e = settings(json!({"refused_ledger_max_age_hours": 0})).unwrap_err();
    assert!(
        e.to_string().contains("refused_ledger_max_age_hours"),
        "{e}"
    );
}

#[test]
fn a_signature_that_cannot_be_built_makes_the_settings_invalid() {
    let e = settings(json!({"sources": {"svix": {"signature": {
        "scheme": "standard-webhooks", "secrets": ["whsec_%%% not base64 %%%"]}}}}))
    .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("sources.svix.signature"), "{e}");
    assert!(e.contains("base64"), "{e}");
    let s = settings(json!({"sources": {"gh": {"signature": {
        "scheme": "github", "secrets": ["It's a Secret to Everybody"]}}}}))
    .unwrap();
    let built = s.sources["gh"]
        .signature
        .as_ref()
        .expect("the verifier is kept");
    assert_eq!(
        built.scheme(),
        crate::receiver::signature::SignatureScheme::Github
    );
}

#[test]
fn schema_parses_and_lists_every_config_field() {
    let schema = schema();
    let props = schema["properties"].as_object().unwrap();
    for field in [
        "spool_path",
        "listen_address",
        "max_body_bytes",
        "max_fields_per_message",
        "max_messages_per_delivery",
        "max_spool_bytes",
        "retry_after_seconds",
        "max_header_bytes",
        "max_headers",
        "header_read_timeout_seconds",
        "body_read_timeout_seconds",
        "max_connections",
        "dedupe_window_seconds",
        "refused_ledger_max_rows",
        "refused_ledger_max_age_hours",
        "admin_listen_address",
        "admin_tokens",
        "state_interval_records",
        "schema_prescan",
        "retention_hours",
        "max_records",
        "max_seconds",
        "follow",
        "state_interval_seconds",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "sources",
        "queue",
    ] {
        assert!(props.contains_key(field), "{field} missing from the schema");
    }
    assert_eq!(props.len(), 29, "every schema property is a Config field");
    let source = schema["properties"]["sources"]["additionalProperties"]["properties"]
        .as_object()
        .unwrap();
    assert_eq!(source.len(), 22);
}
