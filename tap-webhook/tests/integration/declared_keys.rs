//! `primary_key` as pointers, headers and lists, through the real receiver and the real tap:
//! each part is a top-level key property (named as the Singer SDK flattens it), listed in the
//! stream's `key_properties` and typed in its SCHEMA and in discovery; a missing, null or
//! unusable part, and a payload field of the property's name with another value, follow
//! `on_missing_key` with the source, the part and the message's sequence named.

use serde_json::{json, Value};

use crate::harness::{client, records, run_tap, write_config, Server, BIN};

async fn post(server: &Server, source: &str, headers: &[(&str, &str)], body: &Value) {
    let mut req = client()
        .post(server.url(&format!("/webhooks/{source}")))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200, "{body}");
}

fn schema<'a>(lines: &'a [Value], stream: &str) -> &'a Value {
    lines
        .iter()
        .rev()
        .find(|m| m["type"] == "SCHEMA" && m["stream"] == stream)
        .unwrap_or_else(|| panic!("no SCHEMA of {stream}"))
}

fn adyen(event: &str, psp: &str, success: &str) -> Value {
    json!({"live": "false", "notificationItems": [{"NotificationRequestItem": {
        "eventCode": event, "pspReference": psp, "merchantReference": "order-7",
        "success": success, "amount": {"currency": "EUR", "value": 1000}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_header_and_composite_keys_become_key_properties() {
    let dir = tempfile::tempdir().unwrap();
    let item = "/notificationItems/0/NotificationRequestItem";
    let config = json!({"sources": {
        "stripe": {"primary_key": {"pointer": "/data/object/id"},
                   "stream_from": {"pointer": "/type"}},
        "adyen": {"primary_key": [{"pointer": format!("{item}/eventCode")},
                                  {"pointer": format!("{item}/pspReference")}]},
        "gh": {"primary_key": {"header": "X-GitHub-Delivery"}, "record_shape": "packed"},
        "mixed": {"primary_key": ["id", {"header": "X-Shop"}, {"pointer": "/a~1b/0"}]}
    }});
    let path = write_config(dir.path(), config.clone());
    let server = Server::start(&path);

    let charge = |id: Value, amount: i64| {
        json!({"id": "evt_x", "type": "charge.succeeded",
               "data": {"object": {"id": id, "amount": amount}}})
    };
    post(&server, "stripe", &[], &charge(json!("ch_1"), 100)).await;
    post(&server, "stripe", &[], &charge(json!("ch_2"), 200)).await;
    // Unusable keys: null, an object, missing, and a payload field of the property's name
    // holding another value.
    post(&server, "stripe", &[], &charge(Value::Null, 1)).await;
    post(&server, "stripe", &[], &charge(json!({"nested": 1}), 2)).await;
    post(&server, "stripe", &[], &json!({"id": "evt_y"})).await;
    let mut clash = charge(json!("ch_3"), 3);
    clash["data__object__id"] = json!("ch_other");
    post(&server, "stripe", &[], &clash).await;
    let mut same = charge(json!("ch_4"), 4);
    same["data__object__id"] = json!("ch_4");
    post(&server, "stripe", &[], &same).await;

    post(
        &server,
        "adyen",
        &[],
        &adyen("AUTHORISATION", "881", "true"),
    )
    .await;
    post(&server, "adyen", &[], &adyen("CAPTURE", "881", "true")).await;
    post(
        &server,
        "adyen",
        &[],
        &json!({"live": "false", "notificationItems": []}),
    )
    .await;

    let gh = [("X-GitHub-Delivery", "d-1"), ("X-GitHub-Event", "push")];
    post(&server, "gh", &gh, &json!({"ref": "main"})).await;
    post(&server, "gh", &[], &json!({"ref": "dev"})).await;

    let shop = [("X-Shop", "s1")];
    post(
        &server,
        "mixed",
        &shop,
        &json!({"id": 7, "a/b": ["x"], "v": 1}),
    )
    .await;
    post(
        &server,
        "mixed",
        &shop,
        &json!({"id": "7", "a/b": [12], "v": 2}),
    )
    .await;

    let lines = run_tap(&path, &[]);

    // Stripe: the routed stream keys on the nested id, emitted as `data__object__id`.
    let stream = "stripe__charge_succeeded";
    let s = schema(&lines, stream);
    assert_eq!(s["key_properties"], json!(["data__object__id"]));
    assert_eq!(
        s["schema"]["properties"]["data__object__id"],
        json!({"type": "string"})
    );
    assert!(s["schema"]["properties"].get("__sdc_primary_key").is_none());
    let recs = records(&lines, stream);
    let keys: Vec<&Value> = recs.iter().map(|r| &r["data__object__id"]).collect();
    assert_eq!(keys, [&json!("ch_1"), &json!("ch_2"), &json!("ch_4")]);
    assert_eq!(recs[0]["data"]["object"]["amount"], 100);
    let rejected = records(&lines, &format!("{stream}__rejected"));
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains(r#"primary key pointer "/data/object/id" is null"#));
    assert!(reasons[1].contains("is an object"), "{}", reasons[1]);
    assert!(reasons[2].contains(r#"field "data__object__id" holds another value"#));
    // The message without a type goes to the source's own stream, and lacks the key there.
    let own = records(&lines, "stripe__rejected");
    assert_eq!(own.len(), 1);
    assert!(own[0]["reason"].as_str().unwrap().contains("is missing"));

    // Adyen: a composite of two pointers, both key properties.
    let s = schema(&lines, "adyen");
    let k = "notificationItems__0__NotificationRequestItem__";
    assert_eq!(
        s["key_properties"],
        json!([format!("{k}eventCode"), format!("{k}pspReference")])
    );
    let recs = records(&lines, "adyen");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1][format!("{k}eventCode")], "CAPTURE");
    assert_eq!(recs[1][format!("{k}pspReference")], "881");
    let adyen_rejected = records(&lines, "adyen__rejected");
    assert_eq!(adyen_rejected.len(), 1);
    let keyless = (
        adyen_rejected[0]["message_id"].clone(),
        adyen_rejected[0]["_sdc_sequence"].clone(),
    );

    // A header part: captured by the receiver, a string property even in a packed record.
    let s = schema(&lines, "gh");
    assert_eq!(s["key_properties"], json!(["x_github_delivery"]));
    let recs = records(&lines, "gh");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["x_github_delivery"], "d-1");
    assert!(recs[0]["payload"].as_str().unwrap().contains("main"));
    let rej = records(&lines, "gh__rejected");
    assert!(rej[0]["reason"]
        .as_str()
        .unwrap()
        .contains(r#"primary key header "x-github-delivery" is missing"#));

    // A mix: a top-level field, a header, an escaped pointer into an array; numbers stay
    // numbers and strings strings, and the SCHEMA declares both kinds it saw.
    let s = schema(&lines, "mixed");
    assert_eq!(s["key_properties"], json!(["id", "x_shop", "a/b__0"]));
    let props = &s["schema"]["properties"];
    assert_eq!(props["id"], json!({"type": ["integer", "string"]}));
    assert_eq!(props["x_shop"], json!({"type": "string"}));
    assert_eq!(props["a/b__0"], json!({"type": ["integer", "string"]}));
    let recs = records(&lines, "mixed");
    assert_eq!(
        (&recs[0]["id"], &recs[0]["a/b__0"]),
        (&json!(7), &json!("x"))
    );
    assert_eq!(
        (&recs[1]["id"], &recs[1]["a/b__0"]),
        (&json!("7"), &json!(12))
    );
    assert_eq!(recs[1]["x_shop"], "s1");

    // Discovery shows the key properties and their types.
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--discover")
        .output()
        .unwrap();
    assert!(out.status.success());
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |name: &str| {
        catalog["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["tap_stream_id"] == name)
            .unwrap_or_else(|| panic!("no {name} in {catalog}"))
            .clone()
    };
    let e = entry("adyen");
    assert_eq!(
        e["key_properties"],
        json!([format!("{k}eventCode"), format!("{k}pspReference")])
    );
    assert_eq!(
        e["schema"]["properties"][format!("{k}pspReference")],
        json!({"type": "string"})
    );
    assert_eq!(entry(stream)["key_properties"], json!(["data__object__id"]));
    assert_eq!(
        entry("gh")["schema"]["properties"]["x_github_delivery"],
        json!({"type": "string"})
    );
    drop(server);

    // on_missing_key = fail: the run stops, naming the source, the part and the sequence.
    let mut strict = config;
    strict["sources"]["adyen"]["on_missing_key"] = json!("fail");
    let path = write_config(dir.path(), strict);
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "source adyen, stream adyen: message {} (sequence {}) lacks primary key pointer \"{item}/eventCode\": it is missing",
        keyless.0.as_str().unwrap(),
        keyless.1
    );
    assert!(stderr.contains(&want), "{want}\n{stderr}");
}

#[test]
fn a_credential_header_or_a_clashing_declaration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (source, why) in [
        (
            json!({"primary_key": {"header": "X-Token"}, "api_key_header": "X-Token",
                   "api_keys": ["key-aaaa-bbbb"]}),
            "credential of the source",
        ),
        (
            json!({"primary_key": {"header": "X-Hub-Signature-256"}}),
            "credential",
        ),
        (
            json!({"primary_key": [{"pointer": "/a/b"}, {"pointer": "/a__b"}]}),
            "both name the property",
        ),
        (json!({"primary_key": {"pointer": "/a//b"}}), "empty name"),
    ] {
        let path = write_config(dir.path(), json!({"sources": {"s": source}}));
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("--discover")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("sources.s.primary_key") && stderr.contains(why),
            "{source}: {stderr}"
        );
    }
}

/// One declaration serves `primary_key` and `dedupe_key`: a retry is answered with the original
/// message id and stored once, and the record keys on the same parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_declaration_keys_rows_and_dedupes_retries() {
    let dir = tempfile::tempdir().unwrap();
    let item = "/notificationItems/0/NotificationRequestItem";
    let key = json!([{"pointer": format!("{item}/eventCode")},
                     {"pointer": format!("{item}/pspReference")}]);
    let path = write_config(
        dir.path(),
        json!({"sources": {"adyen": {"primary_key": key, "dedupe_key": key}}}),
    );
    let server = Server::start(&path);
    let send = |body: Value| {
        let url = server.url("/webhooks/adyen");
        async move {
            let resp = client()
                .post(url)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let first = send(adyen("AUTHORISATION", "881", "true")).await;
    let retry = send(adyen("AUTHORISATION", "881", "true")).await;
    assert_eq!(retry["data"]["duplicate"], true, "{retry}");
    assert_eq!(retry["data"]["message_id"], first["data"]["message_id"]);
    send(adyen("CAPTURE", "881", "true")).await;
    // A key too long to be one: refused as a key, stored all the same (nothing is lost).
    send(adyen("CAPTURE", &"9".repeat(5_000), "true")).await;

    let lines = run_tap(&path, &[]);
    let recs = records(&lines, "adyen");
    let k = "notificationItems__0__NotificationRequestItem__eventCode";
    let events: Vec<&Value> = recs.iter().map(|r| &r[k]).collect();
    assert_eq!(events, [&json!("AUTHORISATION"), &json!("CAPTURE")]);
    let rejected = records(&lines, "adyen__rejected");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is a string of 5000 bytes, over the 1024"),
        "{}",
        rejected[0]["reason"]
    );
}

/// With flattening, a key part's property that flattening makes a column too is that column:
/// the record holds it once. A column of that name holding another value stops the run, as two
/// fields sharing a column do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_property_that_flattening_makes_a_column_is_emitted_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"sources": {
        "stripe": {"primary_key": [{"pointer": "/data/object/id"}, {"header": "X-Shop"}],
                   "flattening_enabled": true, "flattening_max_depth": 3},
        "clash": {"primary_key": {"header": "X__Data"},
                  "flattening_enabled": true, "flattening_max_depth": 2}
    }});
    let path = write_config(dir.path(), config.clone());
    let server = Server::start(&path);
    let body = json!({"id": "evt_1", "data": {"object": {"id": "ch_1", "amount": 5}}});
    post(&server, "stripe", &[("X-Shop", "s1")], &body).await;
    post(
        &server,
        "clash",
        &[("X__Data", "h")],
        &json!({"x": {"data": "other"}}),
    )
    .await;
    drop(server);

    let only = |source: &str| {
        let mut c = config.clone();
        let keep = c["sources"][source].clone();
        c["sources"] = json!({ source: keep });
        std::fs::write(dir.path().join("one.json"), {
            let mut c = c;
            c["spool_path"] = json!(dir.path().join("spool.sqlite"));
            c.to_string()
        })
        .unwrap();
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("one.json"))
            .output()
            .unwrap()
    };
    let out = only("stripe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""type":"RECORD""#))
        .unwrap();
    assert_eq!(line.matches(r#""data__object__id":"#).count(), 1, "{line}");
    let rec: Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["record"]["data__object__id"], "ch_1");
    assert_eq!(rec["record"]["data__object__amount"], 5);
    assert_eq!(rec["record"]["x_shop"], "s1");
    let schema: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        schema["key_properties"],
        json!(["data__object__id", "x_shop"])
    );

    let out = only("clash");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"column "x__data" holds both a flattened payload field and primary key header "x__data""#),
        "{stderr}"
    );
}
