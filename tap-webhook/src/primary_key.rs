//! `primary_key`: where a source's row identity is, declared where the provider keeps it.
//!
//! A plain string is a top-level payload field, as it always was (`"order_id"`). A part may also
//! be written as `stream_from` is ([`RouteConfig`]): `{"pointer": "/data/object/id"}` (Stripe's
//! object inside an event) or `{"header": "X-GitHub-Delivery"}`; a list of parts is a composite
//! key (Adyen's `eventCode` + `pspReference`). Each part is emitted as an ordinary top-level
//! property of the record and listed in the stream's `key_properties`, so every target upserts
//! on it: a pointer's property is named as the Singer SDK's flattening names the same field
//! ([`flatten_key`]: `data__object__id`), a header's is its lower-cased name with `-` made `_`
//! (`x_github_delivery`). When the payload also holds a top-level field of that name, its value
//! must be the same (it then is the property); another value is a key error, never an overwrite.
//! A key error (a part missing, null, or not a usable key value, [`crate::tap::key::check`])
//! follows the source's `on_missing_key`, as a missing top-level key always did.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::payload::{at_pointer_raw, Field};
use crate::receiver::capture::ALWAYS_SECRET_HEADERS;
use crate::route::{stored_header, RouteConfig, RouteFrom};
use crate::tap::key::{self, KeyKind};
use crate::tap::record::is_reserved;

/// Stitch's limit on primary key names, for a plain top-level field (as it always was).
pub const MAX_FIELD_NAME_CHARS: usize = 50;
/// The longest property a pointer or header part may name: the Singer SDK abbreviates a
/// flattened name from 255 characters on, and the name must stay the one it computes.
pub const MAX_PROPERTY_CHARS: usize = 254;
/// The most parts a composite key may have.
pub const MAX_PARTS: usize = 16;

/// The `primary_key` setting as written: a field name, a `{"pointer"|"header": …}` object, or
/// a list of those. Read by [`PrimaryKey::build`], which names what is wrong.
#[derive(Debug, Deserialize, Clone)]
#[serde(transparent)]
pub struct PrimaryKeyConfig(pub Value);

impl From<&str> for PrimaryKeyConfig {
    fn from(field: &str) -> Self {
        PrimaryKeyConfig(Value::String(field.to_owned()))
    }
}

/// Where one part's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartFrom {
    /// A top-level payload field (the plain-string form).
    Field(String),
    /// A header or a JSON pointer (the `stream_from` form).
    At(RouteFrom),
}

/// One part of a key: where its value is and the record property that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    pub from: PartFrom,
    /// The top-level record property (and key property) holding the value.
    pub property: String,
}

impl KeyPart {
    /// Whether the value is a top-level payload field, emitted with the payload's fields.
    pub fn is_top_level(&self) -> bool {
        match &self.from {
            PartFrom::Field(_) => true,
            PartFrom::At(RouteFrom::Pointer(t)) => t.len() == 1,
            PartFrom::At(RouteFrom::Header(_)) => false,
        }
    }

    /// The header the receiver must capture for this part.
    pub fn header(&self) -> Option<&str> {
        match &self.from {
            PartFrom::At(RouteFrom::Header(h)) => Some(h),
            _ => None,
        }
    }

    /// The part as the user wrote it, for messages: `"id"`, `pointer "/data/id"`,
    /// `header "x-event"`.
    pub fn describe(&self) -> String {
        match &self.from {
            PartFrom::Field(f) => format!("{f:?}"),
            PartFrom::At(at) => at.describe(),
        }
    }

    /// The part's value in a message as raw JSON text, checked as a key value; `Err` is why it
    /// cannot be a key, worded to follow `primary key <part> `. `headers`: the message's stored
    /// headers (`None` when not read: a header part is then skipped, `Ok(None)`).
    pub fn value<'a>(
        &self,
        headers: Option<&str>,
        fields: &[Field<'a>],
    ) -> Result<Option<(Cow<'a, str>, KeyKind)>, String> {
        let text: Option<Cow<'a, str>> = match &self.from {
            PartFrom::Field(f) => fields
                .iter()
                .find(|x| x.key == f.as_str())
                .map(|x| Cow::Borrowed(x.value)),
            PartFrom::At(RouteFrom::Pointer(t)) => at_pointer_raw(fields, t)?.map(Cow::Borrowed),
            PartFrom::At(RouteFrom::Header(h)) => {
                let Some(headers) = headers else {
                    return Ok(None);
                };
                let value = stored_header(headers, h);
                if value.as_ref().and_then(Value::as_str).is_some_and(not_utf8) {
                    return Err(
                        "holds bytes that are not UTF-8 (stored as U+FFFD): different values would be one key"
                            .into(),
                    );
                }
                value.map(|v| Cow::Owned(v.to_string()))
            }
        };
        let kind = key::check(text.as_deref())?;
        if !self.is_top_level() {
            // The payload's own field of the property's name must agree, or be absent.
            if let Some(f) = fields.iter().find(|f| f.key == self.property.as_str()) {
                let text = text.as_deref().unwrap_or_default();
                if f.value != text && !same_json(f.value, text) {
                    return Err(format!(
                        "is emitted as property {:?}, but the payload's field {:?} holds another value ({})",
                        self.property,
                        self.property,
                        crate::payload::kind(f.value)
                    ));
                }
            }
        }
        Ok(text.map(|t| (t, kind)))
    }
}

/// Whether a stored header value had bytes that are not UTF-8: the receiver stores them as
/// U+FFFD (`ord-\xe9` and `ord-\xe8` are both `ord-\u{FFFD}`), so as a key it would merge rows.
fn not_utf8(stored: &str) -> bool {
    stored.contains('\u{FFFD}')
}

/// Whether two raw JSON texts are the same value (`"\u0061"` and `"a"`). Texts of different
/// kinds are not parsed: a payload's 20 MB array beside a key's scalar costs a glance, not a
/// tree of millions of values.
pub fn same_json(a: &str, b: &str) -> bool {
    if crate::payload::kind(a) != crate::payload::kind(b) {
        return false;
    }
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A validated `primary_key`: its parts, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKey {
    pub parts: Vec<KeyPart>,
}

/// The Singer SDK's `flatten_key` (`singer_sdk.helpers._flattening`): a nested field's column
/// is the names on its path joined by `__` (`/data/object/id` → `data__object__id`; the
/// pointer's tokens unescaped, `~1` → `/`, `~0` → `~`), by flattening's own implementation
/// ([`crate::tap::flatten::flatten_key`]) at the SDK's default length. The SDK abbreviates names
/// from 255 characters on; [`PrimaryKey::build`] refuses those, so the name is the plain join.
pub fn flatten_key(tokens: &[String]) -> String {
    use crate::tap::flatten::{flatten_key, DEFAULT_MAX_KEY_LENGTH};
    let Some((last, parents)) = tokens.split_last() else {
        return String::new();
    };
    let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
    flatten_key(last, &parents, DEFAULT_MAX_KEY_LENGTH)
}

/// A header part's property: the lower-cased header name with `-` made `_`
/// (`X-GitHub-Delivery` → `x_github_delivery`).
pub fn header_property(header: &str) -> String {
    header.to_ascii_lowercase().replace('-', "_")
}

impl PrimaryKey {
    /// Validates the setting; `Err` says what is wrong (the caller names the setting).
    /// `packed`: the source's records are packed, whose own properties cannot be key properties.
    pub fn build(c: Option<&PrimaryKeyConfig>, packed: bool) -> Result<Option<PrimaryKey>, String> {
        let Some(PrimaryKeyConfig(v)) = c else {
            return Ok(None);
        };
        let parts = match v {
            Value::Array(list) if list.is_empty() => return Err("lists no part".into()),
            Value::Array(list) if list.len() > MAX_PARTS => {
                return Err(format!("lists {} parts, over {MAX_PARTS}", list.len()))
            }
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, p)| part(p).map_err(|e| format!("part {}: {e}", i + 1)))
                .collect::<Result<Vec<_>, _>>()?,
            one => vec![part(one)?],
        };
        for (i, p) in parts.iter().enumerate() {
            let taken = is_reserved(&p.property, true)
                || (packed
                    && matches!(
                        p.property.as_str(),
                        "message_id" | "payload" | "headers" | "query"
                    ));
            if taken {
                return Err(format!(
                    "{} names the property {:?}, which the tap sets itself",
                    p.describe(),
                    p.property
                ));
            }
            if let Some(q) = parts[..i].iter().find(|q| q.property == p.property) {
                return Err(format!(
                    "{} and {} both name the property {:?}",
                    q.describe(),
                    p.describe(),
                    p.property
                ));
            }
        }
        Ok(Some(PrimaryKey { parts }))
    }

    /// The key properties, in order: the stream's `key_properties`.
    pub fn properties(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.property.clone()).collect()
    }

    /// The headers the receiver must capture for this key.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(KeyPart::header)
    }
}

/// One part as written.
fn part(v: &Value) -> Result<KeyPart, String> {
    match v {
        Value::String(f) => {
            if f.is_empty() || f.chars().count() > MAX_FIELD_NAME_CHARS {
                return Err(format!(
                    "must be 1 to {MAX_FIELD_NAME_CHARS} characters, a top-level field"
                ));
            }
            Ok(KeyPart {
                from: PartFrom::Field(f.clone()),
                property: f.clone(),
            })
        }
        Value::Object(_) => {
            let c: RouteConfig = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            let at = RouteFrom::parse(&c)?;
            let property = match &at {
                RouteFrom::Pointer(t) => {
                    if t.iter().any(String::is_empty) {
                        return Err(format!(
                            "{} has an empty name in its path, which names no column",
                            at.describe()
                        ));
                    }
                    flatten_key(t)
                }
                RouteFrom::Header(h) => {
                    if ALWAYS_SECRET_HEADERS.contains(&h.as_str()) {
                        return Err(format!(
                            "{} is a credential, never stored in clear",
                            at.describe()
                        ));
                    }
                    header_property(h)
                }
            };
            // The whole name, before any abbreviation: one the SDK would shorten is refused,
            // so a key column's name always reads as its path.
            let whole = match &at {
                RouteFrom::Pointer(t) => t.join(crate::tap::flatten::SEPARATOR).chars().count(),
                RouteFrom::Header(_) => property.chars().count(),
            };
            if whole > MAX_PROPERTY_CHARS {
                return Err(format!(
                    "{} names a property of {whole} characters, over {MAX_PROPERTY_CHARS}",
                    at.describe(),
                ));
            }
            Ok(KeyPart {
                from: PartFrom::At(at),
                property,
            })
        }
        other => Err(format!(
            "{} is not a field name, a `{{\"pointer\": …}}` or `{{\"header\": …}}` object, or a list of those",
            crate::payload::kind(&other.to_string())
        )),
    }
}

#[cfg(test)]
mod tests;
