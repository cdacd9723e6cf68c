//! The top level of a webhook payload, split without parsing what lies below it: an array body
//! into its elements' exact texts (the receiver), an object into its fields with their values'
//! raw JSON text (the receiver's check of every message, the tap's records and schema).
//!
//! Values stay raw JSON text: nested objects and arrays are never built into a DOM, which is what
//! keeps the tap far ahead of any target.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use singer::fields::for_each_field;

/// One top-level field of a payload: its (unescaped) name and its value's raw JSON text.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: &'a str,
    /// [`field_hash`] of the key.
    pub hash: u64,
}

/// The hashes of the field names pushed so far, as a 1,024-bit filter: on most payloads no
/// name hits it, and only then is the list checked for repeated names (once, at the end).
struct Seen([u64; 16]);

impl Seen {
    fn new() -> Seen {
        Seen([0; 16])
    }

    /// Marks `hash`; whether it was marked already.
    fn insert(&mut self, hash: u64) -> bool {
        let bit = hash >> 54;
        let (word, mask) = ((bit >> 6) as usize, 1u64 << (bit & 63));
        let hit = self.0[word] & mask != 0;
        self.0[word] |= mask;
        hit
    }
}

/// Drops every field a later one of the same name replaces (the last occurrence wins, at its
/// place), in one pass over a map of names: linear in the fields. (Removing each earlier
/// occurrence as it was met scanned and shifted the list per field once the filter was full:
/// quadratic, ~19 s of CPU for one body of 250k names.)
fn keep_last(fields: &mut Vec<Field<'_>>) {
    let keep: Vec<bool> = {
        let mut last: HashMap<(u64, &str), usize> = HashMap::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            last.insert((f.hash, f.key.as_ref()), i);
        }
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| last.get(&(f.hash, f.key.as_ref())) == Some(&i))
            .collect()
    };
    let mut keep = keep.into_iter();
    fields.retain(|_| keep.next().unwrap_or(true));
}

/// The payload's top-level fields, in order, values raw. Later duplicates of a key win, as in
/// JavaScript's `JSON.parse`, and earlier ones are dropped.
pub fn top_level(body: &str) -> Result<Vec<Field<'_>>, serde_json::Error> {
    let mut out: Vec<Field<'_>> = Vec::with_capacity(32);
    let mut seen = Seen::new();
    let mut repeats = false;
    for_each_field(body, |key, value| {
        let hash = field_hash(&key);
        repeats |= seen.insert(hash);
        out.push(Field {
            key,
            value: value.get(),
            hash,
        });
    })?;
    if repeats {
        keep_last(&mut out);
    }
    Ok(out)
}

/// A JSON pointer (`/a/b~1c`) as its reference tokens (`~1` and `~0` decoded); `None` when it
/// does not start with `/` or names the whole document.
pub fn parse_pointer(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// The pointer as written, for messages.
pub fn show_pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The value at `tokens` (a parsed JSON pointer, never empty) in a payload split into its
/// top-level `fields`: only the first token's field is parsed. `Ok(None)`: nothing there;
/// `Err`: that field is not JSON (worded to follow "the value ").
pub fn at_pointer(
    fields: &[Field<'_>],
    tokens: &[String],
) -> Result<Option<serde_json::Value>, String> {
    match at_pointer_raw(fields, tokens)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("cannot be read: {e}")),
    }
}

/// The raw JSON text at `tokens` (see [`at_pointer`]), exactly as received: numbers keep their
/// spelling (`1.0`, an integer past 64 bits), nothing below the value is built. Each step reads
/// one object or array without building it; an object's repeated name: the last wins, as in
/// [`top_level`]. An array step takes a token of digits without a leading zero (RFC 6901).
pub fn at_pointer_raw<'a>(
    fields: &[Field<'a>],
    tokens: &[String],
) -> Result<Option<&'a str>, String> {
    let Some((first, rest)) = tokens.split_first() else {
        return Ok(None);
    };
    let Some(mut at) = fields
        .iter()
        .find(|f| f.key == first.as_str())
        .map(|f| f.value)
    else {
        return Ok(None);
    };
    for t in rest {
        let next = match at.as_bytes().first() {
            Some(b'{') => member(at, t),
            Some(b'[') if is_index(t) => element(at, t),
            _ => return Ok(None),
        };
        match next.map_err(|e| format!("cannot be read: {e}"))? {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// An RFC 6901 array index: `0`, or digits without a leading zero.
fn is_index(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'))
}

/// The raw value of member `name` of the object `text` (the last one of that name).
fn member<'a>(text: &'a str, name: &str) -> Result<Option<&'a str>, serde_json::Error> {
    let mut found = None;
    for_each_field(text, |key, value| {
        if key == name {
            found = Some(value.get());
        }
    })?;
    Ok(found)
}

/// The raw value at index `t` (checked by [`is_index`]) of the array `text`, read without
/// keeping the others (a hostile array of millions of elements costs a scan, not a list).
fn element<'a>(text: &'a str, t: &str) -> Result<Option<&'a str>, serde_json::Error> {
    struct Nth(usize);
    impl<'de> Visitor<'de> for Nth {
        type Value = Option<&'de str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut i = 0usize;
            while let Some(v) = seq.next_element::<&'de RawValue>()? {
                if i == self.0 {
                    found = Some(v.get());
                }
                i += 1;
            }
            Ok(found)
        }
    }
    let Ok(i) = t.parse::<usize>() else {
        return Ok(None);
    };
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de).deserialize_seq(Nth(i))
}

/// `b[start]` is an opening quote: the index just past the closing one.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The elements of a JSON array, each its exact text.
pub fn array_elements(text: &str) -> Result<Vec<&str>, serde_json::Error> {
    let items: Vec<&RawValue> = serde_json::from_str(text)?;
    Ok(items.into_iter().map(RawValue::get).collect())
}

/// What one pass over a body's bytes finds, before any parse: how deep it nests and how many
/// values it holds where a delivery's cost grows (checked first, so a hostile body is refused
/// for the price of a scan). Text that is not valid JSON may pass; the parser that follows
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// The byte offset of the first `[` or `{` nested deeper than the maximum, if any (the scan
    /// stops there).
    pub too_deep_at: Option<usize>,
    /// Values in the top-level array, or fields in the top-level object.
    pub top_items: usize,
    /// The most fields (or values) of any array element: the widest message of an array body.
    pub widest_element: usize,
}

/// [`Shape`] of `text`: one pass, strings skipped (brackets and commas in them do not count).
pub fn shape(text: &str, max_depth: usize) -> Shape {
    let b = text.as_bytes();
    let mut out = Shape::default();
    let (mut depth, mut i) = (0usize, 0usize);
    // Commas seen, and whether any value started, in the top-level container and in the
    // current element of it: n values are n - 1 commas, 0 values none.
    let (mut commas1, mut any1, mut commas2, mut any2) = (0usize, false, 0usize, false);
    while let Some(&c) = b.get(i) {
        match c {
            b',' => match depth {
                1 => commas1 += 1,
                2 => commas2 += 1,
                _ => {}
            },
            b']' | b'}' => {
                if depth == 2 {
                    out.widest_element = out.widest_element.max(commas2 + usize::from(any2));
                }
                depth = depth.saturating_sub(1);
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                any1 |= depth == 1;
                any2 |= depth == 2;
                match c {
                    b'"' => match string_end(b, i) {
                        Some(end) => {
                            i = end;
                            continue;
                        }
                        None => break,
                    },
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > max_depth {
                            out.too_deep_at = Some(i);
                            break;
                        }
                        if depth == 2 {
                            (commas2, any2) = (0, false);
                        }
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    out.top_items = commas1 + usize::from(any1);
    out
}

/// What kind of JSON value a (valid) text is, for error messages: "a string", "an array"…
pub fn kind(json: &str) -> &'static str {
    match json.trim_start().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A fast hash of a field name, 8 bytes at a time (FxHash's step). Field names are chosen by
/// webhook senders, who gain nothing from collisions (one costs a comparison), and SipHash's
/// setup dominates on names of ten bytes.
pub fn field_hash(name: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut chunks = name.as_bytes().chunks_exact(8);
    let mut h = 0u64;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = step(h, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    h = step(h, u64::from_le_bytes(w));
    h = step(h, name.len() as u64);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keeps_raw_values_and_last_duplicate() {
        let f = top_level(r#"{"a": {"x": [1, 2]}, "b\n": 1, "a": 2}"#).unwrap();
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.key.as_ref(), f.value)).collect();
        assert_eq!(got, vec![("b\n", "1"), ("a", "2")]);
        assert!(top_level("[1]").is_err());
        assert!(top_level("{} x").is_err());
    }

    #[test]
    fn a_wide_payload_keeps_each_name_once_at_its_last_place() {
        // 300 names, every seventh repeated after all the others: the repeats must replace
        // the earlier occurrences however full the filter of names seen is.
        let mut parts: Vec<String> = (0..300).map(|i| format!("\"f{i}\":{i}")).collect();
        parts.extend((0..300).step_by(7).map(|i| format!("\"f{i}\":\"again\"")));
        let body = format!("{{{}}}", parts.join(","));
        let mut want: Vec<(String, String)> = (0..300)
            .filter(|i| i % 7 != 0)
            .map(|i| (format!("f{i}"), i.to_string()))
            .collect();
        want.extend(
            (0..300)
                .step_by(7)
                .map(|i| (format!("f{i}"), "\"again\"".to_string())),
        );
        {
            let split = top_level(&body).unwrap();
            let got: Vec<(String, String)> = split
                .into_iter()
                .map(|f| (f.key.into_owned(), f.value.to_owned()))
                .collect();
            assert_eq!(got, want);
        }
    }

    fn too_deep_at(text: &str, max: usize) -> Option<usize> {
        shape(text, max).too_deep_at
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert_eq!(too_deep_at("[[[]]]", 3), None);
        assert_eq!(too_deep_at("[[[[]]]]", 3), Some(3));
        assert_eq!(too_deep_at(r#"{"a":"[[[[\"{{{{","b":[[1]]}"#, 3), None);
        assert_eq!(too_deep_at(r#"{"a":"\\","b":[[[1]]]}"#, 3), Some(16));
        // An unterminated string ends the scan; the parser reports the text.
        assert_eq!(too_deep_at(r#"["[[[[["#, 1), None);
    }

    #[test]
    fn shape_counts_top_level_items_and_the_widest_element() {
        let items = |t: &str| {
            let s = shape(t, 128);
            (s.top_items, s.widest_element)
        };
        assert_eq!(items("{}"), (0, 0));
        assert_eq!(items(" { } "), (0, 0));
        assert_eq!(items(r#"{"a":1}"#), (1, 0));
        assert_eq!(
            items(r#"{"a":[1,2,{"x":1,"y":2}],"b,c":"d,e","f":{}}"#),
            (3, 3)
        );
        assert_eq!(items("[]"), (0, 0));
        assert_eq!(items("[{},{},{}]"), (3, 0));
        assert_eq!(
            items(r#"[{"a":1},{"a":1,"b":[1,2,3],"c":{"d":1,"e":2}}, {"z":"}]"}]"#),
            (3, 3)
        );
        let wide = format!(
            "{{{}}}",
            (0..500)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(items(&wide), (500, 0));
        assert_eq!(items(&format!("[{wide},{{}}]")), (2, 500));
    }

    #[test]
    fn pointers_find_raw_values_through_objects_and_arrays() {
        let body = r#"{"a":{"b~/c":[10,{"id":1.0}],"n":1,"n":2},"x":12345678901234567890123}"#;
        let f = top_level(body).unwrap();
        let raw = |p: &str| at_pointer_raw(&f, &parse_pointer(p).unwrap()).unwrap();
        assert_eq!(raw("/a/b~0~1c/0"), Some("10"));
        assert_eq!(raw("/a/b~0~1c/1/id"), Some("1.0"));
        assert_eq!(raw("/x"), Some("12345678901234567890123"));
        assert_eq!(raw("/a/n"), Some("2"));
        for none in [
            "/a/b~0~1c/2",
            "/a/b~0~1c/01",
            "/a/b~0~1c/+1",
            "/a/b~0~1c/-",
            "/a/zz",
            "/x/y",
            "/q",
        ] {
            assert_eq!(raw(none), None, "{none}");
        }
        assert_eq!(
            at_pointer(&f, &parse_pointer("/a/b~0~1c/1").unwrap()).unwrap(),
            Some(serde_json::json!({"id": 1.0}))
        );
        // A hostile array: a million elements, the last one named.
        let big = format!(r#"{{"items":[{}{{"id":"last"}}]}}"#, "0,".repeat(1_000_000));
        let f = top_level(&big).unwrap();
        let p = parse_pointer("/items/1000000/id").unwrap();
        assert_eq!(at_pointer_raw(&f, &p).unwrap(), Some(r#""last""#));
        let p = parse_pointer("/items/99999999999999999999999/id").unwrap();
        assert_eq!(at_pointer_raw(&f, &p).unwrap(), None);
    }

    #[test]
    fn array_elements_are_exact_texts() {
        assert_eq!(
            array_elements(r#" [{"x":1} , {"y" : 2}, 3] "#).unwrap(),
            [r#"{"x":1}"#, r#"{"y" : 2}"#, "3"]
        );
        assert!(array_elements("[1,]").is_err());
        assert!(array_elements("{}").is_err());
    }
}
