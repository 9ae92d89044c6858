//! Importing an export record losslessly: the node, its whole history and its links.

use super::*;

pub(super) fn import(tx: &mut Tx<'_>, ctx: &Ctx<'_>, r: &Record, force: bool) -> Result<Outcome> {
    let path = r.path.as_str();
    let content = r.decoded()?;
    check_size(ctx.max_bytes(), path, &content)?;
    let existing = load(tx, ctx, path)?;
    let has_history = max_version(tx, ctx, path)? > 0;
    if (existing.is_some() || has_history) && !force {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{path} already exists (or has history) in this database; pass --force to replace it"
            ),
        ));
    }
    if let Some(old) = &existing {
        // The delete trigger drops its read time, topics, markers and vector.
        exec(
            tx,
            ctx,
            "DELETE FROM node_tags WHERE node_id = $1",
            &[&old.id],
        )?;
        exec(tx, ctx, "DELETE FROM nodes WHERE id = $1", &[&old.id])?;
    }
    if existing.is_none() {
        check_placement(tx, ctx, path)?;
    }
    for sql in [
        "DELETE FROM versions WHERE path = $1",
        "DELETE FROM links WHERE source = $1",
    ] {
        exec(tx, ctx, sql, &[&path])?;
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
    let indexed = !r.is_symlink() && content.is_text();
    let tsv = if indexed {
        document(content.text_or_empty())
    } else {
        String::new()
    };
    let (text, bytes) = content_params(&content);
    let row = query_one(
        tx,
        ctx,
        "INSERT INTO nodes(path, content, bytes, meta, tags, importance, author, created_at, updated_at, version, hash, expires_at, ftype, mode, uid, gid, mtime_ns, ctime_ns, atime_ns, tsv) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20::text::tsvector) RETURNING id",
        &[
            &path,
            &text,
            &bytes,
            &Value::Object(r.meta.clone()),
            &json!(r.tags),
            &r.importance,
            &r.author,
            &created,
            &updated,
            &r.version,
            &content_hash(content.as_bytes()),
            &expires,
            &r.is_symlink().then_some("symlink"),
            &int(r.mode),
            &int(r.uid),
            &int(r.gid),
            &r.mtime_ns.unwrap_or(updated_ns),
            &updated_ns,
            &r.atime_ns,
            &tsv,
        ],
    )?;
    let id: i64 = col(ctx, &row, 0)?;
    set_tags(tx, ctx, id, &r.tags)?;
    if let Some(at) = accessed {
        exec(
            tx,
            ctx,
            "INSERT INTO access(node_id, at) VALUES ($1, $2) \
             ON CONFLICT (node_id) DO UPDATE SET at = excluded.at",
            &[&id, &at],
        )?;
    }
    for v in &r.versions {
        let at = r.time("versions.at", &v.at)?;
        add_version(
            tx,
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
        exec(
            tx,
            ctx,
            "INSERT INTO links(source, target, kind, weight, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source, target, kind) DO UPDATE SET weight = excluded.weight, \
             created_at = excluded.created_at",
            &[&path, &l.target, &l.kind, &l.weight, &at],
        )?;
    }
    event(tx, ctx, "import", path, None, Some(r.version), None)?;
    if existing.is_none() {
        dir_changed(tx, ctx, path, now_nanos())?;
    }
    Ok(Outcome {
        count: 1,
        changed: vec![path.to_string()],
        ..Outcome::default()
    })
}
