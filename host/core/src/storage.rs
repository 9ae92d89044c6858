//! The storage seam of the built-in agent-memory services.
//!
//! Recall, the topic index, the librarian and (later) the embedding queue talk to the memory
//! store through [`MemoryStore`], never to SQLite directly, so a second backend (PostgreSQL for
//! teams that outgrow one machine) can be added without touching them. Every method that
//! returns nodes takes a `keep` filter and applies it while it fills the result, so a caller's
//! result never comes back short because of nodes it may not see.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::content::{Content, to_base64};
use crate::error::Result;
use crate::provider::{Attrs, Caller, NodeKind};
use crate::time::{Micros, Nanos, to_iso};

/// One stored memory: the one node type, for the memory provider, its engines and the
/// services alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Stable id (survives moves; keys the full-text rows).
    pub id: i64,
    /// Absolute normalised path.
    pub path: String,
    /// Content: text, or bytes kept exactly (the target path for a symbolic link).
    pub content: Content,
    /// A file or a symbolic link.
    pub kind: NodeKind,
    /// Filesystem attributes (mode, owner, times); `nlink` is never set on nodes.
    pub attrs: Attrs,
    /// Free-form metadata (without the typed keys below).
    pub meta: Map<String, Value>,
    /// Tags, in the order given.
    pub tags: Vec<String>,
    /// Importance in 0..=1.
    pub importance: f64,
    /// The agent that created the node (stamped by the host).
    pub author: Option<String>,
    /// Creation time.
    pub created_at: Micros,
    /// Last change of content or metadata (reads never move it).
    pub updated_at: Micros,
    /// Last read through avm (reads never move `updated_at`; they move this).
    pub accessed_at: Option<Micros>,
    /// Content version, 1-based; bumps only when the content changes.
    pub version: i64,
    /// First 16 hex digits of the content's SHA-256.
    pub hash: String,
    /// When the node expires (hidden and purged from then on).
    pub expires_at: Option<Micros>,
}

impl Node {
    /// The text the indexes and services see: the content of a text file, `""` for binary
    /// content and for symbolic links.
    pub fn text(&self) -> &str {
        if self.is_indexed() {
            self.content.text_or_empty()
        } else {
            ""
        }
    }

    /// Is this a text file (full-text indexed, seen by recall, topics and embeddings)?
    pub fn is_indexed(&self) -> bool {
        self.kind == NodeKind::File && self.content.is_text()
    }

    /// May `caller` see this node (the one visibility rule: private namespaces and their
    /// copies, and `shared_with`)?
    pub fn visible_to(&self, caller: &crate::Caller) -> bool {
        crate::provider::visible_to(
            caller,
            &self.path,
            self.author.as_deref(),
            &crate::provider::shared_with(&self.meta),
        )
    }

    /// The title: `meta.title`, else the file name without extension and timestamp prefix.
    pub fn title(&self) -> String {
        if let Some(t) = self.meta.get("title").and_then(Value::as_str) {
            return t.to_string();
        }
        let base = crate::address::basename(&self.path);
        let stem = base.rsplit_once('.').map(|(s, _)| s).unwrap_or(base);
        stem.to_string()
    }

    /// The modification time, in nanoseconds.
    pub fn mtime(&self) -> Nanos {
        self.attrs
            .mtime
            .unwrap_or_else(|| self.updated_at.saturating_mul(1000))
    }

    /// Is the node expired at `now`?
    pub fn is_expired(&self, now: Micros) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The metadata as users see it: free-form keys plus tags, importance, author and expiry.
    pub fn meta_view(&self) -> Value {
        let mut m = self.meta.clone();
        m.insert("tags".into(), json!(self.tags));
        m.insert("importance".into(), json!(self.importance));
        if let Some(a) = &self.author {
            m.insert("author".into(), json!(a));
        }
        if let Some(t) = self.expires_at {
            m.insert("expires_at".into(), json!(to_iso(t)));
        }
        Value::Object(m)
    }

    /// The node dict printed by `--json` (the reference's shape plus `accessed_at` and `hash`).
    /// Binary content travels as `content_base64` (with `content` null and `binary` true); a
    /// symbolic link has `node_type` `symlink` and its target as `content`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "path": self.path,
            "content": self.content.text(),
            "meta": self.meta_view(),
            "node_type": if self.kind == NodeKind::Symlink { "symlink" } else { "file" },
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "accessed_at": self.accessed_at.map(to_iso),
            "version": self.version,
            "hash": self.hash,
            "size": self.content.len(),
        });
        if let (Content::Bytes(b), Value::Object(o)) = (&self.content, &mut v) {
            o.insert("binary".into(), json!(true));
            o.insert("content_base64".into(), json!(to_base64(b)));
        }
        if let (Some(m), Value::Object(o)) = (self.attrs.mode, &mut v) {
            o.insert("mode".into(), json!(format!("{m:04o}")));
        }
        v
    }
}

/// A full-text hit.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    /// Path.
    pub path: String,
    /// Engine score, higher is better (raw bm25 for SQLite).
    pub score: f64,
}

/// One change recorded in the events table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreEvent {
    /// Sequence number, increasing.
    pub seq: i64,
    /// When.
    pub at: Micros,
    /// `create`, `update`, `delete`, `move`, …
    pub kind: String,
    /// Path.
    pub path: String,
    /// The other path (moves).
    pub detail: Option<String>,
    /// Who.
    pub agent: Option<String>,
}

/// Wakes a follower of the events when a change commits (see [`MemoryStore::change_waiter`]).
pub trait ChangeWaiter: Send {
    /// Waits up to `timeout` for a change. `true` when one came, or when the wait itself
    /// failed (changes may have been missed, so the follower should catch up from the events
    /// anyway); `false` when the time ran out quietly.
    fn wait(&mut self, timeout: std::time::Duration) -> bool;
}

/// The topics of one node, as extracted from one state of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDoc {
    /// Node id.
    pub node_id: i64,
    /// `hash:path` of the state the topics were extracted from; the store ignores the entry
    /// if the node has changed since (a newer event will bring it back).
    pub signature: String,
    /// Topic keys and weights.
    pub topics: Vec<(String, f64)>,
}

/// One posting of the topic index.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPosting {
    /// Topic key.
    pub topic: String,
    /// Node path.
    pub path: String,
    /// Weight of the topic in that node.
    pub weight: f64,
    /// How many live nodes carry this topic.
    pub docs: u64,
}

/// One telemetry row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telemetry {
    /// When.
    pub at: Micros,
    /// `recall`, `remember`, `browse`, …
    pub op: String,
    /// Who.
    pub agent: Option<String>,
    /// The query, if any.
    pub query: Option<String>,
    /// Tokens handed back to the agent.
    pub tokens_returned: i64,
    /// Tokens of the full content of every candidate the answer was chosen from.
    pub tokens_available: i64,
    /// Items returned.
    pub results: i64,
    /// Latency in microseconds.
    pub latency_us: i64,
}

/// Totals of telemetry rows for one agent and operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryTotals {
    /// Agent (none = operator).
    pub agent: Option<String>,
    /// Operation.
    pub op: String,
    /// Rows.
    pub count: i64,
    /// Σ tokens returned.
    pub tokens_returned: i64,
    /// Σ tokens available.
    pub tokens_available: i64,
    /// Mean latency in microseconds.
    pub mean_latency_us: f64,
}

/// A message between agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tell {
    /// Id (0 before it is stored).
    pub id: i64,
    /// Sender (agent id, or `operator`).
    pub from: String,
    /// Recipient agent id, or `@all`.
    pub to: String,
    /// Text.
    pub content: String,
    /// `urgent`, `normal` or `low`.
    pub priority: String,
    /// Sent.
    pub created_at: Micros,
    /// Hidden from then on.
    pub expires_at: Option<Micros>,
}

/// A vector of one node, computed from one state of it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorDoc {
    /// Node id.
    pub node_id: i64,
    /// Content hash of the state embedded (ignored if the node changed since).
    pub hash: String,
    /// Unit vector.
    pub vector: Vec<f32>,
}

/// A vector-similarity candidate source (the embedding provider implements it; recall and
/// hybrid search use it).
pub trait VectorSearch: Send + Sync {
    /// Paths within `scopes`, visible to `caller` and kept by `keep`, most similar to `query`,
    /// with cosine similarity, best first; never short because of filtering.
    fn similar(
        &self,
        query: &str,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, f64)>>;
}

/// The rank constant of reciprocal-rank fusion.
const RRF_K: f64 = 60.0;

/// The fused score of a path ranked first in each of `lists` lists: the top of [`rrf`]'s
/// scale, by which callers divide to show fused scores as 0..1.
pub fn rrf_best(lists: usize) -> f64 {
    lists as f64 / (RRF_K + 1.0)
}

/// Reciprocal-rank fusion: each list ranks paths best first; a path scores
/// Σ 1 / (60 + rank) over the lists it appears in (rank from 1). Best first; ties by path.
pub fn rrf(lists: &[Vec<String>]) -> Vec<(String, f64)> {
    let mut score: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for list in lists {
        for (i, p) in list.iter().enumerate() {
            *score.entry(p.as_str()).or_insert(0.0) += 1.0 / (RRF_K + (i + 1) as f64);
        }
    }
    let mut out: Vec<(String, f64)> = score.into_iter().map(|(p, s)| (p.to_string(), s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Whether `line` is one of the header lines `remember` puts around a memory's content
/// (`---`, `*Created: …*`, `*Updated: …*`, `*Tags: …*`, `*Source: …*`), which summaries,
/// excerpts and embeddings leave out.
pub fn is_header_line(line: &str) -> bool {
    let t = line.trim();
    t == "---"
        || (t.starts_with('*')
            && t.ends_with('*')
            && ["*Created:", "*Updated:", "*Tags:", "*Source:"]
                .iter()
                .any(|p| t.starts_with(p)))
}

/// The lines of a memory's body: trimmed, not empty, neither a heading (`# …`) nor one of
/// `remember`'s header lines ([`is_header_line`]).
pub fn body_lines(content: &str) -> impl Iterator<Item = &str> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_header_line(l) && !l.starts_with("# "))
}

/// The first `max` characters of a memory's body ([`body_lines`]) on one line, with `…` when
/// cut.
pub fn excerpt(content: &str, max: usize) -> String {
    let joined = body_lines(content).collect::<Vec<_>>().join(" ");
    let mut out: String = joined.chars().take(max).collect();
    if joined.chars().count() > max {
        out.push('…');
    }
    out
}

/// The shortcut id of a node: its id in base 36 (unique, stable across moves, found by id at
/// any store size).
pub fn shortcut(id: i64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = id.unsigned_abs();
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The node id of a shortcut, if it is one.
pub fn shortcut_id(s: &str) -> Option<i64> {
    i64::from_str_radix(s, 36).ok().filter(|n| *n > 0)
}

/// Vectors by node id.
pub type Vectors = Vec<(i64, Vec<f32>)>;

/// A keep-filter over paths (the caller's read rules).
pub type Keep<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// What the agent-memory services need from a store.
pub trait MemoryStore: Send + Sync {
    /// The live node at `path`, without marking it accessed.
    fn node(&self, path: &str) -> Result<Option<Node>>;

    /// Full-text search within any of `scopes`, visible to `caller`, kept by `keep`, best first.
    fn text_search(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<TextHit>>;

    /// Live nodes within any of `scopes`, newest change first, changed at or after `since`.
    fn recent(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        since: Option<Micros>,
        limit: usize,
    ) -> Result<Vec<Node>>;

    /// Live nodes within any of `scopes`, oldest change first, changed before `before`
    /// (lifecycle work: cold memories, old trash).
    fn oldest(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        before: Micros,
        limit: usize,
    ) -> Result<Vec<Node>>;

    /// The content hash this store records for `content` (compared by `find_by_hash`).
    fn content_hash(&self, content: &str) -> String;

    /// The path of a live node inside `scope` by this author whose content hash, or whose
    /// `meta.remember_hash` (the hash of what was remembered), is `hash`.
    fn find_by_hash(&self, scope: &str, hash: &str, author: Option<&str>)
    -> Result<Option<String>>;

    /// Links touching `path` as `(source, target, type, weight)`, both directions.
    fn links_of(&self, path: &str) -> Result<Vec<(String, String, String, f64)>>;

    /// Immediate children of `dir`: `(path, is_dir, visible nodes below or 1 for files)`.
    fn children_counted(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Keep<'_>,
    ) -> Result<Vec<(String, bool, u64)>>;

    /// Events after `seq`, oldest first.
    fn events_after(&self, seq: i64, limit: usize) -> Result<Vec<StoreEvent>>;

    /// The newest event's sequence number.
    fn last_event(&self) -> Result<i64>;

    /// Something that wakes a follower of [`MemoryStore::events_after`] as soon as any process,
    /// on any host, commits a change, where the engine can tell (PostgreSQL's `NOTIFY`); `None`
    /// where followers poll on their own schedule.
    fn change_waiter(&self) -> Option<Box<dyn ChangeWaiter>> {
        None
    }

    /// How far the topic index has consumed the events table.
    fn topic_cursor(&self) -> Result<i64>;

    /// Replaces the topics of the given nodes, drops `removed` node ids, and moves the cursor
    /// forward to `cursor` (never back), in one transaction.
    fn topic_update(&self, cursor: i64, docs: Vec<TopicDoc>, removed: Vec<i64>) -> Result<()>;

    /// Postings for `topics` (live, visible, kept nodes within `scopes`), at most `per_topic`
    /// per topic, heaviest first.
    fn topic_postings(
        &self,
        topics: &[String],
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        per_topic: usize,
    ) -> Result<Vec<TopicPosting>>;

    /// The most common topics within `scopes`: `(topic, visible nodes)`.
    fn topic_counts(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>>;

    /// The topics of one node, heaviest first.
    fn topics_of(&self, path: &str) -> Result<Vec<(String, f64)>>;

    /// Stores a message; returns its id.
    fn tell_send(&self, tell: Tell) -> Result<i64>;

    /// Unexpired messages to `agent` (or `@all`) with whether this agent has read each,
    /// unread first, urgent before normal before low, newest first within each.
    fn tell_inbox(&self, agent: &str, limit: usize) -> Result<Vec<(Tell, bool)>>;

    /// Marks messages read for `agent` only.
    fn tell_mark_read(&self, agent: &str, ids: &[i64]) -> Result<()>;

    /// The path of the live node with this id (shortcuts).
    fn path_of_id(&self, id: i64) -> Result<Option<String>>;

    /// How far the embedding queue has consumed the events table.
    fn vector_cursor(&self) -> Result<i64>;

    /// Stores vectors (skipping nodes changed since) and moves the cursor forward.
    fn vectors_put(&self, cursor: i64, model: &str, docs: Vec<VectorDoc>) -> Result<()>;

    /// Live nodes outside the trash without a current vector of `model`, at most `limit`.
    fn vectors_stale(&self, model: &str, limit: usize) -> Result<Vec<Node>>;

    /// Every vector of `model` as `(node id, vector)`, and a stamp that changes whenever the
    /// set of vectors changes.
    fn vectors_all(&self, model: &str) -> Result<(Vectors, i64)>;

    /// The stamp [`MemoryStore::vectors_all`] would return now (cheap).
    fn vectors_stamp(&self, model: &str) -> Result<i64>;

    /// Paths of live nodes by id that `caller` may see (missing, expired and hidden ids are
    /// left out).
    fn paths_of_ids(&self, ids: &[i64], caller: &Caller) -> Result<Vec<(i64, String)>>;

    /// Records a telemetry row without waiting for it to commit.
    fn record(&self, row: Telemetry);

    /// Telemetry totals per agent and operation since `since`, for one agent or all.
    fn telemetry(&self, agent: Option<&str>, since: Option<Micros>)
    -> Result<Vec<TelemetryTotals>>;
}

fn badge(priority: &str) -> &'static str {
    match priority {
        "urgent" => "🔴",
        "normal" => "🟡",
        _ => "⚪",
    }
}

/// `## 🔴 From: alice @ 2026-11-21T08:00:00+00:00` and the content.
pub fn tell_header(t: &Tell) -> String {
    format!(
        "## {} From: {} @ {}\n{}",
        badge(&t.priority),
        t.from,
        crate::time::to_iso(t.created_at),
        t.content
    )
}

/// The block a file-serving front end puts on top of the next file an agent reads while
/// urgent messages to it are unread, and their ids (to mark read once the read is done).
pub fn urgent_block(store: &dyn MemoryStore, agent: &str) -> Result<Option<(String, Vec<i64>)>> {
    let urgent: Vec<Tell> = store
        .tell_inbox(agent, 50)?
        .into_iter()
        .filter(|(t, seen)| !seen && t.priority == "urgent")
        .map(|(t, _)| t)
        .collect();
    if urgent.is_empty() {
        return Ok(None);
    }
    let mut s = String::from("# ⚠️ UNREAD MESSAGES\n\n");
    for t in &urgent {
        s.push_str(&tell_header(t));
        s.push_str("\n\n");
    }
    s.push_str("---\n");
    Ok(Some((s, urgent.iter().map(|t| t.id).collect())))
}
