//! Shared bench machinery: a deterministic corpus and the `avm bench store` run.
//!
//! Used by the criterion benches in this crate and by `avm bench store`, so both measure the
//! same thing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod prose;
pub mod quality_bench;
pub mod recall_bench;

use avm_core::{Caller, Host, Mount, Put, Result, SearchOptions, WriteInput};
use avm_provider_memory::{MemoryProvider, Store, StoreOptions};

/// A small deterministic PRNG (xorshift64*), so corpora are the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Roughly Zipf-distributed index in `0..n` (small indexes far more likely).
    pub fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (((n as f64).powf(u)) as usize).saturating_sub(1).min(n - 1)
    }
}

/// Vocabulary size of the synthetic corpus.
pub const VOCAB: usize = 20_000;

/// The `i`th word of the vocabulary: four syllables, so no word is a prefix of another
/// (a prefix-chained vocabulary would make every prefix query match many words).
pub fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "du", "fi", "go", "hu", "ja",
        "wy",
    ];
    let mut s = String::with_capacity(8);
    let mut x = i;
    for _ in 0..4 {
        s.push_str(SYL[x % 16]);
        x /= 16;
    }
    s
}

/// The path of corpus node `i`.
pub fn path(i: usize) -> String {
    format!("/memory/shared/ns{}/note{i}.md", i % 64)
}

/// Content of corpus node `i`: about 40 words (~300 bytes) drawn Zipf-like.
pub fn content(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(320);
    for k in 0..40 {
        if k > 0 {
            s.push(if k % 12 == 0 { '\n' } else { ' ' });
        }
        s.push_str(&word(rng.zipf(VOCAB)));
    }
    s
}

/// A host over a fresh SQLite store at `db`, and the store (for what only SQLite has, such as
/// the reference ranking).
pub fn open(db: &Path, opts: StoreOptions) -> Result<(Host, Arc<Store>)> {
    let store = Arc::new(Store::open(db, opts)?);
    let mem = MemoryProvider::new(store.clone());
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem))]).map_err(|e| {
        e.into_iter()
            .next()
            .unwrap_or_else(|| avm_core::Error::internal("mount"))
    })?;
    Ok((host, store))
}

/// A store opened for one measurement: the host over it, and the SQLite store when it is one
/// (for the FTS5 reference ranking).
pub struct Opened {
    /// The host.
    pub host: Host,
    /// The SQLite store, when the bench runs on SQLite.
    pub sqlite: Option<Arc<Store>>,
    /// The PostgreSQL database's address, when the bench runs there.
    pub postgres: Option<String>,
}

/// Opens the store `name` for a measurement: `dir/name.db`, or a scratch database on the
/// PostgreSQL server `o.postgres` names (a cache setting means nothing there: it has none).
/// A name opened again in the same run reopens the same database.
fn open_target(
    dir: &Path,
    name: &str,
    opts: StoreOptions,
    o: &BenchOptions,
    scratch: &mut std::collections::HashMap<String, avm_postgres::testing::TestDb>,
) -> Result<Opened> {
    match &o.postgres {
        None => {
            let (host, store) = open(&dir.join(format!("{name}.db")), opts)?;
            Ok(Opened {
                host,
                sqlite: Some(store),
                postgres: None,
            })
        }
        Some(admin) => {
            if !scratch.contains_key(name) {
                scratch.insert(
                    name.to_string(),
                    avm_postgres::testing::TestDb::create_on(admin, &format!("bench{name}"))?,
                );
            }
            let url = scratch
                .get(name)
                .map(|t| t.url().to_string())
                .ok_or_else(|| avm_core::Error::internal("scratch database"))?;
            let store = avm_provider_memory::postgres::PgStore::open(
                &url,
                avm_provider_memory::postgres::PgStoreOptions {
                    max_connections: 32,
                    max_node_bytes: opts.max_node_bytes,
                    ..Default::default()
                },
            )?;
            let mem = MemoryProvider::new(Arc::new(store));
            let host = Host::new(vec![Mount::new("/**", Arc::new(mem))]).map_err(|e| {
                e.into_iter()
                    .next()
                    .unwrap_or_else(|| avm_core::Error::internal("mount"))
            })?;
            Ok(Opened {
                host,
                sqlite: None,
                postgres: Some(url),
            })
        }
    }
}

/// After a fill, PostgreSQL's statistics as its autovacuum would soon have them on a live
/// store (measured before that, the planner still sees the empty tables of the start, and
/// searches look slower than a store in use ever is). Nothing to do on SQLite.
pub fn analyze(postgres: Option<&str>) -> Result<()> {
    use avm_postgres::Queries as _;
    if let Some(url) = postgres {
        let pg = avm_postgres::Pg::connect(url, avm_postgres::PgOptions::default())?;
        pg.conn()?.batch_execute("ANALYZE").map_err(|e| pg.err(e))?;
    }
    Ok(())
}

/// Writes of corpus nodes `range` with fresh content.
pub fn writes(rng: &mut Rng, range: std::ops::Range<usize>) -> Vec<(String, WriteInput)> {
    range
        .map(|k| {
            let put = Put {
                content: Some(content(rng).into()),
                ..Put::default()
            };
            (path(k), WriteInput::Put(put))
        })
        .collect()
}

/// Fills the store with `n` corpus nodes, 1000 per transaction.
pub fn fill(host: &Host, n: usize, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        for r in host.write_many(&Caller::Operator, writes(&mut rng, i..end)) {
            r?;
        }
        i = end;
    }
    Ok(())
}

/// Fills the store with `n` memories of [`prose`], 1000 per transaction.
pub fn fill_prose(host: &Host, n: usize, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let batch: Vec<(String, WriteInput)> = (i..end)
            .map(|k| {
                let put = Put {
                    content: Some(prose::memory(&mut rng).into()),
                    ..Put::default()
                };
                (path(k), WriteInput::Put(put))
            })
            .collect();
        for r in host.write_many(&Caller::Operator, batch) {
            r?;
        }
        i = end;
    }
    Ok(())
}

/// Latency summary of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// What was measured.
    pub name: String,
    /// Operations.
    pub ops: usize,
    /// Operations per second (wall clock, all threads).
    pub ops_per_sec: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

pub(crate) fn summarize(name: &str, mut lat: Vec<Duration>, wall: Duration) -> Summary {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[idx].as_secs_f64() * 1e6
    };
    Summary {
        name: name.to_string(),
        ops: lat.len(),
        ops_per_sec: lat.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Runs `work(t)` on `n` scoped threads and gathers their latencies.
fn in_threads(
    n: usize,
    work: impl Fn(usize) -> Result<Vec<Duration>> + Sync,
) -> Result<Vec<Duration>> {
    std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = (0..n).map(|t| s.spawn(move || work(t))).collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| avm_core::Error::internal("bench thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// Options of [`store_bench`].
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Run on PostgreSQL instead of SQLite: the address of a server whose user may create
    /// databases (each measurement gets a scratch database, dropped afterwards).
    pub postgres: Option<String>,
    /// Corpus size.
    pub n: usize,
    /// Concurrent writer threads.
    pub writers: usize,
    /// Reader threads for the parallel cold-read run.
    pub readers: usize,
    /// Run only these parts (`write`, `writers` = only the concurrent-writer run, `read`,
    /// `search`); empty = all.
    pub only: Vec<String>,
}

/// Runs the store benchmark in `dir` and reports each measurement through `progress`.
pub fn store_bench(
    dir: &Path,
    o: &BenchOptions,
    mut progress: impl FnMut(&Summary),
) -> Result<Vec<Summary>> {
    let mut out = Vec::new();
    let mut push = |s: Summary, out: &mut Vec<Summary>| {
        progress(&s);
        out.push(s);
    };
    let op = Caller::Operator;
    let want = |part: &str| o.only.is_empty() || o.only.iter().any(|p| p == part);
    let mut scratch = std::collections::HashMap::new();
    let mut open = |name: &str, opts: StoreOptions| open_target(dir, name, opts, o, &mut scratch);

    if want("write") {
        // 1. Single writer: each write waits for its own commit.
        let host = open("writes", StoreOptions::default())?.host;
        let mut rng = Rng::new(1);
        let n_single = o.n.min(20_000);
        let bodies: Vec<String> = (0..n_single).map(|_| content(&mut rng)).collect();
        let mut lat = Vec::with_capacity(n_single);
        let start = Instant::now();
        for (i, body) in bodies.into_iter().enumerate() {
            let t = Instant::now();
            host.write(
                &op,
                &path(i),
                WriteInput::Put(Put {
                    content: Some(body.into()),
                    ..Put::default()
                }),
            )?;
            lat.push(t.elapsed());
        }
        push(
            summarize(
                "write, 1 thread (each waits for commit)",
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        drop(host);

        // 1b. One thread handing over 100 writes at a time (import-style bulk writes).
        let host = open("bulk", StoreOptions::default())?.host;
        let mut rng = Rng::new(2);
        let n_bulk = o.n.min(50_000);
        let mut lat = Vec::with_capacity(n_bulk);
        let start = Instant::now();
        let mut i = 0;
        while i < n_bulk {
            let end = (i + 100).min(n_bulk);
            let batch = writes(&mut rng, i..end);
            let t = Instant::now();
            for r in host.write_many(&op, batch) {
                r?;
            }
            let per = t.elapsed() / (end - i) as u32;
            lat.extend(std::iter::repeat_n(per, end - i));
            i = end;
        }
        push(
            summarize(
                "write, 1 thread, 100 per call (per write)",
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        drop(host);
    }
    if want("write") || want("writers") {
        // 2. Many writers at once: group commit shares transactions between them.
        let host = open("writers", StoreOptions::default())?.host;
        let per = (o.n.min(32_000) / o.writers.max(1)).max(1);
        let start = Instant::now();
        let lat = in_threads(o.writers.max(1), |t| {
            let mut rng = Rng::new(100 + t as u64);
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let body = content(&mut rng);
                let t0 = Instant::now();
                host.write(
                    &Caller::Operator,
                    &format!("/memory/shared/w{t}/n{i}.md"),
                    WriteInput::Put(Put {
                        content: Some(body.into()),
                        ..Put::default()
                    }),
                )?;
                lat.push(t0.elapsed());
            }
            Ok(lat)
        })?;
        push(
            summarize(
                &format!("write, {} threads at once", o.writers),
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        drop(host);
    }
    if !want("read") && !want("search") {
        return Ok(out);
    }

    // 3. Corpus for reads and search.
    {
        let opened = open("corpus", StoreOptions::default())?;
        fill(&opened.host, o.n, 7)?;
        analyze(opened.postgres.as_deref())?;
    }

    let reads = 200_000.min(o.n * 4);
    if want("read") {
        // Cold: no hot cache, every read goes to SQLite.
        let host = open(
            "corpus",
            StoreOptions {
                cache_entries: 0,
                ..StoreOptions::default()
            },
        )?
        .host;
        let mut rng = Rng::new(3);
        let paths: Vec<String> = (0..reads).map(|_| path(rng.below(o.n))).collect();
        let mut lat = Vec::with_capacity(reads);
        let start = Instant::now();
        for p in &paths {
            let t = Instant::now();
            host.read(&op, p)?;
            lat.push(t.elapsed());
        }
        push(
            summarize("read, cold (cache off, 1 thread)", lat, start.elapsed()),
            &mut out,
        );
        let threads = o.readers.max(1);
        let start = Instant::now();
        let lat = in_threads(threads, |t| {
            let mut lat = Vec::with_capacity(paths.len() / threads + 1);
            for p in paths.iter().skip(t).step_by(threads) {
                let t0 = Instant::now();
                host.read(&Caller::Operator, p)?;
                lat.push(t0.elapsed());
            }
            Ok(lat)
        })?;
        push(
            summarize(
                &format!("read, cold (cache off, {threads} threads)"),
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        drop(host);

        // Hot: a working set that fits the cache, read repeatedly.
        let host = open("corpus", StoreOptions::default())?.host;
        let hot: Vec<String> = (0..10_000.min(o.n)).map(path).collect();
        for p in &hot {
            host.read(&op, p)?;
        }
        let mut lat = Vec::with_capacity(reads);
        let mut rng = Rng::new(5);
        let start = Instant::now();
        for _ in 0..reads {
            let p = &hot[rng.below(hot.len())];
            let t = Instant::now();
            host.read(&op, p)?;
            lat.push(t.elapsed());
        }
        push(
            summarize("read, hot (cached, 1 thread)", lat, start.elapsed()),
            &mut out,
        );
    }
    let corpus = open("corpus", StoreOptions::default())?;
    let (host, _m) = (corpus.host, corpus.sqlite);
    if want("search") {
        // FTS, two query mixes: specific words (uniform over the vocabulary: names, tickers,
        // the usual agent query) and common words (ranks 50..2050: each in ~0.2-8% of nodes).
        for (label, lo, span) in [("specific words", 0, VOCAB), ("common words", 50, 2000)] {
            let mut rng = Rng::new(9);
            let queries: Vec<String> = (0..2000)
                .map(|_| {
                    format!(
                        "{} {}",
                        word(lo + rng.below(span)),
                        word(lo + rng.below(span))
                    )
                })
                .collect();
            let mut lat = Vec::with_capacity(queries.len());
            let start = Instant::now();
            for q in &queries {
                let t = Instant::now();
                host.search(
                    &op,
                    "/",
                    &SearchOptions {
                        query: q.clone(),
                        limit: 10,
                    },
                )?;
                lat.push(t.elapsed());
            }
            push(
                summarize(
                    &format!("search top 10, {label} ({} nodes)", o.n),
                    lat,
                    start.elapsed(),
                ),
                &mut out,
            );
            // The same queries ranked as before (FTS5 over every row holding a word).
            let Some(store) = _m.clone() else {
                continue;
            };
            let mut lat = Vec::with_capacity(queries.len());
            let start = Instant::now();
            for q in &queries {
                let t = Instant::now();
                store.search_reference("/", &op, q, 10)?;
                lat.push(t.elapsed());
            }
            push(
                summarize(
                    &format!("  the same, FTS5 rank of every row ({} nodes)", o.n),
                    lat,
                    start.elapsed(),
                ),
                &mut out,
            );
        }
        drop(host);
        // Questions in prose over memories in prose ([`prose`]): function words and common
        // words in every question, the answer in a few memories.
        let prose_db = open("prose", StoreOptions::default())?;
        let (host, _m) = (prose_db.host, prose_db.sqlite);
        fill_prose(&host, o.n, 11)?;
        let mut rng = Rng::new(13);
        let queries: Vec<prose::Question> = (0..2000).map(|_| prose::question(&mut rng)).collect();
        let mut lat = Vec::with_capacity(queries.len());
        let mut found = Vec::with_capacity(queries.len());
        let start = Instant::now();
        for q in &queries {
            let t = Instant::now();
            let hits = host.search(
                &op,
                "/",
                &SearchOptions {
                    query: q.text.clone(),
                    limit: 10,
                },
            )?;
            lat.push(t.elapsed());
            found.push(hits.into_iter().map(|h| h.path).collect::<Vec<_>>());
        }
        push(
            summarize(
                &format!("search top 10, questions ({} nodes)", o.n),
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        // The ranking search had before (FTS5 over every row holding any word), on fewer
        // questions (its cost grows with the store): its speed, how much of its top 10 the
        // new one shares, and how many of each top 10 could answer (name the question's
        // project and topic).
        let Some(store) = _m.clone() else {
            return Ok(out);
        };
        let few = (2_000_000 / o.n.max(1)).clamp(20, queries.len());
        let mut lat = Vec::with_capacity(few);
        let (mut shared, mut answer_new, mut answer_ref) = (0usize, 0usize, 0usize);
        let answers = |paths: &[String], q: &prose::Question| -> Result<usize> {
            let mut n = 0;
            for p in paths {
                if q.answered_by(&host.read(&op, p)?.text) {
                    n += 1;
                }
            }
            Ok(n)
        };
        let start = Instant::now();
        for (q, new) in queries.iter().zip(&found).take(few) {
            let t = Instant::now();
            let old: Vec<String> = store
                .search_reference("/", &op, &q.text, 10)?
                .into_iter()
                .map(|h| h.path)
                .collect();
            lat.push(t.elapsed());
            shared += new.iter().filter(|p| old.contains(p)).count();
            answer_new += answers(new, q)?;
            answer_ref += answers(&old, q)?;
        }
        push(
            summarize(
                &format!(
                    "search top 10, questions, FTS5 rank of every row ({} nodes)",
                    o.n
                ),
                lat,
                start.elapsed(),
            ),
            &mut out,
        );
        let pct = |n: usize| n as f64 * 10.0 / few as f64;
        eprintln!(
            "  questions: top 10 shared with the FTS5 ranking {:.1}%; memories that could answer: {:.1}% of the top 10 (FTS5 ranking: {:.1}%), over {few} questions",
            pct(shared),
            pct(answer_new),
            pct(answer_ref)
        );
    }
    Ok(out)
}
