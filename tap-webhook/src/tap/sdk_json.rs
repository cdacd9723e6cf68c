//! JSON text as the Singer SDK writes it (`singer_sdk.singerlib.json.serialize_json` over what
//! its `deserialize_json` read): what a flattened record holds, as a string, for an array or an
//! object deeper than `flattening_max_depth` ([`super::flatten`]).
//!
//! simplejson with `separators=(",", ":")` and its default `ensure_ascii`: no whitespace, every
//! character outside printable ASCII as `\uXXXX` (lower-case hex, astral ones as a surrogate
//! pair), `"` `\` and the five short control escapes as such. Numbers as Python prints what
//! `json.loads(parse_float=Decimal)` made of them: an integer as `int` (`-0` is `0`), anything
//! with a fraction or an exponent as `Decimal.__str__` (`1e5` is `1E+5`, `0.0000001` is `1E-7`,
//! `1.50` stays `1.50`). A repeated name keeps its first place and its last value (a Python
//! dict). The input is JSON the receiver already accepted; text that is not gives `None`.

use std::collections::HashMap;
use std::fmt::Write as _;

/// `raw` (one valid JSON value) as the SDK's `serialize_json` writes it.
pub fn dump(raw: &str) -> Option<String> {
    let mut r = Reader {
        b: raw.as_bytes(),
        i: 0,
    };
    let mut out = String::with_capacity(raw.len());
    r.value(&mut out)?;
    r.ws();
    (r.i == r.b.len()).then_some(out)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, out: &mut String) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => self.object(out),
            b'[' => self.array(out),
            b'"' => self.string(out),
            b't' => self.literal(out, "true"),
            b'f' => self.literal(out, "false"),
            b'n' => self.literal(out, "null"),
            _ => self.number(out),
        }
    }

    fn literal(&mut self, out: &mut String, word: &str) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word.as_bytes()).then_some(())?;
        self.i = end;
        out.push_str(word);
        Some(())
    }

    fn array(&mut self, out: &mut String) -> Option<()> {
        self.i += 1;
        out.push('[');
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            out.push(']');
            return Some(());
        }
        loop {
            self.value(out)?;
            self.ws();
            match *self.b.get(self.i)? {
                b',' => {
                    self.i += 1;
                    out.push(',');
                }
                b']' => {
                    self.i += 1;
                    out.push(']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, out: &mut String) -> Option<()> {
        self.i += 1;
        // Names and values written, each apart: a repeated name replaces the value in place.
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut places: HashMap<String, usize> = HashMap::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.push_str("{}");
            return Some(());
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            let mut name = String::new();
            self.string(&mut name)?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return None;
            }
            self.i += 1;
            let mut value = String::new();
            self.value(&mut value)?;
            match places.get(&name) {
                Some(&at) => entries[at].1 = value,
                None => {
                    places.insert(name.clone(), entries.len());
                    entries.push((name, value));
                }
            }
            self.ws();
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        out.push('{');
        for (n, (name, value)) in entries.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Some(())
    }

    /// A string, re-escaped unit by unit over its UTF-16 code units: a lone surrogate escape
    /// (valid JSON, decision 0011) comes out as Python writes it, `\udXXX`.
    fn string(&mut self, out: &mut String) -> Option<()> {
        self.i += 1;
        out.push('"');
        loop {
            let c = *self.b.get(self.i)?;
            match c {
                b'"' => {
                    self.i += 1;
                    out.push('"');
                    return Some(());
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    self.i += 2;
                    let unit = match e {
                        b'"' => u16::from(b'"'),
                        b'\\' => u16::from(b'\\'),
                        b'/' => u16::from(b'/'),
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => 0x0a,
                        b'r' => 0x0d,
                        b't' => 0x09,
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            u16::from_str_radix(hex, 16).ok()?
                        }
                        _ => return None,
                    };
                    push_unit(out, unit);
                }
                _ if c < 0x80 => {
                    self.i += 1;
                    push_unit(out, u16::from(c));
                }
                _ => {
                    // One UTF-8 character: its UTF-16 units.
                    let len = match c {
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let ch = std::str::from_utf8(self.b.get(self.i..self.i + len)?)
                        .ok()?
                        .chars()
                        .next()?;
                    self.i += len;
                    let mut units = [0u16; 2];
                    for &u in ch.encode_utf16(&mut units).iter() {
                        push_unit(out, u);
                    }
                }
            }
        }
    }

    fn number(&mut self, out: &mut String) -> Option<()> {
        let start = self.i;
        let negative = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(negative);
        let digits = |r: &mut Self| {
            let s = r.i;
            while r.b.get(r.i).is_some_and(u8::is_ascii_digit) {
                r.i += 1;
            }
            s..r.i
        };
        let int = digits(self);
        if int.is_empty() {
            return None;
        }
        let frac = if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            Some(digits(self))
        } else {
            None
        };
        let exp = if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            let s = self.i;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self);
            Some(s..self.i)
        } else {
            None
        };
        let text = |r: std::ops::Range<usize>| std::str::from_utf8(&self.b[r]).ok();
        if frac.is_none() && exp.is_none() {
            // A Python int: `-0` is `0`.
            let int = text(int)?;
            if negative && int.trim_start_matches('0').is_empty() {
                out.push('0');
            } else {
                out.push_str(text(start..self.i)?);
            }
            return Some(());
        }
        let frac = frac.map_or(Some(""), text)?;
        // An exponent Python could hold but no i64 can: keep the text as sent.
        let Some(exp) = exp.map_or(Some(0), |e| text(e)?.parse::<i64>().ok()) else {
            out.push_str(text(start..self.i)?);
            return Some(());
        };
        let coefficient = format!("{}{frac}", text(int)?);
        let coefficient = match coefficient.trim_start_matches('0') {
            "" => "0",
            c => c,
        };
        push_decimal(
            out,
            negative,
            coefficient,
            exp.saturating_sub(frac.len() as i64),
        );
        Some(())
    }
}

/// One UTF-16 code unit as simplejson's `ensure_ascii` writes it.
fn push_unit(out: &mut String, unit: u16) {
    match unit {
        0x22 => out.push_str("\\\""),
        0x5c => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        0x0a => out.push_str("\\n"),
        0x0d => out.push_str("\\r"),
        0x09 => out.push_str("\\t"),
        0x20..=0x7e => out.push(char::from(unit as u8)),
        _ => {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
}

/// Python's `Decimal.__str__` of sign, coefficient digits and exponent.
fn push_decimal(out: &mut String, negative: bool, digits: &str, exp: i64) {
    let n = digits.len() as i64;
    let left = exp.saturating_add(n);
    let dot = if exp <= 0 && left > -6 { left } else { 1 };
    if negative {
        out.push('-');
    }
    if dot <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-dot) as usize));
        out.push_str(digits);
    } else if dot >= n {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (dot - n) as usize));
    } else {
        out.push_str(&digits[..dot as usize]);
        out.push('.');
        out.push_str(&digits[dot as usize..]);
    }
    if left != dot {
        let _ = write!(out, "E{:+}", left - dot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_python_prints_what_it_read() {
        for (raw, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("12345678901234567890123", "12345678901234567890123"),
            ("-7", "-7"),
            ("1.50", "1.50"),
            ("-0.0", "-0.0"),
            ("1e5", "1E+5"),
            ("1E-5", "0.00001"),
            ("1.0e2", "1.0E+2"),
            ("12.5e1", "125"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            ("0.00", "0.00"),
            ("123.456e-10", "1.23456E-8"),
            ("5e0", "5"),
            ("0e10", "0E+10"),
        ] {
            assert_eq!(dump(raw).as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn text_is_compact_ascii_and_a_repeated_name_keeps_its_first_place() {
        assert_eq!(
            dump(r#" { "a" : [ 1 , true , null , { } , [ ] ] , "b" : "x" , "a" : 2 } "#).as_deref(),
            Some(r#"{"a":2,"b":"x"}"#)
        );
        assert_eq!(
            dump(r#"["é😀\u00e9\ud83d\u0001\u007f\/\"\\\n\t\b\f\r~ "]"#).as_deref(),
            Some(r#"["\u00e9\ud83d\ude00\u00e9\ud83d\u0001\u007f/\"\\\n\t\b\f\r~ "]"#)
        );
        assert_eq!(dump("[1,]"), None);
        assert_eq!(dump("{\"a\" 1}"), None);
        assert_eq!(dump("[1] x"), None);
    }
}
