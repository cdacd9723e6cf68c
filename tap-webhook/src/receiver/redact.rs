//! Redaction before storage: values named by JSON pointers are replaced by a salted SHA-256
//! (`hash`: equal values still join) or removed (`drop`) after the signatures were checked over
//! the raw bytes and before the spool write, so the raw value never reaches the disk.
//!
//! Only the objects and arrays on a pointer's path are written again (members in order); every
//! other value, nested ones included, keeps its exact received text.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::payload::{array_elements, parse_pointer, top_level};

/// Shortest salt accepted, in bytes: a short salt makes hashed values guessable.
pub const MIN_SALT_BYTES: usize = 16;

/// The `redact` setting of a source, as written.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// JSON pointers whose values become `hex(sha256(salt ‖ value))`.
    pub hash: Option<Vec<String>>,
    /// JSON pointers whose values are removed.
    pub drop: Option<Vec<String>>,
    /// The salt of `hash`; required with it.
    pub salt: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Hash,
    Drop,
}

/// A validated `redact` setting.
#[derive(Clone)]
pub struct Redact {
    rules: Vec<(Vec<String>, Action)>,
    salt: Vec<u8>,
}

impl fmt::Debug for Redact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salt is a secret: never in a log line.
        f.debug_struct("Redact")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Redact {
    /// Validates the setting; `Err` says what is wrong (the caller names the setting).
    pub fn build(c: Option<RedactConfig>) -> Result<Option<Redact>, String> {
        let Some(c) = c else { return Ok(None) };
        let mut rules = Vec::new();
        for (list, action) in [(&c.hash, Action::Hash), (&c.drop, Action::Drop)] {
            for p in list.iter().flatten() {
                let tokens = parse_pointer(p).ok_or_else(|| {
                    format!("{p:?} is not a JSON pointer (it must start with `/`)")
                })?;
                if rules.iter().any(|(t, _)| *t == tokens) {
                    return Err(format!("{p:?} is listed twice"));
                }
                rules.push((tokens, action));
            }
        }
        if rules.is_empty() {
            return Err("lists no pointer in `hash` or `drop`".into());
        }
        let hashes = rules.iter().any(|(_, a)| *a == Action::Hash);
        let salt = match c.salt {
            Some(s) if s.len() >= MIN_SALT_BYTES => s.into_bytes(),
            Some(_) => return Err(format!("`salt` must be at least {MIN_SALT_BYTES} bytes")),
            None if hashes => {
                return Err("`hash` needs a `salt` (at least 16 bytes, kept secret)".into())
            }
            None => Vec::new(),
        };
        Ok(Some(Redact { rules, salt }))
    }

    /// The salted hash of a value: of a string's UTF-8 bytes, else of its compact JSON text.
    pub fn hash(&self, v: &Value) -> String {
        let mut h = Sha256::new();
        h.update(&self.salt);
        match v {
            Value::String(s) => h.update(s.as_bytes()),
            other => h.update(other.to_string().as_bytes()),
        }
        hex::encode(h.finalize())
    }

    /// The message's text with its redacted values replaced or removed; unchanged (borrowed)
    /// when no pointer reaches into it. `text` is a JSON object (the receiver checked it).
    pub fn apply<'t>(&self, text: &'t str) -> Result<Cow<'t, str>, String> {
        let fields = top_level(text).map_err(|e| format!("payload is not a JSON object: {e}"))?;
        let touched = |key: &str| self.rules.iter().any(|(t, _)| t[0] == key);
        if !fields.iter().any(|f| touched(&f.key)) {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len());
        out.push('{');
        for f in &fields {
            let mut value = Some(Cow::Borrowed(f.value));
            for (tokens, action) in self.rules.iter().filter(|(t, _)| t[0] == f.key) {
                if let Some(v) = value {
                    value = self
                        .rewrite(&v, &tokens[1..], *action)
                        .map_err(|e| format!("field {:?} cannot be read: {e}", f.key))?
                        .map(Cow::Owned);
                }
            }
            if let Some(v) = value {
                singer::json::push_key(&mut out, &f.key);
                out.push_str(&v);
            }
        }
        out.push('}');
        Ok(Cow::Owned(out))
    }

    /// `text` (a value's raw JSON) with one rule applied at `tokens` below it; `None`: the
    /// value itself is dropped. Only the objects and arrays on the pointer's path are written
    /// again (their members in order, a repeated name once: the last, as readers take it);
    /// every other value keeps its exact text (a number is never rounded through an f64). A
    /// pointer that reaches nothing changes nothing; a dropped array element becomes null
    /// (the others keep their index); a null is not hashed.
    fn rewrite(
        &self,
        text: &str,
        tokens: &[String],
        action: Action,
    ) -> Result<Option<String>, serde_json::Error> {
        let Some((t, rest)) = tokens.split_first() else {
            return Ok(match action {
                Action::Drop => None,
                Action::Hash if text == "null" => Some(text.to_owned()),
                Action::Hash => {
                    let v: Value = serde_json::from_str(text)?;
                    Some(Value::String(self.hash(&v)).to_string())
                }
            });
        };
        let mut out = String::with_capacity(text.len());
        match text.as_bytes().first() {
            Some(b'{') => {
                let fields = top_level(text)?;
                if !fields.iter().any(|f| f.key == t.as_str()) {
                    return Ok(Some(text.to_owned()));
                }
                out.push('{');
                for f in &fields {
                    let v = if f.key == t.as_str() {
                        self.rewrite(f.value, rest, action)?
                    } else {
                        Some(f.value.to_owned())
                    };
                    if let Some(v) = v {
                        singer::json::push_key(&mut out, &f.key);
                        out.push_str(&v);
                    }
                }
                out.push('}');
            }
            Some(b'[') => {
                let items = array_elements(text)?;
                let Some(i) = t.parse::<usize>().ok().filter(|&i| i < items.len()) else {
                    return Ok(Some(text.to_owned()));
                };
                out.push('[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    if j == i {
                        let v = self.rewrite(item, rest, action)?;
                        out.push_str(v.as_deref().unwrap_or("null"));
                    } else {
                        out.push_str(item);
                    }
                }
                out.push(']');
            }
            _ => return Ok(Some(text.to_owned())),
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(c: Value) -> Redact {
        Redact::build(Some(serde_json::from_value(c).unwrap()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn values_are_hashed_or_dropped_and_the_rest_is_kept_as_received() {
        let r = redact(json!({"hash": ["/email", "/customer/phone", "/items/1"],
                              "drop": ["/card", "/customer/address/street"],
                              "salt": "0123456789abcdef"}));
        let body = r#"{"z":1.50,"email":"ann@example.org","customer":{"phone":"+4912345","address":{"street":"Main 1","city":"X"}},"card":{"n":"4242"},"items":["a","b"],"id":"évt"}"#;
        let out: Value = serde_json::from_str(&r.apply(body).unwrap()).unwrap();
        let h = |s: &str| hex::encode(Sha256::digest(format!("0123456789abcdef{s}")));
        assert_eq!(
            out,
            json!({"z": 1.50, "email": h("ann@example.org"),
                   "customer": {"phone": h("+4912345"), "address": {"city": "X"}},
                   "items": ["a", h("b")], "id": "évt"})
        );
        let text = r.apply(body).unwrap();
        for raw in ["ann@example.org", "+4912345", "Main 1", "4242"] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
        // Untouched fields keep their exact text and order; the hash is stable.
        assert!(text.starts_with(r#"{"z":1.50,"email":""#), "{text}");
        assert_eq!(r.apply(body).unwrap(), text);
        // Nothing to redact: the very same text.
        assert!(matches!(
            r.apply(r#"{"a" : 1}"#).unwrap(),
            Cow::Borrowed(r#"{"a" : 1}"#)
        ));
        // Absent or null targets change nothing; a numeric value hashes its JSON text.
        let out = r
            .apply(r#"{"email":null,"customer":5,"items":[]}"#)
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"email": null, "customer": 5, "items": []})
        );
        let out = r.apply(r#"{"email":42}"#).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"email": h("42")})
        );
    }

    #[test]
    fn only_the_path_is_written_again_and_repeated_names_leave_no_raw_value() {
        let r = redact(
            json!({"hash": ["/c/email", "/c/list/0/n"], "drop": ["/c/card"],
                              "salt": "0123456789abcdef"}),
        );
        let h = |s: &str| hex::encode(Sha256::digest(format!("0123456789abcdef{s}")));
        let body = r#"{"c":{"z":1.50,"email":"a@x","email":"b@x","big":12345678901234567890123,"card":"4242","list":[{"n":"s","m":1e2}]}}"#;
        let out = r.apply(body).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"c":{{"z":1.50,"email":"{}","big":12345678901234567890123,"list":[{{"n":"{}","m":1e2}}]}}}}"#,
                h("b@x"),
                h("s")
            )
        );
        assert!(!out.contains("a@x") && !out.contains("4242"), "{out}");
    }

    #[test]
    fn settings_are_checked() {
        let b = |c: Value| Redact::build(Some(serde_json::from_value(c).unwrap())).map(|_| ());
        assert!(b(json!({"hash": ["/a"]})).unwrap_err().contains("salt"));
        assert!(b(json!({"hash": ["/a"], "salt": "short"}))
            .unwrap_err()
            .contains("16"));
        assert!(b(json!({"drop": ["a"]}))
            .unwrap_err()
            .contains("JSON pointer"));
        assert!(b(json!({})).unwrap_err().contains("no pointer"));
        assert!(
            b(json!({"drop": ["/a"], "hash": ["/a"], "salt": "0123456789abcdef"}))
                .unwrap_err()
                .contains("twice")
        );
        assert!(b(json!({"drop": ["/a"]})).is_ok());
        let r = redact(json!({"hash": ["/a"], "salt": "0123456789abcdef-secret"}));
        assert!(!format!("{r:?}").contains("secret"));
    }
}
