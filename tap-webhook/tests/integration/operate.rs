//! Day-two commands against a real `serve`: `deliveries` (list, filters, show, the refused
//! ledger), `status` before and after a tap run, `urls`, `--replay-since`, the admin page's
//! access rules; and the ledger's bounds under a flood, with an old spool, without secrets.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{client, run_tap, write_config, Server, BIN};

pub(crate) const API_KEY: &str = "api-key-secret-0001";
pub(crate) const URL_TOKEN: &str = "url-token-secret-0002";
pub(crate) const GH_SECRET: &str = "It's a Secret to Everybody";

/// Runs `tap-webhook ARGS --config CONFIG`; asserts success; stdout.
pub(crate) fn cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs it expecting failure; stderr.
pub(crate) fn cli_err(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

pub(crate) fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub(crate) fn config(dir: &Path, extra: Value) -> std::path::PathBuf {
    let mut c = json!({
        "sources": {
            "keyed": {"api_keys": [API_KEY], "api_key_header": "X-Api-Key",
                      "capture_headers": ["X-Api-Key"]},
            "tok": {"url_tokens": [URL_TOKEN]},
            "gh": {"signature": {"scheme": "github", "secrets": [GH_SECRET]}},
            "data": {}
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    write_config(dir, c)
}

/// Every file of the spool (database, WAL) as bytes.
pub(crate) fn spool_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("spool.sqlite")
        {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

pub(crate) fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Waits until the ledger lists `n` refusals (it is written by the writer thread after the
/// reply): polls the command, the signal being the rows themselves.
pub(crate) fn refused_rows(config: &Path, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let rows = jsonl(&cli(
            config,
            &["deliveries", "--refused", "--limit", "1000"],
        ));
        if rows.len() >= n {
            return rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the ledger never held {n} refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_lists_filters_shows_and_keeps_refusals_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let server = Server::start(&cfg);
    let http = client();
    let post = |path: &str, body: &str, headers: &[(&str, &str)]| {
        let mut req = http.post(server.url(path)).body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.header("User-Agent", "ops-test/1").send()
    };
    // Accepted: three sources, delivery ids, a nested field to filter on.
    for (i, status) in ["paid", "open", "paid"].iter().enumerate() {
        let body = format!(
            r#"{{"n":{i},"status":"{status}","order":{{"total":{}}}}}"#,
            i * 10
        );
        let r = post(
            "/webhooks/data",
            &body,
            &[("X-GitHub-Delivery", &format!("d-{i}"))],
        );
        assert_eq!(r.await.unwrap().status(), 200);
    }
    let r = post("/webhooks/keyed", r#"{"k":1}"#, &[("X-Api-Key", API_KEY)]);
    assert_eq!(r.await.unwrap().status(), 200);
    let r = post(
        &format!("/webhooks/tok?token={URL_TOKEN}"),
        r#"{"t":1}"#,
        &[],
    );
    assert_eq!(r.await.unwrap().status(), 200);
    // Refused: wrong key (a secret-looking value), wrong URL token, bad signature, bad JSON
    // holding markup, unknown source.
    let refusals = [
        post(
            "/webhooks/keyed",
            r#"{"k":2}"#,
            &[("X-Api-Key", "wrong-key-value-777")],
        )
        .await,
        post("/webhooks/tok?token=wrong-token-value-888", "{}", &[]).await,
        post(
            "/webhooks/gh",
            "{}",
            &[
                ("X-Hub-Signature-256", "sha256=00ff"),
                ("X-GitHub-Delivery", "gh-9"),
            ],
        )
        .await,
        post("/webhooks/data", "<script>alert(1)</script>", &[]).await,
        post("/webhooks/nowhere", "{}", &[]).await,
    ];
    let statuses: Vec<u16> = refusals
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [401, 401, 401, 400, 404]);

    // The list, newest first; JSON lines when piped (the default here: stdout is a pipe).
    let all = jsonl(&cli(&cfg, &["deliveries"]));
    assert_eq!(all.len(), 5);
    let seqs: Vec<i64> = all.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(all[0]["source"], "tok");
    let data = jsonl(&cli(&cfg, &["deliveries", "--source", "data"]));
    assert_eq!(data.len(), 3);
    let paid = jsonl(&cli(&cfg, &["deliveries", "--where", "status=paid"]));
    assert_eq!(
        paid.iter().map(|m| &m["delivery_id"]).collect::<Vec<_>>(),
        ["d-2", "d-0"]
    );
    let by_pointer = jsonl(&cli(&cfg, &["deliveries", "--where", "/order/total=10"]));
    assert_eq!(by_pointer.len(), 1);
    assert_eq!(by_pointer[0]["delivery_id"], "d-1");
    let by_id = jsonl(&cli(&cfg, &["deliveries", "--delivery-id", "d-0"]));
    assert_eq!(by_id.len(), 1);
    assert_eq!(jsonl(&cli(&cfg, &["deliveries", "--limit", "2"])).len(), 2);
    assert_eq!(jsonl(&cli(&cfg, &["deliveries", "--since", "1h"])).len(), 5);
    assert!(jsonl(&cli(&cfg, &["deliveries", "--until", "1h"])).is_empty());
    assert!(jsonl(&cli(&cfg, &["deliveries", "--since", "2999-01-01"])).is_empty());
    let e = cli_err(&cfg, &["deliveries", "--since", "yesterday"]);
    assert!(e.contains("--since") && e.contains("RFC 3339"), "{e}");
    let e = cli_err(&cfg, &["deliveries", "--where", "status"]);
    assert!(e.contains("FIELD=VALUE"), "{e}");

    // One message in full: headers as stored (the key redacted), the body parsed.
    let keyed = jsonl(&cli(&cfg, &["deliveries", "--source", "keyed"]));
    let id = keyed[0]["id"].as_str().unwrap();
    let shown = jsonl(&cli(
        &cfg,
        &["deliveries", "--show", id, "--format", "jsonl"],
    ));
    assert_eq!(shown[0]["body"], json!({"k": 1}));
    assert_eq!(shown[0]["headers"]["x-api-key"], "[REDACTED]");
    assert_eq!(shown[0]["headers"]["user-agent"], "ops-test/1");
    let text = cli(&cfg, &["deliveries", "--show", id, "--format", "table"]);
    assert!(
        text.contains("x-api-key: [REDACTED]") && text.contains("\"k\": 1"),
        "{text}"
    );
    let table = cli(&cfg, &["deliveries", "--format", "table"]);
    assert!(
        table.starts_with("RECEIVED") && table.lines().count() == 6,
        "{table}"
    );
    let e = cli_err(&cfg, &["deliveries", "--show", "no-such-id"]);
    assert!(e.contains("no-such-id"), "{e}");

    // The ledger: every refusal, newest first, with what explains it and nothing secret.
    let refused = refused_rows(&cfg, 5);
    let codes: Vec<&str> = refused
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "UNKNOWN_SOURCE",
            "INVALID_JSON",
            "INVALID_SIGNATURE",
            "INVALID_CREDENTIALS",
            "INVALID_CREDENTIALS"
        ]
    );
    for r in &refused {
        assert!(
            r["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{r}"
        );
        assert_eq!(r["user_agent"], "ops-test/1");
    }
    let bad_json = &refused[1];
    assert_eq!(
        (bad_json["status"].as_u64(), bad_json["source"].as_str()),
        (Some(400), Some("data"))
    );
    assert_eq!(bad_json["body"], "<script>alert(1)</script>");
    assert_eq!(bad_json["size"], 25);
    assert_eq!(refused[2]["delivery_id"], "gh-9");
    assert!(refused[2]["body"].is_null(), "bodies only for JSON errors");
    let gh = jsonl(&cli(&cfg, &["deliveries", "--refused", "--source", "gh"]));
    assert_eq!(gh.len(), 1);
    let one = cli(
        &cfg,
        &[
            "deliveries",
            "--refused",
            "--show",
            &bad_json["id"].to_string(),
            "--format",
            "table",
        ],
    );
    assert!(
        one.contains("400 INVALID_JSON") && one.contains("<script>alert(1)</script>"),
        "{one}"
    );
    let e = cli_err(&cfg, &["deliveries", "--refused", "--where", "a=1"]);
    assert!(e.contains("--where"), "{e}");

    // No credential anywhere in the spool: not the valid ones, not the wrong ones sent.
    let bytes = spool_bytes(dir.path());
    for secret in [
        API_KEY,
        URL_TOKEN,
        "wrong-key-value-777",
        "wrong-token-value-888",
        "00ff",
    ] {
        assert!(!contains(&bytes, secret), "{secret} is in the spool");
    }
    assert!(
        contains(&bytes, "INVALID_SIGNATURE"),
        "the ledger is in the spool file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_what_waits_before_and_after_a_tap_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({"max_spool_bytes": 100_000_000}));
    let server = Server::start(&cfg);
    let http = client();
    for i in 0..4 {
        let r = http
            .post(server.url("/webhooks/data"))
            .body(format!(r#"{{"i":{i}}}"#));
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    let r = http.post(server.url("/webhooks/keyed")).body("{}");
    assert_eq!(r.send().await.unwrap().status(), 401);
    refused_rows(&cfg, 1);
    let status: Value = serde_json::from_str(&cli(&cfg, &["status", "--format", "json"])).unwrap();
    let data = &status["sources"]["data"];
    assert_eq!(
        (data["waiting"].as_u64(), data["held"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(data["waiting_bytes"], 4 * 7);
    assert!(
        data["oldest_received_at"].as_str().unwrap()
            <= data["newest_received_at"].as_str().unwrap()
    );
    assert_eq!(
        status["sources"]["keyed"]["refused_last_hour"],
        json!({"MISSING_CREDENTIALS": 1})
    );
    assert_eq!(status["sources"]["keyed"]["waiting"], 0);
    assert_eq!(status["max_spool_bytes"], 100_000_000);
    assert!(status["spool_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["producer"].as_str().unwrap().len(), 36);

    // A tap run; its state makes everything it emitted no longer waiting.
    let lines = run_tap(&cfg, &[]);
    let state = lines.iter().rev().find(|l| l["type"] == "STATE").unwrap()["value"].clone();
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let r = http.post(server.url("/webhooks/data")).body(r#"{"i":9}"#);
    assert_eq!(r.send().await.unwrap().status(), 200);
    let after: Value = serde_json::from_str(&cli(
        &cfg,
        &[
            "status",
            "--format",
            "json",
            "--state",
            state_file.to_str().unwrap(),
        ],
    ))
    .unwrap();
    let data = &after["sources"]["data"];
    assert_eq!(
        (data["waiting"].as_u64(), data["held"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(after["from_state"], true);
    let text = cli(&cfg, &["status", "--state", state_file.to_str().unwrap()]);
    assert!(
        text.contains("MISSING_CREDENTIALS×1") && text.contains("after the state's bookmark"),
        "{text}"
    );
}

#[test]
fn urls_give_each_source_its_url_auth_and_verification() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let rows = jsonl(&cli(
        &cfg,
        &["urls", "--base-url", "https://hooks.example.com/"],
    ));
    let by: std::collections::BTreeMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["source"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by["data"]["url"], "https://hooks.example.com/webhooks/data");
    assert_eq!(by["data"]["auth"], "none");
    assert_eq!(
        by["tok"]["url"],
        format!("https://hooks.example.com/webhooks/tok?token={URL_TOKEN}")
    );
    assert_eq!(by["keyed"]["auth"], "API key in header x-api-key");
    assert_eq!(by["gh"]["verifies"], "github signature");
    let table = cli(
        &cfg,
        &[
            "urls",
            "--base-url",
            "https://h.example",
            "--format",
            "table",
        ],
    );
    assert!(
        table.starts_with("SOURCE") && table.contains("https://h.example/webhooks/gh"),
        "{table}"
    );
    let e = cli_err(&cfg, &["urls", "--base-url", "hooks.example.com"]);
    assert!(e.contains("--base-url"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_emits_the_window_as_the_first_run_did_and_prunes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let server = Server::start(&cfg);
    let http = client();
    let mut times = Vec::new();
    for i in 0..6 {
        let r = http
            .post(server.url("/webhooks/data"))
            .body(format!(r#"{{"i":{i}}}"#));
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        times.push(v["data"]["received_at"].as_str().unwrap().to_owned());
    }
    let first = run_tap(&cfg, &[]);
    let state = first.iter().rev().find(|l| l["type"] == "STATE").unwrap()["value"].clone();
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    // A later run with that state prunes (retention 0) and emits nothing.
    let later = run_tap(&cfg, &["--state", state_file.to_str().unwrap()]);
    assert!(later.iter().all(|l| l["type"] != "RECORD"));
    // Post again, replay a window: only what is still held, in the window.
    for i in 6..10 {
        let r = http
            .post(server.url("/webhooks/data"))
            .body(format!(r#"{{"i":{i}}}"#));
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        times.push(v["data"]["received_at"].as_str().unwrap().to_owned());
    }
    let second = run_tap(&cfg, &["--state", state_file.to_str().unwrap()]);
    let records = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["type"] == "RECORD")
            .map(|l| l["record"].clone())
            .collect()
    };
    let firsts = records(&second);
    assert_eq!(firsts.len(), 4);
    let replay = run_tap(
        &cfg,
        &["--replay-since", &times[7], "--replay-until", &times[8]],
    );
    // The same records, keys and sequences; the producer marked as this replay's own (so a
    // target's mark for the spool's producer is never moved by a window).
    let producer = firsts[0]["_sdc_producer"].as_str().unwrap().to_owned();
    let without_producer = |rs: Vec<Value>| -> Vec<Value> {
        rs.into_iter()
            .map(|mut r| {
                let p = r.as_object_mut().unwrap().remove("_sdc_producer").unwrap();
                assert!(p.as_str().unwrap().starts_with(&producer), "{p}");
                r
            })
            .collect()
    };
    let replayed = records(&replay);
    assert!(replayed.iter().all(|r| r["_sdc_producer"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{producer}/replay-"))));
    assert_eq!(
        without_producer(replayed),
        without_producer(firsts[1..3].to_vec()),
        "same records, keys and sequences"
    );
    assert!(
        replay.iter().all(|l| l["type"] != "STATE"),
        "a replay writes no STATE"
    );
    // A replay with a state flag is refused; a reversed window too.
    let e = cli_err(
        &cfg,
        &[
            "--replay-since",
            "1h",
            "--state",
            state_file.to_str().unwrap(),
        ],
    );
    assert!(e.contains("--state"), "{e}");
    let e = cli_err(
        &cfg,
        &["--replay-since", &times[8], "--replay-until", &times[7]],
    );
    assert!(e.contains("window is empty"), "{e}");
    // The replay pruned nothing: the next regular run still emits the same four.
    assert_eq!(
        records(&run_tap(&cfg, &["--state", state_file.to_str().unwrap()])),
        firsts
    );
}

/// Found by attack: `max_records` (or `max_seconds`) cut a replay short with exit 0 and no
/// STATE to continue from, so "reload last Tuesday" silently gave back part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_not_cut_short_by_the_run_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({"max_records": 2}));
    let server = Server::start(&cfg);
    let http = client();
    for i in 0..5 {
        let r = http
            .post(server.url("/webhooks/data"))
            .body(format!(r#"{{"i":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The budget still bounds a regular run.
    let regular = run_tap(&cfg, &[]);
    assert_eq!(regular.iter().filter(|l| l["type"] == "RECORD").count(), 2);
    let replay = run_tap(&cfg, &["--replay-since", "1h"]);
    let got: Vec<i64> = replay
        .iter()
        .filter(|l| l["type"] == "RECORD")
        .map(|l| l["record"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4], "the whole window, budget or not");
}

/// Found by attack: a body holding a C1 control (U+009B, a terminal's CSI) reached the terminal
/// raw through `deliveries --show` (JSON escapes only C0 controls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_does_not_let_a_body_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({}));
    let server = Server::start(&cfg);
    let r = client()
        .post(server.url("/webhooks/data"))
        .body(r#"{"x":"a\u009b31mRED\u001b[0m"}"#)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let id = v["data"]["message_id"].as_str().unwrap();
    let shown = cli(&cfg, &["deliveries", "--show", id, "--format", "table"]);
    assert!(!shown.contains(['\u{9b}', '\u{1b}']), "{shown:?}");
    assert!(shown.contains("RED"), "{shown}");
}
