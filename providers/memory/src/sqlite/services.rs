//! The SQLite store behind the agent-memory services' storage trait.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use avm_core::address::is_within;
use avm_core::storage::{
    Keep, MemoryStore, Node, StoreEvent, Telemetry, TelemetryTotals, TextHit, TopicDoc,
    TopicPosting,
};
use avm_core::time::{Micros, now_micros};
use avm_core::{Caller, Result};

use crate::sqlite::store::{NODE_COLS, Store, node_from_row, subtree_bounds, viewer, visible_sql};
use crate::sqlite::write::WriteOp;

/// Whether `path` lies in one of `scopes` and outside the trash (unless a scope is the trash).
fn in_scopes(scopes: &[String], path: &str) -> bool {
    let trash_scope = scopes.iter().any(|s| is_within(s, "/trash"));
    scopes.iter().any(|s| is_within(path, s)) && (trash_scope || !is_within(path, "/trash"))
}

/// The narrowest `[lo, hi)` path range covering every scope (scopes are checked row by row).
fn cover(scopes: &[String]) -> (String, String) {
    let mut common: Option<String> = None;
    for s in scopes {
        common = Some(match common {
            None => s.clone(),
            Some(c) => {
                let mut c = c;
                while !is_within(s, &c) {
                    c = avm_core::address::parent(&c).to_string();
                }
                c
            }
        });
    }
    let c = common.unwrap_or_else(|| "/".into());
    if c == "/" {
        ("/".into(), "0".into())
    } else {
        // Include the scope path itself (a node may sit at the scope).
        (c.clone(), format!("{c}0"))
    }
}

impl MemoryStore for Store {
    fn node(&self, path: &str) -> Result<Option<Node>> {
        Ok(self.peek(path)?.map(|n| (*n).clone()))
    }

    fn text_search(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<TextHit>> {
        Ok(self
            .search_candidates(scopes, caller, keep, query, limit)?
            .into_iter()
            .map(|h| TextHit {
                path: h.path,
                score: h.score,
            })
            .collect())
    }

    fn recent(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        since: Option<Micros>,
        limit: usize,
    ) -> Result<Vec<Node>> {
        self.by_update(
            scopes,
            caller,
            keep,
            Walk::NewestSince(since.unwrap_or(i64::MIN)),
            limit,
        )
    }

    fn oldest(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        before: Micros,
        limit: usize,
    ) -> Result<Vec<Node>> {
        self.by_update(scopes, caller, keep, Walk::OldestBefore(before), limit)
    }

    fn content_hash(&self, content: &str) -> String {
        crate::node::content_hash(content.as_bytes())
    }

    fn find_by_hash(
        &self,
        scope: &str,
        hash: &str,
        author: Option<&str>,
    ) -> Result<Option<String>> {
        let (lo, hi) = subtree_bounds(scope);
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT path FROM (\
                   SELECT path, author, expires_at FROM nodes WHERE hash = ?1 \
                   UNION SELECT path, author, expires_at FROM nodes \
                     WHERE json_extract(meta, '$.remember_hash') = ?1) \
                 WHERE path >= ?2 AND path < ?3 AND author IS ?4 \
                   AND (expires_at IS NULL OR expires_at > ?5) ORDER BY path LIMIT 1",
            )?
            .query_row(params![hash, lo, hi, author, now], |r| r.get(0))
            .optional()
        })
    }

    fn links_of(&self, path: &str) -> Result<Vec<(String, String, String, f64)>> {
        let (out, inc) = self.links(path, &Caller::Operator)?;
        Ok(out
            .into_iter()
            .chain(inc)
            .map(|l| (l.source, l.target, l.kind, l.weight))
            .collect())
    }

    fn children_counted(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Keep<'_>,
    ) -> Result<Vec<(String, bool, u64)>> {
        let children = self.children(dir, caller, 0, None)?;
        let vis = viewer(caller);
        let now = now_micros();
        let mut out = Vec::new();
        for c in children {
            if !keep(&c.path) || (is_within(&c.path, "/trash") && !is_within(dir, "/trash")) {
                continue;
            }
            match c.kind {
                avm_core::NodeKind::File => out.push((c.path, false, 1)),
                // Links are not memories.
                avm_core::NodeKind::Symlink => {}
                avm_core::NodeKind::Dir => {
                    let (lo, hi) = subtree_bounds(&c.path);
                    let n: i64 = self.read_conn(|conn| {
                        conn.prepare_cached(&format!(
                            "SELECT count(*) FROM nodes WHERE path >= ?1 AND path < ?2 \
                             AND (expires_at IS NULL OR expires_at > ?3) AND {}",
                            visible_sql("", 4)
                        ))?
                        .query_row(params![lo, hi, now, vis], |r| r.get(0))
                    })?;
                    out.push((c.path, true, n as u64));
                }
            }
        }
        Ok(out)
    }

    fn events_after(&self, seq: i64, limit: usize) -> Result<Vec<StoreEvent>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT seq, at, kind, path, detail, agent FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![seq, limit as i64], |r| {
                Ok(StoreEvent {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    path: r.get(3)?,
                    detail: r.get(4)?,
                    agent: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    fn last_event(&self) -> Result<i64> {
        self.read_conn(|c| {
            c.prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
                .query_row([], |r| r.get(0))
        })
    }

    fn topic_cursor(&self) -> Result<i64> {
        self.read_conn(|c| {
            c.prepare_cached("SELECT coalesce(max(seq), 0) FROM cursors WHERE name = 'topics'")?
                .query_row([], |r| r.get(0))
        })
    }

    fn topic_update(&self, cursor: i64, docs: Vec<TopicDoc>, removed: Vec<i64>) -> Result<()> {
        self.apply(WriteOp::Topics {
            cursor,
            docs,
            removed,
        })
        .map(drop)
    }

    fn topic_postings(
        &self,
        topics: &[String],
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        per_topic: usize,
    ) -> Result<Vec<TopicPosting>> {
        let now = now_micros();
        let vis = viewer(caller);
        let mut out = Vec::new();
        for topic in topics {
            // Heaviest postings first through (topic, weight) index; at most a bounded
            // window is read, widened only when filtering leaves too few.
            let docs: i64 = self.read_conn(|c| {
                c.prepare_cached("SELECT count(*) FROM topics WHERE topic = ?1")?
                    .query_row([topic], |r| r.get(0))
            })?;
            let mut window = (per_topic * 2).max(32) as i64;
            loop {
                let rows: Vec<(String, f64, i64, bool)> = self.read_conn(|c| {
                    c.prepare_cached(&format!(
                        "SELECT n.path, t.weight, coalesce(n.expires_at, 9223372036854775807), {} \
                         FROM topics t INDEXED BY topics_weight JOIN nodes n ON n.id = t.node_id \
                         WHERE t.topic = ?1 ORDER BY t.weight DESC, t.node_id LIMIT ?2",
                        visible_sql("n.", 3)
                    ))?
                    .query_map(params![topic, window, vis], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect()
                })?;
                let exhausted = (rows.len() as i64) < window;
                let kept: Vec<&(String, f64, i64, bool)> = rows
                    .iter()
                    .filter(|(p, _, exp, visible)| {
                        *visible && *exp > now && in_scopes(scopes, p) && keep(p)
                    })
                    .take(per_topic)
                    .collect();
                if kept.len() >= per_topic || exhausted {
                    for (path, weight, _, _) in kept {
                        out.push(TopicPosting {
                            topic: topic.clone(),
                            path: path.clone(),
                            weight: *weight,
                            docs: docs as u64,
                        });
                    }
                    break;
                }
                window = window.saturating_mul(8);
            }
        }
        Ok(out)
    }

    fn topic_counts(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let (lo, hi) = cover(scopes);
        let vis = viewer(caller);
        let now = now_micros();
        let rows: Vec<(String, String)> = self.read_conn(|c| {
            c.prepare_cached(&format!(
                "SELECT t.topic, n.path FROM topics t JOIN nodes n ON n.id = t.node_id \
                 WHERE n.path >= ?1 AND n.path < ?2 AND (n.expires_at IS NULL OR n.expires_at > ?3) AND {}",
                visible_sql("n.", 4)
            ))?
            .query_map(params![lo, hi, now, vis], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut kept: HashMap<String, bool> = HashMap::new();
        for (topic, path) in rows {
            let ok = *kept
                .entry(path.clone())
                .or_insert_with(|| in_scopes(scopes, &path) && keep(&path));
            if ok {
                *counts.entry(topic).or_insert(0) += 1;
            }
        }
        let mut v: Vec<(String, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        Ok(v)
    }

    fn topics_of(&self, path: &str) -> Result<Vec<(String, f64)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT t.topic, t.weight FROM topics t JOIN nodes n ON n.id = t.node_id \
                 WHERE n.path = ?1 ORDER BY t.weight DESC, t.topic",
            )?
            .query_map([path], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    fn tell_send(&self, tell: avm_core::storage::Tell) -> Result<i64> {
        Ok(self.apply(WriteOp::Tell(tell))?.count as i64)
    }

    fn tell_inbox(
        &self,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<(avm_core::storage::Tell, bool)>> {
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT t.id, t.sender, t.recipient, t.content, t.priority, t.created_at, t.expires_at, \
                        EXISTS(SELECT 1 FROM tell_reads r WHERE r.tell_id = t.id AND r.agent = ?1) AS seen \
                 FROM tells t WHERE (t.recipient = ?1 OR (t.recipient = '@all' AND t.sender != ?1)) \
                   AND (t.expires_at IS NULL OR t.expires_at > ?2) \
                 ORDER BY seen, CASE t.priority WHEN 'urgent' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, \
                          t.created_at DESC, t.id DESC LIMIT ?3",
            )?
            .query_map(params![agent, now, limit as i64], |r| {
                Ok((
                    avm_core::storage::Tell {
                        id: r.get(0)?,
                        from: r.get(1)?,
                        to: r.get(2)?,
                        content: r.get(3)?,
                        priority: r.get(4)?,
                        created_at: r.get(5)?,
                        expires_at: r.get(6)?,
                    },
                    r.get(7)?,
                ))
            })?
            .collect()
        })
    }

    fn tell_mark_read(&self, agent: &str, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.apply(WriteOp::TellRead {
            agent: agent.to_string(),
            ids: ids.to_vec(),
        })
        .map(drop)
    }

    fn path_of_id(&self, id: i64) -> Result<Option<String>> {
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT path FROM nodes WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .query_row(params![id, now], |r| r.get(0))
            .optional()
        })
    }

    fn vector_cursor(&self) -> Result<i64> {
        self.read_conn(|c| {
            c.prepare_cached("SELECT coalesce(max(seq), 0) FROM cursors WHERE name = 'embed'")?
                .query_row([], |r| r.get(0))
        })
    }

    fn vectors_put(
        &self,
        cursor: i64,
        model: &str,
        docs: Vec<avm_core::storage::VectorDoc>,
    ) -> Result<()> {
        self.apply(WriteOp::Vectors {
            cursor,
            model: model.to_string(),
            docs,
        })
        .map(drop)
    }

    fn vectors_stale(&self, model: &str, limit: usize) -> Result<Vec<Node>> {
        let now = now_micros();
        let rows: Vec<Node> = self.read_conn(|c| {
            c.prepare_cached(&format!(
                "SELECT {NODE_COLS} FROM nodes WHERE NOT EXISTS (SELECT 1 FROM vectors v \
                   WHERE v.node_id = nodes.id AND v.hash = nodes.hash AND v.model = ?1) \
                   AND NOT (path >= '/trash/' AND path < '/trash0') \
                   AND typeof(content) = 'text' AND ftype IS NULL \
                   AND (expires_at IS NULL OR expires_at > ?2) ORDER BY nodes.id LIMIT ?3"
            ))?
            .query_map(params![model, now, limit as i64], node_from_row)?
            .collect()
        })?;
        Ok(rows)
    }

    fn vectors_all(&self, model: &str) -> Result<(avm_core::storage::Vectors, i64)> {
        self.read_conn(|c| {
            let stamp = stamp_of(c, model)?;
            let rows = c
                .prepare_cached(
                    "SELECT node_id, vec FROM vectors WHERE model = ?1 ORDER BY node_id",
                )?
                .query_map([model], |r| {
                    let id: i64 = r.get(0)?;
                    let blob: Vec<u8> = r.get(1)?;
                    let v = blob
                        .as_chunks::<4>()
                        .0
                        .iter()
                        .map(|b| f32::from_le_bytes(*b))
                        .collect();
                    Ok((id, v))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, stamp))
        })
    }

    fn vectors_stamp(&self, model: &str) -> Result<i64> {
        self.read_conn(|c| stamp_of(c, model))
    }

    fn paths_of_ids(&self, ids: &[i64], caller: &Caller) -> Result<Vec<(i64, String)>> {
        let now = now_micros();
        let vis = viewer(caller);
        self.read_conn(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT path FROM nodes WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2) AND {}",
                visible_sql("", 3)
            ))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(p) = st
                    .query_row(params![id, now, vis], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    out.push((*id, p));
                }
            }
            Ok(out)
        })
    }

    fn record(&self, row: Telemetry) {
        self.apply_nowait(WriteOp::Telemetry(row));
    }

    fn telemetry(
        &self,
        agent: Option<&str>,
        since: Option<Micros>,
    ) -> Result<Vec<TelemetryTotals>> {
        let since = since.unwrap_or(i64::MIN);
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT agent, op, count(*), sum(tokens_returned), sum(tokens_available), avg(latency_us) \
                 FROM telemetry WHERE at >= ?1 AND (?2 IS NULL OR agent = ?2) \
                 GROUP BY agent, op ORDER BY agent, op",
            )?
            .query_map(params![since, agent], |r| {
                Ok(TelemetryTotals {
                    agent: r.get(0)?,
                    op: r.get(1)?,
                    count: r.get(2)?,
                    tokens_returned: r.get(3)?,
                    tokens_available: r.get(4)?,
                    mean_latency_us: r.get(5)?,
                })
            })?
            .collect()
        })
    }
}

/// Changes whenever a vector of `model` is written or a node with a vector is deleted.
fn stamp_of(c: &rusqlite::Connection, model: &str) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "SELECT coalesce((SELECT max(stamp) FROM vectors WHERE model = ?1), 0) * 4294967296 \
              + coalesce((SELECT seq FROM cursors WHERE name = 'vectors_deleted'), 0)",
    )?
    .query_row([model], |r| r.get(0))
}

/// Which way [`Store::by_update`] walks the `updated_at` index, and where it stops.
#[derive(Clone, Copy)]
enum Walk {
    /// Newest first, changed at or after this time.
    NewestSince(Micros),
    /// Oldest first, changed before this time.
    OldestBefore(Micros),
}

impl Store {
    /// Live nodes within any of `scopes`, in `walk` order: the updated_at index walked in
    /// pages, filtering as it goes, so the result is never short because of nodes the caller
    /// may not see.
    fn by_update(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        walk: Walk,
        limit: usize,
    ) -> Result<Vec<Node>> {
        let (lo, hi) = cover(scopes);
        let vis = viewer(caller);
        let now = now_micros();
        // (cursor condition, stop condition, order, stop time, starting cursor)
        let (after, stop, order, bound, start) = match walk {
            Walk::NewestSince(t) => (
                "(updated_at < ?1 OR (updated_at = ?1 AND id < ?2))",
                "updated_at >= ?3",
                "updated_at DESC, id DESC",
                t,
                i64::MAX,
            ),
            Walk::OldestBefore(t) => (
                "(updated_at > ?1 OR (updated_at = ?1 AND id > ?2))",
                "updated_at < ?3",
                "updated_at ASC, id ASC",
                t,
                i64::MIN,
            ),
        };
        let sql = format!(
            "SELECT {NODE_COLS} FROM nodes INDEXED BY nodes_updated \
             WHERE {after} AND {stop} AND path >= ?4 AND path < ?5 \
               AND (expires_at IS NULL OR expires_at > ?6) AND {} \
             ORDER BY {order} LIMIT ?8",
            visible_sql("", 7)
        );
        let (mut at, mut at_id) = (start, start);
        let mut out = Vec::new();
        let page = limit.saturating_mul(2).clamp(64, 4096);
        loop {
            let rows: Vec<Node> = self.read_conn(|c| {
                c.prepare_cached(&sql)?
                    .query_map(
                        params![at, at_id, bound, lo, hi, now, vis, page as i64],
                        node_from_row,
                    )?
                    .collect()
            })?;
            let done = rows.len() < page;
            for n in rows {
                at = n.updated_at;
                at_id = n.id;
                // Recall and digests read memories: binary files and links are not memories.
                // Lifecycle walks (oldest first) see every node.
                let memory = n.is_indexed() || matches!(walk, Walk::OldestBefore(_));
                if memory && in_scopes(scopes, &n.path) && keep(&n.path) {
                    out.push(n);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if done {
                return Ok(out);
            }
        }
    }
}
