//! avm's MCP server driven by the official MCP Python SDK (`tests/mcp_sdk/check.py`), over
//! stdio and streamable HTTP. Needs a Python with the `mcp` package: `AVM_MCP_PYTHON` names it
//! (`.ci/run` makes one); without it the test says why it skips, and with `REQUIRE_MCP_SDK` set
//! it fails instead.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

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
    let served = env.path("served.db");
    let mut srv = env
        .cmd(&[
            "--db",
            s(&served),
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--no-mounts",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(srv.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap()
        .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mcp_sdk/check.py");
    let run = std::process::Command::new(&py)
        .args([
            script,
            "--avm",
            env!("CARGO_BIN_EXE_avm"),
            "--db",
            s(&env.db()),
            "--url",
            &format!("{base}/mcp"),
        ])
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("data"))
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
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
