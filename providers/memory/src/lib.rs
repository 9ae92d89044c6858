//! avm-provider-memory: agent memory, the embedded default store.
//!
//! Two layers. [`MemoryProvider`] is what a path means (suffixes and their rendering,
//! permissions, history, trash, links, TTL, records), over an [`Engine`]: the storage seam
//! ([`engine`]). [`sqlite`] is the embedded engine: SQLite in WAL mode with one
//! group-committing writer thread per process, a pool of read connections and a hot cache that
//! other processes' writes invalidate through the events table, FTS5 for full-text search
//! (plus CJK unigrams and bigrams for substring search). [`contract`] is the suite every
//! engine passes.

pub mod contract;
pub mod engine;
pub mod fts;
pub mod node;
pub mod ops;
pub mod postgres;
pub mod provider;
pub mod record;
mod rules;
pub mod sqlite;
mod suffix;

pub use engine::Engine;
pub use node::Node;
pub use ops::{Outcome, WriteOp};
pub use provider::{MemoryOptions, MemoryProvider};
pub use record::Record;
pub use sqlite::{Store, StoreOptions};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
