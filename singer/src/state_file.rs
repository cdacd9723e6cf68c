//! Reading a `--state` file: the bookmark a tap resumes from.
//!
//! A target prints one state per line, and the simplest safe way to keep them is to append its
//! whole stdout to the state file (`tap --state s.json | target >> s.json`): the target prints
//! only states it has made durable, each covering every earlier one, so the last line is the
//! newest proof. So a state file may hold several JSON values (one a line, or one pretty-printed
//! object, as Meltano writes it) and the last one counts; an empty file is "no state yet" (a
//! first run). A path that does not exist is an error, never "no state": a typo would otherwise
//! replay everything and prune nothing, silently.

use std::path::Path;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error(
        "state file {path} does not exist: for a first run create it empty (`touch {path}`); \
         a missing file is refused so that a mistyped path cannot silently replay everything"
    )]
    Missing { path: String },
    #[error("reading state file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("state file {path}, line {line}: not JSON ({error})")]
    NotJson {
        path: String,
        line: usize,
        error: serde_json::Error,
    },
    #[error("state file {path}, line {line}: a state is a JSON object, not {found}")]
    NotAnObject {
        path: String,
        line: usize,
        found: String,
    },
}

/// The state a file holds: its last JSON value, and how many values it held in all.
#[derive(Debug, Clone, PartialEq)]
pub struct StateFile {
    /// `None`: the file is empty (or only whitespace): no state yet.
    pub state: Option<Value>,
    /// How many JSON values the file held (the last one is `state`).
    pub values: usize,
}

/// Reads a state file (see the module doc for the rules).
pub fn read(path: &Path) -> Result<StateFile, StateFileError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            StateFileError::Missing { path: name.clone() }
        } else {
            StateFileError::Io {
                path: name.clone(),
                error,
            }
        }
    })?;
    parse(&name, &bytes)
}

/// [`read`] on bytes already read; `path` only names the file in errors.
pub fn parse(path: &str, bytes: &[u8]) -> Result<StateFile, StateFileError> {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let mut last = None;
    let mut count = 0;
    loop {
        let start = values.byte_offset();
        match values.next() {
            None => break,
            Some(Ok(v)) => {
                if !v.is_object() {
                    return Err(StateFileError::NotAnObject {
                        path: path.to_owned(),
                        line: line_of(bytes, start),
                        found: kind(&v).to_owned(),
                    });
                }
                count += 1;
                last = Some(v);
            }
            Some(Err(error)) => {
                return Err(StateFileError::NotJson {
                    path: path.to_owned(),
                    line: error.line(),
                    error,
                })
            }
        }
    }
    Ok(StateFile {
        state: last,
        values: count,
    })
}

/// The 1-based line of the first non-whitespace byte at or after `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let start = bytes[offset.min(bytes.len())..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(bytes.len(), |p| offset + p);
    1 + bytes[..start].iter().filter(|&&b| b == b'\n').count()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_is_no_state_and_the_last_of_several_lines_wins() {
        assert_eq!(
            parse("s", b"").unwrap(),
            StateFile {
                state: None,
                values: 0
            }
        );
        assert_eq!(parse("s", b" \n\n").unwrap().state, None);
        let two = b"{\"bookmarks\":{\"a\":1}}\n{\"bookmarks\":{\"a\":2}}\n";
        assert_eq!(
            parse("s", two).unwrap(),
            StateFile {
                state: Some(json!({"bookmarks": {"a": 2}})),
                values: 2
            }
        );
        // Meltano writes one pretty-printed object.
        let pretty = b"{\n  \"bookmarks\": {\n    \"a\": 3\n  }\n}\n";
        assert_eq!(
            parse("s", pretty).unwrap().state,
            Some(json!({"bookmarks": {"a": 3}}))
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("st.json", b"{\"a\":1}\n{\"a\":\n").unwrap_err();
        assert!(
            e.to_string().starts_with("state file st.json, line "),
            "{e}"
        );
        let e = parse("st.json", b"{\"a\":1}\n\n[1]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "state file st.json, line 3: a state is a JSON object, not an array"
        );
        let dir = std::env::temp_dir().join(format!("singer-state-{}", std::process::id()));
        let e = read(&dir.join("nope.json")).unwrap_err();
        assert!(
            matches!(e, StateFileError::Missing { .. }) && e.to_string().contains("touch "),
            "{e}"
        );
    }
}
