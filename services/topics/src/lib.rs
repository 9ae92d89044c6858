//! avm-topics: which topics each memory is about, and which memories a topic names.
//!
//! [`extract`] turns a memory into weighted topics (hashtags, tickers, title words, proper
//! nouns, salient terms, CJK bigrams), deterministically. [`index::TopicIndex`] keeps the
//! postings in the store, maintained from the events table, and answers topic queries with
//! specificity scoring. [`provider::TopicsProvider`] serves `:topics` on every directory.

pub mod extract;
pub mod index;
pub mod provider;

pub use index::{TopicIndex, TopicMatch, specificity};
