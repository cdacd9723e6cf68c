//! Declared keys anywhere in the body (issue 23): Stripe-style events keyed by
//! `{"pointer": "/id"}` (and their objects by `/data/object/id`) and Adyen-style notifications
//! keyed by a composite of two pointers go through serve | tap | target-warehouse twice; the
//! provider's retries (stored twice: no `dedupe_key` here) and later versions upsert on the
//! emitted key properties, so each table holds one row per key with its latest values, read back
//! with DuckDB and deltalake.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::harness::{peers, read_table, run_ok, write_tap_config, write_target_config, Receiver};
use crate::pipeline::pipe;

const ITEM: &str = "/notificationItems/0/NotificationRequestItem";
const ADYEN_EVENT: &str = "notificationItems__0__NotificationRequestItem__eventCode";
const ADYEN_PSP: &str = "notificationItems__0__NotificationRequestItem__pspReference";

fn stripe_event(id: &str, object: &str, amount: i64, pending: i64) -> String {
    json!({"id": id, "object": "event", "type": "charge.updated", "api_version": "2024-06-20",
           "created": 1_700_000_000, "livemode": false, "pending_webhooks": pending,
           "data": {"object": {"id": object, "object": "charge", "amount": amount,
                               "currency": "eur"}}})
    .to_string()
}

/// A real Adyen notification's shape: one item per delivery, as Adyen sends by default.
fn adyen_notification(event: &str, psp: &str, success: &str, reason: &str) -> String {
    json!({"live": "false", "notificationItems": [{"NotificationRequestItem": {
        "additionalData": {"authCode": "058705"},
        "amount": {"currency": "EUR", "value": 1000},
        "eventCode": event, "eventDate": "2026-12-03T10:00:00+01:00",
        "merchantAccountCode": "ShopEU", "merchantReference": "order-7",
        "operations": ["CANCEL", "CAPTURE", "REFUND"], "paymentMethod": "visa",
        "pspReference": psp, "reason": reason, "success": success}}]})
    .to_string()
}

/// `table`'s rows by key (`keys` joined by `|`) → the row, after checking both readers count
/// `count` rows.
fn rows_by_key(
    peers: &BTreeMap<String, String>,
    table: &std::path::Path,
    keys: &[&str],
    count: u64,
) -> BTreeMap<String, Value> {
    let t = read_table(peers, table);
    assert_eq!(t["duckdb"]["count"], count, "{}: {t}", table.display());
    assert_eq!(t["deltalake"]["count"], count, "{}", table.display());
    t["duckdb"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let k: Vec<String> = keys
                .iter()
                .map(|k| {
                    r[*k]
                        .as_str()
                        .unwrap_or_else(|| panic!("{k} in {r}"))
                        .to_owned()
                })
                .collect();
            (k.join("|"), r.clone())
        })
        .collect()
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn stripe_and_adyen_upsert_on_declared_keys_across_retries_and_runs() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"sources": {
                   "stripe": {"primary_key": {"pointer": "/id"}},
                   "charges": {"primary_key": {"pointer": "/data/object/id"}},
                   "adyen": {"primary_key": [{"pointer": format!("{ITEM}/eventCode")},
                                             {"pointer": format!("{ITEM}/pspReference")}]}}}),
    );
    let (target_config, warehouse) = write_target_config(dir.path(), json!({}));
    let receiver = Receiver::start(&tap_config);
    let post = |source: &str, body: &str| assert_eq!(receiver.post(source, body, &[]), 200);

    // Run 1: two events, one retried (Stripe counts down `pending_webhooks` on each attempt);
    // the same events to the source keyed on the charge.
    for (id, ch, amount, pending) in [
        ("evt_1", "ch_1", 100, 2),
        ("evt_1", "ch_1", 100, 1),
        ("evt_2", "ch_2", 200, 1),
    ] {
        post("stripe", &stripe_event(id, ch, amount, pending));
        post("charges", &stripe_event(id, ch, amount, pending));
    }
    post(
        "adyen",
        &adyen_notification("AUTHORISATION", "881", "false", "Refused"),
    );
    post(
        "adyen",
        &adyen_notification("AUTHORISATION", "881", "false", "Refused"),
    ); // retry
    post(
        "adyen",
        &adyen_notification("AUTHORISATION", "882", "true", ""),
    );
    let state_file = dir.path().join("state.json");
    let states = pipe(&tap_config, &target_config, None);
    std::fs::write(&state_file, states.last().unwrap().to_string()).unwrap();

    let stripe = rows_by_key(&peers, &warehouse.join("stripe"), &["id"], 2);
    assert_eq!(stripe["evt_1"]["pending_webhooks"], 1);
    let adyen = rows_by_key(
        &peers,
        &warehouse.join("adyen"),
        &[ADYEN_EVENT, ADYEN_PSP],
        2,
    );
    assert!(adyen["AUTHORISATION|881"]["notificationItems"]
        .as_str()
        .unwrap()
        .contains("Refused"));

    // Run 2: a late retry of evt_1 (pending 0), a new event updating ch_2's amount, Adyen's
    // later events: 881 authorised on a second attempt (same key, new values), its capture
    // (a new key), and a retry of 882.
    post("stripe", &stripe_event("evt_1", "ch_1", 100, 0));
    post("charges", &stripe_event("evt_1", "ch_1", 100, 0));
    post("stripe", &stripe_event("evt_3", "ch_2", 250, 1));
    post("charges", &stripe_event("evt_3", "ch_2", 250, 1));
    post(
        "adyen",
        &adyen_notification("AUTHORISATION", "881", "true", ""),
    );
    post("adyen", &adyen_notification("CAPTURE", "881", "true", ""));
    post(
        "adyen",
        &adyen_notification("AUTHORISATION", "882", "true", ""),
    );
    pipe(&tap_config, &target_config, Some(&state_file));

    let stripe = rows_by_key(&peers, &warehouse.join("stripe"), &["id"], 3);
    assert_eq!(stripe["evt_1"]["pending_webhooks"], 0);
    assert!(stripe["evt_3"]["data"].as_str().unwrap().contains("250"));
    // Keyed on the object: one row per charge, with its latest amount.
    let charges = rows_by_key(&peers, &warehouse.join("charges"), &["data__object__id"], 2);
    assert!(charges["ch_2"]["data"].as_str().unwrap().contains("250"));
    assert_eq!(charges["ch_2"]["id"], "evt_3");
    assert_eq!(charges["ch_1"]["pending_webhooks"], 0);
    let adyen = rows_by_key(
        &peers,
        &warehouse.join("adyen"),
        &[ADYEN_EVENT, ADYEN_PSP],
        3,
    );
    let auth = adyen["AUTHORISATION|881"]["notificationItems"]
        .as_str()
        .unwrap();
    assert!(auth.contains(r#""success":"true""#), "{auth}");
    assert!(adyen.contains_key("CAPTURE|881") && adyen.contains_key("AUTHORISATION|882"));
    // No generated key beside the declared ones.
    assert!(adyen["CAPTURE|881"].get("__sdc_primary_key").is_none());

    // The key columns' names are the Singer SDK's own `flatten_key` of the pointers' paths.
    let sdk = run_ok(
        std::process::Command::new(&peers["VENV_PYTHON"])
            .arg("-c")
            .arg(SDK_NAMES)
            .arg(
                json!([
                    ["id"],
                    ["data", "object", "id"],
                    ITEM_PATH_EVENT,
                    ITEM_PATH_PSP
                ])
                .to_string(),
            ),
    );
    let sdk: Vec<String> = serde_json::from_str(&sdk).unwrap();
    assert_eq!(sdk, ["id", "data__object__id", ADYEN_EVENT, ADYEN_PSP]);
}

const ITEM_PATH_EVENT: [&str; 4] = [
    "notificationItems",
    "0",
    "NotificationRequestItem",
    "eventCode",
];
const ITEM_PATH_PSP: [&str; 4] = [
    "notificationItems",
    "0",
    "NotificationRequestItem",
    "pspReference",
];

/// Prints the SDK's `flatten_key` of each path in argv[1] (a JSON list of lists of names).
const SDK_NAMES: &str = "import json, sys
from singer_sdk.helpers._flattening import flatten_key
print(json.dumps([flatten_key(p[-1], p[:-1]) for p in json.loads(sys.argv[1])]))";

/// The SDK abbreviates a flattened name from 255 characters on: `primary_key` refuses such
/// names (over 254), so the names it emits are always the SDK's, unabridged.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn the_sdk_keeps_names_up_to_the_bound_primary_key_allows() {
    let peers = peers();
    let at_bound = ["a".repeat(100), "b".repeat(100), "c".repeat(50)];
    let over = ["a".repeat(100), "b".repeat(100), "c".repeat(51)];
    let sdk = run_ok(
        std::process::Command::new(&peers["VENV_PYTHON"])
            .arg("-c")
            .arg(SDK_NAMES)
            .arg(json!([at_bound, over]).to_string()),
    );
    let sdk: Vec<String> = serde_json::from_str(&sdk).unwrap();
    assert_eq!(sdk[0], at_bound.join("__"));
    assert_eq!(sdk[0].len(), 254);
    assert_ne!(
        sdk[1],
        over.join("__"),
        "the SDK abbreviates 255 characters"
    );
    // And the tap refuses the longer path at start, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tap.json");
    let pointer = |p: &[String; 3]| format!("/{}", p.join("/"));
    for (p, ok) in [(pointer(&at_bound), true), (pointer(&over), false)] {
        std::fs::write(
            &config,
            json!({"spool_path": dir.path().join("spool.sqlite"),
                   "sources": {"s": {"primary_key": {"pointer": p}}}})
            .to_string(),
        )
        .unwrap();
        let out = std::process::Command::new(crate::harness::tap_bin())
            .arg("--config")
            .arg(&config)
            .arg("--discover")
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            ok,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !ok {
            let e = String::from_utf8_lossy(&out.stderr);
            assert!(
                e.contains("sources.s.primary_key") && e.contains("over 254"),
                "{e}"
            );
        }
    }
}
