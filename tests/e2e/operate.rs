//! Day-two operation end to end: a replayed receipt window piped into a new warehouse equals the
//! first load of those rows (read back by DuckDB and deltalake), and the admin status page as a
//! real browser (headless Chromium) renders it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{
    peers, pipe_into, read_table, run_ok, tap_bin, target_bin, write_tap_config, Receiver,
};

/// `tap-webhook ARGS | target-warehouse` into `warehouse`.
fn load(tap_config: &Path, args: &[&str], warehouse: &Path) {
    let out = Command::new(tap_bin())
        .arg("--config")
        .arg(tap_config)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tap {args:?} failed");
    let target_config = warehouse.with_extension("json");
    std::fs::write(
        &target_config,
        json!({"warehouse_path": warehouse}).to_string(),
    )
    .unwrap();
    pipe_into(
        Command::new(target_bin())
            .arg("--config")
            .arg(&target_config),
        &out.stdout,
    );
}

/// POSTs over a socket (HTTP/1.1, `Connection: close`) and returns the reply's
/// `received_at` (empty for a refusal).
fn post(base: &str, source: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "POST /webhooks/{source} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let json = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {reply}"));
    v["data"]["received_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_replayed_window_loads_into_a_new_warehouse_equal_to_the_first_load() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"retention_hours": 24, "sources": {"orders": {}}}),
    );
    let receiver = Receiver::start(&tap_config);
    let times: Vec<String> = (0..9)
        .map(|i| {
            let body = format!(r#"{{"order":{i},"total":{}.5,"note":"n{i}"}}"#, i * 3);
            post(&receiver.base, "orders", &body)
        })
        .collect();
    // The regular pipeline's first load, then a replay of deliveries 3..=6 into a new warehouse.
    let first = dir.path().join("warehouse");
    load(&tap_config, &[], &first);
    let rebuilt = dir.path().join("rebuilt");
    load(
        &tap_config,
        &["--replay-since", &times[3], "--replay-until", &times[6]],
        &rebuilt,
    );
    let all = read_table(&peers, &first.join("orders"));
    let window = read_table(&peers, &rebuilt.join("orders"));
    assert_eq!(all["duckdb"]["count"], 9);
    assert_eq!(window["duckdb"]["count"], 4);
    assert_eq!(window["deltalake"]["count"], 4);
    assert_eq!(window["duckdb"]["columns"], all["duckdb"]["columns"]);
    // Every column but the load's own time (`_sdc_batched_at`, when the target wrote the batch)
    // and the producer, which a replay marks as its own (`<spool's producer>/replay-<id>`).
    let rows = |t: &Value| -> Vec<Value> {
        t["duckdb"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let r_obj = r.as_object_mut().unwrap();
                r_obj.remove("_sdc_batched_at");
                r_obj.remove("_sdc_producer");
                r
            })
            .collect()
    };
    let expected: Vec<Value> = rows(&all)
        .into_iter()
        .filter(|r| (3..=6).contains(&r["order"].as_i64().unwrap()))
        .collect();
    let got = rows(&window);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got, expected,
        "same rows, sequences and keys as the first load"
    );
}

/// Found by attack: a window replayed into the live warehouse while the regular pipeline was
/// behind moved the target's mark for the spool's producer past deliveries before the window
/// that it never loaded; the next regular run's records up to the window were skipped as
/// replays (and its state then let them be pruned). A window replayed before an earlier one
/// into a new warehouse made the earlier one skipped too.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn a_replay_into_the_live_warehouse_never_makes_the_regular_run_skip() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(dir.path(), json!({"sources": {"orders": {}}}));
    let receiver = Receiver::start(&tap_config);
    let order = |i: i64| post(&receiver.base, "orders", &format!(r#"{{"order":{i}}}"#));
    let live = dir.path().join("warehouse");
    let times: Vec<String> = (0..3).map(order).collect();
    let target_config = live.with_extension("json");
    std::fs::write(&target_config, json!({"warehouse_path": live}).to_string()).unwrap();
    let regular = |state: Option<&Path>| -> String {
        let mut tap = Command::new(tap_bin());
        tap.arg("--config").arg(&tap_config);
        if let Some(s) = state {
            tap.arg("--state").arg(s);
        }
        let out = tap.stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success());
        let printed = pipe_into(
            Command::new(target_bin())
                .arg("--config")
                .arg(&target_config),
            &out.stdout,
        );
        printed.lines().last().unwrap_or_default().to_owned()
    };
    let state = dir.path().join("state.json");
    std::fs::write(&state, regular(None)).unwrap();
    // The pipeline falls behind: 3..=9 wait; an operator replays 7..=8 into the live table.
    let mut times = times;
    times.extend((3..10).map(order));
    load(
        &tap_config,
        &["--replay-since", &times[7], "--replay-until", &times[8]],
        &live,
    );
    regular(Some(&state));
    let orders = |t: &Value| -> Vec<i64> {
        let mut v: Vec<i64> = t["duckdb"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["order"].as_i64().unwrap())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let table = read_table(&peers, &live.join("orders"));
    assert_eq!(
        orders(&table),
        (0..10).collect::<Vec<_>>(),
        "every acked order loaded"
    );
    // Two windows into a new warehouse, the later one first: both load (0..=2 were pruned by
    // the run handed the first state).
    let rebuilt = dir.path().join("rebuilt");
    load(
        &tap_config,
        &["--replay-since", &times[7], "--replay-until", &times[8]],
        &rebuilt,
    );
    load(
        &tap_config,
        &["--replay-since", &times[3], "--replay-until", &times[4]],
        &rebuilt,
    );
    let table = read_table(&peers, &rebuilt.join("orders"));
    assert_eq!(orders(&table), [3, 4, 7, 8]);
}

/// The browser: Debian's `chromium`; a test that needs it fails (never skips) without it.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("this test needs headless Chromium: run `bash tests/run.sh` (installs Debian's chromium as root) or `apt-get install chromium`");
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
fn browse(profile: &Path, url: &str, extra: &[&str]) -> String {
    run_ok(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stderr(Stdio::null()),
    )
}

#[test]
#[ignore = "needs headless Chromium (bash tests/run.sh)"]
fn the_admin_page_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let token = "browser-admin-token-0001";
    let tap_config = write_tap_config(
        dir.path(),
        json!({"admin_listen_address": "127.0.0.1:0", "admin_tokens": [token],
               "sources": {"shop": {"api_keys": ["shop-key-0123456789"]}, "github": {}}}),
    );
    let mut cmd = Command::new(tap_bin());
    cmd.args(["serve", "--config"])
        .arg(&tap_config)
        .env("RUST_LOG", "info");
    let (receiver, admin) = Receiver::start_with_admin(&mut cmd);
    let hostile = r#"{"comment":"<script>document.title='owned'</script><b>bold</b>"}"#;
    post(&receiver.base, "github", hostile);
    post(
        &receiver.base,
        "github",
        r#"{"action":"opened","number":7}"#,
    );
    // Refused: no API key (401 MISSING_CREDENTIALS).
    post(&receiver.base, "shop", r#"{"id":1}"#);
    let profile = dir.path().join("chromium-profile");

    let dom = browse(
        &profile,
        &format!("{admin}/admin?token={token}"),
        &["--dump-dom"],
    );
    for want in [
        "shop",
        "github",
        "MISSING_CREDENTIALS",
        "Last requests refused",
        "max_spool_bytes",
    ] {
        assert!(dom.contains(want), "{want} missing from the page:\n{dom}");
    }
    let id = dom
        .split("/admin/delivery/")
        .nth(2)
        .and_then(|s| s.split('"').next())
        .expect("a link to the first delivery");
    let detail = browse(
        &profile,
        &format!("{admin}/admin/delivery/{id}?token={token}"),
        &["--dump-dom"],
    );
    // The body is text: escaped in the DOM, no script or bold element made of it.
    assert!(detail.contains("&lt;script&gt;document.title="), "{detail}");
    assert!(
        !detail.contains("<script") && !detail.contains("<b>"),
        "{detail}"
    );
    assert!(!detail.contains("<title>owned"), "{detail}");

    let denied = browse(
        &profile.with_extension("2"),
        &format!("{admin}/admin"),
        &["--dump-dom"],
    );
    assert!(
        denied.contains("401") && !denied.contains("MISSING_CREDENTIALS"),
        "{denied}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &profile,
        &format!("{admin}/admin?token={token}"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=412,900",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "not a screenshot"
    );
    println!("admin page screenshot: {}", shot.display());
}
