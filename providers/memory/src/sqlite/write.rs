//! Write operations, run by the writer thread inside a transaction.
//!
//! Every change writes its events row in the same transaction, so other processes (cache
//! invalidation, later: subscriptions, the embedding queue) see exactly what committed.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use avm_core::address::{basename, is_within, join, parent};
use avm_core::time::{Micros, now_micros, now_nanos, to_iso};
use avm_core::{Attrs, Caller, Content, Error, ErrorKind, NodeKind, Policy, Put, Result};

use crate::fts;
use crate::node::{Node, content_hash};
use crate::record::Record;
use crate::sqlite::db;
use crate::sqlite::fsops::{dir_changed, dir_gone};
use crate::sqlite::store::{NODE_COLS, content_sql, node_from_row, subtree_bounds};

pub use crate::ops::{Outcome, WriteOp};
pub(crate) use crate::rules::{
    EXPIRES_BY, check_expiry, check_sees, check_size, check_writes, is_reserved_dir, may_expire,
    moved_meta, patch,
};

/// What the ops need besides the connection.
pub struct Ctx<'a> {
    /// The database file (for error messages).
    pub file: &'a db::DbFile,
    /// `max_node_bytes`.
    pub max_bytes: u64,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        self.file.err(e)
    }
}

/// Applies one operation inside the caller's transaction.
pub fn apply(conn: &Connection, ctx: &Ctx<'_>, op: &WriteOp) -> Result<Outcome> {
    match op {
        WriteOp::Put {
            path,
            put,
            agent,
            admin,
        } => put_node(conn, ctx, path, put, agent.as_deref(), *admin),
        WriteOp::Remove {
            path,
            recursive,
            hard,
            caller,
            policy,
        } => remove(conn, ctx, path, *recursive, *hard, caller, policy),
        WriteOp::Rename {
            src,
            dst,
            force,
            caller,
            policy,
        } => rename(conn, ctx, src, dst, *force, caller, policy),
        WriteOp::Link {
            source,
            target,
            kind,
            weight,
        } => link(conn, ctx, source, target, kind, *weight),
        WriteOp::Unlink {
            source,
            target,
            kind,
        } => unlink(conn, ctx, source, target, kind.as_deref()),
        WriteOp::Import { record, force } => import(conn, ctx, record, *force),
        WriteOp::SetAttrs { path, set, caller } => {
            crate::sqlite::fsops::set_attrs(conn, ctx, path, set, caller)
        }
        WriteOp::Symlink {
            path,
            target,
            attrs,
            agent,
        } => crate::sqlite::fsops::symlink(conn, ctx, path, target, attrs, agent.as_deref()),
        WriteOp::PosixRename {
            src,
            dst,
            how,
            caller,
            policy,
        } => crate::sqlite::fsops::rename(conn, ctx, src, dst, *how, caller, policy),
        WriteOp::Compact { path, keep } => compact(conn, ctx, path, *keep),
        WriteOp::Topics {
            cursor,
            docs,
            removed,
        } => topics(conn, *cursor, docs, removed).map_err(|e| ctx.err(e)),
        WriteOp::Telemetry(t) => telemetry(conn, t).map_err(|e| ctx.err(e)),
        WriteOp::TermDf(counted) => crate::sqlite::topk::save_counts(conn, counted)
            .map(|count| Outcome {
                count,
                ..Outcome::default()
            })
            .map_err(|e| ctx.err(e)),
        WriteOp::Mkdir { path } => mkdir(conn, ctx, path),
        WriteOp::Vectors {
            cursor,
            model,
            docs,
        } => vectors(conn, *cursor, model, docs).map_err(|e| ctx.err(e)),
        WriteOp::Rmdir { path } => rmdir(conn, ctx, path),
        WriteOp::Mark {
            agent,
            path,
            version,
        } => conn
            .prepare_cached(
                "INSERT INTO marks(agent, node_id, version) SELECT ?1, id, ?3 FROM nodes WHERE path = ?2 \
                 ON CONFLICT(agent, node_id) DO UPDATE SET version = excluded.version",
            )
            .and_then(|mut st| st.execute(params![agent, path, version]))
            .map(|count| Outcome {
                count,
                ..Outcome::default()
            })
            .map_err(|e| ctx.err(e)),
        WriteOp::Tell(t) => conn
            .prepare_cached(
                "INSERT INTO tells(sender, recipient, content, priority, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![t.from, t.to, t.content, t.priority, t.created_at, t.expires_at])
            })
            .map(|_| Outcome {
                count: conn.last_insert_rowid() as usize,
                ..Outcome::default()
            })
            .map_err(|e| ctx.err(e)),
        WriteOp::TellRead { agent, ids } => {
            let mut st = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO tell_reads(tell_id, agent, at) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| ctx.err(e))?;
            let now = now_micros();
            let mut count = 0;
            for id in ids {
                count += st.execute(params![id, agent, now]).map_err(|e| ctx.err(e))?;
            }
            Ok(Outcome {
                count,
                ..Outcome::default()
            })
        }
    }
}

fn topics(
    conn: &Connection,
    cursor: i64,
    docs: &[avm_core::storage::TopicDoc],
    removed: &[i64],
) -> rusqlite::Result<Outcome> {
    let mut del = conn.prepare_cached("DELETE FROM topics WHERE node_id = ?1")?;
    let mut del_doc = conn.prepare_cached("DELETE FROM topic_docs WHERE node_id = ?1")?;
    for id in removed {
        del.execute([id])?;
        del_doc.execute([id])?;
    }
    let mut sig = conn.prepare_cached("SELECT hash || ':' || path FROM nodes WHERE id = ?1")?;
    let mut ins = conn.prepare_cached(
        "INSERT OR REPLACE INTO topics(topic, node_id, weight) VALUES (?1, ?2, ?3)",
    )?;
    let mut doc = conn
        .prepare_cached("INSERT OR REPLACE INTO topic_docs(node_id, signature) VALUES (?1, ?2)")?;
    let mut count = 0;
    for d in docs {
        // Another process may have changed the node since these topics were extracted; its
        // event is still ahead of the cursor of whoever extracted this, so skipping is safe.
        let current: Option<String> = sig.query_row([d.node_id], |r| r.get(0)).optional()?;
        if current.as_deref() != Some(d.signature.as_str()) {
            continue;
        }
        del.execute([d.node_id])?;
        for (topic, weight) in &d.topics {
            ins.execute(params![topic, d.node_id, weight])?;
        }
        doc.execute(params![d.node_id, d.signature])?;
        count += 1;
    }
    conn.prepare_cached(
        "INSERT INTO cursors(name, seq) VALUES ('topics', ?1) \
         ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?
    .execute([cursor])?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

fn vectors(
    conn: &Connection,
    cursor: i64,
    model: &str,
    docs: &[avm_core::storage::VectorDoc],
) -> rusqlite::Result<Outcome> {
    let stamp: i64 =
        conn.query_row("SELECT coalesce(max(stamp), 0) + 1 FROM vectors", [], |r| {
            r.get(0)
        })?;
    let mut put = conn.prepare_cached(
        "INSERT OR REPLACE INTO vectors(node_id, model, hash, vec, stamp) \
         SELECT id, ?2, hash, ?3, ?4 FROM nodes WHERE id = ?1 AND hash = ?5",
    )?;
    // A node's vector of another model leaves that model's set: counted like a deletion, so
    // that the set's stamp (the newest stamp and the deletion count) changes.
    let mut other = conn.prepare_cached(
        "DELETE FROM vectors WHERE node_id = ?1 AND model <> ?2 \
         AND EXISTS (SELECT 1 FROM nodes WHERE id = ?1 AND hash = ?3)",
    )?;
    let mut count = 0;
    let mut left = 0;
    for d in docs {
        let mut blob = Vec::with_capacity(d.vector.len() * 4);
        for x in &d.vector {
            blob.extend_from_slice(&x.to_le_bytes());
        }
        left += other.execute(params![d.node_id, model, d.hash])?;
        count += put.execute(params![d.node_id, model, blob, stamp, d.hash])?;
    }
    if left > 0 {
        conn.prepare_cached("UPDATE cursors SET seq = seq + 1 WHERE name = 'vectors_deleted'")?
            .execute([])?;
    }
    conn.prepare_cached(
        "INSERT INTO cursors(name, seq) VALUES ('embed', ?1) \
         ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?
    .execute([cursor])?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

fn telemetry(conn: &Connection, t: &avm_core::storage::Telemetry) -> rusqlite::Result<Outcome> {
    conn.prepare_cached(
        "INSERT INTO telemetry(at, op, agent, query, tokens_returned, tokens_available, results, latency_us) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        t.at,
        t.op,
        t.agent,
        t.query,
        t.tokens_returned,
        t.tokens_available,
        t.results,
        t.latency_us
    ])?;
    Ok(Outcome {
        count: 1,
        ..Outcome::default()
    })
}

pub(crate) fn load(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<Option<Node>> {
    conn.prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes WHERE path = ?1"))
        .and_then(|mut s| s.query_row([path], node_from_row).optional())
        .map_err(|e| ctx.err(e))
}

/// The live node at `path`; an expired one is purged on the way.
pub(crate) fn load_live(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
    out: &mut Outcome,
) -> Result<Option<Node>> {
    match load(conn, ctx, path)? {
        Some(n) if n.is_expired(now_micros()) => {
            let dst = expire(conn, ctx, &n)?;
            out.changed.push(n.path.clone());
            out.changed.push(dst);
            Ok(None)
        }
        other => Ok(other),
    }
}

pub(crate) fn max_version(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(version), 0) FROM versions WHERE path = ?1")
        .and_then(|mut s| s.query_row([path], |r| r.get(0)))
        .map_err(|e| ctx.err(e))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn add_version(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
    version: i64,
    kind: &str,
    content: &Content,
    author: Option<&str>,
    at: Micros,
    note: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO versions(path, version, kind, content, hash, author, at, note) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            path,
            version,
            kind,
            content_sql(content),
            content_hash(content.as_bytes()),
            author,
            at,
            note
        ])
    })
    .map(drop)
    .map_err(|e| ctx.err(e))
}

pub(crate) fn event(
    conn: &Connection,
    ctx: &Ctx<'_>,
    kind: &str,
    path: &str,
    agent: Option<&str>,
    version: Option<i64>,
    detail: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events(at, kind, path, agent, version, detail) VALUES (?1,?2,?3,?4,?5,?6)",
    )
    .and_then(|mut s| s.execute(params![now_micros(), kind, path, agent, version, detail]))
    .map(drop)
    .map_err(|e| ctx.err(e))
}

pub(crate) fn fts_add(conn: &Connection, ctx: &Ctx<'_>, id: i64, content: &str) -> Result<()> {
    let content = fts::indexed_text(content);
    let content = content.as_ref();
    let r = conn
        .prepare_cached("INSERT INTO nodes_fts(rowid, content) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![id, content]));
    r.map_err(|e| ctx.err(e))?;
    if let Some((uni, bi)) = fts::cjk_document(content) {
        conn.prepare_cached("INSERT INTO nodes_cjk(rowid, uni, bi) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![id, uni, bi]))
            .map_err(|e| ctx.err(e))?;
    }
    Ok(())
}

pub(crate) fn fts_remove(conn: &Connection, ctx: &Ctx<'_>, id: i64, content: &str) -> Result<()> {
    let content = fts::indexed_text(content);
    let content = content.as_ref();
    conn.prepare_cached(
        "INSERT INTO nodes_fts(nodes_fts, rowid, content) VALUES ('delete', ?1, ?2)",
    )
    .and_then(|mut s| s.execute(params![id, content]))
    .map_err(|e| ctx.err(e))?;
    if fts::cjk_document(content).is_some() {
        conn.prepare_cached("DELETE FROM nodes_cjk WHERE rowid = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(|e| ctx.err(e))?;
    }
    Ok(())
}

pub(crate) fn set_tags(conn: &Connection, ctx: &Ctx<'_>, id: i64, tags: &[String]) -> Result<()> {
    conn.prepare_cached("DELETE FROM node_tags WHERE node_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(|e| ctx.err(e))?;
    insert_tags(conn, ctx, id, tags)
}

fn insert_tags(conn: &Connection, ctx: &Ctx<'_>, id: i64, tags: &[String]) -> Result<()> {
    for t in tags {
        conn.prepare_cached("INSERT OR IGNORE INTO node_tags(tag, node_id) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![t, id]))
            .map_err(|e| ctx.err(e))?;
    }
    Ok(())
}

pub(crate) fn has_children(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    let (lo, hi) = subtree_bounds(path);
    conn.prepare_cached(
        "SELECT 1 FROM nodes WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) \
         UNION ALL SELECT 1 FROM dirs WHERE path = ?4 OR (path >= ?1 AND path < ?2) LIMIT 1",
    )
    .and_then(|mut s| s.query_row(params![lo, hi, now_micros(), path], |_| Ok(())).optional())
        .map(|o| o.is_some())
        .map_err(|e| ctx.err(e))
}

/// A new node at `path` must not sit on a file or cover a directory.
pub(crate) fn check_placement(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<()> {
    if is_reserved_dir(path) {
        return Err(Error::new(
            ErrorKind::IsADirectory,
            format!("{path} is a reserved directory, not a node; choose a file name inside it"),
        ));
    }
    if has_children(conn, ctx, path)? {
        return Err(Error::new(
            ErrorKind::IsADirectory,
            format!("{path} is a directory (nodes exist below it); choose a file name inside it"),
        ));
    }
    if let Some(p) = file_ancestor(conn, ctx, path)? {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot create {path}: {p} is a file, not a directory"),
        ));
    }
    Ok(())
}

/// The nearest ancestor of `path` that is a file, if any.
pub(crate) fn file_ancestor(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
) -> Result<Option<String>> {
    let mut p = parent(path);
    while p != "/" {
        if exists(conn, ctx, p)? {
            return Ok(Some(p.to_string()));
        }
        p = parent(p);
    }
    Ok(None)
}

fn put_node(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
    put: &Put,
    agent: Option<&str>,
    admin: bool,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let now = now_micros();
    let now_ns = now_nanos();
    let existing = load_live(conn, ctx, path, &mut out)?;
    let Some(old) = existing else {
        let Some(content) = &put.content else {
            return Err(Error::not_found(path).context("cannot change metadata"));
        };
        check_size(ctx.max_bytes, path, content)?;
        check_placement(conn, ctx, path)?;
        let mut p = patch(None, put)?;
        check_expiry(&mut p, None, agent, now)?;
        let version = max_version(conn, ctx, path)? + 1;
        let hash = content_hash(content.as_bytes());
        let attrs = Attrs {
            mode: put.attrs.mode,
            uid: put.attrs.uid,
            gid: put.attrs.gid,
            mtime: Some(put.attrs.mtime.unwrap_or(now_ns)),
            ctime: Some(now_ns),
            atime: put.attrs.atime,
            nlink: None,
        };
        conn.prepare_cached(
            "INSERT INTO nodes(path, content, meta, tags, importance, author, created_at, updated_at, version, hash, expires_at, mode, uid, gid, mtime_ns, ctime_ns, atime_ns) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
        )
        .and_then(|mut s| {
            s.execute(params![
                path,
                content_sql(content),
                Value::Object(p.meta.clone()).to_string(),
                json!(p.tags).to_string(),
                p.importance,
                agent,
                now,
                version,
                hash,
                p.expires_at,
                attrs.mode,
                attrs.uid,
                attrs.gid,
                attrs.mtime,
                attrs.ctime,
                attrs.atime
            ])
        })
        .map_err(|e| ctx.err(e))?;
        let id = conn.last_insert_rowid();
        let node = Node {
            id,
            path: path.to_string(),
            content: content.clone(),
            kind: NodeKind::File,
            attrs,
            meta: p.meta,
            tags: p.tags,
            importance: p.importance,
            author: agent.map(str::to_string),
            created_at: now,
            updated_at: now,
            accessed_at: None,
            version,
            hash,
            expires_at: p.expires_at,
        };
        fts_add(conn, ctx, id, node.text())?;
        set_tags(conn, ctx, id, &node.tags)?;
        add_version(
            conn, ctx, path, version, "create", content, agent, now, None,
        )?;
        event(conn, ctx, "create", path, agent, Some(version), None)?;
        dir_changed(conn, ctx, path, now_ns)?;
        out.count = 1;
        out.changed.push(path.to_string());
        out.node = Some(node);
        return Ok(out);
    };
    let writer = agent.map_or(Caller::Operator, |a| Caller::Agent(a.to_string()));
    check_sees(&writer, &old)?;
    if put.create_only {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{path} already exists (version {}); write without create-only to update it",
                old.version
            ),
        ));
    }
    if old.kind == NodeKind::Symlink && put.content.is_some() {
        return Err(Error::invalid(format!(
            "{path} is a symbolic link (to {}); write to its target instead",
            old.content.text_or_empty()
        )));
    }
    let content = match (&put.content, put.append) {
        (Some(c), true) => old.content.concat(c),
        (Some(c), false) => c.clone(),
        (None, _) => old.content.clone(),
    };
    check_size(ctx.max_bytes, path, &content)?;
    let mut p = patch(Some(&old), put)?;
    if p.expires_at != old.expires_at {
        may_expire(&writer, &old, admin)?;
        check_expiry(&mut p, Some(&old), agent, now)?;
    }
    let hash = content_hash(content.as_bytes());
    let content_changed = hash != old.hash || content != old.content;
    let meta_changed = p.meta != old.meta
        || p.tags != old.tags
        || p.importance != old.importance
        || p.expires_at != old.expires_at;
    let mut attrs = old.attrs;
    for (new, cur) in [
        (put.attrs.mode, &mut attrs.mode),
        (put.attrs.uid, &mut attrs.uid),
        (put.attrs.gid, &mut attrs.gid),
    ] {
        if new.is_some() {
            *cur = new;
        }
    }
    if let Some(t) = put.attrs.atime {
        attrs.atime = Some(t);
    }
    if let Some(t) = put.attrs.mtime {
        attrs.mtime = Some(t);
    } else if content_changed {
        attrs.mtime = Some(now_ns);
    }
    let attrs_changed = attrs != old.attrs;
    if !content_changed && !meta_changed && !attrs_changed {
        out.node = Some(old);
        return Ok(out);
    }
    attrs.ctime = Some(now_ns);
    if !content_changed && !meta_changed {
        // Only file attributes changed (a write of the same bytes moves the mtime): no
        // version, and `updated_at` stays, as it does for `chmod`.
        update_attrs(conn, ctx, old.id, &attrs)?;
        event(conn, ctx, "attrs", path, agent, Some(old.version), None)?;
        out.count = 1;
        out.changed.push(path.to_string());
        out.node = Some(Node { attrs, ..old });
        return Ok(out);
    }
    // A live node's version is always the newest at its path (moves and restores number
    // from the destination's history), so no history lookup is needed here.
    let version = if content_changed {
        old.version + 1
    } else {
        old.version
    };
    conn.prepare_cached(
        "UPDATE nodes SET content=?2, meta=?3, tags=?4, importance=?5, updated_at=?6, version=?7, hash=?8, expires_at=?9, \
         mode=?10, uid=?11, gid=?12, mtime_ns=?13, ctime_ns=?14, atime_ns=?15 WHERE id=?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            old.id,
            content_sql(&content),
            Value::Object(p.meta.clone()).to_string(),
            json!(p.tags).to_string(),
            p.importance,
            now,
            version,
            hash,
            p.expires_at,
            attrs.mode,
            attrs.uid,
            attrs.gid,
            attrs.mtime,
            attrs.ctime,
            attrs.atime
        ])
    })
    .map_err(|e| ctx.err(e))?;
    let node = Node {
        content,
        meta: p.meta,
        tags: p.tags,
        importance: p.importance,
        updated_at: now,
        version,
        hash,
        expires_at: p.expires_at,
        attrs,
        ..old.clone()
    };
    if content_changed {
        fts_remove(conn, ctx, old.id, old.text())?;
        fts_add(conn, ctx, old.id, node.text())?;
        add_version(
            conn,
            ctx,
            path,
            version,
            "update",
            &node.content,
            agent,
            now,
            None,
        )?;
    }
    if node.tags != old.tags {
        set_tags(conn, ctx, old.id, &node.tags)?;
    }
    let kind = if content_changed { "update" } else { "meta" };
    event(conn, ctx, kind, path, agent, Some(version), None)?;
    out.count = 1;
    out.changed.push(path.to_string());
    out.node = Some(node);
    Ok(out)
}

/// Writes a node's attribute columns.
pub(crate) fn update_attrs(conn: &Connection, ctx: &Ctx<'_>, id: i64, a: &Attrs) -> Result<()> {
    conn.prepare_cached(
        "UPDATE nodes SET mode=?2, uid=?3, gid=?4, mtime_ns=?5, ctime_ns=?6, atime_ns=?7 WHERE id=?1",
    )
    .and_then(|mut s| s.execute(params![id, a.mode, a.uid, a.gid, a.mtime, a.ctime, a.atime]))
    .map(drop)
    .map_err(|e| ctx.err(e))
}

pub(crate) fn hard_delete(
    conn: &Connection,
    ctx: &Ctx<'_>,
    n: &Node,
    kind: &str,
    agent: Option<&str>,
) -> Result<()> {
    let now = now_micros();
    let v = max_version(conn, ctx, &n.path)?.max(n.version) + 1;
    add_version(
        conn,
        ctx,
        &n.path,
        v,
        kind,
        &Content::default(),
        agent,
        now,
        None,
    )?;
    fts_remove(conn, ctx, n.id, n.text())?;
    for sql in [
        "DELETE FROM node_tags WHERE node_id = ?1",
        "DELETE FROM access WHERE node_id = ?1",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([n.id]))
            .map_err(|e| ctx.err(e))?;
    }
    conn.prepare_cached("DELETE FROM links WHERE source = ?1 OR target = ?1")
        .and_then(|mut s| s.execute([&n.path]))
        .map_err(|e| ctx.err(e))?;
    conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")
        .and_then(|mut s| s.execute([n.id]))
        .map_err(|e| ctx.err(e))?;
    event(conn, ctx, kind, &n.path, agent, Some(v), None)?;
    dir_gone(conn, ctx, &n.path, now_nanos())
}

/// Puts node `id` at `path` as version `version` with `meta`, changed now.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_path(
    conn: &Connection,
    ctx: &Ctx<'_>,
    id: i64,
    path: &str,
    version: i64,
    meta: &Map<String, Value>,
    now: Micros,
    now_ns: avm_core::time::Nanos,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE nodes SET path=?2, version=?3, meta=?4, updated_at=?5, ctime_ns=?6 WHERE id=?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            path,
            version,
            Value::Object(meta.clone()).to_string(),
            now,
            now_ns
        ])
    })
    .map(drop)
    .map_err(|e| ctx.err(e))
}

/// Re-points both ends of the links at `from` to `to` (a link already there wins).
pub(crate) fn relink(conn: &Connection, ctx: &Ctx<'_>, from: &str, to: &str) -> Result<()> {
    for sql in [
        "UPDATE OR REPLACE links SET source = ?2 WHERE source = ?1",
        "UPDATE OR REPLACE links SET target = ?2 WHERE target = ?1",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(params![from, to]))
            .map_err(|e| ctx.err(e))?;
    }
    Ok(())
}

/// Records in the history of `n`'s path that it left for `dst` (the path then holds nothing).
pub(crate) fn record_move_out(
    conn: &Connection,
    ctx: &Ctx<'_>,
    n: &Node,
    dst: &str,
    agent: Option<&str>,
    at: Micros,
) -> Result<()> {
    let v = max_version(conn, ctx, &n.path)?.max(n.version) + 1;
    add_version(
        conn,
        ctx,
        &n.path,
        v,
        "move-out",
        &Content::default(),
        agent,
        at,
        Some(dst),
    )
}

/// Moves `n` to `dst`. History stays with each path: the source records `move-out`, the
/// destination continues its own numbering with `kind` (`move-in`, `trash`, `restore`).
fn move_node(
    conn: &Connection,
    ctx: &Ctx<'_>,
    n: &Node,
    dst: &str,
    kind: &str,
    meta: Map<String, Value>,
    agent: Option<&str>,
) -> Result<Node> {
    let now = now_micros();
    record_move_out(conn, ctx, n, dst, agent, now)?;
    let in_v = max_version(conn, ctx, dst)? + 1;
    add_version(
        conn,
        ctx,
        dst,
        in_v,
        kind,
        &n.content,
        agent,
        now,
        Some(&n.path),
    )?;
    let now_ns = now_nanos();
    set_path(conn, ctx, n.id, dst, in_v, &meta, now, now_ns)?;
    relink(conn, ctx, &n.path, dst)?;
    event(conn, ctx, "move", dst, agent, Some(in_v), Some(&n.path))?;
    dir_changed(conn, ctx, dst, now_ns)?;
    dir_gone(conn, ctx, &n.path, now_ns)?;
    Ok(Node {
        path: dst.to_string(),
        version: in_v,
        meta,
        updated_at: now,
        attrs: Attrs {
            ctime: Some(now_ns),
            ..n.attrs
        },
        ..n.clone()
    })
}

/// Deletes the history rows of `path` older than its newest `keep`; `count` = rows removed.
fn compact(conn: &Connection, ctx: &Ctx<'_>, path: &str, keep: usize) -> Result<Outcome> {
    if keep == 0 {
        return Err(Error::invalid(
            "compact keeps at least 1 version (the current one)",
        ));
    }
    let current: Option<i64> = conn
        .prepare_cached("SELECT version FROM nodes WHERE path = ?1")
        .and_then(|mut s| s.query_row(params![path], |r| r.get(0)).optional())
        .map_err(|e| ctx.err(e))?;
    let Some(current) = current else {
        return Err(Error::not_found(path));
    };
    let below = current.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)) + 1;
    let count = conn
        .prepare_cached("DELETE FROM versions WHERE path = ?1 AND version < ?2")
        .and_then(|mut s| s.execute(params![path, below]))
        .map_err(|e| ctx.err(e))?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

pub(crate) fn exists(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM nodes WHERE path = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )
    .and_then(|mut s| {
        s.query_row(params![path, now_micros()], |_| Ok(()))
            .optional()
    })
    .map(|o| o.is_some())
    .map_err(|e| ctx.err(e))
}

/// Soft delete: into `/trash<path>` (with `~2`, `~3`… when taken), remembering where from.
fn to_trash(conn: &Connection, ctx: &Ctx<'_>, n: &Node, agent: Option<&str>) -> Result<Node> {
    trash_as(conn, ctx, n, agent, now_micros(), Map::new())
}

/// [`to_trash`] dated `at` by `agent`, with `extra` metadata on the trash copy.
fn trash_as(
    conn: &Connection,
    ctx: &Ctx<'_>,
    n: &Node,
    agent: Option<&str>,
    at: Micros,
    extra: Map<String, Value>,
) -> Result<Node> {
    let base = format!("/trash{}", n.path);
    let mut dst = base.clone();
    let mut i = 2;
    while exists(conn, ctx, &dst)? || has_children(conn, ctx, &dst)? {
        dst = format!("{base}~{i}");
        i += 1;
    }
    let mut meta = n.meta.clone();
    meta.insert("deleted_at".into(), json!(to_iso(at)));
    meta.insert("deleted_by".into(), json!(agent));
    meta.insert("original_path".into(), json!(n.path));
    meta.extend(extra);
    move_node(conn, ctx, n, &dst, "trash", meta, agent)
}

pub(crate) fn subtree(conn: &Connection, ctx: &Ctx<'_>, dir: &str) -> Result<Vec<Node>> {
    let (lo, hi) = subtree_bounds(dir);
    conn.prepare_cached(&format!(
        "SELECT {NODE_COLS} FROM nodes WHERE path >= ?1 AND path < ?2 ORDER BY path"
    ))
    .and_then(|mut s| s.query_map(params![lo, hi], node_from_row)?.collect())
    .map_err(|e| ctx.err(e))
}

pub(crate) fn check_subtree_visible(
    caller: &Caller,
    dir: &str,
    nodes: &[Node],
    what: &str,
) -> Result<()> {
    if nodes.iter().any(|n| !n.visible_to(caller)) {
        return Err(Error::denied(format!(
            "cannot {what} {dir}: it contains nodes the caller may not see (other agents' private namespaces, or nodes shared with named agents only)"
        )));
    }
    Ok(())
}

fn remove(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
    recursive: bool,
    hard: bool,
    caller: &Caller,
    policy: &Policy,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let agent = caller.agent();
    let now = now_micros();
    let targets: Vec<Node> = match load_live(conn, ctx, path, &mut out)? {
        Some(n) => {
            check_sees(caller, &n)?;
            vec![n]
        }
        None => {
            // An agent removes what it can see; other agents' private nodes, and nodes shared
            // with others only, stay untouched. What it sees must all be removable by the
            // rules, or nothing goes.
            let nodes: Vec<Node> = subtree(conn, ctx, path)?
                .into_iter()
                .filter(|n| n.visible_to(caller))
                .collect();
            check_writes(
                caller,
                policy,
                nodes.iter().map(|n| n.path.as_str()),
                &format!("remove {path}"),
            )?;
            if nodes.is_empty() {
                let explicit = has_children(conn, ctx, path)?;
                if explicit && recursive {
                    drop_dirs(conn, ctx, path)?;
                    event(conn, ctx, "rmdir", path, None, None, None)?;
                    out.changed.push(path.to_string());
                    return Ok(out);
                }
                if explicit {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        format!("{path} is an empty directory; pass -r to remove it"),
                    ));
                }
                return Err(Error::not_found(path));
            }
            if !recursive {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!(
                        "{path} is a directory with {} node(s); pass -r to remove it and everything in it",
                        nodes.len()
                    ),
                ));
            }
            nodes
        }
    };
    if recursive {
        drop_dirs(conn, ctx, path)?;
    }
    for n in targets {
        out.changed.push(n.path.clone());
        if n.is_expired(now) {
            let dst = expire(conn, ctx, &n)?;
            out.changed.push(dst);
            continue;
        }
        if hard || is_within(&n.path, "/trash") {
            hard_delete(conn, ctx, &n, "delete", agent)?;
        } else {
            let moved = to_trash(conn, ctx, &n, agent)?;
            out.changed.push(moved.path.clone());
            out.moves.push((n.path.clone(), moved.path.clone()));
        }
        out.count += 1;
    }
    Ok(out)
}

fn rename(
    conn: &Connection,
    ctx: &Ctx<'_>,
    src: &str,
    dst: &str,
    force: bool,
    caller: &Caller,
    policy: &Policy,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let agent = caller.agent();
    if let Some(n) = load_live(conn, ctx, src, &mut out)? {
        check_sees(caller, &n)?;
        let target = if has_children(conn, ctx, dst)? && !exists(conn, ctx, dst)? {
            join(dst, basename(src))
        } else {
            dst.to_string()
        };
        if target == src {
            out.node = Some(n);
            return Ok(out);
        }
        if !caller.may_see(&target) {
            return Err(Error::denied(format!(
                "cannot move {src} to {target}: another agent's private namespace"
            )));
        }
        check_writes(
            caller,
            policy,
            [src, target.as_str()],
            &format!("move {src}"),
        )?;
        if let Some(existing) = load_live(conn, ctx, &target, &mut out)? {
            check_sees(caller, &existing)?;
            if !force {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{target} already exists; pass --force to overwrite it (the old node goes to the trash)"
                    ),
                ));
            }
            let trashed = to_trash(conn, ctx, &existing, agent)?;
            out.changed.push(trashed.path);
        }
        check_placement(conn, ctx, &target).map_err(|e| e.context(format!("cannot move {src}")))?;
        let (meta, kind) = moved_meta(&n, &target);
        let moved = move_node(conn, ctx, &n, &target, kind, meta, agent)?;
        out.changed.extend([src.to_string(), target.clone()]);
        out.moves.push((src.to_string(), target));
        out.count = 1;
        out.node = Some(moved);
        return Ok(out);
    }
    let nodes = subtree(conn, ctx, src)?;
    let explicit = {
        let (lo, hi) = subtree_bounds(src);
        conn.prepare_cached(
            "SELECT count(*) FROM dirs WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        )
        .and_then(|mut s| s.query_row(params![src, lo, hi], |r| r.get::<_, i64>(0)))
        .map_err(|e| ctx.err(e))?
    };
    if nodes.is_empty() && explicit == 0 {
        return Err(Error::not_found(src).context("mv"));
    }
    check_subtree_visible(caller, src, &nodes, "move")?;
    if exists(conn, ctx, dst)? {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot move directory {src} onto the file {dst}"),
        ));
    }
    if dst == src {
        return Ok(out);
    }
    let base = if has_children(conn, ctx, dst)? {
        join(dst, basename(src))
    } else {
        dst.to_string()
    };
    if base == src {
        return Ok(out);
    }
    if is_within(&base, src) {
        return Err(Error::invalid(format!(
            "cannot move {src} into itself ({base})"
        )));
    }

    let plan: Vec<(Node, String)> = nodes
        .into_iter()
        .map(|n| {
            let rest = n.path[src.len()..].to_string();
            (n, format!("{base}{rest}"))
        })
        .collect();
    // Every node and every target is checked before anything changes.
    check_writes(
        caller,
        policy,
        plan.iter().flat_map(|(n, t)| [n.path.as_str(), t.as_str()]),
        &format!("move {src} to {base}"),
    )?;
    for (_, target) in &plan {
        if !caller.may_see(target) {
            return Err(Error::denied(format!(
                "cannot move {src} to {base}: {target} would land in another agent's private namespace"
            )));
        }
        check_placement(conn, ctx, target)
            .map_err(|e| e.context(format!("cannot move {src} to {base}")))?;
    }
    for (_, target) in &plan {
        if let Some(existing) = load_live(conn, ctx, target, &mut out)? {
            check_sees(caller, &existing)?;
            if !force {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{target} already exists; pass --force to overwrite (old nodes go to the trash)"
                    ),
                ));
            }
            let trashed = to_trash(conn, ctx, &existing, agent)?;
            out.changed.push(trashed.path);
        }
    }
    for (n, target) in plan {
        let (meta, kind) = moved_meta(&n, &target);
        move_node(conn, ctx, &n, &target, kind, meta, agent)?;
        out.changed.extend([n.path.clone(), target.clone()]);
        out.moves.push((n.path, target));
        out.count += 1;
    }
    if explicit > 0 {
        if !caller.may_see(&base) {
            return Err(Error::denied(format!(
                "cannot move {src} to {base}: another agent's private namespace"
            )));
        }
        move_dirs(conn, ctx, src, &base)?;
        event(conn, ctx, "move", src, None, None, Some(&base))?;
        out.changed.extend([src.to_string(), base.clone()]);
    }
    Ok(out)
}

fn mkdir(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
    let mut out = Outcome::default();
    if path == "/" || exists(conn, ctx, path)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists"),
        ));
    }
    if has_children(conn, ctx, path)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists as a directory"),
        ));
    }
    // No directory below a file.
    let mut p = parent(path).to_string();
    while p != "/" {
        if load_live(conn, ctx, &p, &mut out)?.is_some() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("cannot make {path}: {p} is a file"),
            ));
        }
        p = parent(&p).to_string();
    }
    conn.prepare_cached("INSERT INTO dirs(path) VALUES (?1)")
        .and_then(|mut s| s.execute([path]))
        .map_err(|e| ctx.err(e))?;
    let now_ns = now_nanos();
    conn.prepare_cached(
        "INSERT INTO dir_attrs(path, mtime_ns, ctime_ns) VALUES (?1, ?2, ?2) \
         ON CONFLICT(path) DO UPDATE SET mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns",
    )
    .and_then(|mut s| s.execute(params![path, now_ns]))
    .map_err(|e| ctx.err(e))?;
    event(conn, ctx, "mkdir", path, None, None, None)?;
    dir_changed(conn, ctx, path, now_ns)?;
    out.changed.push(path.to_string());
    out.count = 1;
    Ok(out)
}

fn rmdir(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
    let mut out = Outcome::default();
    let (lo, hi) = subtree_bounds(path);
    let below: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM nodes WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) \
             UNION ALL SELECT 1 FROM dirs WHERE path >= ?1 AND path < ?2 LIMIT 1",
        )
        .and_then(|mut s| s.query_row(params![lo, hi, now_micros()], |r| r.get(0)).optional())
        .map_err(|e| ctx.err(e))?;
    if below.is_some() {
        return Err(Error::new(
            ErrorKind::NotEmpty,
            format!("{path} is not empty; remove what is in it first (or delete -r)"),
        ));
    }
    if load_live(conn, ctx, path, &mut out)?.is_some() {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("{path} is a file"),
        ));
    }
    let n = conn
        .prepare_cached("DELETE FROM dirs WHERE path = ?1")
        .and_then(|mut s| s.execute([path]))
        .map_err(|e| ctx.err(e))?;
    if n == 0 {
        return Err(Error::not_found(path));
    }
    conn.prepare_cached("DELETE FROM dir_attrs WHERE path = ?1")
        .and_then(|mut s| s.execute([path]))
        .map_err(|e| ctx.err(e))?;
    event(conn, ctx, "rmdir", path, None, None, None)?;
    dir_gone(conn, ctx, path, now_nanos())?;
    out.changed.push(path.to_string());
    out.count = 1;
    Ok(out)
}

/// Moves explicit directories at and below `src` to `dst`; returns how many moved.
pub(crate) fn move_dirs(conn: &Connection, ctx: &Ctx<'_>, src: &str, dst: &str) -> Result<usize> {
    let (lo, hi) = subtree_bounds(src);
    let rows: Vec<String> = conn
        .prepare_cached("SELECT path FROM dirs WHERE path = ?1 OR (path >= ?2 AND path < ?3)")
        .and_then(|mut s| {
            s.query_map(params![src, lo, hi], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| ctx.err(e))?;
    for p in &rows {
        let target = format!("{dst}{}", &p[src.len()..]);
        conn.prepare_cached("DELETE FROM dirs WHERE path = ?1")
            .and_then(|mut s| s.execute([p]))
            .map_err(|e| ctx.err(e))?;
        conn.prepare_cached("INSERT OR IGNORE INTO dirs(path) VALUES (?1)")
            .and_then(|mut s| s.execute([&target]))
            .map_err(|e| ctx.err(e))?;
    }
    crate::sqlite::fsops::move_dir_attrs(conn, ctx, src, dst)?;
    Ok(rows.len())
}

/// Drops explicit directories at and below `path`.
pub(crate) fn drop_dirs(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<()> {
    let (lo, hi) = subtree_bounds(path);
    for sql in [
        "DELETE FROM dirs WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        "DELETE FROM dir_attrs WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(params![path, lo, hi]))
            .map_err(|e| ctx.err(e))?;
    }
    dir_gone(conn, ctx, path, now_nanos())
}

fn link(
    conn: &Connection,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: &str,
    weight: f64,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    if load_live(conn, ctx, source, &mut out)?.is_none() {
        return Err(Error::not_found(source).context("link"));
    }
    if kind.is_empty()
        || kind.len() > 64
        || kind.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "link type {kind:?} is not valid; use one word such as related, derived, supersedes, contradicts"
        )));
    }
    if !weight.is_finite() {
        return Err(Error::invalid(format!(
            "link weight {weight} is not a finite number"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO links(source, target, kind, weight, created_at) VALUES (?1,?2,?3,?4,?5) \
         ON CONFLICT(source, target, kind) DO UPDATE SET weight = excluded.weight",
    )
    .and_then(|mut s| s.execute(params![source, target, kind, weight, now_micros()]))
    .map_err(|e| ctx.err(e))?;
    event(conn, ctx, "link", source, None, None, Some(target))?;
    out.count = 1;
    out.changed.extend([source.to_string(), target.to_string()]);
    Ok(out)
}

fn unlink(
    conn: &Connection,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: Option<&str>,
) -> Result<Outcome> {
    let n = conn
        .prepare_cached(
            "DELETE FROM links WHERE source = ?1 AND target = ?2 AND (?3 IS NULL OR kind = ?3)",
        )
        .and_then(|mut s| s.execute(params![source, target, kind]))
        .map_err(|e| ctx.err(e))?;
    if n == 0 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no link from {source} to {target}{}",
                kind.map(|k| format!(" of type {k}")).unwrap_or_default()
            ),
        ));
    }
    event(conn, ctx, "unlink", source, None, None, Some(target))?;
    Ok(Outcome {
        count: n,
        changed: vec![source.to_string(), target.to_string()],
        ..Outcome::default()
    })
}

fn import(conn: &Connection, ctx: &Ctx<'_>, r: &Record, force: bool) -> Result<Outcome> {
    let path = r.path.as_str();
    let content = r.decoded()?;
    check_size(ctx.max_bytes, path, &content)?;
    let existing = load(conn, ctx, path)?;
    let has_history = max_version(conn, ctx, path)? > 0;
    if (existing.is_some() || has_history) && !force {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{path} already exists (or has history) in this database; pass --force to replace it"
            ),
        ));
    }
    if let Some(old) = &existing {
        fts_remove(conn, ctx, old.id, old.text())?;
        for sql in [
            "DELETE FROM node_tags WHERE node_id = ?1",
            "DELETE FROM access WHERE node_id = ?1",
            "DELETE FROM nodes WHERE id = ?1",
        ] {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([old.id]))
                .map_err(|e| ctx.err(e))?;
        }
    }
    if existing.is_none() {
        check_placement(conn, ctx, path)?;
    }
    for sql in [
        "DELETE FROM versions WHERE path = ?1",
        "DELETE FROM links WHERE source = ?1",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([path]))
            .map_err(|e| ctx.err(e))?;
    }
    let created = r.time("created_at", &r.created_at)?;
    let updated = r.time("updated_at", &r.updated_at)?;
    let accessed = r
        .accessed_at
        .as_deref()
        .map(|t| r.time("accessed_at", t))
        .transpose()?;
    let expires = r
        .expires_at
        .as_deref()
        .map(|t| r.time("expires_at", t))
        .transpose()?;
    let updated_ns = updated.saturating_mul(1000);
    conn.prepare_cached(
        "INSERT INTO nodes(path, content, meta, tags, importance, author, created_at, updated_at, version, hash, expires_at, ftype, mode, uid, gid, mtime_ns, ctime_ns, atime_ns) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
    )
    .and_then(|mut s| {
        s.execute(params![
            path,
            content_sql(&content),
            Value::Object(r.meta.clone()).to_string(),
            json!(r.tags).to_string(),
            r.importance,
            r.author,
            created,
            updated,
            r.version,
            content_hash(content.as_bytes()),
            expires,
            r.is_symlink().then_some("symlink"),
            r.mode,
            r.uid,
            r.gid,
            r.mtime_ns.unwrap_or(updated_ns),
            updated_ns,
            r.atime_ns
        ])
    })
    .map_err(|e| ctx.err(e))?;
    let id = conn.last_insert_rowid();
    let indexed = !r.is_symlink() && content.is_text();
    fts_add(
        conn,
        ctx,
        id,
        if indexed { content.text_or_empty() } else { "" },
    )?;
    set_tags(conn, ctx, id, &r.tags)?;
    if let Some(at) = accessed {
        conn.prepare_cached("INSERT OR REPLACE INTO access(node_id, at) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, at]))
            .map_err(|e| ctx.err(e))?;
    }
    for v in &r.versions {
        let at = r.time("versions.at", &v.at)?;
        add_version(
            conn,
            ctx,
            path,
            v.version,
            &v.kind,
            &r.version_content(v)?,
            v.author.as_deref(),
            at,
            v.note.as_deref(),
        )?;
    }
    for l in &r.links {
        let at = r.time("links.created_at", &l.created_at)?;
        conn.prepare_cached("INSERT OR REPLACE INTO links(source, target, kind, weight, created_at) VALUES (?1,?2,?3,?4,?5)")
            .and_then(|mut s| s.execute(params![path, l.target, l.kind, l.weight, at]))
            .map_err(|e| ctx.err(e))?;
    }
    event(conn, ctx, "import", path, None, Some(r.version), None)?;
    if existing.is_none() {
        dir_changed(conn, ctx, path, now_nanos())?;
    }
    Ok(Outcome {
        count: 1,
        changed: vec![path.to_string()],
        ..Outcome::default()
    })
}

/// Is any node expired right now?
pub fn has_expired(conn: &Connection) -> bool {
    conn.prepare_cached(
        "SELECT 1 FROM nodes WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1",
    )
    .and_then(|mut s| s.query_row([now_micros()], |_| Ok(())).optional())
    .is_ok_and(|o| o.is_some())
}

/// Deletes up to 1000 expired nodes; returns their paths.
pub fn purge_expired(conn: &Connection, file: &db::DbFile) -> Result<Vec<String>> {
    let ctx = Ctx {
        file,
        max_bytes: u64::MAX,
    };
    let nodes: Vec<Node> = conn
        .prepare_cached(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1000"
        ))
        .and_then(|mut s| s.query_map([now_micros()], node_from_row)?.collect())
        .map_err(|e| ctx.err(e))?;
    let mut paths = Vec::new();
    for n in nodes {
        paths.push(expire(conn, &ctx, &n)?);
        paths.push(n.path);
    }
    Ok(paths)
}

/// An expired node goes to the trash with its history, as a delete by whoever set its TTL
/// (`expires_by`) would: the `expire` entry in its history and events names them, and the
/// trash copy keeps no TTL (it is purged with the trash, after `trash_retention`).
pub(crate) fn expire(conn: &Connection, ctx: &Ctx<'_>, n: &Node) -> Result<String> {
    let by = n
        .meta
        .get(EXPIRES_BY)
        .and_then(Value::as_str)
        .filter(|a| *a != "operator")
        .map(str::to_string);
    let at = n.expires_at.unwrap_or_else(now_micros);
    let mut extra = Map::new();
    extra.insert("expired_at".into(), json!(to_iso(at)));
    let moved = trash_as(conn, ctx, n, by.as_deref(), at, extra)?;
    let dst = moved.path.clone();
    conn.prepare_cached("UPDATE nodes SET expires_at = NULL WHERE id = ?1")
        .and_then(|mut s| s.execute([moved.id]))
        .map_err(|e| ctx.err(e))?;
    event(
        conn,
        ctx,
        "expire",
        &n.path,
        by.as_deref(),
        Some(n.version),
        Some(&dst),
    )?;
    Ok(dst)
}

/// Writes buffered access times (never moving them backwards).
pub fn flush_touches(conn: &Connection, touches: &HashMap<i64, (String, Micros)>) {
    for (id, (_, at)) in touches {
        let _ = conn
            .prepare_cached(
                "INSERT INTO access(node_id, at) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM nodes WHERE id = ?1) \
                 ON CONFLICT(node_id) DO UPDATE SET at = max(at, excluded.at)",
            )
            .and_then(|mut s| s.execute(params![id, at]));
    }
}
