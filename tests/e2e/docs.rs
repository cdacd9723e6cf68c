//! The README's configuration reference is what the binaries' `--about` renders from
//! `schemas/`: regenerate it with `scripts/gen-config-reference.sh` when a setting changes.

use std::process::Command;

use crate::harness::{repo_root, run_ok, tap_bin, target_bin};

fn settings_table(bin: &std::path::Path) -> String {
    let about = run_ok(Command::new(bin).args(["--about", "--format", "markdown"]));
    let table = about
        .split("## Settings")
        .nth(1)
        .expect("--about has a Settings section");
    table.trim().to_owned()
}

#[test]
fn readme_configuration_reference_matches_the_schemas() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for (name, bin) in [
        ("tap-webhook", tap_bin()),
        ("target-warehouse", target_bin()),
    ] {
        let begin = format!("<!-- {name} settings: generated -->");
        let end = format!("<!-- end {name} settings -->");
        let section = readme
            .split(&begin)
            .nth(1)
            .and_then(|rest| rest.split(&end).next())
            .unwrap_or_else(|| panic!("README.md has no generated section for {name}"));
        assert_eq!(
            section.trim(),
            settings_table(&bin),
            "README's {name} settings drifted from schemas/: run scripts/gen-config-reference.sh"
        );
    }
}

#[test]
fn meltano_yml_declares_every_setting_of_both_schemas() {
    let yml = std::fs::read_to_string(repo_root().join("meltano.yml")).unwrap();
    for schema in ["tap-webhook", "target-warehouse"] {
        let text = std::fs::read_to_string(
            repo_root().join(format!("schemas/{schema}.config.schema.json")),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for name in v["properties"].as_object().unwrap().keys() {
            assert!(
                yml.contains(&format!("- name: {name}\n")),
                "meltano.yml lacks {schema} setting {name}"
            );
        }
    }
}
