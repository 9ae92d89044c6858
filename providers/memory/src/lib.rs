//! avm-provider-memory: the embedded default store.
//!
//! SQLite in WAL mode with one group-committing writer thread per process, a pool of read
//! connections and a hot cache that other processes' writes invalidate through the events
//! table. Nodes keep full version history, typed links, tags, importance, author, access time
//! and expiry; FTS5 indexes content (plus CJK unigrams and bigrams for substring search).

mod db;
mod fsops;
pub mod fts;
pub mod node;
pub mod provider;
pub mod record;
pub mod services;
pub mod store;
pub(crate) mod topk;
pub mod write;

pub use node::Node;
pub use provider::{MemoryOptions, MemoryProvider};
pub use record::Record;
pub use store::{Store, StoreOptions};
pub use write::{Outcome, WriteOp};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
