//! Exact decimals: which JSON Schema declarations make a Decimal128 column (and of which
//! precision and scale), and the exact parse of a number's (or a decimal string's) text into
//! that column's unscaled i128.
//!
//! Used by `columns` (the type lattice): a declared decimal property gets a
//! `ColType::Decimal`; a value whose digits do not fit it goes to a sibling column. Values are
//! never read through an f64: `0.1` is the unscaled 10 at scale 2, not 0.1000000000000000055….

use serde_json::{Map, Value as Json};

/// The largest precision of a Decimal128 column (and of every engine reading ours).
pub const MAX_PRECISION: u8 = 38;

/// The scale of a `singer.decimal` string declared without one. The SDK's taps declare SQL
/// NUMERIC columns as `{"type": "string", "format": "singer.decimal"}` without precision or
/// scale; BigQuery's NUMERIC(38, 9) is the common ground: 29 integer digits and 9 decimals, a
/// value with more goes to the `__string` sibling as sent.
pub const DEFAULT_SCALE: u8 = 9;

/// The string formats that declare a decimal (the SDK emits `singer.decimal`, its SQL targets
/// also read `x-singer.decimal` with `precision`/`scale`).
const FORMATS: [&str; 3] = ["singer.decimal", "x-singer.decimal", "decimal"];

/// Whether a string `format` declares a decimal.
pub fn is_format(format: Option<&str>) -> bool {
    format.is_some_and(|f| FORMATS.contains(&f))
}

/// The `(precision, scale)` a property's schema declares for an exact decimal column, or
/// `None` when it declares none (a plain `number` stays Float64). `multipleOf: 0.01` gives
/// scale 2, `multipleOf: 1` scale 0 (how the tap declares integers beyond 64 bits); a
/// decimal `format` takes `precision`/`scale` when given. Precision is 38 unless given.
/// A declaration no Decimal128 can hold (scale beyond 38, scale above precision) is `None`.
pub fn declared(obj: &Map<String, Json>) -> Option<(u8, u8)> {
    let by_format = is_format(obj.get("format").and_then(Json::as_str));
    let step_scale = match obj.get("multipleOf") {
        Some(Json::Number(n)) => Some(scale_of_step(&n.to_string())?),
        _ => None,
    };
    if !by_format && step_scale.is_none() {
        return None;
    }
    let given = |key: &str| obj.get(key).and_then(Json::as_u64);
    let precision = match given("precision") {
        Some(p) => u8::try_from(p)
            .ok()
            .filter(|p| (1..=MAX_PRECISION).contains(p))?,
        None => MAX_PRECISION,
    };
    let scale = match (given("scale"), step_scale) {
        (Some(s), _) => u8::try_from(s).ok()?,
        (None, Some(s)) => s,
        // SQL's DECIMAL(p) has scale 0; a bare decimal format gets the default.
        (None, None) if given("precision").is_some() => 0,
        (None, None) => DEFAULT_SCALE.min(precision),
    };
    (scale <= precision).then_some((precision, scale))
}

/// The decimals a `multipleOf` step needs: `0.01` → 2, `0.5` → 1, `1` or `5` → 0, `1e-10` →
/// 10 (serde_json writes small steps in exponent form). A step that is not positive or needs
/// more than 38 decimals declares no decimal.
fn scale_of_step(text: &str) -> Option<u8> {
    if text.starts_with('-') || !mantissa_has_nonzero(text) {
        return None;
    }
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let frac = mantissa
        .split_once('.')
        .map_or("", |(_, f)| f)
        .trim_end_matches('0');
    let decimals = i64::try_from(frac.len()).ok()? - exp;
    u8::try_from(decimals.max(0))
        .ok()
        .filter(|s| *s <= MAX_PRECISION)
}

fn mantissa_has_nonzero(text: &str) -> bool {
    text.split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)))
}

/// The unscaled value of a decimal's text at `scale`, if it fits `precision` digits exactly:
/// `12.30` at scale 2 is 1230; `1.234` at scale 2 does not fit (a digit would be lost), nor
/// does `1e40`. Accepts JSON's number grammar (sign, digits, fraction, exponent), which is
/// also what Python's `str(Decimal)` writes for `singer.decimal` strings; anything else
/// (`NaN`, `+1`, spaces) is not a decimal.
pub fn parse(text: &str, precision: u8, scale: u8) -> Option<i128> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e = &body[i + 1..];
            (
                &body[..i],
                e.strip_prefix('+').unwrap_or(e).parse::<i64>().ok()?,
            )
        }
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || (mantissa.contains('.') && frac.is_empty()) {
        return None; // `.5`, `5.`: not JSON numbers
    }
    // The unscaled value's decimal point sits after `point` of the mantissa's digits.
    let point = i64::try_from(int.len())
        .ok()?
        .checked_add(exp)?
        .checked_add(i64::from(scale))?;
    let limit = 10_i128.pow(u32::from(precision));
    let mut value: i128 = 0;
    let mut seen: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        let d = i128::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        if seen < point {
            // Checked: 10^38 - 1 times 10 is beyond i128.
            value = value.checked_mul(10)?.checked_add(d)?;
            if value >= limit {
                return None;
            }
        } else if d != 0 {
            return None; // a digit beyond the scale
        }
        seen += 1;
    }
    // Zeros the exponent and the scale add after the digits.
    let mut zeros = point - seen;
    while zeros > 0 && value != 0 {
        value = value.checked_mul(10)?;
        if value >= limit {
            return None;
        }
        zeros -= 1;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl(schema: Json) -> Option<(u8, u8)> {
        declared(schema.as_object().expect("an object"))
    }

    #[test]
    fn declarations_give_precision_and_scale() {
        assert_eq!(
            decl(json!({"type": "number", "multipleOf": 0.01})),
            Some((38, 2))
        );
        assert_eq!(
            decl(json!({"type": "number", "multipleOf": 0.5})),
            Some((38, 1))
        );
        assert_eq!(
            decl(json!({"type": "number", "multipleOf": 1})),
            Some((38, 0))
        );
        assert_eq!(
            decl(json!({"type": "number", "multipleOf": 1e-10})),
            Some((38, 10))
        );
        assert_eq!(decl(json!({"type": "number", "multipleOf": 1e-39})), None);
        assert_eq!(decl(json!({"type": "number", "multipleOf": 0})), None);
        assert_eq!(decl(json!({"type": "number"})), None);
        assert_eq!(
            decl(json!({"type": "string", "format": "singer.decimal"})),
            Some((38, DEFAULT_SCALE))
        );
        assert_eq!(
            decl(
                json!({"type": "string", "format": "x-singer.decimal", "precision": 10, "scale": 4})
            ),
            Some((10, 4))
        );
        assert_eq!(
            decl(json!({"type": "string", "format": "x-singer.decimal", "precision": 5})),
            Some((5, 0))
        );
        assert_eq!(
            decl(
                json!({"type": "string", "format": "x-singer.decimal", "precision": 4, "scale": 6})
            ),
            None
        );
        assert_eq!(
            decl(json!({"type": "string", "format": "x-singer.decimal", "precision": 39})),
            None
        );
        assert_eq!(decl(json!({"type": "string", "format": "date"})), None);
    }

    #[test]
    fn values_parse_exactly_or_not_at_all() {
        assert_eq!(parse("12.30", 38, 2), Some(1230));
        assert_eq!(parse("-0.07", 38, 2), Some(-7));
        assert_eq!(parse("5", 38, 2), Some(500));
        assert_eq!(parse("1.5e1", 38, 2), Some(1500));
        assert_eq!(parse("125E-2", 38, 2), Some(125));
        assert_eq!(parse("1e+2", 38, 0), Some(100));
        assert_eq!(parse("0.1", 38, 2), Some(10), "not 0.1000000000000000055…");
        assert_eq!(parse("1.234", 38, 2), None, "a third decimal would be lost");
        assert_eq!(
            parse("1.230000", 38, 2),
            Some(123),
            "trailing zeros lose nothing"
        );
        assert_eq!(parse("999.99", 5, 2), Some(99999));
        assert_eq!(parse("1000.00", 5, 2), None, "six digits in precision 5");
        assert_eq!(parse("1e40", 38, 0), None);
        assert_eq!(parse("0e999999", 38, 2), Some(0));
        assert_eq!(
            parse("1234567890123456789012345678.901234567", 38, 9),
            Some(1_234_567_890_123_456_789_012_345_678_901_234_567)
        );
        for bad in [
            "", "-", "NaN", "+1", " 1", "1.", ".5", "1,5", "0x10", "1e", "1.2.3",
        ] {
            assert_eq!(parse(bad, 38, 2), None, "{bad:?}");
        }
    }
}
