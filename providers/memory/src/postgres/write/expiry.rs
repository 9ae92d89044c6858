//! Expiry of nodes past their TTL: purging them into the trash.

use super::*;

/// Moves up to 1000 expired nodes to the trash; returns each one's trash path and old path.
pub(crate) fn purge_expired(tx: &mut Tx<'_>, ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let rows = query(
        tx,
        ctx,
        &format!(
            "SELECT {NODE_COLS} FROM nodes WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1000"
        ),
        &[&now_micros()],
    )?;
    let mut paths = Vec::new();
    for n in nodes(ctx, &rows)? {
        paths.push(expire(tx, ctx, &n)?);
        paths.push(n.path);
    }
    Ok(paths)
}

/// An expired node goes to the trash with its history, as a delete by whoever set its TTL
/// (`expires_by`) would: the `expire` entry in its history and events names them, and the
/// trash copy keeps no TTL (it is purged with the trash, after `trash_retention`).
pub(crate) fn expire(tx: &mut Tx<'_>, ctx: &Ctx<'_>, n: &Node) -> Result<String> {
    let by = n
        .meta
        .get(EXPIRES_BY)
        .and_then(Value::as_str)
        .filter(|a| *a != "operator")
        .map(str::to_string);
    let at = n.expires_at.unwrap_or_else(now_micros);
    let mut extra = Map::new();
    extra.insert("expired_at".into(), json!(to_iso(at)));
    let moved = trash_as(tx, ctx, n, by.as_deref(), at, extra)?;
    let dst = moved.path.clone();
    exec(
        tx,
        ctx,
        "UPDATE nodes SET expires_at = NULL WHERE id = $1",
        &[&moved.id],
    )?;
    event(
        tx,
        ctx,
        "expire",
        &n.path,
        by.as_deref(),
        Some(n.version),
        Some(&dst),
    )?;
    Ok(dst)
}
