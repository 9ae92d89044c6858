//! [`WasmProvider`]: an avm provider backed by a sandboxed component.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use avm_core::provider::{Ops, ProviderInfo, Request};
use avm_core::router::Pattern;
use avm_core::{Caller, Error, ErrorKind, Result};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::kv::Kv;
use crate::options::{Grant, WasmOptions, parse_grant};
use crate::runtime::{self, Compiled, TICK};

mod host;
mod ops;

use host::from_wit_kind;
use ops::info_from;

mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../../wit/avm-provider-0.1.0",
        // Host imports may stop the call with a typed error (an avm_core::Error inside).
        imports: { default: trappable },
    });
}

use bindings::avm::provider::types as wit;
use bindings::{Plugin, PluginPre};

/// The suffix the host adds to every wasm mount: the plugin's recent log lines.
pub const LOG_SUFFIX: &str = "plugin-log";
/// Log lines kept per plugin.
const LOG_LINES: usize = 200;
/// Longest kept log line, in bytes.
const LOG_LINE_MAX: usize = 1024;
/// The longest call a mount may allow.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// WASI resources (streams, pollables) a call may hold at once.
const MAX_RESOURCES: usize = 10_000;
/// Captured stdout/stderr per call, in bytes.
const STDIO_CAP: usize = 64 << 10;

/// What every call of one plugin shares.
struct Shared {
    name: String,
    opts: WasmOptions,
    grants: Vec<Grant>,
    kv: Kv,
    log: Mutex<VecDeque<String>>,
}

/// Per-call state inside the wasmtime store.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    shared: Arc<Shared>,
    deadline: Instant,
    log_budget: usize,
}

/// Memory limiter that remembers whether it refused a grow, so a guest that aborts after a failed
/// allocation is reported as over its memory limit rather than as a crash.
struct Limiter {
    memory: usize,
    refused: bool,
}

/// A provider served by a WASM component: every call runs in a fresh, sandboxed instance.
pub struct WasmProvider {
    engine: &'static Engine,
    pre: PluginPre<State>,
    shared: Arc<Shared>,
    info: ProviderInfo,
    prefix: String,
    compiled: Compiled,
}

/// Where to keep what a wasm mount needs besides its options.
#[derive(Debug, Clone, Default)]
pub struct WasmEnv {
    /// Compiled-component cache (`None` = no cache).
    pub cache_dir: Option<PathBuf>,
    /// Key-value store used when the options name none: a SQLite file, or a PostgreSQL
    /// address (`postgres://…`, see [`WasmEnv::with_store`]).
    pub default_kv: Option<PathBuf>,
}

impl WasmEnv {
    /// The defaults: the user's cache directory and `<data dir>/plugins-kv.db`.
    pub fn standard() -> Self {
        WasmEnv {
            cache_dir: runtime::default_cache_dir(),
            default_kv: avm_core::config::data_dir().map(|d| d.join("plugins-kv.db")),
        }
    }

    /// These settings for a host whose store is `store` (a SQLite file or a PostgreSQL
    /// address): with PostgreSQL, plugins keep their key-value data in it by default, so every
    /// host's instance of a plugin sees the same data; with a file, nothing changes.
    pub fn with_store(mut self, store: &str) -> Self {
        if avm_core::config::is_store_url(store) {
            self.default_kv = Some(PathBuf::from(store));
        }
        self
    }
}

impl WasmProvider {
    /// Loads the component named in `opts` for the mount `pattern`: compiles it (or takes it
    /// from the cache), links it against the host interface and asks it to describe itself.
    pub fn new(pattern: &str, opts: WasmOptions, env: &WasmEnv) -> Result<Self> {
        if opts.memory > crate::options::MAX_MEMORY {
            return Err(Error::invalid(format!(
                "mount {pattern}: memory {} is over the largest allowed, 1GiB",
                opts.memory
            )));
        }
        if opts.timeout.is_zero() {
            return Err(Error::invalid(format!(
                "mount {pattern}: timeout must be more than 0"
            )));
        }
        if opts.timeout > MAX_TIMEOUT {
            return Err(Error::invalid(format!(
                "mount {pattern}: timeout {} ms is over the largest allowed, {} ms",
                opts.timeout.as_millis(),
                MAX_TIMEOUT.as_millis()
            )));
        }
        let grants = opts
            .http
            .iter()
            .map(|p| parse_grant(p))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid(format!("mount {pattern}: {e}")))?;
        let prefix = Pattern::parse(pattern)?.literal_prefix();
        let file = PathBuf::from(avm_core::config::expand(&opts.component)?);
        // A file, or a PostgreSQL address (the shared store's, or one the mount names).
        let kv = match &opts.kv {
            Some(k) => Kv::open_location(&avm_core::config::expand(k)?, pattern, opts.kv_max)?,
            None => match &env.default_kv {
                Some(d) => match d.to_str() {
                    Some(url) if avm_core::config::is_store_url(url) => {
                        Kv::postgres(url, pattern, opts.kv_max)?
                    }
                    _ => Kv::new(d.clone(), pattern, opts.kv_max),
                },
                None => {
                    return Err(Error::invalid(format!(
                        "mount {pattern}: cannot tell where the plugin key-value store goes; set options.kv"
                    )));
                }
            },
        };
        for host_dir in opts.dirs.values() {
            let d = avm_core::config::expand(host_dir)?;
            if !std::path::Path::new(&d).is_dir() {
                return Err(Error::invalid(format!(
                    "mount {pattern}: granted directory {d} does not exist"
                )));
            }
        }
        let engine = runtime::engine()?;
        let (component, compiled) =
            runtime::load_component(engine, &file, env.cache_dir.as_deref())?;
        let mut linker: Linker<State> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(internal)?;
        crate::clock::add_to_linker(&mut linker).map_err(internal)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(internal)?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            Error::invalid(format!(
                "plugin {} does not fit avm:provider@0.1.0 (or imports something the host does not grant): {}",
                file.display(),
                runtime::first_line(&e)
            ))
        })?;
        let pre = PluginPre::new(pre).map_err(|e| {
            Error::invalid(format!(
                "plugin {} does not export avm:provider/provider@0.1.0: {}",
                file.display(),
                runtime::first_line(&e)
            ))
        })?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| pattern.to_string());
        let shared = Arc::new(Shared {
            name,
            grants,
            kv,
            opts,
            log: Mutex::new(VecDeque::new()),
        });
        let mut p = WasmProvider {
            engine,
            pre,
            shared,
            info: ProviderInfo {
                kind: "wasm".into(),
                description: String::new(),
                ops: Ops::default(),
                suffixes: Vec::new(),
            },
            prefix,
            compiled,
        };
        let described = p.call(None, |plugin, store| {
            plugin.avm_provider_provider().call_describe(store).map(Ok)
        })?;
        p.info = info_from(&described);
        Ok(p)
    }

    /// Whether the component came from the compile cache.
    pub fn compiled(&self) -> Compiled {
        self.compiled
    }

    /// The plugin's recent log lines (its `log` calls, stdout and stderr), oldest first.
    pub fn log_lines(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn store(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(Store<State>, MemoryOutputPipe, MemoryOutputPipe)> {
        let opts = &self.shared.opts;
        let now = Instant::now();
        let mut limit = opts.timeout;
        if let Some(d) = deadline {
            limit = limit.min(d.saturating_duration_since(now));
        }
        let stdout = MemoryOutputPipe::new(STDIO_CAP);
        let stderr = MemoryOutputPipe::new(STDIO_CAP);
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .monotonic_clock(crate::clock::Clock);
        for (k, v) in &opts.env {
            b.env(k, v);
        }
        for (guest, host) in &opts.dirs {
            let host = avm_core::config::expand(host)?;
            b.preopened_dir(&host, guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "cannot open granted directory {host}: {}",
                            runtime::first_line(&e)
                        ),
                    )
                })?;
        }
        let state = State {
            wasi: b.build(),
            table: {
                // Resources live in host memory, outside the guest's memory limit.
                let mut t = ResourceTable::new();
                t.set_max_capacity(MAX_RESOURCES);
                t
            },
            limiter: Limiter {
                memory: opts.memory as usize,
                refused: false,
            },
            shared: self.shared.clone(),
            deadline: now + limit,
            log_budget: opts.output as usize,
        };
        let mut store = Store::new(self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = (limit.as_micros() / TICK.as_micros()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        Ok((store, stdout, stderr))
    }

    /// Runs one export in a fresh instance and turns every way it can fail into an avm error.
    fn call<R: Send>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce(
            &Plugin,
            &mut Store<State>,
        ) -> wasmtime::Result<std::result::Result<R, wit::Error>>
        + Send,
    ) -> Result<R> {
        let (mut store, stdout, stderr) = self.store(deadline)?;
        let result = outside_async(|| match self.pre.instantiate(&mut store) {
            Ok(plugin) => f(&plugin, &mut store),
            Err(e) => Err(e),
        });
        self.keep_stdio("stdout", &stdout);
        let err_text = String::from_utf8_lossy(&stderr.contents()).to_string();
        self.keep_stdio("stderr", &stderr);
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::new(from_wit_kind(e.kind), e.message)),
            Err(e) => Err(self.failure(e, &store, &err_text)),
        }
    }

    fn keep_stdio(&self, what: &str, pipe: &MemoryOutputPipe) {
        let bytes = pipe.contents();
        if bytes.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&bytes).lines().take(50) {
            self.shared.log(format!("{what}: {line}"));
        }
    }

    fn failure(&self, e: wasmtime::Error, store: &Store<State>, stderr: &str) -> Error {
        let name = &self.shared.name;
        let opts = &self.shared.opts;
        if store.data().limiter.refused {
            return Error::new(
                ErrorKind::TooLarge,
                format!(
                    "plugin {name} went past its memory limit of {} bytes (option memory)",
                    opts.memory
                ),
            );
        }
        if let Some(fault) = e.downcast_ref::<Error>() {
            return Error::new(fault.kind(), format!("plugin {name}: {}", fault.message()));
        }
        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return Error::new(
                ErrorKind::Busy,
                format!("too many plugin calls at once; plugin {name} was not started"),
            );
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Error::new(
                ErrorKind::TimedOut,
                format!(
                    "plugin {name} ran past its time limit of {} ms (option timeout)",
                    opts.timeout.as_millis()
                ),
            ),
            Some(Trap::StackOverflow) => Error::new(
                ErrorKind::Internal,
                format!("plugin {name} overflowed its stack"),
            ),
            Some(Trap::UnreachableCodeReached) => {
                // Rust guests print "thread … panicked at FILE:LINE:COL:" and the message on
                // the next line; other guests, whatever they printed last.
                let lines: Vec<&str> = stderr.lines().collect();
                let why = match lines.iter().position(|l| l.contains("panicked at")) {
                    Some(i) => {
                        let at = lines[i].split("panicked at").nth(1).unwrap_or("").trim();
                        let msg = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
                        format!("panicked at {} {msg}", at.trim_end_matches(':'))
                    }
                    None => lines
                        .iter()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_string())
                        .unwrap_or_else(|| "no message".into()),
                };
                Error::new(ErrorKind::Internal, format!("plugin {name} crashed: {why}"))
            }
            Some(t) => Error::new(ErrorKind::Internal, format!("plugin {name} trapped: {t}")),
            None => Error::new(
                ErrorKind::Internal,
                format!("plugin {name} failed: {}", runtime::first_line(&e)),
            ),
        }
    }

    fn request(&self, req: &Request) -> wit::Request {
        wit::Request {
            path: req.path.clone(),
            mount: req.mount.clone(),
            captures: req
                .captures
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            suffix: req.suffix.clone(),
            query: req.query.pairs().to_vec(),
            caller: match &req.caller {
                Caller::Operator => wit::Caller::Operator,
                Caller::Agent(a) => wit::Caller::Agent(a.clone()),
            },
        }
    }

    fn capped(&self, text: String) -> Result<String> {
        if text.len() as u64 > self.shared.opts.output {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "plugin {} returned {} bytes; its output limit is {} (option output)",
                    self.shared.name,
                    text.len(),
                    self.shared.opts.output
                ),
            ));
        }
        Ok(text)
    }

    fn guest_read(&self, req: &Request) -> Result<String> {
        let r = self.request(req);
        let text = self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_read(s, &r)
        })?;
        self.capped(text)
    }

    /// The plugin log can show any caller's requests: operators only.
    fn log_allowed(&self, req: &Request) -> Result<()> {
        match req.caller {
            Caller::Operator => Ok(()),
            Caller::Agent(_) => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the log of plugin {} is for operators (it shows every caller's requests)",
                    self.shared.name
                ),
            )),
        }
    }

    fn is_root(&self, path: &str) -> bool {
        path == self.prefix || (self.prefix.is_empty() && path == "/")
    }
}

/// Runs `f` where wasmtime-wasi's blocking bindings may block. They drive guest I/O with the
/// current tokio runtime's `Handle::block_on` when there is one, which panics on a runtime
/// worker thread (the MCP server's tools run there); leave the async context first.
fn outside_async<T: Send>(f: impl FnOnce() -> wasmtime::Result<T> + Send) -> wasmtime::Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // A current-thread runtime cannot give its only thread away: use another one.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|_| Err(wasmtime::Error::msg("plugin call thread panicked")))
        }),
    }
}

fn internal(e: wasmtime::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("wasm linker: {}", runtime::first_line(&e)),
    )
}
