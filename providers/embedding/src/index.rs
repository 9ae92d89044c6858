//! Vector search: an exact scan for small collections, an HNSW graph for large ones.
//!
//! The vectors live in SQLite; this index is a cache rebuilt when the store's vector stamp
//! changes. hnsw_rs cannot delete, so the graph is rebuilt rather than patched; candidates it
//! returns are always re-checked against the live nodes, and when filters leave fewer than
//! asked the search falls back to the exact scan, so results never come back short.

use hnsw_rs::prelude::{DistDot, Hnsw};

use crate::embedder::dot;

/// Collections at least this large get an HNSW graph (when the caller allows building one).
pub const HNSW_MIN: usize = 20_000;

/// A searchable set of unit vectors.
pub struct VectorIndex {
    ids: Vec<i64>,
    data: Vec<f32>,
    dim: usize,
    hnsw: Option<Hnsw<'static, f32, DistDot>>,
    /// The store stamp this index was built from.
    pub stamp: i64,
}

impl VectorIndex {
    /// An index over `(id, vector)` pairs; `graph` builds the HNSW graph for large sets.
    pub fn build(items: Vec<(i64, Vec<f32>)>, dim: usize, stamp: i64, graph: bool) -> Self {
        let mut ids = Vec::with_capacity(items.len());
        let mut data = Vec::with_capacity(items.len() * dim);
        for (id, v) in items {
            if v.len() != dim {
                continue;
            }
            ids.push(id);
            data.extend_from_slice(&v);
        }
        let mut idx = VectorIndex {
            ids,
            data,
            dim,
            hnsw: None,
            stamp,
        };
        if graph && idx.len() >= HNSW_MIN {
            idx.build_graph();
        }
        idx
    }

    /// Builds (or rebuilds) the HNSW graph: M=16, ef_construction=100.
    pub fn build_graph(&mut self) {
        let n = self.len();
        let hnsw = Hnsw::<f32, DistDot>::new(16, n.max(1), 16, 100, DistDot {});
        let owned: Vec<Vec<f32>> = (0..n)
            .map(|i| self.data[i * self.dim..(i + 1) * self.dim].to_vec())
            .collect();
        let pairs: Vec<(&Vec<f32>, usize)> =
            owned.iter().enumerate().map(|(i, v)| (v, i)).collect();
        hnsw.parallel_insert(&pairs);
        self.hnsw = Some(hnsw);
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether an HNSW graph is built.
    pub fn has_graph(&self) -> bool {
        self.hnsw.is_some()
    }

    /// Exact top-`k` by cosine, `(id, similarity)`, best first.
    pub fn exact(&self, q: &[f32], k: usize) -> Vec<(i64, f32)> {
        let mut scored: Vec<(f32, usize)> = (0..self.len())
            .map(|i| (dot(q, &self.data[i * self.dim..(i + 1) * self.dim]), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        if k < scored.len() {
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(s, i)| (self.ids[i], s)).collect()
    }

    /// Approximate top-`k` through the graph (exact when there is no graph).
    pub fn approx(&self, q: &[f32], k: usize, ef: usize) -> Vec<(i64, f32)> {
        match &self.hnsw {
            None => self.exact(q, k),
            Some(h) => h
                .search(q, k, ef.max(k))
                .into_iter()
                .map(|n| (self.ids[n.d_id], 1.0 - n.distance))
                .collect(),
        }
    }
}
