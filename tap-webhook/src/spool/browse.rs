//! Reading the spool for people: the deliveries it holds (newest first, filtered), one message
//! in full, and each source's counts. Used by `tap-webhook deliveries`, `status` and the admin
//! page; read-only, on its own connection, so it never holds up the writer (WAL readers do not
//! block it).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use super::StoredMessage;

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub source: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub delivery_id: Option<String>,
    /// A top-level field or a JSON pointer (`/a/b`) whose value must equal the given one.
    pub field: Option<FieldEquals>,
    pub limit: u64,
}

/// `--where NAME=VALUE`: VALUE is taken as JSON when it parses as JSON (`42`, `true`,
/// `"x"`), else as a string; a string field also matches VALUE's text as written.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldEquals {
    /// A JSON pointer (a top-level name `a` becomes `/a`, with `~` and `/` escaped).
    pub pointer: String,
    pub value: Value,
    pub text: String,
}

impl FieldEquals {
    /// Parses `NAME=VALUE` or `/pointer=VALUE`.
    pub fn parse(arg: &str) -> Result<FieldEquals, String> {
        let (name, value) = arg.split_once('=').ok_or_else(|| {
            format!("--where {arg:?}: expected FIELD=VALUE or /json/pointer=VALUE")
        })?;
        if name.is_empty() {
            return Err(format!("--where {arg:?}: the field name is empty"));
        }
        let pointer = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{}", name.replace('~', "~0").replace('/', "~1"))
        };
        Ok(FieldEquals {
            pointer,
            value: serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into())),
            text: value.to_owned(),
        })
    }

    /// True when `body` (a message's JSON text) holds the value at the pointer.
    pub fn matches(&self, body: &str) -> bool {
        let Ok(doc) = serde_json::from_str::<Value>(body) else {
            return false;
        };
        match doc.pointer(&self.pointer) {
            Some(Value::String(s)) if *s == self.text => true,
            Some(v) => *v == self.value,
            None => false,
        }
    }
}

/// A message as listed: what identifies it, not its content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRow {
    pub seq: i64,
    pub id: String,
    pub source: String,
    /// Microseconds since the epoch.
    pub received_at_us: i64,
    pub delivery_id: Option<String>,
    pub part: u32,
    /// Body bytes.
    pub bytes: u64,
}

/// Messages matching `f`, newest first (by sequence).
pub fn list(conn: &Connection, f: &MessageFilter) -> rusqlite::Result<Vec<MessageRow>> {
    // The body is read only to filter on it; without `--where` SQLite stops at the limit.
    let (body, limit) = match &f.field {
        Some(_) => ("body", String::new()),
        None => ("NULL", format!(" LIMIT {}", f.limit.min(i64::MAX as u64))),
    };
    let mut st = conn.prepare(&format!(
        "SELECT seq, id, source, received_at, delivery_id, part, octet_length(body), {body}
         FROM messages
         WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR received_at >= ?2)
           AND (?3 IS NULL OR received_at <= ?3) AND (?4 IS NULL OR delivery_id = ?4)
         ORDER BY seq DESC{limit}"
    ))?;
    let mut rows = st.query(params![f.source, f.since_us, f.until_us, f.delivery_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if out.len() as u64 >= f.limit {
            break;
        }
        if let Some(w) = &f.field {
            let body = r.get_ref(7)?.as_str().map_err(rusqlite::Error::from)?;
            if !w.matches(body) {
                continue;
            }
        }
        out.push(MessageRow {
            seq: r.get(0)?,
            id: r.get(1)?,
            source: r.get(2)?,
            received_at_us: r.get(3)?,
            delivery_id: r.get(4)?,
            part: r.get(5)?,
            bytes: r.get::<_, i64>(6)?.max(0).unsigned_abs(),
        });
    }
    Ok(out)
}

/// One message by its id, or by its sequence when `key` is a number.
pub fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<StoredMessage>> {
    let seq: Option<i64> = key.parse().ok();
    conn.prepare(
        "SELECT seq, id, source, received_at, delivery_id, part, headers, query, body
         FROM messages WHERE id = ?1 OR seq = ?2",
    )?
    .query_row(params![key, seq], |r| {
        Ok(StoredMessage {
            seq: r.get(0)?,
            id: r.get(1)?,
            source: r.get(2)?,
            received_at_us: r.get(3)?,
            delivery_id: r.get(4)?,
            part: r.get(5)?,
            headers: r.get(6)?,
            query: r.get(7)?,
            body: r.get(8)?,
        })
    })
    .optional()
}

/// What the spool holds of one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceCounts {
    /// Messages after `after` (the bookmark), and their bytes.
    pub waiting: u64,
    pub waiting_bytes: u64,
    /// Every message the spool holds of the source (waiting or kept for retention).
    pub held: u64,
    pub oldest_us: Option<i64>,
    pub newest_us: Option<i64>,
}

/// Counts of `source`'s messages; `after` is its bookmark (0: none).
pub fn source_counts(
    conn: &Connection,
    source: &str,
    after: i64,
) -> rusqlite::Result<SourceCounts> {
    let (held, oldest_us, newest_us) = conn
        .prepare_cached(
            "SELECT count(*), min(received_at), max(received_at) FROM messages WHERE source = ?1",
        )?
        .query_row([source], |r| {
            Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))
        })?;
    let (waiting, waiting_bytes) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(octet_length(body)), 0) FROM messages
             WHERE source = ?1 AND seq > ?2",
        )?
        .query_row(params![source, after], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
    Ok(SourceCounts {
        waiting: waiting.max(0).unsigned_abs(),
        waiting_bytes: waiting_bytes.max(0).unsigned_abs(),
        held: held.max(0).unsigned_abs(),
        oldest_us,
        newest_us,
    })
}

/// Bytes of the spool file in use (pages minus free pages).
pub fn bytes_in_use(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free) * size).max(0).unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn where_matches_top_level_names_pointers_and_typed_values() {
        let body = r#"{"status":"paid","n":42,"a/b":true,"obj":{"items":[{"sku":"x"}]}}"#;
        for (arg, want) in [
            ("status=paid", true),
            ("status=\"paid\"", true),
            ("status=unpaid", false),
            ("n=42", true),
            ("n=42.5", false),
            ("a/b=true", true),
            ("/obj/items/0/sku=x", true),
            ("/obj/items/1/sku=x", false),
            ("missing=1", false),
        ] {
            assert_eq!(
                FieldEquals::parse(arg).unwrap().matches(body),
                want,
                "{arg}"
            );
        }
        assert!(FieldEquals::parse("novalue").is_err());
        assert!(FieldEquals::parse("=x").is_err());
        assert!(!FieldEquals::parse("n=1").unwrap().matches("not json"));
        assert_eq!(FieldEquals::parse("n=1").unwrap().value, json!(1));
    }
}
