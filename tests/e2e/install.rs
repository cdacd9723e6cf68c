//! The ways a user installs the binaries, each run as the user runs it: `cargo install --path`,
//! and the Python wheels (maturin, `bindings = "bin"`) that `pip install` and Meltano's `pip_url`
//! take, then `meltano install` + `meltano run` with neither `bin/` wrappers nor
//! `CARGO_TARGET_DIR`.
//!
//! Both reuse the workspace build the test command has just made (same target directory,
//! same profile): one feature set for every package alone and for the workspace
//! (`workspace-hack/`) means they compile only this workspace's crates, never the tree again.
//! Each asserts that, so a change that would make installing rebuild the world fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{bin_dir, peers, read_table, repo_root, run_ok, Receiver};

/// The target directory the test command built into (the parent of `debug/`).
fn target_dir() -> PathBuf {
    bin_dir()
        .parent()
        .expect("the binaries' directory has a parent")
        .to_path_buf()
}

/// A build command in the repository, reusing the test command's build.
///
/// Its intermediate artifacts go to the test command's target directory (cargo's `build-dir`),
/// its final ones to a directory of its own (`CARGO_TARGET_DIR`): a fresh build still re-links
/// the binaries it hands over, which in the shared `debug/` would pull them from under the
/// tests running them meanwhile. It runs as from a shell, without the variables cargo sets for
/// this test (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`…): some build scripts ask to be rerun when
/// those change (ring's does), so inheriting them would rebuild half the tree.
fn build_command(program: impl AsRef<std::ffi::OsStr>, artifacts: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_test = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_by_cargo_test {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(repo_root())
        .env("CARGO_BUILD_BUILD_DIR", target_dir())
        .env("CARGO_TARGET_DIR", artifacts)
        .env("CARGO_TERM_COLOR", "never");
    cmd
}

/// The cargo profile the test command built with (`debug/` holds `dev`'s output).
fn profile() -> String {
    match bin_dir().file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    }
}

fn cargo(artifacts: &Path) -> Command {
    build_command(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        artifacts,
    )
}

/// The names of this workspace's packages.
fn workspace_packages() -> BTreeSet<String> {
    let out = run_ok(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(repo_root())
            .args(["metadata", "--no-deps", "--format-version", "1", "--locked"]),
    );
    let meta: Value = serde_json::from_str(&out).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .map(|p| p["name"].as_str().expect("a package has a name").to_owned())
        .collect()
}

/// Runs a build command; asserts it succeeded and compiled no crate from outside the workspace
/// (cargo's `Compiling <name> v<version>` lines on stderr). Returns its stderr.
fn assert_builds_only_workspace_crates(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stderr}",
        out.status
    );
    let ours = workspace_packages();
    let foreign: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
        .filter(|rest| !ours.contains(rest.split_whitespace().next().unwrap_or_default()))
        .collect();
    assert!(
        foreign.is_empty(),
        "{cmd:?} compiled dependencies again, so installing would not reuse the workspace \
         build (a feature set differs; regenerate workspace-hack/, see its Cargo.toml): \
         {foreign:?}"
    );
    stderr
}

/// `--version` and `--about` of an installed binary.
fn assert_runs(bin: &Path, name: &str) {
    let version = run_ok(Command::new(bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("{name} {}", env!("CARGO_PKG_VERSION")),
        "{}",
        bin.display()
    );
    let about: Value = serde_json::from_str(&run_ok(
        Command::new(bin).args(["--about", "--format", "json"]),
    ))
    .expect("--about --format json prints JSON");
    assert_eq!(about["name"], name, "{about}");
}

#[test]
fn cargo_install_reuses_the_workspace_build_and_installs_working_binaries() {
    let root = tempfile::tempdir().unwrap();
    for name in ["tap-webhook", "target-warehouse"] {
        let stderr = assert_builds_only_workspace_crates(
            cargo(&root.path().join("target"))
                .args(["install", "--locked", "--no-track", "--profile", &profile()])
                .arg("--path")
                .arg(repo_root().join(name))
                .arg("--root")
                .arg(root.path()),
        );
        assert!(stderr.contains("Installing"), "{stderr}");
        assert_runs(&root.path().join("bin").join(name), name);
    }
}

/// Builds `name`'s wheel with maturin into `out`, reusing the workspace build; returns its path.
fn build_wheel(
    peers: &std::collections::BTreeMap<String, String>,
    name: &str,
    out: &Path,
) -> PathBuf {
    // The profile the test command built, not the package's own (`dist`).
    assert_builds_only_workspace_crates(
        build_command(&peers["MATURIN"], &out.join("target"))
            .args([
                "build",
                "--locked",
                "--profile",
                &profile(),
                "--manifest-path",
            ])
            .arg(repo_root().join(name).join("Cargo.toml"))
            .arg("--out")
            .arg(out),
    );
    let prefix = format!("{}-", name.replace('-', "_"));
    let wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".whl"))
        })
        .collect();
    assert_eq!(
        wheels.len(),
        1,
        "one {name} wheel in {}: {wheels:?}",
        out.display()
    );
    wheels[0].clone()
}

/// meltano.yml with one plugin's `pip_url` replaced (asserting the line is there).
fn replace_line(yml: &str, from: &str, to: &str) -> String {
    assert_eq!(
        yml.matches(from).count(),
        1,
        "meltano.yml has exactly one `{from}`"
    );
    yml.replace(from, to)
}

fn meltano(
    peers: &std::collections::BTreeMap<String, String>,
    project: &Path,
    args: &[&str],
) -> String {
    run_ok(
        Command::new(&peers["MELTANO"])
            .current_dir(project)
            .arg("--log-level=warning")
            .args(args)
            // The plugins find their binaries in their own virtualenvs, nowhere else.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("WEBHOOK_WAREHOUSE_BIN_DIR")
            // Only the wheels built here: never a same-named package from an index.
            .env("PIP_NO_INDEX", "1")
            .env("UV_NO_INDEX", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("TAP_WEBHOOK_SPOOL_PATH", project.join("spool.sqlite"))
            .env("TARGET_WAREHOUSE_WAREHOUSE_PATH", project.join("warehouse"))
            .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("MELTANO_CLI_DISABLE_VERSION_CHECK", "true")
            .env("NO_COLOR", "1"),
    )
}

#[test]
#[ignore = "needs the Python peers (bash tests/run.sh)"]
fn wheels_install_with_meltano_pip_url_and_run_the_pipeline() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    let tap_wheel = build_wheel(&peers, "tap-webhook", &wheels);
    let target_wheel = build_wheel(&peers, "target-warehouse", &wheels);

    // The repository's meltano.yml, its pip_urls pointing at the wheels instead of the source.
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let yml = std::fs::read_to_string(repo_root().join("meltano.yml")).unwrap();
    let yml = replace_line(
        &yml,
        "pip_url: ./tap-webhook\n",
        &format!("pip_url: {}\n", tap_wheel.display()),
    );
    let yml = replace_line(
        &yml,
        "pip_url: ./target-warehouse\n",
        &format!("pip_url: {}\n", target_wheel.display()),
    );
    std::fs::write(project.join("meltano.yml"), yml).unwrap();
    meltano(&peers, &project, &["install"]);
    for (kind, name) in [
        ("extractors", "tap-webhook"),
        ("loaders", "target-warehouse"),
    ] {
        let installed = project.join(format!(".meltano/{kind}/{name}/venv/bin/{name}"));
        assert_runs(&installed, name);
    }

    let config = dir.path().join("receiver.json");
    std::fs::write(
        &config,
        json!({"spool_path": project.join("spool.sqlite"), "listen_address": "127.0.0.1:0"})
            .to_string(),
    )
    .unwrap();
    let receiver = Receiver::start(&config);
    for i in 0..3 {
        assert_eq!(receiver.post("data", &format!(r#"{{"i":{i}}}"#), &[]), 200);
    }
    meltano(
        &peers,
        &project,
        &["run", "tap-webhook", "target-warehouse"],
    );
    let table = read_table(&peers, &project.join("warehouse/data"));
    let rows = table["duckdb"]["rows"].as_array().expect("rows");
    let is: Vec<i64> = rows.iter().map(|r| r["i"].as_i64().expect("i")).collect();
    assert_eq!(is, vec![0, 1, 2], "each delivery once: {table}");
}
