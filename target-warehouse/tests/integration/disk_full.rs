//! A real full disk (issue 20): the warehouse on a small tmpfs, a load larger than it. The run
//! fails with the disk's error, prints no state covering rows it lost, leaves no file outside
//! the log; once the disk has room again, the same input completes the table to a clean load.
//!
//! Mounting needs root (CI runs the tests as root): the test is `#[ignore]`d, `tests/run.sh` runs
//! it with `--include-ignored`, and where mounting is impossible it fails saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("mount -o remount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Records whose payload hardly compresses (hex of a pseudo-random sequence): ~1 KB each in
/// Parquet.
fn input(total: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut msgs = vec![schema_msg("d", json!({"n": {"type": "integer"}}), &[])];
    for i in 0..total {
        let mut pad = String::with_capacity(2048);
        for _ in 0..128 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            pad.push_str(&format!("{seed:016x}"));
        }
        msgs.push(record(
            "d",
            json!({"n": i, "pad": pad, "_sdc_sequence": i + 1}),
        ));
        if (i + 1) % 500 == 0 || i + 1 == total {
            msgs.push(state(json!({"pos": i + 1})));
        }
    }
    lines(&msgs)
}

fn ns(wh: &Path) -> (Vec<i64>, Option<i64>) {
    let t = read_table(&wh.join("d"), "d");
    let mut ns: Vec<i64> = t.rows.iter().filter_map(|r| r["n"].as_i64()).collect();
    ns.sort_unstable();
    (ns, t.txn)
}

#[test]
#[ignore = "mounts a tmpfs: needs root (bash tests/run.sh runs it)"]
fn a_full_disk_fails_the_load_loses_nothing_and_the_retry_completes_it() {
    let base = tempfile::tempdir().expect("tempdir");
    let mnt = base.path().join("mnt");
    let fs = match Tmpfs::mount(&mnt, "8m") {
        Ok(fs) => fs,
        Err(why) => panic!(
            "cannot mount a tmpfs for the disk-full test: {why} (run the tests as root, as `bash tests/run.sh` in CI does)"
        ),
    };
    const TOTAL: usize = 14_000;
    let input = input(TOTAL);
    // ~28 MB of JSON, ~14 MB of Parquet, in 4 MiB batches: the 8 MB disk fills mid-load.
    let config = json!({"batch_size_bytes": 4 << 20});
    let wh = mnt.join("warehouse");
    let r = run(&wh, config.clone(), &input);
    assert!(!r.ok(), "the load cannot fit");
    assert!(
        r.stderr().contains("No space left on device"),
        "{}",
        r.stderr()
    );
    let (rows, mark) = ns(&wh);
    let mark = mark.unwrap_or(0);
    assert!(mark < TOTAL as i64, "some rows did not fit");
    assert_eq!(
        rows,
        (0..mark).collect::<Vec<_>>(),
        "the table holds exactly the rows its mark covers"
    );
    for s in r.stdout_lines() {
        let pos = s["pos"].as_i64().expect("pos");
        assert!(pos <= mark, "state {pos} printed past the mark {mark}");
    }
    assert_eq!(
        unreferenced_files(&wh.join("d")),
        Vec::<String>::new(),
        "the failed batches' files are gone (the retry needs the space)"
    );

    fs.resize("64m");
    let again = run(&wh, config.clone(), &input);
    assert!(again.ok(), "{}", again.stderr());
    assert_eq!(again.stdout_lines().last(), Some(&json!({"pos": TOTAL})));
    let clean_wh = base.path().join("clean");
    let clean = run(&clean_wh, config, &input);
    assert!(clean.ok(), "{}", clean.stderr());
    let (clean_rows, clean_mark) = ns(&clean_wh);
    assert_eq!(clean_rows, (0..TOTAL as i64).collect::<Vec<_>>());
    assert_eq!(
        ns(&wh),
        (clean_rows, clean_mark),
        "the retry equals a clean load"
    );
}
