//! Writing JSON text by hand where a record is spliced from raw parts (the tap's records, the
//! queue's envelope): one string escaper, with serde_json's own rules.

/// True when serde_json writes `s` as a JSON string without any escape.
fn needs_no_escape(s: &str) -> bool {
    // No early exit: the loop vectorises, and names and values are short or clean.
    !s.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Appends `s` as a JSON string, byte for byte as `serde_json::to_string(s)` writes it.
pub fn push_str(out: &mut String, s: &str) {
    if needs_no_escape(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json's escaping itself; serialising a &str cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Appends `"key":` to a JSON object being built (with a comma unless it follows the `{`).
pub fn push_key(out: &mut String, key: &str) {
    if out.as_bytes().last() != Some(&b'{') {
        out.push(',');
    }
    push_str(out, key);
    out.push(':');
}

/// Appends `"key":"value"` to a JSON object being built.
pub fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_str(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them_and_parse_back_equal() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        for s in [
            "plain",
            "é ü 日本",
            "q\"b\\",
            "c\u{1}\n\u{7f}",
            "",
            "\u{2028}\u{2029}",
            "</script>",
            all_controls.as_str(),
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn objects_built_by_hand_parse_back() {
        let mut out = String::from("{");
        push_str_field(&mut out, "a\"", "x\ny");
        push_key(&mut out, "n");
        out.push('1');
        out.push('}');
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a\"": "x\ny", "n": 1}));
    }
}
