//! Write operations of the PostgreSQL engine, ported from the SQLite engine's
//! ([`crate::sqlite::write`]) with the same outcomes, history rows, events and refusals.
//!
//! Every write runs in [`PgStore::write`]'s transaction, which holds the engine-wide write
//! lock, so writers take turns as SQLite's single writer does. A batch commits together, each
//! write inside its own savepoint, so a refused write is rolled back alone. Expired nodes are
//! purged at the start of a write when this process has not purged for a while.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use avm_postgres::{Queries, Tx};
use postgres::types::ToSql;
use serde_json::{Map, Value, json};

use avm_core::address::{basename, is_within, join, parent};
use avm_core::time::{Micros, now_micros, now_nanos, to_iso};
use avm_core::{Attrs, Caller, Content, Error, ErrorKind, NodeKind, Policy, Put, Result};

use crate::node::{Node, content_hash};
use crate::ops::{Outcome, WriteOp};
use crate::postgres::fts::document;
use crate::postgres::{
    Ctx, NODE_COLS, PgStore, content_params, event, node_from_row, subtree_bounds,
};
use crate::record::Record;
pub(crate) use crate::rules::{
    EXPIRES_BY, check_expiry, check_sees, check_size, check_writes, is_reserved_dir, may_expire,
    moved_meta, patch,
};
pub(crate) use crate::sqlite::write::check_subtree_visible;

mod expiry;
mod fsops;
mod import;
mod links;
mod put;
mod services;
mod tree;

pub(crate) use expiry::{expire, purge_expired};
pub(crate) use fsops::{dir_changed, dir_gone, move_dir_attrs};
use import::import;
use links::{link, unlink};
use put::put_node;
pub(crate) use put::update_attrs;
use services::{telemetry, topics, vectors};
use tree::{compact, mkdir, remove, rename, rmdir, trash_as};
pub(crate) use tree::{dirs_at, record_move_out, relink, set_path, subtree};

/// How long this process goes without purging expired nodes before a write purges them.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// A statement's parameters.
pub(crate) type Args<'a> = [&'a (dyn ToSql + Sync)];

impl PgStore {
    /// Applies one write in a transaction of its own; answers once it committed.
    pub fn apply(&self, op: WriteOp) -> Result<Outcome> {
        let purge = self.purge_due();
        self.write(|tx, ctx| {
            if purge && purge_quietly(tx, ctx)? > 0 {
                // The purge commits even when the write is refused.
                return savepointed(tx, ctx, &op);
            }
            apply_op(tx, ctx, &op).map(Ok)
        })
        .and_then(|r| r)
    }

    /// Applies `ops` in one transaction (group commit), each in a savepoint of its own: a
    /// refused write is rolled back alone and answered with its error while the others
    /// commit. When the transaction itself fails, every write is answered with that error.
    pub fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>> {
        if ops.len() <= 1 {
            return ops.into_iter().map(|op| self.apply(op)).collect();
        }
        let purge = self.purge_due();
        let r = self.write(|tx, ctx| {
            if purge {
                purge_quietly(tx, ctx)?;
            }
            let mut outs = Vec::with_capacity(ops.len());
            for op in &ops {
                outs.push(savepointed(tx, ctx, op)?);
            }
            Ok(outs)
        });
        match r {
            Ok(outs) => outs,
            Err(e) => ops.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Nothing is pending: PostgreSQL's commits are durable once acknowledged.
    pub fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Whether this write should purge expired nodes first (at most once per
    /// [`PURGE_EVERY`] in this process); claims the turn when it should.
    fn purge_due(&self) -> bool {
        let Ok(mut last) = self.state.last_purge.lock() else {
            return false;
        };
        if last.elapsed() >= PURGE_EVERY {
            *last = Instant::now();
            true
        } else {
            false
        }
    }
}

/// Runs `op` inside a savepoint: `Ok(Err(e))` when the op was refused and rolled back alone,
/// `Err` when the transaction itself failed.
fn savepointed(tx: &mut Tx<'_>, ctx: &Ctx<'_>, op: &WriteOp) -> Result<Result<Outcome>> {
    let before = ctx.last_event.get();
    let mut sp = tx.savepoint("op").map_err(|e| ctx.err(e))?;
    match apply_op(&mut sp, ctx, op) {
        Ok(o) => {
            sp.commit().map_err(|e| ctx.err(e))?;
            Ok(Ok(o))
        }
        Err(e) => {
            sp.rollback().map_err(|e| ctx.err(e))?;
            // Its events are gone with it: the notification names the newest one that stays.
            ctx.last_event.set(before);
            Ok(Err(e))
        }
    }
}

/// Purges expired nodes in a savepoint; a purge that fails is rolled back and ignored (as the
/// SQLite writer ignores it). Returns how many nodes went.
fn purge_quietly(tx: &mut Tx<'_>, ctx: &Ctx<'_>) -> Result<usize> {
    let any = tx
        .query_opt(
            "SELECT 1 FROM nodes WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1",
            &[&now_micros()],
        )
        .map_err(|e| ctx.err(e))?
        .is_some();
    if !any {
        return Ok(0);
    }
    let before = ctx.last_event.get();
    let mut sp = tx.savepoint("purge").map_err(|e| ctx.err(e))?;
    match purge_expired(&mut sp, ctx) {
        Ok(paths) => {
            sp.commit().map_err(|e| ctx.err(e))?;
            Ok(paths.len() / 2)
        }
        Err(_) => {
            sp.rollback().map_err(|e| ctx.err(e))?;
            ctx.last_event.set(before);
            Ok(0)
        }
    }
}

/// Applies one operation inside the caller's transaction.
pub(crate) fn apply_op(tx: &mut Tx<'_>, ctx: &Ctx<'_>, op: &WriteOp) -> Result<Outcome> {
    match op {
        WriteOp::Put {
            path,
            put,
            agent,
            admin,
        } => put_node(tx, ctx, path, put, agent.as_deref(), *admin),
        WriteOp::Remove {
            path,
            recursive,
            hard,
            caller,
            policy,
        } => remove(tx, ctx, path, *recursive, *hard, caller, policy),
        WriteOp::Rename {
            src,
            dst,
            force,
            caller,
            policy,
        } => rename(tx, ctx, src, dst, *force, caller, policy),
        WriteOp::Link {
            source,
            target,
            kind,
            weight,
        } => link(tx, ctx, source, target, kind, *weight),
        WriteOp::Unlink {
            source,
            target,
            kind,
        } => unlink(tx, ctx, source, target, kind.as_deref()),
        WriteOp::Import { record, force } => import(tx, ctx, record, *force),
        WriteOp::SetAttrs { path, set, caller } => fsops::set_attrs(tx, ctx, path, set, caller),
        WriteOp::Symlink {
            path,
            target,
            attrs,
            agent,
        } => fsops::symlink(tx, ctx, path, target, attrs, agent.as_deref()),
        WriteOp::PosixRename {
            src,
            dst,
            how,
            caller,
            policy,
        } => fsops::rename(tx, ctx, src, dst, *how, caller, policy),
        WriteOp::Compact { path, keep } => compact(tx, ctx, path, *keep),
        WriteOp::Topics {
            cursor,
            docs,
            removed,
        } => topics(tx, ctx, *cursor, docs, removed),
        WriteOp::Telemetry(t) => telemetry(tx, ctx, t),
        // A cache of the SQLite engine's ranker; PostgreSQL keeps its own statistics.
        WriteOp::TermDf(_) => Ok(Outcome::default()),
        WriteOp::Mkdir { path } => mkdir(tx, ctx, path),
        WriteOp::Vectors {
            cursor,
            model,
            docs,
        } => vectors(tx, ctx, *cursor, model, docs),
        WriteOp::Rmdir { path } => rmdir(tx, ctx, path),
        WriteOp::Mark {
            agent,
            path,
            version,
        } => exec(
            tx,
            ctx,
            "INSERT INTO marks(agent, node_id, version) SELECT $1, id, $3 FROM nodes WHERE path = $2 \
             ON CONFLICT (agent, node_id) DO UPDATE SET version = excluded.version",
            &[agent, path, version],
        )
        .map(|count| Outcome {
            count,
            ..Outcome::default()
        }),
        WriteOp::Tell(t) => {
            let id: i64 = query_one(
                tx,
                ctx,
                "INSERT INTO tells(sender, recipient, content, priority, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &t.from,
                    &t.to,
                    &t.content,
                    &t.priority,
                    &t.created_at,
                    &t.expires_at,
                ],
            )
            .and_then(|r| r.try_get(0).map_err(|e| ctx.err(e)))?;
            Ok(Outcome {
                count: id as usize,
                ..Outcome::default()
            })
        }
        WriteOp::TellRead { agent, ids } => {
            let mut unique: Vec<i64> = Vec::with_capacity(ids.len());
            for id in ids {
                if !unique.contains(id) {
                    unique.push(*id);
                }
            }
            let count = exec(
                tx,
                ctx,
                "INSERT INTO tell_reads(tell_id, agent, at) SELECT unnest($1::bigint[]), $2, $3 \
                 ON CONFLICT DO NOTHING",
                &[&unique, agent, &now_micros()],
            )?;
            Ok(Outcome {
                count,
                ..Outcome::default()
            })
        }
    }
}

/// Runs a statement; returns how many rows it changed.
pub(crate) fn exec(tx: &mut Tx<'_>, ctx: &Ctx<'_>, sql: &str, args: &Args<'_>) -> Result<usize> {
    tx.execute(sql, args)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .map_err(|e| ctx.err(e))
}

/// Runs a query; returns its rows.
pub(crate) fn query(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    sql: &str,
    args: &Args<'_>,
) -> Result<Vec<postgres::Row>> {
    tx.query(sql, args).map_err(|e| ctx.err(e))
}

/// Runs a query of at most one row.
pub(crate) fn query_opt(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    sql: &str,
    args: &Args<'_>,
) -> Result<Option<postgres::Row>> {
    tx.query_opt(sql, args).map_err(|e| ctx.err(e))
}

/// Runs a query of exactly one row.
pub(crate) fn query_one(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    sql: &str,
    args: &Args<'_>,
) -> Result<postgres::Row> {
    tx.query_one(sql, args).map_err(|e| ctx.err(e))
}

/// Column `i` of `r`.
pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(
    ctx: &Ctx<'_>,
    r: &'a postgres::Row,
    i: usize,
) -> Result<T> {
    r.try_get(i).map_err(|e| ctx.err(e))
}

/// Nodes from rows of [`NODE_COLS`].
pub(crate) fn nodes(ctx: &Ctx<'_>, rows: &[postgres::Row]) -> Result<Vec<Node>> {
    rows.iter()
        .map(|r| node_from_row(r).map_err(|e| ctx.err(e)))
        .collect()
}

/// A mode, owner or group as its `bigint` column.
pub(crate) fn int(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

/// The node at `path` (expired or not).
pub(crate) fn load(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<Option<Node>> {
    query_opt(
        tx,
        ctx,
        &format!("SELECT {NODE_COLS} FROM nodes WHERE path = $1"),
        &[&path],
    )?
    .map(|r| node_from_row(&r).map_err(|e| ctx.err(e)))
    .transpose()
}

/// The live node at `path`; an expired one is purged on the way.
pub(crate) fn load_live(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    path: &str,
    out: &mut Outcome,
) -> Result<Option<Node>> {
    match load(tx, ctx, path)? {
        Some(n) if n.is_expired(now_micros()) => {
            let dst = expire(tx, ctx, &n)?;
            out.changed.push(n.path.clone());
            out.changed.push(dst);
            Ok(None)
        }
        other => Ok(other),
    }
}

/// The newest version in `path`'s history (0: none).
pub(crate) fn max_version(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<i64> {
    let r = query_one(
        tx,
        ctx,
        "SELECT coalesce(max(version), 0)::bigint FROM versions WHERE path = $1",
        &[&path],
    )?;
    col(ctx, &r, 0)
}

/// Appends a row to `path`'s history.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_version(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    path: &str,
    version: i64,
    kind: &str,
    content: &Content,
    author: Option<&str>,
    at: Micros,
    note: Option<&str>,
) -> Result<()> {
    let (text, bytes) = content_params(content);
    exec(
        tx,
        ctx,
        "INSERT INTO versions(path, version, kind, content, bytes, hash, author, at, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &path,
            &version,
            &kind,
            &text,
            &bytes,
            &content_hash(content.as_bytes()),
            &author,
            &at,
            &note,
        ],
    )
    .map(drop)
}

/// Replaces node `id`'s tag rows.
pub(crate) fn set_tags(tx: &mut Tx<'_>, ctx: &Ctx<'_>, id: i64, tags: &[String]) -> Result<()> {
    exec(tx, ctx, "DELETE FROM node_tags WHERE node_id = $1", &[&id])?;
    insert_tags(tx, ctx, id, tags)
}

fn insert_tags(tx: &mut Tx<'_>, ctx: &Ctx<'_>, id: i64, tags: &[String]) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    exec(
        tx,
        ctx,
        "INSERT INTO node_tags(tag, node_id) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING",
        &[&tags, &id],
    )
    .map(drop)
}

/// Whether anything lives below `path` (a live node, or an explicit directory at or below it).
pub(crate) fn has_children(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    let (lo, hi) = subtree_bounds(path);
    query_opt(
        tx,
        ctx,
        "SELECT 1 FROM nodes WHERE path >= $1 AND path < $2 AND (expires_at IS NULL OR expires_at > $3) \
         UNION ALL SELECT 1 FROM dirs WHERE path = $4 OR (path >= $1 AND path < $2) LIMIT 1",
        &[&lo, &hi, &now_micros(), &path],
    )
    .map(|o| o.is_some())
}

/// A new node at `path` must not sit on a file or cover a directory.
pub(crate) fn check_placement(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<()> {
    if is_reserved_dir(path) {
        return Err(Error::new(
            ErrorKind::IsADirectory,
            format!("{path} is a reserved directory, not a node; choose a file name inside it"),
        ));
    }
    if has_children(tx, ctx, path)? {
        return Err(Error::new(
            ErrorKind::IsADirectory,
            format!("{path} is a directory (nodes exist below it); choose a file name inside it"),
        ));
    }
    if let Some(p) = file_ancestor(tx, ctx, path)? {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot create {path}: {p} is a file, not a directory"),
        ));
    }
    Ok(())
}

/// The nearest ancestor of `path` that is a (live) file, if any.
pub(crate) fn file_ancestor(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<Option<String>> {
    let mut ancestors: Vec<String> = Vec::new();
    let mut p = parent(path);
    while p != "/" {
        ancestors.push(p.to_string());
        p = parent(p);
    }
    if ancestors.is_empty() {
        return Ok(None);
    }
    // The nearest is the longest.
    query_opt(
        tx,
        ctx,
        "SELECT path FROM nodes WHERE path = ANY($1::text[]) \
         AND (expires_at IS NULL OR expires_at > $2) ORDER BY length(path) DESC LIMIT 1",
        &[&ancestors, &now_micros()],
    )?
    .map(|r| col(ctx, &r, 0))
    .transpose()
}
