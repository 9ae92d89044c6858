//! Criterion benches of the memory store through the host: write, cold read, hot read and
//! FTS search at 10k and 100k nodes. Run with `cargo bench -p avm-benches`.
//! (`AVM_BENCH_SIZES=10000` limits the corpus sizes for a quick run.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use avm_benches::{Rng, content, fill, open, path, word};
use avm_core::{Caller, Put, SearchOptions, WriteInput};
use avm_provider_memory::StoreOptions;

fn sizes() -> Vec<usize> {
    std::env::var("AVM_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (host, _m) = open(&dir.path().join("w.db"), StoreOptions::default()).unwrap();
    let mut rng = Rng::new(1);
    let mut i = 0usize;
    c.bench_function("write/new node, waits for commit", |b| {
        b.iter(|| {
            i += 1;
            let body = content(&mut rng);
            host.write(
                &Caller::Operator,
                &path(i),
                WriteInput::Put(Put {
                    content: Some(body.into()),
                    ..Put::default()
                }),
            )
            .unwrap()
        })
    });
}

fn reads_and_search(c: &mut Criterion) {
    for n in sizes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("corpus.db");
        {
            let (host, _m) = open(&db, StoreOptions::default()).unwrap();
            fill(&host, n, 7).unwrap();
        }
        let mut g = c.benchmark_group(format!("store/{n}"));
        let (cold, _m1) = open(
            &db,
            StoreOptions {
                cache_entries: 0,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let mut rng = Rng::new(3);
        g.bench_function(BenchmarkId::new("read", "cold"), |b| {
            b.iter(|| black_box(cold.read(&Caller::Operator, &path(rng.below(n))).unwrap()))
        });
        drop(cold);
        let (hot, _m2) = open(&db, StoreOptions::default()).unwrap();
        let working = 10_000.min(n);
        for i in 0..working {
            hot.read(&Caller::Operator, &path(i)).unwrap();
        }
        g.bench_function(BenchmarkId::new("read", "hot"), |b| {
            b.iter(|| {
                black_box(
                    hot.read(&Caller::Operator, &path(rng.below(working)))
                        .unwrap(),
                )
            })
        });
        g.bench_function(BenchmarkId::new("search", "fts top 10"), |b| {
            b.iter(|| {
                let q = format!(
                    "{} {}",
                    word(50 + rng.below(2000)),
                    word(50 + rng.below(2000))
                );
                black_box(
                    hot.search(
                        &Caller::Operator,
                        "/",
                        &SearchOptions {
                            query: q,
                            limit: 10,
                        },
                    )
                    .unwrap(),
                )
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = write, reads_and_search
}
criterion_main!(benches);
