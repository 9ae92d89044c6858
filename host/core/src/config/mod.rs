//! Configuration through figment.
//!
//! Layers, later wins: built-in defaults < `/etc/avm/config.toml` <
//! `$XDG_CONFIG_HOME/avm/config.{toml,yaml}` < `--config FILE` < `AVM_*` environment variables
//! (`AVM_STORE__CACHE_ENTRIES=5000` sets `store.cache_entries`) < command-line flags.
//!
//! [`load`] stops at the first problem (as any program must); [`check`] walks the merged
//! configuration and reports every problem it can find, each with the source that set it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::value::Dict;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{Access, AgentConfig, PermissionRule, Policy};
use crate::router::Router;

mod check;
mod load;
#[cfg(test)]
mod tests;

pub use check::{Problem, check, validate_agent_id};
pub use load::{
    SYSTEM_CONFIG, Sources, config_dir, data_dir, expand, figment, files, load, watched_files,
};

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

/// Where memory is stored and how the store is tuned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A PostgreSQL address (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`) that hosts
    /// share as their store; none = the embedded SQLite file (`db`). `db` may also be one.
    pub url: Option<String>,
    /// Connections to PostgreSQL this process keeps at most.
    pub max_connections: u32,
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
            url: None,
            max_connections: 16,
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

impl Config {
    /// The compiled permission policy of this configuration.
    pub fn policy(&self) -> Result<Policy> {
        Policy::new(self.default_access, &self.permissions, &self.agents)
    }
}

impl Config {
    /// The PostgreSQL address of the shared store: `store.url`, else `db` when it is one
    /// (`~` and `${VAR}` expanded); `None` for the embedded SQLite store.
    pub fn store_url(&self) -> Result<Option<String>> {
        let raw = match (&self.store.url, &self.db) {
            (Some(u), _) if !u.trim().is_empty() => u,
            (_, Some(d)) if is_store_url(d) => d,
            _ => return Ok(None),
        };
        let url = expand(raw)?;
        if !is_store_url(&url) {
            return Err(Error::invalid(format!(
                "store.url must be a PostgreSQL address such as postgres://avm@db.internal/avm, not {url:?}"
            )));
        }
        Ok(Some(url))
    }

    /// The database path: `db` with `~` and `${VAR}` expanded, else the XDG default. With a
    /// PostgreSQL store, the local base path beside which this host keeps its own files (the
    /// project indexes, the vector graph, the socket of `avm serve`).
    pub fn db_path(&self) -> Result<PathBuf> {
        match &self.db {
            Some(raw) if !is_store_url(raw) => Ok(PathBuf::from(expand(raw)?)),
            _ => data_dir().map(|d| d.join("avm.db")).ok_or_else(|| {
                Error::invalid(
                    "cannot find a default database location: neither XDG_DATA_HOME nor HOME is set; pass --db PATH",
                )
            }),
        }
    }
}

/// Whether `s` is a PostgreSQL address rather than a file.
pub fn is_store_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
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
