//! The workspace's layering, as `cargo tree` sees it: front ends (FUSE, HTTP, MCP) reach
//! memory only through the Host, so none of them depends on a provider, service or worker
//! crate (everything under `providers/`); only the `avm` binary wires those.

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

#[test]
fn front_ends_depend_on_no_provider_crate() {
    let meta: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ]))
    .unwrap();
    let providers: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| m.contains("/providers/"))
        })
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        providers.iter().any(|p| p == "avm-provider-memory"),
        "the provider crates were not found: {providers:?}"
    );
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
