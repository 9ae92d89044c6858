//! Typed links between nodes: adding and removing them.

use super::*;

pub(super) fn link(
    conn: &Connection,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: &str,
    weight: f64,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    if load_live(conn, ctx, source, &mut out)?.is_none() {
        return Err(Error::not_found(source).context("link"));
    }
    if kind.is_empty()
        || kind.len() > 64
        || kind.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "link type {kind:?} is not valid; use one word such as related, derived, supersedes, contradicts"
        )));
    }
    if !weight.is_finite() {
        return Err(Error::invalid(format!(
            "link weight {weight} is not a finite number"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO links(source, target, kind, weight, created_at) VALUES (?1,?2,?3,?4,?5) \
         ON CONFLICT(source, target, kind) DO UPDATE SET weight = excluded.weight",
    )
    .and_then(|mut s| s.execute(params![source, target, kind, weight, now_micros()]))
    .map_err(|e| ctx.err(e))?;
    event(conn, ctx, "link", source, None, None, Some(target))?;
    out.count = 1;
    out.changed.extend([source.to_string(), target.to_string()]);
    Ok(out)
}

pub(super) fn unlink(
    conn: &Connection,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: Option<&str>,
) -> Result<Outcome> {
    let n = conn
        .prepare_cached(
            "DELETE FROM links WHERE source = ?1 AND target = ?2 AND (?3 IS NULL OR kind = ?3)",
        )
        .and_then(|mut s| s.execute(params![source, target, kind]))
        .map_err(|e| ctx.err(e))?;
    if n == 0 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no link from {source} to {target}{}",
                kind.map(|k| format!(" of type {k}")).unwrap_or_default()
            ),
        ));
    }
    event(conn, ctx, "unlink", source, None, None, Some(target))?;
    Ok(Outcome {
        count: n,
        changed: vec![source.to_string(), target.to_string()],
        ..Outcome::default()
    })
}
