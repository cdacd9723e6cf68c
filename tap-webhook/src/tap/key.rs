//! A configured primary key's values: which ones can be a key, and the key property's declared
//! type from the kinds the stream's keys had.
//!
//! Every target keys a row on this value, so a value that is not a plain scalar id stalls them:
//! SDK targets abort on a record whose key does not match its SCHEMA and print no state, and the
//! next run sends it again. Such a message goes to `<stream>__rejected` with the reason, like a
//! missing key; nothing is rewritten (a value is emitted as it was received or not at all).
//!
//! - integers that fit a signed 64-bit integer, and strings up to [`MAX_KEY_BYTES`]: keys;
//! - integers beyond 64 bits: refused rather than emitted as strings: the key would then be a
//!   string in a stream whose other keys are integers (a TEXT key column in every SQL target)
//!   or a value rewritten from its number; no provider id we know passes 2^63;
//! - booleans: refused: a boolean tells two rows apart at most, so it is a misconfigured key,
//!   and declaring it would make the key column a mix of three types;
//! - other numbers (a fraction or an exponent, even `5.0`), objects, arrays, null: refused.
//!
//! The SCHEMA declares what was seen: only integers `"integer"` (BIGINT in SQL targets), only
//! strings `"string"`, both `["integer", "string"]` (never a value turned into the other kind).

use serde_json::{json, Value};

/// Longest string key, in bytes (UTF-8, unescaped). Stitch's 50 is its limit on key *names*;
/// real ids (Shopify's `gid://shopify/…`) pass 50 characters.
pub const MAX_KEY_BYTES: usize = 1024;

/// The kinds of key value a stream had, as bits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyKinds(u8);

impl KeyKinds {
    const INTEGER: u8 = 1;
    const STRING: u8 = 2;

    /// Adds a usable key's kind; true when the set changed (the SCHEMA must be sent again).
    pub fn add(&mut self, kind: KeyKind) -> bool {
        let bit = match kind {
            KeyKind::Integer => Self::INTEGER,
            KeyKind::String => Self::STRING,
        };
        let changed = self.0 & bit == 0;
        self.0 |= bit;
        changed
    }

    /// Adds every kind `other` had.
    pub fn absorb(&mut self, other: KeyKinds) {
        self.0 |= other.0;
    }

    /// The key property's JSON Schema. Before any key was seen (discovery of an empty spool)
    /// either kind may come.
    pub fn to_schema(self) -> Value {
        match self.0 {
            Self::INTEGER => json!({"type": "integer"}),
            Self::STRING => json!({"type": "string"}),
            _ => json!({"type": ["integer", "string"]}),
        }
    }
}

/// Sets the key property of a stream's JSON Schema (`{"properties": …}`) to what `kinds` saw.
pub fn declare(schema: &mut Value, key: &str, kinds: KeyKinds) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(key.to_owned(), kinds.to_schema());
    }
}

/// What a usable key value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Integer,
    String,
}

/// Checks a key value (its raw JSON text, `None` when the payload lacks the field); `Err` is
/// why it cannot be a key, worded to follow `primary key "id" `.
pub fn check(value: Option<&str>) -> Result<KeyKind, String> {
    let Some(text) = value else {
        return Err("is missing".into());
    };
    match text.as_bytes().first() {
        Some(b'"') => check_string(text),
        Some(b'n') => Err("is null".into()),
        Some(b't' | b'f') => Err(format!(
            "is a boolean ({text}), which cannot identify a row"
        )),
        Some(b'{') => Err("is an object, which cannot be a key".into()),
        Some(b'[') => Err("is an array, which cannot be a key".into()),
        _ if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => {
            Err(format!("is the number {}, not an integer", excerpt(text)))
        }
        _ if text.parse::<i64>().is_ok() => Ok(KeyKind::Integer),
        _ => Err(format!(
            "is the integer {}, beyond the signed 64-bit range a key column holds",
            excerpt(text)
        )),
    }
}

fn check_string(text: &str) -> Result<KeyKind, String> {
    // The raw text is at least as long as the string (quotes, escapes): most keys, unescaped,
    // stop here.
    let escaped = text.as_bytes().contains(&b'\\');
    if !escaped && text.len() <= MAX_KEY_BYTES + 2 {
        return Ok(KeyKind::String);
    }
    let len = match serde_json::from_str::<String>(text) {
        Ok(s) => s.len(),
        // Valid JSON (the receiver checked it) that no Unicode text holds: a lone surrogate
        // escape. Targets keep it as its JSON text, so `"\ud800"` and `"\uD800"`, one value,
        // would be two keys.
        Err(_) if escaped => {
            return Err(format!(
                "is a string with a lone surrogate escape ({}), which no text holds: its spellings would be different keys",
                excerpt(text)
            ))
        }
        Err(_) => text.len(),
    };
    if len <= MAX_KEY_BYTES {
        Ok(KeyKind::String)
    } else {
        Err(format!(
            "is a string of {len} bytes, over the {MAX_KEY_BYTES} a key may have"
        ))
    }
}

/// The start of a long value, for a reason that stays one line.
fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_bit_integers_and_bounded_strings_are_keys() {
        for ok in [
            "5",
            "-9223372036854775808",
            "9223372036854775807",
            "0",
            "\"a\"",
            "\"\"",
        ] {
            assert!(check(Some(ok)).is_ok(), "{ok}");
        }
        let long_id = format!("\"gid://shopify/Order/{}\"", "9".repeat(60));
        assert_eq!(check(Some(&long_id)), Ok(KeyKind::String));
        let at_limit = format!("\"{}\"", "x".repeat(MAX_KEY_BYTES));
        assert_eq!(check(Some(&at_limit)), Ok(KeyKind::String));
        // Escapes make the raw text longer than the string: the string's length counts.
        let escaped = format!("\"{}\"", "\\u00fc".repeat(MAX_KEY_BYTES / 2));
        assert_eq!(check(Some(&escaped)), Ok(KeyKind::String));
        for (bad, why) in [
            (None, "missing"),
            (Some("null"), "null"),
            (Some("true"), "boolean"),
            (Some("{\"obj\":2}"), "object"),
            (Some("[1]"), "array"),
            (Some("5.0"), "not an integer"),
            (Some("1e3"), "not an integer"),
            (Some("9223372036854775808"), "64-bit"),
            (Some("-123456789012345678901234567890"), "64-bit"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        // A lone surrogate has no Unicode text, so no one spelling; a pair is a character.
        for lone in [r#""\ud800""#, r#""\uDFFF""#, r#""id-\udbff-x""#] {
            assert!(
                check(Some(lone)).unwrap_err().contains("lone surrogate"),
                "{lone}"
            );
        }
        assert_eq!(check(Some(r#""\ud83d\ude00""#)), Ok(KeyKind::String));
        assert_eq!(check(Some(r#""a\"b\\c""#)), Ok(KeyKind::String));
        let over = format!("\"{}\"", "x".repeat(MAX_KEY_BYTES + 1));
        assert!(check(Some(&over)).unwrap_err().contains("1025 bytes"));
    }

    #[test]
    fn the_schema_declares_the_kinds_seen() {
        let mut k = KeyKinds::default();
        assert_eq!(k.to_schema(), json!({"type": ["integer", "string"]}));
        assert!(k.add(KeyKind::Integer));
        assert!(!k.add(KeyKind::Integer));
        assert_eq!(k.to_schema(), json!({"type": "integer"}));
        let mut s = KeyKinds::default();
        s.add(KeyKind::String);
        assert_eq!(s.to_schema(), json!({"type": "string"}));
        k.absorb(s);
        assert_eq!(k.to_schema(), json!({"type": ["integer", "string"]}));
    }
}
