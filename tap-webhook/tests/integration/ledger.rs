//! The refused-deliveries ledger against a real `serve`: an old spool gains it, a flood stays
//! bounded while accepted posts all land, a full spool is not written with its own refusals.

use serde_json::json;

use crate::harness::{client, Server};
use crate::operate::{cli, config, contains, jsonl, refused_rows, spool_bytes, API_KEY, URL_TOKEN};

#[test]
fn a_spool_from_before_the_ledger_opens_and_records_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let spool = dir.path().join("spool.sqlite");
    {
        // The previous schema: no `refused` table, one message already stored.
        let conn = tap_webhook::spool::open(&spool).unwrap();
        conn.execute_batch(
            "DROP TABLE refused;
             INSERT INTO messages (seq, id, source, received_at, part, headers, query, body)
             VALUES (5, 'old-1', 'data', 5, 0, '{}', '{}', '{\"old\":true}');",
        )
        .unwrap();
    }
    let server = Server::start(&cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        client()
            .post(server.url("/webhooks/data"))
            .body("[1]")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 400);
    let rows = refused_rows(&cfg, 1);
    assert_eq!(rows[0]["code"], "UNSUPPORTED_JSON_TYPE");
    assert_eq!(rows[0]["body"], "[1]");
    let old = jsonl(&cli(&cfg, &["deliveries"]));
    assert_eq!(old[0]["id"], "old-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_refusals_stays_bounded_and_accepted_posts_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({"refused_ledger_max_rows": 100}));
    let server = Server::start(&cfg);
    let http = client();
    let mut tasks = Vec::new();
    // Below the server's connection cap (it closes connections beyond it).
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..1_500 {
        let http = http.clone();
        let slots = slots.clone();
        let (url, body) = match i % 5 {
            0 => (server.url("/webhooks/data"), format!(r#"{{"i":{i}}}"#)),
            _ => (server.url("/webhooks/data"), "{not json".repeat(200)),
        };
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            http.post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 300);
    assert_eq!(
        jsonl(&cli(&cfg, &["deliveries", "--limit", "10000"])).len(),
        300
    );
    // One more refusal after the flood, once its row is listed, the table was trimmed in
    // that transaction or an earlier one: at most the bound plus one trimming interval.
    let rows = refused_rows(&cfg, 100);
    let conn = tap_webhook::spool::open(&dir.path().join("spool.sqlite")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM refused", [], |r| r.get(0))
        .unwrap();
    assert!(n <= 100 + 256, "{n} rows");
    assert!(rows
        .iter()
        .all(|r| r["body"].as_str().unwrap().len() <= 4096));
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("webhook_refusals_unrecorded_total"),
        "{metrics}"
    );
    drop(server);
    // Restarted, the writer trims at open: the bound holds exactly.
    let server = Server::start(&cfg);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM refused", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 100);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_is_not_written_with_its_own_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({"max_spool_bytes": 1}));
    let server = Server::start(&cfg);
    let http = client();
    let r = http
        .post(server.url("/webhooks/data"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Refused before the spool is asked (no key): recorded, after the 503 in the queue.
    let r = http
        .post(server.url("/webhooks/keyed"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let rows = refused_rows(&cfg, 1);
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["MISSING_CREDENTIALS"]);
}

/// Found by attack: a URL pasted with its `?` encoded (`/webhooks/tok%3Ftoken=…`) or its
/// token as a path segment was refused, and the live token kept in the ledger's source and
/// reason, shown by `deliveries --refused` and the admin page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_typed_into_the_path_is_not_kept_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let server = Server::start(&cfg);
    let http = client();
    for path in [
        format!("/webhooks/tok%3Ftoken={URL_TOKEN}"),
        format!("/webhooks/tok/{URL_TOKEN}"),
        format!("/webhooks/keyed%3Fkey={API_KEY}"),
    ] {
        let r = http
            .post(server.url(&path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let rows = refused_rows(&cfg, 3);
    for r in &rows {
        let text = r.to_string();
        assert!(text.contains("[REDACTED]"), "{text}");
        assert!(
            !text.contains(URL_TOKEN) && !text.contains(API_KEY),
            "{text}"
        );
    }
    drop(server);
    let all = spool_bytes(dir.path());
    assert!(!contains(&all, URL_TOKEN) && !contains(&all, API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_typed_where_the_source_goes_is_masked_in_the_log_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let server = Server::start(&cfg);
    let http = client();
    for path in [
        format!("/webhooks/{URL_TOKEN}"),
        format!("/webhooks/x{API_KEY}y"),
    ] {
        let r = http
            .post(server.url(&path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // The log is written by its own thread: wait for both lines.
    let mut refused = Vec::new();
    for _ in 0..100 {
        refused = server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("delivery refused"))
            .cloned()
            .collect();
        if refused.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refused.len(), 2, "{refused:?}");
    for line in &refused {
        assert!(
            line.contains("[REDACTED]") && line.contains("UNKNOWN_SOURCE"),
            "{line}"
        );
    }
    let all = server.log.lock().unwrap().join("\n");
    assert!(!all.contains(URL_TOKEN) && !all.contains(API_KEY), "{all}");
    let rows = refused_rows(&cfg, 2);
    for row in &rows {
        assert!(!row.to_string().contains(URL_TOKEN), "{row}");
        assert!(!row.to_string().contains(API_KEY), "{row}");
    }
}
