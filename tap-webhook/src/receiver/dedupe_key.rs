//! `dedupe_key`: a delivery's identity declared where the provider keeps it, in place of a
//! delivery-id header. Stripe's body `id`, Adyen's `eventCode` + `pspReference`, or any header:
//! a retry of the same event then gets the original message ids and stores nothing (the
//! spool's dedupe), and the tap's generated key follows it.
//!
//! Each part is a JSON pointer (starting with `/`) into the payload or a header name. The id is
//! the parts' values as a JSON array text (numbers as sent, never rounded through an f64), of
//! every message of the delivery (after redaction, so a redacted value never lands in the id
//! in clear), hashed (`sha256:<hex>`) when longer than a stored delivery id may be. A delivery lacking any part falls back to the
//! delivery-id headers.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::payload::{at_pointer_raw, parse_pointer, top_level};
use crate::route::{RouteConfig, RouteFrom as Part};

/// Longest id stored as it is; longer ones are hashed.
const MAX_ID_BYTES: usize = 256;

/// The `dedupe_key` setting of a source, as written: one part or a list.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum DedupeKeyConfig {
    // A list first: serde reads a struct from a sequence too, so `One` would take a
    // two-string list as `{"header", "pointer"}`.
    Many(Vec<PartConfig>),
    One(PartConfig),
}

/// One part as written: a pointer (`/id`) or header name, or, as in `primary_key` and
/// `stream_from`, `{"pointer": …}` / `{"header": …}` (so one declaration serves both settings).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum PartConfig {
    Text(String),
    At(RouteConfig),
}

/// A validated `dedupe_key`.
#[derive(Debug, Clone)]
pub struct DedupeKey {
    /// Where each part is: the type `stream_from` and `primary_key` parse into.
    parts: Vec<Part>,
}

impl DedupeKey {
    /// Validates the setting; `Err` says what is wrong (the caller names the setting).
    pub fn build(c: Option<DedupeKeyConfig>) -> Result<Option<DedupeKey>, String> {
        let list = match c {
            None => return Ok(None),
            Some(DedupeKeyConfig::One(s)) => vec![s],
            Some(DedupeKeyConfig::Many(v)) => v,
        };
        if list.is_empty() {
            return Err("lists no part".into());
        }
        let mut parts = Vec::new();
        for p in list {
            let p = match p {
                PartConfig::At(c) => Part::parse(&c)?,
                PartConfig::Text(p) => text_part(&p)?,
            };
            parts.push(p);
        }
        Ok(Some(DedupeKey { parts }))
    }

    /// The delivery's id from its headers and its messages' texts; `None` when a part is
    /// missing (or null) in any message.
    pub fn delivery_id(&self, headers: &HeaderMap, texts: &[String]) -> Option<String> {
        let mut id = String::from("[");
        for text in texts {
            let fields = top_level(text).ok()?;
            for part in &self.parts {
                let v = match part {
                    Part::Header(h) => Value::String(folded(headers, h)?),
                    Part::Pointer(t) => {
                        let raw = at_pointer_raw(&fields, t).ok()??;
                        // A number as sent: parsed, one past 64 bits or a long fraction
                        // becomes the nearest f64, and two different ids would be one
                        // delivery (the second answered as a duplicate and never stored).
                        if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                            push_part(&mut id, raw);
                            continue;
                        }
                        serde_json::from_str::<Value>(raw).ok()?
                    }
                };
                if v.is_null() {
                    return None;
                }
                push_part(&mut id, &v.to_string());
            }
        }
        id.push(']');
        Some(if id.len() <= MAX_ID_BYTES {
            id
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
        })
    }
}

/// A header's value as it is stored (`capture::headers_json`): repeated ones joined by `, `,
/// as HTTP folds them, so the id and a key read from the stored header agree. `None` when
/// absent or not visible ASCII.
fn folded(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let v = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(v);
            }
            None => out = Some(v.to_owned()),
        }
    }
    out
}

/// Appends one part's JSON text to the id's array text.
fn push_part(id: &mut String, json: &str) {
    if id.len() > 1 {
        id.push(',');
    }
    id.push_str(json);
}

/// A part written as text: a JSON pointer when it starts with `/`, else a header name.
fn text_part(p: &str) -> Result<Part, String> {
    match parse_pointer(p) {
        Some(tokens) => Ok(Part::Pointer(tokens)),
        None if axum::http::HeaderName::from_bytes(p.as_bytes()).is_ok() => {
            Ok(Part::Header(p.to_ascii_lowercase()))
        }
        None => Err(format!(
            "{p:?} is neither a JSON pointer (`/id`) nor a header name"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: serde_json::Value) -> DedupeKey {
        DedupeKey::build(Some(serde_json::from_value(c).unwrap()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn ids_from_pointers_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-event", "e1".parse().unwrap());
        let adyen = key(serde_json::json!([
            "/eventCode",
            "/pspReference",
            "X-Event"
        ]));
        let body = r#"{"eventCode":"AUTHORISATION","pspReference":881,"x":1}"#.to_owned();
        assert_eq!(
            adyen.delivery_id(&h, std::slice::from_ref(&body)).unwrap(),
            r#"["AUTHORISATION",881,"e1"]"#
        );
        // A missing or null part: no id (the headers' delivery id applies).
        assert!(adyen.delivery_id(&HeaderMap::new(), &[body]).is_none());
        let null = r#"{"eventCode":null,"pspReference":1}"#.to_owned();
        assert!(adyen.delivery_id(&h, &[null]).is_none());
        // A repeated header is one value, as stored.
        let mut twice = HeaderMap::new();
        twice.append("x-event", "e1".parse().unwrap());
        twice.append("x-event", "e2".parse().unwrap());
        let header = key(serde_json::json!({"header": "X-Event"}));
        assert_eq!(
            header.delivery_id(&twice, &["{}".to_owned()]).unwrap(),
            r#"["e1, e2"]"#
        );
        // Numbers are compared as sent: two that one f64 would hold are two ids.
        let id = key(serde_json::json!("/id"));
        let of = |body: &str| id.delivery_id(&h, &[body.to_owned()]).unwrap();
        assert_ne!(
            of(r#"{"id":12345678901234567890123}"#),
            of(r#"{"id":12345678901234567890124}"#)
        );
        assert_ne!(of(r#"{"id":0.1}"#), of(r#"{"id":0.10000000000000001}"#));
        assert_eq!(of(r#"{"id":-5}"#), "[-5]");
        assert_eq!(of(r#"{"id":"\u0061"}"#), of(r#"{"id":"a"}"#));
        // Many messages: every one's parts; a long id is hashed.
        let stripe = key(serde_json::json!("/id"));
        let texts: Vec<String> = (0..100).map(|i| format!(r#"{{"id":"evt_{i}"}}"#)).collect();
        let id = stripe.delivery_id(&h, &texts).unwrap();
        assert!(id.starts_with("sha256:") && id.len() == 7 + 64, "{id}");
        assert_eq!(stripe.delivery_id(&h, &texts).unwrap(), id);
        assert!(DedupeKey::build(Some(DedupeKeyConfig::Many(vec![]))).is_err());
        let text = |s: &str| DedupeKeyConfig::One(PartConfig::Text(s.into()));
        assert!(DedupeKey::build(Some(text("a b"))).is_err());
        // The object form of `primary_key` and `stream_from` declares the same parts.
        let texts = key(serde_json::json!(["/eventCode", "/pspReference"]));
        assert_eq!(texts.parts.len(), 2);
        let objects = key(serde_json::json!([
            {"pointer": "/eventCode"}, {"pointer": "/pspReference"}, {"header": "X-Event"}
        ]));
        assert_eq!(objects.parts, adyen.parts);
        assert!(DedupeKey::build(Some(
            serde_json::from_value(serde_json::json!(
                {"pointer": "id"}
            ))
            .unwrap()
        ))
        .unwrap_err()
        .contains("start with `/`"));
    }
}
