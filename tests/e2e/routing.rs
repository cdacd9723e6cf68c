//! Routing (issue 23): GitHub's example payloads with their real event headers, posted to one
//! source with `stream_from: X-GitHub-Event`, land through the tap and target-warehouse in one
//! table per event type, each with only that type's columns, `ping` excluded, read back with
//! DuckDB and deltalake.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::harness::{
    github_examples, peers, read_table, write_tap_config, write_target_config, Receiver,
};
use crate::pipeline::pipe;

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn github_events_land_in_a_table_per_event_type() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"sources": {"github": {"stream_from": {"header": "X-GitHub-Event"},
                                      "exclude": ["ping"]}}}),
    );
    let (target_config, warehouse) = write_target_config(dir.path(), json!({}));

    let receiver = Receiver::start(&tap_config);
    let mut posted: BTreeMap<String, i64> = BTreeMap::new();
    let mut columns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, (event, payload)) in github_examples().iter().enumerate() {
        let event = event.as_str();
        let delivery = format!("7f3e0c2a-{i:04}");
        let status = receiver.post(
            "github",
            &payload.to_string(),
            &[("X-GitHub-Event", event), ("X-GitHub-Delivery", &delivery)],
        );
        assert_eq!(status, 200, "{event}");
        // A provider retry of the same delivery changes nothing downstream.
        if i % 5 == 0 {
            let again = receiver.post(
                "github",
                &payload.to_string(),
                &[("X-GitHub-Event", event), ("X-GitHub-Delivery", &delivery)],
            );
            assert_eq!(again, 200, "{event} retry");
        }
        *posted.entry(event.to_owned()).or_default() += 1;
        columns
            .entry(event.to_owned())
            .or_default()
            // A field null in every row makes no column (the target types columns by value).
            .extend(
                payload
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone()),
            );
    }
    assert!(posted.len() >= 12 && posted["ping"] > 0, "{posted:?}");
    let states = pipe(&tap_config, &target_config, None);
    assert!(!states.is_empty());

    let tables: BTreeSet<String> = std::fs::read_dir(&warehouse)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = posted
        .keys()
        .filter(|e| *e != "ping")
        .map(|e| format!("github__{e}"))
        .collect();
    assert_eq!(tables, expected);
    for (event, n) in posted.iter().filter(|(e, _)| *e != "ping") {
        let t = read_table(&peers, &warehouse.join(format!("github__{event}")));
        assert_eq!(t["duckdb"]["count"], json!(n), "{event}");
        assert_eq!(t["deltalake"]["count"], json!(n), "{event}");
        let cols: BTreeSet<String> = t["duckdb"]["columns"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|c| !c.starts_with('_') && !c.starts_with("webhook_"))
            .cloned()
            .collect();
        assert_eq!(cols, columns[event], "{event}: only its own columns");
    }
}

/// Stripe-style events routed by `/type` and keyed by `id`: a provider retry (same delivery) is
/// answered with the original message id and stored once; a later version of an object
/// replaces its row in its type's table; a second drain from the state changes nothing.
#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn stripe_events_routed_by_type_upsert_by_id_across_retries() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tap_config = write_tap_config(
        dir.path(),
        json!({"sources": {"stripe": {"stream_from": {"pointer": "/type"}, "primary_key": "id",
                                      "delivery_id_header": "Idempotency-Key"}}}),
    );
    let (target_config, warehouse) = write_target_config(dir.path(), json!({}));
    let receiver = Receiver::start(&tap_config);
    let send = |key: &str, id: &str, ty: &str, amount: i64| {
        let body = json!({"id": id, "object": "event", "type": ty,
                          "data": {"object": {"amount": amount}}});
        receiver.post("stripe", &body.to_string(), &[("Idempotency-Key", key)])
    };
    assert_eq!(send("k1", "evt_1", "invoice.paid", 100), 200);
    assert_eq!(send("k1", "evt_1", "invoice.paid", 100), 200); // the provider's retry
    assert_eq!(send("k2", "evt_2", "invoice.paid", 200), 200);
    assert_eq!(send("k3", "evt_3", "customer.created", 0), 200);
    assert_eq!(send("k4", "evt_2", "invoice.paid", 250), 200); // a new version of evt_2
    let state_file = dir.path().join("state.json");
    let states = pipe(&tap_config, &target_config, None);
    std::fs::write(&state_file, states.last().unwrap().to_string()).unwrap();
    pipe(&tap_config, &target_config, Some(&state_file));

    let invoices = read_table(&peers, &warehouse.join("stripe__invoice_paid"));
    assert_eq!(invoices["duckdb"]["count"], 2);
    assert_eq!(invoices["deltalake"]["count"], 2);
    let amounts: BTreeMap<String, String> = invoices["duckdb"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["data"].to_string()))
        .collect();
    assert!(amounts["evt_1"].contains("100"), "{amounts:?}");
    assert!(amounts["evt_2"].contains("250"), "{amounts:?}");
    let customers = read_table(&peers, &warehouse.join("stripe__customer_created"));
    assert_eq!(customers["duckdb"]["count"], 1);
}
