//! `avm migrate --from A --to B`: moves a whole store between SQLite and PostgreSQL.
//!
//! Every node goes as its lossless export record (content, metadata, tags, the whole
//! history, links), in batches that the destination commits together, then the stored
//! vectors of the embedding model follow by path (node ids differ between stores, so `@`
//! shortcuts change; paths do not). Nothing is deleted from the source. A node that already
//! exists at the destination is refused unless `--force` (then it is replaced with its
//! history).

use std::io::IsTerminal;
use std::sync::Arc;

use serde_json::{Value, json};

use avm_core::storage::{MemoryStore, VectorDoc};
use avm_core::{Caller, Error, Host, Mount, Result, WriteInput};
use avm_provider_memory::MemoryProvider;

use crate::app::{pg_options, store_options};
use crate::cli::Global;

/// What one migration did.
#[derive(Debug, Default)]
pub struct Moved {
    /// Nodes written at the destination.
    pub nodes: usize,
    /// Vectors copied.
    pub vectors: usize,
    /// Records the destination refused: (path, why).
    pub failed: Vec<(String, String)>,
}

/// The store at `location` (a SQLite file or a PostgreSQL address) behind a host of its own.
fn open(config: &avm_core::config::Config, location: &str) -> Result<(Host, MemoryProvider)> {
    let location = avm_core::config::expand(location)?;
    let mem = MemoryProvider::open_location(&location, store_options(config), pg_options(config))
        .map_err(|e| {
        Error::new(
            e.kind(),
            format!("{}: {}", avm_postgres::redact(&location), e.message()),
        )
    })?;
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))]).map_err(|errs| {
        Error::internal(
            errs.iter()
                .map(|e| e.message().to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok((host, mem))
}

/// Copies every node (with history and links) and the stored vectors from `from` to `to`.
pub fn migrate(g: &Global, from: &str, to: &str, force: bool) -> Result<Moved> {
    if from == to {
        return Err(Error::invalid(
            "--from and --to name the same store; nothing to move",
        ));
    }
    let config = avm_core::config::load(&crate::app::sources(g))?;
    let (src, src_mem) = open(&config, from)?;
    let (dst, dst_mem) = open(&config, to)?;
    let op = Caller::Operator;
    let total = src
        .read(&op, "/:stats")
        .ok()
        .and_then(|o| o.data()["nodes"].as_u64());
    let bar = (std::io::stderr().is_terminal() && !g.json).then(|| {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} nodes {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut moved = Moved::default();
    let mut after: Option<String> = None;
    loop {
        let mut pairs = vec![("limit", "500".to_string())];
        if let Some(a) = &after {
            pairs.push(("after", a.clone()));
        }
        let page = src.read(&op, &crate::commands::addr("/", "export", &pairs)?)?;
        let data = page.data();
        let records = data["records"].as_array().cloned().unwrap_or_default();
        let mut batch = Vec::with_capacity(records.len());
        let mut paths = Vec::with_capacity(records.len());
        for r in records {
            let Some(path) = r.get("path").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let target = if force {
                format!("{path}?force=1")
            } else {
                path.clone()
            };
            paths.push(path);
            batch.push((target, WriteInput::Record(r)));
        }
        for (res, path) in dst.write_many(&op, batch).into_iter().zip(paths) {
            match res {
                Ok(_) => moved.nodes += 1,
                Err(e) => moved.failed.push((path, e.message().to_string())),
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        match data["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    if let Some(b) = &bar {
        b.set_message("vectors");
    }
    moved.vectors = copy_vectors(
        src_mem.memory_store().as_ref(),
        dst_mem.memory_store().as_ref(),
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    src_mem.store().sync()?;
    dst_mem.store().sync()?;
    Ok(moved)
}

/// Copies the stored vectors of the embedding model, matching nodes by path.
fn copy_vectors(src: &dyn MemoryStore, dst: &dyn MemoryStore) -> Result<usize> {
    let model = avm_embedding::model::MODEL_ID;
    let (vectors, _) = src.vectors_all(model)?;
    let mut docs = Vec::new();
    for (id, vector) in vectors {
        let Some(path) = src.path_of_id(id)? else {
            continue;
        };
        let Some(node) = dst.node(&path)? else {
            continue;
        };
        docs.push(VectorDoc {
            node_id: node.id,
            hash: node.hash.clone(),
            vector,
        });
    }
    let n = docs.len();
    if n > 0 {
        // The embedding worker's cursor moves to the newest event: the nodes just imported are
        // embedded already, and newer writes are still ahead of it.
        let cursor = dst.last_event()?;
        for chunk in docs.chunks(500) {
            dst.vectors_put(cursor, model, chunk.to_vec())?;
        }
    }
    Ok(n)
}

/// Runs `avm migrate` and prints what it did.
pub fn run(g: &Global, from: &str, to: &str, force: bool) -> Result<std::process::ExitCode> {
    let m = migrate(g, from, to, force)?;
    let (from_shown, to_shown) = (avm_postgres::redact(from), avm_postgres::redact(to));
    if g.json {
        println!(
            "{}",
            json!({
                "from": from_shown, "to": to_shown, "nodes": m.nodes, "vectors": m.vectors,
                "failed": m.failed.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "Moved {} nodes and {} vectors from {from_shown} to {to_shown}",
            m.nodes, m.vectors
        );
        for (p, e) in &m.failed {
            eprintln!("avm: {p}: {e}");
        }
        if !m.failed.is_empty() {
            eprintln!(
                "avm: {} nodes were not moved; run again with --force to replace what exists at the destination",
                m.failed.len()
            );
        }
    }
    Ok(if m.failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
