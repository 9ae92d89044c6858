//! Deleting, trashing, renaming and moving nodes and subtrees, and explicit directories.

use super::*;

fn hard_delete(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    n: &Node,
    kind: &str,
    agent: Option<&str>,
) -> Result<()> {
    let now = now_micros();
    let v = max_version(tx, ctx, &n.path)?.max(n.version) + 1;
    add_version(
        tx,
        ctx,
        &n.path,
        v,
        kind,
        &Content::default(),
        agent,
        now,
        None,
    )?;
    // The row's full text goes with it; the delete trigger drops its read time, topics,
    // markers and vector.
    exec(
        tx,
        ctx,
        "DELETE FROM node_tags WHERE node_id = $1",
        &[&n.id],
    )?;
    exec(
        tx,
        ctx,
        "DELETE FROM links WHERE source = $1 OR target = $1",
        &[&n.path],
    )?;
    exec(tx, ctx, "DELETE FROM nodes WHERE id = $1", &[&n.id])?;
    event(tx, ctx, kind, &n.path, agent, Some(v), None)?;
    dir_gone(tx, ctx, &n.path, now_nanos())
}

/// Puts node `id` at `path` as version `version` with `meta`, changed now.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_path(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    id: i64,
    path: &str,
    version: i64,
    meta: &Map<String, Value>,
    now: Micros,
    now_ns: avm_core::time::Nanos,
) -> Result<()> {
    exec(
        tx,
        ctx,
        "UPDATE nodes SET path = $2, version = $3, meta = $4, updated_at = $5, ctime_ns = $6 WHERE id = $1",
        &[
            &id,
            &path,
            &version,
            &Value::Object(meta.clone()),
            &now,
            &now_ns,
        ],
    )
    .map(drop)
}

/// Re-points both ends of the links at `from` to `to`. A moved link replaces one already
/// there (as SQLite's `UPDATE OR REPLACE` does).
pub(crate) fn relink(tx: &mut Tx<'_>, ctx: &Ctx<'_>, from: &str, to: &str) -> Result<()> {
    if from == to {
        return Ok(());
    }
    for sql in [
        "DELETE FROM links l WHERE l.source = $2 AND EXISTS \
         (SELECT 1 FROM links m WHERE m.source = $1 AND m.target = l.target AND m.kind = l.kind)",
        "UPDATE links SET source = $2 WHERE source = $1",
        "DELETE FROM links l WHERE l.target = $2 AND EXISTS \
         (SELECT 1 FROM links m WHERE m.target = $1 AND m.source = l.source AND m.kind = l.kind)",
        "UPDATE links SET target = $2 WHERE target = $1",
    ] {
        exec(tx, ctx, sql, &[&from, &to])?;
    }
    Ok(())
}

/// Records in the history of `n`'s path that it left for `dst` (the path then holds nothing).
pub(crate) fn record_move_out(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    n: &Node,
    dst: &str,
    agent: Option<&str>,
    at: Micros,
) -> Result<()> {
    let v = max_version(tx, ctx, &n.path)?.max(n.version) + 1;
    add_version(
        tx,
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
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    n: &Node,
    dst: &str,
    kind: &str,
    meta: Map<String, Value>,
    agent: Option<&str>,
) -> Result<Node> {
    let now = now_micros();
    record_move_out(tx, ctx, n, dst, agent, now)?;
    let in_v = max_version(tx, ctx, dst)? + 1;
    add_version(
        tx,
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
    set_path(tx, ctx, n.id, dst, in_v, &meta, now, now_ns)?;
    relink(tx, ctx, &n.path, dst)?;
    event(tx, ctx, "move", dst, agent, Some(in_v), Some(&n.path))?;
    dir_changed(tx, ctx, dst, now_ns)?;
    dir_gone(tx, ctx, &n.path, now_ns)?;
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
pub(super) fn compact(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str, keep: usize) -> Result<Outcome> {
    if keep == 0 {
        return Err(Error::invalid(
            "compact keeps at least 1 version (the current one)",
        ));
    }
    let current: Option<i64> = query_opt(
        tx,
        ctx,
        "SELECT version FROM nodes WHERE path = $1",
        &[&path],
    )?
    .map(|r| col(ctx, &r, 0))
    .transpose()?;
    let Some(current) = current else {
        return Err(Error::not_found(path));
    };
    let below = current.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)) + 1;
    let count = exec(
        tx,
        ctx,
        "DELETE FROM versions WHERE path = $1 AND version < $2",
        &[&path, &below],
    )?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

/// Whether a live (unexpired) node is at `path`.
pub(crate) fn exists(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    query_opt(
        tx,
        ctx,
        "SELECT 1 FROM nodes WHERE path = $1 AND (expires_at IS NULL OR expires_at > $2)",
        &[&path, &now_micros()],
    )
    .map(|o| o.is_some())
}

/// Soft delete: into `/trash<path>` (with `~2`, `~3`… when taken), remembering where from.
fn to_trash(tx: &mut Tx<'_>, ctx: &Ctx<'_>, n: &Node, agent: Option<&str>) -> Result<Node> {
    trash_as(tx, ctx, n, agent, now_micros(), Map::new())
}

/// [`to_trash`] dated `at` by `agent`, with `extra` metadata on the trash copy.
pub(crate) fn trash_as(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    n: &Node,
    agent: Option<&str>,
    at: Micros,
    extra: Map<String, Value>,
) -> Result<Node> {
    let base = format!("/trash{}", n.path);
    let mut dst = base.clone();
    let mut i = 2;
    while exists(tx, ctx, &dst)? || has_children(tx, ctx, &dst)? {
        dst = format!("{base}~{i}");
        i += 1;
    }
    let mut meta = n.meta.clone();
    meta.insert("deleted_at".into(), json!(to_iso(at)));
    meta.insert("deleted_by".into(), json!(agent));
    meta.insert("original_path".into(), json!(n.path));
    meta.extend(extra);
    move_node(tx, ctx, n, &dst, "trash", meta, agent)
}

/// Every node strictly below `dir` (expired ones too), by path.
pub(crate) fn subtree(tx: &mut Tx<'_>, ctx: &Ctx<'_>, dir: &str) -> Result<Vec<Node>> {
    let (lo, hi) = subtree_bounds(dir);
    let rows = query(
        tx,
        ctx,
        &format!("SELECT {NODE_COLS} FROM nodes WHERE path >= $1 AND path < $2 ORDER BY path"),
        &[&lo, &hi],
    )?;
    nodes(ctx, &rows)
}

pub(super) fn remove(
    tx: &mut Tx<'_>,
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
    let targets: Vec<Node> = match load_live(tx, ctx, path, &mut out)? {
        Some(n) => {
            check_sees(caller, &n)?;
            vec![n]
        }
        None => {
            // An agent removes what it can see; other agents' private nodes, and nodes shared
            // with others only, stay untouched. What it sees must all be removable by the
            // rules, or nothing goes.
            let nodes: Vec<Node> = subtree(tx, ctx, path)?
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
                let explicit = has_children(tx, ctx, path)?;
                if explicit && recursive {
                    drop_dirs(tx, ctx, path)?;
                    event(tx, ctx, "rmdir", path, None, None, None)?;
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
        drop_dirs(tx, ctx, path)?;
    }
    for n in targets {
        out.changed.push(n.path.clone());
        if n.is_expired(now) {
            let dst = expire(tx, ctx, &n)?;
            out.changed.push(dst);
            continue;
        }
        if hard || is_within(&n.path, "/trash") {
            hard_delete(tx, ctx, &n, "delete", agent)?;
        } else {
            let moved = to_trash(tx, ctx, &n, agent)?;
            out.changed.push(moved.path.clone());
            out.moves.push((n.path.clone(), moved.path.clone()));
        }
        out.count += 1;
    }
    Ok(out)
}

pub(super) fn rename(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    src: &str,
    dst: &str,
    force: bool,
    caller: &Caller,
    policy: &Policy,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let agent = caller.agent();
    if let Some(n) = load_live(tx, ctx, src, &mut out)? {
        check_sees(caller, &n)?;
        let target = if has_children(tx, ctx, dst)? && !exists(tx, ctx, dst)? {
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
        if let Some(existing) = load_live(tx, ctx, &target, &mut out)? {
            check_sees(caller, &existing)?;
            if !force {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{target} already exists; pass --force to overwrite it (the old node goes to the trash)"
                    ),
                ));
            }
            let trashed = to_trash(tx, ctx, &existing, agent)?;
            out.changed.push(trashed.path);
        }
        check_placement(tx, ctx, &target).map_err(|e| e.context(format!("cannot move {src}")))?;
        let (meta, kind) = moved_meta(&n, &target);
        let moved = move_node(tx, ctx, &n, &target, kind, meta, agent)?;
        out.changed.extend([src.to_string(), target.clone()]);
        out.moves.push((src.to_string(), target));
        out.count = 1;
        out.node = Some(moved);
        return Ok(out);
    }
    let nodes = subtree(tx, ctx, src)?;
    let explicit: i64 = {
        let (lo, hi) = subtree_bounds(src);
        let r = query_one(
            tx,
            ctx,
            "SELECT count(*) FROM dirs WHERE path = $1 OR (path >= $2 AND path < $3)",
            &[&src, &lo, &hi],
        )?;
        col(ctx, &r, 0)?
    };
    if nodes.is_empty() && explicit == 0 {
        return Err(Error::not_found(src).context("mv"));
    }
    check_subtree_visible(caller, src, &nodes, "move")?;
    if exists(tx, ctx, dst)? {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot move directory {src} onto the file {dst}"),
        ));
    }
    if dst == src {
        return Ok(out);
    }
    let base = if has_children(tx, ctx, dst)? {
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
        check_placement(tx, ctx, target)
            .map_err(|e| e.context(format!("cannot move {src} to {base}")))?;
    }
    for (_, target) in &plan {
        if let Some(existing) = load_live(tx, ctx, target, &mut out)? {
            check_sees(caller, &existing)?;
            if !force {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{target} already exists; pass --force to overwrite (old nodes go to the trash)"
                    ),
                ));
            }
            let trashed = to_trash(tx, ctx, &existing, agent)?;
            out.changed.push(trashed.path);
        }
    }
    for (n, target) in plan {
        let (meta, kind) = moved_meta(&n, &target);
        move_node(tx, ctx, &n, &target, kind, meta, agent)?;
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
        move_dirs(tx, ctx, src, &base)?;
        event(tx, ctx, "move", src, None, None, Some(&base))?;
        out.changed.extend([src.to_string(), base.clone()]);
    }
    Ok(out)
}

pub(super) fn mkdir(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
    let mut out = Outcome::default();
    if path == "/" || exists(tx, ctx, path)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists"),
        ));
    }
    if has_children(tx, ctx, path)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists as a directory"),
        ));
    }
    // No directory below a file.
    let mut p = parent(path).to_string();
    while p != "/" {
        if load_live(tx, ctx, &p, &mut out)?.is_some() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("cannot make {path}: {p} is a file"),
            ));
        }
        p = parent(&p).to_string();
    }
    exec(tx, ctx, "INSERT INTO dirs(path) VALUES ($1)", &[&path])?;
    let now_ns = now_nanos();
    exec(
        tx,
        ctx,
        "INSERT INTO dir_attrs(path, mtime_ns, ctime_ns) VALUES ($1, $2, $2) \
         ON CONFLICT (path) DO UPDATE SET mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns",
        &[&path, &now_ns],
    )?;
    event(tx, ctx, "mkdir", path, None, None, None)?;
    dir_changed(tx, ctx, path, now_ns)?;
    out.changed.push(path.to_string());
    out.count = 1;
    Ok(out)
}

pub(super) fn rmdir(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<Outcome> {
    let mut out = Outcome::default();
    let (lo, hi) = subtree_bounds(path);
    let below = query_opt(
        tx,
        ctx,
        "SELECT 1 FROM nodes WHERE path >= $1 AND path < $2 AND (expires_at IS NULL OR expires_at > $3) \
         UNION ALL SELECT 1 FROM dirs WHERE path >= $1 AND path < $2 LIMIT 1",
        &[&lo, &hi, &now_micros()],
    )?;
    if below.is_some() {
        return Err(Error::new(
            ErrorKind::NotEmpty,
            format!("{path} is not empty; remove what is in it first (or delete -r)"),
        ));
    }
    if load_live(tx, ctx, path, &mut out)?.is_some() {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("{path} is a file"),
        ));
    }
    let n = exec(tx, ctx, "DELETE FROM dirs WHERE path = $1", &[&path])?;
    if n == 0 {
        return Err(Error::not_found(path));
    }
    exec(tx, ctx, "DELETE FROM dir_attrs WHERE path = $1", &[&path])?;
    event(tx, ctx, "rmdir", path, None, None, None)?;
    dir_gone(tx, ctx, path, now_nanos())?;
    out.changed.push(path.to_string());
    out.count = 1;
    Ok(out)
}

/// The explicit directories at and below `dir`.
pub(crate) fn dirs_at(tx: &mut Tx<'_>, ctx: &Ctx<'_>, dir: &str) -> Result<Vec<String>> {
    let (lo, hi) = subtree_bounds(dir);
    query(
        tx,
        ctx,
        "SELECT path FROM dirs WHERE path = $1 OR (path >= $2 AND path < $3)",
        &[&dir, &lo, &hi],
    )?
    .iter()
    .map(|r| col(ctx, r, 0))
    .collect()
}

/// Moves explicit directories at and below `src` to `dst`; returns how many moved.
fn move_dirs(tx: &mut Tx<'_>, ctx: &Ctx<'_>, src: &str, dst: &str) -> Result<usize> {
    let rows = dirs_at(tx, ctx, src)?;
    for p in &rows {
        let target = format!("{dst}{}", &p[src.len()..]);
        exec(tx, ctx, "DELETE FROM dirs WHERE path = $1", &[p])?;
        exec(
            tx,
            ctx,
            "INSERT INTO dirs(path) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&target],
        )?;
    }
    move_dir_attrs(tx, ctx, src, dst)?;
    Ok(rows.len())
}

/// Drops explicit directories at and below `path`.
fn drop_dirs(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<()> {
    let (lo, hi) = subtree_bounds(path);
    for sql in [
        "DELETE FROM dirs WHERE path = $1 OR (path >= $2 AND path < $3)",
        "DELETE FROM dir_attrs WHERE path = $1 OR (path >= $2 AND path < $3)",
    ] {
        exec(tx, ctx, sql, &[&path, &lo, &hi])?;
    }
    dir_gone(tx, ctx, path, now_nanos())
}
