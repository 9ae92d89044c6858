//! Reading the memory provider's suffixes: one handler per row of the suffix table.

use std::sync::Arc;

use serde_json::{Value, json};

use avm_core::storage::{Keep, VectorSearch, shortcut};
use avm_core::time::{now_micros, to_iso, to_minute, to_second};
use avm_core::{
    Content, Error, ErrorKind, ListOptions, NodeKind, Output, Provider, Request, Result, SearchHit,
    SearchOptions,
};

use crate::node::Node;
use crate::ops::WriteOp;
use crate::provider::{MemoryProvider, indent, pretty, ttl_text, unified};
use crate::record::Record;

impl MemoryProvider {
    fn marker(&self, agent: &str, path: &str) -> Result<i64> {
        self.store.mark_of(agent, path)
    }

    /// `:shared` read.
    pub(super) fn read_shared(&self, req: &Request) -> Result<Output> {
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

    /// `:mark` read.
    pub(super) fn read_mark(&self, req: &Request) -> Result<Output> {
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

    /// `:delta` read.
    pub(super) fn read_delta(&self, req: &Request) -> Result<Output> {
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

    /// `:changes` read.
    pub(super) fn read_changes(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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

    /// `:data` read.
    pub(super) fn read_data(&self, req: &Request) -> Result<Output> {
        let n = self.node(req)?;
        let content = n.content.clone();
        Ok(Output::content(content, move || n.to_json()))
    }

    /// `:meta` read.
    pub(super) fn read_meta(&self, req: &Request) -> Result<Output> {
        let n = self.node(req)?;
        let v = n.meta_view();
        Ok(Output::new(pretty(&v), v))
    }

    /// `:path` read.
    pub(super) fn read_path(&self, req: &Request) -> Result<Output> {
        self.node(req)?;
        Ok(Output::new(
            format!("{}\n", req.path.trim_start_matches('/')),
            json!(req.path),
        ))
    }

    /// `:ttl` read.
    pub(super) fn read_ttl(&self, req: &Request) -> Result<Output> {
        let n = self.node(req)?;
        Ok(Output::new(
            format!("{}\n", ttl_text(n.expires_at, now_micros())),
            json!(n.expires_at.map(to_iso)),
        ))
    }

    /// `:tags` read.
    pub(super) fn read_tags(&self, req: &Request) -> Result<Output> {
        match self.store.kind(&req.path)? {
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
        }
    }

    /// `:links` read.
    pub(super) fn read_links(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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

    /// `:history` read.
    pub(super) fn read_history(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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

    /// `:diff` read.
    pub(super) fn read_diff(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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

    /// `:record` read.
    pub(super) fn read_record(&self, req: &Request) -> Result<Output> {
        let n = self.node(req)?;
        let rec = self.record(&n, req)?;
        let v = serde_json::to_value(&rec).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Output::new(format!("{v}\n"), v))
    }

    /// `:list` read.
    pub(super) fn read_list(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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

    /// `:stats` read.
    pub(super) fn read_stats(&self, req: &Request) -> Result<Output> {
        let keep = |p: &str| req.may_read(p);
        let v = self.store.stats(
            &req.path,
            &req.caller,
            req.policy.filters_reads().then_some(&keep as Keep<'_>),
        )?;
        Ok(Output::new(pretty(&v), v))
    }

    /// `:export` read.
    pub(super) fn read_export(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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
            let v = serde_json::to_value(&rec).map_err(|e| Error::internal(e.to_string()))?;
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

    /// `:search` read.
    pub(super) fn read_search(&self, req: &Request) -> Result<Output> {
        let q = &req.query;
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
                            format!(
                                "mode={mode} needs the embedding model; run `avm model install`"
                            ),
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
}
