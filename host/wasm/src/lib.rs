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
