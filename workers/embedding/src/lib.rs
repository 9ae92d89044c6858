//! avm-embedding: local sentence embeddings, the embedding queue and vector search.
//!
//! - [`model`]: the pinned model files, `avm model install` and `status`;
//! - [`embedder`]: all-MiniLM-L6-v2 through ONNX Runtime (`ort`, loaded dynamically);
//! - [`index`]: exact scan and HNSW over the vectors kept in SQLite;
//! - [`Semantic`]: the queue (driven by the events table: writes never wait, restarts resume,
//!   changed content is re-embedded, deleted and expired memories leave the results) and
//!   search, as the [`VectorSearch`] that recall and hybrid search use.

pub mod embedder;
pub mod index;
pub mod model;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use avm_core::address::is_within;
use avm_core::storage::{Keep, MemoryStore, Node, VectorDoc, VectorSearch};
use avm_core::{Caller, Error, Result};

use crate::embedder::{Embedder, OrtEmbedder};
use crate::index::VectorIndex;
use crate::model::{DIM, MODEL_ID, ModelFiles};

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Synced {
    /// Memories embedded now.
    pub embedded: usize,
    /// Memories still waiting (0 when the queue is empty).
    pub remaining: usize,
}

/// The text embedded for a memory: its title and content without remember's header lines.
pub fn document_text(n: &Node) -> String {
    let mut out = String::new();
    if let Some(t) = n.meta.get("title").and_then(|v| v.as_str()) {
        out.push_str(t);
        out.push('\n');
    }
    for line in n.text().lines() {
        if avm_core::storage::is_header_line(line) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Semantic search over one store.
pub struct Semantic {
    store: Arc<dyn MemoryStore>,
    files: Option<ModelFiles>,
    embedder: OnceLock<std::result::Result<Arc<dyn Embedder>, Error>>,
    index: Mutex<Option<Arc<VectorIndex>>>,
    graph: std::sync::atomic::AtomicBool,
    graph_dir: Mutex<Option<std::path::PathBuf>>,
}

/// Memories embedded before a query when the queue has a backlog (the rest waits for
/// `avm reindex` or the server's worker; recall falls back to full-text search for them).
pub const CATCH_UP: usize = 64;

impl Semantic {
    /// Semantic search with the model at `files` (loaded on first use). `graph` lets the
    /// index build an HNSW graph for large collections (worth it in long-lived processes).
    pub fn new(store: Arc<dyn MemoryStore>, files: ModelFiles, graph: bool) -> Self {
        Semantic {
            store,
            files: Some(files),
            embedder: OnceLock::new(),
            index: Mutex::new(None),
            graph: std::sync::atomic::AtomicBool::new(graph),
            graph_dir: Mutex::new(None),
        }
    }

    /// Lets large collections use an HNSW graph (long-lived processes: mounts, servers).
    pub fn use_graph(&self, on: bool) {
        self.graph.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where the HNSW graph is saved and loaded from (rebuilt when the vectors changed).
    pub fn set_graph_dir(&self, dir: std::path::PathBuf) {
        if let Ok(mut g) = self.graph_dir.lock() {
            *g = Some(dir);
        }
    }

    /// Semantic search with a ready embedder.
    pub fn with_embedder(store: Arc<dyn MemoryStore>, e: Arc<dyn Embedder>, graph: bool) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(Ok(e));
        Semantic {
            store,
            files: None,
            embedder: cell,
            index: Mutex::new(None),
            graph: std::sync::atomic::AtomicBool::new(graph),
            graph_dir: Mutex::new(None),
        }
    }

    /// Whether the model files are there (nothing is loaded).
    pub fn available(&self) -> bool {
        self.files.as_ref().is_none_or(|f| f.missing().is_empty())
    }

    /// The embedder, loading it on first use.
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        self.embedder
            .get_or_init(|| match &self.files {
                Some(f) => OrtEmbedder::load(f).map(|e| Arc::new(e) as Arc<dyn Embedder>),
                None => Err(Error::internal("no embedder")),
            })
            .clone()
    }

    /// Embeds memories that changed since the last sync, at most `limit` (all if `None`);
    /// `progress(done, total)` is called after each batch.
    pub fn sync(
        &self,
        limit: Option<usize>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Synced> {
        let last = self.store.last_event()?;
        if last <= self.store.vector_cursor()? {
            return Ok(Synced::default());
        }
        let e = self.embedder()?;
        let mut done = 0;
        let budget = limit.unwrap_or(usize::MAX);
        loop {
            let batch = (budget - done).min(64);
            if batch == 0 {
                let remaining = self.store.vectors_stale(e.model_id(), 10_000)?.len();
                return Ok(Synced {
                    embedded: done,
                    remaining,
                });
            }
            let stale = self.store.vectors_stale(e.model_id(), batch)?;
            if stale.is_empty() {
                self.store.vectors_put(last, e.model_id(), Vec::new())?;
                return Ok(Synced {
                    embedded: done,
                    remaining: 0,
                });
            }
            let texts: Vec<String> = stale.iter().map(document_text).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vecs = e.embed(&refs)?;
            let docs = stale
                .iter()
                .zip(vecs)
                .map(|(n, v)| VectorDoc {
                    node_id: n.id,
                    hash: n.hash.clone(),
                    vector: v,
                })
                .collect();
            // The cursor moves only when the queue is empty (above): a crash mid-way resumes.
            self.store
                .vectors_put(self.store.vector_cursor()?, e.model_id(), docs)?;
            done += stale.len();
            progress(done, done + stale.len());
        }
    }

    /// The in-memory index, reloaded when the stored vectors changed.
    pub fn index(&self) -> Result<Arc<VectorIndex>> {
        let stamp = self.store.vectors_stamp(MODEL_ID)?;
        let mut guard = self
            .index
            .lock()
            .map_err(|_| Error::internal("index lock poisoned"))?;
        if let Some(i) = guard.as_ref()
            && i.stamp == stamp
        {
            return Ok(i.clone());
        }
        let (items, stamp) = self.store.vectors_all(MODEL_ID)?;
        let graph = self.graph.load(std::sync::atomic::Ordering::Relaxed);
        let mut idx = VectorIndex::build(items, DIM, stamp, false);
        if graph && idx.len() >= index::HNSW_MIN {
            let dir = self.graph_dir.lock().ok().and_then(|g| g.clone());
            // A saved graph of exactly these vectors loads in about a second; otherwise
            // build one (about 70 s per 100k vectors here) and save it for the next start.
            let loaded = dir.as_ref().is_some_and(|d| idx.load_graph(d));
            if !loaded {
                idx.build_graph();
                if let Some(d) = &dir {
                    let _ = idx.save_graph(d);
                }
            }
        }
        let idx = Arc::new(idx);
        *guard = Some(idx.clone());
        Ok(idx)
    }

    /// The `limit` memories most similar to `query` within `scopes` that `caller` may see.
    pub fn search(
        &self,
        query: &str,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, f64)>> {
        if query.trim().is_empty() {
            return Err(Error::invalid("empty query: give at least one word"));
        }
        let q = self.embedder()?.embed_query(query)?;
        let idx = self.index()?;
        let in_scope = |p: &str| {
            scopes.iter().any(|s| is_within(p, s))
                && !is_within(p, "/trash")
                && caller.may_see(p)
                && keep(p)
        };
        let mut k = (limit * 4).max(64);
        let mut approx = idx.has_graph();
        loop {
            let cands = if approx {
                idx.approx(&q, k, k.max(64))
            } else {
                idx.exact(&q, k)
            };
            let ids: Vec<i64> = cands.iter().map(|c| c.0).collect();
            let paths: HashMap<i64, String> =
                self.store.paths_of_ids(&ids, caller)?.into_iter().collect();
            let mut out = Vec::new();
            for (id, s) in &cands {
                if let Some(p) = paths.get(id)
                    && in_scope(p)
                {
                    out.push((p.clone(), f64::from(*s)));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if cands.len() < k && !approx {
                return Ok(out);
            }
            // Filtering left too few: widen, and go exact (the graph never comes back short).
            approx = false;
            if k >= idx.len() {
                return Ok(out);
            }
            k = k.saturating_mul(8);
        }
    }
}

impl VectorSearch for Semantic {
    fn similar(
        &self,
        query: &str,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, f64)>> {
        self.sync(Some(CATCH_UP), &mut |_, _| {})?;
        self.search(query, scopes, caller, keep, limit)
    }
}
