//! Scale-out against a local SQS/S3 server (`moto_server` from the test virtualenv): two
//! stateless receivers → SQS (a large body by S3 claim check) → the tap's drain → spool →
//! `tap-webhook | target-warehouse` → a Delta table on S3, read back with Python `deltalake`;
//! and a drain killed between its spool commit and the SQS delete loses nothing and emits
//! nothing twice.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{peers, pipe_into, tap_bin, target_bin, Receiver};
use crate::moto::{Moto, AWS_ENV};

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, v.to_string()).unwrap();
}

/// The tap-webhook config of a test: the SQS backend on moto.
fn tap_config(dir: &Path, moto: &Moto, queue: &str, visibility: u32) -> std::path::PathBuf {
    let path = dir.join("tap.json");
    write_json(
        &path,
        &json!({
            "spool_path": dir.join("spool.sqlite"),
            "listen_address": "127.0.0.1:0",
            "state_interval_records": 1000,
            "sources": {"data": {}},
            "queue": {
                "backend": "sqs",
                "queue_name": queue,
                "region": "us-east-1",
                "endpoint_url": moto.endpoint,
                "claim_check_bucket": "claims",
                "visibility_timeout_seconds": visibility,
                "wait_time_seconds": 1,
            }
        }),
    );
    path
}

fn tap(config: &Path, state: Option<&Path>, failpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(tap_bin());
    cmd.arg("--config").arg(config).envs(AWS_ENV);
    if let Some(s) = state {
        cmd.arg("--state").arg(s);
    }
    if let Some(f) = failpoint {
        cmd.env("TAP_WEBHOOK_FAILPOINT", f);
    }
    cmd.output().unwrap()
}

/// The RECORD messages of a tap's output.
fn records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "RECORD")
        .collect()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn two_receivers_sqs_drain_target_delta_on_s3_with_a_claim_check() {
    let peers = peers();
    let moto = Moto::start(&peers);
    // A queue created with the old 256 KiB MaximumMessageSize: the receiver reads it and sends
    // anything larger (below its own 1 MiB threshold) by claim check too.
    moto.peer(&["create-queue", "webhooks", "30", "262144"]);
    moto.peer(&["create-bucket", "claims"]);
    moto.peer(&["create-bucket", "lake"]);
    let dir = tempfile::tempdir().unwrap();
    let config = tap_config(dir.path(), &moto, "webhooks", 30);
    let a = Receiver::start_with_env(&config, &AWS_ENV);
    let b = Receiver::start_with_env(&config, &AWS_ENV);

    let big = format!(r#"{{"n":7,"blob":"{}"}}"#, "x".repeat(1_200_000));
    let mid = format!(r#"{{"n":10,"blob":"{}"}}"#, "y".repeat(400_000));
    // U+FFFF is valid in JSON but refused by SQS in a message body: it goes by claim check too.
    let odd = "{\"n\":9,\"odd\":\"a\u{FFFF}b\"}";
    let posts: [(&Receiver, &str); 8] = [
        (&a, r#"{"n":1,"event":"push"}"#),
        (&b, r#"{"n":2,"event":"pr","ok":true}"#),
        (&a, r#"[{"n":3},{"n":4,"score":1.5}]"#),
        (&b, r#"{"n":5,"nested":{"k":[1,2]}}"#),
        (&a, r#"{"n":6}"#),
        (&b, &big),
        (&a, odd),
        (&b, &mid),
    ];
    std::thread::scope(|s| {
        for (r, body) in posts {
            s.spawn(move || assert_eq!(r.post("data", body, &[]), 200, "{body:.40}"));
        }
    });
    // A provider retry reaching the other receiver: both answer 200, the drain keeps one.
    for r in [&a, &b] {
        assert_eq!(
            r.post(
                "data",
                r#"{"n":8,"retry":true}"#,
                &[("X-GitHub-Delivery", "d-8")]
            ),
            200
        );
    }
    let claims: Vec<String> =
        serde_json::from_str(&moto.peer(&["list-keys", "claims", ""])).unwrap();
    assert_eq!(
        claims.len(),
        3,
        "the large body, the one above the queue's maximum and the U+FFFF one went by claim check: {claims:?}"
    );

    let target_config = dir.path().join("target.json");
    write_json(
        &target_config,
        &json!({"warehouse_path": "s3://lake/warehouse", "aws_region": "us-east-1",
                "aws_endpoint_url": moto.endpoint, "aws_allow_http": true}),
    );
    let out = tap(&config, None, None);
    assert!(
        out.status.success(),
        "tap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        records(&out.stdout).len(),
        10,
        "9 messages + 1 retried delivery kept once"
    );
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let states = pipe_into(
        Command::new(target_bin())
            .arg("--config")
            .arg(&target_config)
            .env("TMPDIR", &tmp)
            .envs(AWS_ENV),
        &out.stdout,
    );
    assert!(states.lines().count() >= 1, "the target printed a state");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the files staged for S3 and their directory are gone"
    );
    assert_eq!(
        moto.peer(&["queue-depth", "webhooks"]),
        "0",
        "the drain deleted every message"
    );
    let left: Vec<String> = serde_json::from_str(&moto.peer(&["list-keys", "claims", ""])).unwrap();
    assert_eq!(
        left, claims,
        "claim-check objects are left to the lifecycle rule (a pointer may come twice)"
    );

    let table: Value =
        serde_json::from_str(&moto.peer(&["read-delta", "s3://lake/warehouse/data"])).unwrap();
    assert_eq!(
        table["count"],
        10,
        "rows: {}",
        table["rows"].as_array().map_or(0, Vec::len)
    );
    let rows = table["rows"].as_array().unwrap();
    let ns: BTreeSet<i64> = rows.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (1..=10).collect());
    let big_row = rows.iter().find(|r| r["n"] == 7).unwrap();
    assert_eq!(big_row["blob"].as_str().unwrap().len(), 1_200_000);
    let mid_row = rows.iter().find(|r| r["n"] == 10).unwrap();
    assert_eq!(mid_row["blob"].as_str().unwrap(), "y".repeat(400_000));

    // `target-warehouse compact` on the S3 warehouse: a second stream loaded one record per
    // file, then its three files merged into one (one commit), rows unchanged.
    let small = dir.path().join("target-small.json");
    write_json(
        &small,
        &json!({"warehouse_path": "s3://lake/warehouse", "aws_region": "us-east-1",
                "aws_endpoint_url": moto.endpoint, "aws_allow_http": true, "batch_size_rows": 1}),
    );
    let mut stream = json!({"type": "SCHEMA", "stream": "extra", "schema": {"type": "object"}, "key_properties": []}).to_string();
    for i in 1..=3 {
        stream.push('\n');
        stream.push_str(
            &json!({"type": "RECORD", "stream": "extra", "record": {"i": i, "s": format!("r{i}")}})
                .to_string(),
        );
    }
    stream.push('\n');
    pipe_into(
        Command::new(target_bin())
            .arg("--config")
            .arg(&small)
            .env("TMPDIR", &tmp)
            .envs(AWS_ENV),
        stream.as_bytes(),
    );
    let read = |t: &str| -> Value {
        serde_json::from_str(&moto.peer(&["read-delta", &format!("s3://lake/warehouse/{t}")]))
            .unwrap()
    };
    let before = read("extra");
    assert_eq!(before["count"], 3);
    let compact = Command::new(target_bin())
        .args(["--config", &target_config.display().to_string(), "compact"])
        .env("RUST_LOG", "info")
        .env("TMPDIR", &tmp)
        .envs(AWS_ENV)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&compact.stderr);
    assert!(compact.status.success(), "{log}");
    assert!(
        compact.stdout.is_empty(),
        "compact prints nothing on stdout"
    );
    assert!(
        log.contains("extra") && log.contains("files=3") && log.contains("copied=true"),
        "{log}"
    );
    let after = read("extra");
    assert_eq!(after["count"], 3);
    assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
    let mut got: Vec<(i64, String)> = after["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["i"].as_i64().unwrap(),
                r["s"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![(1, "r1".into()), (2, "r2".into()), (3, "r3".into())]
    );
    assert_eq!(
        read("data")["count"],
        10,
        "the other table: nothing to merge, untouched"
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // An upsert on S3 that replaces rows of an earlier run: a deletion vector uploaded beside
    // the files (its staged copy gone), read back by deltalake through the object store.
    let dv_config = dir.path().join("target-dv.json");
    write_json(&dv_config, &json!({"deletion_vectors": true})); // the opt-in
    let keyed = |records: &[(i64, &str)]| {
        let mut s = json!({"type": "SCHEMA", "stream": "keyed", "key_properties": ["k"],
            "schema": {"type": "object", "properties": {"k": {"type": "integer"}}}})
        .to_string();
        for (k, v) in records {
            s.push('\n');
            s.push_str(
                &json!({"type": "RECORD", "stream": "keyed", "record": {"k": k, "v": v}})
                    .to_string(),
            );
        }
        s.push('\n');
        pipe_into(
            Command::new(target_bin())
                .arg("--config")
                .arg(&target_config)
                .arg("--config")
                .arg(&dv_config)
                .env("TMPDIR", &tmp)
                .envs(AWS_ENV),
            s.as_bytes(),
        );
    };
    keyed(&[(1, "a"), (2, "a"), (3, "a")]);
    keyed(&[(2, "b"), (4, "b")]);
    let dvs: Vec<String> = serde_json::from_str(&moto.peer(&[
        "list-keys",
        "lake",
        "warehouse/keyed/deletion_vector_",
    ]))
    .unwrap();
    assert_eq!(dvs.len(), 1, "{dvs:?}");
    let upserted = read("keyed");
    let mut got: Vec<(i64, String)> = upserted["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["k"].as_i64().unwrap(),
                r["v"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, "a".into()),
            (2, "b".into()),
            (3, "a".into()),
            (4, "b".into())
        ]
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let odd = rows.iter().find(|r| r["n"] == 9).unwrap();
    assert_eq!(
        odd["odd"], "a\u{FFFF}b",
        "the body's characters arrive as sent"
    );
    let score = rows.iter().find(|r| r["n"] == 4).unwrap();
    assert_eq!(score["score"], 1.5);
    let keys: Vec<String> =
        serde_json::from_str(&moto.peer(&["list-keys", "lake", "warehouse/data/_delta_log/"]))
            .unwrap();
    let first_commit = "warehouse/data/_delta_log/00000000000000000000.json";
    assert!(keys.iter().any(|k| k == first_commit), "{keys:?}");
    // What keeps concurrent writers safe: the store refuses to overwrite a commit that exists
    // (delta-rs writes each log entry with `If-None-Match: *`).
    assert_eq!(
        moto.peer(&["put-if-absent", "lake", first_commit]),
        "precondition-failed"
    );
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_drain_killed_after_the_spool_commit_loses_nothing_and_emits_nothing_twice() {
    let peers = peers();
    let moto = Moto::start(&peers);
    moto.peer(&["create-queue", "crash", "2"]);
    moto.peer(&["create-bucket", "claims"]);
    let dir = tempfile::tempdir().unwrap();
    let config = tap_config(dir.path(), &moto, "crash", 2);
    let receiver = Receiver::start_with_env(&config, &AWS_ENV);
    let n = 24;
    std::thread::scope(|s| {
        for i in 0..n {
            let r = &receiver;
            s.spawn(move || assert_eq!(r.post("data", &format!(r#"{{"n":{i}}}"#), &[]), 200));
        }
    });

    // Killed right after the spool commit, before any SQS delete: nothing emitted yet.
    let crashed = tap(&config, None, Some("drain-after-spool-append"));
    assert!(!crashed.status.success(), "the failpoint aborts the run");
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("failpoint"),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert!(records(&crashed.stdout).is_empty());
    // The visibility timeout (2 s) passes: SQS redelivers what the crashed drain had received.
    std::thread::sleep(Duration::from_millis(2500));

    let out = tap(&config, None, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = records(&out.stdout);
    let ns: Vec<i64> = got
        .iter()
        .map(|r| r["record"]["n"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = ns.iter().copied().collect();
    assert_eq!(unique, (0..n).collect(), "no message lost");
    assert_eq!(ns.len(), n as usize, "none emitted twice: {ns:?}");
    let drained = stderr
        .lines()
        .find(|l| l.contains("drained SQS into the spool"))
        .unwrap_or_else(|| panic!("no drain summary in {stderr}"));
    assert!(
        !drained.contains("skipped=0 "),
        "the redelivered messages were recognised by their ids: {drained}"
    );
    assert_eq!(moto.peer(&["queue-depth", "crash"]), "0");

    // The next run, handed the last state, emits nothing again.
    let state = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.contains("\"STATE\""))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].clone())
        .expect("a state");
    let state_file = dir.path().join("state.json");
    let mut f = std::fs::File::create(&state_file).unwrap();
    f.write_all(state.to_string().as_bytes()).unwrap();
    let again = tap(&config, Some(&state_file), None);
    assert!(again.status.success());
    assert!(records(&again.stdout).is_empty());
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_following_tap_long_polls_the_queue_and_emits_each_delivery_as_it_arrives() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    let peers = peers();
    let moto = Moto::start(&peers);
    moto.peer(&["create-queue", "follow", "30"]);
    moto.peer(&["create-bucket", "claims"]);
    let dir = tempfile::tempdir().unwrap();
    let config = tap_config(dir.path(), &moto, "follow", 30);
    let receiver = Receiver::start_with_env(&config, &AWS_ENV);
    let mut child = Command::new(tap_bin())
        .args(["--follow", "--config"])
        .arg(&config)
        .envs(AWS_ENV)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let reader = {
        let lines = lines.clone();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&l).unwrap());
            }
        })
    };
    let emitted = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let got: Vec<u64> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m["type"] == "RECORD")
                .filter_map(|m| m["record"]["n"].as_u64())
                .collect();
            if got.len() as u64 >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "emitted {got:?}, want {n}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Each delivery goes receiver → SQS → the follower's drain → spool → stdout, while the run
    // keeps going.
    for n in 1..=3 {
        assert_eq!(receiver.post("data", &format!(r#"{{"n":{n}}}"#), &[]), 200);
        assert_eq!(emitted(n), (1..=n).collect::<Vec<_>>());
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "the follower after SIGTERM: {status}");
    let lines = lines.lock().unwrap();
    let last_record = lines.iter().rev().find(|m| m["type"] == "RECORD").unwrap();
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "STATE", "a final STATE: {last}");
    assert_eq!(
        last["value"]["bookmarks"]["data"]["replication_key_value"],
        last_record["record"]["_sdc_sequence"]
    );
}
