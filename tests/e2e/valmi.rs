//! valmi.io's five destination modes (issue 28), delivered by POST and by GET to a real
//! receiver, drained by the tap (`operation: {preset: valmi}`, GET parameters un-flattened) into
//! target-warehouse with each mode's load method, read back with DuckDB (and counted by
//! deltalake): upserts replace, creates insert once, deletes remove (hard_delete) or mark,
//! appends keep every row, mirror syncs leave the table equal to the source; the POST and GET
//! tables of a mode hold the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{peers, read_table, Receiver};
use crate::pipeline::pipe;

const MODES: [&str; 5] = ["upsert", "mirror", "append", "create", "delete"];

/// One valmi callback: its mode's source by `method`, the op, the row number, the row.
struct Callback {
    op: &'static str,
    id: i64,
    name: &'static str,
}

fn cb(op: &'static str, id: i64, name: &'static str) -> Callback {
    Callback { op, id, name }
}

struct Setup {
    dir: tempfile::TempDir,
    receiver: Receiver,
    rows_sent: BTreeMap<String, i64>,
}

fn source(mode: &str, method: &str) -> String {
    format!("{mode}_{method}")
}

fn source_config(mode: &str, method: &str) -> Value {
    let mut s = json!({"operation": {"preset": "valmi"}});
    // Append has no key: every callback is a row (`__sdc_primary_key` generated).
    if mode != "append" {
        s["primary_key"] = json!("customer_id");
    }
    if method == "get" {
        s["allow_get"] = json!(true);
        s["unflatten_query"] = json!(["_valmi_meta"]);
    }
    s
}

fn tap_config(dir: &Path, modes: &[&str]) -> PathBuf {
    let mut sources = serde_json::Map::new();
    for mode in modes {
        for method in ["post", "get"] {
            sources.insert(source(mode, method), source_config(mode, method));
        }
    }
    let path = dir.join(format!("tap-{}.json", modes.join("-")));
    std::fs::write(
        &path,
        json!({"spool_path": dir.join("spool.sqlite"), "listen_address": "127.0.0.1:0",
               "sources": sources})
        .to_string(),
    )
    .unwrap();
    path
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(&tap_config(dir.path(), &MODES));
        Setup {
            dir,
            receiver,
            rows_sent: BTreeMap::new(),
        }
    }

    /// Sends a sync's callbacks to both sources of `mode`, by POST and by GET.
    fn sync(&mut self, mode: &str, callbacks: &[Callback]) {
        for c in callbacks {
            for method in ["post", "get"] {
                let src = source(mode, method);
                let row = self.rows_sent.entry(src.clone()).or_default();
                *row += 1;
                let email = format!("{}@example.org", c.name.to_lowercase());
                let status = if method == "post" {
                    let body = json!({"_valmi_meta": {"_valmi_sync_op": c.op, "_valmi_row_num": *row},
                                      "customer_id": c.id, "my_first_name": c.name,
                                      "email": email, "active": 1});
                    self.receiver.post(&src, &body.to_string(), &[])
                } else {
                    // valmi's GET: the same payload flattened into the query string.
                    let query = format!(
                        "_valmi_meta__valmi_row_num={row}&_valmi_meta__valmi_sync_op={}\
                         &customer_id={}&my_first_name={}&email={}&active=1\
                         &_message_id={row}&_sync_mode={mode}",
                        c.op,
                        c.id,
                        c.name,
                        email.replace('@', "%40")
                    );
                    self.receiver.get(&src, &query)
                };
                assert_eq!(status, 200, "{src}: {} {}", c.op, c.id);
            }
        }
    }

    /// Drains `mode`'s two sources into the warehouse `wh` with `target` settings, chained by
    /// the state of the previous drain of the same warehouse and mode.
    fn drain(&self, mode: &str, wh: &str, target: Value) {
        let dir = self.dir.path();
        let mut config = target;
        config["warehouse_path"] = json!(dir.join(wh));
        let target_config = dir.join(format!("target-{wh}-{mode}.json"));
        std::fs::write(&target_config, config.to_string()).unwrap();
        let state = dir.join(format!("state-{wh}-{mode}.json"));
        let had_state = state.exists();
        let states = pipe(
            &tap_config(dir, &[mode]),
            &target_config,
            had_state.then_some(state.as_path()),
        );
        let last = states.last().expect("the target printed a state");
        std::fs::write(&state, last.to_string()).unwrap();
    }

    /// The rows of `mode`'s table by `method` in warehouse `wh`, as comparable text: customer
    /// id, name, email, `_sdc_operation`, whether `_sdc_deleted_at` is set, valmi's op.
    fn rows(&self, wh: &str, mode: &str, method: &str) -> Vec<[String; 6]> {
        let t = read_table(
            &peers(),
            &self.dir.path().join(wh).join(source(mode, method)),
        );
        assert_eq!(
            t["duckdb"]["count"], t["deltalake"]["count"],
            "{mode} {method}"
        );
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut rows: Vec<[String; 6]> = t["duckdb"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let meta: Value = serde_json::from_str(r["_valmi_meta"].as_str().unwrap()).unwrap();
                [
                    text(&r["customer_id"]),
                    text(&r["my_first_name"]),
                    text(&r["email"]),
                    text(&r["_sdc_operation"]),
                    (!r["_sdc_deleted_at"].is_null()).to_string(),
                    text(&meta["_valmi_sync_op"]),
                ]
            })
            .collect();
        rows.sort();
        rows
    }

    /// [`Self::rows`] by POST, asserted equal to the GET table's.
    fn same_by_post_and_get(&self, wh: &str, mode: &str) -> Vec<[String; 6]> {
        let post = self.rows(wh, mode, "post");
        assert_eq!(
            post,
            self.rows(wh, mode, "get"),
            "{mode}: POST and GET tables differ"
        );
        post
    }
}

/// `(id, name, op, deleted)` of rows, for the assertions.
fn brief(rows: &[[String; 6]]) -> Vec<(String, String, String, bool)> {
    rows.iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[3].clone(), r[4] == "true"))
        .collect()
}

fn row(id: i64, name: &str, op: &str, deleted: bool) -> (String, String, String, bool) {
    (id.to_string(), name.to_owned(), op.to_owned(), deleted)
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn valmis_five_modes_by_post_and_get_land_as_the_sender_asked() {
    let mut s = Setup::new();
    let upsert = json!({"load_method": "upsert"});
    let mirror = json!({"load_method": "upsert", "hard_delete": true});

    // Upsert: the latest values of each key.
    s.sync("upsert", &[cb("upsert", 1, "Ann"), cb("upsert", 2, "Bob")]);
    s.drain("upsert", "wh", upsert.clone());
    s.sync("upsert", &[cb("upsert", 1, "Anna")]);
    s.drain("upsert", "wh", upsert.clone());
    let got = s.same_by_post_and_get("wh", "upsert");
    assert_eq!(
        brief(&got),
        [
            row(1, "Anna", "upsert", false),
            row(2, "Bob", "upsert", false)
        ]
    );
    assert_eq!(got[0][2], "anna@example.org");

    // Mirror: valmi sends each sync as the difference to the last one (upserts of new and
    // changed rows, deletes of removed ones); upsert with hard_delete makes the table the
    // source's rows. Source {1,2,3}, then {1 changed, 3, 4}.
    s.sync(
        "mirror",
        &[
            cb("upsert", 1, "Ann"),
            cb("upsert", 2, "Bob"),
            cb("upsert", 3, "Cy"),
        ],
    );
    s.drain("mirror", "wh", mirror.clone());
    s.sync(
        "mirror",
        &[
            cb("upsert", 1, "Anne"),
            cb("delete", 2, "Bob"),
            cb("upsert", 4, "Dee"),
        ],
    );
    s.drain("mirror", "wh", mirror.clone());
    assert_eq!(
        brief(&s.same_by_post_and_get("wh", "mirror")),
        [
            row(1, "Anne", "upsert", false),
            row(3, "Cy", "upsert", false),
            row(4, "Dee", "upsert", false)
        ]
    );

    // Append: every callback is a row, the same customer twice included.
    s.sync(
        "append",
        &[
            cb("append", 1, "Ann"),
            cb("append", 1, "Ann"),
            cb("append", 2, "Bob"),
        ],
    );
    s.drain("append", "wh", json!({}));
    assert_eq!(
        brief(&s.same_by_post_and_get("wh", "append")),
        [
            row(1, "Ann", "insert", false),
            row(1, "Ann", "insert", false),
            row(2, "Bob", "insert", false)
        ]
    );

    // Create: a key is inserted once; a second create of it (same sync or a later one)
    // leaves the first values.
    let create = json!({"load_method": "insert"});
    s.sync(
        "create",
        &[
            cb("create", 1, "Ann"),
            cb("create", 2, "Bob"),
            cb("create", 1, "Zed"),
        ],
    );
    s.drain("create", "wh", create.clone());
    s.sync("create", &[cb("create", 2, "Yan"), cb("create", 3, "Cy")]);
    s.drain("create", "wh", create);
    assert_eq!(
        brief(&s.same_by_post_and_get("wh", "create")),
        [
            row(1, "Ann", "insert", false),
            row(2, "Bob", "insert", false),
            row(3, "Cy", "insert", false)
        ]
    );

    // Delete: rows first (an upsert sync), then a delete sync. With hard_delete the rows go;
    // without, the same deliveries leave them marked with `_sdc_deleted_at`.
    s.sync(
        "delete",
        &[
            cb("upsert", 1, "Ann"),
            cb("upsert", 2, "Bob"),
            cb("upsert", 3, "Cy"),
        ],
    );
    s.drain("delete", "wh", mirror.clone());
    s.drain("delete", "marked", upsert.clone());
    s.sync("delete", &[cb("delete", 1, "Ann"), cb("delete", 3, "Cy")]);
    s.drain("delete", "wh", mirror);
    s.drain("delete", "marked", upsert);
    assert_eq!(
        brief(&s.same_by_post_and_get("wh", "delete")),
        [row(2, "Bob", "upsert", false)]
    );
    assert_eq!(
        brief(&s.same_by_post_and_get("marked", "delete")),
        [
            row(1, "Ann", "delete", true),
            row(2, "Bob", "upsert", false),
            row(3, "Cy", "delete", true)
        ]
    );
}
