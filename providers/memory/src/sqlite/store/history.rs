//! Reads of what a node was and what it touches: history and versions, links, tag counts and
//! statistics.

use super::*;

impl Store {
    /// History of `path`, newest first.
    pub fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note FROM versions \
                 WHERE path = ?1 ORDER BY version DESC LIMIT ?2",
            )?
                        .query_map(params![path, limit as i64], info_row)?
            .collect()
        })
    }

    /// Content and info of `path` at `version`.
    pub fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 AND version = ?2",
            )?
            .query_row(params![path, version], version_row)
            .optional()
        })
    }

    /// The version of `path` in force at time `at`.
    pub fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 AND at <= ?2 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![path, at], version_row)
            .optional()
        })
    }

    /// Links from and to `path` that `caller` may see.
    pub fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        // The far end of each link must be visible to the caller, by the same rule as the node
        // itself would be (a path with no node is judged by its path).
        let vis = viewer(caller);
        let rows: Vec<Link> = self.read_conn(|c| {
            c.prepare_cached(
                "SELECT l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                   LEFT JOIN nodes e ON e.path = l.target \
                   WHERE l.source = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2) \
                   AND avm_visible(l.target, e.author, e.meta, ?3) \
                 UNION ALL SELECT l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                   LEFT JOIN nodes e ON e.path = l.source \
                   WHERE l.target = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2) \
                   AND avm_visible(l.source, e.author, e.meta, ?3)",
            )?
            .query_map(params![path, now_micros(), vis], |r| {
                Ok(Link {
                    source: r.get(0)?,
                    target: r.get(1)?,
                    kind: r.get(2)?,
                    weight: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect()
        })?;
        let (out, inc): (Vec<Link>, Vec<Link>) = rows
            .into_iter()
            .filter(|l| caller.may_see(&l.source) && caller.may_see(&l.target))
            .partition(|l| l.source == path);
        Ok((out, inc))
    }

    /// Tag counts below `dir` visible to `caller`, most used first.
    /// With `keep` (the caller's read rules, when any could refuse), only the nodes it keeps
    /// count.
    pub fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        if let Some(keep) = keep {
            let rows: Vec<(String, String)> = self.read_conn(|c| {
                c.prepare_cached(&format!(
                    "SELECT t.tag, n.path FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                     WHERE n.path >= ?1 AND n.path < ?2 AND (n.expires_at IS NULL OR n.expires_at > ?3) AND {}",
                    visible_sql("n.", 4)
                ))?
                .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
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
        self.read_conn(|c| {
            c.prepare_cached(&format!(
                "SELECT t.tag, count(*) AS n FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                 WHERE n.path >= ?1 AND n.path < ?2 AND (n.expires_at IS NULL OR n.expires_at > ?3) AND {} \
                 GROUP BY t.tag ORDER BY n DESC, t.tag",
                visible_sql("n.", 4)
            ))?
            .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Counts for `avm stats` below `dir`; with `keep` (the caller's read rules, when any could
    /// refuse), only the nodes it keeps count.
    pub fn stats(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Value> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        // SQLite's substr/instr count characters, not bytes.
        let cut = lo.chars().count() as i64 + 1;
        // (nodes, bytes, per-top-level-directory (name, nodes, bytes)) the caller may read.
        type Counts = (i64, i64, Vec<(String, i64, i64)>);
        let counted = |c: &Connection| -> rusqlite::Result<Counts> {
            let Some(keep) = keep else {
                return Ok((0, 0, Vec::new()));
            };
            let rows: Vec<(String, i64)> = c
                .prepare_cached(&format!(
                    "SELECT path, length(CAST(content AS BLOB)) FROM nodes \
                     WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {} \
                     ORDER BY path",
                    visible_sql("", 4)
                ))?
                .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let (mut nodes, mut bytes) = (0, 0);
            let mut by: Vec<(String, i64, i64)> = Vec::new();
            for (path, size) in rows.into_iter().filter(|(p, _)| keep(p)) {
                nodes += 1;
                bytes += size;
                let rest = &path[lo.len()..];
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
            Ok((nodes, bytes, by))
        };
        let (nodes, bytes, by_prefix) = self.read_conn(|c| {
            if keep.is_some() {
                return counted(c);
            }
            let (nodes, bytes): (i64, i64) = c.prepare_cached(&format!(
                "SELECT count(*), coalesce(sum(length(CAST(content AS BLOB))),0) FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {}",
                visible_sql("", 4)
            ))?
            .query_row(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let by: Vec<(String, i64, i64)> = c.prepare_cached(&format!(
                "SELECT CASE WHEN instr(substr(path, ?5), '/') > 0 \
                        THEN substr(path, 1, ?5 + instr(substr(path, ?5), '/') - 2) ELSE path END AS p, \
                        count(*), coalesce(sum(length(CAST(content AS BLOB))),0) FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {} GROUP BY p ORDER BY p",
                visible_sql("", 4)
            ))?
            .query_map(params![lo, hi, now, vis, cut], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
            Ok((nodes, bytes, by))
        })?;
        let global = if caller.agent().is_none() && dir == "/" {
            let (versions, links, events, tags): (i64, i64, i64, i64) = self.read_conn(|c| {
                c.query_row(
                    "SELECT (SELECT count(*) FROM versions), (SELECT count(*) FROM links), \
                     (SELECT count(*) FROM events), (SELECT count(DISTINCT tag) FROM node_tags)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
            })?;
            let file_bytes = std::fs::metadata(&self.shared.path)
                .map(|m| m.len())
                .unwrap_or(0);
            let wal_bytes = std::fs::metadata(format!("{}-wal", self.shared.path.display()))
                .map(|m| m.len())
                .unwrap_or(0);
            serde_json::json!({
                "database": self.shared.path.display().to_string(),
                "file_bytes": file_bytes,
                "wal_bytes": wal_bytes,
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
            "by_prefix": by_prefix.iter().map(|(p, n, b)| serde_json::json!({"prefix": p, "nodes": n, "bytes": b})).collect::<Vec<_>>(),
        });
        if let (Value::Object(o), Value::Object(g)) = (&mut out, global) {
            o.extend(g);
        }
        Ok(out)
    }

    /// All versions of `path`, oldest first, with content (export).
    pub fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 ORDER BY version",
            )?
            .query_map([path], version_row)?
            .collect()
        })
    }
}

/// `version, kind, at, author, hash, size, note` → [`VersionInfo`].
fn info_row(r: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        version: r.get(0)?,
        kind: r.get(1)?,
        at: r.get(2)?,
        author: r.get(3)?,
        hash: r.get(4)?,
        size: r.get(5)?,
        note: r.get(6)?,
    })
}

/// The same columns plus `content`.
fn version_row(r: &Row<'_>) -> rusqlite::Result<(VersionInfo, Content)> {
    Ok((info_row(r)?, content_at(r, 7)?))
}
