//! `avm bench store`: ops/s and p50/p99 for the store on this machine.

use avm_benches::{BenchOptions, store_bench};
use avm_core::{Error, ErrorKind, Result};

use crate::cli::BenchWhat;

/// Runs a bench and prints one line per measurement (or JSON at the end).
pub fn run(what: &BenchWhat, json: bool) -> Result<()> {
    match what {
        BenchWhat::Store {
            n,
            writers,
            readers,
            only,
            dir,
            postgres,
        } => {
            if let Some(bad) = only
                .iter()
                .find(|p| !["write", "writers", "read", "search"].contains(&p.as_str()))
            {
                return Err(Error::invalid(format!(
                    "--only {bad:?}: use write, writers, read or search"
                )));
            }
            if *n == 0 || *writers == 0 {
                return Err(Error::invalid("--n and --writers must be at least 1"));
            }
            let (dir, _tmp) = scratch(dir)?;
            if !json {
                let on = match postgres {
                    Some(url) => format!("PostgreSQL at {}", avm_postgres::redact(url)),
                    None => format!("SQLite in {}", dir.display()),
                };
                eprintln!(
                    "avm bench store: {n} nodes, {writers} writers, {on} ({} build)",
                    build_label()
                );
                println!(
                    "{:<44} {:>10} {:>12} {:>10} {:>10}",
                    "measurement", "ops", "ops/s", "p50 µs", "p99 µs"
                );
            }
            let results = store_bench(
                &dir,
                &BenchOptions {
                    n: *n,
                    writers: *writers,
                    readers: *readers,
                    only: only.clone(),
                    postgres: postgres.clone(),
                },
                |s| {
                    if !json {
                        println!(
                            "{:<44} {:>10} {:>12.0} {:>10.1} {:>10.1}",
                            s.name, s.ops, s.ops_per_sec, s.p50_us, s.p99_us
                        );
                    }
                },
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&results).unwrap_or_default()
                );
            }
            Ok(())
        }
        BenchWhat::Fuse { n, dir } => {
            let (dir, _tmp) = scratch(dir)?;
            let rows = fuse_bench(&dir, (*n).max(10))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else {
                eprintln!(
                    "avm bench fuse: {} ({} build)",
                    dir.display(),
                    build_label()
                );
                println!(
                    "{:<44} {:>8} {:>10} {:>10}",
                    "measurement", "ops", "p50 µs", "p99 µs"
                );
                for r in &rows {
                    println!(
                        "{:<44} {:>8} {:>10.1} {:>10.1}",
                        r.name, r.ops, r.p50_us, r.p99_us
                    );
                }
            }
            Ok(())
        }
        BenchWhat::Semantic { sizes, queries } => crate::bench_semantic::run(sizes, *queries, json),
        BenchWhat::Search {
            sizes,
            questions,
            processes,
            embedded,
            slowest,
            dir,
            postgres,
        } => crate::bench_search::run(
            &crate::bench_search::SearchRun {
                sizes,
                questions: *questions,
                processes: *processes,
                embedded: *embedded,
                slowest: *slowest,
                dir,
                postgres: postgres.as_deref(),
            },
            json,
        ),
        BenchWhat::Api { n, queries, dir } => {
            let (dir, _tmp) = scratch(dir)?;
            let rows = api_bench(&dir, (*n).max(10), (*queries).max(10))?;
            print_rows(&format!("avm bench api: {} memories", n), &rows, json);
            Ok(())
        }
        BenchWhat::Quality {
            conversations,
            budgets,
            hybrid,
            dir,
        } => {
            if *conversations == 0 || budgets.is_empty() {
                return Err(Error::invalid(
                    "--conversations must be at least 1 and give at least one budget",
                ));
            }
            let (dir, _tmp) = scratch(dir)?;
            let vectors = if *hybrid {
                Some(model_for_bench()?)
            } else {
                None
            };
            let r = avm_benches::quality_bench::quality_bench(
                &dir,
                &avm_benches::quality_bench::QualityOptions {
                    conversations: *conversations,
                    budgets: budgets.clone(),
                    vectors,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                return Ok(());
            }
            println!(
                "avm bench quality: {} conversations, {} turns, recall: {} ({} build)",
                conversations,
                r.turns,
                if r.hybrid { "hybrid" } else { "FTS + topics" },
                build_label()
            );
            println!(
                "evidence delivered in recall's answer / in the same ranking packed as plain text:"
            );
            let mut head = format!("{:<11} {:>5} {:>6} {:>6}", "questions", "n", "R@5", "R@10");
            for b in budgets {
                head.push_str(&format!(" {:>13}", format!("@{b}")));
            }
            println!("{head}");
            for k in &r.kinds {
                let mut line = format!(
                    "{:<11} {:>5} {:>6.3} {:>6.3}",
                    k.kind, k.questions, k.recall_at_5, k.recall_at_10
                );
                for (_, d, p) in &k.delivered {
                    line.push_str(&format!(" {:>13}", format!("{d:.3}/{p:.3}")));
                }
                println!("{line}");
            }
            for l in &r.latency {
                println!(
                    "{:<24} p50 {:>8.0} µs  p99 {:>8.0} µs",
                    l.name, l.p50_us, l.p99_us
                );
            }
            Ok(())
        }
        BenchWhat::Recall {
            n,
            questions,
            budgets,
            hybrid,
            cold,
            dir,
        } => {
            if *n < 100 || *questions == 0 || budgets.is_empty() {
                return Err(Error::invalid(
                    "--n must be at least 100, --questions at least 1, and give at least one budget",
                ));
            }
            let (dir, _tmp) = scratch(dir)?;
            if !json {
                eprintln!(
                    "avm bench recall: {n} memories, {questions} questions, in {} ({} build)",
                    dir.display(),
                    build_label()
                );
            }
            let r = avm_benches::recall_bench::recall_bench(
                &dir,
                &avm_benches::recall_bench::RecallBenchOptions {
                    n: *n,
                    questions: *questions,
                    budgets: budgets.clone(),
                    vectors: if *hybrid {
                        Some(model_for_bench()?)
                    } else {
                        None
                    },
                },
            )?;
            let cold_run = cold_recalls(&dir.join("recall.db"), &r.asked, *cold, *hybrid)?;
            if json {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                v["cold_process"] = serde_json::to_value(&cold_run).unwrap_or_default();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "corpus: {} memories written in {:.1}s, topic index built in {:.1}s{}; {} questions; recall: {}\n(hit: the answer among the entries; delivered: its fact sentence in the text; plain: the same ranking packed as whole memories)",
                    r.memories,
                    r.load_secs,
                    r.topic_sync_secs,
                    r.embed_secs
                        .map(|s| format!(", embedded in {s:.1}s ({:.0}/s)", r.memories as f64 / s))
                        .unwrap_or_default(),
                    r.questions,
                    if r.hybrid {
                        "hybrid (FTS + topics + vectors)"
                    } else {
                        "FTS + topics"
                    }
                );
                println!(
                    "{:<10} {:>9} {:>10} {:>10} {:>10} {:>7} {:>8} {:>10} {:>10}",
                    "budget",
                    "hit rate",
                    "delivered",
                    "plain",
                    "first hit",
                    "leaks",
                    "items",
                    "p50 µs",
                    "p99 µs"
                );
                for b in &r.budgets {
                    println!(
                        "{:<10} {:>9.3} {:>10.3} {:>10.3} {:>10.3} {:>7} {:>8.1} {:>10.0} {:>10.0}",
                        b.max_tokens,
                        b.hit_rate,
                        b.delivered_rate,
                        b.plain_rate,
                        b.first_rate,
                        b.leaks,
                        b.mean_items,
                        b.latency.p50_us,
                        b.latency.p99_us
                    );
                }
                if let Some(c) = &cold_run {
                    println!(
                        "cold `avm recall` process (no server, {}, budget 2000): {} runs, p50 {:.1} ms, p99 {:.1} ms",
                        if *hybrid {
                            "with the model"
                        } else {
                            "embeddings off"
                        },
                        c.ops,
                        c.p50_us / 1000.0,
                        c.p99_us / 1000.0
                    );
                }
            }
            Ok(())
        }
    }
}

/// Times `runs` new `avm recall` processes (this binary, no server) on the corpus `db`, one
/// question each, as the questions' agent: what an agent's shell tool pays per call.
fn cold_recalls(
    db: &std::path::Path,
    questions: &[String],
    runs: usize,
    hybrid: bool,
) -> Result<Option<Row>> {
    if runs == 0 || questions.is_empty() {
        return Ok(None);
    }
    let lat = time_processes("avm recall", questions, runs, |cmd, q| {
        cmd.args(["--db"])
            .arg(db)
            .args(["-a", "agent0", "recall", q, "-t", "2000"])
            .env(
                "AVM_EMBEDDING__ENABLED",
                if hybrid { "true" } else { "false" },
            );
    })?;
    Ok(Some(row("cold avm recall process", lat)))
}

/// Times `runs` new processes of this program, one per question (cycling through them),
/// each given its arguments by `args`; `what` names the command in errors.
pub(crate) fn time_processes(
    what: &str,
    questions: &[String],
    runs: usize,
    mut args: impl FnMut(&mut std::process::Command, &str),
) -> Result<Vec<std::time::Duration>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find this program: {e}")))?;
    let mut lat = Vec::with_capacity(runs);
    for q in questions.iter().cycle().take(runs) {
        let mut cmd = std::process::Command::new(&exe);
        args(&mut cmd, q);
        let t = std::time::Instant::now();
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::internal(format!("cannot run {what}: {e}")))?;
        lat.push(t.elapsed());
        if !out.status.success() {
            return Err(Error::internal(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(lat)
}

/// Mounts `app`'s host for `caller` at `dir/mnt` with `threads` workers; the mount point and
/// the session (unmount with its `umount_and_join`).
pub(crate) fn mount_app(
    app: crate::app::App,
    caller: avm_core::Caller,
    dir: &std::path::Path,
    threads: usize,
    inject_urgent: bool,
) -> Result<(
    std::path::PathBuf,
    fuser::BackgroundSession,
    std::sync::Arc<avm_core::Host>,
)> {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", mnt.display())))?;
    let max_bytes = app.config.max_node_bytes;
    let host = std::sync::Arc::new(app.host);
    let session = avm_fuse::mount(
        host.clone(),
        caller,
        &mnt,
        avm_fuse::MountOptions {
            threads,
            allow_other: false,
            max_bytes,
            inject_urgent,
        },
    )?;
    Ok((mnt, session, host))
}

/// One latency measurement.
#[derive(serde::Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) ops: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

pub(crate) fn row(name: &str, mut lat: Vec<std::time::Duration>) -> Row {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(0.0)
    };
    Row {
        name: name.into(),
        ops: lat.len(),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

pub(crate) fn timed(
    n: usize,
    mut f: impl FnMut(usize) -> std::io::Result<()>,
) -> Result<Vec<std::time::Duration>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = std::time::Instant::now();
        f(i).map_err(|e| Error::new(ErrorKind::Internal, format!("bench step failed: {e}")))?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

/// Mounts a scratch store in this process and times operations through the kernel.
fn fuse_bench(dir: &std::path::Path, n: usize) -> Result<Vec<Row>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", dir.display())))?;
    let g = crate::cli::Global {
        db: Some(dir.join("fuse.db")),
        config: None,
        agent: Some("bench".into()),
        json: false,
    };
    let app = crate::app::App::open(&g)?;
    let caller = app.caller.clone();
    // 1,000 memories in one directory, written before mounting.
    let items: Vec<(String, avm_core::WriteInput)> = (0..1000)
        .map(|i| {
            (
                format!("/memory/private/bench/dir/note{i:04}.md"),
                avm_core::WriteInput::Put(avm_core::Put {
                    content: Some(
                        format!(
                            "Note {i}: the quokka migration step {i} finished; follow-up in the review.\n"
                        )
                        .into(),
                    ),
                    tags: Some(vec!["bench".into()]),
                    ..avm_core::Put::default()
                }),
            )
        })
        .collect();
    for r in app.host.write_many(&caller, items) {
        r?;
    }
    let threads: usize = std::env::var("BENCH_FUSE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(avm_fuse::default_threads);
    let (mnt, session, _) = mount_app(app, caller, dir, threads, true)?;
    let base = mnt.join("memory/private/bench/dir");
    let file = base.join("note0042.md");
    let mut rows = Vec::new();
    // Warm up the tokenizer and caches once.
    let _ = std::fs::read(mnt.join(":recall?q=quokka&max_tokens=500"));
    // Each memory read once: nothing of it is cached yet (store cache or kernel).
    rows.push(row(
        "cold read (each memory once)",
        timed(n.min(1000), |i| {
            std::fs::read(base.join(format!("note{:04}.md", i % 1000))).map(drop)
        })?,
    ));
    rows.push(row(
        "hot read (cat of one memory)",
        timed(n, |_| std::fs::read(&file).map(drop))?,
    ));
    rows.push(row(
        ":meta of a memory",
        timed(n / 2, |_| {
            std::fs::read(base.join("note0042.md:meta")).map(drop)
        })?,
    ));
    rows.push(row(
        "ls of 1,000 entries",
        timed(50, |_| {
            std::fs::read_dir(&base).map(|d| {
                let _ = d.count();
            })
        })?,
    ));
    rows.push(row(
        "ls -l of 1,000 entries",
        timed(50, |_| {
            std::fs::read_dir(&base).and_then(|d| {
                for e in d {
                    std::fs::symlink_metadata(e?.path())?;
                }
                Ok(())
            })
        })?,
    ));
    rows.push(row(
        ":search?q=quokka+review (top 10)",
        timed(200, |_| {
            std::fs::read(mnt.join(":search?q=quokka+review&limit=10")).map(drop)
        })?,
    ));
    rows.push(row(
        ":recall?q=…&max_tokens=2000",
        timed(100, |i| {
            std::fs::read(mnt.join(format!(":recall?q=migration+step+{i}&max_tokens=2000")))
                .map(drop)
        })?,
    ));
    rows.push(row(
        "write+close of a new memory",
        timed(n / 2, |i| {
            std::fs::write(base.join(format!("new{i}.md")), "fresh memory\n")
        })?,
    ));
    let big: String = "0123456789abcdef".repeat(4096);
    rows.push(row(
        "write+close of 64 KiB",
        timed(n / 4, |i| {
            std::fs::write(base.join(format!("big{}.md", i % 20)), &big)
        })?,
    ));
    session
        .umount_and_join()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("unmount: {e}")))?;
    Ok(rows)
}

/// A scratch directory removed on drop.
pub(crate) struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `release`, or a warning that a debug build's numbers mean little.
/// The embedding model's files for a `--hybrid` bench, or why there are none.
fn model_for_bench() -> Result<avm_embedding::model::ModelFiles> {
    let config = avm_core::config::load(&avm_core::config::Sources {
        env: true,
        ..Default::default()
    })?;
    let f = crate::app::model_files(&config)?;
    if !f.missing().is_empty() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "--hybrid needs the embedding model: run `avm model install`",
        ));
    }
    Ok(f)
}

pub fn build_label() -> &'static str {
    if cfg!(debug_assertions) {
        "DEBUG — numbers are not representative"
    } else {
        "release"
    }
}

/// The bench's scratch directory: `dir` (created if needed), or a temporary one that is
/// removed when the returned guard drops.
pub(crate) fn scratch(
    dir: &Option<std::path::PathBuf>,
) -> Result<(std::path::PathBuf, Option<TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {}: {e}", d.display()),
                )
            })?;
            Ok((d.clone(), None))
        }
        None => {
            let t = tempdir()?;
            Ok((t.0.clone(), Some(t)))
        }
    }
}

fn tempdir() -> Result<TempDir> {
    let base = std::env::temp_dir().join(format!("avm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot create {}: {e}", base.display()),
        )
    })?;
    Ok(TempDir(base))
}

pub(crate) fn print_rows(title: &str, rows: &[Row], json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default());
        return;
    }
    eprintln!("{title} ({} build)", build_label());
    println!(
        "{:<44} {:>8} {:>10} {:>10}",
        "measurement", "ops", "p50 µs", "p99 µs"
    );
    for r in rows {
        println!(
            "{:<44} {:>8} {:>10.1} {:>10.1}",
            r.name, r.ops, r.p50_us, r.p99_us
        );
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

/// One HTTP/1.1 keep-alive GET as `agent`; returns the body.
fn http_get(
    conn: &mut std::io::BufReader<std::net::TcpStream>,
    host: &str,
    agent: &str,
    target: &str,
) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    write!(
        conn.get_mut(),
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nX-Avm-Agent: {agent}\r\nConnection: keep-alive\r\n\r\n"
    )?;
    let (code, body) = crate::remote::read_response(conn)?;
    if code != 200 {
        return Err(std::io::Error::other(format!(
            "HTTP {code}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body)
}

/// Recall round trips through `avm serve` (HTTP) and `avm mcp` (stdio) at `n` memories: the
/// recall bench's corpus (facts about synthetic systems spread over many agents' private and
/// shared namespaces) and its questions, asked by the agent the questions belong to.
/// Embeddings stay off in both servers so no background embedding competes with the timing.
fn api_bench(dir: &std::path::Path, n: usize, queries: usize) -> Result<Vec<Row>> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let (db, agent, questions) = {
        let c = avm_benches::recall_bench::corpus(dir, n, queries, None)?;
        c.memory.store().sync()?;
        let agent = c.asker.agent().unwrap_or("agent0").to_string();
        let qs: Vec<String> = c.questions.into_iter().map(|(q, _)| q).collect();
        (c.db, agent, qs)
    };
    if questions.is_empty() {
        return Err(Error::internal("the corpus produced no questions"));
    }
    let exe = std::env::current_exe().map_err(io_err("current exe"))?;
    let q = |i: usize| questions[i % questions.len()].clone();
    let nq = questions.len().min(queries);
    let enc = |s: String| {
        percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut rows = Vec::new();

    // HTTP: avm serve, one keep-alive connection.
    let mut srv = Command::new(&exe)
        .arg("--db")
        .arg(&db)
        .args(["serve", "--bind", "127.0.0.1:0", "--work-every", "3600"])
        .env("AVM_EMBEDDING__ENABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_err("avm serve"))?;
    let mut line = String::new();
    if let Some(out) = srv.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(io_err("avm serve"))?;
    }
    let addr = line
        .trim()
        .strip_prefix("Listening on http://")
        .ok_or_else(|| Error::internal(format!("avm serve said {line:?}")))?
        .to_string();
    let stream = std::net::TcpStream::connect(&addr).map_err(io_err("connect"))?;
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    let target = |i: usize| format!("/v1/recall?q={}&max_tokens=2000", enc(q(i)));
    // Open the connection and the tokenizer with a query that is none of the questions, and
    // let the worker's first pass (topics, subscriptions) finish.
    for _ in 0..5 {
        http_get(
            &mut conn,
            &addr,
            &agent,
            "/v1/recall?q=status&max_tokens=2000",
        )
        .map_err(io_err("warm-up"))?;
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // First asks read every candidate from SQLite; a long-running server has them cached.
    for label in ["first ask", "asked again"] {
        rows.push(row(
            &format!("HTTP GET /v1/recall 2000 tok, {label}"),
            timed(nq, |i| {
                http_get(&mut conn, &addr, &agent, &target(i)).map(drop)
            })?,
        ));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = srv.wait();

    // MCP: avm mcp over stdio, JSON-RPC lines.
    let mut mcp = Command::new(&exe)
        .arg("--db")
        .arg(&db)
        .args(["--agent", &agent, "mcp"])
        .env("AVM_EMBEDDING__ENABLED", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_err("avm mcp"))?;
    let mut input = mcp
        .stdin
        .take()
        .ok_or_else(|| Error::internal("mcp stdin"))?;
    let mut output = BufReader::new(
        mcp.stdout
            .take()
            .ok_or_else(|| Error::internal("mcp stdout"))?,
    );
    let mut send = |v: serde_json::Value| writeln!(input, "{v}").and_then(|_| input.flush());
    let mut recv = || {
        let mut l = String::new();
        output.read_line(&mut l).map(|_| l)
    };
    send(serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "avm-bench", "version": "1"}}}))
    .map_err(io_err("mcp"))?;
    recv().map_err(io_err("mcp"))?;
    send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .map_err(io_err("mcp"))?;
    let call = |i: usize| {
        serde_json::json!({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {
            "name": "avm_recall", "arguments": {"query": q(i), "max_tokens": 2000}}})
    };
    let warm = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {
        "name": "avm_recall", "arguments": {"query": "status", "max_tokens": 2000}}});
    for _ in 0..5 {
        send(warm.clone()).map_err(io_err("warm-up"))?;
        recv().map_err(io_err("warm-up"))?;
    }
    let mut roundtrip = |i: usize| -> std::io::Result<()> {
        send(call(i))?;
        let l = recv()?;
        if l.contains("\"result\"") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("mcp answered {l}")))
        }
    };
    for (pass, label) in ["first ask", "asked again"].iter().enumerate() {
        rows.push(row(
            &format!("MCP avm_recall stdio 2000 tok, {label}"),
            timed(nq, |i| roundtrip(pass * nq + i))?,
        ));
    }
    // End of input ends the session.
    drop(input);
    let _ = mcp.wait();
    Ok(rows)
}
