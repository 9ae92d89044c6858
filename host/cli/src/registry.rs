//! The provider types this build can mount, keyed by the configuration's `type`.
//!
//! This table is the one place a mount type is named: `avm` builds mounts from it, and
//! `avm config check`, `avm doctor` and `avm config types` ask it which types exist and
//! whether a mount's options are right. A new type is a crate under `providers/` plus one
//! entry here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use avm_core::config::{self, MountConfig, Problem};
use avm_core::{Provider, Result};
use avm_provider_memory::postgres::PgStoreOptions;
use avm_provider_memory::{MemoryOptions, MemoryProvider, StoreOptions};

/// What building a mount may need besides its own configuration.
pub struct Wiring<'a> {
    /// The configured store (a SQLite file or a PostgreSQL address), for mounts that do not
    /// name their own.
    pub default_store: &'a str,
    /// The local database path, beside which this host keeps its own files (indexes).
    pub local_db: &'a Path,
    /// SQLite store tuning from `[store]`.
    pub store_options: &'a StoreOptions,
    /// PostgreSQL store tuning from `[store]`.
    pub pg_options: &'a PgStoreOptions,
    /// Memory stores opened so far, by file or address: mounts of one database share one
    /// store (one writer).
    pub stores: &'a mut HashMap<String, MemoryProvider>,
}

/// One mount type.
pub struct ProviderType {
    /// The configuration's `type`.
    pub name: &'static str,
    /// One line on what it mounts, for `avm config types`.
    pub about: &'static str,
    /// Checks a mount's `options` without opening anything.
    pub check: fn(&MountConfig) -> Result<()>,
    /// Makes the provider of a mount.
    pub build: fn(&MountConfig, &mut Wiring) -> Result<Arc<dyn Provider>>,
}

/// Every type this build can mount, in the order `avm config types` lists them.
pub const TYPES: &[ProviderType] = &[
    ProviderType {
        name: "memory",
        about: "agent memory (the default store; `db` names another SQLite file or a postgres:// database)",
        check: |m| m.typed_options::<MemoryOptions>().map(drop),
        build: memory,
    },
    ProviderType {
        name: "wasm",
        about: "a sandboxed WebAssembly component (avm:provider WIT) with limits and grants",
        check: |m| {
            m.typed_options::<avm_provider_wasm::WasmOptions>()
                .map(drop)
        },
        build: |m, w| {
            // With a PostgreSQL store, plugins' key-value data lives there, shared by every host.
            Ok(Arc::new(avm_provider_wasm::WasmProvider::new(
                &m.pattern,
                m.typed_options()?,
                &avm_provider_wasm::WasmEnv::standard().with_store(w.default_store),
            )?))
        },
    },
    ProviderType {
        name: "http",
        about: "a remote HTTP API, read (and optionally written) through a URL template",
        check: |m| {
            m.typed_options::<avm_provider_http::HttpOptions>()
                .map(drop)
        },
        build: |m, _| {
            Ok(Arc::new(avm_provider_http::HttpProvider::new(
                &m.pattern,
                m.typed_options()?,
            )?))
        },
    },
    ProviderType {
        name: "script",
        about: "a program run per read or write, its output the content",
        check: |m| {
            m.typed_options::<avm_provider_script::ScriptOptions>()
                .map(drop)
        },
        build: |m, _| {
            Ok(Arc::new(avm_provider_script::ScriptProvider::new(
                &m.pattern,
                m.typed_options()?,
            )?))
        },
    },
    ProviderType {
        name: "sqlite",
        about: "rows of another SQLite database, through a read-only query",
        check: |m| {
            m.typed_options::<avm_provider_sqlite::SqliteOptions>()
                .map(drop)
        },
        build: |m, _| {
            Ok(Arc::new(avm_provider_sqlite::SqliteProvider::new(
                &m.pattern,
                m.typed_options()?,
            )?))
        },
    },
    ProviderType {
        name: "file",
        about: "a directory of ordinary files",
        check: |m| {
            m.typed_options::<avm_provider_file::FileOptions>()
                .map(drop)
        },
        build: |m, _| {
            Ok(Arc::new(avm_provider_file::FileProvider::new(
                &m.pattern,
                m.typed_options()?,
            )?))
        },
    },
    ProviderType {
        name: "index",
        about: "a code project's files and signatures (`avm index scan`)",
        check: |m| {
            m.typed_options::<avm_provider_index::IndexOptions>()
                .map(drop)
        },
        build: |m, w| {
            let mut o: avm_provider_index::IndexOptions = m.typed_options()?;
            if o.db.is_none() {
                o.db = Some(crate::app::index_db(w.local_db));
            }
            Ok(Arc::new(avm_provider_index::IndexProvider::new(
                &m.pattern, o,
            )?))
        },
    },
    ProviderType {
        name: "native",
        about: "a shared library speaking avm's C ABI (trusted: runs in-process)",
        check: |m| {
            m.typed_options::<avm_provider_native::NativeOptions>()
                .map(drop)
        },
        build: |m, _| {
            Ok(Arc::new(avm_provider_native::NativeProvider::new(
                &m.pattern,
                m.typed_options()?,
            )?))
        },
    },
];

/// The type called `name`.
pub fn get(name: &str) -> Option<&'static ProviderType> {
    TYPES.iter().find(|t| t.name == name)
}

/// The names of every type, for messages and `config::check`.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

/// Every problem in the configuration: its keys and values (`config::check`), then each
/// mount's options as its type reads them.
pub fn check(sources: &config::Sources) -> Vec<Problem> {
    let mut problems = config::check(sources, &names());
    if !problems.is_empty() {
        return problems;
    }
    if let Ok(cfg) = config::load(sources) {
        for (i, m) in cfg.mounts.iter().enumerate() {
            if let Some(t) = get(&m.kind)
                && let Err(e) = (t.check)(m)
            {
                problems.push(Problem {
                    key: format!("mounts[{i}].options"),
                    message: e.message().to_string(),
                    source: None,
                });
            }
        }
    }
    problems
}

fn memory(m: &MountConfig, w: &mut Wiring) -> Result<Arc<dyn Provider>> {
    let o: MemoryOptions = m.typed_options()?;
    let at = match o.db {
        Some(s) => config::expand(&s)?,
        None => w.default_store.to_string(),
    };
    let p = match w.stores.get(&at) {
        Some(p) => p.clone(),
        None => {
            let p =
                MemoryProvider::open_location(&at, w.store_options.clone(), w.pg_options.clone())?;
            w.stores.insert(at, p.clone());
            p
        }
    };
    Ok(Arc::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, options: serde_json::Value) -> MountConfig {
        serde_json::from_value(serde_json::json!({
            "pattern": "/x/**", "type": kind, "options": options,
        }))
        .expect("a mount")
    }

    #[test]
    fn each_type_is_named_once() {
        let mut names = names();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a type is listed twice");
        assert!(get("memory").is_some() && get("wasm").is_some());
        assert!(get("nosuch").is_none());
    }

    #[test]
    fn a_types_check_refuses_an_option_it_does_not_know_and_takes_its_own() {
        let memory = get("memory").expect("memory");
        assert!((memory.check)(&mount("memory", serde_json::json!({"db": "/tmp/a.db"}))).is_ok());
        let e = (memory.check)(&mount("memory", serde_json::json!({"dbb": "/tmp/a.db"})))
            .expect_err("an unknown option");
        assert!(e.message().contains("dbb"), "{}", e.message());
        let e = (memory.check)(&mount("memory", serde_json::json!({"db": 3})))
            .expect_err("a number for a path");
        assert!(e.message().contains("/x/**"), "{}", e.message());
        let file = get("file").expect("file");
        assert!((file.check)(&mount("file", serde_json::json!({"nope": 1}))).is_err());
    }

    /// The build as `avm` wires it (memory, /tell, /index, every service) passes the
    /// provider contract: the memory mount in full, and every suffix each service declares,
    /// on a file and a directory, through the host.
    #[test]
    fn the_wired_build_passes_the_provider_contract() {
        use avm_core::contract;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("an empty config");
        let g = crate::cli::Global {
            db: Some(dir.path().join("a.db")),
            config: Some(config),
            agent: Some("alice".into()),
            json: false,
        };
        let app = crate::app::App::open(&g).expect("the app opens");
        contract::run_all(&app.memory, "/memory/contract").expect("memory");
        let (file, home) = ("/memory/private/alice/n.md", "/memory/private/alice");
        app.host
            .write(
                &app.caller,
                file,
                avm_core::WriteInput::Text("a note about quokkas and their habits".into()),
            )
            .expect("a note");
        let tried = contract::services_answer_their_suffixes(&app.host, &app.caller, file, home)
            .expect("services");
        let services: Vec<String> = app.host.services().map(|s| s.info().kind.clone()).collect();
        for s in ["recall", "topics", "librarian", "tell", "digest"] {
            assert!(
                services.iter().any(|k| k == s),
                "{s} missing from {services:?}"
            );
        }
        assert!(tried >= 10, "only {tried} service addresses were tried");
        for m in app.host.mounts() {
            let p = m.pattern.trim_end_matches("/**");
            if p == "/index" {
                contract::missing_is_not_found(m.provider.as_ref(), "/index/nope").expect("index");
            }
        }
    }
}
