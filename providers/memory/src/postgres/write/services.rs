//! The services' writes: topic postings, vectors and telemetry (derived data: no events).

use super::*;

pub(super) fn topics(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    cursor: i64,
    docs: &[avm_core::storage::TopicDoc],
    removed: &[i64],
) -> Result<Outcome> {
    if !removed.is_empty() {
        exec(
            tx,
            ctx,
            "DELETE FROM topics WHERE node_id = ANY($1::bigint[])",
            &[&removed],
        )?;
        exec(
            tx,
            ctx,
            "DELETE FROM topic_docs WHERE node_id = ANY($1::bigint[])",
            &[&removed],
        )?;
    }
    let mut count = 0;
    for d in docs {
        // Another process may have changed the node since these topics were extracted; its
        // event is still ahead of the cursor of whoever extracted this, so skipping is safe.
        let current: Option<String> = query_opt(
            tx,
            ctx,
            "SELECT hash || ':' || path FROM nodes WHERE id = $1",
            &[&d.node_id],
        )?
        .map(|r| col(ctx, &r, 0))
        .transpose()?;
        if current.as_deref() != Some(d.signature.as_str()) {
            continue;
        }
        exec(
            tx,
            ctx,
            "DELETE FROM topics WHERE node_id = $1",
            &[&d.node_id],
        )?;
        // A topic named twice keeps its last weight (as SQLite's INSERT OR REPLACE does).
        let mut weights: HashMap<&str, f64> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (topic, weight) in &d.topics {
            if weights.insert(topic.as_str(), *weight).is_none() {
                order.push(topic.as_str());
            }
        }
        if !order.is_empty() {
            let ws: Vec<f64> = order.iter().map(|t| weights[t]).collect();
            exec(
                tx,
                ctx,
                "INSERT INTO topics(topic, node_id, weight) \
                 SELECT t, $2, w FROM unnest($1::text[], $3::float8[]) AS u(t, w)",
                &[&order, &d.node_id, &ws],
            )?;
        }
        exec(
            tx,
            ctx,
            "INSERT INTO topic_docs(node_id, signature) VALUES ($1, $2) \
             ON CONFLICT (node_id) DO UPDATE SET signature = excluded.signature",
            &[&d.node_id, &d.signature],
        )?;
        count += 1;
    }
    exec(
        tx,
        ctx,
        "INSERT INTO cursors(name, seq) VALUES ('topics', $1) \
         ON CONFLICT (name) DO UPDATE SET seq = greatest(cursors.seq, excluded.seq)",
        &[&cursor],
    )?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

pub(super) fn vectors(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    cursor: i64,
    model: &str,
    docs: &[avm_core::storage::VectorDoc],
) -> Result<Outcome> {
    let r = query_one(
        tx,
        ctx,
        "SELECT (coalesce(max(stamp), 0) + 1)::bigint FROM vectors",
        &[],
    )?;
    let stamp: i64 = col(ctx, &r, 0)?;
    let mut count = 0;
    let mut left = 0;
    for d in docs {
        let mut blob = Vec::with_capacity(d.vector.len() * 4);
        for x in &d.vector {
            blob.extend_from_slice(&x.to_le_bytes());
        }
        // A node's vector of another model leaves that model's set: counted like a deletion,
        // so that the set's stamp (the newest stamp and the deletion count) changes.
        left += exec(
            tx,
            ctx,
            "DELETE FROM vectors WHERE node_id = $1 AND model <> $2 \
             AND EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND hash = $3)",
            &[&d.node_id, &model, &d.hash],
        )?;
        count += exec(
            tx,
            ctx,
            "INSERT INTO vectors(node_id, model, hash, vec, stamp) \
             SELECT id, $2, hash, $3, $4 FROM nodes WHERE id = $1 AND hash = $5 \
             ON CONFLICT (node_id) DO UPDATE SET model = excluded.model, hash = excluded.hash, \
             vec = excluded.vec, stamp = excluded.stamp",
            &[&d.node_id, &model, &blob, &stamp, &d.hash],
        )?;
    }
    if left > 0 {
        exec(
            tx,
            ctx,
            "UPDATE cursors SET seq = seq + 1 WHERE name = 'vectors_deleted'",
            &[],
        )?;
    }
    exec(
        tx,
        ctx,
        "INSERT INTO cursors(name, seq) VALUES ('embed', $1) \
         ON CONFLICT (name) DO UPDATE SET seq = greatest(cursors.seq, excluded.seq)",
        &[&cursor],
    )?;
    Ok(Outcome {
        count,
        ..Outcome::default()
    })
}

pub(super) fn telemetry(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    t: &avm_core::storage::Telemetry,
) -> Result<Outcome> {
    exec(
        tx,
        ctx,
        "INSERT INTO telemetry(at, op, agent, query, tokens_returned, tokens_available, results, latency_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &t.at,
            &t.op,
            &t.agent,
            &t.query,
            &t.tokens_returned,
            &t.tokens_available,
            &t.results,
            &t.latency_us,
        ],
    )?;
    Ok(Outcome {
        count: 1,
        ..Outcome::default()
    })
}
