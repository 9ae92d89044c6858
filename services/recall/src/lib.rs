//! avm-recall: what agents use their memory through.
//!
//! - [`remember`]: store a memory under a unique name, stamped by the host, deduplicated;
//! - [`engine`]: candidates from FTS, topics, links (and vectors) fused into one score
//!   (formula in the module docs) and [`recall`]: the best of them, summarised, inside a budget
//!   of real cl100k tokens;
//! - [`navigate`]: browse/fetch (two-phase retrieval), tree, timeline, explore, savings;
//! - [`provider::RecallProvider`]: all of it as `:recall`, `:browse`, `:timeline`, `:explore`
//!   on any path.

pub mod engine;
pub mod navigate;
pub mod provider;
pub mod recall;
pub mod remember;
pub mod summary;
pub mod tokens;

pub use engine::{Engine, Strategy, Tuning, VectorSearch};
pub use provider::RecallProvider;
pub use recall::{Recall, RecallRequest};
pub use remember::{Memory, Remembered, remember, remember_many};
