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
use crate::payload::{field_hash, parse_pointer, show_pointer, top_level, Field};

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
    /// Most columns one record may flatten into (`max_fields_per_message`): the receiver
    /// bounds only the top level, and a nested object of a million names must not become a
    /// million columns.
    pub max_columns: usize,
}

/// Why a record cannot be flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Two fields would share a column (the message names them).
    Shared(String),
    /// More columns than `max_columns`.
    TooWide(usize),
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
        max_columns: usize,
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
            max_columns,
        }))
    }

    /// The record's payload `fields` flattened, in order, each as its column name and value's
    /// JSON text (raw as stored for scalars); top-level fields `skip` names are left out (the
    /// tap's own names). With `columns`, each column is checked against the fields the stream's
    /// columns already hold. `Err`: two fields would share a column, or the record has more
    /// than `max_columns` (the walk stops there); `out` is then incomplete.
    pub fn flatten<'a>(
        &self,
        fields: &'a [Field<'a>],
        skip: impl Fn(&str) -> bool,
        mut columns: Option<&mut Columns>,
        out: &mut Vec<Column<'a>>,
    ) -> Result<(), Refusal> {
        out.clear();
        if let Some(c) = columns.as_deref_mut() {
            c.fresh.clear();
        }
        let flat = self.walk(fields, skip, columns.as_deref_mut(), out);
        if let (Err(_), Some(c)) = (&flat, columns) {
            // A refused record leaves no column behind it (it goes to the rejected stream).
            for name in c.fresh.drain(..) {
                c.origins.remove(&name);
            }
        }
        flat
    }

    fn walk<'a>(
        &self,
        fields: &'a [Field<'a>],
        skip: impl Fn(&str) -> bool,
        mut columns: Option<&mut Columns>,
        out: &mut Vec<Column<'a>>,
    ) -> Result<(), Refusal> {
        let mut walk = Walk::default();
        for f in fields.iter().filter(|f| !skip(&f.key)) {
            let plain = !matches!(f.value.as_bytes().first(), Some(b'{' | b'['))
                && f.key.chars().count() < self.max_key_length;
            if plain {
                // The common case: the field is its own column, name and value as stored.
                if let Some(c) = columns.as_deref_mut() {
                    c.note(&f.key, None, || show_pointer(&[f.key.to_string()]))
                        .map_err(Refusal::Shared)?;
                }
                self.room(out)?;
                out.push(Column {
                    name: Cow::Borrowed(f.key.as_ref()),
                    value: Cow::Borrowed(f.value),
                });
            } else {
                self.node(&mut walk, &f.key, f.value, 0, columns.as_deref_mut(), out)?;
            }
        }
        Ok(())
    }

    fn node<'a>(
        &self,
        walk: &mut Walk,
        key: &str,
        raw: &'a str,
        level: usize,
        mut columns: Option<&mut Columns>,
        out: &mut Vec<Column<'a>>,
    ) -> Result<(), Refusal> {
        self.room(out)?;
        if raw.as_bytes().first() == Some(&b'{') && level < self.max_depth {
            // A name the receiver's parse allows but no Rust string holds (a lone surrogate)
            // keeps the object whole, as JSON text, below.
            if let Ok(children) = top_level(raw) {
                walk.enter(key);
                for c in &children {
                    self.node(
                        walk,
                        &c.key,
                        c.value,
                        level + 1,
                        columns.as_deref_mut(),
                        out,
                    )?;
                }
                walk.leave();
                return Ok(());
            }
        }
        let name = walk.name(key, self.max_key_length);
        if let Some(c) = columns {
            // A top-level field keeping its name is told apart by its name alone.
            let path = (!walk.keys.is_empty() || name != key).then(|| walk.path_hash(key));
            c.note(&name, path, || walk.pointer(key))
                .map_err(Refusal::Shared)?;
        }
        let value = match raw.as_bytes().first() {
            Some(b'{' | b'[') => {
                let mut value = String::with_capacity(raw.len() + 2);
                // `None` is not reachable on what the receiver stored: the text as stored.
                singer::json::push_str(&mut value, sdk_json::dump(raw).as_deref().unwrap_or(raw));
                Cow::Owned(value)
            }
            _ => Cow::Borrowed(raw),
        };
        out.push(Column {
            name: Cow::Owned(name),
            value,
        });
        Ok(())
    }

    /// `Err` once the record has its most columns.
    fn room(&self, out: &[Column<'_>]) -> Result<(), Refusal> {
        if out.len() >= self.max_columns {
            return Err(Refusal::TooWide(self.max_columns));
        }
        Ok(())
    }
}

/// Where a flattening walk is: the keys of the objects it is in, their names joined (unreduced,
/// for the common case of a short name), and the hash of their path.
#[derive(Default)]
struct Walk {
    keys: Vec<String>,
    /// Per key: its length in characters, and its reduced form with that form's length once a
    /// long name needed it (the same for every column under it).
    sizes: Vec<(usize, Option<(String, usize)>)>,
    /// `keys` joined by [`SEPARATOR`], and its length in characters.
    prefix: String,
    prefix_chars: usize,
    /// Per level: the prefix's length in bytes and characters, and the path's hash, before it.
    stack: Vec<(usize, usize, u64)>,
    hash: u64,
}

impl Walk {
    fn enter(&mut self, key: &str) {
        self.stack
            .push((self.prefix.len(), self.prefix_chars, self.hash));
        if !self.keys.is_empty() {
            self.prefix.push_str(SEPARATOR);
            self.prefix_chars += SEPARATOR.len();
        }
        let chars = key.chars().count();
        self.prefix.push_str(key);
        self.prefix_chars += chars;
        self.sizes.push((chars, None));
        self.hash = self.path_hash(key);
        self.keys.push(key.to_owned());
    }

    fn leave(&mut self) {
        if let Some((len, chars, hash)) = self.stack.pop() {
            self.prefix.truncate(len);
            self.prefix_chars = chars;
            self.hash = hash;
            self.keys.pop();
            self.sizes.pop();
        }
    }

    /// The column name of `key` here: [`flatten_key`]'s, from the running prefix when it is
    /// short and from the keys' cached reduced forms when it is not.
    fn name(&mut self, key: &str, max_key_length: usize) -> String {
        let key_chars = key.chars().count();
        if self.keys.is_empty() {
            if key_chars < max_key_length {
                return key.to_owned();
            }
        } else if self.prefix_chars + SEPARATOR.len() + key_chars < max_key_length {
            let mut name = String::with_capacity(self.prefix.len() + SEPARATOR.len() + key.len());
            name.push_str(&self.prefix);
            name.push_str(SEPARATOR);
            name.push_str(key);
            return name;
        }
        // As flatten_key: each key in turn, outermost first, while the name is too long.
        let mut length = self.prefix_chars
            + key_chars
            + if self.keys.is_empty() {
                0
            } else {
                SEPARATOR.len()
            };
        let mut parts: Vec<&str> = Vec::with_capacity(self.keys.len() + 1);
        for (k, (chars, reduced)) in self.keys.iter().zip(self.sizes.iter_mut()) {
            if length >= max_key_length {
                let (r, r_chars) = reduced.get_or_insert_with(|| {
                    let r = reduce(k);
                    let n = r.chars().count();
                    (r, n)
                });
                length = length - *chars + *r_chars;
                parts.push(r);
            } else {
                parts.push(k);
            }
        }
        let last = if length >= max_key_length {
            Cow::Owned(reduce(key))
        } else {
            Cow::Borrowed(key)
        };
        parts.push(&last);
        parts.join(SEPARATOR)
    }

    /// The hash of the path to `key` here.
    fn path_hash(&self, key: &str) -> u64 {
        path_step(self.hash, key)
    }

    fn pointer(&self, key: &str) -> String {
        let mut path = self.keys.clone();
        path.push(key.to_owned());
        show_pointer(&path)
    }
}

/// A path's hash extended by one key (each key hashed apart, so `a__b` and `a`/`b` differ).
fn path_step(hash: u64, key: &str) -> u64 {
    (hash.rotate_left(17) ^ field_hash(key)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// One column of a flattened record.
#[derive(Debug, Clone, PartialEq)]
pub struct Column<'a> {
    pub name: Cow<'a, str>,
    /// The value's JSON text: raw as stored, or a JSON string holding the SDK's JSON text.
    pub value: Cow<'a, str>,
}

/// The SDK's `flatten_key`: the keys joined by `__`; while the name is `max_key_length`
/// characters or longer, each key in turn (outermost first) is reduced to the capitals of its
/// `inflection.camelize`d form, lower-cased, or, when that leaves one character or none, to
/// its first three characters, lower-cased.
pub fn flatten_key(key: &str, parents: &[&str], max_key_length: usize) -> String {
    let mut keys: Vec<Cow<'_, str>> = parents.iter().map(|p| Cow::Borrowed(*p)).collect();
    keys.push(Cow::Borrowed(key));
    // The name's length in characters, kept as keys are reduced (a deep path of long keys
    // must not cost its length squared).
    let mut length = keys.iter().map(|k| k.chars().count()).sum::<usize>()
        + SEPARATOR.len() * keys.len().saturating_sub(1);
    for k in keys.iter_mut() {
        if length < max_key_length {
            break;
        }
        let reduced = reduce(k);
        length = length - k.chars().count() + reduced.chars().count();
        *k = Cow::Owned(reduced);
    }
    keys.join(SEPARATOR)
}

/// One key as `flatten_key` reduces it: the capitals of its camelized form, lower-cased, or
/// its first three characters, lower-cased, when that leaves one character or none.
fn reduce(key: &str) -> String {
    let reduced: String = camelize(key)
        .chars()
        .filter(|c| !c.is_ascii_lowercase())
        .collect();
    if reduced.chars().count() > 1 {
        reduced.to_lowercase()
    } else {
        key.chars().take(3).collect::<String>().to_lowercase()
    }
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
    /// Columns the record being flattened added: taken back if it is refused.
    fresh: Vec<String>,
}

/// What a column holds.
#[derive(Debug)]
enum Held {
    /// A field the tap writes (`_sdc_sequence`…).
    Tap,
    /// The top-level payload field of the column's name.
    Top,
    /// The payload field whose path has this hash, at this pointer.
    Path(u64, String),
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

    /// Adds columns earlier runs noted (`super::origins`): a column and the pointer of the
    /// field it holds (`None`: the top-level field of its name).
    pub fn hold(&mut self, held: impl IntoIterator<Item = (String, Option<String>)>) {
        for (name, origin) in held {
            let h = match origin {
                None => Held::Top,
                Some(p) => {
                    let hash = parse_pointer(&p)
                        .unwrap_or_default()
                        .iter()
                        .fold(0, |h, k| path_step(h, k));
                    Held::Path(hash, p)
                }
            };
            self.origins.entry(name).or_insert(h);
        }
    }

    /// The columns the last record flattened added, to keep for later runs.
    pub fn fresh(&self) -> Vec<(String, Option<String>)> {
        self.fresh
            .iter()
            .filter_map(|name| match self.origins.get(name)? {
                Held::Top => Some((name.clone(), None)),
                Held::Path(_, p) => Some((name.clone(), Some(p.clone()))),
                Held::Tap => None,
            })
            .collect()
    }

    /// Notes that the top-level field `name` of an unflattened record is its column (a record
    /// of its own: [`Columns::fresh`] then lists it if new). `Err`: another field holds it.
    pub fn note_top(&mut self, name: &str) -> Result<(), String> {
        self.fresh.clear();
        self.note(name, None, || show_pointer(&[name.to_owned()]))
    }

    /// Notes that column `name` holds the field at `path` (its hash; `None`: the top-level
    /// field of that name; `pointer` names it in messages). `Err`: another field holds it.
    fn note(
        &mut self,
        name: &str,
        path: Option<u64>,
        pointer: impl FnOnce() -> String,
    ) -> Result<(), String> {
        let held = match (self.origins.get(name), path) {
            (Some(Held::Top), None) => return Ok(()),
            (Some(Held::Path(h, _)), Some(p)) if *h == p => return Ok(()),
            (None, None) => {
                self.origins.insert(name.to_owned(), Held::Top);
                self.fresh.push(name.to_owned());
                return Ok(());
            }
            (None, Some(p)) => {
                self.origins
                    .insert(name.to_owned(), Held::Path(p, pointer()));
                self.fresh.push(name.to_owned());
                return Ok(());
            }
            (Some(Held::Tap), _) => "the tap's own field".to_owned(),
            (Some(Held::Top), _) => format!("the field at {}", show_pointer(&[name.to_owned()])),
            (Some(Held::Path(_, p)), _) => format!("the field at {p}"),
        };
        Err(format!(
            "flattening makes column {name:?} of the field at {}, but that column already \
             holds {held}; two fields cannot share a column (the Singer SDK refuses it too: \
             \"Duplicate column name produced in schema\"): lower flattening_max_depth or \
             turn flattening off for this source",
            pointer()
        ))
    }
}

#[cfg(test)]
mod tests;
