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

mod expiry;
mod import;
mod links;
mod tree;

pub(crate) use expiry::expire;
pub use expiry::{flush_touches, has_expired, purge_expired};
use import::import;
use links::{link, unlink};
pub(crate) use tree::{check_subtree_visible, exists, record_move_out, relink, set_path, subtree};
use tree::{compact, mkdir, remove, rename, rmdir, trash_as};

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
