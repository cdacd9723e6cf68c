//! What the spool keeps of a request besides its body: an allow-list of headers, the query
//! parameters, and the provider's delivery id; credentials and signatures redacted.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// Headers kept with every message: useful downstream (event names, shop, hook ids) and free of
/// secrets by themselves.
pub const CAPTURED_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-id",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-api-version",
    "x-shopify-triggered-at",
    "webhook-id",
    "webhook-timestamp",
    "svix-id",
    "svix-timestamp",
    "x-request-id",
];

/// Headers that are never stored in clear, whatever the configuration says.
pub const ALWAYS_SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "webhook-signature",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
];

pub const REDACTED: &str = "[REDACTED]";

/// Headers that carry a provider's delivery id, in order of preference.
pub const DELIVERY_ID_HEADERS: &[&str] = &[
    "webhook-id",
    "svix-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
];

/// The captured headers as a JSON object text; secret ones replaced by [`REDACTED`].
pub fn headers_json(headers: &HeaderMap, extra: &[String], secret: &[String]) -> String {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let wanted = CAPTURED_HEADERS.contains(&name) || extra.iter().any(|e| e == name);
        if !wanted {
            continue;
        }
        let is_secret = ALWAYS_SECRET_HEADERS.contains(&name) || secret.iter().any(|s| s == name);
        let text = if is_secret {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        match out.get_mut(name) {
            // Repeated headers join as HTTP would fold them.
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&text);
            }
            _ => {
                out.insert(name.to_owned(), Value::String(text));
            }
        }
    }
    Value::Object(out).to_string()
}

/// Query parameters as a JSON object text (a repeated parameter becomes an array).
pub fn query_json(query: &[(String, String)], secret: &[String]) -> String {
    query_object(query, secret).to_string()
}

pub fn query_object(query: &[(String, String)], secret: &[String]) -> Value {
    let mut out = Map::new();
    for (k, v) in query {
        let v = if secret.contains(k) {
            Value::String(REDACTED.into())
        } else {
            Value::String(v.clone())
        };
        match out.get_mut(k) {
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k.clone(), v);
            }
        }
    }
    Value::Object(out)
}

/// The provider's delivery id: the configured header first, then the known ones.
pub fn delivery_id(headers: &HeaderMap, configured: Option<&str>) -> Option<String> {
    configured
        .into_iter()
        .chain(DELIVERY_ID_HEADERS.iter().copied())
        .find_map(|h| headers.get(h)?.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_owned)
}

/// Decodes a raw query string (`a=1&b=%20x`) into pairs, in order (`application/x-www-form-
/// urlencoded`: `+` is a space, an invalid `%` escape is kept as written, invalid UTF-8 becomes
/// U+FFFD).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_allow_listed_and_secrets_redacted() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-api-key", "secret-key-1".parse().unwrap());
        h.insert("x-github-event", "push".parse().unwrap());
        h.insert("x-hub-signature-256", "sha256=abc".parse().unwrap());
        h.insert("x-custom", "kept".parse().unwrap());
        h.insert("x-other", "dropped".parse().unwrap());
        let extra = vec![
            "x-custom".to_owned(),
            "x-api-key".to_owned(),
            "x-hub-signature-256".to_owned(),
        ];
        let v: Value =
            serde_json::from_str(&headers_json(&h, &extra, &["x-api-key".into()])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"content-type": "application/json", "x-api-key": REDACTED,
                "x-github-event": "push", "x-hub-signature-256": REDACTED, "x-custom": "kept"})
        );
    }

    #[test]
    fn query_decoding_and_redaction() {
        let q = parse_query(Some(
            "a=1&b=hello%20world&token=s3cr3t-tok&a=2&c=%zz&d+e=f+g&flag&&x=%E9%",
        ));
        let v = query_object(&q, &["token".into()]);
        assert_eq!(
            v,
            serde_json::json!({"a": ["1", "2"], "b": "hello world", "token": REDACTED,
                "c": "%zz", "d e": "f g", "flag": "", "x": "\u{fffd}%"})
        );
    }

    #[test]
    fn delivery_id_prefers_the_configured_header() {
        let mut h = HeaderMap::new();
        h.insert("x-github-delivery", "gh-1".parse().unwrap());
        assert_eq!(delivery_id(&h, None).as_deref(), Some("gh-1"));
        h.insert("x-my-id", "mine".parse().unwrap());
        assert_eq!(delivery_id(&h, Some("x-my-id")).as_deref(), Some("mine"));
        assert_eq!(delivery_id(&HeaderMap::new(), None), None);
    }
}
