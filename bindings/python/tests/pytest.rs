//! The Python package's own tests (`bindings/python/tests/test_*.py`) under `cargo test`: builds
//! the package into a virtualenv with `maturin develop` (a debug build sharing this build's
//! target directory, so only this crate and pyo3 compile again) and runs `pytest` there.
//!
//! Needs a virtualenv with `maturin` and `pytest` (and `langgraph` for the store's tests):
//! `AVM_PYTHON` names its interpreter (`.ci/run` makes one). Without it the test says why it
//! skips; with `REQUIRE_PYTHON` set it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtualenv's interpreter, if one is configured.
fn python() -> Option<PathBuf> {
    match std::env::var("AVM_PYTHON") {
        Ok(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var_os("REQUIRE_PYTHON").is_none(),
                "REQUIRE_PYTHON is set but AVM_PYTHON names no Python"
            );
            eprintln!(
                "SKIP: AVM_PYTHON is not set (a virtualenv's python with `pip install maturin pytest langgraph`; .ci/run makes one)"
            );
            None
        }
    }
}

/// The `avm` binary of this build, when it was built (the tests start `avm serve` with it).
fn avm_binary() -> Option<PathBuf> {
    // This test runs as <target>/<profile>/deps/pytest-HASH.
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("avm");
    bin.is_file().then_some(bin)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{what}: ok\n{}", stdout.lines().last().unwrap_or(""));
}

#[test]
fn the_python_package_passes_its_pytest_suite() {
    let Some(py) = python() else { return };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // bin/python's virtualenv: maturin develop installs into the one VIRTUAL_ENV names.
    let venv = py
        .parent()
        .and_then(Path::parent)
        .expect("AVM_PYTHON is a virtualenv's bin/python");
    run(
        Command::new(&py)
            .args(["-m", "maturin", "develop", "--manifest-path"])
            .arg(here.join("Cargo.toml"))
            .env("VIRTUAL_ENV", venv)
            .current_dir(here),
        "maturin develop",
    );
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let mut pytest = Command::new(&py);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(here.join("tests"))
        // No user or system configuration, and no running server, unless a test starts one.
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .env("AVM_NO_SERVER", "1")
        .current_dir(here);
    if let Some(bin) = avm_binary() {
        pytest.env("AVM_BIN", bin);
    }
    run(&mut pytest, "pytest");
}
