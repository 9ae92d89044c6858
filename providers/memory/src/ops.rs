//! The write vocabulary of a storage engine: each [`WriteOp`] is one semantic change (a put
//! with its history, a move of a subtree, a message, a read marker...). An engine applies a
//! batch of them in one transaction (group commit) and answers each with an [`Outcome`].

use std::sync::Arc;

use avm_core::{Caller, Policy, Put};

use crate::node::Node;
use crate::record::Record;

/// A write an engine applies.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create or update a node.
    Put {
        /// Path.
        path: String,
        /// What to change.
        put: Put,
        /// Author to stamp on creation.
        agent: Option<String>,
        /// The writer is an admin (may set a TTL on shared nodes others wrote).
        admin: bool,
    },
    /// Delete a node or subtree (to the trash unless `hard` or already in the trash).
    Remove {
        /// Path.
        path: String,
        /// Allow subtrees.
        recursive: bool,
        /// Skip the trash.
        hard: bool,
        /// Who asks (subtree checks).
        caller: Caller,
        /// The rules every removed node must allow.
        policy: Arc<Policy>,
    },
    /// Move a node or subtree.
    Rename {
        /// From.
        src: String,
        /// To.
        dst: String,
        /// Overwrite (the overwritten node goes to the trash).
        force: bool,
        /// Who asks.
        caller: Caller,
        /// The rules every moved node (at both ends) must allow.
        policy: Arc<Policy>,
    },
    /// Add (or re-weight) a link.
    Link {
        /// From (must exist).
        source: String,
        /// To.
        target: String,
        /// Type.
        kind: String,
        /// Weight.
        weight: f64,
    },
    /// Remove links from `source` to `target` (of one type, or all).
    Unlink {
        /// From.
        source: String,
        /// To.
        target: String,
        /// Type, or every type.
        kind: Option<String>,
    },
    /// Replace topic postings (no event: the topic index is derived data).
    Topics {
        /// Events consumed up to here.
        cursor: i64,
        /// New topics per node.
        docs: Vec<avm_core::storage::TopicDoc>,
        /// Node ids whose topics go.
        removed: Vec<i64>,
    },
    /// Record a telemetry row (no event).
    Telemetry(avm_core::storage::Telemetry),
    /// Remember common words' document counts for later processes (no event).
    TermDf(Vec<crate::sqlite::topk::Counted>),
    /// Make an (empty) directory that persists until removed.
    Mkdir {
        /// Path.
        path: String,
    },
    /// Remove an empty directory.
    Rmdir {
        /// Path.
        path: String,
    },
    /// Set an agent's read marker on a node (no event: markers are per reader).
    Mark {
        /// Reader.
        agent: String,
        /// Node.
        path: String,
        /// Version read.
        version: i64,
    },
    /// Send a message.
    Tell(avm_core::storage::Tell),
    /// Store vectors and move the embedding cursor.
    Vectors {
        /// Events consumed up to here.
        cursor: i64,
        /// Model id.
        model: String,
        /// The vectors.
        docs: Vec<avm_core::storage::VectorDoc>,
    },
    /// Mark messages read for one recipient.
    TellRead {
        /// Recipient.
        agent: String,
        /// Message ids.
        ids: Vec<i64>,
    },
    /// Drop all but the newest `keep` versions from a node's history (no event: the node
    /// itself, its content and `updated_at` stay as they are).
    Compact {
        /// Path of a live node.
        path: String,
        /// Versions to keep, at least 1 (the current one is always among them).
        keep: usize,
    },
    /// Change filesystem attributes of a node or a directory (no new version).
    SetAttrs {
        /// Path.
        path: String,
        /// What to change.
        set: avm_core::SetAttrs,
        /// Who asks.
        caller: Caller,
    },
    /// Make a symbolic link.
    Symlink {
        /// Path of the link.
        path: String,
        /// What it points at (stored as given).
        target: String,
        /// Owner, mode and times to start with.
        attrs: avm_core::SetAttrs,
        /// Author to stamp.
        agent: Option<String>,
    },
    /// Move with `rename(2)` semantics (the mount's rename).
    PosixRename {
        /// From.
        src: String,
        /// To.
        dst: String,
        /// Replace, refuse or exchange an existing destination.
        how: avm_core::Rename,
        /// Who asks.
        caller: Caller,
        /// The rules every moved node (at both ends) must allow.
        policy: Arc<Policy>,
    },
    /// Restore an exported record exactly.
    Import {
        /// The record.
        record: Box<Record>,
        /// Replace what exists at the path (node and history).
        force: bool,
    },
}

/// What a write did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The node as it now stands (for single-node writes).
    pub node: Option<Node>,
    /// How many nodes changed.
    pub count: usize,
    /// Paths whose cached state is now stale.
    pub changed: Vec<String>,
    /// `(from, to)` for each moved node.
    pub moves: Vec<(String, String)>,
}
