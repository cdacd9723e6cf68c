//! Tables every engine reads (issue 21): the default protocol, the deletion-vector opt-in kept
//! by existing tables, names that keep Unicode and record their property, `doctor` and `vacuum`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::*;

fn first_commit(table: &Path) -> Vec<Value> {
    std::fs::read_to_string(table.join("_delta_log/00000000000000000000.json"))
        .expect("first commit")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn last_adds(table: &Path) -> Vec<Value> {
    let mut logs: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    logs.sort();
    std::fs::read_to_string(logs.last().unwrap())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("add").cloned())
        .collect()
}

fn tool(wh: &Path, args: &[&str]) -> Output {
    let cfg = wh.with_extension("config.json");
    Command::new(env!("CARGO_BIN_EXE_target-warehouse"))
        .args(args)
        .args(["--config", &cfg.display().to_string()])
        .output()
        .expect("target-warehouse")
}

#[test]
fn the_default_is_readable_everywhere_and_an_opted_in_table_keeps_its_vectors() {
    let (_d, wh) = warehouse();
    let plain = schema_msg(
        "plain",
        json!({"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}}),
        &["id"],
    );
    let dv = schema_msg("dv", json!({"id": {"type": "integer"}}), &["id"]);
    let r = run(
        &wh,
        json!({"deletion_vectors": true}),
        &lines(&[
            dv.clone(),
            record("dv", json!({"id": 1})),
            record("dv", json!({"id": 2})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let at = "2026-12-03T10:00:00Z";
    let r = run(
        &wh,
        json!({}),
        &lines(&[
            plain.clone(),
            record("plain", json!({"id": 1, "at": at})),
            dv.clone(),
            record("dv", json!({"id": 1})),
        ]),
    );
    assert!(r.ok(), "{}", r.stderr());
    let actions = first_commit(&wh.join("plain"));
    let protocol = actions.iter().find_map(|a| a.get("protocol")).unwrap();
    assert_eq!(
        protocol,
        &json!({"minReaderVersion": 1, "minWriterVersion": 2})
    );
    let meta = actions.iter().find_map(|a| a.get("metaData")).unwrap();
    let schema: Value = serde_json::from_str(meta["schemaString"].as_str().unwrap()).unwrap();
    let at_type = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "at")
        .map(|f| f["type"].clone());
    assert_eq!(
        at_type,
        Some(json!("timestamp")),
        "UTC timestamp, never timestamp_ntz"
    );
    assert!(meta["configuration"]
        .get("delta.enableDeletionVectors")
        .is_none());
    // The table made with the opt-in keeps taking deletion-vector upserts under the default.
    let adds = last_adds(&wh.join("dv"));
    assert!(
        adds.iter().any(|a| a["deletionVector"].is_object()),
        "{adds:?}"
    );
    assert_eq!(read_table(&wh.join("dv"), "dv").rows.len(), 2);
    // A later upsert of the default table rewrites instead.
    let r = run(
        &wh,
        json!({}),
        &lines(&[plain, record("plain", json!({"id": 1, "at": at}))]),
    );
    assert!(r.ok(), "{}", r.stderr());
    assert!(last_adds(&wh.join("plain"))
        .iter()
        .all(|a| a.get("deletionVector").is_none_or(Value::is_null)));
    assert_eq!(read_table(&wh.join("plain"), "plain").rows.len(), 1);
}

#[test]
fn awkward_names_keep_unicode_never_collide_and_stay_across_runs() {
    let (_d, wh) = warehouse();
    let long = format!("long{}", "x".repeat(296));
    let props = json!({"Id": {"type": "integer"}, "id": {"type": "integer"},
        "first name": {"type": "string"}, "a.b": {"type": "string"}, "f(x)": {"type": "string"},
        "größe": {"type": "number"}, long.clone(): {"type": "string"},
        "price__string": {"type": "string"}});
    let s = schema_msg("Stück liste", props, &["Id"]);
    let rec = json!({"Id": 1, "id": 10, "first name": "Ann", "a.b": "ab", "f(x)": "fx",
        "größe": 1.5, long.clone(): "l", "price__string": "p", "price": 3});
    let r = run(
        &wh,
        json!({}),
        &lines(&[s.clone(), record("Stück liste", rec)]),
    );
    assert!(r.ok(), "{}", r.stderr());
    // A conflicting value of "price" makes a sibling that must not take "price__string".
    let rec2 = json!({"id": 20, "price": "three", "Id": 2, "größe": 2.0});
    let r = run(&wh, json!({}), &lines(&[s, record("Stück liste", rec2)]));
    assert!(r.ok(), "{}", r.stderr());
    let table = wh.join("Stück_liste");
    let t = read_table(&table, "Stück liste");
    let names = t.column_names();
    for want in [
        "Id",
        "id__2",
        "first_name",
        "a_b",
        "f_x_",
        "größe",
        "price__string",
        "price",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let lower: std::collections::HashSet<_> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(
        lower.len(),
        names.len(),
        "no two names equal ignoring case: {names:?}"
    );
    let cut = names
        .iter()
        .find(|n| n.starts_with("longxx"))
        .expect("the long name");
    assert_eq!(cut.chars().count(), 120);
    // Every column records the property it holds.
    for f in t.schema.fields() {
        let p = f
            .metadata()
            .get("target_warehouse.property")
            .expect("property recorded");
        if f.name() == "id__2" {
            assert_eq!(p, "id");
        }
        if f.name() == cut {
            assert_eq!(p, &long);
        }
    }
    assert!(names.iter().any(|n| n == "price__string__2"), "{names:?}");
    let rows = t.sorted_by("Id");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["größe"], json!(1.5));
    assert_eq!(rows[1]["id__2"], json!(20));
}

#[test]
fn doctor_reports_tables_and_vacuum_keeps_what_time_travel_needs() {
    let (_d, wh) = warehouse();
    let s = id_v_schema("t");
    let mut msgs = vec![s];
    msgs.extend((0..40).map(|i| record("t", json!({"id": i, "v": "a", "_sdc_sequence": i + 1}))));
    let r = run(&wh, json!({"batch_size_rows": 1}), &lines(&msgs));
    assert!(r.ok(), "{}", r.stderr());
    let out = tool(&wh, &["doctor", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let t = &report[0];
    assert_eq!(t["stream"], json!("t"));
    assert_eq!(t["broken"], json!([]));
    assert_eq!(
        (
            t["min_reader_version"].clone(),
            t["min_writer_version"].clone()
        ),
        (json!(1), json!(2))
    );
    assert!(t["readers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verdict"] == "yes"));
    assert!(
        t["unreferenced_files"].as_u64().unwrap() >= 32,
        "compaction replaced the small files: {t}"
    );
    assert_eq!(
        t["marks"],
        json!({"target-warehouse:t": 40}),
        "the stream's high-water mark"
    );
    let text = tool(&wh, &["doctor"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("healthy"));

    // Inside the retention nothing goes, and an old version still reads.
    let out = tool(&wh, &["vacuum"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 0 files"));
    assert_eq!(read_version(&wh.join("t"), 5), 6);
    // Below the table's deletedFileRetentionDuration: refused without --force.
    let out = tool(&wh, &["vacuum", "--retention-hours", "0", "--dry-run"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention"));
    let dry = tool(
        &wh,
        &["vacuum", "--retention-hours", "0", "--dry-run", "--force"],
    );
    assert!(dry.status.success());
    let listed = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .filter(|l| l.starts_with("  "))
        .count();
    assert!(listed >= 32, "{}", String::from_utf8_lossy(&dry.stdout));
    assert_eq!(
        read_version(&wh.join("t"), 5),
        6,
        "a dry run removes nothing"
    );
    let out = tool(&wh, &["vacuum", "--retention-hours", "0", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_table(&wh.join("t"), "t").rows.len(),
        40,
        "the current version is whole"
    );
    let out = tool(&wh, &["doctor", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report[0]["unreferenced_files"], json!(0));

    // A referenced file gone: broken, exit non-zero.
    // (after the vacuum every data file left is referenced)
    let victim = std::fs::read_dir(wh.join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".parquet"))
        .expect("a data file");
    std::fs::remove_file(wh.join("t").join(&victim)).unwrap();
    let out = tool(&wh, &["doctor"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN") && text.contains(&victim), "{text}");
}

/// The number of rows of version `v` of the table (deltalake's time travel).
fn read_version(root: &Path, v: u64) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(root.to_string_lossy()).expect("url");
        let mut table = deltalake::open_table(url).await.expect("open");
        table.load_version(v).await.expect("load version");
        let mut rows = 0;
        for f in table.snapshot().expect("state").log_data().iter() {
            let path = root.join(f.path().as_ref());
            let file = std::fs::File::open(&path).expect("a file of the old version is there");
            let reader =
                deltalake::parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
            use deltalake::parquet::file::reader::FileReader;
            rows += reader.metadata().file_metadata().num_rows() as usize;
        }
        rows
    })
}

/// 10,000 tiny commits to one table (written straight into its log after a real first commit,
/// as 10,000 runs of one record would: a debug build takes ~0.1 s per real commit), then one
/// real load: it checkpoints, compacts, and the table opens fast; `doctor` calls it healthy;
/// `vacuum` reclaims what compaction replaced and never what a version of the retention needs.
#[test]
fn ten_thousand_small_commits_open_fast_after_upkeep() {
    const COMMITS: u64 = 10_000;
    let (_d, wh) = warehouse();
    let s = schema_msg("t", json!({"id": {"type": "integer"}}), &[]);
    let one = |seq: i64| {
        lines(&[
            s.clone(),
            record("t", json!({"id": seq, "_sdc_sequence": seq})),
        ])
    };
    let r = run(&wh, json!({"batch_size_rows": 1}), &one(1));
    assert!(r.ok(), "{}", r.stderr());
    let table = wh.join("t");
    let add = first_commit(&table)
        .into_iter()
        .find_map(|a| a.get("add").cloned())
        .expect("the first file");
    let bytes = std::fs::read(table.join(add["path"].as_str().unwrap())).unwrap();
    for v in 1..COMMITS {
        let name = format!("part-00000000-0000-7000-8000-{v:012x}.zstd.parquet");
        std::fs::write(table.join(&name), &bytes).unwrap();
        let mut a = add.clone();
        a["path"] = json!(name);
        let entry = format!(
            "{}\n{}\n",
            json!({"commitInfo": {"operation": "WRITE", "timestamp": 1}}),
            json!({ "add": a })
        );
        std::fs::write(table.join(format!("_delta_log/{v:020}.json")), entry).unwrap();
    }
    // Version 10,000 (a real load) checkpoints; compaction merges the small files.
    let r = run(&wh, json!({"batch_size_rows": 1}), &one(2));
    assert!(r.ok(), "{}", r.stderr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let version = rt.block_on(async {
        let url = deltalake::ensure_table_uri(table.to_string_lossy()).unwrap();
        deltalake::open_table(url).await.expect("open").version()
    });
    eprintln!(
        "opening the table at version {version:?} after {COMMITS} commits took {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let out = tool(&wh, &["doctor", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &report[0];
    eprintln!(
        "doctor: {} files, checkpoint {}, {} commits since, {} unreferenced, opened in {} s",
        t["files"],
        t["last_checkpoint"],
        t["commits_since_checkpoint"],
        t["unreferenced_files"],
        t["open_seconds"]
    );
    assert_eq!(t["broken"], json!([]));
    assert!(t["open_seconds"].as_f64().is_some(), "{t}");
    assert!(t["last_checkpoint"].as_u64().unwrap() >= COMMITS, "{t}");
    assert!(t["commits_since_checkpoint"].as_u64().unwrap() < 100, "{t}");
    assert!(
        t["unreferenced_files"].as_u64().unwrap() >= COMMITS,
        "compaction replaced them: {t}"
    );
    // Inside the retention nothing goes: an old version still reads.
    let out = tool(&wh, &["vacuum"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 0 files"));
    assert_eq!(read_version(&table, 5_000), 5_001);
    let out = tool(&wh, &["vacuum", "--retention-hours", "0", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("  "))
        .count();
    assert!(removed as u64 >= COMMITS, "{removed}");
    assert_eq!(read_table(&table, "t").rows.len() as u64, COMMITS + 1);
}
