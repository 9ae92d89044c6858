//! Typed links between nodes: adding and removing them.

use super::*;

pub(super) fn link(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: &str,
    weight: f64,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    if load_live(tx, ctx, source, &mut out)?.is_none() {
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
    exec(
        tx,
        ctx,
        "INSERT INTO links(source, target, kind, weight, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (source, target, kind) DO UPDATE SET weight = excluded.weight",
        &[&source, &target, &kind, &weight, &now_micros()],
    )?;
    event(tx, ctx, "link", source, None, None, Some(target))?;
    out.count = 1;
    out.changed.extend([source.to_string(), target.to_string()]);
    Ok(out)
}

pub(super) fn unlink(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    source: &str,
    target: &str,
    kind: Option<&str>,
) -> Result<Outcome> {
    let n = exec(
        tx,
        ctx,
        "DELETE FROM links WHERE source = $1 AND target = $2 AND ($3::text IS NULL OR kind = $3::text)",
        &[&source, &target, &kind],
    )?;
    if n == 0 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no link from {source} to {target}{}",
                kind.map(|k| format!(" of type {k}")).unwrap_or_default()
            ),
        ));
    }
    event(tx, ctx, "unlink", source, None, None, Some(target))?;
    Ok(Outcome {
        count: n,
        changed: vec![source.to_string(), target.to_string()],
        ..Outcome::default()
    })
}
