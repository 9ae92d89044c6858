//! Importing an export record losslessly: the node, its whole history and its links.

use super::*;

pub(super) fn import(conn: &Connection, ctx: &Ctx<'_>, r: &Record, force: bool) -> Result<Outcome> {
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
