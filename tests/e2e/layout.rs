//! The workspace's layering, as `cargo tree` sees it: front ends (FUSE, HTTP, MCP) reach
//! memory only through the Host, so none of them depends on a provider, service or worker
//! crate (everything under `providers/`, `services/` and `workers/`); only the `avm` binary
//! wires those. And `providers/` holds one crate per mount type, nothing else.

use std::path::Path;
use std::process::Command;

fn cargo(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The workspace's crates whose manifest lies under one of `folders` (`/providers/`, …).
fn crates_under(folders: &[&str]) -> Vec<String> {
    let meta: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ]))
    .unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| folders.iter().any(|f| m.contains(f)))
        })
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn providers_holds_one_crate_per_mount_type_and_nothing_else() {
    let mut crates = crates_under(&["/providers/"]);
    crates.sort();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_avm"))
        .args(["--json", "config", "types"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut expected: Vec<String> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("avm-provider-{}", t["type"].as_str().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(
        crates, expected,
        "providers/ is one crate per mount type (avm-provider-<type>); services and workers \
         go under services/ and workers/"
    );
}

#[test]
fn front_ends_depend_on_no_provider_crate() {
    let providers = crates_under(&["/providers/", "/services/", "/workers/"]);
    for wired in ["avm-provider-memory", "avm-recall", "avm-lifecycle"] {
        assert!(
            providers.iter().any(|p| p == wired),
            "{wired} was not found among {providers:?}"
        );
    }
    for front in ["avm-fuse", "avm-http", "avm-mcp"] {
        let tree = cargo(&[
            "tree",
            "--offline",
            "-p",
            front,
            "-e",
            "normal",
            "--prefix",
            "none",
        ]);
        let reached: Vec<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| providers.iter().any(|p| p == name))
            .collect();
        assert!(
            reached.is_empty(),
            "{front} depends on {reached:?}: a front end talks to the Host (avm-core), and only \
             the avm binary wires providers"
        );
    }
}
