//! `avm bench semantic`: embedding latency and throughput, vector search speed and recall@10,
//! and the cold start of `avm recall` with the model.

use std::time::{Duration, Instant};

use serde_json::json;

use avm_core::{Error, ErrorKind, Result};
use avm_embedding::embedder::{Embedder, OrtEmbedder};
use avm_embedding::index::VectorIndex;
use avm_embedding::model::DIM;

fn pct(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort_unstable();
    lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
}

/// xorshift for reproducible synthetic vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        // Roughly normal: the sum of 4 uniforms, centred.
        let u = |v: u64| (v >> 40) as f32 / (1u64 << 24) as f32;
        let m = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        u(m) + u(m << 8) + u(m << 16) + u(m << 24) - 2.0
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Unit vectors with low intrinsic dimension (a random 384×24 linear map of Gaussian points,
/// plus a little noise). Real sentence embeddings concentrate near such a low-dimensional
/// structure; uniform noise in 384 dimensions, on which every index does badly, does not.
fn clustered(n: usize, seed: u64) -> Vec<Vec<f32>> {
    const K: usize = 24;
    let mut basis_rng = Rng(12345);
    let a: Vec<f32> = (0..DIM * K).map(|_| basis_rng.next()).collect();
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let z: Vec<f32> = (0..K).map(|_| r.next()).collect();
            unit(
                (0..DIM)
                    .map(|d| {
                        let mut s = 0.0;
                        for (k, zk) in z.iter().enumerate() {
                            s += a[d * K + k] * zk;
                        }
                        s + 0.05 * r.next()
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Runs the bench and prints a table (or JSON).
pub fn run(sizes: &[usize], queries: usize, json_out: bool) -> Result<()> {
    let config = avm_core::config::load(&avm_core::config::Sources {
        env: true,
        ..Default::default()
    })?;
    let files = crate::app::model_files(&config)?;
    if !files.missing().is_empty() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "avm bench semantic needs the embedding model: run `avm model install`",
        ));
    }
    let mut rows = Vec::new();
    let mut say = |name: &str, v: serde_json::Value| {
        if !json_out {
            println!("{name:<52} {v}");
        }
        rows.push(json!({"name": name, "value": v}));
    };
    if !json_out {
        eprintln!("avm bench semantic ({} build)", crate::bench::build_label());
    }
    let t = Instant::now();
    let e = OrtEmbedder::load(&files)?;
    say(
        "model load",
        json!(format!("{:.0} ms", t.elapsed().as_secs_f64() * 1e3)),
    );
    // Query embedding: distinct short queries (no cache hits).
    for i in 0..5 {
        e.embed_query(&format!("warm up {i}"))?;
    }
    let mut lat = Vec::new();
    for i in 0..queries {
        let q = format!("what did the team decide about release {i} of the billing service?");
        let t = Instant::now();
        e.embed_query(&q)?;
        lat.push(t.elapsed());
    }
    say(
        "query embedding p50 / p99",
        json!(format!(
            "{:.2} ms / {:.2} ms",
            pct(&mut lat, 0.5) / 1e3,
            pct(&mut lat, 0.99) / 1e3
        )),
    );
    // Bulk: 256 memory-like documents (~60 words).
    let docs: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "Meeting note {i}: the billing service release slipped because the payment provider changed its API; \
                 we agreed to add retries, extend the timeout to {} seconds and review error budgets with the SRE team next week. \
                 Owner: team {}.",
                10 + i % 50,
                i % 7
            )
        })
        .collect();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let t = Instant::now();
    e.embed(&refs)?;
    let secs = t.elapsed().as_secs_f64();
    say(
        "bulk embedding (256 docs of ~60 words)",
        json!(format!("{:.0} docs/s", 256.0 / secs)),
    );
    for &n in sizes {
        let data = clustered(n, 7 + n as u64);
        let qs = clustered(queries, 99 + n as u64);
        let items: Vec<(i64, Vec<f32>)> = data
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v))
            .collect();
        let exact_idx = VectorIndex::build(items.clone(), DIM, 0, false);
        let mut lat = Vec::new();
        let mut truth = Vec::new();
        for q in &qs {
            let t = Instant::now();
            truth.push(exact_idx.exact(q, 10));
            lat.push(t.elapsed());
        }
        say(
            &format!("exact search, {n} vectors, p50 / p99"),
            json!(format!(
                "{:.2} ms / {:.2} ms",
                pct(&mut lat, 0.5) / 1e3,
                pct(&mut lat, 0.99) / 1e3
            )),
        );
        let t = Instant::now();
        let mut hnsw = VectorIndex::build(items, DIM, 0, false);
        hnsw.build_graph();
        say(
            &format!("HNSW build, {n} vectors (M 16, ef_c 100)"),
            json!(format!("{:.1} s", t.elapsed().as_secs_f64())),
        );
        for ef in [64usize, 128, 256] {
            let mut lat = Vec::new();
            let mut hit = 0usize;
            for (q, tr) in qs.iter().zip(&truth) {
                let t = Instant::now();
                let got = hnsw.approx(q, 10, ef);
                lat.push(t.elapsed());
                hit += got.iter().filter(|g| tr.iter().any(|x| x.0 == g.0)).count();
            }
            say(
                &format!("HNSW search, {n} vectors, ef {ef}: p50 / p99, recall@10"),
                json!(format!(
                    "{:.2} ms / {:.2} ms, {:.3}",
                    pct(&mut lat, 0.5) / 1e3,
                    pct(&mut lat, 0.99) / 1e3,
                    hit as f64 / (qs.len() * 10) as f64
                )),
            );
        }
    }
    // Cold start: a fresh `avm recall` process on a small store with the model.
    let dir = std::env::temp_dir().join(format!("avm-bench-sem-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let db = dir.join("cold.db");
    let exe =
        std::env::current_exe().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let avm = |args: &[&str]| {
        std::process::Command::new(&exe)
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
    };
    for (i, d) in docs.iter().take(50).enumerate() {
        avm(&["-a", "bench", "remember", d, "-t", &format!("note {i}")])?;
    }
    avm(&["reindex"])?;
    let mut lat = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        let o = avm(&[
            "-a",
            "bench",
            "recall",
            &format!("payment provider retries {i}"),
            "-t",
            "500",
        ])?;
        lat.push(t.elapsed());
        if !o.status.success() {
            return Err(Error::new(
                ErrorKind::Internal,
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    say(
        "cold start of `avm recall` with the model, p50",
        json!(format!("{:.0} ms", pct(&mut lat, 0.5) / 1e3)),
    );
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    }
    Ok(())
}
