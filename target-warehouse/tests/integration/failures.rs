//! Failures, injected (issue 20): a write, fsync, upload or commit that fails at EVERY step of a
//! multi-stream, multi-batch load (`TARGET_WAREHOUSE_FAILPOINT`), for append-only, upsert,
//! hard-delete and insert (with hard deletes) loads. After each failed run: it exits non-zero with the injected error; no
//! STATE it printed covers a record that is not committed; each table holds exactly the
//! records its high-water mark covers (the commit rule); no file of ours is left outside the
//! log. Then the same input again (replays are skipped, as after a tap resumes from the last
//! state Meltano saved): the tables equal a clean load, row for row.
//!
//! Streams a and c are fed by two producers (`_sdc_producer`) whose sequences interleave and
//! overlap, b by a tap without producers: each table's marks are checked per producer.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use target_warehouse::failpoint::{Step, ENV};

use crate::harness::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AppendOnly,
    Upsert,
    HardDelete,
    /// `load_method: insert` with `hard_delete`: a key's first record lands, later ones are
    /// skipped until a delete removes it.
    Insert,
}

/// A record of the input, as the model of the tables sees it.
#[derive(Debug, Clone)]
pub struct Rec {
    pub stream: &'static str,
    pub id: i64,
    /// Unique over the input: what identifies the record in a table.
    pub n: i64,
    pub seq: i64,
    /// `_sdc_producer`: its own sequence space (`None`: the legacy mark).
    pub producer: Option<&'static str>,
    pub version: Option<i64>,
    pub deleted: bool,
}

/// The two producers of streams a and c: p1's sequences run from 1001, p2's from 500, so
/// one mark for both would skip p2's records below p1's latest as replays.
const P1: &str = "p1";
const P2: &str = "p2";

/// A table's marks: its legacy `txn` and each producer's.
#[derive(Debug, Default)]
pub struct Marks {
    pub legacy: Option<i64>,
    pub producers: BTreeMap<&'static str, i64>,
}

impl Marks {
    /// Everything committed.
    fn all() -> Marks {
        Marks {
            legacy: Some(i64::MAX),
            producers: BTreeMap::new(),
        }
    }

    /// `r` is at or below its producer's mark (the legacy one for a producer without any).
    pub fn covers(&self, r: &Rec) -> bool {
        let own = r.producer.and_then(|p| self.producers.get(p).copied());
        own.or(self.legacy).is_some_and(|m| r.seq <= m)
    }
}

impl Rec {
    fn message(&self, pad: usize) -> Value {
        let mut r =
            json!({"id": self.id, "n": self.n, "pad": "p".repeat(pad), "_sdc_sequence": self.seq});
        if let Some(p) = self.producer {
            r["_sdc_producer"] = json!(p);
        }
        if self.stream == "a" && self.n % 400 >= 150 {
            // A column that appears mid-batch, after the batch's first hand-overs to its file:
            // the file is written in parts, merged at the end.
            r["late"] = json!(self.n);
        }
        if self.deleted {
            r["_sdc_deleted_at"] = json!("2026-12-02T00:00:00Z");
        }
        let mut m = record(self.stream, r);
        if let Some(v) = self.version {
            m["version"] = json!(v);
        }
        m
    }
}

/// Streams a (wide rows, handed to their file in parts; ids repeat in upserts), b (two table
/// versions, then ACTIVATE_VERSION), and c (small rows, many commits, seeded by an earlier run
/// to just below a compaction and the checkpoint of version 100).
pub struct Input {
    pub mode: Mode,
    pub seed: Vec<Rec>,
    pub main: Vec<Rec>,
    pub seed_lines: String,
    pub main_lines: String,
}

const A_PAD: usize = 8000;
const SEED_ROWS: i64 = 92;

impl Input {
    pub fn new(mode: Mode) -> Input {
        let keys: &[&str] = if mode == Mode::AppendOnly {
            &[]
        } else {
            &["id"]
        };
        let schema = |s| {
            schema_msg(
                s,
                json!({"id": {"type": "integer"}, "n": {"type": "integer"}, "pad": {"type": "string"}}),
                keys,
            )
        };
        let hard = matches!(mode, Mode::HardDelete | Mode::Insert);
        let seed: Vec<Rec> = (0..SEED_ROWS)
            .map(|k| Rec {
                stream: "c",
                id: 5000 + k,
                n: 100_000 + k,
                seq: 1 + k,
                producer: None,
                version: None,
                deleted: false,
            })
            .collect();
        let mut seed_msgs = vec![schema("c")];
        seed_msgs.extend(seed.iter().map(|r| r.message(10)));
        seed_msgs.push(state(json!({"seed": SEED_ROWS})));

        let mut main = Vec::new();
        let mut msgs = vec![schema("a"), schema("b"), schema("c")];
        let (mut na, mut nb, mut nc) = (0i64, 0i64, 0i64);
        let push = |main: &mut Vec<Rec>, msgs: &mut Vec<Value>, stream, id, version, deleted| {
            let n = main.len() as i64;
            // A key always comes from one producer, so "the latest row of a key" is the same
            // in sequence order and in input order.
            let producer = match stream {
                "b" => None,
                _ if id % 2 == 0 => Some(P1),
                _ => Some(P2),
            };
            let r = Rec {
                stream,
                id,
                n,
                seq: if producer == Some(P2) {
                    500 + n
                } else {
                    1001 + n
                },
                producer,
                version,
                deleted,
            };
            msgs.push(r.message(if stream == "c" { 10 } else { A_PAD }));
            main.push(r);
        };
        for i in 0..400 {
            let a_id = if mode == Mode::AppendOnly {
                na
            } else {
                na % 250
            };
            push(
                &mut main,
                &mut msgs,
                "a",
                a_id,
                None,
                hard && na >= 250 && na % 7 == 3,
            );
            na += 1;
            push(
                &mut main,
                &mut msgs,
                "b",
                nb,
                Some(if nb < 250 { 1 } else { 2 }),
                false,
            );
            nb += 1;
            for _ in 0..(1 + (i % 2 == 0) as usize) {
                push(
                    &mut main,
                    &mut msgs,
                    "c",
                    1000 + nc % 150,
                    None,
                    hard && nc % 11 == 5,
                );
                nc += 1;
            }
            if (i + 1) % 50 == 0 {
                msgs.push(state(json!({"pos": main.len()})));
            }
        }
        msgs.push(json!({"type": "ACTIVATE_VERSION", "stream": "b", "version": 2}));
        msgs.push(state(json!({"pos": main.len(), "activated": true})));
        Input {
            mode,
            seed,
            main,
            seed_lines: lines(&seed_msgs),
            main_lines: lines(&msgs),
        }
    }

    fn hard(&self) -> bool {
        matches!(self.mode, Mode::HardDelete | Mode::Insert)
    }

    pub fn seed_config(&self) -> Value {
        json!({"batch_size_rows": 1, "deletion_vectors": false, "hard_delete": self.hard()})
    }

    pub fn config(&self) -> Value {
        let mut c = json!({"batch_size_rows": 100, "batch_size_bytes": 2 << 20, "deletion_vectors": true, "hard_delete": self.hard()});
        if self.mode == Mode::Insert {
            c["load_method"] = json!("insert");
        }
        c
    }

    /// The (id, n) rows a table of `stream` holds when the records its `marks` cover are
    /// committed (and older table versions removed, when `activated` with `hard_delete`; without
    /// it their rows stay, marked `_sdc_deleted_at`).
    pub fn model(&self, stream: &str, marks: &Marks, activated: bool) -> Vec<(i64, i64)> {
        let removes_old = activated && self.hard();
        let recs = self
            .seed
            .iter()
            .chain(&self.main)
            .filter(|r| r.stream == stream && marks.covers(r))
            .filter(|r| !removes_old || r.version.is_none_or(|v| v >= 2));
        let mut rows: Vec<(i64, i64)> = if self.mode == Mode::AppendOnly {
            recs.map(|r| (r.id, r.n)).collect()
        } else if self.mode == Mode::Insert {
            // In sequence order: a key's first record lands, later ones are skipped while it
            // is there, a delete removes it.
            let mut held: BTreeMap<i64, &Rec> = BTreeMap::new();
            for r in recs {
                if r.deleted {
                    held.remove(&r.id);
                } else {
                    held.entry(r.id).or_insert(r);
                }
            }
            held.values().map(|r| (r.id, r.n)).collect()
        } else {
            let mut latest: BTreeMap<i64, &Rec> = BTreeMap::new();
            for r in recs {
                latest.insert(r.id, r); // in sequence order: the latest wins
            }
            latest
                .values()
                .filter(|r| !(self.mode == Mode::HardDelete && r.deleted))
                .map(|r| (r.id, r.n))
                .collect()
        };
        rows.sort_unstable();
        rows
    }
}

pub const STREAMS: [&str; 3] = ["a", "b", "c"];

/// A table's rows as (id, n), sorted; its marks; whether an ACTIVATE_VERSION was committed.
pub fn contents(wh: &Path, stream: &str) -> (Vec<(i64, i64)>, Marks, bool) {
    let root = wh.join(stream);
    if !root.join("_delta_log").exists() {
        return (Vec::new(), Marks::default(), false);
    }
    let t = read_table(&root, stream);
    let mut rows: Vec<(i64, i64)> = t
        .rows
        .iter()
        .map(|r| (r["id"].as_i64().expect("id"), r["n"].as_i64().expect("n")))
        .collect();
    rows.sort_unstable();
    let log: String = std::fs::read_dir(root.join("_delta_log"))
        .expect("log")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json").then(|| std::fs::read_to_string(p).ok())?
        })
        .collect();
    let mut marks = Marks {
        legacy: t.txn,
        producers: BTreeMap::new(),
    };
    for p in [P1, P2] {
        if let Some(v) = txn_version(&root, &format!("target-warehouse:{stream}:{p}")) {
            marks.producers.insert(p, v);
        }
    }
    (rows, marks, log.contains("\"operation\":\"DELETE\""))
}

/// The checks on a warehouse after a run that failed (see the module documentation).
pub fn check_failed_run(input: &Input, wh: &Path, r: &Run, what: &str) {
    let committed: BTreeMap<&str, _> = STREAMS.iter().map(|s| (*s, contents(wh, s))).collect();
    for (stream, (rows, marks, activated)) in &committed {
        assert_eq!(
            rows,
            &input.model(stream, marks, *activated),
            "{what}: table {stream} holds exactly the records its marks {marks:?} cover"
        );
        assert_eq!(
            unreferenced_files(&wh.join(stream)),
            Vec::<String>::new(),
            "{what}: no file of the failed run is left outside {stream}'s log"
        );
    }
    // Every record before the last STATE printed is committed.
    let printed = r.stdout_lines();
    if let Some(last) = printed.last().and_then(|s| s["pos"].as_u64()) {
        for rec in &input.main[..last as usize] {
            let marks = &committed[rec.stream].1;
            assert!(
                marks.covers(rec),
                "{what}: state pos {last} printed, but record {} of {} (seq {}, {:?}) is above the marks {marks:?}",
                rec.n,
                rec.stream,
                rec.seq,
                rec.producer
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// Which hit of a step fails: the second where a load reaches it many times (something of the
/// run is committed first), the first where it is reached once or twice.
fn nth(step: Step) -> u32 {
    match step {
        Step::DataFileWrite
        | Step::Fsync
        | Step::Publish
        | Step::DvWrite
        | Step::CommitBeforeLog
        | Step::CommitAfterLog => 2,
        Step::PartMerge
        | Step::RewriteFile
        | Step::Compaction
        | Step::Checkpoint
        | Step::ActivateVersion => 1,
    }
}

/// Steps a load of this mode never reaches: no deletion vectors in append-only tables, no
/// parts where every stream is upserted (an upsert's batch is written whole).
fn reached(mode: Mode, step: Step) -> bool {
    !matches!(
        (mode, step),
        (Mode::AppendOnly, Step::DvWrite)
            | (
                Mode::Upsert | Mode::HardDelete | Mode::Insert,
                Step::PartMerge
            )
    )
}

fn fault_matrix(mode: Mode) {
    let input = Input::new(mode);
    let base = tempfile::tempdir().expect("tempdir");
    let seeded = base.path().join("seeded");
    let r = run(&seeded, input.seed_config(), &input.seed_lines);
    assert!(r.ok(), "seed: {}", r.stderr());
    let clean_wh = base.path().join("clean");
    copy_dir(&seeded, &clean_wh);
    let r = run(&clean_wh, input.config(), &input.main_lines);
    assert!(r.ok(), "clean load: {}", r.stderr());
    let clean: Vec<_> = STREAMS.iter().map(|s| contents(&clean_wh, s).0).collect();
    for (stream, rows) in STREAMS.iter().zip(&clean) {
        assert_eq!(rows, &input.model(stream, &Marks::all(), *stream == "b"));
    }
    for stream in ["a", "c"] {
        let marks = contents(&clean_wh, stream).1;
        let (p1, p2) = (marks.producers.get(P1), marks.producers.get(P2));
        assert!(
            p1.zip(p2).is_some_and(|(p1, p2)| p1 > p2),
            "{stream}: one mark per producer: {marks:?}"
        );
    }
    for step in Step::ALL {
        let what = format!("{mode:?}, {}:{}", step.name(), nth(step));
        let wh = base.path().join(step.name());
        copy_dir(&seeded, &wh);
        let spec = format!("{}:{}", step.name(), nth(step));
        let r = run_env(&wh, input.config(), &input.main_lines, &[(ENV, &spec)]);
        if reached(mode, step) {
            assert!(!r.ok(), "{what}: the run must fail");
            let err = r.stderr();
            assert!(
                err.contains(&format!("injected failure at step {}", step.name())),
                "{what}: {err}"
            );
            check_failed_run(&input, &wh, &r, &what);
        } else {
            assert!(
                r.ok(),
                "{what}: not reached, the run succeeds: {}",
                r.stderr()
            );
            assert!(!r.stderr().contains("failpoint fired"), "{what}");
        }
        let again = run(&wh, input.config(), &input.main_lines);
        assert!(again.ok(), "{what}: rerun: {}", again.stderr());
        if reached(mode, step) {
            assert_eq!(
                again.stdout_lines().last(),
                Some(&json!({"pos": input.main.len(), "activated": true})),
                "{what}: the rerun prints the last state"
            );
        }
        for (stream, rows) in STREAMS.iter().zip(&clean) {
            assert_eq!(
                &contents(&wh, stream).0,
                rows,
                "{what}: after the rerun, {stream} equals a clean load"
            );
        }
        std::fs::remove_dir_all(&wh).expect("cleanup");
    }
}

#[test]
fn every_step_failing_in_an_append_only_load_then_a_rerun_equals_a_clean_load() {
    fault_matrix(Mode::AppendOnly);
}

#[test]
fn every_step_failing_in_an_upsert_load_then_a_rerun_equals_a_clean_load() {
    fault_matrix(Mode::Upsert);
}

#[test]
fn every_step_failing_in_a_hard_delete_load_then_a_rerun_equals_a_clean_load() {
    fault_matrix(Mode::HardDelete);
}

#[test]
fn every_step_failing_in_an_insert_load_then_a_rerun_equals_a_clean_load() {
    fault_matrix(Mode::Insert);
}

#[test]
fn a_batch_whose_file_fails_is_not_covered_by_the_mark_of_the_batch_cut_after_it() {
    // The case of issue 20: an append-only stream; the next-to-last batch's data file fails
    // (here its fsync; a full disk in the issue) while the last, small batch is cut at the end
    // of the input beside it. That last batch must not commit: its mark would cover the failed
    // rows, and the rerun would skip them as replays. Three times: whether the last batch is
    // cut before the failure is seen depends on the threads (measured without the rule: the
    // failed rows were lost in 3 runs of 5).
    for _ in 0..3 {
        last_batch_cut_beside_a_failing_one();
    }
}

fn last_batch_cut_beside_a_failing_one() {
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("s", json!({"n": {"type": "integer"}}), &[])];
    let total = 4005;
    for i in 0..total {
        msgs.push(record(
            "s",
            json!({"n": i, "pad": "q".repeat(4000), "_sdc_sequence": i + 1}),
        ));
        if (i + 1) % 100 == 0 || i + 1 == total {
            msgs.push(state(json!({"pos": i + 1})));
        }
    }
    let input = lines(&msgs);
    // Two batches of 2,000 rows (~8 MB each, written whole when cut), then 5 rows at the end
    // of the input: the last batch is cut while the second one's file is still being written
    // (usually: encoding 8 MB takes longer than parsing 5 rows; when it does not, the failure
    // stops the run before the last batch is cut, and the outcome is the same).
    let config = json!({"batch_size_rows": 2000});
    let r = run_env(&wh, config.clone(), &input, &[(ENV, "fsync:2")]);
    assert!(!r.ok());
    assert!(
        r.stderr().contains("injected failure at step fsync"),
        "{}",
        r.stderr()
    );
    let t = read_table(&wh.join("s"), "s");
    let mut ns: Vec<i64> = t.rows.iter().filter_map(|r| r["n"].as_i64()).collect();
    ns.sort_unstable();
    let mark = t.txn.expect("the first batch is committed");
    assert_eq!(
        ns,
        (0..mark).collect::<Vec<_>>(),
        "the table holds exactly the records up to its mark"
    );
    assert!(mark < total, "the failed batch is not committed");
    for s in r.stdout_lines() {
        assert!(
            s["pos"].as_i64().is_some_and(|p| p <= mark),
            "state {s} past the mark {mark}"
        );
    }
    assert_eq!(unreferenced_files(&wh.join("s")), Vec::<String>::new());
    let again = run(&wh, config, &input);
    assert!(again.ok(), "{}", again.stderr());
    assert_eq!(again.stdout_lines().last(), Some(&json!({"pos": total})));
    let mut ns: Vec<i64> = read_table(&wh.join("s"), "s")
        .rows
        .iter()
        .filter_map(|r| r["n"].as_i64())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..total).collect::<Vec<_>>());
}

#[test]
fn a_failed_compaction_loses_nothing_and_the_run_says_so() {
    // Compaction changes no data: the batch before it is committed, later batches commit and
    // their states are printed, the compaction's files are gone, and the run exits non-zero.
    let (_d, wh) = warehouse();
    let mut msgs = vec![schema_msg("f", json!({"id": {"type": "integer"}}), &[])];
    for i in 1..=40 {
        msgs.push(record("f", json!({"id": i, "_sdc_sequence": i})));
        msgs.push(state(json!({"pos": i})));
    }
    let r = run_env(
        &wh,
        json!({"batch_size_rows": 1}),
        &lines(&msgs),
        &[(ENV, "compaction")],
    );
    assert!(!r.ok(), "a failed compaction fails the run");
    let err = r.stderr();
    assert!(
        err.contains("the compaction after a commit failed")
            && err.contains("nothing is lost")
            && err.contains("injected failure at step compaction"),
        "{err}"
    );
    assert_eq!(r.stdout_lines().last(), Some(&json!({"pos": 40})));
    let t = read_table(&wh.join("f"), "f");
    assert_eq!(
        (t.rows.len(), t.txn, t.version),
        (40, Some(40), 39),
        "no compaction committed"
    );
    assert_eq!(unreferenced_files(&wh.join("f")), Vec::<String>::new());
}
