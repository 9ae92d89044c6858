//! Reads of the PostgreSQL engine: nodes by path, directories and subtrees, history and
//! versions, links, tag counts and statistics, with the same results as the SQLite engine's
//! ([`crate::sqlite::store`]).
//!
//! Every listing filters by visibility inside its query (`avm_visible`) and treats a node
//! whose expiry has passed as gone, whether or not a writer has purged it yet. Paths compare
//! byte by byte (the path columns are `COLLATE "C"`), so orders are SQLite's `BINARY` ones.
//! A read never takes the engine's write lock; recording a read time is best effort.

use std::collections::HashMap;
use std::sync::Arc;

use avm_postgres::{Client, Queries};
use serde_json::Value;

use avm_core::storage::Keep;
use avm_core::time::{Micros, now_micros};
use avm_core::{Attrs, Caller, Capacity, Content, NodeKind, Result};

use super::{
    NODE_COLS, PgStore, content_at, node_from_row, subtree_bounds, u32_at, viewer, visible_sql,
};
use crate::engine::{ChildEntry, Link, VersionInfo};
use crate::node::Node;

/// Reads closer together than this record one read time, not many (as SQLite's engine).
const TOUCH_GRANULARITY: Micros = 60_000_000;

/// What [`PgStore::capacity`] reports as free: PostgreSQL does not tell a client how much
/// room its disk has left, so this stands for "not known to be short".
const CAPACITY_HEADROOM: u64 = 1 << 40;

/// Content length in bytes of a row with a `content, bytes` column pair (`bigint`).
const SIZE_SQL: &str = "coalesce(octet_length(content), octet_length(bytes))::bigint";

/// The columns of a version's info (`info_row`), then its content (`version_row`).
const VERSION_COLS: &str = "version, kind, at, author, hash, \
     coalesce(octet_length(content), octet_length(bytes))::bigint, note, content, bytes";

/// A count or limit as a `bigint` parameter.
fn count_param(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `bigint` count or size as `u64` (negative never happens; read as 0).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgStore {
    /// The live node at `path` (an expired node counts as missing, purged or not), recording
    /// the read when the last recorded one is a minute old or more. Recording is best
    /// effort: a read never fails for it.
    pub fn get(&self, path: &str) -> Result<Option<Arc<Node>>> {
        let now = now_micros();
        self.read(|c| {
            let node = live_node(c, path, now)?;
            if let Some(n) = &node
                && n.accessed_at.is_none_or(|t| now - t >= TOUCH_GRANULARITY)
            {
                // On the pooled connection, outside any transaction: a failure here leaves
                // nothing to roll back, and the read stands.
                let _ = c.execute(
                    "INSERT INTO access(node_id, at) SELECT $1::bigint, $2::bigint \
                     WHERE EXISTS (SELECT 1 FROM nodes WHERE id = $1) \
                     ON CONFLICT (node_id) DO UPDATE SET at = greatest(access.at, excluded.at)",
                    &[&n.id, &now],
                );
            }
            Ok(node)
        })
    }

    /// Like [`PgStore::get`] without recording the read.
    pub fn peek(&self, path: &str) -> Result<Option<Arc<Node>>> {
        let now = now_micros();
        self.read(|c| live_node(c, path, now))
    }

    /// Whether `path` holds a node that has expired and that no writer has purged yet.
    pub fn expired_pending(&self, path: &str) -> Result<bool> {
        let now = now_micros();
        self.read(|c| {
            c.query_one(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE path = $1 AND expires_at <= $2)",
                &[&path, &now],
            )?
            .try_get(0)
        })
    }

    /// What `path` is: `/` and any path with something below it (or made by `mkdir`) a
    /// directory, a live node a file (symbolic links included, as in the SQLite engine),
    /// else nothing.
    pub fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        if path == "/" {
            return Ok(Some(NodeKind::Dir));
        }
        if self.peek(path)?.is_some() {
            return Ok(Some(NodeKind::File));
        }
        Ok(self.has_children(path)?.then_some(NodeKind::Dir))
    }

    /// Whether a live node lies below `dir`, or `dir` or a directory below it was made with
    /// `mkdir`.
    pub fn has_children(&self, dir: &str) -> Result<bool> {
        let now = now_micros();
        self.read(|c| dir_exists(c, dir, now))
    }

    /// The immediate children of `dir` that `caller` may see, by path: files and symbolic
    /// links with their size, version and last change, and directories (implicit, with a
    /// visible live node below them, or made with `mkdir`). With a `limit`, stops after
    /// `offset + limit + 1` entries so the caller can tell whether more remain.
    pub fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let want = limit.map(|l| offset.saturating_add(l).saturating_add(1));
        let cap = want.map_or(i64::MAX, count_param);
        // A skip scan in one round trip: each step takes the first visible live node at or
        // after a bound; after a node inside a subdirectory the bound jumps past that
        // subdirectory (`{lo}{name}0`), after a file it is the file's path followed by
        // U+0001, the least text after it (text holds no NUL).
        let cond = |t: &str| {
            format!(
                "{t}path < $2 AND ({t}expires_at IS NULL OR {t}expires_at > $3) AND {}",
                visible_sql(t, 4)
            )
        };
        let walk = format!(
            "WITH RECURSIVE walk(path, size, version, updated_at, ftype, n) AS ( \
               (SELECT path, {SIZE_SQL}, version, updated_at, ftype, 1::bigint FROM nodes \
                WHERE path >= $1::text AND {} ORDER BY path LIMIT 1) \
               UNION ALL \
               SELECT x.path, x.size, x.version, x.updated_at, x.ftype, w.n + 1 FROM walk w \
               CROSS JOIN LATERAL ( \
                 SELECT s.path, coalesce(octet_length(s.content), octet_length(s.bytes))::bigint AS size, \
                        s.version, s.updated_at, s.ftype FROM nodes s \
                 WHERE s.path >= (CASE WHEN strpos(substr(w.path, char_length($1) + 1), '/') > 0 \
                     THEN $1 || split_part(substr(w.path, char_length($1) + 1), '/', 1) || '0' \
                     ELSE w.path || chr(1) END) \
                   AND {} ORDER BY s.path LIMIT 1) x \
               WHERE w.n < $5::bigint) \
             SELECT path, size, version, updated_at, ftype FROM walk ORDER BY path",
            cond(""),
            cond("s.")
        );
        let (rows, made) = self.read(|c| {
            let rows = c.query(&walk, &[&lo, &hi, &now, &vis, &cap])?;
            let made = c.query(
                "SELECT path FROM dirs WHERE path >= $1 AND path < $2 ORDER BY path",
                &[&lo, &hi],
            )?;
            let made: Vec<String> = made
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            Ok((rows, made))
        })?;
        let mut out: Vec<ChildEntry> = Vec::with_capacity(rows.len());
        for r in &rows {
            if want.is_some_and(|w| out.len() >= w) {
                break;
            }
            let path: String = r.try_get(0).map_err(|e| self.err(e))?;
            let rest = path.get(lo.len()..).unwrap_or("");
            match rest.find('/') {
                Some(i) => out.push(ChildEntry {
                    path: format!("{lo}{}", &rest[..i]),
                    kind: NodeKind::Dir,
                    size: 0,
                    version: None,
                    updated_at: None,
                }),
                None => out.push(file_entry(r, path).map_err(|e| self.err(e))?),
            }
        }
        // Directories made empty on purpose show up too (paging stays by path order).
        let extra: Vec<String> = first_segments(&lo, made)
            .into_iter()
            .filter(|p| caller.may_see(p) && !out.iter().any(|c| &c.path == p))
            .collect();
        if !extra.is_empty() {
            out.extend(extra.into_iter().map(|path| ChildEntry {
                path,
                kind: NodeKind::Dir,
                size: 0,
                version: None,
                updated_at: None,
            }));
            out.sort_by(|a, b| a.path.cmp(&b.path));
            if let Some(w) = want {
                out.truncate(w);
            }
        }
        Ok(out)
    }

    /// Every live node below `dir` (or `dir` itself) that `caller` may see, in path order,
    /// skipping `offset`. With a `limit`, returns up to `limit + 1` nodes so the caller can
    /// tell whether more remain.
    pub fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        self.descendants_page(dir, caller, None, offset, limit)
    }

    /// Like [`PgStore::descendants`], starting after the path `after` (keyset paging).
    pub fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>> {
        self.descendants_page(dir, caller, after, 0, Some(limit))
    }

    fn descendants_page(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let lim: Option<i64> = limit.map(|l| count_param(l).saturating_add(1));
        let off = count_param(offset);
        // The range's own limit lets it stop early in index order; `dir` itself sorts
        // before everything inside it.
        let inner: Option<i64> = lim.map(|l| l.saturating_add(off));
        let after = after.unwrap_or("");
        let live = format!(
            "path > $6 AND (expires_at IS NULL OR expires_at > $4) AND {}",
            visible_sql("", 5)
        );
        let sql = format!(
            "SELECT * FROM ( \
               (SELECT {NODE_COLS} FROM nodes WHERE path = $3::text AND {live}) \
               UNION ALL \
               (SELECT {NODE_COLS} FROM nodes WHERE path >= $1::text AND path < $2::text \
                AND path <> $3 AND {live} ORDER BY path LIMIT $7::bigint) \
             ) u ORDER BY path LIMIT $8::bigint OFFSET $9::bigint"
        );
        self.read(|c| {
            c.query(
                &sql,
                &[&lo, &hi, &dir, &now, &vis, &after, &inner, &lim, &off],
            )?
            .iter()
            .map(|r| node_from_row(r).map(Arc::new))
            .collect()
        })
    }

    /// The directory `dir` if it exists (something live lies below it, or `mkdir` made it or
    /// one below it): its stored attributes, and how many subdirectories `caller` may see in
    /// it (its link count is 2 plus that), counted from `dir_attrs`, which has a row for
    /// every directory that exists.
    pub fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>> {
        let (lo, hi) = subtree_bounds(dir);
        let now = now_micros();
        let found = self.read(|c| {
            if dir != "/" && !dir_exists(c, dir, now)? {
                return Ok(None);
            }
            let attrs = match c.query_opt(
                "SELECT mode, uid, gid, mtime_ns, ctime_ns, atime_ns FROM dir_attrs WHERE path = $1",
                &[&dir],
            )? {
                Some(r) => Attrs {
                    mode: u32_at(&r, 0)?,
                    uid: u32_at(&r, 1)?,
                    gid: u32_at(&r, 2)?,
                    mtime: r.try_get(3)?,
                    ctime: r.try_get(4)?,
                    atime: r.try_get(5)?,
                    nlink: None,
                },
                None => Attrs::default(),
            };
            // Immediate subdirectories only: one more segment after `lo`.
            let subdirs: Vec<String> = c
                .query(
                    "SELECT path FROM dir_attrs WHERE path > $1::text AND path < $2::text \
                     AND strpos(substr(path, char_length($1) + 1), '/') = 0 ORDER BY path",
                    &[&lo, &hi],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            Ok(Some((attrs, subdirs)))
        })?;
        let Some((attrs, subdirs)) = found else {
            return Ok(None);
        };
        let n = subdirs
            .iter()
            .filter(|p| {
                let rest = p.get(lo.len()..).unwrap_or("");
                !rest.is_empty() && !rest.contains('/') && caller.may_see(p)
            })
            .count();
        Ok(Some((attrs, n as u64)))
    }

    /// Size and room of the storage, as far as a client of PostgreSQL can know them.
    ///
    /// PostgreSQL tells a client how large its database is
    /// (`pg_database_size(current_database())`) but not how much room the server's disk has
    /// left, so `free` is a fixed headroom of 1 TiB standing for "not known to be short",
    /// and `total` is the database's size plus that headroom. A disk that does fill up is
    /// reported by the write that hits it (`StorageFull`).
    pub fn capacity(&self) -> Result<Capacity> {
        let used: i64 = self.read(|c| {
            c.query_one("SELECT pg_database_size(current_database())", &[])?
                .try_get(0)
        })?;
        Ok(Capacity {
            total: unsigned(used).saturating_add(CAPACITY_HEADROOM),
            free: CAPACITY_HEADROOM,
        })
    }

    /// Live nodes and their content bytes below `dir` (all agents: quotas count everything).
    pub fn usage(&self, dir: &str) -> Result<(u64, u64)> {
        let (lo, hi) = subtree_bounds(dir);
        let now = now_micros();
        let (nodes, bytes): (i64, i64) = self.read(|c| {
            let r = c.query_one(
                &format!(
                    "SELECT count(*), coalesce(sum({SIZE_SQL}), 0)::bigint FROM nodes \
                     WHERE path >= $1 AND path < $2 AND (expires_at IS NULL OR expires_at > $3)"
                ),
                &[&lo, &hi, &now],
            )?;
            Ok((r.try_get(0)?, r.try_get(1)?))
        })?;
        Ok((unsigned(nodes), unsigned(bytes)))
    }

    /// The read marker `agent` holds on `path` (0 when none).
    pub fn mark_of(&self, agent: &str, path: &str) -> Result<i64> {
        self.read(|c| {
            c.query_one(
                "SELECT coalesce((SELECT m.version FROM marks m JOIN nodes n ON n.id = m.node_id \
                 WHERE m.agent = $1 AND n.path = $2), 0)::bigint",
                &[&agent, &path],
            )?
            .try_get(0)
        })
    }

    /// The newest `limit` entries of `path`'s history, newest first.
    pub fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE path = $1 \
                     ORDER BY version DESC LIMIT $2::bigint"
                ),
                &[&path, &count_param(limit)],
            )?
            .iter()
            .map(info_row)
            .collect()
        })
    }

    /// Version `version` of `path` with its content.
    pub fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {VERSION_COLS} FROM versions WHERE path = $1 AND version = $2"),
                &[&path, &version],
            )?
            .as_ref()
            .map(version_row)
            .transpose()
        })
    }

    /// The version of `path` that stood at time `at` (the newest written at or before it).
    pub fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        self.read(|c| {
            c.query_opt(
                &format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE path = $1 AND at <= $2 \
                     ORDER BY version DESC LIMIT 1"
                ),
                &[&path, &at],
            )?
            .as_ref()
            .map(version_row)
            .transpose()
        })
    }

    /// Every version of `path`, oldest first, with content (export).
    pub fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {VERSION_COLS} FROM versions WHERE path = $1 ORDER BY version"),
                &[&path],
            )?
            .iter()
            .map(version_row)
            .collect()
        })
    }

    /// Links out of `path` (by target, then type) and into it (by source, then type) whose
    /// other end `caller` may see: by the same rule as the node there would be, a path
    /// without a node judged by its path, an expired node's end hidden. A link from `path`
    /// to itself is listed twice among those out of it, as in the SQLite engine.
    pub fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        let vis = viewer(caller);
        let now = now_micros();
        let rows: Vec<Link> = self.read(|c| {
            c.query(
                "SELECT source, target, kind, weight, created_at FROM ( \
                   SELECT 0 AS arm, l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                     LEFT JOIN nodes e ON e.path = l.target \
                     WHERE l.source = $1 AND (e.expires_at IS NULL OR e.expires_at > $2) \
                     AND avm_visible(l.target, e.author, e.meta, $3::text) \
                   UNION ALL \
                   SELECT 1 AS arm, l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                     LEFT JOIN nodes e ON e.path = l.source \
                     WHERE l.target = $1 AND (e.expires_at IS NULL OR e.expires_at > $2) \
                     AND avm_visible(l.source, e.author, e.meta, $3::text) \
                 ) x ORDER BY arm, target, source, kind COLLATE \"C\"",
                &[&path, &now, &vis],
            )?
            .iter()
            .map(|r| {
                Ok(Link {
                    source: r.try_get(0)?,
                    target: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    weight: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
        })?;
        let (out, inc): (Vec<Link>, Vec<Link>) = rows
            .into_iter()
            .filter(|l| caller.may_see(&l.source) && caller.may_see(&l.target))
            .partition(|l| l.source == path);
        Ok((out, inc))
    }

    /// Tags below `dir` with how many live nodes `caller` may see carry each, most used
    /// first, then by tag. With `keep` (the caller's read rules, when any could refuse),
    /// only the nodes it keeps count.
    pub fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let filter = format!(
            "n.path >= $1 AND n.path < $2 AND (n.expires_at IS NULL OR n.expires_at > $3) AND {}",
            visible_sql("n.", 4)
        );
        if let Some(keep) = keep {
            let rows: Vec<(String, String)> = self.read(|c| {
                c.query(
                    &format!(
                        "SELECT t.tag, n.path FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                         WHERE {filter}"
                    ),
                    &[&lo, &hi, &now, &vis],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
            })?;
            let mut counts: HashMap<String, i64> = HashMap::new();
            for (tag, path) in rows {
                if keep(&path) {
                    *counts.entry(tag).or_insert(0) += 1;
                }
            }
            let mut v: Vec<(String, i64)> = counts.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            return Ok(v);
        }
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT t.tag, count(*) AS uses FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                     WHERE {filter} GROUP BY t.tag ORDER BY uses DESC, t.tag COLLATE \"C\""
                ),
                &[&lo, &hi, &now, &vis],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    /// Counts for `avm stats` below `dir`: `path`, `nodes`, `content_bytes` and `by_prefix`
    /// (per immediate child: `prefix`, `nodes`, `bytes`), over the live nodes `caller` may
    /// see; with `keep` (the caller's read rules, when any could refuse), only the nodes it
    /// keeps count. For the operator at `/`, also the whole store's: `database` (the server
    /// and database, without password), `file_bytes` (the database's size on the server),
    /// `wal_bytes` (0: the server's write-ahead log is shared by all its databases, not this
    /// one's), `versions`, `links`, `events` and `distinct_tags`.
    pub fn stats(&self, dir: &str, caller: &Caller, keep: Option<Keep<'_>>) -> Result<Value> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let filter = format!(
            "path >= $1::text AND path < $2::text AND (expires_at IS NULL OR expires_at > $3) AND {}",
            visible_sql("", 4)
        );
        // (nodes, bytes, per-immediate-child (prefix, nodes, bytes)) the caller may read.
        type Counts = (i64, i64, Vec<(String, i64, i64)>);
        let (nodes, bytes, by_prefix): Counts = match keep {
            Some(keep) => {
                let rows: Vec<(String, i64)> = self.read(|c| {
                    c.query(
                        &format!(
                            "SELECT path, {SIZE_SQL} FROM nodes WHERE {filter} ORDER BY path"
                        ),
                        &[&lo, &hi, &now, &vis],
                    )?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
                })?;
                let (mut nodes, mut bytes) = (0, 0);
                let mut by: Vec<(String, i64, i64)> = Vec::new();
                for (path, size) in rows.into_iter().filter(|(p, _)| keep(p)) {
                    nodes += 1;
                    bytes += size;
                    let rest = path.get(lo.len()..).unwrap_or("");
                    let prefix = match rest.find('/') {
                        Some(i) => format!("{lo}{}", &rest[..i]),
                        None => path.clone(),
                    };
                    match by.last_mut() {
                        Some(last) if last.0 == prefix => {
                            last.1 += 1;
                            last.2 += size;
                        }
                        _ => by.push((prefix, 1, size)),
                    }
                }
                (nodes, bytes, by)
            }
            None => self.read(|c| {
                let r = c.query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum({SIZE_SQL}), 0)::bigint FROM nodes \
                         WHERE {filter}"
                    ),
                    &[&lo, &hi, &now, &vis],
                )?;
                let (nodes, bytes): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                // The immediate child a path is in: `lo` and its first segment after `lo`
                // (the path itself when it is an immediate child).
                let by = c
                    .query(
                        &format!(
                            "SELECT ($1 || split_part(substr(path, char_length($1) + 1), '/', 1)) COLLATE \"C\" AS p, \
                                    count(*), coalesce(sum({SIZE_SQL}), 0)::bigint FROM nodes \
                             WHERE {filter} GROUP BY p ORDER BY p"
                        ),
                        &[&lo, &hi, &now, &vis],
                    )?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<std::result::Result<_, postgres::Error>>()?;
                Ok((nodes, bytes, by))
            })?,
        };
        let global = if caller.agent().is_none() && dir == "/" {
            let (versions, links, events, tags, file_bytes): (i64, i64, i64, i64, i64) =
                self.read(|c| {
                    let r = c.query_one(
                        "SELECT (SELECT count(*) FROM versions), (SELECT count(*) FROM links), \
                         (SELECT count(*) FROM events), (SELECT count(DISTINCT tag) FROM node_tags), \
                         pg_database_size(current_database())",
                        &[],
                    )?;
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                    ))
                })?;
            serde_json::json!({
                "database": self.target(),
                "file_bytes": unsigned(file_bytes),
                "wal_bytes": 0u64,
                "versions": versions,
                "links": links,
                "events": events,
                "distinct_tags": tags,
            })
        } else {
            Value::Null
        };
        let mut out = serde_json::json!({
            "path": dir,
            "nodes": nodes,
            "content_bytes": bytes,
            "by_prefix": by_prefix
                .iter()
                .map(|(p, n, b)| serde_json::json!({"prefix": p, "nodes": n, "bytes": b}))
                .collect::<Vec<_>>(),
        });
        if let (Value::Object(o), Value::Object(g)) = (&mut out, global) {
            o.extend(g);
        }
        Ok(out)
    }
}

/// The node at `path` if it has not expired at `now`.
fn live_node(
    c: &mut Client,
    path: &str,
    now: Micros,
) -> std::result::Result<Option<Arc<Node>>, postgres::Error> {
    let Some(r) = c.query_opt(
        &format!("SELECT {NODE_COLS} FROM nodes WHERE path = $1"),
        &[&path],
    )?
    else {
        return Ok(None);
    };
    let n = node_from_row(&r)?;
    Ok((!n.is_expired(now)).then(|| Arc::new(n)))
}

/// Whether a live node lies below `dir`, or `dir` or a directory below it is in `dirs`.
fn dir_exists(
    c: &mut Client,
    dir: &str,
    now: Micros,
) -> std::result::Result<bool, postgres::Error> {
    let (lo, hi) = subtree_bounds(dir);
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM nodes WHERE path >= $1::text AND path < $2::text \
                        AND (expires_at IS NULL OR expires_at > $3::bigint)) \
             OR EXISTS (SELECT 1 FROM dirs WHERE path = $4::text OR (path >= $1 AND path < $2))",
        &[&lo, &hi, &now, &dir],
    )?
    .try_get(0)
}

/// A file or symbolic link child from a row of the children walk (`path, size, version,
/// updated_at, ftype`).
fn file_entry(r: &postgres::Row, path: String) -> std::result::Result<ChildEntry, postgres::Error> {
    let ftype: Option<String> = r.try_get(4)?;
    Ok(ChildEntry {
        path,
        kind: if ftype.as_deref() == Some("symlink") {
            NodeKind::Symlink
        } else {
            NodeKind::File
        },
        size: unsigned(r.try_get(1)?),
        version: Some(r.try_get(2)?),
        updated_at: Some(r.try_get(3)?),
    })
}

/// The immediate children of the directory whose subtree starts at `lo` that the paths
/// `below` it (in path order) lie in, each once.
fn first_segments(lo: &str, below: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in below {
        let rest = p.get(lo.len()..).unwrap_or("");
        let first = rest.split('/').next().unwrap_or(rest);
        let child = format!("{lo}{first}");
        if out.last() != Some(&child) {
            out.push(child);
        }
    }
    out
}

/// `version, kind, at, author, hash, size, note` → [`VersionInfo`].
fn info_row(r: &postgres::Row) -> std::result::Result<VersionInfo, postgres::Error> {
    Ok(VersionInfo {
        version: r.try_get(0)?,
        kind: r.try_get(1)?,
        at: r.try_get(2)?,
        author: r.try_get(3)?,
        hash: r.try_get(4)?,
        size: r.try_get(5)?,
        note: r.try_get(6)?,
    })
}

/// [`VERSION_COLS`] → the version's info and content.
fn version_row(r: &postgres::Row) -> std::result::Result<(VersionInfo, Content), postgres::Error> {
    Ok((info_row(r)?, content_at(r, 7)?))
}
