//! Deleting, trashing, renaming and moving nodes and subtrees, and explicit directories.

use super::*;

fn hard_delete(
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
pub(super) fn compact(
    conn: &Connection,
    ctx: &Ctx<'_>,
    path: &str,
    keep: usize,
) -> Result<Outcome> {
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
pub(super) fn trash_as(
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

pub(super) fn remove(
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

pub(super) fn rename(
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

pub(super) fn mkdir(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
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

pub(super) fn rmdir(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
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
fn move_dirs(conn: &Connection, ctx: &Ctx<'_>, src: &str, dst: &str) -> Result<usize> {
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
fn drop_dirs(conn: &Connection, ctx: &Ctx<'_>, path: &str) -> Result<()> {
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
