//! Filesystem operations the mount needs beyond the memory model: attributes, symbolic
//! links, `rename(2)` (replace, no-replace, exchange) and directory times.
//!
//! Directory attributes live in `dir_attrs`, a row per directory that has any: a row never
//! makes a directory exist (a directory exists while nodes lie below it, or a `dirs` row
//! keeps it), and it goes when the directory does. A directory's mtime and ctime move when
//! an entry appears in it, leaves it or is replaced, and at no other time.

use std::collections::HashSet;

use avm_core::time::Nanos;
use avm_core::{Rename, SetAttrs};

use crate::node::DEFAULT_IMPORTANCE;

use super::*;

/// Directories that exist before anything is written in them.
fn always_dir(path: &str) -> bool {
    matches!(path, "/" | "/memory" | "/memory/private" | "/memory/shared")
}

/// Roots nobody may rename away or replace: the namespace roots and each agent's private root.
fn fixed_dir(path: &str) -> bool {
    always_dir(path) || parent(path) == avm_core::provider::PRIVATE_ROOT
}

/// Does the directory `path` exist?
pub(crate) fn dir_exists(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str) -> Result<bool> {
    Ok(always_dir(path) || has_children(tx, ctx, path)?)
}

/// Sets the mtime and ctime of `dir` to `now` where it has a row; returns rows changed.
fn touch_dir(tx: &mut Tx<'_>, ctx: &Ctx<'_>, dir: &str, now: Nanos) -> Result<usize> {
    exec(
        tx,
        ctx,
        "UPDATE dir_attrs SET mtime_ns = $2, ctime_ns = $2 WHERE path = $1",
        &[&dir, &now],
    )
}

/// Gives `dir` an attribute row dated `now` unless it has one.
fn add_dir_row(tx: &mut Tx<'_>, ctx: &Ctx<'_>, dir: &str, now: Nanos) -> Result<()> {
    exec(
        tx,
        ctx,
        "INSERT INTO dir_attrs(path, mtime_ns, ctime_ns) VALUES ($1, $2, $2) ON CONFLICT DO NOTHING",
        &[&dir, &now],
    )
    .map(drop)
}

/// An entry appeared at `child` (or was replaced there): its directory changed now. A
/// directory that had no row yet may have appeared with it, so its parent changed too, up to
/// the first directory that already had a row.
pub(crate) fn dir_changed(tx: &mut Tx<'_>, ctx: &Ctx<'_>, child: &str, now: Nanos) -> Result<()> {
    let mut dir = parent(child).to_string();
    loop {
        if touch_dir(tx, ctx, &dir, now)? > 0 {
            return Ok(());
        }
        add_dir_row(tx, ctx, &dir, now)?;
        if dir == "/" {
            return Ok(());
        }
        dir = parent(&dir).to_string();
    }
}

/// The entry at `child` went away: its directory changed now, and a directory left with
/// nothing in it (that nothing keeps) is gone, its attributes with it; then its parent changed.
pub(crate) fn dir_gone(tx: &mut Tx<'_>, ctx: &Ctx<'_>, child: &str, now: Nanos) -> Result<()> {
    let mut dir = parent(child).to_string();
    loop {
        if dir_exists(tx, ctx, &dir)? {
            if touch_dir(tx, ctx, &dir, now)? == 0 {
                add_dir_row(tx, ctx, &dir, now)?;
            }
            return Ok(());
        }
        exec(tx, ctx, "DELETE FROM dir_attrs WHERE path = $1", &[&dir])?;
        dir = parent(&dir).to_string();
    }
}

/// One directory's attribute row.
type DirRow = (
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The attribute rows of `dir` and every directory below it.
fn dir_rows(tx: &mut Tx<'_>, ctx: &Ctx<'_>, dir: &str) -> Result<Vec<DirRow>> {
    let (lo, hi) = subtree_bounds(dir);
    query(
        tx,
        ctx,
        "SELECT path, mode, uid, gid, mtime_ns, ctime_ns, atime_ns FROM dir_attrs \
         WHERE path = $1 OR (path >= $2 AND path < $3)",
        &[&dir, &lo, &hi],
    )?
    .iter()
    .map(|r| {
        Ok((
            col(ctx, r, 0)?,
            col(ctx, r, 1)?,
            col(ctx, r, 2)?,
            col(ctx, r, 3)?,
            col(ctx, r, 4)?,
            col(ctx, r, 5)?,
            col(ctx, r, 6)?,
        ))
    })
    .collect()
}

/// Writes `r`'s attributes as `path`'s row (replacing any).
fn put_dir_row(tx: &mut Tx<'_>, ctx: &Ctx<'_>, path: &str, r: &DirRow) -> Result<()> {
    exec(
        tx,
        ctx,
        "INSERT INTO dir_attrs(path, mode, uid, gid, mtime_ns, ctime_ns, atime_ns) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (path) DO UPDATE SET mode = excluded.mode, uid = excluded.uid, \
         gid = excluded.gid, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, \
         atime_ns = excluded.atime_ns",
        &[&path, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6],
    )
    .map(drop)
}

/// Moves the attribute rows of `src` and the directories below it under `dst`.
pub(crate) fn move_dir_attrs(tx: &mut Tx<'_>, ctx: &Ctx<'_>, src: &str, dst: &str) -> Result<()> {
    let rows = dir_rows(tx, ctx, src)?;
    for r in &rows {
        exec(tx, ctx, "DELETE FROM dir_attrs WHERE path = $1", &[&r.0])?;
    }
    for r in &rows {
        put_dir_row(tx, ctx, &format!("{dst}{}", &r.0[src.len()..]), r)?;
    }
    Ok(())
}

/// Changes the attributes of a node or a directory.
pub(crate) fn set_attrs(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    path: &str,
    set: &SetAttrs,
    caller: &Caller,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let now = now_nanos();
    if let Some(n) = load_live(tx, ctx, path, &mut out)? {
        check_sees(caller, &n)?;
        let mut a = n.attrs;
        a.mode = set.mode.or(a.mode);
        a.uid = set.uid.or(a.uid);
        a.gid = set.gid.or(a.gid);
        a.mtime = set.mtime.or(a.mtime);
        a.atime = set.atime.or(a.atime);
        a.ctime = Some(now);
        update_attrs(tx, ctx, n.id, &a)?;
        event(tx, ctx, "attrs", path, None, Some(n.version), None)?;
        out.count = 1;
        out.changed.push(path.to_string());
        out.node = Some(Node { attrs: a, ..n });
        return Ok(out);
    }
    if !dir_exists(tx, ctx, path)? {
        return Err(Error::not_found(path));
    }
    exec(
        tx,
        ctx,
        "INSERT INTO dir_attrs(path, mode, uid, gid, mtime_ns, ctime_ns, atime_ns) \
         VALUES ($1, $2, $3, $4, coalesce($5::bigint, $6::bigint), $6::bigint, $7) \
         ON CONFLICT (path) DO UPDATE SET mode = coalesce(excluded.mode, dir_attrs.mode), \
           uid = coalesce(excluded.uid, dir_attrs.uid), gid = coalesce(excluded.gid, dir_attrs.gid), \
           mtime_ns = coalesce($5::bigint, dir_attrs.mtime_ns), ctime_ns = $6::bigint, \
           atime_ns = coalesce(excluded.atime_ns, dir_attrs.atime_ns)",
        &[
            &path,
            &int(set.mode),
            &int(set.uid),
            &int(set.gid),
            &set.mtime,
            &now,
            &set.atime,
        ],
    )?;
    out.count = 1;
    out.changed.push(path.to_string());
    Ok(out)
}

/// Makes a symbolic link: a node of type `symlink` whose content is `target`.
pub(crate) fn symlink(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    path: &str,
    target: &str,
    attrs: &SetAttrs,
    agent: Option<&str>,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    if load_live(tx, ctx, path, &mut out)?.is_some() || dir_exists(tx, ctx, path)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists"),
        ));
    }
    check_placement(tx, ctx, path)?;
    let now = now_micros();
    let now_ns = now_nanos();
    let content = Content::Text(target.to_string());
    let version = max_version(tx, ctx, path)? + 1;
    let hash = content_hash(content.as_bytes());
    let (text, bytes) = content_params(&content);
    // A link's target is not indexed: its full text stays empty.
    exec(
        tx,
        ctx,
        "INSERT INTO nodes(path, content, bytes, meta, tags, importance, author, created_at, updated_at, version, hash, ftype, uid, gid, mtime_ns, ctime_ns, atime_ns) \
         VALUES ($1, $2, $3, '{}', '[]', $4, $5, $6, $6, $7, $8, 'symlink', $9, $10, $11, $12, $13)",
        &[
            &path,
            &text,
            &bytes,
            &DEFAULT_IMPORTANCE,
            &agent,
            &now,
            &version,
            &hash,
            &int(attrs.uid),
            &int(attrs.gid),
            &attrs.mtime.unwrap_or(now_ns),
            &now_ns,
            &attrs.atime,
        ],
    )?;
    add_version(tx, ctx, path, version, "create", &content, agent, now, None)?;
    event(tx, ctx, "create", path, agent, Some(version), None)?;
    dir_changed(tx, ctx, path, now_ns)?;
    out.count = 1;
    out.changed.push(path.to_string());
    Ok(out)
}

/// `rename(2)` of `src` to `dst`.
pub(crate) fn rename(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    src: &str,
    dst: &str,
    how: Rename,
    caller: &Caller,
    policy: &Policy,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let agent = caller.agent();
    for p in [src, dst] {
        if fixed_dir(p) {
            return Err(Error::denied(format!(
                "{p} is a namespace root of avm and cannot be renamed or replaced"
            )));
        }
        if !caller.may_see(p) {
            return Err(Error::denied(format!(
                "cannot rename {src} to {dst}: {p} is in another agent's private namespace (rule: private namespaces belong to their agent)"
            )));
        }
    }
    let s_node = load_live(tx, ctx, src, &mut out)?;
    if let Some(n) = &s_node {
        check_sees(caller, n)?;
    }
    let s_dir = s_node.is_none() && dir_exists(tx, ctx, src)?;
    if s_node.is_none() && !s_dir {
        return Err(Error::not_found(src).context("rename"));
    }
    if src == dst {
        return Ok(out);
    }
    if is_within(dst, src) || (how == Rename::Exchange && is_within(src, dst)) {
        return Err(Error::invalid(format!(
            "cannot rename {src} to {dst}: one lies inside the other"
        )));
    }
    let d_node = load_live(tx, ctx, dst, &mut out)?;
    if let Some(n) = &d_node {
        check_sees(caller, n)?;
    }
    let d_dir = d_node.is_none() && dir_exists(tx, ctx, dst)?;
    let d_exists = d_node.is_some() || d_dir;
    match how {
        Rename::NoReplace if d_exists => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{dst} already exists (rename without replace)"),
            ));
        }
        Rename::Exchange => {
            if !d_exists {
                return Err(Error::not_found(dst).context("exchange"));
            }
            visible_subtree(tx, ctx, caller, src)?;
            visible_subtree(tx, ctx, caller, dst)?;
            writable_subtree(tx, ctx, caller, policy, src, dst)?;
            writable_subtree(tx, ctx, caller, policy, dst, src)?;
            relocate(
                tx,
                ctx,
                &[
                    (src.to_string(), dst.to_string()),
                    (dst.to_string(), src.to_string()),
                ],
                agent,
                &mut out,
            )?;
            return Ok(out);
        }
        _ => {}
    }
    if let Some(p) = file_ancestor(tx, ctx, dst)? {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot rename to {dst}: {p} is a file, not a directory"),
        ));
    }
    if let Some(n) = s_node {
        if d_dir {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("cannot rename the file {src} onto the directory {dst}"),
            ));
        }
        match d_node {
            Some(d) => {
                check_writes(caller, policy, [src, dst], &format!("rename {src}"))?;
                replace(tx, ctx, &n, &d, agent, &mut out)?
            }
            None => {
                check_writes(caller, policy, [src, dst], &format!("rename {src}"))?;
                check_placement(tx, ctx, dst)?;
                relocate(
                    tx,
                    ctx,
                    &[(src.to_string(), dst.to_string())],
                    agent,
                    &mut out,
                )?;
            }
        }
        return Ok(out);
    }
    if d_node.is_some() {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("cannot rename the directory {src} onto the file {dst}"),
        ));
    }
    visible_subtree(tx, ctx, caller, src)?;
    writable_subtree(tx, ctx, caller, policy, src, dst)?;
    if d_dir {
        let (lo, hi) = subtree_bounds(dst);
        let below = query_opt(
            tx,
            ctx,
            "SELECT 1 FROM nodes WHERE path >= $1 AND path < $2 \
             UNION ALL SELECT 1 FROM dirs WHERE path >= $1 AND path < $2 LIMIT 1",
            &[&lo, &hi],
        )?;
        if below.is_some() {
            return Err(Error::new(
                ErrorKind::NotEmpty,
                format!("cannot rename {src} onto {dst}: {dst} is a directory that is not empty"),
            ));
        }
        for sql in [
            "DELETE FROM dirs WHERE path = $1",
            "DELETE FROM dir_attrs WHERE path = $1",
        ] {
            exec(tx, ctx, sql, &[&dst])?;
        }
    }
    relocate(
        tx,
        ctx,
        &[(src.to_string(), dst.to_string())],
        agent,
        &mut out,
    )?;
    Ok(out)
}

/// Refuses to move the subtree `from` to `to` when the rules refuse writing any node in it,
/// at its place or at its new place.
fn writable_subtree(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    caller: &Caller,
    policy: &Policy,
    from: &str,
    to: &str,
) -> Result<()> {
    let nodes = subtree(tx, ctx, from)?;
    let targets: Vec<String> = nodes
        .iter()
        .map(|n| format!("{to}{}", &n.path[from.len()..]))
        .collect();
    check_writes(
        caller,
        policy,
        nodes
            .iter()
            .map(|n| n.path.as_str())
            .chain(targets.iter().map(String::as_str))
            .chain([from, to]),
        &format!("rename {from} to {to}"),
    )
}

/// Refuses to move a subtree holding nodes the caller may not see.
fn visible_subtree(tx: &mut Tx<'_>, ctx: &Ctx<'_>, caller: &Caller, dir: &str) -> Result<()> {
    let nodes = subtree(tx, ctx, dir)?;
    check_subtree_visible(caller, dir, &nodes, "rename")
}

/// A file `n` renamed onto the file `d`: `d` keeps its identity (history, links, tags and
/// metadata stay; the source's metadata keys are merged over them, its tags win when it has
/// any), takes the source's content, type and file attributes as a new version, and the
/// source node goes (its history records the move, its links follow it).
fn replace(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    n: &Node,
    d: &Node,
    agent: Option<&str>,
    out: &mut Outcome,
) -> Result<()> {
    let now = now_micros();
    let now_ns = now_nanos();
    let (src_meta, _) = moved_meta(n, &d.path);
    let mut meta = d.meta.clone();
    meta.extend(src_meta);
    let tags = if n.tags.is_empty() {
        d.tags.clone()
    } else {
        n.tags.clone()
    };
    let importance = if n.importance == DEFAULT_IMPORTANCE {
        d.importance
    } else {
        n.importance
    };
    let content_changed = n.hash != d.hash || n.content != d.content || n.kind != d.kind;
    let version = if content_changed {
        d.version + 1
    } else {
        d.version
    };
    let mut attrs = n.attrs;
    attrs.ctime = Some(now_ns);
    // The source's history records that it left; its row goes before the destination takes
    // its content, so nothing about it lingers in the indexes (the delete trigger drops its
    // read time, topics, markers and vector).
    record_move_out(tx, ctx, n, &d.path, agent, now)?;
    exec(
        tx,
        ctx,
        "DELETE FROM node_tags WHERE node_id = $1",
        &[&n.id],
    )?;
    exec(tx, ctx, "DELETE FROM nodes WHERE id = $1", &[&n.id])?;
    relink(tx, ctx, &n.path, &d.path)?;
    let replaced = Node {
        content: n.content.clone(),
        kind: n.kind,
        attrs,
        meta,
        tags,
        importance,
        updated_at: now,
        version,
        hash: n.hash.clone(),
        ..d.clone()
    };
    let (text, bytes) = content_params(&replaced.content);
    exec(
        tx,
        ctx,
        "UPDATE nodes SET content = $2, bytes = $3, meta = $4, tags = $5, importance = $6, updated_at = $7, \
         version = $8, hash = $9, ftype = $10, tsv = $11::text::tsvector WHERE id = $1",
        &[
            &d.id,
            &text,
            &bytes,
            &Value::Object(replaced.meta.clone()),
            &json!(replaced.tags),
            &replaced.importance,
            &now,
            &version,
            &replaced.hash,
            &(n.kind == NodeKind::Symlink).then_some("symlink"),
            &document(replaced.text()),
        ],
    )?;
    update_attrs(tx, ctx, d.id, &attrs)?;
    if replaced.tags != d.tags {
        set_tags(tx, ctx, d.id, &replaced.tags)?;
    }
    if content_changed {
        add_version(
            tx,
            ctx,
            &d.path,
            version,
            "update",
            &replaced.content,
            agent,
            now,
            Some(&n.path),
        )?;
    }
    event(
        tx,
        ctx,
        "move",
        &d.path,
        agent,
        Some(version),
        Some(&n.path),
    )?;
    event(
        tx,
        ctx,
        if content_changed { "update" } else { "meta" },
        &d.path,
        agent,
        Some(version),
        None,
    )?;
    dir_changed(tx, ctx, &d.path, now_ns)?;
    dir_gone(tx, ctx, &n.path, now_ns)?;
    out.count += 1;
    out.changed.extend([n.path.clone(), d.path.clone()]);
    out.moves.push((n.path.clone(), d.path.clone()));
    out.node = Some(replaced);
    Ok(())
}

/// Moves every node at or below each `from` to the same place at or below its `to`, all at
/// once, so two paths can trade places (`RENAME_EXCHANGE`): first every moving node and link
/// end goes to a unique temporary path, then to its destination. Each path's history records
/// what left it (unless something else arrived there) and what arrived; explicit directories
/// and directory attributes move along.
fn relocate(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    pairs: &[(String, String)],
    agent: Option<&str>,
    out: &mut Outcome,
) -> Result<()> {
    let now = now_micros();
    let now_ns = now_nanos();
    let mut plan: Vec<(Node, String)> = Vec::new();
    let mut dirs: Vec<(String, String)> = Vec::new();
    let mut attr_rows: Vec<(DirRow, String)> = Vec::new();
    for (from, to) in pairs {
        if let Some(n) = load_live(tx, ctx, from, out)? {
            plan.push((n, to.clone()));
        }
        for n in subtree(tx, ctx, from)? {
            let target = format!("{to}{}", &n.path[from.len()..]);
            plan.push((n, target));
        }
        dirs.extend(dirs_at(tx, ctx, from)?.into_iter().map(|p| {
            let t = format!("{to}{}", &p[from.len()..]);
            (p, t)
        }));
        for r in dir_rows(tx, ctx, from)? {
            let t = format!("{to}{}", &r.0[from.len()..]);
            attr_rows.push((r, t));
        }
    }
    // Phase one: out of the way.
    for (n, _) in &plan {
        let tmp = format!("\u{1}relocate/{}", n.id);
        exec(
            tx,
            ctx,
            "UPDATE nodes SET path = $2 WHERE id = $1",
            &[&n.id, &tmp],
        )?;
        relink(tx, ctx, &n.path, &tmp)?;
    }
    for (p, _) in &dirs {
        exec(tx, ctx, "DELETE FROM dirs WHERE path = $1", &[p])?;
    }
    for (r, _) in &attr_rows {
        exec(tx, ctx, "DELETE FROM dir_attrs WHERE path = $1", &[&r.0])?;
    }
    // Phase two: into place.
    let arriving: HashSet<&str> = plan.iter().map(|(_, t)| t.as_str()).collect();
    for (n, target) in &plan {
        let tmp = format!("\u{1}relocate/{}", n.id);
        if !arriving.contains(n.path.as_str()) {
            record_move_out(tx, ctx, n, target, agent, now)?;
        }
        let (meta, kind) = moved_meta(n, target);
        let in_v = max_version(tx, ctx, target)? + 1;
        add_version(
            tx,
            ctx,
            target,
            in_v,
            kind,
            &n.content,
            agent,
            now,
            Some(&n.path),
        )?;
        set_path(tx, ctx, n.id, target, in_v, &meta, now, now_ns)?;
        relink(tx, ctx, &tmp, target)?;
        event(tx, ctx, "move", target, agent, Some(in_v), Some(&n.path))?;
        out.changed.extend([n.path.clone(), target.clone()]);
        out.moves.push((n.path.clone(), target.clone()));
        out.count += 1;
    }
    for (_, t) in &dirs {
        exec(
            tx,
            ctx,
            "INSERT INTO dirs(path) VALUES ($1) ON CONFLICT DO NOTHING",
            &[t],
        )?;
    }
    for (r, t) in &attr_rows {
        put_dir_row(tx, ctx, t, r)?;
    }
    for (from, to) in pairs {
        if !dirs.is_empty() || plan.is_empty() {
            event(tx, ctx, "move", from, agent, None, Some(to))?;
        }
        out.changed.extend([from.clone(), to.clone()]);
        // The moved directory itself changed (its `..` now points elsewhere).
        touch_dir(tx, ctx, to, now_ns)?;
        dir_changed(tx, ctx, to, now_ns)?;
    }
    for (from, _) in pairs {
        dir_gone(tx, ctx, from, now_ns)?;
    }
    if let [(n, _)] = plan.as_slice()
        && pairs.len() == 1
    {
        let mut moved = n.clone();
        moved.path = pairs[0].1.clone();
        out.node = Some(moved);
    }
    Ok(())
}
