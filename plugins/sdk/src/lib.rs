//! # avm-plugin — write avm providers as WASM components
//!
//! Implement [`Provider`] for a type, call [`export!`] once, and build with
//! `cargo build --release --target wasm32-wasip2`. The generated WIT bindings
//! (`avm:provider@0.1.0`) stay hidden behind plain Rust types.
//!
//! ```ignore
//! use avm_plugin::{export, Info, Provider, Request, Result};
//!
//! struct Hello;
//!
//! impl Provider for Hello {
//!     fn describe() -> Info {
//!         Info::new("says hello")
//!     }
//!     fn read(req: Request) -> Result<String> {
//!         let name = req.capture("name").unwrap_or("world");
//!         Ok(format!("Hello, {name}!\n"))
//!     }
//! }
//!
//! export!(Hello);
//! ```
//!
//! What a plugin may do beyond computing is what the mount's config grants: [`host::http_get`]
//! for granted URL patterns, [`kv`] for a key-value store private to the mount, [`host::log`]
//! always. Everything else (files, environment, sockets) is denied unless the operator grants it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit/avm-provider-0.1.0",
        pub_export_macro: true,
        export_macro_name: "__avm_export_bindings",
        default_bindings_module: "avm_plugin::bindings",
    });
}

use bindings::avm::provider::types as wit;

/// The kind of an error; mirrors avm's error vocabulary one for one.
pub use wit::ErrorKind;

/// A result whose error is an avm [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An error returned to the host: a kind and a lowercase message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What was wrong and what would be accepted.
    pub message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// `not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// `invalid-input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// `unsupported`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// `is-a-directory`: what `read` returns for a path that is a directory.
    pub fn is_a_directory(path: &str) -> Self {
        Self::new(ErrorKind::IsADirectory, format!("{path} is a directory"))
    }
    /// `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        Error {
            kind: e.kind,
            message: e.message,
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        wit::Error {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person or script without an agent identity.
    Operator,
    /// An agent, by id.
    Agent(String),
}

/// One call from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The normalised full path (`/live/indicators/NVDA`).
    pub path: String,
    /// The mount pattern that routed it (`/live/indicators/{symbol}`).
    pub mount: String,
    /// Captures of the pattern by name (`**` holds the rest of the path).
    pub captures: BTreeMap<String, String>,
    /// The suffix without its colon, if any.
    pub suffix: Option<String>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Who asks.
    pub caller: Caller,
}

impl Request {
    /// The capture `name` of the mount pattern.
    pub fn capture(&self, name: &str) -> Option<&str> {
        self.captures.get(name).map(String::as_str)
    }
    /// The first query value for `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// A query value parsed as a number, `default` when absent; a bad number is `invalid-input`.
    pub fn query_num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.query(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::invalid(format!("query {key}={v:?} is not a number"))),
        }
    }
    /// The last segment of the path.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
}

impl From<wit::Request> for Request {
    fn from(r: wit::Request) -> Self {
        Request {
            path: r.path,
            mount: r.mount,
            captures: r.captures.into_iter().collect(),
            suffix: r.suffix,
            query: r.query,
            caller: match r.caller {
                wit::Caller::Operator => Caller::Operator,
                wit::Caller::Agent(a) => Caller::Agent(a),
            },
        }
    }
}

/// A suffix the plugin serves (`:rsi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suffix {
    name: String,
    on_file: bool,
    on_dir: bool,
    writable: bool,
    query: Vec<String>,
    help: String,
}

impl Suffix {
    /// A readable suffix on files.
    pub fn file(name: &str, help: &str) -> Self {
        Suffix {
            name: name.into(),
            on_file: true,
            on_dir: false,
            writable: false,
            query: Vec::new(),
            help: help.into(),
        }
    }
    /// A readable suffix on directories.
    pub fn dir(name: &str, help: &str) -> Self {
        Suffix {
            on_file: false,
            on_dir: true,
            ..Suffix::file(name, help)
        }
    }
    /// Also served on directories (or, after [`Suffix::dir`], on files).
    pub fn anywhere(mut self) -> Self {
        self.on_file = true;
        self.on_dir = true;
        self
    }
    /// Accepts writes.
    pub fn writable(mut self) -> Self {
        self.writable = true;
        self
    }
    /// Accepts these query keys.
    pub fn query(mut self, keys: &[&str]) -> Self {
        self.query = keys.iter().map(|k| k.to_string()).collect();
        self
    }
}

/// What the plugin offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    description: String,
    list: bool,
    write: bool,
    remove: bool,
    suffixes: Vec<Suffix>,
}

impl Info {
    /// A read-only plugin described by one line.
    pub fn new(description: &str) -> Self {
        Info {
            description: description.into(),
            list: false,
            write: false,
            remove: false,
            suffixes: Vec::new(),
        }
    }
    /// Serves listings ([`Provider::list`]).
    pub fn lists(mut self) -> Self {
        self.list = true;
        self
    }
    /// Takes writes ([`Provider::write`]).
    pub fn writes(mut self) -> Self {
        self.write = true;
        self
    }
    /// Removes nodes ([`Provider::remove`]).
    pub fn removes(mut self) -> Self {
        self.remove = true;
        self
    }
    /// Serves `suffix`.
    pub fn suffix(mut self, suffix: Suffix) -> Self {
        self.suffixes.push(suffix);
        self
    }
}

/// One listed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// One path segment.
    pub name: String,
    /// Directory or file.
    pub dir: bool,
    /// Size in bytes, if known.
    pub size: u64,
}

impl Entry {
    /// A file.
    pub fn file(name: impl Into<String>, size: u64) -> Self {
        Entry {
            name: name.into(),
            dir: false,
            size,
        }
    }
    /// A directory.
    pub fn dir(name: impl Into<String>) -> Self {
        Entry {
            name: name.into(),
            dir: true,
            size: 0,
        }
    }
}

/// The trait a plugin implements. Only `describe` and `read` are required.
pub trait Provider {
    /// What the plugin offers (called once when the host loads it).
    fn describe() -> Info;
    /// Reads a path or a suffix. Return [`Error::is_a_directory`] for directories.
    fn read(req: Request) -> Result<String>;
    /// Lists a directory.
    fn list(req: Request) -> Result<Vec<Entry>> {
        Err(Error::unsupported(format!("{} cannot be listed", req.path)))
    }
    /// Writes `content`; returns what the node now reads as, or a short confirmation.
    fn write(req: Request, content: String) -> Result<String> {
        let _ = content;
        Err(Error::new(
            ErrorKind::ReadOnly,
            format!("{} is read-only", req.path),
        ))
    }
    /// Removes a node.
    fn remove(req: Request) -> Result<()> {
        Err(Error::new(
            ErrorKind::ReadOnly,
            format!("{} cannot be removed", req.path),
        ))
    }
}

/// What the host offers every plugin.
pub mod host {
    use super::{Error, Result, bindings::avm::provider::host as h};

    /// Log levels.
    pub use h::Level;

    /// Writes a line to the host's log for this plugin (read it at `<mount>:plugin-log`).
    pub fn log(level: Level, message: &str) {
        h::log(level, message);
    }

    /// An HTTP response.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Body as text.
        pub body: String,
    }

    /// GETs `url`; `permission-denied` unless the mount's config grants a matching pattern.
    pub fn http_get(url: &str) -> Result<Response> {
        h::http_get(url)
            .map(|r| Response {
                status: r.status,
                body: r.body,
            })
            .map_err(Error::from)
    }
}

/// The mount's private key-value store.
pub mod kv {
    use super::{Error, Result, bindings::avm::provider::host as h};

    /// The value under `key`.
    pub fn get(key: &str) -> Option<String> {
        h::kv_get(key)
    }
    /// Stores `value` under `key`.
    pub fn set(key: &str, value: &str) -> Result<()> {
        h::kv_set(key, value).map_err(Error::from)
    }
    /// Removes `key`; true when it existed.
    pub fn delete(key: &str) -> Result<bool> {
        h::kv_delete(key).map_err(Error::from)
    }
    /// Keys beginning with `prefix`, sorted.
    pub fn keys(prefix: &str) -> Vec<String> {
        h::kv_keys(prefix)
    }
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use bindings::exports::avm::provider::provider as ex;

    pub fn describe<P: Provider>() -> wit::Info {
        let i = P::describe();
        wit::Info {
            description: i.description,
            can_list: i.list,
            can_write: i.write,
            can_remove: i.remove,
            suffixes: i
                .suffixes
                .into_iter()
                .map(|s| wit::SuffixSpec {
                    name: s.name,
                    on_file: s.on_file,
                    on_dir: s.on_dir,
                    readable: true,
                    writable: s.writable,
                    query: s.query,
                    help: s.help,
                })
                .collect(),
        }
    }

    pub fn read<P: Provider>(r: ex::Request) -> std::result::Result<String, wit::Error> {
        P::read(r.into()).map_err(Into::into)
    }

    pub fn list<P: Provider>(r: ex::Request) -> std::result::Result<Vec<wit::Entry>, wit::Error> {
        P::list(r.into())
            .map(|v| {
                v.into_iter()
                    .map(|e| wit::Entry {
                        name: e.name,
                        kind: if e.dir {
                            wit::NodeKind::Dir
                        } else {
                            wit::NodeKind::File
                        },
                        size: e.size,
                    })
                    .collect()
            })
            .map_err(Into::into)
    }

    pub fn write<P: Provider>(
        r: ex::Request,
        content: String,
    ) -> std::result::Result<String, wit::Error> {
        P::write(r.into(), content).map_err(Into::into)
    }

    pub fn remove<P: Provider>(r: ex::Request) -> std::result::Result<(), wit::Error> {
        P::remove(r.into()).map_err(Into::into)
    }
}

/// Exports a type implementing [`Provider`] as the component's `avm:provider/provider`.
#[macro_export]
macro_rules! export {
    ($t:ty) => {
        #[doc(hidden)]
        struct __AvmPluginExport;

        impl $crate::bindings::exports::avm::provider::provider::Guest for __AvmPluginExport {
            fn describe() -> $crate::bindings::avm::provider::types::Info {
                $crate::__private::describe::<$t>()
            }
            fn read(
                req: $crate::bindings::avm::provider::types::Request,
            ) -> ::std::result::Result<::std::string::String, $crate::bindings::avm::provider::types::Error> {
                $crate::__private::read::<$t>(req)
            }
            fn list(
                req: $crate::bindings::avm::provider::types::Request,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::avm::provider::types::Entry>,
                $crate::bindings::avm::provider::types::Error,
            > {
                $crate::__private::list::<$t>(req)
            }
            fn write(
                req: $crate::bindings::avm::provider::types::Request,
                content: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::bindings::avm::provider::types::Error> {
                $crate::__private::write::<$t>(req, content)
            }
            fn remove(
                req: $crate::bindings::avm::provider::types::Request,
            ) -> ::std::result::Result<(), $crate::bindings::avm::provider::types::Error> {
                $crate::__private::remove::<$t>(req)
            }
        }

        $crate::bindings::__avm_export_bindings!(__AvmPluginExport with_types_in $crate::bindings);
    };
}
