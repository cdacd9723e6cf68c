//! `--config ENV` as `meltano invoke` sets it (Meltano 4.4: the object as JSON text with dotted
//! keys, plus one variable per leaf), through the public loader and validator.

use serde_json::{json, Value};

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

#[test]
fn config_env_as_meltano_invoke_sets_it_loads_nested() {
    let env = [
        (
            "TAP_WEBHOOK_SOURCES",
            r#"{"orders.primary_key": "order_id", "orders.api_keys": ["a", "b"], "gh": {}}"#,
        ),
        ("TAP_WEBHOOK_SOURCES_GH", "{}"),
        ("TAP_WEBHOOK_SOURCES_ORDERS_API_KEYS", r#"["a", "b"]"#),
        ("TAP_WEBHOOK_SOURCES_ORDERS_PRIMARY_KEY", "order_id"),
        ("TAP_WEBHOOK_QUEUE", r#"{"backend": "spool"}"#),
        ("TAP_WEBHOOK_QUEUE_BACKEND", "spool"),
        ("TAP_WEBHOOK__SELECT", r#"["*.*"]"#),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let cfg =
        singer::config::load_config_from(&["ENV".into()], "TAP_WEBHOOK", Some(&schema()), env)
            .unwrap();
    assert_eq!(
        Value::Object(cfg.clone()),
        json!({"sources": {"orders": {"primary_key": "order_id", "api_keys": ["a", "b"]},
            "gh": {}}, "queue": {"backend": "spool"}})
    );
    singer::config::validate(&schema(), &cfg).unwrap();
}
