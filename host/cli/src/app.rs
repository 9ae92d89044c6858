//! Wiring: configuration → providers → host.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::value::Value as FValue;

use avm_core::config::{self, Config, MountConfig, Sources};
use avm_core::storage::MemoryStore;
use avm_core::{Caller, Error, ErrorKind, Host, Mount, Result};
use avm_embedding::Semantic;
use avm_embedding::model::ModelFiles;
use avm_librarian::{Librarian, LibrarianProvider, Privacy};
use avm_provider_memory::postgres::PgStoreOptions;
use avm_provider_memory::{MemoryProvider, StoreOptions};
use avm_recall::{Engine, RecallProvider, Strategy, Tuning};
use avm_tell::TellProvider;
use avm_topics::provider::TopicsProvider;

use crate::cli::Global;

/// Where configuration comes from for these global flags.
pub fn sources(g: &Global) -> Sources {
    let mut flags = Vec::new();
    if let Some(db) = &g.db {
        flags.push((
            "db".to_string(),
            FValue::from(db.to_string_lossy().to_string()),
        ));
    }
    if let Some(a) = &g.agent {
        flags.push(("agent".to_string(), FValue::from(a.clone())));
    }
    Sources {
        file: g.config.clone(),
        env: true,
        flags,
        system_file: None,
        user_dir: None,
    }
}

/// Each configuration file that could be read, with its modification time and size if it exists.
type ConfigStamp = Vec<(PathBuf, Option<(std::time::SystemTime, u64)>)>;

/// Notices changes to the configuration files of a long-running process (`avm serve`, the
/// daemon), files created after it started included, and checks whether the new
/// configuration opens before anyone acts on it.
pub struct ConfigWatch {
    g: Global,
    seen: ConfigStamp,
}

impl ConfigWatch {
    /// Watches the configuration files `g` reads, as they are now.
    pub fn new(g: &Global) -> Self {
        ConfigWatch {
            g: g.clone(),
            seen: Self::stamp(g),
        }
    }

    fn stamp(g: &Global) -> ConfigStamp {
        config::watched_files(&sources(g))
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (f, m)
            })
            .collect()
    }

    /// `None` while nothing changed since the last call; else the files that changed (for the
    /// log line) and whether the configuration they make now opens (as `avm config check`).
    pub fn poll(&mut self) -> Option<(String, Result<()>)> {
        let now = Self::stamp(&self.g);
        if now == self.seen {
            return None;
        }
        let which = now
            .iter()
            .filter(|x| !self.seen.contains(x))
            .map(|(f, m)| {
                format!(
                    "{}{}",
                    f.display(),
                    if m.is_none() { " (removed)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.seen = now;
        Some((which, App::open(&self.g).map(drop)))
    }
}

/// Everything a command needs.
pub struct App {
    /// The effective configuration.
    pub config: Config,
    /// The host with every mount.
    pub host: Host,
    /// Who runs this command.
    pub caller: Caller,
    /// The memory provider of the default database.
    pub memory: MemoryProvider,
    /// The default database as the agent-memory services see it.
    pub store: Arc<dyn MemoryStore>,
    /// Semantic search, when enabled and the model files are there (loaded on first use).
    pub semantic: Option<Arc<Semantic>>,
    /// Where the model files are expected.
    pub model_files: ModelFiles,
    /// Whether reads may go through a running `avm serve` (not when an extra config file was
    /// given: the server answers with its own configuration).
    pub use_server: bool,
}

impl App {
    /// Loads the configuration and opens every mount.
    pub fn open(g: &Global) -> Result<App> {
        let config = config::load(&sources(g))?;
        let caller = match &config.agent {
            Some(a) => {
                config::validate_agent_id(a)?;
                Caller::Agent(a.clone())
            }
            _ => Caller::Operator,
        };
        let db = config.db_path()?;
        for notice in tighten_data(&db, config.db.is_none()) {
            eprintln!("avm: {notice}");
        }
        let opts = store_options(&config);
        let pg_opts = pg_options(&config);
        // The store: PostgreSQL when configured, else the SQLite file.
        let location = match config.store_url()? {
            Some(url) => url,
            None => db.to_string_lossy().into_owned(),
        };
        let mut stores: HashMap<String, MemoryProvider> = HashMap::new();
        let memory = MemoryProvider::open_location(&location, opts.clone(), pg_opts.clone())?;
        stores.insert(location.clone(), memory.clone());
        let mut mounts = Vec::new();
        for m in &config.mounts {
            mounts.push(mount(m, &location, &db, &opts, &pg_opts, &mut stores)?);
        }
        let store = memory.memory_store();
        let model_files = model_files(&config)?;
        let semantic = (config.embedding.enabled && model_files.missing().is_empty())
            .then(|| Arc::new(Semantic::new(store.clone(), model_files.clone(), false)));
        if let Some(s) = &semantic {
            let mut dir = db.clone().into_os_string();
            dir.push(".vectors");
            s.set_graph_dir(PathBuf::from(dir));
        }
        let mut engine = Engine::new(store.clone(), tuning(&config)?);
        if let Some(s) = &semantic {
            engine = engine.with_vectors(s.clone());
            memory.set_vectors(s.clone());
        }
        let policy = config.policy()?;
        let librarian = Librarian::new(
            store.clone(),
            Privacy::parse(&config.librarian.privacy)?,
            policy
                .configured_agents()
                .map(|(a, d)| (a.to_string(), d.map(str::to_string)))
                .collect(),
        );
        let tell = Arc::new(TellProvider::new(store.clone()));
        if !config.mounts.iter().any(|m| m.pattern.starts_with("/tell")) {
            mounts.push(Mount::new("/tell/**", tell.clone()));
        }
        // Project indexes (`avm index scan`) live at /index unless the config mounts it.
        if !config
            .mounts
            .iter()
            .any(|m| m.pattern.starts_with("/index"))
        {
            let o = avm_provider_index::IndexOptions {
                db: Some(index_db(&db)),
                ..Default::default()
            };
            mounts.push(Mount::new(
                "/index/**",
                Arc::new(avm_provider_index::IndexProvider::new("/index/**", o)?),
            ));
        }
        let host = Host::new(mounts)
            .map_err(|errs| {
                Error::invalid(format!(
                    "invalid mounts in config: {}",
                    errs.iter()
                        .map(|e| e.message().to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?
            .with_policy(policy)
            .with_service(Arc::new(TopicsProvider::new(engine.topics().clone())))
            .with_service(Arc::new(RecallProvider::new(engine.clone())))
            .with_service(Arc::new(LibrarianProvider::new(librarian)))
            .with_service(Arc::new(avm_lifecycle::DigestProvider::new(
                store.clone(),
                config.lifecycle.clone(),
                engine.topics().clone(),
            )))
            .with_service(tell);
        Ok(App {
            config,
            host,
            caller,
            memory,
            store,
            semantic,
            model_files,
            use_server: g.config.is_none(),
        })
    }

    /// Opens avm as `avm [--db DB] [--config FILE] [--agent NAME]` would, for a front end that
    /// embeds it (the Python bindings): the same configuration sources (system and user files,
    /// `AVM_*` variables, `AVM_CONFIG` when `config` is not given), the same mounts, services
    /// and policy. `agent` becomes [`App::caller`] (else the configured agent, else the
    /// operator).
    pub fn open_with(
        db: Option<PathBuf>,
        config: Option<PathBuf>,
        agent: Option<String>,
    ) -> Result<App> {
        // clap reads AVM_CONFIG for the command; here it is read by hand.
        let config = config.or_else(|| {
            std::env::var_os("AVM_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        App::open(&Global {
            db,
            config,
            agent,
            json: false,
        })
    }

    /// Reads `address` as `caller`: through a running `avm serve` on this database when one
    /// answers on its socket (warm tokenizer, topic and vector indexes, model), else directly.
    pub fn read_warm(&self, caller: &Caller, address: &str) -> Result<avm_core::Output> {
        if self.use_server
            && let Ok(db) = self.config.db_path()
            && let Some(r) = crate::remote::read(&db, caller, address)
        {
            return r;
        }
        self.host.read(caller, address)
    }
}

/// Where the model files are: `[embedding]` overrides, else its `dir`, else the data dir.
pub fn model_files(c: &Config) -> Result<ModelFiles> {
    let dir = match &c.embedding.dir {
        Some(d) => PathBuf::from(config::expand(d)?),
        None => avm_embedding::model::default_dir().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "cannot tell where model files go: set XDG_DATA_HOME or HOME, or [embedding] dir",
            )
        })?,
    };
    let mut f = ModelFiles::in_dir(&dir);
    if let Some(p) = &c.embedding.runtime {
        f.runtime = PathBuf::from(config::expand(p)?);
    }
    if let Some(p) = &c.embedding.model {
        f.model = PathBuf::from(config::expand(p)?);
    }
    if let Some(p) = &c.embedding.tokenizer {
        f.tokenizer = PathBuf::from(config::expand(p)?);
    }
    Ok(f)
}

/// The index provider's state file beside the database (`avm.db` → `avm.index.db`).
/// Makes the files beside the database (its own, the keys', the subscriptions', the index's and
/// the vector graph) private to their owner where an earlier version or a copy left them
/// readable by others, and the default data directory too; says what it changed.
fn tighten_data(db: &std::path::Path, default_dir: bool) -> Vec<String> {
    use avm_core::files::{tighten_db, tighten_dir};
    let mut notices = Vec::new();
    let mut note = |r: std::io::Result<Vec<String>>, what: &std::path::Path| match r {
        Ok(n) => notices.extend(n),
        Err(e) => notices.push(format!(
            "cannot make {} private to its owner: {e}",
            what.display()
        )),
    };
    for f in [
        db.to_path_buf(),
        crate::serve::keys_path(db),
        crate::serve::subs_path(db),
        PathBuf::from(index_db(db)),
    ] {
        note(tighten_db(&f), &f);
    }
    let mut vectors = db.as_os_str().to_owned();
    vectors.push(".vectors");
    let vectors = PathBuf::from(vectors);
    note(tighten_dir(&vectors).map(Vec::from_iter), &vectors);
    if default_dir && let Some(dir) = db.parent() {
        note(tighten_dir(dir).map(Vec::from_iter), dir);
    }
    notices
}

pub fn index_db(db: &std::path::Path) -> String {
    db.with_extension("index.db").to_string_lossy().to_string()
}

/// Recall tuning from config.
pub fn tuning(c: &Config) -> Result<Tuning> {
    Ok(Tuning {
        max_tokens: c.recall.max_tokens,
        strategy: Strategy::parse(&c.recall.strategy)?,
        min_relevance: c.recall.min_relevance,
        max_chars: c.recall.max_chars.max(40),
        half_life_hours: c.recall.half_life_hours,
    })
}

/// The store tuning from config.
pub fn store_options(c: &Config) -> StoreOptions {
    StoreOptions {
        busy_timeout: Duration::from_millis(c.store.busy_timeout_ms),
        cache_entries: c.store.cache_entries,
        readers: c.store.readers.max(1),
        group_commit_max: c.store.group_commit_max.max(1),
        synchronous: c.store.synchronous.clone(),
        max_node_bytes: c.max_node_bytes,
    }
}

/// PostgreSQL store tuning from `[store]`.
pub fn pg_options(c: &Config) -> PgStoreOptions {
    PgStoreOptions {
        max_connections: c.store.max_connections.max(1),
        connect_timeout: Duration::from_secs(10),
        max_node_bytes: c.max_node_bytes,
    }
}

fn mount(
    m: &MountConfig,
    default_store: &str,
    local_db: &std::path::Path,
    opts: &StoreOptions,
    pg_options: &PgStoreOptions,
    stores: &mut HashMap<String, MemoryProvider>,
) -> Result<Mount> {
    let Some(t) = crate::registry::get(&m.kind) else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "mount {}: unknown provider type {:?}; this build knows: {}",
                m.pattern,
                m.kind,
                crate::registry::names().join(", ")
            ),
        ));
    };
    let provider = (t.build)(
        m,
        &mut crate::registry::Wiring {
            default_store,
            local_db,
            store_options: opts,
            pg_options,
            stores,
        },
    )?;
    Ok(Mount::new(m.pattern.clone(), provider)
        .with_ttl(Duration::from_secs(m.ttl))
        .read_only(m.read_only))
}
