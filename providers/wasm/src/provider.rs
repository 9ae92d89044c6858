//! [`WasmProvider`]: an avm provider backed by a sandboxed component.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use avm_core::provider::{
    Entry, ListOptions, Listing, NodeKind, Ops, Output, ProviderInfo, RemoveOptions, Request, Stat,
    SuffixOn, SuffixSpec, WriteInput,
};
use avm_core::router::Pattern;
use avm_core::{Caller, Error, ErrorKind, Provider, Result};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::kv::Kv;
use crate::options::{Grant, WasmOptions, parse_grant};
use crate::runtime::{self, Compiled, TICK};

mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../../wit/avm-provider-0.1.0",
        // Host imports may stop the call with a typed error (an avm_core::Error inside).
        imports: { default: trappable },
    });
}

use bindings::avm::provider::host::{self as wit_host, Level, Response};
use bindings::avm::provider::types::{self as wit, ErrorKind as WitKind};
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

impl Shared {
    fn log(&self, line: String) {
        let mut line = line;
        if line.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if let Ok(mut l) = self.log.lock() {
            if l.len() == LOG_LINES {
                l.pop_front();
            }
            l.push_back(line);
        }
    }
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

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for State {}

impl crate::clock::CallClock for State {
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

fn werr(kind: WitKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

fn to_wit_kind(k: ErrorKind) -> WitKind {
    match k {
        ErrorKind::NotFound => WitKind::NotFound,
        ErrorKind::NotADirectory => WitKind::NotADirectory,
        ErrorKind::IsADirectory => WitKind::IsADirectory,
        ErrorKind::AlreadyExists => WitKind::AlreadyExists,
        ErrorKind::NotEmpty => WitKind::NotEmpty,
        ErrorKind::PermissionDenied => WitKind::PermissionDenied,
        ErrorKind::ReadOnly => WitKind::ReadOnly,
        ErrorKind::InvalidInput => WitKind::InvalidInput,
        ErrorKind::Unsupported => WitKind::Unsupported,
        ErrorKind::TooLarge => WitKind::TooLarge,
        ErrorKind::Busy => WitKind::Busy,
        // WIT 0.1.0 is frozen and has no storage-full; guests see the store as unavailable.
        ErrorKind::StorageFull => WitKind::Unavailable,
        ErrorKind::TimedOut => WitKind::TimedOut,
        ErrorKind::Unavailable => WitKind::Unavailable,
        ErrorKind::Internal => WitKind::Internal,
    }
}

fn from_wit_kind(k: WitKind) -> ErrorKind {
    match k {
        WitKind::NotFound => ErrorKind::NotFound,
        WitKind::NotADirectory => ErrorKind::NotADirectory,
        WitKind::IsADirectory => ErrorKind::IsADirectory,
        WitKind::AlreadyExists => ErrorKind::AlreadyExists,
        WitKind::NotEmpty => ErrorKind::NotEmpty,
        WitKind::PermissionDenied => ErrorKind::PermissionDenied,
        WitKind::ReadOnly => ErrorKind::ReadOnly,
        WitKind::InvalidInput => ErrorKind::InvalidInput,
        WitKind::Unsupported => ErrorKind::Unsupported,
        WitKind::TooLarge => ErrorKind::TooLarge,
        WitKind::Busy => ErrorKind::Busy,
        WitKind::TimedOut => ErrorKind::TimedOut,
        WitKind::Unavailable => ErrorKind::Unavailable,
        WitKind::Internal => ErrorKind::Internal,
    }
}

impl wit_host::Host for State {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.log_budget == 0 {
            return Ok(());
        }
        let lvl = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let line = format!("{lvl}: {message}");
        self.log_budget = self.log_budget.saturating_sub(line.len());
        self.shared.log(line);
        Ok(())
    }

    fn http_get(
        &mut self,
        url: String,
    ) -> wasmtime::Result<std::result::Result<Response, wit::Error>> {
        let opts = &self.shared.opts;
        // Parse (and so normalise: `..`, `%2e`, case) before checking, so the URL checked is
        // the URL fetched.
        let parsed = match avm_provider_http::client::parse_url(&url) {
            Ok(u) => u,
            // Not an http(s) URL: nothing can grant it.
            Err(e) => return Ok(Err(werr(WitKind::PermissionDenied, e.message()))),
        };
        let grants = &self.shared.grants;
        let granted = |u: &avm_provider_http::client::Url| {
            let path_and_query = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
            u.username().is_empty()
                && u.password().is_none()
                && grants.iter().any(|g| {
                    g.allows(
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.port_or_known_default(),
                        &path_and_query,
                    )
                })
        };
        let allowed = granted(&parsed);
        if !allowed {
            self.shared
                .log(format!("warn: refused http-get {url} (not granted)"));
            return Ok(Err(werr(
                WitKind::PermissionDenied,
                format!(
                    "http-get {url} is not granted to plugin {}; grant it with options.http = [\"<url pattern>\"]",
                    self.shared.name
                ),
            )));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(werr(WitKind::TimedOut, "no time left for http-get")));
        }
        let fetch = avm_provider_http::client::Fetch {
            url: parsed.to_string(),
            headers: Vec::new(),
            timeout: left,
            max_bytes: opts.output,
        };
        // Every redirect hop is checked against the grants too.
        Ok(
            match avm_provider_http::client::get_granted(&fetch, &granted) {
                Ok(r) => Ok(Response {
                    status: r.status,
                    body: r.body,
                }),
                Err(e) => Err(werr(to_wit_kind(e.kind()), e.message())),
            },
        )
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        // A store that cannot answer stops the call with a typed error rather than reading as
        // "absent", which would let a read-modify-write overwrite real data.
        self.shared
            .kv
            .get(&key, self.deadline)
            .map_err(wasmtime::Error::new)
    }

    fn kv_set(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<std::result::Result<(), wit::Error>> {
        Ok(self
            .shared
            .kv
            .set(&key, &value, self.deadline)
            .map_err(|e| werr(to_wit_kind(e.kind()), e.message())))
    }

    fn kv_delete(
        &mut self,
        key: String,
    ) -> wasmtime::Result<std::result::Result<bool, wit::Error>> {
        Ok(self
            .shared
            .kv
            .delete(&key, self.deadline)
            .map_err(|e| werr(to_wit_kind(e.kind()), e.message())))
    }

    fn kv_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        self.shared
            .kv
            .keys(&prefix, self.deadline)
            .map_err(wasmtime::Error::new)
    }
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
    /// Key-value file used when the options name none.
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
        let kv_file = match &opts.kv {
            Some(k) => PathBuf::from(avm_core::config::expand(k)?),
            None => env.default_kv.clone().ok_or_else(|| {
                Error::invalid(format!(
                    "mount {pattern}: cannot tell where the plugin key-value store goes; set options.kv"
                ))
            })?,
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
            kv: Kv::new(kv_file, pattern, opts.kv_max),
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

fn info_from(d: &wit::Info) -> ProviderInfo {
    let mut suffixes: Vec<SuffixSpec> = d
        .suffixes
        .iter()
        .map(|s| SuffixSpec {
            name: s.name.clone(),
            on: match (s.on_file, s.on_dir) {
                (true, true) => SuffixOn::Any,
                (false, true) => SuffixOn::Dir,
                _ => SuffixOn::File,
            },
            read: s.readable,
            write: s.writable,
            query: s.query.clone(),
            help: s.help.clone(),
        })
        .collect();
    suffixes.push(SuffixSpec::new(
        LOG_SUFFIX,
        SuffixOn::Any,
        true,
        false,
        &[],
        "the plugin's recent log lines, stdout and stderr (kept by the host)",
    ));
    ProviderInfo {
        kind: "wasm".into(),
        description: d.description.clone(),
        ops: Ops {
            read: true,
            list: d.can_list,
            write: d.can_write,
            remove: d.can_remove,
            rename: false,
            search: false,
        },
        suffixes,
    }
}

impl Provider for WasmProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if req.suffix.as_deref() == Some(LOG_SUFFIX) {
            self.log_allowed(req)?;
            let lines = self.log_lines();
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            return Ok(Output::new(text, serde_json::json!(lines)));
        }
        self.guest_read(req).map(Output::text)
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        let dir = Stat::untimed(NodeKind::Dir, 0);
        if req.suffix.as_deref() == Some(LOG_SUFFIX) {
            self.log_allowed(req)?;
            return Ok(Stat::untimed(NodeKind::File, 0));
        }
        if self.is_root(&req.path) {
            return Ok(dir);
        }
        match self.guest_read(req) {
            Ok(text) => Ok(Stat::untimed(NodeKind::File, text.len() as u64)),
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(dir),
            Err(e) => Err(e),
        }
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if !self.info.ops.list {
            return Err(Error::unsupported("list", &req.path));
        }
        let r = self.request(req);
        let mut names = self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_list(s, &r)
        })?;
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let mut entries = Vec::new();
        for e in names {
            if e.name.is_empty() || e.name.contains('/') || e.name == "." || e.name == ".." {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "plugin {} listed an invalid name {:?} under {}",
                        self.shared.name, e.name, req.path
                    ),
                ));
            }
            entries.push(Entry {
                path: avm_core::address::join(&req.path, &e.name),
                kind: match e.kind {
                    wit::NodeKind::File => NodeKind::File,
                    wit::NodeKind::Dir => NodeKind::Dir,
                },
                size: e.size,
                version: None,
                updated_at: None,
            });
        }
        Ok(Listing::page(entries, opts))
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        if !self.info.ops.write {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is served by plugin {}, which takes no writes",
                    req.path, self.shared.name
                ),
            ));
        }
        let content = match input {
            WriteInput::Text(t) => t,
            WriteInput::Put(p)
                if p.meta.is_none()
                    && p.tags.is_none()
                    && p.importance.is_none()
                    && p.expires_at.is_none() =>
            {
                if p.create_only {
                    match self.guest_read(req) {
                        Ok(_) => {
                            return Err(Error::new(
                                ErrorKind::AlreadyExists,
                                format!("{} already exists", req.path),
                            ));
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                let text = |c: avm_core::Content| match c {
                    avm_core::Content::Text(t) => Ok(t),
                    avm_core::Content::Bytes(_) => Err(Error::invalid(format!(
                        "plugin {} takes text; this content is binary",
                        self.shared.name
                    ))),
                };
                match (p.content, p.append) {
                    (Some(c), false) => text(c)?,
                    (Some(c), true) => {
                        let mut old = match self.guest_read(req) {
                            Ok(t) => t,
                            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
                            Err(e) => return Err(e),
                        };
                        old.push_str(&text(c)?);
                        old
                    }
                    (None, _) => return Err(Error::unsupported("metadata write", &req.path)),
                }
            }
            _ => {
                return Err(Error::unsupported("metadata, tags or records", &req.path));
            }
        };
        if content.len() as u64 > self.shared.opts.output {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} bytes is more than plugin {} accepts (option output: {})",
                    content.len(),
                    self.shared.name,
                    self.shared.opts.output
                ),
            ));
        }
        let r = self.request(req);
        let text = self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_write(s, &r, &content)
        })?;
        self.capped(text).map(Output::text)
    }

    fn remove(&self, req: &Request, _opts: RemoveOptions) -> Result<Output> {
        if !self.info.ops.remove {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("plugin {} does not remove nodes", self.shared.name),
            ));
        }
        let r = self.request(req);
        self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_remove(s, &r)
        })?;
        Ok(Output::text(format!("removed {}", req.path)))
    }
}
