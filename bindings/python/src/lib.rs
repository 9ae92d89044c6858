//! `avm._avm`: the Rust core of the `avm` Python package.
//!
//! It opens avm exactly as the `avm` command does ([`avm::App::open_with`]: the same
//! configuration, mounts, services and policy) and offers the Host's operations to the
//! pure-Python layer (`python/avm/_api.py`), which gives them the reference API's shapes
//! (`AVM`, `AgentMemory`, `Node`, …). Every call goes through the Host as the caller the
//! object stands for, never to a provider; every call releases the GIL, and one object may be
//! used from many threads at once. avm's errors become Python exceptions in one place
//! ([`py_err`]).

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::Value;

use avm::App;
use avm_core::address::{Address, suffixed};
use avm_core::{
    Caller, Content, Error, ErrorKind, ListOptions, Put, RemoveOptions, SearchOptions, WriteInput,
};

create_exception!(
    avm,
    AVMError,
    PyException,
    "Base class of every error avm reports."
);
create_exception!(
    avm,
    NotFound,
    AVMError,
    "The path (or version, or link) does not exist."
);
create_exception!(
    avm,
    NotADirectory,
    AVMError,
    "A file was used where a directory was expected."
);
create_exception!(
    avm,
    IsADirectory,
    AVMError,
    "A directory was used where a file was expected."
);
create_exception!(
    avm,
    AlreadyExists,
    AVMError,
    "The target exists and the operation refuses to overwrite it."
);
create_exception!(
    avm,
    NotEmpty,
    AVMError,
    "A directory that must be empty is not."
);
create_exception!(
    avm,
    PermissionDenied,
    AVMError,
    "The caller may not do this; the message names the rule that refused."
);
create_exception!(
    avm,
    ReadOnly,
    AVMError,
    "The path is served by a provider that does not accept writes."
);
create_exception!(
    avm,
    InvalidInput,
    AVMError,
    "The request itself is malformed (bad path, bad query, bad JSON, ...)."
);
create_exception!(
    avm,
    Unsupported,
    AVMError,
    "The provider does not offer this operation or suffix."
);
create_exception!(
    avm,
    TooLarge,
    AVMError,
    "The input or output exceeds a configured limit."
);
create_exception!(
    avm,
    Busy,
    AVMError,
    "A resource stayed locked past the configured timeout."
);
create_exception!(
    avm,
    StorageFull,
    AVMError,
    "The storage behind the store is full."
);
create_exception!(
    avm,
    TimedOut,
    AVMError,
    "The operation ran past its deadline."
);
create_exception!(
    avm,
    Unavailable,
    AVMError,
    "A backing resource (database file, remote service, model) cannot be used."
);
create_exception!(
    avm,
    Internal,
    AVMError,
    "A bug or an unexpected failure inside avm."
);

/// The one place avm's errors become Python exceptions: one class per [`ErrorKind`], all
/// subclasses of `avm.AVMError`, carrying avm's message.
fn py_err(e: Error) -> PyErr {
    let m = e.message().to_string();
    match e.kind() {
        ErrorKind::NotFound => NotFound::new_err(m),
        ErrorKind::NotADirectory => NotADirectory::new_err(m),
        ErrorKind::IsADirectory => IsADirectory::new_err(m),
        ErrorKind::AlreadyExists => AlreadyExists::new_err(m),
        ErrorKind::NotEmpty => NotEmpty::new_err(m),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(m),
        ErrorKind::ReadOnly => ReadOnly::new_err(m),
        ErrorKind::InvalidInput => InvalidInput::new_err(m),
        ErrorKind::Unsupported => Unsupported::new_err(m),
        ErrorKind::TooLarge => TooLarge::new_err(m),
        ErrorKind::Busy => Busy::new_err(m),
        ErrorKind::StorageFull => StorageFull::new_err(m),
        ErrorKind::TimedOut => TimedOut::new_err(m),
        ErrorKind::Unavailable => Unavailable::new_err(m),
        ErrorKind::Internal => Internal::new_err(m),
    }
}

/// A JSON value as the Python value `json.loads` would give.
fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A read's two forms for Python: its text and its structured data.
type TextAndData<'py> = (String, Bound<'py, PyAny>);

/// The opened avm, shared by every [`Core`] made from it (one per agent); the store's
/// buffered access times are flushed when the last one goes, as the command does on exit.
struct Shared {
    app: App,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.app.memory.store().sync();
    }
}

/// avm opened in this process, acting as one caller (the operator or an agent). The Python
/// classes `avm.AVM` and `avm.AgentMemory` wrap it; use those.
#[pyclass(frozen, module = "avm._avm")]
struct Core {
    shared: Arc<Shared>,
    caller: Caller,
}

impl Core {
    fn app(&self) -> &App {
        &self.shared.app
    }

    /// Reads an address: through a running `avm serve` when `warm` (as the command does for
    /// recall and navigation), else from the Host in this process.
    fn read_output(&self, address: &str, warm: bool) -> avm_core::Result<avm_core::Output> {
        if warm {
            self.app().read_warm(&self.caller, address)
        } else {
            self.app().host.read(&self.caller, address)
        }
    }
}

fn pairs_ref(pairs: &[(String, String)]) -> Vec<(&str, String)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

#[pymethods]
impl Core {
    /// Opens avm as `avm [--db DB] [--config FILE] [--agent NAME]` would.
    #[new]
    #[pyo3(signature = (db=None, config=None, agent=None))]
    fn new(
        py: Python<'_>,
        db: Option<PathBuf>,
        config: Option<PathBuf>,
        agent: Option<String>,
    ) -> PyResult<Self> {
        let app = py
            .detach(|| App::open_with(db, config, agent))
            .map_err(py_err)?;
        let caller = app.caller.clone();
        Ok(Core {
            shared: Arc::new(Shared { app }),
            caller,
        })
    }

    /// The same opened avm acting as agent `name`.
    fn as_agent(&self, name: &str) -> PyResult<Core> {
        avm_core::config::validate_agent_id(name).map_err(py_err)?;
        Ok(Core {
            shared: self.shared.clone(),
            caller: Caller::Agent(name.to_string()),
        })
    }

    /// The agent this object acts as, or `None` for the operator.
    #[getter]
    fn agent(&self) -> Option<String> {
        self.caller.agent().map(str::to_string)
    }

    /// The store: the SQLite file, or the PostgreSQL address when one is configured.
    #[getter]
    fn store(&self) -> PyResult<String> {
        let c = &self.app().config;
        match c.store_url().map_err(py_err)? {
            Some(url) => Ok(url),
            None => Ok(c.db_path().map_err(py_err)?.to_string_lossy().into_owned()),
        }
    }

    /// Whether semantic search is available (enabled, and the model files are installed).
    #[getter]
    fn semantic_available(&self) -> bool {
        self.app().semantic.is_some()
    }

    /// Reads `address` (a path, with an optional `:suffix` and `?query`): its text and data.
    #[pyo3(signature = (address, warm=false))]
    fn read<'py>(&self, py: Python<'py>, address: &str, warm: bool) -> PyResult<TextAndData<'py>> {
        let o = py
            .detach(|| {
                self.read_output(address, warm)
                    .map(|o| (o.text.clone(), o.data()))
            })
            .map_err(py_err)?;
        Ok((o.0, to_py(py, &o.1)?))
    }

    /// Reads `suffix` on `path` with the query `pairs`, each value percent-encoded as the
    /// command does (`/memory:recall?q=…`).
    #[pyo3(signature = (path, suffix, pairs, warm=false))]
    fn read_suffix<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        suffix: &str,
        pairs: Vec<(String, String)>,
        warm: bool,
    ) -> PyResult<TextAndData<'py>> {
        let o = py
            .detach(|| {
                let address = suffixed(path, suffix, &pairs_ref(&pairs))?;
                self.read_output(&address, warm)
                    .map(|o| (o.text.clone(), o.data()))
            })
            .map_err(py_err)?;
        Ok((o.0, to_py(py, &o.1)?))
    }

    /// Writes `text` to `suffix` on `path` with the query `pairs` (`:remember`, `:links`, a
    /// message to `/tell/NAME`, …).
    fn write_suffix<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        suffix: &str,
        pairs: Vec<(String, String)>,
        text: String,
    ) -> PyResult<TextAndData<'py>> {
        let o = py
            .detach(|| {
                let address = suffixed(path, suffix, &pairs_ref(&pairs))?;
                self.app()
                    .host
                    .write(&self.caller, &address, WriteInput::Text(text))
                    .map(|o| (o.text.clone(), o.data()))
            })
            .map_err(py_err)?;
        Ok((o.0, to_py(py, &o.1)?))
    }

    /// Writes a node (`avm write`): `content` is `str` or `bytes`; `meta_json` keys are merged
    /// into its metadata (a JSON object); `ttl` is a duration (`90s`, `2h`, `7d`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (path, content, meta_json=None, tags=None, importance=None, ttl=None, create_only=false, append=false))]
    fn write<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        content: &Bound<'py, PyAny>,
        meta_json: Option<String>,
        tags: Option<Vec<String>>,
        importance: Option<f64>,
        ttl: Option<String>,
        create_only: bool,
        append: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let content = if let Ok(b) = content.cast::<PyBytes>() {
            Content::from_bytes(b.as_bytes().to_vec())
        } else {
            Content::from(content.extract::<String>()?)
        };
        let data = py
            .detach(|| {
                let meta = match meta_json {
                    None => None,
                    Some(j) => match serde_json::from_str::<Value>(&j) {
                        Ok(Value::Object(m)) => Some(m),
                        Ok(Value::Null) => None,
                        _ => return Err(Error::invalid("meta must be a dict of JSON values")),
                    },
                };
                if let Some(i) = importance
                    && !(0.0..=1.0).contains(&i)
                {
                    return Err(Error::invalid(format!("importance {i} is outside 0..1")));
                }
                let expires_at = match ttl {
                    Some(t) => {
                        let d = avm_core::time::parse_duration(&t)?;
                        Some(Some(avm_core::time::now_micros().saturating_add(
                            i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
                        )))
                    }
                    None => None,
                };
                let put = Put {
                    content: Some(content),
                    append,
                    meta,
                    tags,
                    importance,
                    expires_at,
                    create_only,
                    ..Put::default()
                };
                let path = Address::path(path)?.path;
                self.app()
                    .host
                    .write(&self.caller, &path, WriteInput::Put(put))
                    .map(|o| o.data())
            })
            .map_err(py_err)?;
        to_py(py, &data)
    }

    /// Removes `path` (to the trash, or for good with `hard`): the Host's result.
    #[pyo3(signature = (path, recursive=false, hard=false))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        recursive: bool,
        hard: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = py
            .detach(|| {
                self.app()
                    .host
                    .remove(&self.caller, path, RemoveOptions { recursive, hard })
                    .map(|o| o.data())
            })
            .map_err(py_err)?;
        to_py(py, &data)
    }

    /// Moves `src` (a node or a subtree) to `dst`: the Host's result.
    #[pyo3(signature = (src, dst, force=false))]
    fn rename<'py>(
        &self,
        py: Python<'py>,
        src: &str,
        dst: &str,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = py
            .detach(|| {
                self.app()
                    .host
                    .rename(&self.caller, src, dst, force)
                    .map(|o| o.data())
            })
            .map_err(py_err)?;
        to_py(py, &data)
    }

    /// Lists `prefix`: every file below it (`recursive`) or its children, one page; returns
    /// the entries (`path`, `kind`, `size`, `version`, `updated_at` in µs) and whether more
    /// remain.
    #[pyo3(signature = (prefix, recursive=true, limit=100, offset=0))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        recursive: bool,
        limit: usize,
        offset: usize,
    ) -> PyResult<(Bound<'py, PyAny>, bool)> {
        let (entries, more) = py
            .detach(|| {
                let l = self.app().host.list(
                    &self.caller,
                    prefix,
                    &ListOptions {
                        recursive,
                        limit: Some(limit),
                        offset,
                    },
                )?;
                let v = serde_json::to_value(&l.entries)
                    .map_err(|e| Error::internal(format!("listing as JSON: {e}")))?;
                Ok((v, l.more))
            })
            .map_err(py_err)?;
        Ok((to_py(py, &entries)?, more))
    }

    /// Searches below `path`: `mode` `fts` (full text), `semantic` or `hybrid` (both need the
    /// embedding model). Returns hits (`path`, `score` in 0..1, `snippet`), best first.
    #[pyo3(signature = (query, path="/", limit=10, mode="fts"))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        path: &str,
        limit: usize,
        mode: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = py
            .detach(|| {
                if mode == "fts" {
                    let hits = self.app().host.search(
                        &self.caller,
                        path,
                        &SearchOptions {
                            query: query.to_string(),
                            limit,
                        },
                    )?;
                    return serde_json::to_value(&hits)
                        .map_err(|e| Error::internal(format!("hits as JSON: {e}")));
                }
                if self.app().semantic.is_none() {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "search mode {mode} needs the embedding model, which is not installed or is off ([embedding]); run `avm model install`"
                        ),
                    ));
                }
                let address = suffixed(
                    path,
                    "search",
                    &[
                        ("q", query.to_string()),
                        ("limit", limit.to_string()),
                        ("mode", mode.to_string()),
                    ],
                )?;
                Ok(self.app().host.read(&self.caller, &address)?.data())
            })
            .map_err(py_err)?;
        to_py(py, &data)
    }

    /// This agent's counts (`avm agent-stats`): private memories, shared ones it may read,
    /// its last change and its operations.
    fn agent_stats<'py>(&self, py: Python<'py>) -> PyResult<TextAndData<'py>> {
        let o = py
            .detach(|| {
                let app = self.app();
                let keep = |p: &str| app.host.may_read(&self.caller, p);
                avm_recall::navigate::agent_stats(app.store.as_ref(), &self.caller, &keep)
                    .map(|o| (o.text.clone(), o.data()))
            })
            .map_err(py_err)?;
        Ok((o.0, to_py(py, &o.1)?))
    }

    /// Flushes buffered access times to the store (done by itself when the last object of
    /// this opened avm goes away).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.app().memory.store().sync())
            .map_err(py_err)
    }
}

/// The extension module `avm._avm`.
#[pymodule]
fn _avm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Core>()?;
    m.add("AVMError", py.get_type::<AVMError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("NotADirectory", py.get_type::<NotADirectory>())?;
    m.add("IsADirectory", py.get_type::<IsADirectory>())?;
    m.add("AlreadyExists", py.get_type::<AlreadyExists>())?;
    m.add("NotEmpty", py.get_type::<NotEmpty>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("ReadOnly", py.get_type::<ReadOnly>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("Unsupported", py.get_type::<Unsupported>())?;
    m.add("TooLarge", py.get_type::<TooLarge>())?;
    m.add("Busy", py.get_type::<Busy>())?;
    m.add("StorageFull", py.get_type::<StorageFull>())?;
    m.add("TimedOut", py.get_type::<TimedOut>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("Internal", py.get_type::<Internal>())?;
    Ok(())
}
