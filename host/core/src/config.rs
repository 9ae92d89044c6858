//! Configuration through figment.
//!
//! Layers, later wins: built-in defaults < `/etc/avm/config.toml` <
//! `$XDG_CONFIG_HOME/avm/config.{toml,yaml}` < `--config FILE` < `AVM_*` environment variables
//! (`AVM_STORE__CACHE_ENTRIES=5000` sets `store.cache_entries`) < command-line flags.
//!
//! [`load`] stops at the first problem (as any program must); [`check`] walks the merged
//! configuration and reports every problem it can find, each with the source that set it.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use figment::value::{Dict, Value as FValue};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind, Result};
use crate::policy::{Access, AgentConfig, PermissionRule, Policy};
use crate::router::Router;

/// Default cap on one node's content, in bytes (8 MiB).
pub const DEFAULT_MAX_NODE_BYTES: u64 = 8 << 20;

/// The whole avm configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The database file; `~` and `${VAR}` are expanded. Default: `$XDG_DATA_HOME/avm/avm.db`.
    pub db: Option<String>,
    /// The agent to act as when no `--agent` is given (none = operator).
    pub agent: Option<String>,
    /// Largest accepted node content, in bytes.
    pub max_node_bytes: u64,
    /// Tuning of the embedded SQLite store.
    pub store: StoreConfig,
    /// Path patterns and the providers that serve them, besides the built-in memory store on
    /// `/**` (see `default_mount`).
    pub mounts: Vec<MountConfig>,
    /// Keep the built-in memory store on `/**` beside the configured mounts (a configured `/**`
    /// mount replaces it). `false`: the configured mounts are all there is.
    pub default_mount: bool,
    /// Access for paths no permission rule matches (`rw`, `ro`, `none`; agents only).
    pub default_access: Access,
    /// Global permission rules for agents, first match wins.
    pub permissions: Vec<PermissionRule>,
    /// Per-agent rules, roles and quotas.
    pub agents: BTreeMap<String, AgentConfig>,
    /// Recall defaults.
    pub recall: RecallConfig,
    /// Librarian settings.
    pub librarian: LibrarianConfig,
    /// Local embeddings.
    pub embedding: EmbeddingConfig,
    /// Decay, archive, consolidation and trash retention.
    pub lifecycle: LifecycleConfig,
    /// The HTTP server (`avm serve`).
    pub serve: ServeConfig,
    /// Gossip digests.
    pub gossip: GossipConfig,
    /// The FUSE mount.
    pub fuse: FuseConfig,
}

/// The FUSE mount (`[fuse]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FuseConfig {
    /// Where an agent meets its unread urgent messages: `inject` (the default: in front of the
    /// next text memory file — `.md`, `.markdown`, `.txt` under `/memory` — that it reads whole
    /// with a program that does not copy or checksum files) or `inbox-only`.
    pub urgent: UrgentMode,
    /// Seconds one filesystem operation may take before it fails with `ETIMEDOUT` (a provider
    /// waiting on a program, a URL or a plugin stops then); at least 1.
    pub op_timeout_secs: u64,
}

impl Default for FuseConfig {
    fn default() -> Self {
        FuseConfig {
            urgent: UrgentMode::default(),
            op_timeout_secs: 30,
        }
    }
}

/// How urgent messages reach an agent on its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UrgentMode {
    /// In front of the next text memory file read (and marked read then).
    #[default]
    Inject,
    /// Only in the inbox (`avm inbox`, `/tell`, `:inbox`).
    InboxOnly,
}

/// The HTTP server (`[serve]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Names besides `localhost` and the bound address that requests may carry as their `Host`
    /// (a proxy's or the machine's name); any other Host is refused (DNS rebinding).
    pub hosts: Vec<String>,
    /// Require an API key on loopback too (a server bound beyond loopback always does). Without
    /// it, every local user can act as the operator or as any agent through the loopback port.
    pub require_key: bool,
    /// Seconds a client may take to send a request's headers; also how long an idle kept-alive
    /// connection stays open.
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body.
    pub body_timeout_secs: u64,
    /// Seconds an HTTP or MCP request may take once received before it fails with
    /// `timed-out` (a provider waiting on a program, a URL or a plugin stops then); at least 1.
    pub request_timeout_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            hosts: Vec::new(),
            require_key: false,
            header_timeout_secs: 30,
            body_timeout_secs: 60,
            request_timeout_secs: 60,
        }
    }
}

/// Gossip digests (`[gossip]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// Publish the topic words of a digest in clear beside its Bloom filter (off: the digest
    /// carries the filter and counts only, so it answers "does this agent know X?" without
    /// listing what it knows).
    pub list_topics: bool,
}

/// Memory lifecycle (`[lifecycle]`): decay, cold memories, archive, consolidation, trash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Days after which an untouched memory's importance counts half (decay is computed when
    /// needed, never written back, so it moves no `updated_at`).
    pub half_life_days: f64,
    /// Memories whose decayed importance is below this are cold (`avm cold`, `avm archive`).
    pub cold_threshold: f64,
    /// `avm serve` archives cold memories on its own (off by default).
    pub auto_archive: bool,
    /// Word-set similarity (Jaccard, 0..1) at or above which `consolidate` merges two memories.
    pub merge_similarity: f64,
    /// Memories changed more recently than this many days are never merged.
    pub merge_min_age_days: f64,
    /// A topic needs this many memories in a namespace before it gets a summary.
    pub summary_min_memories: usize,
    /// Lines per topic summary.
    pub summary_max_items: usize,
    /// A summary younger than this many days is left as it is.
    pub summary_refresh_days: f64,
    /// Trash entries older than this are purged for good (`avm trash --purge`, `avm serve`);
    /// `never` keeps them.
    pub trash_retention: String,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            half_life_days: 14.0,
            cold_threshold: 0.15,
            auto_archive: false,
            merge_similarity: 0.8,
            merge_min_age_days: 7.0,
            summary_min_memories: 3,
            summary_max_items: 10,
            summary_refresh_days: 7.0,
            trash_retention: "30d".into(),
        }
    }
}

impl LifecycleConfig {
    /// The trash retention as a duration (`None` for `never`).
    pub fn trash_retention(&self) -> Result<Option<std::time::Duration>> {
        let t = self.trash_retention.trim();
        if t == "never" {
            return Ok(None);
        }
        crate::time::parse_duration(t)
            .map(Some)
            .map_err(|e| e.context("lifecycle.trash_retention"))
    }
}

/// Local embeddings (`[embedding]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Use vectors when the model files are there (recall, hybrid search).
    pub enabled: bool,
    /// Directory holding the three model files (default `$XDG_DATA_HOME/avm/models`).
    pub dir: Option<String>,
    /// Override: the ONNX Runtime shared library.
    pub runtime: Option<String>,
    /// Override: the ONNX model.
    pub model: Option<String>,
    /// Override: tokenizer.json.
    pub tokenizer: Option<String>,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            enabled: true,
            dir: None,
            runtime: None,
            model: None,
            tokenizer: None,
        }
    }
}

/// Recall defaults (`[recall]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecallConfig {
    /// Token budget when a caller gives none.
    pub max_tokens: usize,
    /// `balanced`, `relevance`, `importance` or `recency`.
    pub strategy: String,
    /// Candidates whose fused relevance is below this are dropped (0..1).
    pub min_relevance: f64,
    /// Longest summary per memory, in characters.
    pub max_chars: usize,
    /// Half-life of the recency signal, in hours.
    pub half_life_hours: f64,
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            max_tokens: 4000,
            strategy: "balanced".into(),
            min_relevance: 0.15,
            max_chars: 320,
            half_life_hours: 168.0,
        }
    }
}

/// Librarian settings (`[librarian]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibrarianConfig {
    /// What `ask` reveals about memories the asker cannot read: `full`, `owner`, `existence`
    /// or `none`.
    pub privacy: String,
}

impl Default for LibrarianConfig {
    fn default() -> Self {
        LibrarianConfig {
            privacy: "owner".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: None,
            agent: None,
            max_node_bytes: DEFAULT_MAX_NODE_BYTES,
            store: StoreConfig::default(),
            mounts: vec![MountConfig {
                pattern: "/**".into(),
                kind: "memory".into(),
                ttl: 0,
                read_only: false,
                options: Dict::new(),
            }],
            default_mount: true,
            default_access: Access::Rw,
            permissions: Vec::new(),
            agents: BTreeMap::new(),
            recall: RecallConfig::default(),
            librarian: LibrarianConfig::default(),
            embedding: EmbeddingConfig::default(),
            lifecycle: LifecycleConfig::default(),
            serve: ServeConfig::default(),
            gossip: GossipConfig::default(),
            fuse: FuseConfig::default(),
        }
    }
}

/// Tuning of the embedded SQLite store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long a writer waits for another process's lock before reporting `busy`.
    pub busy_timeout_ms: u64,
    /// Nodes kept in the per-process hot cache.
    pub cache_entries: usize,
    /// Read connections in the pool.
    pub readers: usize,
    /// Most writes committed in one group-commit transaction.
    pub group_commit_max: usize,
    /// SQLite `synchronous`: `normal` (durable across process crashes; the default), `full`
    /// (also across power loss) or `off`.
    pub synchronous: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            busy_timeout_ms: 30_000,
            cache_entries: 20_000,
            readers: 4,
            group_commit_max: 512,
            synchronous: "normal".into(),
        }
    }
}

/// One mount: a path pattern served by a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Path pattern: literal segments, `{capture}`, `*`, `**` (last).
    pub pattern: String,
    /// Provider type (`memory`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds the host caches this mount's reads (0 = no host cache).
    #[serde(default)]
    pub ttl: u64,
    /// Refuse writes through this mount.
    #[serde(default)]
    pub read_only: bool,
    /// Provider-specific options.
    #[serde(default)]
    pub options: Dict,
}

impl MountConfig {
    /// This mount's `options` read into a provider's typed option struct (which should deny
    /// unknown fields); errors name the mount and say what was wrong.
    pub fn typed_options<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let v = serde_json::to_value(&self.options)
            .map_err(|e| Error::invalid(format!("mount {}: options: {e}", self.pattern)))?;
        serde_json::from_value(v).map_err(|e| {
            Error::invalid(format!(
                "mount {} (type {}): options: {e}",
                self.pattern, self.kind
            ))
        })
    }
}

/// Where configuration comes from, besides the fixed files.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// Read `AVM_*` variables (off in tests that want isolation).
    pub env: bool,
    /// Flag overrides as `(dotted key, value)`, applied last.
    pub flags: Vec<(String, FValue)>,
    /// Replaces `/etc/avm/config.toml` (tests).
    pub system_file: Option<PathBuf>,
    /// Replaces `$XDG_CONFIG_HOME/avm` (tests).
    pub user_dir: Option<PathBuf>,
}

/// The fixed system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/avm/config.toml";

/// `$XDG_CONFIG_HOME/avm` (or `~/.config/avm`).
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
        .map(|d| d.join("avm"))
}

/// `$XDG_DATA_HOME/avm` (or `~/.local/share/avm`).
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local/share")))
        .map(|d| d.join("avm"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Environment variables that steer the CLI rather than the configuration.
const ENV_NOT_CONFIG: &[&str] = &["config", "log", "json", "mount_detached"];

/// The files that exist and will be read, in order.
pub fn files(sources: &Sources) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let system = sources
        .system_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG));
    if system.is_file() {
        out.push(system);
    }
    if let Some(dir) = sources.user_dir.clone().or_else(config_dir) {
        for name in ["config.toml", "config.yaml", "config.yml"] {
            let p = dir.join(name);
            if p.is_file() {
                out.push(p);
            }
        }
    }
    if let Some(f) = &sources.file {
        out.push(f.clone());
    }
    out
}

/// Every file that would be read if it existed, in order: what a long-running process watches
/// so that a configuration created or changed after it started is picked up.
pub fn watched_files(sources: &Sources) -> Vec<PathBuf> {
    let mut out = vec![
        sources
            .system_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG)),
    ];
    if let Some(dir) = sources.user_dir.clone().or_else(config_dir) {
        for name in ["config.toml", "config.yaml", "config.yml"] {
            out.push(dir.join(name));
        }
    }
    if let Some(f) = &sources.file {
        out.push(f.clone());
    }
    out
}

/// The merged figment for `sources`.
pub fn figment(sources: &Sources) -> Result<Figment> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    for f in files(sources) {
        fig = merge_file(fig, &f);
    }
    if let Some(f) = &sources.file
        && !f.is_file()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "config file {} does not exist; check the --config path",
                f.display()
            ),
        ));
    }
    if sources.env {
        fig = fig.merge(Env::prefixed("AVM_").split("__").filter(|k| {
            // Only variables naming a configuration key are configuration: a script's own
            // AVM_SOMETHING must not make every avm command fail. `avm config check`
            // still lists the ones it ignores, so a typo does not go unnoticed.
            let k = k.as_str().to_lowercase();
            let top = k.split('.').next().unwrap_or("");
            !ENV_NOT_CONFIG.contains(&k.as_str()) && TOP_KEYS.contains(&top)
        }));
    }
    for (key, value) in &sources.flags {
        fig = fig.merge(Serialized::global(key, value.clone()));
    }
    Ok(fig)
}

fn merge_file(fig: Figment, path: &Path) -> Figment {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        fig.merge(Yaml::file_exact(path))
    } else {
        fig.merge(Toml::file_exact(path))
    }
}

/// Loads the configuration, failing on the first problem with a message naming its source.
pub fn load(sources: &Sources) -> Result<Config> {
    let fig = figment(sources)?;
    let mut cfg = fig.extract::<Config>().map_err(|e| {
        let first = e.into_iter().next();
        match first {
            Some(e) => Error::invalid(format!(
                "invalid configuration: {}; run `avm config check` to list every problem",
                describe(&e)
            )),
            None => Error::invalid("invalid configuration"),
        }
    })?;
    cfg.add_default_mount();
    Ok(cfg)
}

impl Config {
    /// The built-in memory mount on `/**`, as the defaults have it.
    pub fn default_memory_mount() -> MountConfig {
        MountConfig {
            pattern: "/**".into(),
            kind: "memory".into(),
            ttl: 0,
            read_only: false,
            options: Dict::new(),
        }
    }

    /// Adds the built-in memory mount when `default_mount` keeps it and no configured mount
    /// takes `/**` (a `[[mounts]]` list in a file replaces the default list as a whole, so a
    /// plugin mount would otherwise leave nothing serving `/memory`).
    pub fn add_default_mount(&mut self) {
        if self.default_mount && !self.mounts.iter().any(|m| m.pattern == "/**") {
            self.mounts.push(Config::default_memory_mount());
        }
    }

    /// Why `/memory` is not served by a memory store, if it is not: remember, recall, messages,
    /// topics and the mount's namespaces all live there.
    pub fn memory_unserved(&self) -> Option<String> {
        let entries = self
            .mounts
            .iter()
            .map(|m| (m.pattern.clone(), m.kind.clone()))
            .collect();
        let router = Router::new(entries).ok()?;
        let probe = "/memory/private/agent/note.md";
        match router.route(probe) {
            Some(r) if r.target == "memory" => None,
            Some(r) => Some(format!(
                "{probe} is served by mount {:?} (type {}), not by a memory store: remember, recall, messages and topics will fail; keep default_mount = true or add a [[mounts]] pattern = \"/**\" type = \"memory\"",
                r.pattern.as_str(),
                r.target
            )),
            None => Some(
                "no mount serves /memory: remember, recall, messages and topics will fail; keep default_mount = true or add a [[mounts]] pattern = \"/**\" type = \"memory\"".into(),
            ),
        }
    }
}

fn describe(e: &figment::Error) -> String {
    let mut s = String::new();
    if !e.path.is_empty() {
        s.push_str(&format!("{}: ", e.path.join(".")));
    }
    s.push_str(&e.kind.to_string());
    if let Some(md) = &e.metadata {
        match &md.source {
            Some(src) => s.push_str(&format!(" (from {src})")),
            None => s.push_str(&format!(" (from {})", md.name)),
        }
    }
    s
}

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted key (`mounts[1].type`), or empty for the whole config.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
    /// Where the value came from, when known.
    pub source: Option<String>,
}

const TOP_KEYS: &[&str] = &[
    "db",
    "agent",
    "max_node_bytes",
    "store",
    "mounts",
    "default_mount",
    "default_access",
    "permissions",
    "agents",
    "recall",
    "librarian",
    "embedding",
    "lifecycle",
    "serve",
    "gossip",
    "fuse",
];
const STORE_KEYS: &[&str] = &[
    "busy_timeout_ms",
    "cache_entries",
    "readers",
    "group_commit_max",
    "synchronous",
];
const MOUNT_KEYS: &[&str] = &["pattern", "type", "ttl", "read_only", "options"];

/// Checks the configuration from `sources` and reports every problem found. `known_types`
/// lists the provider types this build can mount.
pub fn check(sources: &Sources, known_types: &[&str]) -> Vec<Problem> {
    let fig = match figment(sources) {
        Ok(f) => f,
        Err(e) => {
            return vec![Problem {
                key: String::new(),
                message: e.message().to_string(),
                source: None,
            }];
        }
    };
    let mut problems = Vec::new();
    let dict: Dict = match fig.extract::<Dict>() {
        Ok(d) => d,
        Err(e) => {
            for e in e {
                problems.push(Problem {
                    key: e.path.join("."),
                    message: e.kind.to_string(),
                    source: e.metadata.as_ref().map(source_name),
                });
            }
            return problems;
        }
    };
    let source_of = |key: &str| fig.find_metadata(key).map(source_name);
    let mut unknown = |key: String, known: &[&str], lookup: &str| {
        let hint = suggest(key.rsplit('.').next().unwrap_or(&key), known)
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        problems.push(Problem {
            message: format!("unknown key {key:?}{hint} (known: {})", known.join(", ")),
            source: source_of(lookup),
            key,
        });
    };
    for key in dict.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            unknown(key.clone(), TOP_KEYS, key);
        }
    }
    if let Some(FValue::Dict(_, store)) = dict.get("store") {
        for key in store.keys() {
            if !STORE_KEYS.contains(&key.as_str()) {
                let full = format!("store.{key}");
                unknown(full.clone(), STORE_KEYS, &full);
            }
        }
    }
    // Type errors, one key at a time so that one bad value does not hide the next.
    let mut typed = |key: &str, res: std::result::Result<(), figment::Error>| {
        if let Err(e) = res {
            problems.push(Problem {
                key: key.to_string(),
                message: e.kind.to_string(),
                source: fig.find_metadata(key).map(source_name),
            });
        }
    };
    typed("db", fig.extract_inner::<Option<String>>("db").map(drop));
    typed(
        "agent",
        fig.extract_inner::<Option<String>>("agent").map(drop),
    );
    typed(
        "max_node_bytes",
        fig.extract_inner::<u64>("max_node_bytes").map(drop),
    );
    typed(
        "store.busy_timeout_ms",
        fig.extract_inner::<u64>("store.busy_timeout_ms").map(drop),
    );
    typed(
        "store.cache_entries",
        fig.extract_inner::<usize>("store.cache_entries").map(drop),
    );
    typed(
        "store.readers",
        fig.extract_inner::<usize>("store.readers").map(drop),
    );
    typed(
        "store.group_commit_max",
        fig.extract_inner::<usize>("store.group_commit_max")
            .map(drop),
    );
    match fig.extract_inner::<String>("store.synchronous") {
        Ok(s) if !["normal", "full", "off"].contains(&s.to_lowercase().as_str()) => {
            problems.push(Problem {
                key: "store.synchronous".into(),
                message: format!("{s:?} is not accepted; use normal, full or off"),
                source: source_of("store.synchronous"),
            })
        }
        Ok(_) => {}
        Err(e) => problems.push(Problem {
            key: "store.synchronous".into(),
            message: e.kind.to_string(),
            source: source_of("store.synchronous"),
        }),
    }
    if let Ok(0) = fig.extract_inner::<usize>("store.readers") {
        problems.push(Problem {
            key: "store.readers".into(),
            message: "must be at least 1".into(),
            source: source_of("store.readers"),
        });
    }
    if let Ok(Some(agent)) = fig.extract_inner::<Option<String>>("agent")
        && let Err(e) = validate_agent_id(&agent)
    {
        problems.push(Problem {
            key: "agent".into(),
            message: e.message().to_string(),
            source: source_of("agent"),
        });
    }
    if sources.env {
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("AVM_") else {
                continue;
            };
            let k = rest.to_lowercase();
            let top = k.split("__").next().unwrap_or("");
            if !ENV_NOT_CONFIG.contains(&k.as_str()) && !TOP_KEYS.contains(&top) {
                let hint = suggest(top, TOP_KEYS)
                    .map(|s| format!("; did you mean AVM_{}?", s.to_uppercase()))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: name.to_string(),
                    message: format!(
                        "environment variable {name} is ignored: {top:?} is not a configuration key{hint}"
                    ),
                    source: Some("environment".into()),
                });
            }
        }
    }
    check_mounts(&fig, &dict, known_types, &mut problems);
    check_access(&fig, &mut problems);
    if problems.is_empty()
        && let Ok(cfg) = load(sources)
        && let Some(why) = cfg.memory_unserved()
    {
        problems.push(Problem {
            key: "mounts".into(),
            message: why,
            source: source_of("mounts"),
        });
    }
    problems
}

fn check_access(fig: &Figment, problems: &mut Vec<Problem>) {
    let mut push = |key: &str, message: String| {
        problems.push(Problem {
            key: key.to_string(),
            message,
            source: fig.find_metadata(key).map(source_name),
        })
    };
    let access = fig.extract_inner::<Access>("default_access");
    if let Err(e) = &access {
        push("default_access", format!("{}; use rw, ro or none", e.kind));
    }
    let rules = fig.extract_inner::<Vec<PermissionRule>>("permissions");
    if let Err(e) = &rules {
        push("permissions", e.kind.to_string());
    }
    let agents = fig.extract_inner::<BTreeMap<String, AgentConfig>>("agents");
    if let Err(e) = &agents {
        let key = if e.path.is_empty() {
            "agents".to_string()
        } else {
            e.path.join(".")
        };
        push(&key, e.kind.to_string());
    }
    if let Ok(agents) = &agents {
        for id in agents.keys() {
            if let Err(e) = validate_agent_id(id) {
                push(&format!("agents.{id}"), e.message().to_string());
            }
        }
    }
    if let (Ok(access), Ok(rules), Ok(agents)) = (access, rules, agents)
        && let Err(e) = Policy::new(access, &rules, &agents)
    {
        push("permissions", e.message().to_string());
    }
    match fig.extract_inner::<RecallConfig>("recall") {
        Err(e) => push("recall", e.kind.to_string()),
        Ok(r) => {
            if !["balanced", "relevance", "importance", "recency"].contains(&r.strategy.as_str()) {
                push(
                    "recall.strategy",
                    format!(
                        "{:?} is not accepted; use balanced, relevance, importance or recency",
                        r.strategy
                    ),
                );
            }
            if !(0.0..=1.0).contains(&r.min_relevance) {
                push("recall.min_relevance", "must be between 0 and 1".into());
            }
        }
    }
    if let Err(e) = fig.extract_inner::<EmbeddingConfig>("embedding") {
        push("embedding", e.kind.to_string());
    }
    match fig.extract_inner::<LifecycleConfig>("lifecycle") {
        Err(e) => push("lifecycle", e.kind.to_string()),
        Ok(l) => {
            for (key, v) in [
                ("lifecycle.cold_threshold", l.cold_threshold),
                ("lifecycle.merge_similarity", l.merge_similarity),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    push(key, "must be between 0 and 1".into());
                }
            }
            if l.half_life_days < 0.0 || !l.half_life_days.is_finite() {
                push(
                    "lifecycle.half_life_days",
                    "must be a number of days, 0 or more (0 turns decay off)".into(),
                );
            }
            if let Err(e) = l.trash_retention() {
                push("lifecycle.trash_retention", e.message().to_string());
            }
        }
    }
    match fig.extract_inner::<LibrarianConfig>("librarian") {
        Err(e) => push("librarian", e.kind.to_string()),
        Ok(l) if !["full", "owner", "existence", "none"].contains(&l.privacy.as_str()) => push(
            "librarian.privacy",
            format!(
                "{:?} is not accepted; use full, owner, existence or none",
                l.privacy
            ),
        ),
        Ok(_) => {}
    }
}

impl Config {
    /// The compiled permission policy of this configuration.
    pub fn policy(&self) -> Result<Policy> {
        Policy::new(self.default_access, &self.permissions, &self.agents)
    }
}

fn check_mounts(fig: &Figment, dict: &Dict, known_types: &[&str], problems: &mut Vec<Problem>) {
    let mounts = match dict.get("mounts") {
        None => return,
        Some(FValue::Array(_, items)) => items,
        Some(_) => {
            problems.push(Problem {
                key: "mounts".into(),
                message: "must be a list of tables with pattern and type".into(),
                source: fig.find_metadata("mounts").map(source_name),
            });
            return;
        }
    };
    let src = fig.find_metadata("mounts").map(source_name);
    let mut patterns = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let key = format!("mounts[{i}]");
        let FValue::Dict(_, d) = m else {
            problems.push(Problem {
                key,
                message: "must be a table with pattern and type".into(),
                source: src.clone(),
            });
            continue;
        };
        for k in d.keys() {
            if !MOUNT_KEYS.contains(&k.as_str()) {
                let hint = suggest(k, MOUNT_KEYS)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: format!("{key}.{k}"),
                    message: format!("unknown key {k:?}{hint} (known: {})", MOUNT_KEYS.join(", ")),
                    source: src.clone(),
                });
            }
        }
        match d.get("type").and_then(|v| v.as_str()) {
            None => problems.push(Problem {
                key: format!("{key}.type"),
                message: format!("missing; one of: {}", known_types.join(", ")),
                source: src.clone(),
            }),
            Some(t) if !known_types.contains(&t) => problems.push(Problem {
                key: format!("{key}.type"),
                message: format!(
                    "unknown provider type {t:?}; one of: {}",
                    known_types.join(", ")
                ),
                source: src.clone(),
            }),
            Some(_) => {}
        }
        match d.get("pattern").and_then(|v| v.as_str()) {
            None => problems.push(Problem {
                key: format!("{key}.pattern"),
                message: "missing; e.g. pattern = \"/memory/**\"".into(),
                source: src.clone(),
            }),
            Some(p) => patterns.push((p.to_string(), i)),
        }
        if let Some(v) = d.get("ttl")
            && v.to_u128().is_none()
        {
            problems.push(Problem {
                key: format!("{key}.ttl"),
                message: "must be a whole number of seconds".into(),
                source: src.clone(),
            });
        }
        if let Some(v) = d.get("read_only")
            && v.to_bool().is_none()
        {
            problems.push(Problem {
                key: format!("{key}.read_only"),
                message: "must be true or false".into(),
                source: src.clone(),
            });
        }
    }
    if let Err(errs) = Router::new(patterns) {
        for e in errs {
            problems.push(Problem {
                key: "mounts".into(),
                message: e.message().to_string(),
                source: src.clone(),
            });
        }
    }
}

fn source_name(md: &figment::Metadata) -> String {
    match &md.source {
        Some(src) => format!("{} ({src})", md.name),
        None => md.name.to_string(),
    }
}

/// The closest known key within edit distance 2, for "did you mean".
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// Agent ids are path segments: 1–64 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn validate_agent_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "agent id {id:?} is not valid; use 1-64 letters, digits, '_', '.' or '-' (not starting with '.' or '-')"
        )))
    }
}

impl Config {
    /// The database path: `db` with `~` and `${VAR}` expanded, else the XDG default.
    pub fn db_path(&self) -> Result<PathBuf> {
        match &self.db {
            Some(raw) => Ok(PathBuf::from(expand(raw)?)),
            None => data_dir().map(|d| d.join("avm.db")).ok_or_else(|| {
                Error::invalid(
                    "cannot find a default database location: neither XDG_DATA_HOME nor HOME is set; pass --db PATH",
                )
            }),
        }
    }
}

/// Expands a leading `~` and `${VAR}` / `$VAR` references (unknown variables are an error).
pub fn expand(raw: &str) -> Result<String> {
    let mut s = String::new();
    let rest = if raw == "~" || raw.starts_with("~/") {
        let h =
            home().ok_or_else(|| Error::invalid(format!("{raw:?} uses ~ but HOME is not set")))?;
        s.push_str(&h.to_string_lossy());
        &raw[1..]
    } else {
        raw
    };
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            s.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.next() != Some('}') {
            return Err(Error::invalid(format!("{raw:?}: unclosed ${{ in path")));
        }
        if name.is_empty() {
            s.push('$');
            continue;
        }
        let v = std::env::var(&name)
            .map_err(|_| Error::invalid(format!("{raw:?} refers to ${name}, which is not set")))?;
        s.push_str(&v);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        let p = dir.path().join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        p
    }

    fn sources(file: Option<PathBuf>) -> Sources {
        Sources {
            file,
            env: false,
            flags: vec![],
            system_file: Some(PathBuf::from("/nonexistent/avm.toml")),
            user_dir: Some(PathBuf::from("/nonexistent/avm-user")),
        }
    }

    #[test]
    fn defaults_mount_the_memory_store_everywhere() {
        let c = load(&sources(None)).unwrap();
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(c.mounts[0].pattern, "/**");
        assert_eq!(c.max_node_bytes, DEFAULT_MAX_NODE_BYTES);
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let d = tempfile::tempdir().unwrap();
        let f = file(&d, "c.toml", "db = \"/tmp/x.db\"\n[store]\nreaders = 2\n");
        let mut s = sources(Some(f));
        s.flags.push(("db".into(), FValue::from("/tmp/y.db")));
        let c = load(&s).unwrap();
        assert_eq!(c.db.as_deref(), Some("/tmp/y.db"));
        assert_eq!(c.store.readers, 2);
        assert_eq!(c.store.cache_entries, StoreConfig::default().cache_entries);
    }

    #[test]
    fn the_system_file_is_overridden_by_the_given_file() {
        let d = tempfile::tempdir().unwrap();
        let system = file(&d, "system.toml", "max_node_bytes = 1\nagent = \"sys\"\n");
        let given = file(&d, "given.toml", "max_node_bytes = 2\n");
        let mut s = sources(Some(given));
        s.system_file = Some(system);
        let c = load(&s).unwrap();
        assert_eq!(c.max_node_bytes, 2, "--config beats /etc/avm/config.toml");
        assert_eq!(
            c.agent.as_deref(),
            Some("sys"),
            "keys the later file leaves alone survive"
        );
        assert_eq!(files(&s).len(), 2);
    }

    #[test]
    fn yaml_files_are_read_too() {
        let d = tempfile::tempdir().unwrap();
        let f = file(
            &d,
            "c.yaml",
            "max_node_bytes: 10\nstore:\n  synchronous: full\n",
        );
        let c = load(&sources(Some(f))).unwrap();
        assert_eq!(c.max_node_bytes, 10);
        assert_eq!(c.store.synchronous, "full");
    }

    #[test]
    fn unknown_key_fails_load_and_check_lists_every_problem() {
        let d = tempfile::tempdir().unwrap();
        let f = file(
            &d,
            "c.toml",
            r#"
dbb = "x"
max_node_bytes = "lots"
[store]
readers = 0
synchronous = "sometimes"
colour = 1
[[mounts]]
pattern = "/a/{x}"
type = "memory"
[[mounts]]
pattern = "/a/{y}"
type = "nosuch"
patern = 1
"#,
        );
        let s = sources(Some(f));
        let e = load(&s).unwrap_err();
        assert!(e.message().contains("config check"), "{e}");
        let problems = check(&s, &["memory"]);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "dbb",
            "max_node_bytes",
            "store.readers",
            "store.synchronous",
            "store.colour",
            "mounts[1].type",
            "mounts[1].patern",
            "mounts",
        ] {
            assert!(keys.contains(&want), "missing {want} in {problems:#?}");
        }
        let dbb = problems.iter().find(|p| p.key == "dbb").unwrap();
        assert!(dbb.message.contains("did you mean \"db\""), "{dbb:?}");
        assert!(
            dbb.source.as_deref().unwrap_or("").contains("c.toml"),
            "{dbb:?}"
        );
    }

    #[test]
    fn a_clean_config_has_no_problems() {
        assert!(check(&sources(None), &["memory"]).is_empty());
    }

    #[test]
    fn missing_config_file_is_reported() {
        let e = load(&sources(Some(PathBuf::from("/nonexistent/c.toml")))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn expansion_handles_tilde_and_variables() {
        let home = std::env::var("HOME").unwrap_or_default();
        if !home.is_empty() {
            assert_eq!(expand("~/a").unwrap(), format!("{home}/a"));
            assert_eq!(expand("${HOME}/b").unwrap(), format!("{home}/b"));
        }
        assert!(expand("$AVM_SURELY_UNSET_VARIABLE/x").is_err());
        assert_eq!(expand("a$").unwrap(), "a$");
    }

    #[test]
    fn agent_ids_are_checked() {
        assert!(validate_agent_id("alice-2").is_ok());
        for bad in ["", "a/b", "..", "-x", "a b"] {
            assert!(validate_agent_id(bad).is_err(), "{bad}");
        }
    }
}
