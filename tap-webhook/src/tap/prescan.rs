//! The schema prescan: before a stream's first record, its messages of the run are read once,
//! top level only, so that the first SCHEMA already holds every field and type of the run.
//! Schema-driven targets (target-duckdb and the pipelinewise family) rename a column whose type
//! widens mid-stream, and the earlier rows' values then vanish from the column users query.
//!
//! One thread reads the run in sequence order. Spreading the read over threads (chunks of the
//! run through their own connections) was measured and removed: on the committed benchmark's
//! pipe `tap-webhook | target-warehouse` (100k messages) it changed nothing end to end (paired
//! ratio 1.004, median of 31 alternated rounds; the target is the bound and the threads took
//! its cores), below the 5% a hand-written parallel path must win.

use super::outcome::TapError;
use super::router::SourceStreams;
use crate::spool::reader::SpoolReader;

/// Types every message of the source in `(after, until]`, each in its stream, before the first
/// record is emitted.
pub fn prescan(
    spool: &SpoolReader,
    streams: &mut SourceStreams<'_>,
    after: i64,
    until: i64,
) -> Result<(), TapError> {
    if streams.routed() {
        spool.for_each_ref::<TapError>(streams.source(), after, until, |m| {
            streams.prescan(&m);
            Ok(true)
        })?;
    } else {
        // One stream: the bodies alone are read.
        spool.for_each_body::<TapError>(streams.source(), after, until, |body| {
            streams.prescan_own(body);
            Ok(())
        })?;
    }
    streams.prescan_done();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use serde_json::json;

    #[test]
    fn a_prescan_types_every_field_of_the_run_and_skips_what_is_not_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let mut conn = crate::spool::open(&path).unwrap();
        // 3,000 messages; fields and types that only some ranges hold, and bodies that are not
        // JSON objects here and there (their emission rejects them).
        let bad = [5_i64, 1_500, 2_999];
        let tx = conn.transaction().unwrap();
        for seq in 1..=3_000_i64 {
            let body = if bad.contains(&seq) {
                "{not json".to_owned()
            } else if seq < 1_000 {
                format!(r#"{{"id":{seq},"a":"x"}}"#)
            } else if seq < 2_000 {
                format!(r#"{{"id":"s{seq}","b":{{"n":1}},"c":null}}"#)
            } else {
                format!(
                    r#"{{"id":{seq}.5,"c":"2024-05-01T12:00:00Z","d{}":true}}"#,
                    seq % 7
                )
            };
            tx.execute(
                "INSERT INTO messages (seq, id, source, received_at, part, headers, query, body)
                 VALUES (?1, ?2, 'data', ?1, 0, '{}', '{}', ?3)",
                rusqlite::params![seq, format!("m{seq}"), body],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let settings = Settings::from_map(serde_json::Map::new()).unwrap();
        let source = &settings.sources["data"];
        let spool = SpoolReader::open(&path).unwrap();
        let mut streams = SourceStreams::new(source, None, "p").unwrap();
        prescan(&spool, &mut streams, 0, 3_000).unwrap();
        let schema = streams.own().unwrap().schema().to_json_schema();
        let props = &schema["properties"];
        assert_eq!(
            props["id"]["type"],
            json!(["null", "number", "string"]),
            "{props}"
        );
        assert_eq!(props["c"]["type"], json!(["null", "string"]));
        assert_eq!(props["c"]["format"], json!("date-time"));
        for field in ["a", "b", "d0", "d6"] {
            assert!(props.get(field).is_some(), "{field} missing from {props}");
        }
        // Only the run's range is read.
        let mut first = SourceStreams::new(source, None, "p").unwrap();
        prescan(&spool, &mut first, 0, 999).unwrap();
        let schema = first.own().unwrap().schema().to_json_schema();
        assert_eq!(
            schema["properties"]["id"]["type"],
            json!(["null", "integer"])
        );
        assert!(schema["properties"].get("b").is_none(), "{schema}");
    }
}
