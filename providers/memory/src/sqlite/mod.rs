//! The SQLite engine: one database file in WAL mode, a pool of readers, one group-committing
//! writer thread, a hot cache kept true by the events table, FTS5 with a top-k ranker, and
//! the agent-memory services' tables.

pub(crate) mod db;
pub(crate) mod fsops;
pub mod services;
pub mod store;
pub(crate) mod topk;
pub mod write;

pub use store::{Store, StoreOptions};
