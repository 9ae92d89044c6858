//! avm's MCP server driven by the official MCP Python SDK (`tests/mcp_sdk/check.py`), over
//! stdio and streamable HTTP. Needs a Python with the `mcp` package: `AVM_MCP_PYTHON` names it
//! (`.ci/run` makes one); without it the test says why it skips, and with `REQUIRE_MCP_SDK` set
//! it fails instead.

use crate::{Env, s};

/// The Python interpreter with the MCP SDK, if one is configured.
fn python() -> Option<String> {
    match std::env::var("AVM_MCP_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("REQUIRE_MCP_SDK").is_none(),
                "REQUIRE_MCP_SDK is set but AVM_MCP_PYTHON names no Python"
            );
            eprintln!(
                "SKIP: AVM_MCP_PYTHON is not set (a Python with `pip install mcp`; .ci/run makes one)"
            );
            None
        }
    }
}

#[test]
fn the_official_python_sdk_drives_avm_over_stdio_and_http() {
    let Some(py) = python() else { return };
    let env = Env::new();
    // The server has a database of its own (env's, while stdio uses another).
    let srv = crate::http::Server::start(&env, &["127.0.0.1:0", "--no-mounts"]);
    let base = format!("http://{}", srv.addr);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp_sdk/check.py");
    let run = std::process::Command::new(&py)
        .args([
            script,
            "--avm",
            env!("CARGO_BIN_EXE_avm"),
            "--db",
            s(&env.path("stdio.db")),
            "--url",
            &format!("{base}/mcp"),
        ])
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("data"))
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap();
    drop(srv);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the SDK's check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("stdio: ok") && stdout.contains("http: ok"),
        "{stdout}"
    );
}
