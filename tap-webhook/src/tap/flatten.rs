//! Flattening, the Singer SDK's way (`flattening_enabled`, `flattening_max_depth`,
//! `flattening_max_key_length`; `singer_sdk/helpers/_flattening.py`): a payload's objects become
//! columns `parent__child` down to the depth; arrays, and objects deeper than it, become their
//! JSON text as the SDK writes it ([`super::sdk_json`]). Column names are [`flatten_key`]'s,
//! the SDK's own (its 255-character reducer included), and this module is the one place they
//! are made: a name built from a path of keys anywhere in the tap comes from here.
//!
//! The tap has no declared schema to flatten: it flattens each record and infers the columns
//! from the flattened fields, so the SCHEMA always lists every column its RECORDs carry.
//! On the same records it equals the SDK's `flatten_schema` over their nested schema, but for
//! one thing the SDK gets wrong: a field that is an object in one message and a scalar (or
//! null, or an array) in another keeps, beside the object's columns, a column of its own for
//! those values; the SDK's records carry it too, but its schema drops it, so SDK targets do.
//! Two fields that would share a column (`{"a__b": 1, "a": {"b": 2}}`, the SDK's "Duplicate
//! column name produced in schema") are refused by [`Columns`] (decision 0034).

use std::borrow::Cow;

use super::inference::FieldMap;
use super::sdk_json;
use crate::payload::{show_pointer, top_level, Field};

/// Between the keys of a path in a column name.
pub const SEPARATOR: &str = "__";
/// The SDK's default `flattening_max_key_length`.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 255;

/// A source's flattening, validated: only when it changes records (enabled, depth > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flattening {
    /// `flattening_max_depth`: how many levels of objects become columns (1: `a__b`).
    pub max_depth: usize,
    /// `flattening_max_key_length`: a name this long or longer is reduced ([`flatten_key`]).
    pub max_key_length: usize,
}

impl Flattening {
    /// The source's flattening from its settings; `Err((setting, detail))` as the SDK refuses.
    /// Depth 0 flattens nothing, as in the SDK's mapper; a packed record has no fields to
    /// flatten (its payload is JSON text).
    pub fn build(
        enabled: bool,
        max_depth: Option<usize>,
        max_key_length: Option<usize>,
        packed: bool,
    ) -> Result<Option<Flattening>, (&'static str, String)> {
        if !enabled {
            return Ok(None);
        }
        let Some(max_depth) = max_depth else {
            return Err((
                "flattening_max_depth",
                "flattening_max_depth is required when flattening is enabled".into(),
            ));
        };
        if max_key_length == Some(0) {
            return Err(("flattening_max_key_length", "must be at least 1".into()));
        }
        if packed {
            return Err((
                "flattening_enabled",
                "flattening needs record_shape \"unpacked\": a packed record keeps the payload as JSON text".into(),
            ));
        }
        Ok((max_depth > 0).then_some(Flattening {
            max_depth,
            max_key_length: max_key_length.unwrap_or(DEFAULT_MAX_KEY_LENGTH),
        }))
    }

    /// The record's payload `fields` flattened, in order, each as its column name and value's
    /// JSON text (raw as stored for scalars). `skip` tells top-level fields to leave out (the
    /// tap's own names, fields the catalog deselects are left to the caller: selection is by
    /// column).
    pub fn flatten<'a>(
        &self,
        fields: &'a [Field<'a>],
        skip: impl Fn(&str) -> bool,
        out: &mut Vec<Column<'a>>,
    ) {
        out.clear();
        let mut parents: Vec<String> = Vec::new();
        for f in fields.iter().filter(|f| !skip(&f.key)) {
            let plain = !matches!(f.value.as_bytes().first(), Some(b'{' | b'['))
                && f.key.chars().count() < self.max_key_length;
            if plain {
                // The common case: the field is its own column, name and value as stored.
                out.push(Column {
                    name: Cow::Borrowed(f.key.as_ref()),
                    value: Cow::Borrowed(f.value),
                    origin: None,
                });
            } else {
                self.node(&mut parents, &f.key, f.value, 0, out);
            }
        }
    }

    fn node<'a>(
        &self,
        parents: &mut Vec<String>,
        key: &str,
        raw: &'a str,
        level: usize,
        out: &mut Vec<Column<'a>>,
    ) {
        let keys: Vec<&str> = parents.iter().map(String::as_str).collect();
        let name = Cow::Owned(flatten_key(key, &keys, self.max_key_length));
        // A top-level field keeping its name is told apart by its name alone.
        let nested = !parents.is_empty() || name != key;
        match raw.as_bytes().first() {
            Some(b'{') if level < self.max_depth => {
                // A name the receiver's parse allows but no Rust string holds (a lone
                // surrogate) keeps the object whole, as JSON text.
                if let Ok(children) = top_level(raw) {
                    parents.push(key.to_owned());
                    for c in &children {
                        self.node(parents, &c.key, c.value, level + 1, out);
                    }
                    parents.pop();
                    return;
                }
                out.push(Column::json(name, raw, nested, parents, key));
            }
            Some(b'{' | b'[') => out.push(Column::json(name, raw, nested, parents, key)),
            _ => out.push(Column {
                name,
                value: Cow::Borrowed(raw),
                origin: nested.then(|| origin(parents, key)),
            }),
        }
    }
}

/// One column of a flattened record.
#[derive(Debug, Clone, PartialEq)]
pub struct Column<'a> {
    pub name: Cow<'a, str>,
    /// The value's JSON text: raw as stored, or a JSON string holding the SDK's JSON text.
    pub value: Cow<'a, str>,
    /// The JSON pointer of a nested or renamed field (`/a/b`); `None`: the top-level field of
    /// the column's name.
    pub origin: Option<String>,
}

impl<'a> Column<'a> {
    fn json(
        name: Cow<'a, str>,
        raw: &'a str,
        nested: bool,
        parents: &[String],
        key: &str,
    ) -> Column<'a> {
        let mut value = String::with_capacity(raw.len() + 2);
        match sdk_json::dump(raw) {
            Some(text) => singer::json::push_str(&mut value, &text),
            // Not reachable on what the receiver stored; the text as stored, never lost.
            None => singer::json::push_str(&mut value, raw),
        }
        Column {
            name,
            value: Cow::Owned(value),
            origin: nested.then(|| origin(parents, key)),
        }
    }

    /// Where the value comes from in the payload, for messages.
    pub fn pointer(&self) -> String {
        self.origin
            .clone()
            .unwrap_or_else(|| show_pointer(&[self.name.to_string()]))
    }
}

fn origin(parents: &[String], key: &str) -> String {
    let mut path = parents.to_vec();
    path.push(key.to_owned());
    show_pointer(&path)
}

/// The SDK's `flatten_key`: the keys joined by `__`; while the name is `max_key_length`
/// characters or longer, each key in turn (outermost first) is reduced to the capitals of its
/// `inflection.camelize`d form, lower-cased, or, when that leaves one character or none, to
/// its first three characters, lower-cased.
pub fn flatten_key(key: &str, parents: &[&str], max_key_length: usize) -> String {
    let mut keys: Vec<String> = parents.iter().map(|p| (*p).to_owned()).collect();
    keys.push(key.to_owned());
    let length = |keys: &[String]| {
        keys.iter().map(|k| k.chars().count()).sum::<usize>()
            + SEPARATOR.len() * keys.len().saturating_sub(1)
    };
    let mut i = 0;
    while i < keys.len() && length(&keys) >= max_key_length {
        let reduced: String = camelize(&keys[i])
            .chars()
            .filter(|c| !c.is_ascii_lowercase())
            .collect();
        keys[i] = if reduced.chars().count() > 1 {
            reduced.to_lowercase()
        } else {
            keys[i].chars().take(3).collect::<String>().to_lowercase()
        };
        i += 1;
    }
    keys.join(SEPARATOR)
}

/// `inflection.camelize(s)`: `re.sub(r"(?:^|_)(.)", upper)`, where `.` is any character but a
/// newline: the first character and each one after a `_` upper-cased, those `_` dropped.
fn camelize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    if let Some(c) = chars.next() {
        if c == '\n' {
            out.push(c);
        } else {
            out.extend(c.to_uppercase());
        }
    }
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(&next) if c == '_' && next != '\n' => {
                chars.next();
                out.extend(next.to_uppercase());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Which payload field each column of a stream holds: two fields sharing a column would mix
/// their values in it, so the second is refused (the SDK fails the same way).
#[derive(Debug, Default)]
pub struct Columns {
    origins: FieldMap<Held>,
}

/// What a column holds.
#[derive(Debug)]
enum Held {
    /// A field the tap writes (`_sdc_sequence`…).
    Tap,
    /// The top-level payload field of the column's name.
    Top,
    /// The payload field at this pointer.
    Path(String),
}

impl Columns {
    /// Columns the tap itself writes: no payload field may become one.
    pub fn new<'n>(tap_fields: impl IntoIterator<Item = &'n str>) -> Columns {
        let mut c = Columns::default();
        for name in tap_fields {
            c.origins.insert(name.to_owned(), Held::Tap);
        }
        c
    }

    /// Notes the record's columns; `Err` names the column and both fields that would share it.
    pub fn check(&mut self, columns: &[Column<'_>]) -> Result<(), String> {
        for c in columns {
            let held = match (self.origins.get(c.name.as_ref()), &c.origin) {
                (Some(Held::Top), None) => continue,
                (Some(Held::Path(p)), Some(q)) if p == q => continue,
                (None, origin) => {
                    let held = origin.clone().map_or(Held::Top, Held::Path);
                    self.origins.insert(c.name.to_string(), held);
                    continue;
                }
                (Some(Held::Tap), _) => "the tap's own field".to_owned(),
                (Some(Held::Top), _) => {
                    format!("the field at {}", show_pointer(&[c.name.to_string()]))
                }
                (Some(Held::Path(p)), _) => format!("the field at {p}"),
            };
            return Err(format!(
                "flattening makes column {:?} of the field at {}, but that column already \
                 holds {held}; two fields cannot share a column (the Singer SDK refuses it too: \
                 \"Duplicate column name produced in schema\"): lower flattening_max_depth or \
                 turn flattening off for this source",
                c.name,
                c.pointer()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(body: &str, depth: usize, max_key_length: usize) -> Vec<(String, String)> {
        let f = Flattening {
            max_depth: depth,
            max_key_length,
        };
        let fields = top_level(body).unwrap();
        let mut out = Vec::new();
        f.flatten(&fields, |k| k == "_sdc_sequence", &mut out);
        out.into_iter()
            .map(|c| (c.name.into_owned(), c.value.into_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn objects_become_columns_to_the_depth_and_the_rest_json_text() {
        let body = r#"{"id":1,"_sdc_sequence":9,"a":{"b":{"c":{"d":1}},"n":null,"l":[1, {"x":2}]},"e":{},"t":[]}"#;
        assert_eq!(
            flat(body, 1, 255),
            pairs(&[
                ("id", "1"),
                ("a__b", r#""{\"c\":{\"d\":1}}""#),
                ("a__n", "null"),
                ("a__l", r#""[1,{\"x\":2}]""#),
                ("t", r#""[]""#),
            ])
        );
        assert_eq!(
            flat(body, 3, 255),
            pairs(&[
                ("id", "1"),
                ("a__b__c__d", "1"),
                ("a__n", "null"),
                ("a__l", r#""[1,{\"x\":2}]""#),
                ("t", r#""[]""#),
            ])
        );
    }

    #[test]
    fn long_names_are_reduced_as_the_sdk_reduces_them() {
        // From the SDK's tests (`test_flattening.py`): a key path of 255 characters and more.
        let parent = "a".repeat(130);
        let child = format!("{}_{}", "b".repeat(60), "c".repeat(70));
        let got = flatten_key(&child, &[&parent], 255);
        // The parent has no capital but its first: reduced to its first three characters.
        assert_eq!(got, format!("aaa__{child}"));
        assert_eq!(flatten_key("foo", &["bar", "baz"], 255), "bar__baz__foo");
        assert_eq!(
            flatten_key("Very_Long_Field_Name", &["Another_Parent"], 10),
            "ap__vlfn"
        );
        assert_eq!(camelize("a__b"), "A_b");
        assert_eq!(camelize("_ab"), "_ab");
        assert_eq!(camelize("ß_ßx"), "SSSSx");
        assert_eq!(camelize("a_\nb"), "A_\nb");
        // A top-level name that long is reduced too.
        let long = "x".repeat(300);
        assert_eq!(flat(&format!(r#"{{"{long}":1}}"#), 1, 255)[0].0, "xxx");
    }

    #[test]
    fn two_fields_sharing_a_column_are_refused() {
        let f = Flattening {
            max_depth: 2,
            max_key_length: 255,
        };
        let mut columns = Columns::new(["_sdc_sequence", "__sdc_primary_key"]);
        let mut out = Vec::new();
        let ok = top_level(r#"{"a":{"b":1},"c":2}"#).unwrap();
        f.flatten(&ok, |_| false, &mut out);
        columns.check(&out).unwrap();
        columns.check(&out).unwrap();
        let later = top_level(r#"{"a__b":3}"#).unwrap();
        f.flatten(&later, |_| false, &mut out);
        let e = columns.check(&out).unwrap_err();
        assert!(e.contains("\"a__b\"") && e.contains("/a/b"), "{e}");
        let tap = top_level(r#"{"":{"sdc_primary_key":3}}"#).unwrap();
        f.flatten(&tap, |_| false, &mut out);
        let e = columns.check(&out).unwrap_err();
        assert!(e.contains("the tap's own field"), "{e}");
    }

    #[test]
    fn the_sdk_refuses_enabling_without_a_depth_and_depth_zero_is_off() {
        let e = Flattening::build(true, None, None, false).unwrap_err();
        assert_eq!(
            e.1,
            "flattening_max_depth is required when flattening is enabled"
        );
        assert_eq!(Flattening::build(true, Some(0), None, false), Ok(None));
        assert_eq!(Flattening::build(false, Some(3), None, true), Ok(None));
        assert!(Flattening::build(true, Some(1), None, true).is_err());
        assert_eq!(
            Flattening::build(true, Some(2), None, false),
            Ok(Some(Flattening {
                max_depth: 2,
                max_key_length: 255
            }))
        );
    }
}
