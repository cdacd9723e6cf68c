//! Column types: the lattice a record value is placed in, declared types read from a Singer
//! SCHEMA and the lossless-coercion rules (column names: `names.rs`).
//!
//! This is the first stage after parsing: every top-level value of a record is classified into a
//! [`Value`], and each column has one [`ColType`] that never changes once written to a table. A
//! value that does not fit its column losslessly goes to a sibling column named after its own
//! kind (`price__string`), see ARCHITECTURE.md "Type conflicts in target-warehouse".

use std::borrow::Cow;

use serde_json::Value as Json;

use crate::{decimal, jsontext, timefmt};

/// The physical type of a column. Once a column is in a table its type is fixed forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColType {
    Int64,
    Float64,
    Boolean,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    Date,
    Utf8,
    /// Utf8 holding valid JSON text (objects, arrays, or any value routed here losslessly).
    Json,
    /// Decimal128(precision, scale), exact: declared decimals (`multipleOf: 0.01`,
    /// `format: singer.decimal`), and integers beyond i64 that still fit 38 digits
    /// ([`BIGINT`], Decimal128(38, 0)).
    Decimal {
        precision: u8,
        scale: u8,
    },
}

/// The column of integers beyond i64: Decimal128(38, 0).
pub const BIGINT: ColType = ColType::Decimal {
    precision: 38,
    scale: 0,
};

impl ColType {
    /// The suffix of a sibling column of this type, and the tag stored in field metadata.
    pub fn tag(self) -> &'static str {
        match self {
            ColType::Int64 => "int",
            ColType::Float64 => "float",
            ColType::Boolean => "boolean",
            ColType::Timestamp => "timestamp",
            ColType::Date => "date",
            ColType::Utf8 => "string",
            ColType::Json => "json",
            ColType::Decimal { .. } => "decimal",
        }
    }

    /// The type a tag names; `decimal` names [`BIGINT`], whose precision and scale the
    /// registry takes from the field's own data type.
    pub fn from_tag(tag: &str) -> Option<ColType> {
        Some(match tag {
            "int" => ColType::Int64,
            "float" => ColType::Float64,
            "boolean" => ColType::Boolean,
            "timestamp" => ColType::Timestamp,
            "date" => ColType::Date,
            "string" => ColType::Utf8,
            "json" => ColType::Json,
            "decimal" => BIGINT,
            _ => return None,
        })
    }
}

/// Precision of the big-integer decimal column.
pub const BIGINT_DIGITS: usize = 38;

/// One top-level value of a record, borrowed from the input line where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Integer text beyond i64 (sign and digits only).
    BigInt(&'a str),
    /// A finite float and its source text.
    Float(f64, &'a str),
    Str(Cow<'a, str>),
    /// Object or array (or a non-finite number), as raw JSON text.
    Json(&'a str),
    /// A timestamp produced by the target itself (`_sdc_received_at`).
    Micros(i64),
}

impl Value<'_> {
    /// Classifies raw JSON text without building a DOM: nested values stay text (BRIEF §7).
    pub fn from_raw(raw: &str) -> Value<'_> {
        let Some(&first) = raw.as_bytes().first() else {
            return Value::Null;
        };
        match first {
            b'n' => Value::Null,
            b't' => Value::Bool(true),
            b'f' => Value::Bool(false),
            b'{' | b'[' => Value::Json(raw),
            b'"' => {
                if raw.len() >= 2 && !raw.as_bytes().contains(&b'\\') {
                    Value::Str(Cow::Borrowed(&raw[1..raw.len() - 1]))
                } else {
                    match serde_json::from_str::<String>(raw) {
                        Ok(s) => Value::Str(Cow::Owned(s)),
                        // Valid JSON that no UTF-8 string can hold: a lone surrogate escape
                        // (`"\udfff"`, which JavaScript's JSON.stringify writes for a string
                        // cut mid-emoji). Kept as its JSON text, losslessly, like any value
                        // that does not fit a string column.
                        Err(_) => Value::Json(raw),
                    }
                }
            }
            _ => classify_number(raw),
        }
    }

    /// The type a value would have in a column created for it alone (the inference lattice's
    /// starting point), or `None` for null, which never fixes a type.
    pub fn natural_type(&self) -> Option<ColType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ColType::Boolean,
            Value::Int(_) => ColType::Int64,
            Value::BigInt(t) if digits(t) <= BIGINT_DIGITS => BIGINT,
            Value::BigInt(_) | Value::Json(_) => ColType::Json,
            Value::Float(..) => ColType::Float64,
            Value::Str(_) => ColType::Utf8,
            Value::Micros(_) => ColType::Timestamp,
        })
    }
}

fn digits(int_text: &str) -> usize {
    int_text.trim_start_matches('-').len()
}

fn classify_number(raw: &str) -> Value<'_> {
    if raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        match raw.parse::<f64>() {
            // 1e-400 parses as 0.0: a number that is not zero has no f64 either.
            Ok(f) if f == 0.0 && !mantissa_is_zero(raw) => Value::Json(raw),
            Ok(f) if f.is_finite() => Value::Float(f, raw),
            // 1e999 has no f64; its text is kept as JSON, losslessly.
            _ => Value::Json(raw),
        }
    } else {
        match raw.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(raw),
        }
    }
}

/// A value converted for a column of a given type: what the builders append.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Micros(i64),
    Days(i32),
    Text(Cow<'a, str>),
    Decimal(i128),
}

/// Converts `v` for a column of type `ty` when that loses nothing; `None` means the value
/// belongs in a sibling column of its own [`Value::natural_type`].
pub fn coerce<'a>(ty: ColType, v: &Value<'a>) -> Option<Cell<'a>> {
    match (ty, v) {
        (_, Value::Null) => None,
        (ColType::Int64, Value::Int(i)) => Some(Cell::Int(*i)),
        (ColType::Int64, Value::Float(_, text)) => exact_int(text).map(Cell::Int),
        (ColType::Float64, Value::Float(f, _)) => Some(Cell::Float(*f)),
        (ColType::Float64, Value::Int(i)) => int_to_float(*i).map(Cell::Float),
        (ColType::Decimal { precision, scale }, Value::Int(_) | Value::BigInt(_)) => {
            decimal::parse(number_text(v)?.as_ref(), precision, scale).map(Cell::Decimal)
        }
        // Exactly, from the number's text (or a `singer.decimal` string), never via the f64.
        (ColType::Decimal { precision, scale }, Value::Float(_, t)) => {
            decimal::parse(t, precision, scale).map(Cell::Decimal)
        }
        (ColType::Decimal { precision, scale }, Value::Str(s)) => {
            decimal::parse(s, precision, scale).map(Cell::Decimal)
        }
        (ColType::Boolean, Value::Bool(b)) => Some(Cell::Bool(*b)),
        (ColType::Timestamp, Value::Micros(m)) => Some(Cell::Micros(*m)),
        (ColType::Timestamp, Value::Str(s)) => timefmt::parse_timestamp(s).map(Cell::Micros),
        (ColType::Date, Value::Str(s)) => timefmt::parse_date(s).map(Cell::Days),
        (ColType::Utf8, Value::Str(s)) => Some(Cell::Text(s.clone())),
        (ColType::Json, v) => Some(Cell::Text(to_json_text(v))),
        _ => None,
    }
}

/// The text of an integer value, for the exact decimal parse.
fn number_text<'a>(v: &Value<'a>) -> Option<Cow<'a, str>> {
    match v {
        Value::Int(i) => Some(Cow::Owned(i.to_string())),
        Value::BigInt(t) => Some(Cow::Borrowed(t)),
        _ => None,
    }
}

/// The sibling column type for a value its column `ty` could not take: the value's own type
/// (decision 0005), except a number refused by a decimal column, which keeps its exact text
/// in the `__json` sibling (a float sibling would round the digits the decimal was declared
/// for). `None` for null.
pub fn sibling_type(ty: ColType, v: &Value<'_>) -> Option<ColType> {
    match (ty, v) {
        (ColType::Decimal { .. }, Value::Float(..)) => Some(ColType::Json),
        _ => v.natural_type(),
    }
}

/// JSON text of any value: a Json column accepts everything, because JSON keeps the type.
fn to_json_text<'a>(v: &Value<'a>) -> Cow<'a, str> {
    match v {
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::BigInt(t) | Value::Float(_, t) => Cow::Borrowed(t),
        // Characters, not `\u00fc` escapes: what a reader's LIKE looks for.
        Value::Json(t) => jsontext::unescape_needless(t),
        Value::Str(s) => Cow::Owned(Json::String(s.to_string()).to_string()),
        Value::Micros(m) => Cow::Owned(format!("\"{}\"", timefmt::format_micros(*m))),
    }
}

/// The integer a float literal's decimal text denotes exactly, if it is one and fits i64:
/// `2.0` and `1.5e1` are integers, `2.5` is not; `9007199254740993.0` is 9007199254740993
/// (its f64, 9007199254740992.0, would lose the last digit). `-0.0` stays a float.
fn exact_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The decimal point sits after `point` of the mantissa's digits.
    let point = i64::try_from(int.len()).ok()?.checked_add(exp)?;
    const LIMIT: i128 = 1 << 63; // |i64::MIN|
    let mut value: i128 = 0;
    let mut digits: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        let d = i128::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        if digits < point {
            value = value * 10 + d;
            if value > LIMIT {
                return None;
            }
        } else if d != 0 {
            return None; // a fractional digit
        }
        digits += 1;
    }
    // Zeros the exponent adds after the digits.
    let mut zeros = point - digits;
    while zeros > 0 && value != 0 {
        value *= 10;
        if value > LIMIT {
            return None;
        }
        zeros -= 1;
    }
    if negative && value == 0 {
        return None; // -0.0 is not the integer 0
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// Whether a number's digits before its exponent are all zeros (`0.0e5`, not `1e-400`).
fn mantissa_is_zero(raw: &str) -> bool {
    raw.split(['e', 'E'])
        .next()
        .is_none_or(|m| m.bytes().all(|b| !(b'1'..=b'9').contains(&b)))
}

/// An integer goes into a float column only if the float holds it exactly.
fn int_to_float(i: i64) -> Option<f64> {
    const EXACT: i64 = 1 << 53;
    (-EXACT..=EXACT).contains(&i).then_some(i as f64)
}

/// The inference lattice's join: the type of a new column that must hold both kinds without
/// loss, or `None` when they conflict (the first kind wins, the other goes to a sibling).
pub fn merge(a: ColType, b: ColType) -> Option<ColType> {
    use ColType::*;
    match (a, b) {
        _ if a == b => Some(a),
        (Int64, Float64) | (Float64, Int64) => Some(Float64),
        (Int64, BIGINT) | (BIGINT, Int64) => Some(BIGINT),
        _ => None,
    }
}

/// The column type a property's JSON Schema declares, when it is specific enough; `None`
/// leaves the column to inference from the values (loose, silent or contradictory schemas).
pub fn declared_type(schema: &Json) -> Option<ColType> {
    let obj = schema.as_object()?;
    let mut found: Option<ColType> = None;
    let mut join = |t: ColType| -> Option<()> {
        found = Some(match found {
            None => t,
            Some(prev) => merge(prev, t)?,
        });
        Some(())
    };
    let format = obj.get("format").and_then(Json::as_str);
    let decimal = decimal::declared(obj);
    match obj.get("type") {
        Some(Json::String(t)) => join(json_type(t, format, decimal)?)?,
        Some(Json::Array(ts)) => {
            for t in ts.iter().filter_map(Json::as_str).filter(|t| *t != "null") {
                join(json_type(t, format, decimal)?)?;
            }
        }
        Some(_) => return None,
        None => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Json::Array(alts)) = obj.get(key) {
            for alt in alts {
                if is_null_schema(alt) {
                    continue;
                }
                join(declared_type(alt)?)?;
            }
        }
    }
    found
}

fn is_null_schema(s: &Json) -> bool {
    s.get("type").and_then(Json::as_str) == Some("null")
}

/// `decimal`: the precision and scale the schema declares (see `decimal::declared`), for a
/// `number` (`multipleOf: 0.01`; `multipleOf: 1` is how the tap declares integers beyond 64
/// bits, so that SQL targets make NUMERIC) or a decimal-formatted `string` (the SDK's
/// `singer.decimal`).
fn json_type(t: &str, format: Option<&str>, decimal: Option<(u8, u8)>) -> Option<ColType> {
    let exact = decimal.map(|(precision, scale)| ColType::Decimal { precision, scale });
    Some(match t {
        "integer" => ColType::Int64,
        "number" => exact.unwrap_or(ColType::Float64),
        "boolean" => ColType::Boolean,
        "string" if decimal::is_format(format) => exact?,
        "string" => match format {
            Some("date-time") => ColType::Timestamp,
            Some("date") => ColType::Date,
            _ => ColType::Utf8,
        },
        "object" | "array" => ColType::Json,
        _ => return None,
    })
}

/// Key columns keep their exact text: a key declared `date-time` is still compared as written.
pub fn key_type(declared: Option<ColType>) -> Option<ColType> {
    match declared {
        Some(ColType::Timestamp | ColType::Date) => Some(ColType::Utf8),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(raw: &str) -> Value<'_> {
        Value::from_raw(raw)
    }

    #[test]
    fn classifies_raw_values_without_a_dom() {
        assert_eq!(v("null"), Value::Null);
        assert_eq!(v("12"), Value::Int(12));
        assert_eq!(v("-0"), Value::Int(0));
        assert_eq!(v("1.5"), Value::Float(1.5, "1.5"));
        assert_eq!(v("1e3"), Value::Float(1000.0, "1e3"));
        assert_eq!(v("1e999"), Value::Json("1e999"));
        assert_eq!(
            v("123456789012345678901234567890"),
            Value::BigInt("123456789012345678901234567890")
        );
        assert_eq!(v(r#""a\"b""#), Value::Str(Cow::Owned("a\"b".into())));
        assert_eq!(v(r#""plain""#), Value::Str(Cow::Borrowed("plain")));
        assert_eq!(v(r#""cut \ud83d""#), Value::Json(r#""cut \ud83d""#));
        assert_eq!(
            coerce(ColType::Utf8, &v(r#""cut \ud83d""#)),
            None,
            "a lone surrogate goes to the JSON sibling"
        );
        assert_eq!(
            v(r#""pair \ud83d\ude00""#),
            Value::Str(Cow::Owned("pair \u{1f600}".into()))
        );
        assert_eq!(v(r#"{"a":[1,2]}"#), Value::Json(r#"{"a":[1,2]}"#));
    }

    #[test]
    fn coercion_is_lossless_only() {
        assert_eq!(coerce(ColType::Int64, &v("2.0")), Some(Cell::Int(2)));
        assert_eq!(coerce(ColType::Int64, &v("2.5")), None);
        assert_eq!(coerce(ColType::Int64, &v("-0.0")), None);
        // Exactly, from the decimal text, not through the f64 (which would round).
        assert_eq!(
            coerce(ColType::Int64, &v("9007199254740993.0")),
            Some(Cell::Int(9007199254740993))
        );
        assert_eq!(
            coerce(ColType::Int64, &v("9223372036854775807.0")),
            Some(Cell::Int(i64::MAX))
        );
        assert_eq!(
            coerce(ColType::Int64, &v("-9223372036854775808.0")),
            Some(Cell::Int(i64::MIN))
        );
        assert_eq!(coerce(ColType::Int64, &v("9223372036854775808.0")), None);
        assert_eq!(coerce(ColType::Int64, &v("1.5e1")), Some(Cell::Int(15)));
        assert_eq!(coerce(ColType::Int64, &v("-2.50E1")), Some(Cell::Int(-25)));
        assert_eq!(coerce(ColType::Int64, &v("1e3")), Some(Cell::Int(1000)));
        assert_eq!(coerce(ColType::Int64, &v("0.0e999999")), Some(Cell::Int(0)));
        assert_eq!(coerce(ColType::Int64, &v("15e-1")), None);
        assert_eq!(coerce(ColType::Int64, &v("1e19")), None);
        assert_eq!(coerce(ColType::Int64, &v("1.0000000000000000000001")), None);
        // A number that underflows f64 is not 0.0: its text is kept as JSON.
        assert_eq!(v("1e-400"), Value::Json("1e-400"));
        assert_eq!(v("-0.000e-400"), Value::Float(-0.0, "-0.000e-400"));
        assert_eq!(coerce(ColType::Float64, &v("1e-400")), None);
        assert_eq!(v("1e-400").natural_type(), Some(ColType::Json));
        assert_eq!(
            coerce(ColType::Float64, &v("9007199254740992")),
            Some(Cell::Float(9007199254740992.0))
        );
        assert_eq!(coerce(ColType::Float64, &v("9007199254740993")), None);
        assert_eq!(coerce(ColType::Int64, &v(r#""12""#)), None);
        assert_eq!(coerce(ColType::Utf8, &v("12")), None);
        assert_eq!(coerce(ColType::Boolean, &v(r#""true""#)), None);
        assert_eq!(
            coerce(BIGINT, &v("-99999999999999999999999999999999999999")),
            Some(Cell::Decimal(
                -99_999_999_999_999_999_999_999_999_999_999_999_999
            ))
        );
        assert_eq!(
            coerce(BIGINT, &v("999999999999999999999999999999999999999")),
            None
        );
        assert_eq!(
            coerce(ColType::Json, &v(r#""x""#)),
            Some(Cell::Text(Cow::Owned("\"x\"".into())))
        );
        assert_eq!(
            coerce(ColType::Json, &v("[1]")),
            Some(Cell::Text(Cow::Borrowed("[1]")))
        );
        let cents = ColType::Decimal {
            precision: 38,
            scale: 2,
        };
        assert_eq!(coerce(cents, &v("0.1")), Some(Cell::Decimal(10)));
        assert_eq!(coerce(cents, &v("7")), Some(Cell::Decimal(700)));
        assert_eq!(coerce(cents, &v(r#""-12.34""#)), Some(Cell::Decimal(-1234)));
        assert_eq!(coerce(cents, &v("0.123")), None);
        assert_eq!(coerce(cents, &v(r#""a lot""#)), None);
        assert_eq!(sibling_type(cents, &v("0.123")), Some(ColType::Json));
        assert_eq!(sibling_type(cents, &v(r#""a lot""#)), Some(ColType::Utf8));
        assert_eq!(
            sibling_type(ColType::Int64, &v("0.5")),
            Some(ColType::Float64)
        );
        assert_eq!(coerce(ColType::Timestamp, &v(r#""not a date""#)), None);
        assert!(coerce(ColType::Timestamp, &v(r#""2024-01-02T03:04:05Z""#)).is_some());
        assert_eq!(
            coerce(ColType::Utf8, &v(r#""2024-01-02T03:04:05Z""#)),
            Some(Cell::Text(Cow::Borrowed("2024-01-02T03:04:05Z")))
        );
        assert_eq!(coerce(ColType::Int64, &Value::Null), None);
    }

    #[test]
    fn natural_types_and_merge() {
        assert_eq!(v("null").natural_type(), None);
        assert_eq!(
            v("123456789012345678901234567890").natural_type(),
            Some(BIGINT)
        );
        let huge = "1".repeat(40);
        assert_eq!(Value::from_raw(&huge).natural_type(), Some(ColType::Json));
        assert_eq!(
            merge(ColType::Int64, ColType::Float64),
            Some(ColType::Float64)
        );
        assert_eq!(merge(BIGINT, ColType::Int64), Some(BIGINT));
        assert_eq!(merge(ColType::Utf8, ColType::Int64), None);
        assert_eq!(merge(BIGINT, ColType::Float64), None);
    }

    #[test]
    fn declared_types_from_json_schema() {
        assert_eq!(
            declared_type(&json!({"type": ["null", "integer"]})),
            Some(ColType::Int64)
        );
        assert_eq!(
            declared_type(&json!({"type": ["null", "number"], "multipleOf": 1})),
            Some(BIGINT)
        );
        assert_eq!(
            declared_type(&json!({"type": ["integer", "number"]})),
            Some(ColType::Float64)
        );
        assert_eq!(
            declared_type(&json!({"type": "string", "format": "date-time"})),
            Some(ColType::Timestamp)
        );
        assert_eq!(
            declared_type(&json!({"type": ["string", "null"], "format": "date"})),
            Some(ColType::Date)
        );
        assert_eq!(
            declared_type(&json!({"type": "object", "properties": {}})),
            Some(ColType::Json)
        );
        assert_eq!(
            declared_type(&json!({"type": ["null", "boolean", "string"]})),
            None
        );
        assert_eq!(
            declared_type(
                &json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]})
            ),
            Some(ColType::Timestamp)
        );
        assert_eq!(
            declared_type(&json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})),
            None
        );
        let cents = ColType::Decimal {
            precision: 38,
            scale: 2,
        };
        assert_eq!(
            declared_type(&json!({"type": ["number", "null"], "multipleOf": 0.01})),
            Some(cents)
        );
        assert_eq!(
            declared_type(&json!({"type": ["string", "null"], "format": "singer.decimal"})),
            Some(ColType::Decimal {
                precision: 38,
                scale: crate::decimal::DEFAULT_SCALE
            })
        );
        assert_eq!(
            declared_type(&json!({"type": "string", "multipleOf": 0.01})),
            Some(ColType::Utf8),
            "multipleOf says nothing of a string"
        );
        assert_eq!(
            declared_type(&json!({"type": "number"})),
            Some(ColType::Float64)
        );
        assert_eq!(declared_type(&json!({})), None);
        assert_eq!(declared_type(&json!(true)), None);
        assert_eq!(key_type(Some(ColType::Timestamp)), Some(ColType::Utf8));
    }
}
