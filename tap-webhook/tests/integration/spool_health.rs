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
    assert!(gauge(&server, "webhook_spool_bytes").await > max);
    assert_eq!(gauge(&server, "webhook_spool_messages").await, stored);

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
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(gauge(&server, "webhook_spool_bytes").await < max);
    assert_eq!(gauge(&server, "webhook_spool_messages").await, 1);
}
