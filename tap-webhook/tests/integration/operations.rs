//! Per-record operations (`operation`) and GET un-flattening (`unflatten_query`), through the
//! real receiver and the real tap: what each record carries, what is rejected and why.

use serde_json::{json, Value};

use crate::harness::{client, records, run_tap, write_config, Server};

async fn post(server: &Server, source: &str, body: Value) {
    let resp = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn get(server: &Server, source: &str, query: &str) {
    let resp = client()
        .get(server.url(&format!("/webhooks/{source}?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

fn valmi(op: &str, row: i64, id: i64, name: &str) -> Value {
    json!({"_valmi_meta": {"_valmi_sync_op": op, "_valmi_row_num": row},
           "customer_id": id, "my_first_name": name})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valmi_operations_by_post_and_get_become_sdc_operation_and_deleted_at() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {
            "post": {"primary_key": "customer_id", "operation": {"preset": "valmi"}},
            "get": {"primary_key": "customer_id", "allow_get": true,
                    "unflatten_query": ["_valmi_meta"], "operation": {"preset": "valmi"}},
            "plain": {}
        }}),
    );
    let server = Server::start(&config);
    post(&server, "post", valmi("upsert", 1, 1, "Ann")).await;
    post(&server, "post", valmi("delete", 2, 1, "Ann")).await;
    post(&server, "post", valmi("create", 3, 2, "Bob")).await;
    // A payload's own `_sdc_operation` / `_sdc_deleted_at` cannot pass for the tap's.
    let mut forged = valmi("upsert", 4, 3, "Cy");
    forged["_sdc_deleted_at"] = json!("2020-01-01T00:00:00Z");
    forged["_sdc_operation"] = json!("delete");
    post(&server, "post", forged).await;
    // Unknown and missing operations are rejected with the reason, never guessed.
    post(&server, "post", valmi("truncate", 5, 4, "Di")).await;
    post(&server, "post", json!({"customer_id": 5})).await;
    get(
        &server,
        "get",
        "_valmi_meta__valmi_row_num=1&_valmi_meta__valmi_sync_op=upsert&customer_id=1\
         &my_first_name=Ann&_sync_mode=upsert",
    )
    .await;
    get(
        &server,
        "get",
        "_valmi_meta__valmi_row_num=2&_valmi_meta__valmi_sync_op=delete&customer_id=1\
         &my_first_name=Ann&_sync_mode=mirror",
    )
    .await;
    post(
        &server,
        "plain",
        json!({"_sdc_deleted_at": "2024-01-01T00:00:00Z", "x": 1}),
    )
    .await;

    let out = run_tap(&config, &[]);
    let recs = records(&out, "post");
    assert_eq!(recs.len(), 4, "{recs:?}");
    let ops: Vec<&Value> = recs.iter().map(|r| &r["_sdc_operation"]).collect();
    assert_eq!(
        ops,
        [
            &json!("upsert"),
            &json!("delete"),
            &json!("insert"),
            &json!("upsert")
        ]
    );
    assert!(recs[0].get("_sdc_deleted_at").is_none(), "{}", recs[0]);
    // A delete carries its receipt time, so a replay emits the same record.
    assert_eq!(recs[1]["_sdc_deleted_at"], recs[1]["_sdc_received_at"]);
    assert!(recs[3].get("_sdc_deleted_at").is_none(), "{}", recs[3]);
    assert_eq!(
        recs[1]["_valmi_meta"],
        json!({"_valmi_sync_op": "delete", "_valmi_row_num": 2})
    );
    let rejected = records(&out, "post__rejected");
    assert_eq!(rejected.len(), 2);
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"truncate\"") && reason.contains("/_valmi_meta/_valmi_sync_op"),
        "{reason}"
    );
    assert!(rejected[1]["reason"].as_str().unwrap().contains("missing"));

    // GET: the query parameters nested back into the POST body's shape.
    let got = records(&out, "get");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1]["_valmi_meta"],
        json!({"_valmi_sync_op": "delete", "_valmi_row_num": "2"})
    );
    assert_eq!(got[0]["_sdc_operation"], "upsert");
    assert_eq!(got[1]["_sdc_operation"], "delete");
    assert_eq!(got[1]["_sdc_deleted_at"], got[1]["_sdc_received_at"]);
    assert!(got[0].get("_valmi_meta__valmi_sync_op").is_none());

    // The SCHEMA declares both columns for the sources with `operation`, not for the others.
    let schema_of = |stream: &str| {
        out.iter()
            .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
            .map(|m| m["schema"]["properties"].clone())
            .unwrap()
    };
    for stream in ["post", "get"] {
        let props = schema_of(stream);
        assert_eq!(
            props["_sdc_operation"],
            json!({"type": "string", "enum": ["upsert", "insert", "delete"]})
        );
        assert_eq!(
            props["_sdc_deleted_at"],
            json!({"type": ["null", "string"], "format": "date-time"})
        );
    }
    assert!(schema_of("plain").get("_sdc_operation").is_none());
    // Without `operation` a payload's `_sdc_deleted_at` passes as today (a sender's own delete).
    let plain = records(&out, "plain");
    assert_eq!(plain[0]["_sdc_deleted_at"], "2024-01-01T00:00:00Z");
    assert!(plain[0].get("_sdc_operation").is_none());

    // A replay (no state) emits the same records.
    let again = run_tap(&config, &[]);
    assert_eq!(records(&again, "post"), recs);
    assert_eq!(records(&again, "get"), got);
}

#[test]
fn bad_operation_settings_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (operation, want) in [
        (json!({"preset": "stripe"}), "stripe"),
        (json!({"field": "/op"}), "no value"),
        (json!({"field": "/op", "values": {"d": "remove"}}), "remove"),
    ] {
        let config = write_config(
            dir.path(),
            json!({"sources": {"s": {"operation": operation}}}),
        );
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["--config", config.to_str().unwrap(), "--discover"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert!(err.contains("sources.s.operation"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_get_name_cannot_nest_the_payload_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {"g": {"allow_get": true, "unflatten_query": true}}}),
    );
    let server = Server::start(&config);
    // 10,000 levels in a 30 KB name: kept flat, stored, emitted; the server stays up.
    let deep = vec!["x"; 10_000].join("__");
    get(&server, "g", &format!("{deep}=1&a__b=2")).await;
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let out = run_tap(&config, &[]);
    let recs = records(&out, "g");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0][deep.as_str()], "1");
    assert_eq!(recs[0]["a"], json!({"b": "2"}));
}

/// A GET name that would nest into a field the tap sets (`_sdc_deleted_at__x` into
/// `_sdc_deleted_at`) stays flat: nested, the tap dropped the whole object as a forged field
/// (the sender's parameter lost without a word), and on a source without `operation` it would
/// have been a non-null `_sdc_deleted_at`, which `hard_delete` takes for a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_name_cannot_nest_into_a_field_the_tap_sets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {
            "ops": {"primary_key": "id", "allow_get": true, "unflatten_query": true,
                    "operation": {"field": "/m/op", "values": {"up": "upsert", "del": "delete"}}},
            "plain": {"primary_key": "id", "allow_get": true, "unflatten_query": true}
        }}),
    );
    let server = Server::start(&config);
    let hostile = "_sdc_deleted_at__x=1&_sdc_operation__y=2&_sdc_sequence__z=3\
                   &webhook_sequence__w=4&m__op=up&id=7";
    get(&server, "ops", hostile).await;
    get(&server, "plain", hostile).await;
    let out = run_tap(&config, &[]);
    for stream in ["ops", "plain"] {
        let recs = records(&out, stream);
        assert_eq!(recs.len(), 1, "{stream}: {out:?}");
        let r = recs[0];
        for (name, v) in [
            ("_sdc_deleted_at__x", "1"),
            ("_sdc_operation__y", "2"),
            ("_sdc_sequence__z", "3"),
            ("webhook_sequence__w", "4"),
        ] {
            assert_eq!(r[name], v, "{stream}: {name} in {r}");
        }
        assert!(r.get("_sdc_deleted_at").is_none(), "{stream}: {r}");
        assert_eq!(r["m"], json!({"op": "up"}), "{stream}: {r}");
    }
    assert_eq!(records(&out, "ops")[0]["_sdc_operation"], "upsert");
    assert!(records(&out, "plain")[0].get("_sdc_operation").is_none());
}
