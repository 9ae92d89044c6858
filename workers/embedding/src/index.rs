//! Vector search: an exact scan for small collections, an HNSW graph for large ones.
//!
//! The vectors live in SQLite; this index is a cache rebuilt when the store's vector stamp
//! changes. hnsw_rs cannot delete, so the graph is rebuilt rather than patched; candidates it
//! returns are always re-checked against the live nodes, and when filters leave fewer than
//! asked the search falls back to the exact scan, so results never come back short.

use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{DistDot, Hnsw};
use serde::{Deserialize, Serialize};

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

    /// A digest of the ids in index order (a saved graph fits only the same ids).
    fn ids_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for id in &self.ids {
            h.update(id.to_le_bytes());
        }
        avm_core::bytes::hex(&h.finalize()[..16])
    }

    /// Saves the graph under `dir` (`graph.hnsw.graph`, `graph.hnsw.data`, `manifest.json`).
    pub fn save_graph(&self, dir: &Path) -> std::result::Result<(), String> {
        let Some(h) = &self.hnsw else {
            return Ok(());
        };
        avm_core::files::private_dir(dir).map_err(|e| e.to_string())?;
        for f in ["graph.hnsw.graph", "graph.hnsw.data", "manifest.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let base = h.file_dump(dir, "graph").map_err(|e| e.to_string())?;
        let m = Manifest {
            stamp: self.stamp,
            count: self.len(),
            ids: self.ids_digest(),
            basename: base,
        };
        let tmp = dir.join("manifest.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&m).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        std::fs::rename(tmp, dir.join("manifest.json")).map_err(|e| e.to_string())
    }

    /// Attaches the graph saved under `dir` if it was built from exactly these vectors.
    pub fn load_graph(&mut self, dir: &Path) -> bool {
        let Ok(text) = std::fs::read(dir.join("manifest.json")) else {
            return false;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&text) else {
            return false;
        };
        if m.stamp != self.stamp || m.count != self.len() || m.ids != self.ids_digest() {
            return false;
        }
        // The loaded graph borrows its loader; the index lives as long as the process
        // (it is replaced only when the vectors change), so the loader is kept for good.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &m.basename)));
        match io.load_hnsw::<f32, DistDot>() {
            Ok(h) => {
                self.hnsw = Some(h);
                true
            }
            Err(_) => false,
        }
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

/// What a saved graph was built from.
#[derive(Serialize, Deserialize)]
struct Manifest {
    stamp: i64,
    count: usize,
    ids: String,
    basename: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(i64, Vec<f32>)> {
        let mut x: u64 = 7;
        (0..n)
            .map(|i| {
                let v: Vec<f32> = (0..16)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 1000) as f32 / 1000.0 - 0.5
                    })
                    .collect();
                let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                (i as i64 * 3, v.into_iter().map(|a| a / n).collect())
            })
            .collect()
    }

    #[test]
    fn a_saved_graph_loads_only_for_the_same_vectors_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = VectorIndex::build(items(2000), 16, 42, false);
        a.build_graph();
        a.save_graph(dir.path()).unwrap();
        let q = &items(1)[0].1;
        let mut b = VectorIndex::build(items(2000), 16, 42, false);
        assert!(b.load_graph(dir.path()));
        assert_eq!(a.approx(q, 10, 64), b.approx(q, 10, 64));
        let mut stale = VectorIndex::build(items(2000), 16, 43, false);
        assert!(!stale.load_graph(dir.path()), "another stamp");
        let mut fewer = VectorIndex::build(items(1999), 16, 42, false);
        assert!(!fewer.load_graph(dir.path()), "other vectors");
        // The graph's answers agree with the exact scan on most of the top 10.
        let exact = a.exact(q, 10);
        let approx = a.approx(q, 10, 64);
        let same = approx
            .iter()
            .filter(|x| exact.iter().any(|e| e.0 == x.0))
            .count();
        assert!(same >= 8, "{same}");
    }
}
