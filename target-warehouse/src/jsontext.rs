//! JSON text as stored in `Json` columns: the source's text, except that `\u` escapes of
//! characters JSON does not need escaped become the characters themselves (`"gr\u00f6\u00dfe"`
//! → `"größe"`), so that `LIKE '%ü%'` finds what a reader sees.
//!
//! Used by `columns` when a value is written as JSON text. The text is otherwise copied as is
//! (numbers keep their digits, whitespace and key order stay): no DOM, and values without a
//! `\u` escape, nearly all, are borrowed after one `memchr` scan.

use std::borrow::Cow;

/// `raw` (valid JSON text) with needless `\uXXXX` escapes replaced by their characters.
/// Kept escaped: `"`, `\` and control characters (JSON requires it), and lone surrogates, which
/// no UTF-8 text can hold (decision 0011: the text stays valid JSON as sent). A surrogate pair
/// becomes its one character. Other escapes (`\"`, `\\`, `\n`, `\/`…) are kept as written.
pub fn unescape_needless(raw: &str) -> Cow<'_, str> {
    if memchr::memmem::find(raw.as_bytes(), b"\\u").is_none() {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // `copied`: the end of the text already in `out`; everything from there to `i` is pending.
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', &bytes[i..]) {
        let at = i + off;
        // In valid JSON a backslash only starts an escape inside a string; `\\` is one escape,
        // so the `u` of `\\u00fc` is never taken for an escape.
        if bytes.get(at + 1) != Some(&b'u') {
            i = at + 2;
            continue;
        }
        let Some(unit) = hex4(bytes, at + 2) else {
            i = at + 2;
            continue;
        };
        let (ch, len) = match unit {
            0xD800..=0xDBFF => match pair_low(bytes, at + 6) {
                Some(low) => {
                    let code =
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    (char::from_u32(code), 12)
                }
                None => (None, 6), // a lone high surrogate
            },
            0xDC00..=0xDFFF => (None, 6), // a lone low surrogate
            0x00..=0x1F | 0x22 | 0x5C => (None, 6), // must stay escaped
            _ => (char::from_u32(u32::from(unit)), 6),
        };
        if let Some(ch) = ch {
            out.push_str(&raw[copied..at]);
            out.push(ch);
            copied = at + len;
        }
        i = at + len;
    }
    if copied == 0 {
        return Cow::Borrowed(raw); // only escapes that must stay
    }
    out.push_str(&raw[copied..]);
    Cow::Owned(out)
}

/// The code unit of the four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

/// The low surrogate of a `\uDC00`–`\uDFFF` escape at `at`, if one follows.
fn pair_low(bytes: &[u8], at: usize) -> Option<u16> {
    if bytes.get(at..at + 2) != Some(b"\\u") {
        return None;
    }
    hex4(bytes, at + 2).filter(|u| (0xDC00..=0xDFFF).contains(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        let out = unescape_needless(raw).into_owned();
        // Always still valid JSON (lone surrogates included: `IgnoredAny` checks the grammar,
        // a `Value` would refuse them).
        let _: serde::de::IgnoredAny = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("{out:?} is not JSON: {e}");
        });
        out
    }

    #[test]
    fn needless_escapes_become_characters() {
        assert_eq!(norm(r#"{"name":"gr\u00f6\u00dfe"}"#), r#"{"name":"größe"}"#);
        assert_eq!(norm(r#"["\u00FC", "\u20ac"]"#), r#"["ü", "€"]"#);
        assert_eq!(norm(r#"{"e":"\ud83d\ude00!"}"#), r#"{"e":"😀!"}"#);
        assert_eq!(
            norm(r#"{"\u00fc":1.50}"#),
            r#"{"ü":1.50}"#,
            "keys too; numbers as written"
        );
        assert_eq!(norm(r#"["\u0041\u002f"]"#), r#"["A/"]"#);
        let untouched = r#"{"a": [1, 2.0e3], "ü": "plain"}"#;
        assert!(matches!(unescape_needless(untouched), Cow::Borrowed(_)));
    }

    #[test]
    fn needed_escapes_and_lone_surrogates_stay() {
        for kept in [
            r#"["a\"b", "c\\d", "line\nnext", "tab\t", "\/"]"#,
            r#"["\u0000\u001f\u0022\u005c"]"#,
            r#"["cut \ud83d"]"#,
            r#"["\ude00 low first"]"#,
            r#"["\\u00fc is text"]"#,
        ] {
            assert_eq!(norm(kept), kept);
            assert!(
                matches!(unescape_needless(kept), Cow::Borrowed(_)),
                "{kept}"
            );
        }
        assert_eq!(
            norm(r#"["\u00fc\n\ud83d", "\\\u00fc"]"#),
            r#"["ü\n\ud83d", "\\ü"]"#
        );
        assert_eq!(norm(r#"["\ud83d\u0041"]"#), r#"["\ud83dA"]"#);
        assert_eq!(norm(r#"["\ud83d\ud83d\ude00"]"#), r#"["\ud83d😀"]"#);
    }
}
