//! Navigation: two-phase retrieval (browse, then fetch), the directory tree, the timeline, the
//! link graph, and token savings.

use std::collections::{BTreeSet, VecDeque};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use avm_core::address::basename;
use avm_core::storage::{Keep, MemoryStore, Node};
use avm_core::time::{Micros, now_micros};
use avm_core::{Caller, Error, ErrorKind, Host, Output, Result};

use crate::engine::{Engine, Strategy};
use crate::summary;

/// Phase one of two-phase retrieval: paths and one-line summaries, no content.
pub fn browse_query(
    engine: &Engine,
    caller: &Caller,
    keep: Keep<'_>,
    query: &str,
    scopes: &[String],
    limit: usize,
    width: usize,
) -> Result<Output> {
    let ranked = engine.rank(
        query,
        scopes,
        caller,
        keep,
        Strategy::Balanced,
        engine.tuning.min_relevance,
        limit,
    )?;
    let terms = summary::terms(query);
    let mut text = if ranked.is_empty() {
        format!("No memories found for: {query}\n")
    } else {
        format!(
            "Found {} memories for \"{query}\" (fetch the ones you need: avm fetch PATH…)\n\n",
            ranked.len()
        )
    };
    let mut items = Vec::new();
    for s in &ranked {
        let line = summary::one_line(s.node.text(), &s.node.title(), &terms, width);
        text.push_str(&format!("[{:.2}] {}\n    {line}\n", s.score, s.path));
        if !s.node.tags.is_empty() {
            text.push_str(&format!("    Tags: {}\n", s.node.tags.join(", ")));
        }
        text.push('\n');
        items.push(json!({
            "path": s.path,
            "score": s.score,
            "summary": line,
            "tags": s.node.tags,
            "sources": s.sources,
        }));
    }
    Ok(Output::new(text, json!({"query": query, "items": items})))
}

/// The path of the node whose handle is `h` (without its `@`); `None` when `h` is no handle
/// or names no node. Nothing is checked against a caller here.
fn handle_path(store: &dyn MemoryStore, h: &str) -> Result<Option<String>> {
    Ok(match avm_core::storage::shortcut_id(h) {
        Some(id) => store.path_of_id(id)?,
        None => None,
    })
}

/// The path of the memory with the `@id` handle `handle` (with or without its `@`), when
/// `caller` may read it: a handle to a memory the caller may not read is as missing as a wrong
/// one (`NotFound` either way, so handles reveal nothing).
pub fn path_of_handle(
    host: &Host,
    store: &dyn MemoryStore,
    caller: &Caller,
    handle: &str,
) -> Result<String> {
    let h = handle.strip_prefix('@').unwrap_or(handle);
    let missing = || {
        Error::new(
            ErrorKind::NotFound,
            format!("no memory has the handle @{h}"),
        )
    };
    let path = handle_path(store, h)?.ok_or_else(missing)?;
    match host.stat(caller, &path) {
        Ok(_) => Ok(path),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
            Err(missing())
        }
        Err(e) => Err(e),
    }
}

/// Phase two: the full content of chosen paths, each read through the host (so every path is
/// checked against the caller's rights); missing or refused paths are listed, not fatal.
///
/// A path may be an `@id` handle (as recall shows them): it stands for the node with that id,
/// read through the host like any path, so a handle to a memory the caller may not read is
/// as missing as a wrong path.
pub fn fetch(
    host: &Host,
    store: &dyn MemoryStore,
    caller: &Caller,
    paths: &[String],
) -> Result<Output> {
    if paths.is_empty() {
        return Err(Error::invalid("fetch needs at least one path"));
    }
    let mut blocks = Vec::new();
    let mut items = Vec::new();
    let mut missing = Vec::new();
    for p in paths {
        let handle = p
            .strip_prefix('@')
            .filter(|h| avm_core::storage::shortcut_id(h).is_some());
        let resolved = match handle {
            Some(h) => match handle_path(store, h)? {
                Some(path) => path,
                None => {
                    missing.push(p.clone());
                    items.push(json!({"path": p, "error": {"kind": "not-found", "message": format!("no memory has the handle {p}")}}));
                    continue;
                }
            },
            None => p.clone(),
        };
        match host.read(caller, &resolved) {
            Ok(out) => {
                blocks.push(format!("## {resolved}\n\n{}", out.text.trim_end()));
                items.push(json!({"path": resolved, "content": out.text}));
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
                missing.push(p.clone());
                items.push(json!({"path": p, "error": {"kind": e.kind().as_str(), "message": e.message()}}));
            }
            Err(e) => return Err(e),
        }
    }
    let mut text = blocks.join("\n\n---\n\n");
    if !missing.is_empty() {
        text.push_str(&format!("\n\n*Not found: {}*", missing.join(", ")));
    }
    text.push('\n');
    if blocks.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "none of the paths exist or are readable: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(Output::new(text, json!({"items": items})))
}

/// The directory tree below `dir`, `depth` levels deep, with visible-node counts.
pub fn tree(
    store: &dyn MemoryStore,
    caller: &Caller,
    keep: Keep<'_>,
    dir: &str,
    depth: usize,
) -> Result<Output> {
    if depth == 0 || depth > 16 {
        return Err(Error::invalid(format!(
            "depth {depth} is not accepted; use 1 to 16"
        )));
    }
    let mut text = format!("{dir}\n");
    let mut data = Vec::new();
    walk(store, caller, keep, dir, 1, depth, &mut text, &mut data)?;
    if data.is_empty() {
        if store.node(dir)?.is_some() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{dir} is a file; browse a directory, or fetch the file"),
            ));
        }
        text.push_str("  (empty)\n");
    }
    Ok(Output::new(text, json!({"path": dir, "entries": data})))
}

#[allow(clippy::too_many_arguments)]
fn walk(
    store: &dyn MemoryStore,
    caller: &Caller,
    keep: Keep<'_>,
    dir: &str,
    level: usize,
    depth: usize,
    text: &mut String,
    data: &mut Vec<Value>,
) -> Result<()> {
    for (path, is_dir, count) in store.children_counted(dir, caller, keep)? {
        let indent = "  ".repeat(level);
        if is_dir {
            text.push_str(&format!("{indent}📁 {}/ ({count})\n", basename(&path)));
        } else {
            text.push_str(&format!("{indent}📄 {}\n", basename(&path)));
        }
        data.push(json!({"path": path, "dir": is_dir, "nodes": count, "depth": level}));
        if is_dir && level < depth {
            walk(store, caller, keep, &path, level + 1, depth, text, data)?;
        }
    }
    Ok(())
}

/// Memories of the last `days` days, newest first, grouped by day. A memory's time is when
/// what it tells happened (`meta.at`, `remember --at`) or else its last change: a memory
/// written today about last year is not in this week's timeline, and sits at its own date.
pub fn timeline(
    store: &dyn MemoryStore,
    caller: &Caller,
    keep: Keep<'_>,
    scopes: &[String],
    days: u32,
    limit: usize,
) -> Result<Output> {
    if days == 0 {
        return Err(Error::invalid("days must be at least 1"));
    }
    let now = now_micros();
    let since = now - i64::from(days) * 86_400_000_000;
    // Changed in the period, newest change first (a memory's `at` is no later than its
    // writing, in practice); some are about earlier times, so fetch more than `limit` until
    // what was not fetched (changed before the oldest fetched) cannot be newer than the last
    // kept.
    let mut fetch = limit.saturating_mul(4).max(1);
    let nodes = loop {
        let got = store.recent(scopes, caller, keep, Some(since), fetch)?;
        let full = got.len() >= fetch;
        let oldest_change = got.last().map(|n| n.updated_at);
        let mut kept: Vec<(Micros, Node)> = got
            .into_iter()
            .map(|n| (crate::engine::at(&n).unwrap_or(n.updated_at), n))
            .filter(|(when, _)| (since..=now).contains(when))
            .collect();
        kept.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.path.cmp(&b.1.path)));
        let complete = limit == 0
            || !full
            || (kept.len() >= limit
                && oldest_change
                    .zip(limit.checked_sub(1).and_then(|i| kept.get(i)))
                    .is_some_and(|(u, k)| k.0 >= u));
        if complete || fetch >= 100_000 {
            kept.truncate(limit);
            break kept;
        }
        fetch = fetch.saturating_mul(4);
    };
    if nodes.is_empty() {
        return Ok(Output::new(
            format!("No memories in the last {days} days.\n"),
            json!({"days": days, "items": []}),
        ));
    }
    let mut text = format!("## Timeline (last {days} days)\n");
    let mut day = String::new();
    let mut items = Vec::new();
    for (when, n) in &nodes {
        let t = Utc.timestamp_micros(*when).single().unwrap_or_default();
        let d = t.format("%Y-%m-%d").to_string();
        if d != day {
            text.push_str(&format!("\n### {d}\n"));
            day = d;
        }
        let line = summary::one_line(n.text(), &n.title(), &[], 60);
        text.push_str(&format!("  [{}] {}: {line}\n", t.format("%H:%M"), n.path));
        let mut item = json!({
            "path": n.path,
            "updated_at": avm_core::time::to_iso(n.updated_at),
            "title": n.title(),
            "summary": line,
        });
        if crate::engine::at(n).is_some() {
            item["at"] = json!(avm_core::time::to_iso(*when));
        }
        items.push(item);
    }
    Ok(Output::new(text, json!({"days": days, "items": items})))
}

/// The link graph around `path`, breadth first, `depth` hops, only what the caller may see.
pub fn explore(
    store: &dyn MemoryStore,
    caller: &Caller,
    keep: Keep<'_>,
    path: &str,
    depth: usize,
) -> Result<Output> {
    if depth == 0 || depth > 8 {
        return Err(Error::invalid(format!(
            "depth {depth} is not accepted; use 1 to 8"
        )));
    }
    let visible = |p: &str| caller.may_see(p) && keep(p);
    let Some(start) = store.node(path)?.filter(|_| visible(path)) else {
        return Err(Error::not_found(path));
    };
    let mut text = format!(
        "## Starting from: {path}\n{}\n",
        summary::one_line(start.text(), &start.title(), &[], 200)
    );
    let mut seen: BTreeSet<String> = BTreeSet::from([path.to_string()]);
    let mut frontier: VecDeque<String> = VecDeque::from([path.to_string()]);
    let mut edges = Vec::new();
    for hop in 1..=depth {
        let mut next = VecDeque::new();
        let mut lines = Vec::new();
        while let Some(p) = frontier.pop_front() {
            let mut links = store.links_of(&p)?;
            links.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
            for (src, dst, kind, weight) in links {
                let (other, arrow) = if src == p {
                    (dst.clone(), "-->")
                } else {
                    (src.clone(), "<--")
                };
                if !visible(&other) {
                    continue;
                }
                edges.push(json!({"source": src, "target": dst, "type": kind, "weight": weight, "hop": hop}));
                if seen.insert(other.clone()) {
                    let preview = match store.node(&other)? {
                        Some(n) => summary::one_line(n.text(), &n.title(), &[], 100),
                        None => "(missing)".into(),
                    };
                    lines.push(format!("  {arrow} [{kind}] {other}\n    {preview}"));
                    next.push_back(other);
                }
            }
        }
        if lines.is_empty() {
            break;
        }
        text.push_str(&format!("\n### Hop {hop}:\n{}\n", lines.join("\n")));
        frontier = next;
    }
    if edges.is_empty() {
        text.push_str(
            "\nNo linked memories found. Link memories with: avm link SRC DST --type TYPE\n",
        );
    }
    Ok(Output::new(
        text,
        json!({"path": path, "nodes": seen, "edges": edges}),
    ))
}

/// Token savings from recall telemetry: tokens returned against tokens available.
pub fn savings(store: &dyn MemoryStore, agent: Option<&str>, since: Option<i64>) -> Result<Output> {
    let rows = store.telemetry(agent, since)?;
    let recalls: Vec<_> = rows.iter().filter(|r| r.op == "recall").collect();
    let n: i64 = recalls.iter().map(|r| r.count).sum();
    let returned: i64 = recalls.iter().map(|r| r.tokens_returned).sum();
    let available: i64 = recalls.iter().map(|r| r.tokens_available).sum();
    let saved = (available - returned).max(0);
    let pct = if available > 0 {
        (saved as f64 / available as f64 * 1000.0).round() / 10.0
    } else {
        0.0
    };
    let mut text = format!(
        "Token Savings Report{}\n  Recalls:          {n}\n  Tokens returned:  {returned}\n  Tokens available: {available}\n  Tokens saved:     {saved} ({pct}%)\n",
        agent.map(|a| format!(" for {a}")).unwrap_or_default()
    );
    text.push_str("  (returned = cl100k tokens of the recall text; available ≈ characters/4 of every candidate's full content)\n");
    if agent.is_none() && !recalls.is_empty() {
        text.push_str("\nBy agent:\n");
        for r in &recalls {
            text.push_str(&format!(
                "  {:<16} {} recalls, {} returned / {} available\n",
                r.agent.as_deref().unwrap_or("(operator)"),
                r.count,
                r.tokens_returned,
                r.tokens_available
            ));
        }
    }
    Ok(Output::new(
        text,
        json!({
            "agent": agent,
            "recalls": n,
            "tokens_returned": returned,
            "tokens_available": available,
            "tokens_saved": saved,
            "savings_pct": pct,
            "by_agent_op": rows,
        }),
    ))
}

/// Counts for one agent: private memories and bytes, shared memories it can read, activity.
pub fn agent_stats(store: &dyn MemoryStore, caller: &Caller, keep: Keep<'_>) -> Result<Output> {
    let Some(agent) = caller.agent() else {
        return Err(Error::invalid("agent-stats needs --agent NAME"));
    };
    let root = format!("/memory/private/{agent}");
    let count = |dir: &str| -> Result<u64> {
        let parent = avm_core::address::parent(dir).to_string();
        Ok(store
            .children_counted(&parent, caller, keep)?
            .into_iter()
            .find(|(p, _, _)| p == dir)
            .map(|(_, _, n)| n)
            .unwrap_or(0))
    };
    let private = count(&root)?;
    let shared = count("/memory/shared")?;
    let recent = store.recent(std::slice::from_ref(&root), caller, keep, None, 1)?;
    let last = recent.first().map(|n| avm_core::time::to_iso(n.updated_at));
    let ops = store.telemetry(Some(agent), None)?;
    let mut text = format!(
        "Agent Memory: {agent}\n  Private memories: {private}\n  Shared accessible: {shared}\n  Private prefix: {root}\n  Last change: {}\n",
        last.as_deref().unwrap_or("never")
    );
    for o in &ops {
        text.push_str(&format!("  {}: {} calls\n", o.op, o.count));
    }
    Ok(Output::new(
        text,
        json!({
            "agent": agent,
            "private_count": private,
            "shared_accessible": shared,
            "private_prefix": root,
            "last_change": last,
            "ops": ops,
        }),
    ))
}
