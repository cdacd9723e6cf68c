//! The body pipeline: decompress, check, split into messages.
//!
//! Pure functions over bytes (no HTTP), so they are unit-tested and fuzzed directly. The stored
//! text of each message is the exact bytes received: a signature over them still verifies, and
//! whitespace and key order survive.

use std::borrow::Cow;
use std::io::Read;

use serde_json::value::RawValue;

use crate::payload;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("NO_BODY_PROVIDED: the request has no body")]
    Empty,
    #[error("PAYLOAD_TOO_LARGE: the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("REQUEST_TIMEOUT: the body was not received in time")]
    ReadTimeout,
    #[error("BODY_READ_FAILED: {0}")]
    ReadFailed(String),
    #[error("UNSUPPORTED_CONTENT_ENCODING: {0:?} (send identity or gzip)")]
    UnsupportedEncoding(String),
    #[error("INVALID_GZIP: {0}")]
    InvalidGzip(String),
    #[error("INVALID_JSON: {detail} at byte {offset}")]
    InvalidJson { offset: usize, detail: String },
    #[error("UNSUPPORTED_JSON_TYPE: {0}")]
    UnsupportedType(String),
    #[error(
        "TOO_MANY_FIELDS: {where_} has {count} top-level fields; at most {limit} are accepted \
         (max_fields_per_message)"
    )]
    TooManyFields {
        where_: &'static str,
        count: usize,
        limit: usize,
    },
    #[error(
        "TOO_MANY_MESSAGES: the array has {count} elements; at most {limit} are accepted in one \
         delivery (max_messages_per_delivery)"
    )]
    TooManyMessages { count: usize, limit: usize },
}

/// What one delivery may hold, so that its cost is bounded however it is shaped: each field
/// and each message costs work in the receiver, the tap and the target (a column, a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Top-level fields of one message (`max_fields_per_message`).
    pub max_fields: usize,
    /// Messages of one array delivery (`max_messages_per_delivery`).
    pub max_messages: usize,
}

/// Top-level fields of one message: far above real webhooks (hundreds), far below what makes
/// one delivery cost seconds (a column each in the target).
pub const DEFAULT_MAX_FIELDS_PER_MESSAGE: usize = 10_000;
/// Messages of one array delivery (SendGrid batches up to 1,000 events).
pub const DEFAULT_MAX_MESSAGES_PER_DELIVERY: usize = 10_000;

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_fields: DEFAULT_MAX_FIELDS_PER_MESSAGE,
            max_messages: DEFAULT_MAX_MESSAGES_PER_DELIVERY,
        }
    }
}

/// Undoes `Content-Encoding`, refusing output beyond `limit` bytes (gzip bombs stop there).
pub fn decode(
    raw: &[u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    decode_borrowed(raw, content_encoding, limit).map(Cow::into_owned)
}

/// [`decode`], borrowing the body when it is not encoded (the usual case: no copy).
pub fn decode_borrowed<'a>(
    raw: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let encoding = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if raw.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(Cow::Borrowed(raw))
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
            let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::MultiGzDecoder::new(raw)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::InvalidGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Splits a JSON body into messages: an object is one message (the whole body, byte for byte),
/// an array is one message per element (each element's exact text). Elements must be objects.
/// Depth and `bounds` are checked first, by one scan of the bytes, before any parse.
pub fn split<'a>(body: &'a [u8], bounds: &Bounds) -> Result<Vec<&'a str>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::InvalidJson {
        offset: e.valid_up_to(),
        detail: "invalid UTF-8".into(),
    })?;
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Err(BodyError::Empty);
    }
    let shape = payload::shape(text, MAX_DEPTH);
    if let Some(offset) = shape.too_deep_at {
        return Err(BodyError::InvalidJson {
            offset,
            detail: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    let (messages, widest, where_) = match trimmed.as_bytes()[0] {
        b'[' => (
            shape.top_items,
            shape.widest_element,
            "an element of the array",
        ),
        _ => (1, shape.top_items, "the body"),
    };
    if messages > bounds.max_messages {
        return Err(BodyError::TooManyMessages {
            count: messages,
            limit: bounds.max_messages,
        });
    }
    if widest > bounds.max_fields {
        return Err(BodyError::TooManyFields {
            where_,
            count: widest,
            limit: bounds.max_fields,
        });
    }
    // The tap unescapes each message's top-level names; a name serde cannot unescape (a lone
    // surrogate such as \udfff, found by fuzzing) is refused here, not stored to fail the tap
    // later. For an object body the tap's own parse is also the validation: one pass.
    let messages = match trimmed.as_bytes()[0] {
        b'{' => vec![text],
        b'[' => {
            let items = payload::array_elements(text).map_err(|e| invalid_json(text, &e))?;
            if let Some(i) = items.iter().position(|t| !t.starts_with('{')) {
                return Err(BodyError::UnsupportedType(format!(
                    "array element {i} is {}; each element must be a JSON object",
                    payload::kind(items[i])
                )));
            }
            items
        }
        _ => {
            serde_json::from_str::<&RawValue>(text).map_err(|e| invalid_json(text, &e))?;
            return Err(BodyError::UnsupportedType(format!(
                "the body is {}; send a JSON object or an array of objects",
                payload::kind(trimmed)
            )));
        }
    };
    for m in &messages {
        payload::top_level(m).map_err(|e| invalid_json(m, &e))?;
    }
    Ok(messages)
}

/// Deepest nesting of arrays and objects accepted. Deeper documents are refused before any
/// parser recurses into them (readers downstream recurse too).
pub const MAX_DEPTH: usize = 128;

/// serde_json reports line and column; users of a one-line body want the byte offset.
fn invalid_json(text: &str, e: &serde_json::Error) -> BodyError {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let detail = e.to_string();
    let detail = detail
        .split(" at line ")
        .next()
        .unwrap_or(detail.as_str())
        .to_owned();
    BodyError::InvalidJson {
        offset: line_start + e.column().saturating_sub(1),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_tap_cannot_unescape_is_invalid_json() {
        let body = br#"{"a\udfffb": 1}"#;
        assert!(matches!(
            split(body, &Bounds::default()),
            Err(BodyError::InvalidJson { .. })
        ));
        assert!(split(br#"[{"ok": "\udfff"}, {"a\udfff": 2}]"#, &Bounds::default()).is_err());
        assert_eq!(
            split(br#"{"caf\u00e9": 1}"#, &Bounds::default())
                .unwrap()
                .len(),
            1
        );
    }
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn object_is_kept_byte_for_byte_and_array_split() {
        let body = " {\"b\": 1,  \"a\":[2]}\n";
        assert_eq!(
            split(body.as_bytes(), &Bounds::default()).unwrap(),
            vec![body]
        );
        let body = br#"[{"x":1} , {"y" : 2}]"#;
        assert_eq!(
            split(body, &Bounds::default()).unwrap(),
            vec![r#"{"x":1}"#, r#"{"y" : 2}"#]
        );
        assert_eq!(
            split(b"[]", &Bounds::default()).unwrap(),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn bad_bodies_get_specific_errors() {
        assert_eq!(
            split(b"  \n", &Bounds::default()).unwrap_err(),
            BodyError::Empty
        );
        assert!(matches!(
            split(br#"{"a":1,}"#, &Bounds::default()).unwrap_err(),
            BodyError::InvalidJson { offset: 7, .. }
        ));
        let e = split(b"{\"a\":\n tru}", &Bounds::default()).unwrap_err();
        assert!(
            matches!(e, BodyError::InvalidJson { offset: 10, .. }),
            "{e:?}"
        );
        assert!(
            matches!(split(b"42", &Bounds::default()).unwrap_err(), BodyError::UnsupportedType(m) if m.contains("a number"))
        );
        assert!(
            matches!(split(br#"[{"a":1}, "x"]"#, &Bounds::default()).unwrap_err(), BodyError::UnsupportedType(m) if m.contains("element 1 is a string"))
        );
        assert!(matches!(
            split(b"{\"a\":\"\xff\"}", &Bounds::default()).unwrap_err(),
            BodyError::InvalidJson { offset: 6, .. }
        ));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(
            split(deep.as_bytes(), &Bounds::default()).unwrap_err(),
            BodyError::InvalidJson { offset: 128, .. }
        ));
        let ok = format!(
            "{{\"s\":\"[[[\\\"{{\",\"d\":{}1{}}}",
            "[".repeat(120),
            "]".repeat(120)
        );
        assert_eq!(
            split(ok.as_bytes(), &Bounds::default()).unwrap().len(),
            1,
            "brackets in strings do not count: {ok}"
        );
    }

    #[test]
    fn too_many_fields_or_messages_are_refused_before_any_parse() {
        let bounds = Bounds {
            max_fields: 3,
            max_messages: 2,
        };
        let ok = br#"{"a":1,"b":{"x":1,"y":2,"z":3,"w":4},"c":"d,e,f,g"}"#;
        assert_eq!(split(ok, &bounds).unwrap().len(), 1);
        assert_eq!(
            split(br#"{"a":1,"b":2,"c":3,"d":4}"#, &bounds).unwrap_err(),
            BodyError::TooManyFields {
                where_: "the body",
                count: 4,
                limit: 3
            }
        );
        assert_eq!(
            split(br#"[{"a":1},{"a":1,"b":2,"c":3}]"#, &bounds)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            split(br#"[{"a":1},{"a":1,"b":2,"c":3,"d":4}]"#, &bounds).unwrap_err(),
            BodyError::TooManyFields {
                where_: "an element of the array",
                count: 4,
                limit: 3
            }
        );
        assert_eq!(
            split(b"[{},{},{}]", &bounds).unwrap_err(),
            BodyError::TooManyMessages { count: 3, limit: 2 }
        );
        // Counted before the parse: a body past a bound is refused for that, even if invalid.
        assert!(matches!(
            split(b"[{},{},{},", &bounds).unwrap_err(),
            BodyError::TooManyMessages { .. }
        ));
    }

    #[test]
    fn gzip_is_undone_and_bombs_stop_at_the_limit() {
        let body = br#"{"a":1}"#;
        assert_eq!(decode(&gzip(body), Some("gzip"), 100).unwrap(), body);
        let bomb = gzip(&vec![b' '; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decode(&bomb, Some("gzip"), 1 << 20).unwrap_err(),
            BodyError::TooLarge { limit: 1 << 20 }
        );
        assert!(matches!(
            decode(b"not gzip", Some("gzip"), 100).unwrap_err(),
            BodyError::InvalidGzip(_)
        ));
        assert!(matches!(
            decode(b"x", Some("br"), 100).unwrap_err(),
            BodyError::UnsupportedEncoding(_)
        ));
        assert_eq!(
            decode(b"12345", None, 4).unwrap_err(),
            BodyError::TooLarge { limit: 4 }
        );
    }
}
