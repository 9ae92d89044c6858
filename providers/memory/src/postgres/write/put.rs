//! Creating and updating a node: content, metadata, tags, TTL, attributes, its version and
//! event.

use super::*;

pub(super) fn put_node(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    path: &str,
    put: &Put,
    agent: Option<&str>,
    admin: bool,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let now = now_micros();
    let now_ns = now_nanos();
    let existing = load_live(tx, ctx, path, &mut out)?;
    let Some(old) = existing else {
        let Some(content) = &put.content else {
            return Err(Error::not_found(path).context("cannot change metadata"));
        };
        check_size(ctx.max_bytes(), path, content)?;
        check_placement(tx, ctx, path)?;
        let mut p = patch(None, put)?;
        check_expiry(&mut p, None, agent, now)?;
        let version = max_version(tx, ctx, path)? + 1;
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
        let mut node = Node {
            id: 0,
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
        let (text, bytes) = content_params(content);
        let r = query_one(
            tx,
            ctx,
            "INSERT INTO nodes(path, content, bytes, meta, tags, importance, author, created_at, updated_at, version, hash, expires_at, mode, uid, gid, mtime_ns, ctime_ns, atime_ns, tsv) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18::text::tsvector) RETURNING id",
            &[
                &path,
                &text,
                &bytes,
                &Value::Object(node.meta.clone()),
                &json!(node.tags),
                &node.importance,
                &agent,
                &now,
                &version,
                &node.hash,
                &node.expires_at,
                &int(attrs.mode),
                &int(attrs.uid),
                &int(attrs.gid),
                &attrs.mtime,
                &attrs.ctime,
                &attrs.atime,
                &document(node.text()),
            ],
        )?;
        node.id = col(ctx, &r, 0)?;
        set_tags(tx, ctx, node.id, &node.tags)?;
        add_version(tx, ctx, path, version, "create", content, agent, now, None)?;
        event(tx, ctx, "create", path, agent, Some(version), None)?;
        dir_changed(tx, ctx, path, now_ns)?;
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
    check_size(ctx.max_bytes(), path, &content)?;
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
        update_attrs(tx, ctx, old.id, &attrs)?;
        event(tx, ctx, "attrs", path, agent, Some(old.version), None)?;
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
    // The full-text document changes with the content only.
    let tsv: Option<String> = content_changed.then(|| document(node.text()));
    let (text, bytes) = content_params(&node.content);
    exec(
        tx,
        ctx,
        "UPDATE nodes SET content = $2, bytes = $3, meta = $4, tags = $5, importance = $6, updated_at = $7, \
         version = $8, hash = $9, expires_at = $10, mode = $11, uid = $12, gid = $13, mtime_ns = $14, \
         ctime_ns = $15, atime_ns = $16, tsv = coalesce($17::text::tsvector, tsv) WHERE id = $1",
        &[
            &old.id,
            &text,
            &bytes,
            &Value::Object(node.meta.clone()),
            &json!(node.tags),
            &node.importance,
            &now,
            &version,
            &node.hash,
            &node.expires_at,
            &int(attrs.mode),
            &int(attrs.uid),
            &int(attrs.gid),
            &attrs.mtime,
            &attrs.ctime,
            &attrs.atime,
            &tsv,
        ],
    )?;
    if content_changed {
        add_version(
            tx,
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
        set_tags(tx, ctx, old.id, &node.tags)?;
    }
    let kind = if content_changed { "update" } else { "meta" };
    event(tx, ctx, kind, path, agent, Some(version), None)?;
    out.count = 1;
    out.changed.push(path.to_string());
    out.node = Some(node);
    Ok(out)
}

/// Writes a node's attribute columns.
pub(crate) fn update_attrs(tx: &mut Tx<'_>, ctx: &Ctx<'_>, id: i64, a: &Attrs) -> Result<()> {
    exec(
        tx,
        ctx,
        "UPDATE nodes SET mode = $2, uid = $3, gid = $4, mtime_ns = $5, ctime_ns = $6, atime_ns = $7 WHERE id = $1",
        &[
            &id,
            &int(a.mode),
            &int(a.uid),
            &int(a.gid),
            &a.mtime,
            &a.ctime,
            &a.atime,
        ],
    )
    .map(drop)
}
