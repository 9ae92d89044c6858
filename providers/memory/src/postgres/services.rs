//! The PostgreSQL store behind the agent-memory services' storage trait.

use std::collections::HashMap;

use avm_core::address::is_within;
use avm_core::storage::{
    Keep, MemoryStore, Node, StoreEvent, Telemetry, TelemetryTotals, TextHit, TopicDoc,
    TopicPosting,
};
use avm_core::time::{Micros, now_micros};
use avm_core::{Caller, Result};

use super::{NODE_COLS, PgStore, node_from_row, subtree_bounds, viewer, visible_sql};
use crate::engine::{Engine, WriteOp};
use avm_postgres::Queries;

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

/// A `bigint` parameter for a count or limit.
fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl MemoryStore for PgStore {
    fn node(&self, path: &str) -> Result<Option<Node>> {
        Ok(Engine::peek(self, path)?.map(|n| (*n).clone()))
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
        self.read(|c| {
            c.query_opt(
                "SELECT path FROM nodes \
                 WHERE (hash = $1::text OR (meta->>'remember_hash') = $1::text) \
                   AND path >= $2 AND path < $3 AND author IS NOT DISTINCT FROM $4::text \
                   AND (expires_at IS NULL OR expires_at > $5) ORDER BY path LIMIT 1",
                &[&hash, &lo, &hi, &author, &now],
            )?
            .map(|r| r.try_get(0))
            .transpose()
        })
    }

    fn links_of(&self, path: &str) -> Result<Vec<(String, String, String, f64)>> {
        let (out, inc) = Engine::links(self, path, &Caller::Operator)?;
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
        let children = Engine::children(self, dir, caller, 0, None)?;
        let vis = viewer(caller);
        let now = now_micros();
        let sql = format!(
            "SELECT count(*) FROM nodes WHERE path >= $1 AND path < $2 \
             AND (expires_at IS NULL OR expires_at > $3) AND {}",
            visible_sql("", 4)
        );
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
                    let n: i64 = self
                        .read(|conn| conn.query_one(&sql, &[&lo, &hi, &now, &vis])?.try_get(0))?;
                    out.push((c.path, true, u64::try_from(n).unwrap_or(0)));
                }
            }
        }
        Ok(out)
    }

    fn events_after(&self, seq: i64, limit: usize) -> Result<Vec<StoreEvent>> {
        self.read(|c| {
            c.query(
                "SELECT seq, at, kind, path, detail, agent FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &big(limit)],
            )?
            .iter()
            .map(|r| {
                Ok(StoreEvent {
                    seq: r.try_get(0)?,
                    at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    path: r.try_get(3)?,
                    detail: r.try_get(4)?,
                    agent: r.try_get(5)?,
                })
            })
            .collect()
        })
    }

    fn last_event(&self) -> Result<i64> {
        self.read(|c| {
            c.query_one("SELECT coalesce(max(seq), 0)::bigint FROM events", &[])?
                .try_get(0)
        })
    }

    fn change_waiter(&self) -> Option<Box<dyn avm_core::storage::ChangeWaiter>> {
        Some(Box::new(Waiter {
            pg: self.pg.clone(),
            listener: None,
        }))
    }

    fn topic_cursor(&self) -> Result<i64> {
        self.read(|c| cursor(c, "topics"))
    }

    fn topic_update(&self, cursor: i64, docs: Vec<TopicDoc>, removed: Vec<i64>) -> Result<()> {
        Engine::apply(
            self,
            WriteOp::Topics {
                cursor,
                docs,
                removed,
            },
        )
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
        // Heaviest postings first through the (topic, weight) index, live and visible ones
        // only; at most a bounded window is read, widened only when the scopes and `keep`
        // leave too few.
        let sql = format!(
            "SELECT n.path, t.weight FROM topics t JOIN nodes n ON n.id = t.node_id \
             WHERE t.topic = $1 AND (n.expires_at IS NULL OR n.expires_at > $2) AND {} \
             ORDER BY t.weight DESC, t.node_id LIMIT $4",
            visible_sql("n.", 3)
        );
        let mut out = Vec::new();
        for topic in topics {
            let docs: i64 = self.read(|c| {
                c.query_one("SELECT count(*) FROM topics WHERE topic = $1", &[topic])?
                    .try_get(0)
            })?;
            let mut window = big(per_topic.saturating_mul(2).max(32));
            loop {
                let rows: Vec<(String, f64)> = self.read(|c| {
                    c.query(&sql, &[topic, &now, &vis, &window])?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect()
                })?;
                let exhausted = big(rows.len()) < window;
                let kept: Vec<&(String, f64)> = rows
                    .iter()
                    .filter(|(p, _)| in_scopes(scopes, p) && keep(p))
                    .take(per_topic)
                    .collect();
                if kept.len() >= per_topic || exhausted {
                    for (path, weight) in kept {
                        out.push(TopicPosting {
                            topic: topic.clone(),
                            path: path.clone(),
                            weight: *weight,
                            docs: u64::try_from(docs).unwrap_or(0),
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
        let rows: Vec<(String, String)> = self.read(|c| {
            c.query(
                &format!(
                    "SELECT t.topic, n.path FROM topics t JOIN nodes n ON n.id = t.node_id \
                     WHERE n.path >= $1 AND n.path < $2 \
                       AND (n.expires_at IS NULL OR n.expires_at > $3) AND {}",
                    visible_sql("n.", 4)
                ),
                &[&lo, &hi, &now, &vis],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
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
        self.read(|c| {
            c.query(
                "SELECT t.topic, t.weight FROM topics t JOIN nodes n ON n.id = t.node_id \
                 WHERE n.path = $1 ORDER BY t.weight DESC, t.topic COLLATE \"C\"",
                &[&path],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn tell_send(&self, tell: avm_core::storage::Tell) -> Result<i64> {
        Ok(big(Engine::apply(self, WriteOp::Tell(tell))?.count))
    }

    fn tell_inbox(
        &self,
        agent: &str,
        limit: usize,
    ) -> Result<Vec<(avm_core::storage::Tell, bool)>> {
        let now = now_micros();
        self.read(|c| {
            c.query(
                "SELECT t.id, t.sender, t.recipient, t.content, t.priority, t.created_at, t.expires_at, \
                        EXISTS(SELECT 1 FROM tell_reads r WHERE r.tell_id = t.id AND r.agent = $1::text) AS seen \
                 FROM tells t WHERE (t.recipient = $1::text OR (t.recipient = '@all' AND t.sender <> $1::text)) \
                   AND (t.expires_at IS NULL OR t.expires_at > $2) \
                 ORDER BY seen, CASE t.priority WHEN 'urgent' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, \
                          t.created_at DESC, t.id DESC LIMIT $3",
                &[&agent, &now, &big(limit)],
            )?
            .iter()
            .map(|r| {
                Ok((
                    avm_core::storage::Tell {
                        id: r.try_get(0)?,
                        from: r.try_get(1)?,
                        to: r.try_get(2)?,
                        content: r.try_get(3)?,
                        priority: r.try_get(4)?,
                        created_at: r.try_get(5)?,
                        expires_at: r.try_get(6)?,
                    },
                    r.try_get(7)?,
                ))
            })
            .collect()
        })
    }

    fn tell_mark_read(&self, agent: &str, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        Engine::apply(
            self,
            WriteOp::TellRead {
                agent: agent.to_string(),
                ids: ids.to_vec(),
            },
        )
        .map(drop)
    }

    fn path_of_id(&self, id: i64) -> Result<Option<String>> {
        let now = now_micros();
        self.read(|c| {
            c.query_opt(
                "SELECT path FROM nodes WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
                &[&id, &now],
            )?
            .map(|r| r.try_get(0))
            .transpose()
        })
    }

    fn vector_cursor(&self) -> Result<i64> {
        self.read(|c| cursor(c, "embed"))
    }

    fn vectors_put(
        &self,
        cursor: i64,
        model: &str,
        docs: Vec<avm_core::storage::VectorDoc>,
    ) -> Result<()> {
        Engine::apply(
            self,
            WriteOp::Vectors {
                cursor,
                model: model.to_string(),
                docs,
            },
        )
        .map(drop)
    }

    fn vectors_stale(&self, model: &str, limit: usize) -> Result<Vec<Node>> {
        let now = now_micros();
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {NODE_COLS} FROM nodes WHERE NOT EXISTS (SELECT 1 FROM vectors v \
                       WHERE v.node_id = nodes.id AND v.hash = nodes.hash AND v.model = $1) \
                       AND NOT (path >= '/trash/' AND path < '/trash0') \
                       AND content IS NOT NULL AND ftype IS NULL \
                       AND (expires_at IS NULL OR expires_at > $2) ORDER BY nodes.id LIMIT $3"
                ),
                &[&model, &now, &big(limit)],
            )?
            .iter()
            .map(node_from_row)
            .collect()
        })
    }

    fn vectors_all(&self, model: &str) -> Result<(avm_core::storage::Vectors, i64)> {
        self.read(|c| {
            // The stamp first: a write landing in between makes the next stamp differ.
            let stamp = stamp_of(c, model)?;
            let rows = c
                .query(
                    "SELECT node_id, vec FROM vectors WHERE model = $1 ORDER BY node_id",
                    &[&model],
                )?
                .iter()
                .map(|r| {
                    let id: i64 = r.try_get(0)?;
                    let blob: &[u8] = r.try_get(1)?;
                    let v = blob
                        .as_chunks::<4>()
                        .0
                        .iter()
                        .map(|b| f32::from_le_bytes(*b))
                        .collect();
                    Ok((id, v))
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()?;
            Ok((rows, stamp))
        })
    }

    fn vectors_stamp(&self, model: &str) -> Result<i64> {
        self.read(|c| stamp_of(c, model))
    }

    fn paths_of_ids(&self, ids: &[i64], caller: &Caller) -> Result<Vec<(i64, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let vis = viewer(caller);
        let found: HashMap<i64, String> = self.read(|c| {
            c.query(
                &format!(
                    "SELECT id, path FROM nodes WHERE id = ANY($1::bigint[]) \
                     AND (expires_at IS NULL OR expires_at > $2) AND {}",
                    visible_sql("", 3)
                ),
                &[&ids, &now, &vis],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })?;
        // In the order asked for, as the SQLite engine answers.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).map(|p| (*id, p.clone())))
            .collect())
    }

    fn record(&self, row: Telemetry) {
        // Telemetry is best effort: a row that cannot be written is dropped, as SQLite's
        // engine drops one whose background write fails.
        let _ = Engine::apply(self, WriteOp::Telemetry(row));
    }

    fn telemetry(
        &self,
        agent: Option<&str>,
        since: Option<Micros>,
    ) -> Result<Vec<TelemetryTotals>> {
        let since = since.unwrap_or(i64::MIN);
        self.read(|c| {
            c.query(
                "SELECT agent, op, count(*), sum(tokens_returned)::bigint, \
                        sum(tokens_available)::bigint, avg(latency_us)::float8 \
                 FROM telemetry WHERE at >= $1 AND ($2::text IS NULL OR agent = $2::text) \
                 GROUP BY agent, op ORDER BY agent COLLATE \"C\" NULLS FIRST, op COLLATE \"C\"",
                &[&since, &agent],
            )?
            .iter()
            .map(|r| {
                Ok(TelemetryTotals {
                    agent: r.try_get(0)?,
                    op: r.try_get(1)?,
                    count: r.try_get(2)?,
                    tokens_returned: r.try_get(3)?,
                    tokens_available: r.try_get(4)?,
                    mean_latency_us: r.try_get(5)?,
                })
            })
            .collect()
        })
    }
}

/// How far the consumer `name` has read the events table (0 before it starts).
fn cursor(c: &mut avm_postgres::Client, name: &str) -> std::result::Result<i64, postgres::Error> {
    c.query_one(
        "SELECT coalesce(max(seq), 0)::bigint FROM cursors WHERE name = $1",
        &[&name],
    )?
    .try_get(0)
}

/// Changes whenever a vector of `model` is written or a node with a vector is deleted.
fn stamp_of(
    c: &mut avm_postgres::Client,
    model: &str,
) -> std::result::Result<i64, postgres::Error> {
    c.query_one(
        "SELECT coalesce((SELECT max(stamp) FROM vectors WHERE model = $1), 0) * 4294967296 \
              + coalesce((SELECT seq FROM cursors WHERE name = 'vectors_deleted'), 0)",
        &[&model],
    )?
    .try_get(0)
}

/// Which way [`PgStore::by_update`] walks the `updated_at` index, and where it stops.
#[derive(Clone, Copy)]
enum Walk {
    /// Newest first, changed at or after this time.
    NewestSince(Micros),
    /// Oldest first, changed before this time.
    OldestBefore(Micros),
}

impl PgStore {
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = cover(scopes);
        let vis = viewer(caller);
        let now = now_micros();
        // (cursor condition, stop condition, order, stop time, starting cursor)
        let (after, stop, order, bound, start) = match walk {
            Walk::NewestSince(t) => (
                "(updated_at < $1 OR (updated_at = $1 AND id < $2))",
                "updated_at >= $3",
                "updated_at DESC, id DESC",
                t,
                i64::MAX,
            ),
            Walk::OldestBefore(t) => (
                "(updated_at > $1 OR (updated_at = $1 AND id > $2))",
                "updated_at < $3",
                "updated_at ASC, id ASC",
                t,
                i64::MIN,
            ),
        };
        let sql = format!(
            "SELECT {NODE_COLS} FROM nodes \
             WHERE {after} AND {stop} AND path >= $4 AND path < $5 \
               AND (expires_at IS NULL OR expires_at > $6) AND {} \
             ORDER BY {order} LIMIT $8",
            visible_sql("", 7)
        );
        let (mut at, mut at_id) = (start, start);
        let mut out = Vec::new();
        let page = limit.saturating_mul(2).clamp(64, 4096);
        loop {
            let rows: Vec<Node> = self.read(|c| {
                c.query(
                    &sql,
                    &[&at, &at_id, &bound, &lo, &hi, &now, &vis, &big(page)],
                )?
                .iter()
                .map(node_from_row)
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

/// Follows `NOTIFY avm_events` on a connection of its own, listening again after the
/// connection breaks (and reporting the break as a change, since notifications sent meanwhile
/// are lost).
struct Waiter {
    pg: avm_postgres::Pg,
    listener: Option<avm_postgres::Listener>,
}

impl avm_core::storage::ChangeWaiter for Waiter {
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        if self.listener.is_none() {
            match self.pg.listen(&[super::EVENTS_CHANNEL]) {
                Ok(l) => self.listener = Some(l),
                Err(e) => {
                    tracing::debug!(target: "avm::postgres", "cannot listen for changes: {e}");
                    std::thread::sleep(timeout);
                    return true;
                }
            }
        }
        let Some(l) = self.listener.as_mut() else {
            return true;
        };
        match l.wait(timeout) {
            Ok(notes) => !notes.is_empty(),
            Err(e) => {
                tracing::debug!(target: "avm::postgres", "stopped listening for changes: {e}");
                self.listener = None;
                true
            }
        }
    }
}
