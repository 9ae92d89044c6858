//! avm native provider (config type `"native"`): serves paths from a shared library that
//! implements a small, versioned C ABI.
//!
//! ```toml
//! [[mounts]]
//! pattern = "/native/**"
//! type = "native"
//! options = { library = "~/lib/libnative_hello.so", max_output = 1048576 }
//! ```
//!
//! # Trust
//!
//! A native plugin runs inside the avm process, with all its rights and memory: it is
//! trusted code, exactly like avm itself. Unlike a WASM plugin it is not sandboxed, its calls
//! cannot be interrupted (request deadlines do not apply), and a crash or a panic in it takes
//! the host down (a panic cannot cross the C boundary; Rust aborts when one tries). Mount only
//! libraries you would run yourself.
//!
//! # The ABI, version 1
//!
//! Declared in `providers/native/avm_native.h`; `examples/native-hello` implements it in Rust.
//!
//! ```c
//! uint32_t avm_native_abi_version(void);        // required; must return 1
//! const char *avm_native_describe(void);        // required; static, one line
//! int32_t avm_native_read(const char *request_json, char **out);                      // required
//! int32_t avm_native_write(const char *request_json, const char *content, char **out); // optional
//! int32_t avm_native_list(const char *request_json, char **out);  // optional; JSON array of names
//! void avm_native_free(char *s);                // required; frees what came back through out
//! ```
//!
//! * Strings are UTF-8 and NUL-terminated. The host owns its inputs for the duration of the
//!   call; the plugin owns each `*out` string until the host passes it to `avm_native_free`,
//!   which it always does, after copying it.
//! * `request_json` is `{"path", "suffix", "query": {}, "captures": {}, "caller", "mount"}`
//!   (`caller` is `{"type":"operator"}` or `{"type":"agent","id":"…"}`; a repeated query key
//!   keeps its first value).
//! * A return of 0 is success. 1..=14 are [`ErrorKind`]s in declaration order
//!   ([`ErrorKind::ALL`]) with `*out` holding the message; any other code is `Internal`.
//! * A listing is a JSON array of child names, one segment each; a directory's ends in `/`.
//! * Functions may be called from several threads at once; plugins must be thread-safe.
//!
//! The library is loaded once, when the provider is built: the ABI version is checked first
//! (a mismatch is `Unavailable`, naming the file and both versions), then every symbol is
//! resolved, and the library stays loaded for the provider's lifetime.
//!
//! Stat has no function of its own: a path that reads is a file of that size; one that
//! reads as not-found but lists is a directory.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, c_char};
use std::path::PathBuf;

use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat, WriteInput,
};
use libloading::Library;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The ABI version this host speaks.
pub const ABI_VERSION: u32 = 1;

/// Entries a recursive listing collects at most before it stops with `TooLarge`.
const MAX_RECURSIVE_ENTRIES: usize = 100_000;

/// The longest description kept from `avm_native_describe`.
const MAX_DESCRIPTION: usize = 200;

/// Options of a `native` mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeOptions {
    /// Path of the shared library; `~` and `${VAR}` are expanded. Required.
    pub library: String,
    /// The longest result (content, listing or error message) accepted from the plugin, in
    /// bytes (default 1 MiB); a longer result is `too-large`.
    #[serde(default = "default_max_output")]
    pub max_output: u64,
}

fn default_max_output() -> u64 {
    1024 * 1024
}

impl NativeOptions {
    /// Options for `library` with the default output limit.
    pub fn new(library: impl Into<String>) -> Self {
        NativeOptions {
            library: library.into(),
            max_output: default_max_output(),
        }
    }
}

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type DescribeFn = unsafe extern "C" fn() -> *const c_char;
type ReadFn = unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> i32;
type WriteFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut *mut c_char) -> i32;
type ListFn = unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_char);

/// A loaded plugin: its entry points, and the library that keeps them valid.
struct Plugin {
    /// The library path as configured (expanded), for messages.
    file: String,
    description: String,
    read: ReadFn,
    write: Option<WriteFn>,
    list: Option<ListFn>,
    free: FreeFn,
    /// Declared last so it is dropped last: the function pointers above point into it.
    _lib: Library,
}

/// What came back from one call: the code and the `*out` text (copied, already freed).
struct Reply {
    code: i32,
    /// At most the limit's worth of `*out`.
    text: Option<String>,
    /// `*out` was longer than the limit (and `text` is cut short).
    too_long: bool,
}

impl Plugin {
    #[allow(unsafe_code)]
    fn load(path: &std::path::Path, file: &str) -> Result<Plugin> {
        let unavailable = |m: String| Error::new(ErrorKind::Unavailable, m);
        // SAFETY: loading runs the library's initialisers in this process. Native plugins are
        // trusted code by configuration (documented in the crate docs and avm_native.h); the
        // path was canonicalised, so the dynamic loader does not search for it.
        let lib = unsafe { Library::new(path) }
            .map_err(|e| unavailable(format!("cannot load native plugin {file}: {e}")))?;
        let missing = |sym: &str, e: libloading::Error| {
            unavailable(format!(
                "{file} is not an avm native plugin: it lacks {sym} ({e}); see providers/native/avm_native.h"
            ))
        };
        // SAFETY: the type is avm_native_abi_version's as avm_native.h declares it; a library
        // that exports the name with another type breaks the ABI it claims.
        let abi_version: AbiVersionFn =
            *unsafe { lib.get::<AbiVersionFn>("avm_native_abi_version") }
                .map_err(|e| missing("avm_native_abi_version", e))?;
        // SAFETY: a call without arguments to the function just resolved; `lib` is alive.
        let version = unsafe { abi_version() };
        if version != ABI_VERSION {
            return Err(unavailable(format!(
                "native plugin {file} implements abi version {version}, but this avm speaks version {ABI_VERSION}; rebuild the plugin against avm_native.h version {ABI_VERSION}"
            )));
        }
        // SAFETY: the types here and below are those avm_native.h declares for these names,
        // which a library reporting ABI version 1 promises to follow.
        let describe: DescribeFn = *unsafe { lib.get::<DescribeFn>("avm_native_describe") }
            .map_err(|e| missing("avm_native_describe", e))?;
        // SAFETY: as above.
        let read: ReadFn = *unsafe { lib.get::<ReadFn>("avm_native_read") }
            .map_err(|e| missing("avm_native_read", e))?;
        // SAFETY: as above.
        let free: FreeFn = *unsafe { lib.get::<FreeFn>("avm_native_free") }
            .map_err(|e| missing("avm_native_free", e))?;
        // SAFETY: as above; these two are optional, so a lookup failure only means "absent".
        let write: Option<WriteFn> = unsafe { lib.get::<WriteFn>("avm_native_write") }
            .ok()
            .map(|s| *s);
        // SAFETY: as above.
        let list: Option<ListFn> = unsafe { lib.get::<ListFn>("avm_native_list") }
            .ok()
            .map(|s| *s);
        // SAFETY: avm_native_describe returns NULL or a static NUL-terminated string, which is
        // read (not freed) while the library is loaded.
        let description = unsafe {
            let p = describe();
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let mut description = description.lines().next().unwrap_or("").trim().to_string();
        if description.len() > MAX_DESCRIPTION {
            let mut cut = MAX_DESCRIPTION;
            while !description.is_char_boundary(cut) {
                cut -= 1;
            }
            description.truncate(cut);
            description.push('…');
        }
        Ok(Plugin {
            file: file.to_string(),
            description,
            read,
            write,
            list,
            free,
            _lib: lib,
        })
    }

    /// Calls one entry point: `call` receives the `out` pointer and returns the code. The
    /// `*out` string is copied (up to `max` bytes) and handed back to the plugin's free.
    #[allow(unsafe_code)]
    fn invoke(&self, max: u64, call: impl FnOnce(*mut *mut c_char) -> i32) -> Reply {
        let mut out: *mut c_char = std::ptr::null_mut();
        let code = call(&mut out);
        if out.is_null() {
            return Reply {
                code,
                text: None,
                too_long: false,
            };
        }
        // SAFETY: per the ABI a non-NULL `*out` is a NUL-terminated string the plugin owns
        // until it is freed below; it is copied before that.
        let bytes = unsafe { CStr::from_ptr(out) }.to_bytes();
        let keep = usize::try_from(max).unwrap_or(usize::MAX).min(bytes.len());
        let too_long = keep < bytes.len();
        // An error message over the limit is still worth showing, so it is cut, not dropped.
        let text = Some(String::from_utf8_lossy(&bytes[..keep]).into_owned());
        // SAFETY: `out` came from this plugin and is freed exactly once; `bytes` is not used
        // past this point.
        unsafe { (self.free)(out) };
        Reply {
            code,
            text,
            too_long,
        }
    }

    #[allow(unsafe_code)]
    fn read(&self, max: u64, request: &CStr) -> Reply {
        let f = self.read;
        // SAFETY: `request` is NUL-terminated and outlives the call; `out` points at a local.
        self.invoke(max, |out| unsafe { f(request.as_ptr(), out) })
    }

    #[allow(unsafe_code)]
    fn list(&self, f: ListFn, max: u64, request: &CStr) -> Reply {
        // SAFETY: as in `read`.
        self.invoke(max, |out| unsafe { f(request.as_ptr(), out) })
    }

    #[allow(unsafe_code)]
    fn write(&self, f: WriteFn, max: u64, request: &CStr, content: &CStr) -> Reply {
        // SAFETY: both strings are NUL-terminated and outlive the call; `out` points at a local.
        self.invoke(max, |out| unsafe {
            f(request.as_ptr(), content.as_ptr(), out)
        })
    }
}

/// The `native` provider: a mount served by a shared library.
pub struct NativeProvider {
    plugin: Plugin,
    max_output: u64,
    mount: String,
}

impl std::fmt::Debug for NativeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeProvider")
            .field("mount", &self.mount)
            .field("library", &self.plugin.file)
            .field("write", &self.plugin.write.is_some())
            .field("list", &self.plugin.list.is_some())
            .finish()
    }
}

impl NativeProvider {
    /// Loads the library named in `opts` for mount `pattern`. Fails with `Unavailable` when
    /// the file is missing or cannot be loaded, lacks a required symbol, or speaks another
    /// ABI version; with `InvalidInput` for a bad path expansion or a zero `max_output`.
    pub fn new(pattern: &str, opts: NativeOptions) -> Result<Self> {
        avm_core::router::Pattern::parse(pattern)?;
        if opts.max_output == 0 {
            return Err(Error::invalid(format!(
                "native mount {pattern}: max_output must be at least 1"
            )));
        }
        let file = avm_core::config::expand(&opts.library)
            .map_err(|e| e.context(format!("native mount {pattern}: library")))?;
        // Canonical and absolute, so the loader never searches LD_LIBRARY_PATH or system
        // directories for a bare name.
        let path: PathBuf = std::fs::canonicalize(&file).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("native mount {pattern}: cannot use library {file}: {e}"),
            )
        })?;
        if !path.is_file() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("native mount {pattern}: library {file} is not a file"),
            ));
        }
        Ok(NativeProvider {
            plugin: Plugin::load(&path, &file)?,
            max_output: opts.max_output,
            mount: pattern.to_string(),
        })
    }

    fn request_json(&self, req: &Request, path: &str) -> Result<CString> {
        let mut query = Map::new();
        for (k, v) in req.query.pairs() {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        let caller = serde_json::to_value(&req.caller)
            .map_err(|e| Error::internal(format!("cannot encode the caller: {e}")))?;
        let v = serde_json::json!({
            "path": path,
            "suffix": req.suffix,
            "query": query,
            "captures": req.captures,
            "caller": caller,
            "mount": req.mount,
        });
        // serde_json escapes control characters, so the text has no NUL byte.
        CString::new(v.to_string())
            .map_err(|_| Error::internal("request json contained a NUL byte"))
    }

    /// Turns a reply into the result text or the plugin's error.
    fn outcome(&self, reply: Reply, what: &str) -> Result<String> {
        if reply.too_long && reply.code == 0 {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{what}: native plugin {} returned more than max_output ({} bytes)",
                    self.plugin.file, self.max_output
                ),
            ));
        }
        if reply.code == 0 {
            return Ok(reply.text.unwrap_or_default());
        }
        let kind = usize::try_from(reply.code)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| ErrorKind::ALL.get(i).copied())
            .unwrap_or(ErrorKind::Internal);
        let msg = reply
            .text
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| format!("native plugin failed with code {}", reply.code));
        let msg = if kind == ErrorKind::Internal {
            format!(
                "{msg} (native plugin {}, code {})",
                self.plugin.file, reply.code
            )
        } else {
            msg
        };
        Err(Error::new(kind, msg))
    }

    fn read_path(&self, req: &Request, path: &str) -> Result<String> {
        let request = self.request_json(req, path)?;
        let reply = self.plugin.read(self.max_output, &request);
        self.outcome(reply, &format!("read of {path}"))
    }

    /// Child names of `path`, as the plugin lists them (directories end in `/`).
    fn names(&self, f: ListFn, req: &Request, path: &str) -> Result<Vec<String>> {
        let request = self.request_json(req, path)?;
        let reply = self.plugin.list(f, self.max_output, &request);
        let text = self.outcome(reply, &format!("list of {path}"))?;
        let bad = |why: String| {
            Error::internal(format!(
                "native plugin {} listed {path} wrongly: {why}; expected a JSON array of names",
                self.plugin.file
            ))
        };
        let names: Vec<String> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for n in &names {
            let base = n.strip_suffix('/').unwrap_or(n);
            if base.is_empty() || base.contains('/') || base == "." || base == ".." {
                return Err(bad(format!("{n:?} is not a single path segment")));
            }
        }
        Ok(names)
    }

    fn lister(&self, path: &str) -> Result<ListFn> {
        self.plugin
            .list
            .ok_or_else(|| Error::unsupported("list", path))
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn entry(path: String, kind: NodeKind) -> Entry {
    Entry {
        path,
        kind,
        // The ABI does not report sizes in listings; 0 means unknown.
        size: 0,
        version: None,
        updated_at: None,
    }
}

impl Provider for NativeProvider {
    fn info(&self) -> ProviderInfo {
        let description = if self.plugin.description.is_empty() {
            format!("native plugin {}", self.plugin.file)
        } else {
            format!(
                "{} (native plugin {})",
                self.plugin.description, self.plugin.file
            )
        };
        ProviderInfo {
            kind: "native".into(),
            description,
            ops: Ops {
                read: true,
                list: self.plugin.list.is_some(),
                write: self.plugin.write.is_some(),
                ..Ops::default()
            },
            suffixes: Vec::new(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        self.read_path(req, &req.path).map(Output::text)
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        let stat = Stat::untimed;
        match self.read_path(req, &req.path) {
            Ok(text) => Ok(stat(NodeKind::File, text.len() as u64)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
                match self.plugin.list {
                    Some(f) if self.names(f, req, &req.path).is_ok() => Ok(stat(NodeKind::Dir, 0)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        let f = self.lister(&req.path)?;
        let mut entries = Vec::new();
        if opts.recursive {
            let mut dirs = vec![req.path.clone()];
            let mut seen = BTreeSet::new();
            while let Some(dir) = dirs.pop() {
                // A plugin that lists a directory inside itself must not loop forever.
                if !seen.insert(dir.clone()) {
                    continue;
                }
                for n in self.names(f, req, &dir)? {
                    match n.strip_suffix('/') {
                        Some(d) => dirs.push(join(&dir, d)),
                        None => entries.push(entry(join(&dir, &n), NodeKind::File)),
                    }
                }
                // Directories visited count too: a plugin that always lists one more
                // subdirectory would otherwise never stop.
                if entries.len() + dirs.len() + seen.len() > MAX_RECURSIVE_ENTRIES {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!(
                            "recursive list of {} passed {MAX_RECURSIVE_ENTRIES} entries; list a smaller subtree",
                            req.path
                        ),
                    ));
                }
            }
        } else {
            for n in self.names(f, req, &req.path)? {
                entries.push(match n.strip_suffix('/') {
                    Some(d) => entry(join(&req.path, d), NodeKind::Dir),
                    None => entry(join(&req.path, &n), NodeKind::File),
                });
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        Ok(Listing::page(entries, opts))
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let Some(f) = self.plugin.write else {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is served by native plugin {}, which does not export avm_native_write",
                    req.path, self.plugin.file
                ),
            ));
        };
        let what = req.describe("write");
        let content = match input {
            WriteInput::Text(t) => t,
            WriteInput::Put(put) => {
                let plain = !put.append
                    && put.meta.is_none()
                    && put.tags.is_none()
                    && put.importance.is_none()
                    && put.expires_at.is_none();
                let Some(content) = put.content.filter(|_| plain) else {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "{what}: native plugins take whole content only (no append, metadata, tags, importance or expiry)"
                        ),
                    ));
                };
                if put.create_only {
                    // The ABI has no create-only write; checking first is the best it allows.
                    match self.read_path(req, &req.path) {
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                        Ok(_) => {
                            return Err(Error::new(
                                ErrorKind::AlreadyExists,
                                format!("{what}: {} exists", req.path),
                            ));
                        }
                    }
                }
                match content {
                    avm_core::Content::Text(t) => t,
                    avm_core::Content::Bytes(_) => {
                        return Err(Error::invalid(format!(
                            "{what}: native plugins take text; this content is binary"
                        )));
                    }
                }
            }
            WriteInput::Record(_) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: native plugins do not import records"),
                ));
            }
        };
        let content = CString::new(content).map_err(|_| {
            Error::invalid(format!(
                "{what}: the content contains a NUL byte, which a native plugin cannot receive"
            ))
        })?;
        let request = self.request_json(req, &req.path)?;
        let reply = self.plugin.write(f, self.max_output, &request, &content);
        self.outcome(reply, &what).map(Output::text)
    }
}
