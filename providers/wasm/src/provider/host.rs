//! The host side of a plugin call: the shared log, the memory limiter, the WASI view and the
//! `avm:provider/host` imports (log, http-get, key-value store).

use std::time::Instant;

use avm_core::ErrorKind;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::bindings::avm::provider::host::{self as wit_host, Level, Response};
use super::bindings::avm::provider::types::{self as wit, ErrorKind as WitKind};
use super::{LOG_LINE_MAX, LOG_LINES, Limiter, Shared, State};

impl Shared {
    pub(super) fn log(&self, line: String) {
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

pub(super) fn from_wit_kind(k: WitKind) -> ErrorKind {
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
