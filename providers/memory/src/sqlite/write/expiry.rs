//! Expiry of nodes past their TTL, and flushing batched access times.

use super::*;

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
