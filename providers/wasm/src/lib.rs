//! avm's WASM plugin host: a [`Provider`](avm_core::Provider) backed by a sandboxed component.
//!
//! Plugins are components built for `wasm32-wasip2` against the WIT package
//! `avm:provider@0.1.0` (`wit/avm-provider-0.1.0`). The host keeps one wasmtime
//! [`Engine`](wasmtime::Engine) per process (pooling allocator, epoch interruption with a 2 ms
//! ticker) and, for every call, a fresh store and instance from a cached `InstancePre`, so no
//! state leaks between calls and a call that traps leaves nothing poisoned behind.
//!
//! Limits per mount (options `timeout`, `memory`, `output`): a call that runs too long is
//! `timed-out`; one that grows its memory past the limit is `too-large`; a result, log or body
//! over `output` is `too-large`; a panic is `internal` with the panic message. WASI grants nothing
//! by default — no environment, no directories, no sockets; `env` and `dirs` (read-only) grant
//! those. The `http-get` import only fetches URLs matching the mount's `http` patterns, otherwise
//! `permission-denied`. The key-value imports see only the mount's own scope.
//!
//! Compiled components are cached in `$XDG_CACHE_HOME/avm/wasm`, keyed by the component's bytes
//! and the engine, so a second load skips compilation.

pub mod clock;
pub mod kv;
pub mod options;
pub mod provider;
pub mod runtime;

pub use options::WasmOptions;
pub use provider::{WasmEnv, WasmProvider};

/// Builds this repository's guest workspace (`plugins/`) for `wasm32-wasip2` in release and
/// returns the folder holding the `.wasm` files. For the repository's own tests and benches
/// (it runs the `cargo` that runs them, from `$CARGO`).
pub fn build_repo_guests() -> avm_core::Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .status()
        .map_err(|e| {
            avm_core::Error::new(
                avm_core::ErrorKind::Unavailable,
                format!("cannot run cargo: {e}"),
            )
        })?;
    if !status.success() {
        return Err(avm_core::Error::new(
            avm_core::ErrorKind::Unavailable,
            "building plugins/ for wasm32-wasip2 failed (is the target installed? rustup target add wasm32-wasip2)",
        ));
    }
    Ok(root.join("target/wasm32-wasip2/release"))
}
