//! The receiver's view of its spool over time: SPOOL_FULL clears by itself once the tap prunes,
//! and a spool file removed, replaced or corrupt stops every 2xx.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{client, last_state, run_tap, write_config, Server};

/// Posts `body` to the default source; the status and the reply's error code.
async fn post(server: &Server, body: &str) -> (u16, String) {
    let resp = client()
        .post(server.url("/webhooks/data"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    let code = v["error"]
        .as_str()
        .map(|e| e.split(':').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, code)
}

/// The value of a gauge in /metrics.
async fn gauge(server: &Server, name: &str) -> u64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_full_clears_by_itself_once_the_tap_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let max = 256 * 1024;
    let config = write_config(dir.path(), json!({"max_spool_bytes": max}));
    let server = Server::start(&config);
    let pad = "x".repeat(16 * 1024);

    // Fill until the spool says it is full (its size is re-read twice a second).
    let mut stored = 0;
    loop {
        let (status, code) = post(&server, &format!(r#"{{"n":{stored},"pad":"{pad}"}}"#)).await;
        if status == 503 {
            assert_eq!(code, "SPOOL_FULL");
            break;
        }
        assert_eq!(status, 200);
        stored += 1;
        assert!(stored < 1_000, "the spool never said it was full");
    }
    // The gauges follow the same reading, so they catch up with the last writes within a
    // reading or two (a loaded machine may delay one).
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&server, "webhook_spool_messages").await != stored {
        assert!(
            Instant::now() < deadline,
            "webhook_spool_messages not {stored} 5 s after the last write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gauge(&server, "webhook_spool_bytes").await > max);

    // A tap run emits everything; the next one, handed its state, prunes it all.
    let lines = run_tap(&config, &[]);
    let state = dir.path().join("state.json");
    std::fs::write(&state, last_state(&lines).unwrap().to_string()).unwrap();
    run_tap(&config, &["--state", state.to_str().unwrap()]);

    // Without a restart, deliveries are taken again within a second or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, code) = post(&server, r#"{"after":"prune"}"#).await;
        if status == 200 {
            break;
        }
        assert_eq!((status, code.as_str()), (503, "SPOOL_FULL"));
        assert!(
            Instant::now() < deadline,
            "still SPOOL_FULL 5 s after the spool was pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gauges come from the same reading: the pruned spool, then the one new message.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge(&server, "webhook_spool_messages").await != 1 {
        assert!(
            Instant::now() < deadline,
            "webhook_spool_messages not 1 5 s after the prune and one post"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gauge(&server, "webhook_spool_bytes").await < max);
}

/// What happens to a spool file under a running receiver.
#[derive(Debug, Clone, Copy)]
enum Mishap {
    Removed,
    Replaced,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_file_removed_or_replaced_while_serving_stops_every_2xx() {
    for mishap in [Mishap::Removed, Mishap::Replaced] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&write_config(dir.path(), json!({})));
        for i in 0..5 {
            assert_eq!(post(&server, &format!(r#"{{"i":{i}}}"#)).await.0, 200);
        }
        let spool = dir.path().join("spool.sqlite");
        match mishap {
            Mishap::Removed => std::fs::remove_file(&spool).unwrap(),
            Mishap::Replaced => {
                let other = dir.path().join("other.sqlite");
                std::fs::write(&other, b"").unwrap();
                std::fs::rename(&other, &spool).unwrap();
            }
        }
        let at = Instant::now();
        // Posts go on: the first 503 within ~2 s (the watch looks twice a second), and
        // nothing but 503 SPOOL_UNAVAILABLE from then on, never a 200 into the lost file.
        let mut refused_at = None;
        while at.elapsed() < Duration::from_secs(4) {
            let (status, code) = post(&server, r#"{"after":"mishap"}"#).await;
            match (status, refused_at) {
                (503, _) => {
                    assert_eq!(code, "SPOOL_UNAVAILABLE", "{mishap:?}");
                    refused_at.get_or_insert(at.elapsed());
                }
                (200, None) => {}
                _ => panic!("{mishap:?}: {status} {code} after the spool was refused"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused_at = refused_at.expect("never refused");
        assert!(
            refused_at < Duration::from_secs(2),
            "{mishap:?}: refused only after {refused_at:?}"
        );
        assert!(
            server
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("ERROR") && l.contains("spool file")),
            "{mishap:?}: no error line naming the spool file"
        );
    }
}

/// Writes a spool of 500 messages and closes it (the WAL folded into the file), then
/// overwrites a page among the messages with garbage, as a failing disk would: a page only a
/// read of those messages (or a check) meets.
fn corrupt_spool(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("spool.sqlite");
    {
        let conn = tap_webhook::spool::open(&path).unwrap();
        let pad = "x".repeat(300);
        for i in 0..500 {
            conn.execute(
                "INSERT INTO messages (id, source, received_at, headers, query, body)
                 VALUES (?1, 'data', ?2, '{}', '{}', ?3)",
                rusqlite::params![format!("m{i}"), i, format!(r#"{{"i":{i},"p":"{pad}"}}"#)],
            )
            .unwrap();
        }
    }
    assert!(
        !dir.join("spool.sqlite-wal").exists(),
        "the WAL was folded in"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() > 40 * page);
    for (i, b) in bytes[20 * page..21 * page].iter_mut().enumerate() {
        *b = (i * 37 % 251) as u8;
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn serve_the_tap_and_test_refuse_a_corrupt_spool_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let spool = corrupt_spool(dir.path());
    let config = write_config(dir.path(), json!({}));
    for args in [vec!["serve"], vec![], vec!["--test"], vec!["--discover"]] {
        let mut child = std::process::Command::new(crate::harness::BIN)
            .args(&args)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A serve that starts on the corrupt spool would never exit: stop it and say so.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} kept running on a corrupt spool");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        for needle in [
            spool.to_str().unwrap(),
            "is corrupt",
            "SQLite says",
            ".recover",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: no {needle:?} in {stderr}"
            );
        }
        assert!(!stderr.contains("listening on"), "{args:?}: {stderr}");
    }
}
