//! `avm bench search`: search and recall latency as the store grows, on every path that
//! searches (in-process, the mount, a new CLI process), and with the model semantic and hybrid
//! search and recall with vectors.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use avm_benches::{Rng, fill_prose, prose};
use avm_core::storage::VectorDoc;
use avm_core::{Error, ErrorKind, Result, SearchOptions};

use crate::bench::{Row, print_rows, row, scratch, time_processes};

/// Questions with their in-process search time, slowest first.
type Slowest = Vec<(String, Duration)>;

/// A question as a query string of a path (`a+b+c`).
fn plus(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join("+")
}

/// Runs the bench at each size and prints one table per size (or JSON at the end).
/// What `avm bench search` measures.
pub struct SearchRun<'a> {
    /// Memory counts.
    pub sizes: &'a [usize],
    /// Questions per in-process measurement.
    pub questions: usize,
    /// `avm search` processes to time at each size.
    pub processes: usize,
    /// Memories the model embeds at each size.
    pub embedded: usize,
    /// How many of the slowest questions to print.
    pub slowest: usize,
    /// Scratch directory.
    pub dir: &'a Option<std::path::PathBuf>,
    /// A PostgreSQL server to run on instead of SQLite.
    pub postgres: Option<&'a str>,
}

pub fn run(r: &SearchRun<'_>, json: bool) -> Result<()> {
    let SearchRun {
        sizes,
        questions,
        processes,
        embedded,
        slowest,
        dir,
        postgres,
    } = *r;
    if sizes.is_empty() || sizes.contains(&0) || questions == 0 {
        return Err(Error::invalid(
            "--sizes must list memory counts of at least 1, and --questions must be at least 1",
        ));
    }
    let (dir, _tmp) = scratch(dir)?;
    let mut all: Vec<(usize, Vec<Row>, Slowest)> = Vec::new();
    for &n in sizes {
        // On PostgreSQL, a scratch database per size (dropped after it).
        let scratch_db = postgres
            .map(|admin| avm_postgres::testing::TestDb::create_on(admin, &format!("search{n}")))
            .transpose()?;
        if !json {
            eprintln!(
                "avm bench search: filling {n} memories {}",
                match &scratch_db {
                    Some(t) => format!("in PostgreSQL at {}", avm_postgres::redact(t.url())),
                    None => format!("in {}", dir.display()),
                }
            );
        }
        let (rows, slow) = one_size(
            &dir.join(format!("search-{n}")),
            scratch_db.as_ref().map(|t| t.url()),
            n,
            questions,
            processes,
            embedded,
            slowest,
        )?;
        if !json {
            print_rows(&format!("avm bench search: {n} memories"), &rows, false);
            for (q, d) in &slow {
                eprintln!("  slow: {:8.2} ms  {q}", d.as_secs_f64() * 1e3);
            }
        }
        all.push((n, rows, slow));
    }
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|(n, rows, slow)| {
                let slow: Vec<serde_json::Value> = slow
                    .iter()
                    .map(|(q, d)| serde_json::json!({ "question": q, "ms": d.as_secs_f64() * 1e3 }))
                    .collect();
                serde_json::json!({ "memories": n, "rows": rows, "slowest": slow })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    Ok(())
}

fn one_size(
    dir: &std::path::Path,
    url: Option<&str>,
    n: usize,
    questions: usize,
    processes: usize,
    embedded: usize,
    slowest: usize,
) -> Result<(Vec<Row>, Slowest)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", dir.display())))?;
    // The store: a SQLite file in `dir`, or the PostgreSQL database at `url`.
    let db = match url {
        Some(u) => std::path::PathBuf::from(u),
        None => dir.join("avm.db"),
    };
    // Full text only: vectors (and embedding what lags behind) are `avm bench semantic`'s.
    let config = dir.join("avm.toml");
    std::fs::write(&config, "[embedding]\nenabled = false\n")
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", config.display())))?;
    let g = crate::cli::Global {
        db: Some(db.clone()),
        config: Some(config.clone()),
        agent: None,
        json: false,
    };
    let app = crate::app::App::open(&g)?;
    let caller = app.caller.clone();
    fill_prose(&app.host, n, 11)?;
    avm_benches::analyze(url)?;
    let mut rng = Rng::new(13);
    let qs: Vec<String> = (0..questions)
        .map(|_| prose::question(&mut rng).text)
        .collect();
    let mut rows = Vec::new();
    let timed = |f: &mut dyn FnMut(&str) -> Result<()>| -> Result<Vec<Duration>> {
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t = Instant::now();
            f(q)?;
            lat.push(t.elapsed());
        }
        Ok(lat)
    };
    // Warm up once: recall's tokenizer tables load on first use.
    app.host
        .read(&caller, "/:recall?q=warm+up&max_tokens=500")
        .map(drop)?;
    // In-process, as a library or `avm serve` runs it.
    let lat = timed(&mut |q| {
        app.host
            .search(
                &caller,
                "/",
                &SearchOptions {
                    query: q.to_string(),
                    limit: 10,
                },
            )
            .map(drop)
    })?;
    let mut slow: Slowest = qs.iter().cloned().zip(lat.iter().copied()).collect();
    slow.sort_by_key(|a| std::cmp::Reverse(a.1));
    slow.truncate(slowest);
    rows.push(row("search top 10 (in-process)", lat));
    rows.push(row(
        "recall, 2000 tokens (in-process)",
        timed(&mut |q| {
            app.host
                .read(&caller, &format!("/:recall?q={}&max_tokens=2000", plus(q)))
                .map(drop)
        })?,
    ));
    // A new `avm search` process per question: what an agent's shell tool pays.
    if processes > 0 {
        let lat = time_processes("avm search", &qs, processes, |cmd, q| {
            cmd.arg("--db")
                .arg(&db)
                .arg("--config")
                .arg(&config)
                .args(["search", q, "--limit", "10"]);
        })?;
        rows.push(row("avm search process (top 10)", lat));
    }
    // Through a real mount, when this machine has FUSE. The in-process search is timed again
    // in the same loop, on alternate questions, so that the two see the same machine and the
    // same caches (each question's rows read by neither just before).
    if std::path::Path::new("/dev/fuse").exists() {
        let (mnt, session, host) =
            crate::bench::mount_app(app, caller.clone(), dir, avm_fuse::default_threads(), false)?;
        let (mut inproc, mut mount) = (Vec::new(), Vec::new());
        let run = (|| -> Result<()> {
            for (i, q) in qs.iter().enumerate() {
                let t = Instant::now();
                if i % 2 == 0 {
                    host.search(
                        &caller,
                        "/",
                        &SearchOptions {
                            query: q.to_string(),
                            limit: 10,
                        },
                    )?;
                    inproc.push(t.elapsed());
                } else {
                    std::fs::read(mnt.join(format!(":search?q={}&limit=10", plus(q))))
                        .map_err(|e| Error::new(ErrorKind::Unavailable, format!(":search: {e}")))?;
                    mount.push(t.elapsed());
                }
            }
            Ok(())
        })();
        session
            .umount_and_join()
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("unmount: {e}")))?;
        run?;
        rows.push(row(":search through the mount (top 10)", mount));
        rows.push(row("search top 10 (in-process, alternating)", inproc));
    }
    if embedded > 0 {
        rows.extend(vector_rows(dir, &db, embedded, &qs)?);
    }
    Ok((rows, slow))
}

/// `n` questions that differ from each other and from `taken`, so that no query embedding
/// comes from the embedder's cache (fewer when the question space runs out).
fn fresh_questions(rng: &mut Rng, n: usize, taken: &mut HashSet<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(50) {
        if out.len() == n {
            break;
        }
        let q = prose::question(rng).text;
        if taken.insert(q.clone()) {
            out.push(q);
        }
    }
    out
}

/// A copy of the unit vector `v`, nudged by noise (cosine about 0.94 to `v`) and normalised.
fn nudged(v: &[f32], rng: &mut Rng) -> Vec<f32> {
    let mut out: Vec<f32> = v
        .iter()
        .map(|x| x + ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.062)
        .collect();
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    out.iter_mut().for_each(|x| *x /= norm);
    out
}

/// Semantic and hybrid search and recall with vectors over the store at `db`, in a process
/// that has loaded the model and built its index (as `avm serve` or a mount has): the first
/// `embedded` memories are embedded by the model, the rest get nudged copies of those vectors.
fn vector_rows(
    dir: &std::path::Path,
    db: &std::path::Path,
    embedded: usize,
    asked: &[String],
) -> Result<Vec<Row>> {
    let config = dir.join("avm-vectors.toml");
    std::fs::write(&config, "[embedding]\nenabled = true\n")
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", config.display())))?;
    let app = crate::app::App::open(&crate::cli::Global {
        db: Some(db.to_path_buf()),
        config: Some(config),
        agent: None,
        json: false,
    })?;
    let Some(sem) = app.semantic.clone() else {
        eprintln!(
            "avm bench search: no semantic or hybrid rows: the embedding model is not \
             installed (run `avm model install`)"
        );
        return Ok(Vec::new());
    };
    sem.use_graph(true);
    let e = sem.embedder()?;
    let cursor = app.store.last_event()?;
    let mut real: Vec<Vec<f32>> = Vec::new();
    let mut rng = Rng::new(17);
    let t = Instant::now();
    let mut done = 0;
    loop {
        let stale = app.store.vectors_stale(e.model_id(), 2000)?;
        if stale.is_empty() {
            break;
        }
        let k = embedded.saturating_sub(real.len()).min(stale.len());
        let texts: Vec<String> = stale
            .iter()
            .take(k)
            .map(avm_embedding::document_text)
            .collect();
        for chunk in texts.chunks(32) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            real.extend(e.embed(&refs)?);
        }
        let mut vectors = real[real.len() - k..].to_vec();
        while vectors.len() < stale.len() {
            vectors.push(nudged(&real[rng.below(real.len())], &mut rng));
        }
        done += stale.len();
        let docs = stale
            .iter()
            .zip(vectors)
            .map(|(n, vector)| VectorDoc {
                node_id: n.id,
                hash: n.hash.clone(),
                vector,
            })
            .collect();
        app.store.vectors_put(cursor, e.model_id(), docs)?;
    }
    let t_index = Instant::now();
    let index = sem.index()?;
    eprintln!(
        "avm bench search: {done} vectors ({} embedded by the model) in {:.1} s; index of {} \
         ({}) in {:.1} s",
        real.len(),
        t_index.duration_since(t).as_secs_f64(),
        index.len(),
        if index.has_graph() {
            "HNSW"
        } else {
            "exact scan"
        },
        t_index.elapsed().as_secs_f64(),
    );
    let mut taken: HashSet<String> = asked.iter().cloned().collect();
    let mut qrng = Rng::new(29);
    let caller = app.caller.clone();
    let mut timed = |name: &str, path: &dyn Fn(&str) -> String| -> Result<Row> {
        let qs = fresh_questions(&mut qrng, asked.len(), &mut taken);
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t = Instant::now();
            app.host.read(&caller, &path(&plus(q)))?;
            lat.push(t.elapsed());
        }
        Ok(row(name, lat))
    };
    Ok(vec![
        timed("semantic top 10 (in-process, query embedded)", &|q| {
            format!("/:search?q={q}&mode=semantic&limit=10")
        })?,
        timed("hybrid top 10 (in-process, query embedded)", &|q| {
            format!("/:search?q={q}&mode=hybrid&limit=10")
        })?,
        timed("recall with vectors, 2000 tokens (in-process)", &|q| {
            format!("/:recall?q={q}&max_tokens=2000")
        })?,
    ])
}
