//! The memory store behind the [`Provider`] trait: plain nodes plus their suffixes.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use similar::TextDiff;

use avm_core::address::normalize_path;
use avm_core::content::to_base64;
use avm_core::provider::Entry;
use avm_core::storage::{Keep, VectorSearch};
use avm_core::time::{
    Micros, now_micros, parse_duration, parse_time, to_iso, to_minute, to_second,
};
use avm_core::{
    Content, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Put, RemoveOptions, Request, Result, SearchHit, SearchOptions, Stat, SuffixOn, SuffixSpec,
    WriteInput,
};

use crate::engine::Engine;
use crate::node::Node;
use crate::ops::{Outcome, WriteOp};
use crate::record::Record;
use crate::sqlite::{Store, StoreOptions};

/// The `memory` provider.
#[derive(Clone)]
pub struct MemoryProvider {
    /// Where the memory is stored.
    store: Arc<dyn Engine>,
    /// Vector search for `:search?mode=semantic|hybrid`, once an embedder is configured.
    vectors: Arc<std::sync::RwLock<Option<Arc<dyn avm_core::storage::VectorSearch>>>>,
}

/// Options of a `memory` mount in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryOptions {
    /// The database file (`~` and `${VAR}` are expanded); the configured `db` when absent.
    /// Mounts naming the same file share one open store.
    pub db: Option<String>,
}

/// Version kinds after which the path holds nothing.
const GONE: &[&str] = &["delete", "move-out", "expire"];

impl std::fmt::Debug for MemoryProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProvider")
            .field("store", &self.store)
            .finish()
    }
}

impl MemoryProvider {
    /// Opens the SQLite database at `path` (the embedded engine).
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Self> {
        Ok(MemoryProvider::new(Arc::new(Store::open(path, opts)?)))
    }

    /// Serves memory stored by `store`, any engine.
    pub fn new(store: Arc<dyn Engine>) -> Self {
        MemoryProvider {
            store,
            vectors: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    /// Enables semantic and hybrid `:search` (and in every clone of this provider).
    pub fn set_vectors(&self, v: Arc<dyn avm_core::storage::VectorSearch>) {
        if let Ok(mut g) = self.vectors.write() {
            *g = Some(v);
        }
    }

    /// The engine underneath.
    pub fn store(&self) -> &Arc<dyn Engine> {
        &self.store
    }

    /// The same engine as the agent-memory services see it.
    pub fn memory_store(&self) -> Arc<dyn avm_core::storage::MemoryStore> {
        self.store.clone()
    }

    fn node(&self, req: &Request) -> Result<Arc<Node>> {
        match self.store.get(&req.path)? {
            Some(n) => {
                check_sees(&req.caller, &n)?;
                Ok(n)
            }
            None => Err(self.missing(&req.path)?),
        }
    }

    /// The right error for a path that is not a file.
    fn missing(&self, path: &str) -> Result<Error> {
        Ok(if self.store.kind(path)? == Some(NodeKind::Dir) {
            Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory; list it with `avm ls {path}`"),
            )
        } else {
            Error::not_found(path)
        })
    }

    fn apply(&self, op: WriteOp) -> Result<Outcome> {
        self.store.apply(op)
    }

    fn saved(out: Outcome, path: &str) -> Result<Output> {
        match out.node {
            Some(n) => Ok(Output::new(
                format!("Saved: {} (v{})", n.path, n.version),
                n.to_json(),
            )),
            None => Ok(Output::new(
                format!("Saved: {path}"),
                json!({"path": path, "count": out.count}),
            )),
        }
    }

    /// Refuses a path's history, versions and suffixes when the node at that path (or, for a
    /// node moved away, at the place it moved to) is one the caller may not see.
    fn check_live(&self, req: &Request) -> Result<()> {
        if req.caller.agent().is_none() {
            return Ok(());
        }
        if let Some(n) = self.store.get(&req.path)? {
            return check_sees(&req.caller, &n);
        }
        let last = self.store.history(&req.path, 1)?;
        let moved_to = last
            .first()
            .filter(|h| h.kind == "move-out")
            .and_then(|h| h.note.as_deref());
        if let Some(to) = moved_to
            && let Some(n) = self.store.get(to)?
            && !n.visible_to(&req.caller)
        {
            return Err(Error::denied(format!(
                "{} was shared with named agents only (rule: :shared)",
                req.path
            )));
        }
        Ok(())
    }

    fn read_versioned(&self, req: &Request) -> Result<Output> {
        self.check_live(req)?;
        if self.store.expired_pending(&req.path)? {
            return Err(Error::not_found(&req.path));
        }
        let found = if let Some(v) = req.query.parsed::<i64>("version")? {
            let r = self.store.version(&req.path, v)?;
            if r.is_none() {
                let latest = self.store.history(&req.path, 1)?.first().map(|h| h.version);
                return Err(Error::new(
                    ErrorKind::NotFound,
                    match latest {
                        Some(l) => format!("{} has no version {v}; versions run 1..{l}", req.path),
                        None => format!("{} has no history", req.path),
                    },
                ));
            }
            r
        } else if let Some(t) = req.query.get("as_of") {
            let at = parse_time(t)?;
            self.store.version_at(&req.path, at)?
        } else {
            None
        };
        let Some((info, content)) = found else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} did not exist at {}",
                    req.path,
                    req.query.get("as_of").unwrap_or("that time")
                ),
            ));
        };
        if GONE.contains(&info.kind.as_str()) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} did not exist at version {} ({} at {})",
                    req.path,
                    info.version,
                    info.kind,
                    to_iso(info.at)
                ),
            ));
        }
        if content.is_empty() && crate::node::content_hash(b"") != info.hash {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the content of version {} of {} was erased (it expired under an older avm, which blanked expired history)",
                    info.version, req.path
                ),
            ));
        }
        let path = req.path.clone();
        let c = content.clone();
        Ok(Output::content(content, move || {
            let mut v = json!({
                "path": path,
                "content": c.text(),
                "version": info.version,
                "kind": info.kind,
                "at": to_iso(info.at),
                "author": info.author,
                "hash": info.hash,
            });
            if let (Content::Bytes(b), Value::Object(o)) = (&c, &mut v) {
                o.insert("binary".into(), json!(true));
                o.insert("content_base64".into(), json!(to_base64(b)));
            }
            v
        }))
    }

    /// The caller's read marker on `path` (0 when never marked).
    fn marker(&self, agent: &str, path: &str) -> Result<i64> {
        self.store.mark_of(agent, path)
    }

    fn read_suffix(&self, req: &Request, suffix: &str) -> Result<Output> {
        self.check_live(req)?;
        let q = &req.query;
        match suffix {
            "shared" => {
                let n = self.node(req)?;
                let list: Vec<String> = n
                    .meta
                    .get("shared_with")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let text = if list.is_empty() {
                    "all\n".to_string()
                } else {
                    format!("{}\n", list.join(","))
                };
                Ok(Output::new(text, json!(list)))
            }
            "mark" => {
                let n = self.node(req)?;
                let agent = req.caller.agent().ok_or_else(|| {
                    Error::invalid(format!("{}:mark needs an agent (--agent NAME)", req.path))
                })?;
                let m = self.marker(agent, &req.path)?;
                Ok(Output::new(
                    format!("marked: v{m}, current: v{}\n", n.version),
                    json!({"marked": m, "current": n.version}),
                ))
            }
            "delta" => {
                let n = self.node(req)?;
                let agent = req.caller.agent().ok_or_else(|| {
                    Error::invalid(format!("{}:delta needs an agent (--agent NAME)", req.path))
                })?;
                let m = self.marker(agent, &req.path)?;
                let text = if m == 0 {
                    format!(
                        "# (first read, full content)\n{}\n",
                        n.content.display_text()
                    )
                } else if m >= n.version {
                    "(no changes)\n".to_string()
                } else {
                    let mut parts = Vec::new();
                    let hist = self.store.history(&req.path, 100)?;
                    for h in hist.iter().rev().filter(|h| h.version > m) {
                        parts.push(format!(
                            "# v{} ({})\n{}",
                            h.version,
                            to_minute(h.at),
                            self.diff_to_previous(&req.path, h.version)?
                        ));
                    }
                    format!("{}\n", parts.join("\n"))
                };
                // Reading the delta is what moves the marker (a stat never does: the FUSE layer
                // snapshots on open and reads once).
                self.apply(WriteOp::Mark {
                    agent: agent.to_string(),
                    path: req.path.clone(),
                    version: n.version,
                })?;
                Ok(Output::new(
                    text.clone(),
                    json!({"from": m, "to": n.version, "text": text}),
                ))
            }
            "changes" => {
                let minutes: i64 = q.parsed("minutes")?.unwrap_or(60);
                let since = match q.get("since") {
                    Some(s) => avm_core::time::parse_time(s)?,
                    None => now_micros() - minutes.max(0) * 60_000_000,
                };
                let limit: usize = q.parsed("limit")?.unwrap_or(20).clamp(1, 10_000);
                let keep = |p: &str| req.may_read(p);
                let nodes = avm_core::storage::MemoryStore::recent(
                    self.store.as_ref(),
                    std::slice::from_ref(&req.path),
                    &req.caller,
                    &keep,
                    Some(since),
                    limit,
                )?;
                let mut text = String::new();
                let mut data = Vec::new();
                for n in &nodes {
                    let base = avm_core::address::basename(&n.path);
                    let short: String = if base.chars().count() > 25 {
                        format!("{}...", base.chars().take(22).collect::<String>())
                    } else {
                        base.to_string()
                    };
                    text.push_str(&format!(
                        "@{}  {}  {short}\n",
                        shortcut(n.id),
                        &to_minute(n.updated_at)[11..]
                    ));
                    data.push(json!({"path": n.path, "shortcut": format!("@{}", shortcut(n.id)), "updated_at": to_iso(n.updated_at), "version": n.version}));
                }
                if nodes.is_empty() {
                    text.push_str("(no changes)\n");
                }
                Ok(Output::new(text, Value::Array(data)))
            }
            "data" => {
                let n = self.node(req)?;
                let content = n.content.clone();
                Ok(Output::content(content, move || n.to_json()))
            }
            "meta" => {
                let n = self.node(req)?;
                let v = n.meta_view();
                Ok(Output::new(pretty(&v), v))
            }
            "path" => {
                self.node(req)?;
                Ok(Output::new(
                    format!("{}\n", req.path.trim_start_matches('/')),
                    json!(req.path),
                ))
            }
            "ttl" => {
                let n = self.node(req)?;
                Ok(Output::new(
                    format!("{}\n", ttl_text(n.expires_at, now_micros())),
                    json!(n.expires_at.map(to_iso)),
                ))
            }
            "tags" => match self.store.kind(&req.path)? {
                Some(NodeKind::File | NodeKind::Symlink) => {
                    let n = self.node(req)?;
                    Ok(Output::new(
                        format!("{}\n", n.tags.join(",")),
                        json!(n.tags),
                    ))
                }
                Some(NodeKind::Dir) => {
                    let keep = |p: &str| req.may_read(p);
                    let counts = self.store.tag_counts(
                        &req.path,
                        &req.caller,
                        req.policy.filters_reads().then_some(&keep as Keep<'_>),
                    )?;
                    let text: String = counts.iter().map(|(t, n)| format!("{t}\t{n}\n")).collect();
                    Ok(Output::new(
                        text,
                        json!(
                            counts
                                .iter()
                                .map(|(t, n)| json!({"tag": t, "count": n}))
                                .collect::<Vec<_>>()
                        ),
                    ))
                }
                None => Err(Error::not_found(&req.path)),
            },
            "links" => {
                self.node(req)?;
                let dir = q.get("direction").unwrap_or("both");
                if !["in", "out", "both"].contains(&dir) {
                    return Err(Error::invalid(format!(
                        "direction={dir:?} is not accepted; use in, out or both"
                    )));
                }
                let (out, inc) = self.store.links(&req.path, &req.caller)?;
                let readable = |p: &str| req.policy.may_read(&req.caller, p);
                let out: Vec<_> = out.into_iter().filter(|l| readable(&l.target)).collect();
                let inc: Vec<_> = inc.into_iter().filter(|l| readable(&l.source)).collect();
                let mut text = String::new();
                let mut data = Vec::new();
                if dir != "in" {
                    for l in &out {
                        text.push_str(&format!("--> [{}] {}\n", l.kind, l.target));
                        data.push(json!({"source": l.source, "target": l.target, "type": l.kind, "weight": l.weight}));
                    }
                }
                if dir != "out" {
                    for l in &inc {
                        text.push_str(&format!("<-- [{}] {}\n", l.kind, l.source));
                        data.push(json!({"source": l.source, "target": l.target, "type": l.kind, "weight": l.weight}));
                    }
                }
                if data.is_empty() {
                    text.push_str("(no links)\n");
                }
                Ok(Output::new(text, Value::Array(data)))
            }
            "history" => {
                let limit = q.parsed::<usize>("limit")?.unwrap_or(10).clamp(1, 100_000);
                let verbose = q.flag("verbose")?;
                let hist = self.store.history(&req.path, limit)?;
                if hist.is_empty() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{} has no history", req.path),
                    ));
                }
                let mut text = String::new();
                let mut data = Vec::new();
                for h in &hist {
                    text.push_str(&format!("v{} [{}] {}", h.version, h.kind, to_second(h.at)));
                    if let Some(a) = &h.author {
                        text.push_str(&format!(" by {a}"));
                    }
                    let note = h.note.as_deref().filter(|p| req.caller.may_see(p));
                    if let Some(n) = note {
                        text.push_str(&format!(
                            " ({} {n})",
                            if h.kind == "move-out" { "to" } else { "from" }
                        ));
                    }
                    text.push('\n');
                    let mut entry = json!({
                        "version": h.version, "kind": h.kind, "at": to_iso(h.at), "author": h.author,
                        "hash": h.hash, "size": h.size, "note": note,
                    });
                    if verbose {
                        let diff = self.diff_to_previous(&req.path, h.version)?;
                        text.push_str(&indent(&diff));
                        if let Value::Object(o) = &mut entry {
                            o.insert("diff".into(), json!(diff));
                        }
                    }
                    data.push(entry);
                }
                Ok(Output::new(text, Value::Array(data)))
            }
            "diff" => {
                let from = q
                    .parsed::<i64>("from")?
                    .ok_or_else(|| Error::invalid("diff needs from=V1 and to=V2"))?;
                let to = q
                    .parsed::<i64>("to")?
                    .ok_or_else(|| Error::invalid("diff needs from=V1 and to=V2"))?;
                let a = self.version_content(&req.path, from)?;
                let b = self.version_content(&req.path, to)?;
                let d = unified(
                    &a,
                    &b,
                    &format!("{}@v{from}", req.path),
                    &format!("{}@v{to}", req.path),
                );
                Ok(Output::new(
                    d.clone(),
                    json!({"path": req.path, "from": from, "to": to, "diff": d}),
                ))
            }
            "record" => {
                let n = self.node(req)?;
                let rec = self.record(&n, req)?;
                let v = serde_json::to_value(&rec).map_err(|e| Error::internal(e.to_string()))?;
                Ok(Output::new(format!("{v}\n"), v))
            }
            "list" => {
                let limit = q.parsed::<usize>("limit")?.unwrap_or(50).clamp(1, 100_000);
                let offset = q.parsed::<usize>("offset")?.unwrap_or(0);
                let tag = q.get("tag").map(str::to_lowercase);
                let want = if tag.is_some() {
                    None
                } else {
                    Some(offset + limit)
                };
                // Paths (and whether each is a directory), from a search or from the listing.
                let paths: Vec<(String, bool)> = match q.get("q").filter(|s| !s.trim().is_empty()) {
                    Some(text) => {
                        let keep = |p: &str| req.may_read(p);
                        self.store
                            .search_within(
                                std::slice::from_ref(&req.path),
                                &req.caller,
                                &keep,
                                text,
                                want.unwrap_or(10_000),
                                false,
                            )?
                            .into_iter()
                            .map(|h| (h.path, false))
                            .collect()
                    }
                    None => {
                        let opts = ListOptions {
                            recursive: q.flag("recursive")?,
                            limit: want,
                            offset: 0,
                        };
                        self.list(req, &opts)?
                            .entries
                            .into_iter()
                            .filter(|e| req.may_read(&e.path))
                            .map(|e| (e.path, e.kind == NodeKind::Dir))
                            .collect()
                    }
                };
                let mut text = String::new();
                let mut data = Vec::new();
                let mut seen = 0usize;
                for (path, is_dir) in paths {
                    let node = if is_dir {
                        None
                    } else {
                        self.store.peek(&path)?
                    };
                    if let Some(t) = &tag
                        && !node
                            .as_ref()
                            .is_some_and(|n| n.tags.iter().any(|x| x.to_lowercase() == *t))
                    {
                        continue;
                    }
                    seen += 1;
                    if seen <= offset {
                        continue;
                    }
                    if data.len() >= limit {
                        break;
                    }
                    let base = avm_core::address::basename(&path);
                    let name: String = if base.chars().count() > 30 {
                        format!("{}...", base.chars().take(27).collect::<String>())
                    } else {
                        base.to_string()
                    };
                    match node {
                        Some(n) => {
                            let first = n
                                .content
                                .display_text()
                                .lines()
                                .map(|l| l.trim_start_matches(['#', ' ']).trim())
                                .find(|l| !l.is_empty())
                                .unwrap_or("")
                                .to_string();
                            let first_short: String = if first.chars().count() > 40 {
                                format!("{}...", first.chars().take(40).collect::<String>())
                            } else {
                                first.to_string()
                            };
                            let sc = shortcut(n.id);
                            text.push_str(&format!("@{sc}  {name}  {first_short}\n"));
                            data.push(json!({"path": path, "shortcut": format!("@{sc}"), "kind": "file", "summary": first_short, "tags": n.tags, "version": n.version}));
                        }
                        None => {
                            text.push_str(&format!("{name}/\n"));
                            data.push(json!({"path": path, "kind": "dir"}));
                        }
                    }
                }
                if data.is_empty() {
                    text.push('\n');
                }
                Ok(Output::new(text, Value::Array(data)))
            }
            "stats" => {
                let keep = |p: &str| req.may_read(p);
                let v = self.store.stats(
                    &req.path,
                    &req.caller,
                    req.policy.filters_reads().then_some(&keep as Keep<'_>),
                )?;
                Ok(Output::new(pretty(&v), v))
            }
            "export" => {
                let limit = q
                    .parsed::<usize>("limit")?
                    .unwrap_or(1000)
                    .clamp(1, 100_000);
                let after = q.get("after");
                let nodes = self
                    .store
                    .descendants_after(&req.path, &req.caller, after, limit)?;
                let mut text = String::new();
                let mut recs = Vec::new();
                // Nodes the read rules hide are left out; paging goes by what was scanned.
                for n in nodes.iter().take(limit).filter(|n| req.may_read(&n.path)) {
                    let rec = self.record(n, req)?;
                    let v =
                        serde_json::to_value(&rec).map_err(|e| Error::internal(e.to_string()))?;
                    text.push_str(&v.to_string());
                    text.push('\n');
                    recs.push(v);
                }
                let next = (nodes.len() > limit)
                    .then(|| nodes.get(limit - 1).map(|n| n.path.clone()))
                    .flatten();
                Ok(Output::new(
                    text,
                    json!({"records": recs, "next_after": next}),
                ))
            }
            "search" => {
                let query = q
                    .get("q")
                    .ok_or_else(|| Error::invalid(format!("{}:search needs q=WORDS", req.path)))?;
                let limit = q.parsed::<usize>("limit")?.unwrap_or(10).clamp(1, 1000);
                let mode = q.get("mode").unwrap_or("fts");
                if !["fts", "semantic", "hybrid"].contains(&mode) {
                    return Err(Error::invalid(format!(
                        "mode={mode:?} is not accepted; use fts, semantic or hybrid"
                    )));
                }
                let vectors = if mode == "fts" {
                    None
                } else {
                    Some(
                        self.vectors
                            .read()
                            .ok()
                            .and_then(|g| g.clone())
                            .ok_or_else(|| {
                                Error::new(
                                    ErrorKind::Unavailable,
                                    format!("mode={mode} needs the embedding model; run `avm model install`"),
                                )
                            })?,
                    )
                };
                let keep = |p: &str| req.may_read(p);
                let wanted = if mode == "hybrid" { limit * 2 } else { limit };
                let words = || {
                    self.search(
                        req,
                        &SearchOptions {
                            query: query.to_string(),
                            limit: wanted,
                        },
                    )
                };
                let meaning = |v: &Arc<dyn VectorSearch>| {
                    v.similar(
                        query,
                        std::slice::from_ref(&req.path),
                        &req.caller,
                        &keep,
                        wanted,
                    )
                };
                // Hybrid asks both at once: the query's embedding and the full-text search
                // take about as long as each other.
                let (fts, sem) = match (&vectors, mode) {
                    (Some(v), "hybrid") => std::thread::scope(|s| {
                        let sem = s.spawn(|| meaning(v));
                        let fts = words();
                        let sem = sem
                            .join()
                            .unwrap_or_else(|_| Err(Error::internal("semantic search panicked")));
                        (fts, sem)
                    }),
                    (Some(v), _) => (Ok(Vec::new()), meaning(v)),
                    (None, _) => (words(), Ok(Vec::new())),
                };
                let (fts, sem) = (fts?, sem?);
                let hits = match vectors {
                    None => fts,
                    Some(_) => {
                        if mode == "semantic" {
                            sem.into_iter()
                                .map(|(path, score)| SearchHit {
                                    snippet: String::new(),
                                    path,
                                    score: score.clamp(0.0, 1.0),
                                })
                                .collect()
                        } else {
                            // Vectors rank everything; only real semantic matches join the
                            // fusion (cosine >= 0.2 for all-MiniLM-L6-v2).
                            let lists = [
                                fts.iter().map(|h| h.path.clone()).collect(),
                                sem.iter()
                                    .filter(|h| h.1 >= 0.2)
                                    .map(|h| h.0.clone())
                                    .collect(),
                            ];
                            // 1.0 = first in both lists.
                            let top = avm_core::storage::rrf_best(lists.len());
                            let fused = avm_core::storage::rrf(&lists);
                            fused
                                .into_iter()
                                .take(limit)
                                .map(|(path, score)| SearchHit {
                                    score: score / top,
                                    snippet: fts
                                        .iter()
                                        .find(|h| h.path == path)
                                        .map(|h| h.snippet.clone())
                                        .unwrap_or_default(),
                                    path,
                                })
                                .collect()
                        }
                    }
                };
                // Meaning-only matches have no matched words to cut a snippet around: they
                // show the start of the memory instead.
                let mut hits = hits;
                for h in hits.iter_mut().filter(|h| h.snippet.is_empty()) {
                    h.snippet = self.excerpt(&h.path)?;
                }
                let mut text = String::new();
                for h in &hits {
                    text.push_str(&format!("[{:.2}] {}\n", h.score, h.path));
                    let snip: String = h.snippet.replace('\n', " ").chars().take(160).collect();
                    if !snip.trim().is_empty() {
                        text.push_str(&format!("    {}\n", snip.trim()));
                    }
                }
                if hits.is_empty() {
                    text.push_str("(no results)\n");
                }
                Ok(Output::new(
                    text,
                    serde_json::to_value(&hits).map_err(|e| Error::internal(e.to_string()))?,
                ))
            }
            other => Err(Error::unsupported(&format!(":{other}"), &req.path)),
        }
    }

    /// The opening words of the memory at `path` (past `remember`'s heading and header lines),
    /// for a hit that has no snippet of its own.
    fn excerpt(&self, path: &str) -> Result<String> {
        let Some(n) = self.store.get(path)? else {
            return Ok(String::new());
        };
        let Some(text) = n.content.text() else {
            return Ok(String::new());
        };
        Ok(avm_core::storage::excerpt(text, 160))
    }

    /// The content of one version as diffs see it: text as it is, binary content as a note
    /// naming its size and hash (binary versions are told apart, never diffed line by line).
    fn version_content(&self, path: &str, v: i64) -> Result<String> {
        self.store
            .version(path, v)?
            .map(|(info, c)| match c {
                Content::Text(t) => t,
                Content::Bytes(b) => {
                    format!("[binary content: {} bytes, hash {}]\n", b.len(), info.hash)
                }
            })
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{path} has no version {v}")))
    }

    fn diff_to_previous(&self, path: &str, v: i64) -> Result<String> {
        let cur = self.version_content(path, v)?;
        let prev = if v > 1 {
            self.version_content(path, v - 1)?
        } else {
            String::new()
        };
        Ok(unified(
            &prev,
            &cur,
            &format!("v{}", v - 1),
            &format!("v{v}"),
        ))
    }

    /// The export record of `n` as the caller may see it: links to nodes it may not see or
    /// read, and notes naming such paths, are left out.
    fn record(&self, n: &Node, req: &Request) -> Result<Record> {
        let caller = &req.caller;
        let readable = |p: &str| caller.may_see(p) && req.policy.may_read(caller, p);
        let versions = self
            .store
            .all_versions(&n.path)?
            .into_iter()
            .map(|(mut v, c)| {
                if v.note.as_deref().is_some_and(|p| !readable(p)) {
                    v.note = None;
                }
                (v, c)
            })
            .collect();
        let links = self
            .store
            .links(&n.path, caller)?
            .0
            .into_iter()
            .filter(|l| readable(&l.target))
            .collect();
        Ok(Record::build(n, versions, links))
    }

    fn write_suffix(&self, req: &Request, suffix: &str, input: WriteInput) -> Result<Output> {
        let text = match input {
            WriteInput::Text(t) => t,
            WriteInput::Put(p) if suffix == "meta" && p.content.is_some() => {
                return Err(Error::invalid(format!(
                    "{}:meta takes metadata only; write content to {} itself",
                    req.path, req.path
                )));
            }
            WriteInput::Put(p) if suffix == "meta" => {
                let out = self.apply(WriteOp::Put {
                    path: req.path.clone(),
                    put: Put { content: None, ..p },
                    agent: req.caller.agent().map(str::to_string),
                    admin: is_admin(req),
                })?;
                return Self::saved(out, &req.path);
            }
            // Plain text content and nothing else (`avm write a.md:tags -c x`) is the body.
            WriteInput::Put(Put {
                content: Some(Content::Text(t)),
                meta: None,
                tags: None,
                importance: None,
                expires_at: None,
                append: false,
                create_only: false,
                ..
            }) => t,
            _ => {
                return Err(Error::invalid(format!(
                    "{}:{suffix} takes a text body (and no other flags)",
                    req.path
                )));
            }
        };
        let agent = req.caller.agent().map(str::to_string);
        let put = match suffix {
            "meta" => {
                let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
                    Error::invalid(format!("{}:meta takes a JSON object: {e}", req.path))
                })?;
                let Value::Object(m) = v else {
                    return Err(Error::invalid(format!(
                        "{}:meta takes a JSON object such as {{\"k\": 1}}",
                        req.path
                    )));
                };
                Put {
                    meta: Some(m),
                    ..Put::default()
                }
            }
            "tags" => Put {
                tags: Some(
                    text.split([',', '\n'])
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                ..Put::default()
            },
            "ttl" => {
                let t = text.trim();
                let exp = if t.is_empty() || t == "never" {
                    None
                } else {
                    let d = if t.chars().all(|c| c.is_ascii_digit()) {
                        parse_duration(&format!("{t}m"))?
                    } else {
                        parse_duration(t)?
                    };
                    Some(
                        now_micros()
                            .saturating_add(Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)),
                    )
                };
                Put {
                    expires_at: Some(exp),
                    ..Put::default()
                }
            }
            "links" => return self.write_links(req, &text),
            "shared" => {
                let t = text.trim();
                let list: Vec<Value> = if t.is_empty() || t == "all" {
                    Vec::new()
                } else {
                    t.split([',', '\n'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect()
                };
                let n = self.node(req)?;
                if let (Some(a), Some(author)) = (req.caller.agent(), n.author.as_deref())
                    && a != author
                {
                    return Err(Error::denied(format!(
                        "only {author}, who created {}, may change who it is shared with",
                        req.path
                    )));
                }
                let mut m = serde_json::Map::new();
                m.insert(
                    "shared_with".into(),
                    if list.is_empty() {
                        Value::Null
                    } else {
                        Value::Array(list)
                    },
                );
                Put {
                    meta: Some(m),
                    ..Put::default()
                }
            }
            "compact" => return self.compact(req, &text),
            "mark" => {
                let n = self.node(req)?;
                let agent = req.caller.agent().ok_or_else(|| {
                    Error::denied(format!("{}:mark needs an agent (--agent NAME)", req.path))
                })?;
                self.apply(WriteOp::Mark {
                    agent: agent.to_string(),
                    path: req.path.clone(),
                    version: n.version,
                })?;
                return Ok(Output::new(
                    format!("marked: v{}, current: v{}\n", n.version, n.version),
                    json!({"marked": n.version, "current": n.version}),
                ));
            }
            other => {
                return Err(Error::new(
                    ErrorKind::ReadOnly,
                    format!("{}:{other} cannot be written", req.path),
                ));
            }
        };
        let out = self.apply(WriteOp::Put {
            path: req.path.clone(),
            put,
            agent,
            admin: is_admin(req),
        })?;
        Self::saved(out, &req.path)
    }

    /// `:compact`: keep the newest N versions of the history (body: N, default 3).
    fn compact(&self, req: &Request, text: &str) -> Result<Output> {
        let t = text.trim();
        let keep: usize = if t.is_empty() {
            3
        } else {
            t.parse().map_err(|_| {
                Error::invalid(format!(
                    "{}:compact takes the number of versions to keep (1 or more), not {t:?}",
                    req.path
                ))
            })?
        };
        let before = self.store.history(&req.path, usize::MAX)?;
        let out = self.apply(WriteOp::Compact {
            path: req.path.clone(),
            keep,
        })?;
        let freed: u64 = before
            .iter()
            .skip(keep)
            .map(|v| u64::try_from(v.size).unwrap_or(0))
            .sum();
        let kept = before.len() - out.count;
        Ok(Output::new(
            format!(
                "compacted {}: removed {} old version{}, kept {kept}, freed {freed} bytes\n",
                req.path,
                out.count,
                if out.count == 1 { "" } else { "s" }
            ),
            json!({"path": req.path, "removed": out.count, "kept": kept, "freed_bytes": freed}),
        ))
    }

    fn write_links(&self, req: &Request, text: &str) -> Result<Output> {
        let op = req.query.get("op").unwrap_or("add");
        if !["add", "remove"].contains(&op) {
            return Err(Error::invalid(format!(
                "op={op:?} is not accepted for :links; use add or remove"
            )));
        }
        // One link can come in the query (paths with spaces travel safely there), or many as
        // body lines `TARGET [TYPE] [WEIGHT]` (what a shell writes through a file).
        let mut specs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        if let Some(t) = req.query.get("target") {
            specs.push((
                t.to_string(),
                req.query.get("type").map(str::to_string),
                req.query.get("weight").map(str::to_string),
            ));
        }
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.split_whitespace();
            specs.push((
                parts.next().unwrap_or_default().to_string(),
                parts.next().map(str::to_string),
                parts.next().map(str::to_string),
            ));
        }
        let mut ops = Vec::new();
        for (target, kind, weight) in specs {
            let target = avm_core::host::expand_private(&req.caller, &normalize_path(&target)?)?;
            if !req.caller.may_see(&target) {
                return Err(Error::denied(format!(
                    "cannot link to {target}: it is in another agent's private namespace (rule: private namespaces belong to their agent)"
                )));
            }
            let hidden = op == "add"
                && (!req.policy.may_read(&req.caller, &target)
                    || self
                        .store
                        .get(&target)?
                        .is_some_and(|n| !n.visible_to(&req.caller)));
            if hidden {
                return Err(Error::denied(format!(
                    "cannot link to {target}: the caller may not read it"
                )));
            }
            let weight = match weight {
                Some(w) => w
                    .parse::<f64>()
                    .map_err(|_| Error::invalid(format!("link weight {w:?} is not a number")))?,
                None => 1.0,
            };
            ops.push(if op == "add" {
                WriteOp::Link {
                    source: req.path.clone(),
                    target,
                    kind: kind.unwrap_or_else(|| "related".into()),
                    weight,
                }
            } else {
                WriteOp::Unlink {
                    source: req.path.clone(),
                    target,
                    kind,
                }
            });
        }
        if ops.is_empty() {
            return Err(Error::invalid(
                "no links given; write lines of `TARGET [TYPE] [WEIGHT]`",
            ));
        }
        let n = ops.len();
        let results = self.store.apply_many(ops);
        let mut count = 0;
        for r in results {
            count += r?.count;
        }
        Ok(Output::new(
            format!(
                "{} {count} link(s) of {}",
                if op == "add" { "Added" } else { "Removed" },
                req.path
            ),
            json!({"path": req.path, "op": op, "lines": n, "count": count}),
        ))
    }

    fn to_op(&self, req: &Request, input: WriteInput) -> Result<WriteOp> {
        let agent = req.caller.agent().map(str::to_string);
        Ok(match input {
            WriteInput::Put(put) => WriteOp::Put {
                path: req.path.clone(),
                put,
                agent,
                admin: is_admin(req),
            },
            WriteInput::Text(t) => WriteOp::Put {
                path: req.path.clone(),
                put: Put {
                    content: Some(t.into()),
                    ..Put::default()
                },
                agent,
                admin: false,
            },
            WriteInput::Record(v) => {
                let mut record = Record::from_value(v)?;
                if let Some(agent) = req.caller.agent() {
                    // Agents import as themselves and only link where they can see.
                    match record.author.as_deref() {
                        None => record.author = Some(agent.to_string()),
                        Some(a) if a == agent => {}
                        Some(a) => {
                            return Err(Error::denied(format!(
                                "agent {agent} cannot import {} authored by {a}; import as the operator",
                                record.path
                            )));
                        }
                    }
                    if let Some(l) = record.links.iter().find(|l| !req.caller.may_see(&l.target)) {
                        return Err(Error::denied(format!(
                            "cannot import a link to {}: another agent's private namespace",
                            l.target
                        )));
                    }
                }
                if record.path != req.path {
                    return Err(Error::invalid(format!(
                        "record path {} does not match {}",
                        record.path, req.path
                    )));
                }
                WriteOp::Import {
                    record: Box::new(record),
                    force: req.query.flag("force")?,
                }
            }
        })
    }
}

fn pretty(v: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// A unified diff with `---`/`+++` headers.
pub fn unified(a: &str, b: &str, from: &str, to: &str) -> String {
    TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(from, to)
        .to_string()
}

/// `path\tv<version>\t<bytes>B\t<YYYY-MM-DD HH:MM>` (directories end in `/`, links show
/// `link`).
pub fn list_line(e: &Entry) -> String {
    match e.kind {
        NodeKind::Dir => format!("{}/\tdir\n", e.path),
        NodeKind::Symlink => format!(
            "{}\tlink\tv{}\t{}\n",
            e.path,
            e.version.unwrap_or(0),
            e.updated_at.map(to_minute).unwrap_or_default()
        ),
        NodeKind::File => format!(
            "{}\tv{}\t{}B\t{}\n",
            e.path,
            e.version.unwrap_or(0),
            e.size,
            e.updated_at.map(to_minute).unwrap_or_default()
        ),
    }
}

/// `never`, `expired`, `<m>m`, `<h>h <m>m` or `<d>d <h>h`.
pub fn ttl_text(expires: Option<Micros>, now: Micros) -> String {
    let Some(t) = expires else {
        return "never".into();
    };
    if t <= now {
        return "expired".into();
    }
    let mins = (t - now) / 60_000_000;
    if mins < 60 {
        format!("{mins}m")
    } else if mins < 24 * 60 {
        format!("{}h {}m", mins / 60, mins % 60)
    } else {
        format!("{}d {}h", mins / 1440, (mins % 1440) / 60)
    }
}

/// The namespace directories that exist before anything is written in them: `/memory`, its
/// `private` and `shared` roots, and the caller's own private namespace (so an agent can write
/// `/memory/private/<self>/note.md` through a fresh mount without making directories first).
pub fn always_dir(path: &str, caller: &avm_core::Caller) -> bool {
    matches!(path, "/memory" | "/memory/private" | "/memory/shared")
        || caller.private_root().as_deref() == Some(path)
}

pub use avm_core::storage::{shortcut, shortcut_id};

impl Provider for MemoryProvider {
    fn info(&self) -> ProviderInfo {
        use SuffixOn::{Any, Dir, File};
        ProviderInfo {
            kind: "memory".into(),
            description: "the embedded SQLite memory store".into(),
            ops: Ops {
                read: true,
                list: true,
                write: true,
                remove: true,
                rename: true,
                search: true,
            },
            suffixes: vec![
                SuffixSpec::new("data", File, true, false, &[], "raw content"),
                SuffixSpec::new(
                    "meta",
                    File,
                    true,
                    true,
                    &[],
                    "metadata as JSON; write a JSON object to merge keys (null removes)",
                ),
                SuffixSpec::new(
                    "tags",
                    Any,
                    true,
                    true,
                    &[],
                    "tags (comma-separated; write to replace); on a directory: tag counts",
                ),
                SuffixSpec::new(
                    "links",
                    File,
                    true,
                    true,
                    &["direction", "op", "target", "type", "weight"],
                    "typed links; write lines `TARGET [TYPE] [WEIGHT]` (op=remove to unlink)",
                ),
                SuffixSpec::new(
                    "history",
                    File,
                    true,
                    false,
                    &["limit", "verbose"],
                    "version history, newest first",
                ),
                SuffixSpec::new(
                    "diff",
                    File,
                    true,
                    false,
                    &["from", "to"],
                    "unified diff between two versions",
                ),
                SuffixSpec::new(
                    "ttl",
                    File,
                    true,
                    true,
                    &[],
                    "time to live; write 15m, 2h, 7d or never",
                ),
                SuffixSpec::new(
                    "compact",
                    File,
                    false,
                    true,
                    &[],
                    "write N to keep only the newest N versions of the history (default 3)",
                ),
                SuffixSpec::new("path", File, true, false, &[], "the node's path"),
                SuffixSpec::new(
                    "shared",
                    File,
                    true,
                    true,
                    &[],
                    "who a shared memory is shared with (all, or agent ids; write to change)",
                ),
                SuffixSpec::new(
                    "delta",
                    File,
                    true,
                    false,
                    &[],
                    "what changed since your last :delta or :mark (moves your marker)",
                ),
                SuffixSpec::new(
                    "mark",
                    File,
                    true,
                    true,
                    &[],
                    "your read marker; write anything to mark the current version read",
                ),
                SuffixSpec::new(
                    "changes",
                    Dir,
                    true,
                    false,
                    &["since", "minutes", "limit"],
                    "nodes changed below this directory, newest first",
                ),
                SuffixSpec::new(
                    "record",
                    File,
                    true,
                    false,
                    &[],
                    "the lossless export record",
                ),
                SuffixSpec::new(
                    "list",
                    Dir,
                    true,
                    false,
                    &["limit", "offset", "recursive", "q", "tag"],
                    "@shortcut, name and first line per entry; q= searches, tag= filters",
                ),
                SuffixSpec::new(
                    "stats",
                    Dir,
                    true,
                    false,
                    &[],
                    "counts and sizes below this directory",
                ),
                SuffixSpec::new(
                    "export",
                    Dir,
                    true,
                    false,
                    &["after", "limit"],
                    "JSONL export records below this directory",
                ),
                SuffixSpec::new(
                    "search",
                    Dir,
                    true,
                    false,
                    &["q", "limit", "mode"],
                    "search below this directory; mode=fts (default), semantic or hybrid",
                ),
            ],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.read_suffix(req, s);
        }
        req.query
            .check_keys(&["version", "as_of"], &req.describe("read"))?;
        if !req.query.is_empty() {
            return self.read_versioned(req);
        }
        let n = self.node(req)?;
        let content = n.content.clone();
        Ok(Output::content(content, move || n.to_json()))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        if let Some(n) = self.store.peek(&req.path)? {
            check_sees(&req.caller, &n)?;
            return Ok(node_stat(&n));
        }
        self.dir_stat(req)
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if self.store.peek(&req.path)?.is_some() {
            if opts.recursive {
                let n = self.store.peek(&req.path)?;
                let entries = n.iter().map(|n| entry(n)).collect();
                return Ok(Listing {
                    entries,
                    more: false,
                });
            }
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a file, not a directory", req.path),
            ));
        }
        let mut entries: Vec<Entry> = if opts.recursive {
            self.store
                .descendants(&req.path, &req.caller, opts.offset, opts.limit)?
                .iter()
                .map(|n| entry(n))
                .collect()
        } else {
            self.store
                .children(&req.path, &req.caller, opts.offset, opts.limit)?
                .into_iter()
                .skip(opts.offset)
                .map(|c| Entry {
                    path: c.path,
                    kind: c.kind,
                    size: c.size,
                    version: c.version,
                    updated_at: c.updated_at,
                })
                .collect()
        };
        if !opts.recursive && opts.offset == 0 {
            let own = req.caller.private_root();
            let extra: Vec<&str> = match req.path.as_str() {
                "/" => vec!["/memory"],
                "/memory" => vec!["/memory/private", "/memory/shared"],
                "/memory/private" => own.as_deref().into_iter().collect(),
                _ => vec![],
            };
            for p in extra {
                if !entries.iter().any(|e| e.path == p) {
                    entries.push(Entry {
                        path: p.to_string(),
                        kind: NodeKind::Dir,
                        size: 0,
                        version: None,
                        updated_at: None,
                    });
                }
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
        }
        if entries.is_empty()
            && opts.offset == 0
            && req.path != "/"
            && !always_dir(&req.path, &req.caller)
            && !self.store.has_children(&req.path)?
        {
            return Err(Error::not_found(&req.path));
        }
        let more = opts.limit.is_some_and(|l| entries.len() > l);
        if let Some(l) = opts.limit {
            entries.truncate(l);
        }
        Ok(Listing { entries, more })
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.write_suffix(req, s, input);
        }
        req.query.check_keys(&["force"], &req.describe("write"))?;
        let op = self.to_op(req, input)?;
        let out = self.apply(op)?;
        Self::saved(out, &req.path)
    }

    fn write_many(&self, reqs: Vec<(Request, WriteInput)>) -> Vec<Result<Output>> {
        let mut results: Vec<Option<Result<Output>>> = Vec::new();
        let mut ops = Vec::new();
        let mut idx = Vec::new();
        for (i, (req, input)) in reqs.iter().cloned().enumerate() {
            results.push(None);
            if req.suffix.is_some() {
                results[i] = Some(self.write(&req, input));
                continue;
            }
            match self.to_op(&req, input) {
                Ok(op) => {
                    ops.push(op);
                    idx.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (i, r) in idx.into_iter().zip(self.store.apply_many(ops)) {
            let path = reqs[i].0.path.clone();
            results[i] = Some(r.and_then(|o| Self::saved(o, &path)));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("lost a write result"))))
            .collect()
    }

    fn remove(&self, req: &Request, opts: RemoveOptions) -> Result<Output> {
        let out = self.apply(WriteOp::Remove {
            path: req.path.clone(),
            recursive: opts.recursive,
            hard: opts.hard,
            caller: req.caller.clone(),
            policy: req.policy.clone(),
        })?;
        // The reference's exact line for one node; a count when a subtree went.
        let text = if out.count > 1 {
            format!("Deleted: {} ({} nodes)", req.path, out.count)
        } else {
            format!("Deleted: {}", req.path)
        };
        Ok(Output::new(
            text,
            json!({"path": req.path, "count": out.count, "trashed": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn rename_posix(&self, src: &Request, dst: &str, how: avm_core::Rename) -> Result<Output> {
        let out = self.apply(WriteOp::PosixRename {
            src: src.path.clone(),
            dst: dst.to_string(),
            how,
            caller: src.caller.clone(),
            policy: src.policy.clone(),
        })?;
        Ok(Output::new(
            format!("Renamed: {} → {dst}", src.path),
            json!({"from": src.path, "to": dst, "count": out.count, "moves": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn set_attrs(&self, req: &Request, set: &avm_core::SetAttrs) -> Result<Stat> {
        let out = self.apply(WriteOp::SetAttrs {
            path: req.path.clone(),
            set: *set,
            caller: req.caller.clone(),
        })?;
        match out.node {
            Some(n) => Ok(node_stat(&n)),
            None => self.dir_stat(req),
        }
    }

    fn symlink(&self, req: &Request, target: &str, attrs: &avm_core::SetAttrs) -> Result<Stat> {
        self.apply(WriteOp::Symlink {
            path: req.path.clone(),
            target: target.to_string(),
            attrs: *attrs,
            agent: req.caller.agent().map(str::to_string),
        })?;
        self.stat(req)
    }

    fn capacity(&self) -> Result<Option<avm_core::Capacity>> {
        self.store.capacity().map(Some)
    }

    fn rename(&self, src: &Request, dst: &str, force: bool) -> Result<Output> {
        let out = self.apply(WriteOp::Rename {
            src: src.path.clone(),
            dst: dst.to_string(),
            force,
            caller: src.caller.clone(),
            policy: src.policy.clone(),
        })?;
        // A single file shows where it landed (mv into a directory keeps its name).
        let to = match out.moves.first() {
            Some((from, to)) if out.moves.len() == 1 && *from == src.path => to.clone(),
            _ => dst.to_string(),
        };
        Ok(Output::new(
            format!("Moved {} node(s): {} → {to}", out.count, src.path),
            json!({"from": src.path, "to": dst, "count": out.count, "moves": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn mkdir(&self, req: &Request) -> Result<Output> {
        self.apply(WriteOp::Mkdir {
            path: req.path.clone(),
        })?;
        Ok(Output::new(
            format!("Created: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }

    fn rmdir(&self, req: &Request) -> Result<Output> {
        self.apply(WriteOp::Rmdir {
            path: req.path.clone(),
        })?;
        Ok(Output::new(
            format!("Removed: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }

    fn usage(&self, req: &Request) -> Result<Option<avm_core::provider::Usage>> {
        let (nodes, bytes) = self.store.usage(&req.path)?;
        Ok(Some(avm_core::provider::Usage { nodes, bytes }))
    }

    /// Full-text hits scored 0..1: bm25 relative to the best hit (which scores 1), so that
    /// every mode and front end shows one scale (semantic: cosine; hybrid: fused rank).
    fn search(&self, req: &Request, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let keep = |p: &str| req.policy.may_read(&req.caller, p);
        let mut hits: Vec<SearchHit> = self
            .store
            .search_within(
                std::slice::from_ref(&req.path),
                &req.caller,
                &keep,
                &opts.query,
                opts.limit,
                true,
            )?
            .into_iter()
            .map(|h| SearchHit {
                path: h.path,
                score: h.score,
                snippet: h.snippet,
            })
            .collect();
        let best = hits.iter().map(|h| h.score).fold(0.0_f64, f64::max);
        for h in &mut hits {
            h.score = if best > 0.0 { h.score / best } else { 0.0 };
        }
        Ok(hits)
    }
}

/// Is the caller an agent with the `admin` role?
fn is_admin(req: &Request) -> bool {
    req.caller
        .agent()
        .is_some_and(|a| req.policy.role(a) == avm_core::policy::Role::Admin)
}

/// Refuses a node the caller may not see (a node shared with named agents only), by the one
/// visibility rule ([`avm_core::provider::visible_to`]).
pub(crate) fn check_sees(caller: &avm_core::Caller, n: &Node) -> Result<()> {
    if n.visible_to(caller) {
        return Ok(());
    }
    Err(Error::denied(format!(
        "{} is shared with named agents only, and {} is not one of them nor its author (rule: :shared)",
        n.path,
        caller.agent().unwrap_or("operator")
    )))
}

/// The attributes of a node.
fn node_stat(n: &Node) -> Stat {
    Stat {
        kind: n.kind,
        size: n.content.len() as u64,
        version: Some(n.version),
        created_at: Some(n.created_at),
        updated_at: Some(n.updated_at),
        accessed_at: n.accessed_at,
        attrs: avm_core::Attrs {
            mtime: Some(n.mtime()),
            ctime: Some(n.attrs.ctime.unwrap_or_else(|| n.mtime())),
            ..n.attrs
        },
    }
}

impl MemoryProvider {
    /// The attributes of the directory `req.path`, with its link count: 2 plus the
    /// subdirectories the caller sees; `NotFound` when there is no such directory.
    fn dir_stat(&self, req: &Request) -> Result<Stat> {
        let path = req.path.as_str();
        let (mut attrs, mut subdirs) = match self.store.dir_info(path, &req.caller)? {
            Some(info) => info,
            None if always_dir(path, &req.caller) => (avm_core::Attrs::default(), 0),
            None => return Err(Error::not_found(path)),
        };
        // The namespace roots are listed before anything is written in them.
        let always: &[&str] = match path {
            "/" => &["/memory"],
            "/memory" => &["/memory/private", "/memory/shared"],
            _ => &[],
        };
        for p in always {
            if !self.store.has_children(p)? {
                subdirs += 1;
            }
        }
        if path == "/memory/private"
            && let Some(own) = req.caller.private_root()
            && !self.store.has_children(&own)?
        {
            subdirs += 1;
        }
        attrs.nlink = Some(u32::try_from(2 + subdirs).unwrap_or(u32::MAX));
        Ok(Stat {
            kind: NodeKind::Dir,
            size: 0,
            version: None,
            created_at: None,
            updated_at: attrs.mtime.map(|t| t / 1000),
            accessed_at: None,
            attrs,
        })
    }
}

fn entry(n: &Node) -> Entry {
    Entry {
        path: n.path.clone(),
        kind: n.kind,
        size: n.content.len() as u64,
        version: Some(n.version),
        updated_at: Some(n.updated_at),
    }
}
