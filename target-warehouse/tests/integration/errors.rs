//! Bad input: a clear error naming line and stream, non-zero exit, earlier commits intact.

use serde_json::json;

use crate::harness::*;

fn fails_with(input: &str, expected: &[&str]) {
    let (_d, wh) = warehouse();
    let r = run(&wh, json!({}), input);
    assert!(!r.ok(), "should fail");
    let err = r.stderr();
    for e in expected {
        assert!(err.contains(e), "{e:?} not in {err}");
    }
}

#[test]
fn record_before_schema() {
    fails_with(
        &lines(&[record("s", json!({"a": 1}))]),
        &["line 1", "\"s\"", "RECORD before its SCHEMA"],
    );
}

#[test]
fn record_missing_a_key_property() {
    let s = schema_msg("s", json!({"id": {"type": "integer"}}), &["id"]);
    fails_with(
        &lines(&[
            s,
            record("s", json!({"id": 1})),
            record("s", json!({"x": 1})),
        ]),
        &["line 3", "\"s\"", "key property \"id\""],
    );
}

#[test]
fn schema_that_is_not_an_object_schema() {
    let bad = json!({"type": "SCHEMA", "stream": "s", "schema": {"type": "string"}, "key_properties": []});
    fails_with(&lines(&[bad]), &["line 1", "\"s\"", "not an object schema"]);
}

#[test]
fn unparsable_line() {
    fails_with(
        "{\"type\":\"STATE\",\"value\":{}}\n{not json\n",
        &["line 2"],
    );
}

#[test]
fn earlier_commits_survive_a_failing_batch() {
    let (_d, wh) = warehouse();
    let s = schema_msg("s", json!({"id": {"type": "integer"}}), &["id"]);
    let input = lines(&[
        s,
        record("s", json!({"id": 1})),
        state(json!({"n": 1})),
        record("s", json!({"id": 2})),
        record("s", json!({})),
    ]);
    let r = run(&wh, json!({"batch_size_rows": 1}), &input);
    assert!(!r.ok());
    let ids: Vec<_> = read_table(&wh.join("s"), "s")
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2)]);
}

#[test]
fn object_schema_without_properties_is_fine_and_about_works() {
    let (_d, wh) = warehouse();
    let s = json!({"type": "SCHEMA", "stream": "s", "schema": {"type": "object"}, "key_properties": []});
    let r = run(&wh, json!({}), &lines(&[s, record("s", json!({"a": 1}))]));
    assert!(r.ok(), "{}", r.stderr());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .args(["--about", "--format", "json"])
        .output()
        .expect("about");
    let about: serde_json::Value = serde_json::from_slice(&out.stdout).expect("about json");
    assert!(about.to_string().contains("warehouse_path"));
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
            .arg(flag)
            .output()
            .expect("version");
        assert!(out.status.success(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            concat!("target-warehouse ", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn a_corrupt_deletion_vector_stops_the_upsert_that_reads_it_and_leaves_nothing_behind() {
    let (_d, wh) = warehouse();
    let s = id_v_schema("c");
    let mut msgs = vec![s.clone()];
    msgs.extend((0..100).map(|i| record("c", json!({"id": i, "v": "a"}))));
    assert!(run(&wh, json!({"deletion_vectors": true}), &lines(&msgs)).ok());
    let r = run(
        &wh,
        json!({"deletion_vectors": true}),
        &lines(&[s.clone(), record("c", json!({"id": 1, "v": "b"}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let table = wh.join("c");
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&table)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let dv_file = listing()
        .into_iter()
        .find(|n| n.starts_with("deletion_vector_"))
        .expect("the upsert wrote a deletion vector");
    let version = read_table(&table, "c").version;
    // One flipped bit inside the bitmap: the checksum no longer holds.
    let path = table.join(&dv_file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let before = listing();

    let r = run(
        &wh,
        json!({"deletion_vectors": true}),
        &lines(&[
            s,
            record("c", json!({"id": 2, "v": "b"})),
            state(json!({"n": 3})),
        ]),
    );
    assert!(!r.ok(), "a corrupt vector must stop the run");
    let err = r.stderr();
    for want in [
        "line 3",
        "stream \"c\"",
        "deletion vector of part-",
        "fails its checksum",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert!(r.stdout_lines().is_empty(), "no state for the failed batch");
    assert_eq!(
        listing(),
        before,
        "no data or DV file of the failed batch is left"
    );
    assert!(!table
        .join(format!("_delta_log/{:020}.json", version + 1))
        .exists());
}

#[test]
fn a_null_upsert_key_is_refused_clearly_and_earlier_batches_stay() {
    // Records with a null key would collapse into one row of an upserted table, silently.
    let (_d, wh) = warehouse();
    let s = id_v_schema("n");
    let input = lines(&[
        s.clone(),
        record("n", json!({"id": 1, "v": "a"})),
        state(json!({"p": 1})),
        record("n", json!({"id": 2, "v": "b"})),
        record("n", json!({"id": null, "v": "c"})),
        record("n", json!({"id": null, "v": "d"})),
    ]);
    let r = run(&wh, json!({"batch_size_rows": 1}), &input);
    assert!(!r.ok());
    let err = r.stderr();
    for want in ["line 5", "stream \"n\"", "key property \"id\" is null"] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert_eq!(r.stdout_lines(), vec![json!({"p": 1})]);
    let ids: Vec<_> = read_table(&wh.join("n"), "n")
        .sorted_by("id")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2)]);
    // Appended, the same records are rows like any other: nothing merges by key.
    let (_d, wh) = warehouse();
    let r = run(&wh, json!({"load_method": "append-only"}), &input);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(read_table(&wh.join("n"), "n").rows.len(), 4);
}

#[test]
fn batch_errors_name_the_line_the_file_and_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.jsonl");
    std::fs::write(&file, "{\"id\": 1}\n[2]\n").unwrap();
    let url = format!("file://{}", file.display());
    let s = schema_msg("s", json!({"id": {"type": "integer"}}), &["id"]);
    let batch = |manifest: &str| {
        json!({"type": "BATCH", "stream": "s", "encoding": {"format": "jsonl", "compression": "none"},
               "manifest": [manifest]})
    };
    fails_with(
        &lines(&[s.clone(), batch(&url)]),
        &[
            "BATCH file",
            &url,
            "row 2",
            "line 2",
            "\"s\"",
            "not a JSON object",
        ],
    );
    let missing = format!("file://{}", dir.path().join("gone.jsonl").display());
    fails_with(
        &lines(&[s.clone(), batch(&missing)]),
        &["line 2", "\"s\"", "BATCH file", &missing],
    );
    fails_with(
        &lines(&[s, batch("gs://bucket/rows.jsonl")]),
        &["line 2", "gs://bucket/rows.jsonl", "file://", "s3://"],
    );
    fails_with(
        &lines(&[batch(&url)]),
        &["line 1", "RECORD before its SCHEMA"],
    );
}

#[test]
fn both_version_flags_print_the_version() {
    // A newcomer types `target-warehouse -V` as they type `tap-webhook -V` (it was refused).
    for flag in ["-V", "--version"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
            .arg(flag)
            .output()
            .expect("run target-warehouse");
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("target-warehouse {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}
