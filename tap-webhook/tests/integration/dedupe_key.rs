//! `dedupe_key`: a delivery's identity declared in the body (Stripe's `/id`, Adyen's
//! `/eventCode` + `/pspReference`) or a header, through the real receiver: a retry is answered
//! with the original message id and stores nothing; the tap emits each event once.

use serde_json::{json, Value};

use crate::harness::{client, records, run_tap, write_config, Server};

async fn post(server: &Server, source: &str, body: &Value) -> Value {
    let resp = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_known_by_the_declared_key_and_answered_with_the_original_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!({"sources": {
            "stripe": {"dedupe_key": "/id", "primary_key": "id"},
            "adyen": {"dedupe_key": ["/eventCode", "/pspReference"]}
        }}),
    );
    let server = Server::start(&config);
    let evt = json!({"id": "evt_1", "type": "invoice.paid", "amount": 1});
    let first = post(&server, "stripe", &evt).await;
    let retry = post(&server, "stripe", &evt).await;
    assert_eq!(first["data"]["duplicate"], Value::Null, "{first}");
    assert_eq!(retry["data"]["duplicate"], true, "{retry}");
    assert_eq!(retry["data"]["message_id"], first["data"]["message_id"]);
    post(&server, "stripe", &json!({"id": "evt_2", "amount": 2})).await;

    let auth = json!({"eventCode": "AUTHORISATION", "pspReference": "881", "success": "true"});
    let a1 = post(&server, "adyen", &auth).await;
    let a2 = post(&server, "adyen", &auth).await;
    assert_eq!(a2["data"]["duplicate"], true, "{a2}");
    assert_eq!(a2["data"]["message_id"], a1["data"]["message_id"]);
    // The same payment's next event is another delivery; one without the key is stored as is.
    let capture = json!({"eventCode": "CAPTURE", "pspReference": "881"});
    assert_eq!(
        post(&server, "adyen", &capture).await["data"]["duplicate"],
        Value::Null
    );
    let keyless = json!({"pspReference": "882"});
    post(&server, "adyen", &keyless).await;
    assert_eq!(
        post(&server, "adyen", &keyless).await["data"]["duplicate"],
        Value::Null
    );

    let lines = run_tap(&config, &[]);
    let ids: Vec<&Value> = records(&lines, "stripe").iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&json!("evt_1"), &json!("evt_2")]);
    assert_eq!(records(&lines, "adyen").len(), 4);
}
