//! The storage engine seam under the memory provider.
//!
//! [`MemoryProvider`](crate::MemoryProvider) keeps avm's semantics of a path (suffixes and
//! their rendering, permissions, history, trash, links, TTL, records) and asks an [`Engine`]
//! for everything stored. An engine:
//! - applies [`WriteOp`]s, each a whole semantic change, in transactions that commit many
//!   callers' writes together (group commit), each write answered with its own [`Outcome`];
//! - writes an ordered events row in the same transaction as each change (the stream that
//!   caches, subscriptions and the embedding queue follow: [`MemoryStore::events_after`]);
//! - answers reads by path, directory and subtree, with the caller's visibility filter pushed
//!   down into its queries (a private node never leaves the engine for a caller that may not
//!   see it);
//! - ranks full-text search (BM25 over its own index) within scopes, also filtered;
//! - serves the agent-memory services through [`MemoryStore`] (topics, vectors, messages,
//!   read markers, telemetry, cursors).
//!
//! The SQLite engine ([`crate::sqlite::Store`]) is the embedded default. [`contract`](crate::contract)
//! is the suite every engine must pass.

use std::sync::Arc;

use avm_core::storage::{Keep, MemoryStore};
use avm_core::time::Micros;
use avm_core::{Attrs, Caller, Capacity, Content, NodeKind, Result};
use serde_json::Value;

use crate::node::Node;
pub use crate::ops::{Outcome, WriteOp};

/// Everything the memory provider needs of stored memory. Object safe: the provider holds an
/// `Arc<dyn Engine>`.
pub trait Engine: MemoryStore + std::fmt::Debug {
    /// Applies one write and waits until it is durable.
    fn apply(&self, op: WriteOp) -> Result<Outcome>;
    /// Applies writes together (one transaction where the engine can), each answered alone:
    /// one refused write does not undo the others.
    fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>>;
    /// Makes everything acknowledged so far durable and pending bookkeeping (read times)
    /// written; called before a process exits.
    fn sync(&self) -> Result<()>;

    /// The live node at `path` (not expired), recording the read.
    fn get(&self, path: &str) -> Result<Option<Arc<Node>>>;
    /// The live node at `path` without recording a read.
    fn peek(&self, path: &str) -> Result<Option<Arc<Node>>>;
    /// Whether `path` holds a node that has expired and is not yet purged.
    fn expired_pending(&self, path: &str) -> Result<bool>;
    /// What `path` is: a file, a symbolic link, a directory (implicit or made), or nothing.
    fn kind(&self, path: &str) -> Result<Option<NodeKind>>;
    /// Whether anything lives under `dir`.
    fn has_children(&self, dir: &str) -> Result<bool>;
    /// The immediate children of `dir` that `caller` may see, by name.
    fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>>;
    /// Every node under `dir` that `caller` may see, by path.
    fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>>;
    /// Up to `limit` nodes under `dir` that `caller` may see with paths after `after`.
    fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>>;
    /// A directory's attributes and its number of subdirectories, if it exists for `caller`.
    fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>>;
    /// Space used and left where the data lives.
    fn capacity(&self) -> Result<Capacity>;
    /// Nodes and content bytes under `dir`.
    fn usage(&self, dir: &str) -> Result<(u64, u64)>;
    /// The read marker `agent` holds on `path` (0 when none).
    fn mark_of(&self, agent: &str, path: &str) -> Result<i64>;

    /// The best `limit` full-text matches of `query` under `scope` that `caller` may see.
    fn search(&self, scope: &str, caller: &Caller, query: &str, limit: usize) -> Result<Vec<Hit>>;
    /// The best `limit` matches under any of `scopes` that `caller` may see and `extra`
    /// keeps; `snippets` asks for excerpts.
    fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>>;

    /// The newest `limit` entries of `path`'s history, newest first.
    fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>>;
    /// One version of `path` with its content.
    fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>>;
    /// The version of `path` that stood at time `at`.
    fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>>;
    /// Every version of `path`, oldest first, with content (for export).
    fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>>;
    /// Links out of and into `path` whose other end `caller` may see.
    fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)>;
    /// Tags under `dir` with how many visible nodes carry each.
    fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<Keep<'_>>,
    ) -> Result<Vec<(String, i64)>>;
    /// Counts and sizes under `dir` (the `:stats` document).
    fn stats(&self, dir: &str, caller: &Caller, keep: Option<Keep<'_>>) -> Result<Value>;
}

/// One entry of a node's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VersionInfo {
    /// Version number (1-based, no gaps).
    pub version: i64,
    /// `create`, `update`, `delete`, `move-in`, `move-out`, `restore`, `expire`, `import`.
    pub kind: String,
    /// When.
    pub at: Micros,
    /// Who.
    pub author: Option<String>,
    /// Content hash at this version.
    pub hash: String,
    /// Content length in bytes.
    pub size: i64,
    /// Free text (the other path of a move).
    pub note: Option<String>,
}

/// A typed link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Link {
    /// From.
    pub source: String,
    /// To.
    pub target: String,
    /// Link type (`related`, `derived`, `supersedes`, … or any word).
    #[serde(rename = "type")]
    pub kind: String,
    /// Weight.
    pub weight: f64,
    /// When it was made.
    pub created_at: Micros,
}

/// Search hit with the node's id.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The node.
    pub path: String,
    /// Higher is better.
    pub score: f64,
    /// Excerpt.
    pub snippet: String,
}

/// One immediate child of a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildEntry {
    /// Full path.
    pub path: String,
    /// File or directory.
    pub kind: NodeKind,
    /// Bytes.
    pub size: u64,
    /// Version of a file.
    pub version: Option<i64>,
    /// Last change of a file.
    pub updated_at: Option<Micros>,
}
