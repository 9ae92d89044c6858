//! The arguments of the MCP tools, with the JSON schemas clients see.

use schemars::JsonSchema;
use serde::Deserialize;

/// `avm_recall` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct RecallArgs {
    /// What to remember about: a question or keywords.
    pub query: String,
    /// Token budget for the whole answer (cl100k tokens); default 4000.
    pub max_tokens: Option<usize>,
    /// balanced (default), relevance, importance or recency.
    pub strategy: Option<String>,
    /// Only these shared namespaces (besides your private memories).
    pub namespaces: Option<Vec<String>>,
    /// Name each memory by its full path instead of its short @id handle (default false).
    pub paths: Option<bool>,
}

/// `avm_browse` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct BrowseArgs {
    /// Query to rank memories by.
    pub query: String,
    /// At most this many (default 10).
    pub limit: Option<usize>,
}

/// `avm_fetch` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct FetchArgs {
    /// Paths, or the @id handles avm_recall shows (e.g. "@3k").
    pub paths: Vec<String>,
}

/// `avm_remember` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct RememberArgs {
    /// The memory.
    pub content: String,
    /// Short title (becomes part of the file name).
    pub title: Option<String>,
    /// 0..1, default 0.5.
    pub importance: Option<f64>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Shared namespace to write into (else your private memory).
    pub namespace: Option<String>,
    /// When it happened, if not now: a date or time such as 2023-05-08 or 2023-05-08T14:30:00Z.
    pub at: Option<String>,
}

/// `avm_search` / `avm_semantic` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Words to search for.
    pub query: String,
    /// At most this many hits (default 10).
    pub limit: Option<usize>,
}

/// `avm_list` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Directory (default: your private memory, /private).
    pub prefix: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

/// A path.
#[derive(Deserialize, JsonSchema)]
pub struct PathArgs {
    /// Path such as /memory/shared/market/fed.md or /private/notes.md.
    pub path: String,
}

/// `avm_write` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// Path to write.
    pub path: String,
    /// New content.
    pub content: String,
    /// Replace the tags.
    pub tags: Option<Vec<String>>,
}

/// `avm_tags` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct TagsArgs {
    /// A memory (its tags) or a directory (tag counts); default /memory.
    pub path: Option<String>,
}

/// `avm_recent` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct RecentArgs {
    /// How many days back (default 1).
    pub days: Option<u32>,
    /// At most this many (default 20).
    pub limit: Option<usize>,
}

/// `avm_link` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct LinkArgs {
    /// From.
    pub source: String,
    /// To.
    pub target: String,
    /// Link type: related (default), derived, supersedes, contradicts, or any word.
    pub link_type: Option<String>,
}

/// `avm_tell` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct TellArgs {
    /// Recipient agent id, or @all.
    pub to: String,
    /// The message.
    pub message: String,
    /// urgent, normal (default) or low.
    pub priority: Option<String>,
}

/// `avm_inbox` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct InboxArgs {
    /// Mark the unread messages shown read.
    pub mark_read: Option<bool>,
    /// Show the read messages too (the 10 newest).
    pub all: Option<bool>,
}

/// `avm_topics` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct TopicsArgs {
    /// Directory or memory (default /memory).
    pub path: Option<String>,
    /// At most this many (default 30).
    pub limit: Option<usize>,
}

/// `avm_who_knows` arguments.
#[derive(Deserialize, JsonSchema)]
pub struct WhoKnowsArgs {
    /// Topic.
    pub topic: String,
}

/// Arguments of `avm_digest`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DigestArgs {
    /// Scope (default: your private namespace).
    pub path: Option<String>,
    /// How many days back (default 1).
    pub days: Option<f64>,
    /// Memories listed per topic (default 10).
    pub max: Option<usize>,
}
