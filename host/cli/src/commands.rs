//! Command implementations: turn arguments into addresses, call the host, render.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::ExitCode;

use serde_json::{Value, json};

use avm_core::address::Address;
use avm_core::config;
use avm_core::time::{parse_duration, parse_time};
use avm_core::{
    Content, Error, ErrorKind, ListOptions, Output, Put, RemoveOptions, Result, SearchOptions,
    WriteInput,
};
use avm_provider_memory::provider::list_line;

use crate::app::{self, App};
use crate::cli::{Cli, Command, ConfigAction, ContentArgs, Direction};

/// Prints to stdout, ignoring a closed pipe (`avm ls | head`).
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes bytes to stdout as they are (file content), ignoring a closed pipe.
fn out_bytes(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    let _ = o.flush();
}

/// Text that does not end its last line would glue the shell's prompt to it: on a terminal
/// (never in a pipe or a file, where the bytes must stay exact) the line is ended.
fn end_line_on_terminal(o: &Output) {
    use std::io::IsTerminal;
    let b = o.bytes();
    if !o.is_binary() && !b.is_empty() && !b.ends_with(b"\n") && std::io::stdout().is_terminal() {
        out("\n");
    }
}

fn outln(s: &str) {
    out(&format!("{s}\n"));
}

pub(crate) fn print_json(v: &Value) {
    outln(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Text mode prints `text`; JSON mode prints `data`.
pub(crate) fn emit(json_mode: bool, o: &Output, text: &str) {
    if json_mode {
        print_json(&o.data());
    } else {
        out(text);
    }
}

pub(crate) fn ensure_nl(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// Builds an address from a path, a suffix and query pairs, keeping the user's path exactly.
pub(crate) fn addr(path: &str, suffix: &str, pairs: &[(&str, String)]) -> Result<String> {
    avm_core::address::suffixed(path, suffix, pairs)
}

/// Reads text from `-c`, `-f` or stdin, refusing more than `max` bytes and non-UTF-8 (for
/// memories, messages and everything else that must be text).
pub(crate) fn content(input: &ContentArgs, max: u64) -> Result<String> {
    let (buf, from) = raw_content(input, max)?;
    String::from_utf8(buf).map_err(|e| {
        Error::invalid(format!(
            "{from} is not valid UTF-8 (invalid byte at offset {}); memories are text — convert it first (e.g. iconv), or store the file as it is with `avm write`",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads content from `-c`, `-f` or stdin as it is: text, or bytes kept exactly (`avm write`
/// and `avm append` store any file).
pub(crate) fn any_content(input: &ContentArgs, max: u64) -> Result<Content> {
    if let Some(c) = &input.content {
        return raw_content(input, max).map(|_| Content::from(c.as_str()));
    }
    Ok(Content::from_bytes(raw_content(input, max)?.0))
}

/// The bytes of `-c`, `-f` or stdin (at most `max`), and where they came from.
fn raw_content(input: &ContentArgs, max: u64) -> Result<(Vec<u8>, String)> {
    let too_large = |n: u64, from: &str| {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "content from {from} is {n} bytes or more; the limit is {max} bytes (max_node_bytes in config); nothing was written"
            ),
        )
    };
    if let Some(c) = &input.content {
        if c.len() as u64 > max {
            return Err(too_large(c.len() as u64, "-c"));
        }
        return Ok((c.clone().into_bytes(), "-c".to_string()));
    }
    let (mut reader, from): (Box<dyn Read>, String) = match &input.file {
        Some(f) => {
            let file = std::fs::File::open(f).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            if let Ok(m) = file.metadata()
                && m.len() > max
            {
                return Err(too_large(m.len(), &f.display().to_string()));
            }
            (Box::new(file), f.display().to_string())
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Error::invalid(
                    "no content given: pass -c TEXT, -f FILE, or pipe it on stdin",
                ));
            }
            (Box::new(std::io::stdin()), "stdin".to_string())
        }
    };
    let mut buf = Vec::new();
    reader
        .by_ref()
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot read {from}: {e}")))?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64, &from));
    }
    Ok((buf, from))
}

fn parse_meta(s: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(format!(
            "--meta must be a JSON object such as '{{\"source\":\"web\"}}', got {s}"
        ))),
        Err(e) => Err(Error::invalid(format!(
            "--meta is not valid JSON ({e}); give an object such as '{{\"source\":\"web\"}}'"
        ))),
    }
}

fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global.clone();
    let j = g.json;
    // A recall counts tokens: its tables load while the configuration and the store open.
    if matches!(cli.command, Command::Recall { .. }) {
        avm_recall::tokens::prewarm();
    }
    // Commands that must work without opening a database.
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "avm", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Config { action } => return config_cmd(&g, action),
        Command::Doctor => return crate::doctor::run(&g),
        Command::Bench { what } => return crate::bench::run(what, j).map(|()| ExitCode::SUCCESS),
        Command::Mount {
            dir,
            foreground,
            threads,
            allow_other,
        } => {
            let threads = threads.unwrap_or_else(avm_fuse::default_threads);
            return if *foreground {
                crate::mount_cmd::foreground(&g, dir, threads, *allow_other)
            } else {
                crate::mount_cmd::background(&g, dir, threads, *allow_other)
            };
        }
        Command::Daemon { action } => return crate::daemon::run(&g, action),
        Command::Mcp => {
            let app = App::open(&g)?;
            let memory = app.memory.clone();
            avm_mcp::serve_stdio(avm_mcp::Ctx {
                semantic: app.semantic.is_some(),
                store: app.store.clone(),
                caller: app.caller.clone(),
                host: std::sync::Arc::new(app.host.with_timeout(std::time::Duration::from_secs(
                    app.config.serve.request_timeout_secs.max(1),
                ))),
                identify: None,
            })?;
            let _ = memory.store().sync();
            return Ok(ExitCode::SUCCESS);
        }
        Command::Model { action } => return crate::agent_cmds::model_cmd(&g, action, j),
        Command::Plugin { action } => return crate::plugin_cmd::plugin_cmd(action, j),
        Command::Serve {
            bind,
            max_body,
            work_every,
            no_mounts,
        } => return crate::serve::serve(&g, bind, *max_body, *work_every, !*no_mounts),
        Command::Unmount { dir } => {
            crate::mount_cmd::unmount(dir)?;
            if !j {
                println!("Unmounted: {}", dir.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let app = App::open(&g)?;
    let code = dispatch(&app, cli.command, j);
    // Flush buffered access times before exit.
    let _ = app.memory.store().sync();
    code
}

fn dispatch(app: &App, cmd: Command, j: bool) -> Result<ExitCode> {
    let h = &app.host;
    let c = &app.caller;
    match cmd {
        Command::Read {
            path,
            meta,
            as_of,
            version,
        } => {
            let mut pairs = Vec::new();
            if let Some(v) = version {
                pairs.push(("version", v.to_string()));
            }
            if let Some(t) = as_of {
                parse_time(&t)?;
                pairs.push(("as_of", t));
            }
            // A path given with its own suffix or query is used as typed.
            let target = if pairs.is_empty() {
                path.clone()
            } else {
                addr(&path, "", &pairs)?
            };
            let o = h.read(c, &target)?;
            if j {
                print_json(&o.data());
            } else if meta {
                let d = &o.data();
                let mut header = format!("# {}\n", d["path"].as_str().unwrap_or(&path));
                if let Some(v) = d["version"].as_i64() {
                    header.push_str(&format!("# Version: {v}\n"));
                }
                if let Some(u) = d["updated_at"].as_str().or(d["at"].as_str()) {
                    header.push_str(&format!("# Updated: {u}\n"));
                }
                if let Some(m) = d.get("meta") {
                    header.push_str(&format!("# Meta: {m}\n"));
                }
                out(&format!("{header}\n"));
                out_bytes(o.bytes());
                end_line_on_terminal(&o);
            } else {
                // Content exactly as stored: binary files come out byte for byte.
                out_bytes(o.bytes());
                end_line_on_terminal(&o);
            }
        }
        Command::Write {
            path,
            input,
            tags,
            importance,
            meta,
            ttl,
            create_only,
        } => {
            let meta = meta.as_deref().map(parse_meta).transpose()?;
            let expires_at = match ttl {
                Some(t) => Some(Some(avm_core::time::now_micros().saturating_add(
                    i64::try_from(parse_duration(&t)?.as_micros()).unwrap_or(i64::MAX),
                ))),
                None => None,
            };
            if let Some(i) = importance
                && !(0.0..=1.0).contains(&i)
            {
                return Err(Error::invalid(format!("--importance {i} is outside 0..1")));
            }
            let body = any_content(&input, app.config.max_node_bytes)?;
            let put = Put {
                content: Some(body),
                meta,
                tags: tags.as_deref().map(split_tags),
                importance,
                expires_at,
                create_only,
                ..Put::default()
            };
            let o = h.write(c, &Address::path(&path)?.path, WriteInput::Put(put))?;
            emit(j, &o, &ensure_nl(&o.text));
        }
        Command::Append { path, input } => {
            let body = any_content(&input, app.config.max_node_bytes)?;
            let put = Put {
                content: Some(body),
                append: true,
                ..Put::default()
            };
            let o = h.write(c, &Address::path(&path)?.path, WriteInput::Put(put))?;
            emit(j, &o, &ensure_nl(&o.text));
        }
        Command::List {
            prefix,
            limit,
            offset,
            shallow,
        } => {
            let l = h.list(
                c,
                &prefix,
                &ListOptions {
                    recursive: !shallow,
                    limit: Some(limit),
                    offset,
                },
            )?;
            if j {
                print_json(&json!(l.entries));
                if l.more {
                    eprintln!(
                        "(more entries: use --offset {})",
                        offset.saturating_add(limit)
                    );
                }
            } else {
                let text: String = l.entries.iter().map(list_line).collect();
                out(&text);
                if l.more {
                    eprintln!(
                        "(more entries: use --offset {})",
                        offset.saturating_add(limit)
                    );
                }
            }
        }
        Command::Delete {
            paths,
            recursive,
            hard,
        } => {
            let mut results = Vec::new();
            for p in &paths {
                let o = h.remove(c, p, RemoveOptions { recursive, hard })?;
                if !j {
                    outln(&o.text);
                }
                results.push(o.data());
            }
            if j {
                print_json(&Value::Array(results));
            }
        }
        Command::Trash {
            purge: true,
            older_than,
            dry_run,
            ..
        } => crate::lifecycle_cmd::purge(app, older_than.as_deref(), dry_run, j)?,
        Command::Trash { empty, limit, .. } => trash(app, empty, limit, j)?,
        cmd @ (Command::Cold { .. }
        | Command::Archive { .. }
        | Command::Unarchive { .. }
        | Command::Consolidate { .. }
        | Command::Digest { .. }
        | Command::Compact { .. }) => crate::lifecycle_cmd::run(app, cmd, j)?,
        Command::Restore { path, force } => {
            let norm = avm_core::host::expand_private(c, &Address::path(&path)?.path)?;
            let trash_path = if avm_core::address::is_within(&norm, "/trash") {
                norm
            } else {
                newest_trash_copy(app, &norm)?
            };
            let original = match h.stat(c, &trash_path)?.kind {
                avm_core::NodeKind::Dir => trash_path["/trash".len()..].to_string(),
                avm_core::NodeKind::File | avm_core::NodeKind::Symlink => {
                    h.read(c, &format!("{trash_path}:meta"))?.data()["original_path"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| trash_path["/trash".len()..].to_string())
                }
            };
            if h.stat(c, &original)
                .is_ok_and(|s| s.kind == avm_core::NodeKind::Dir)
                && h.stat(c, &trash_path)
                    .is_ok_and(|s| s.kind == avm_core::NodeKind::Dir)
            {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{original} exists again as a directory; restore its nodes one by one (avm restore {trash_path}/NAME)"
                    ),
                ));
            }
            let o = h.rename(c, &trash_path, &original, force)?;
            if j {
                print_json(&o.data());
            } else {
                outln(&format!("Restored: {original}"));
            }
        }
        Command::Mv { src, dst, force } => {
            let o = h.rename(c, &src, &dst, force)?;
            emit(j, &o, &ensure_nl(&o.text));
        }
        Command::Search {
            query,
            limit,
            path,
            mode,
            hybrid,
        } => {
            let mode = if hybrid { "hybrid".to_string() } else { mode };
            let hits = if mode == "fts" {
                h.search(c, &path, &SearchOptions { query, limit })?
            } else {
                if app.semantic.is_none() {
                    return Err(crate::agent_cmds::no_model(app));
                }
                let o = h.read(
                    c,
                    &addr(
                        &path,
                        "search",
                        &[("q", query), ("limit", limit.to_string()), ("mode", mode)],
                    )?,
                )?;
                o.data()
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| avm_core::SearchHit {
                                path: v["path"].as_str().unwrap_or_default().to_string(),
                                score: v["score"].as_f64().unwrap_or(0.0),
                                snippet: v["snippet"].as_str().unwrap_or_default().to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if j {
                print_json(&json!(hits));
            } else if hits.is_empty() {
                outln("No results found.");
            } else {
                let mut s = String::new();
                for hit in &hits {
                    let snip: String = hit.snippet.replace('\n', " ").chars().take(100).collect();
                    s.push_str(&format!("[{:.2}] {}\n    {snip}\n\n", hit.score, hit.path));
                }
                out(&s);
            }
        }
        Command::Link {
            src,
            target,
            kind,
            weight,
        } => {
            let t = Address::path(&target)?.path;
            let src = Address::path(&src)?.path;
            let pairs = [
                ("target", t.clone()),
                ("type", kind.clone()),
                ("weight", weight.to_string()),
            ];
            let o = h.write(
                c,
                &addr(&src, "links", &pairs)?,
                WriteInput::Text(String::new()),
            )?;
            if j {
                print_json(
                    &json!({"source": src, "target": t, "type": kind, "weight": weight, "result": o.data()}),
                );
            } else {
                outln(&format!("Added: Edge({src} --[{kind}]--> {t})"));
            }
        }
        Command::Unlink { src, target, kind } => {
            let t = Address::path(&target)?.path;
            let src = Address::path(&src)?.path;
            let mut pairs = vec![("op", "remove".to_string()), ("target", t.clone())];
            if let Some(k) = &kind {
                pairs.push(("type", k.clone()));
            }
            let o = h.write(
                c,
                &addr(&src, "links", &pairs)?,
                WriteInput::Text(String::new()),
            )?;
            if j {
                print_json(&o.data());
            } else {
                outln(&format!(
                    "Removed: {} link(s) {src} --> {t}",
                    o.data()["count"]
                ));
            }
        }
        Command::Links { path, direction } => {
            let d = match direction {
                Direction::In => "in",
                Direction::Out => "out",
                Direction::Both => "both",
            };
            let o = h.read(c, &addr(&path, "links", &[("direction", d.to_string())])?)?;
            let norm = Address::path(&path)?.path;
            if j {
                print_json(&o.data());
            } else if o.data().as_array().is_some_and(|a| a.is_empty()) {
                outln(&format!("No links for {norm}"));
            } else {
                let body: String = o.text.lines().map(|l| format!("  {l}\n")).collect();
                out(&format!("Links for {norm}:\n{body}"));
            }
        }
        Command::Tags { path, set } => {
            let target = addr(&path, "tags", &[])?;
            if let Some(s) = set {
                let o = h.write(c, &target, WriteInput::Text(split_tags(&s).join(",")))?;
                emit(j, &o, &ensure_nl(&o.text));
            } else {
                let o = h.read(c, &target)?;
                emit(j, &o, &o.text);
            }
        }
        Command::Meta { path, set } => {
            let target = addr(&path, "meta", &[])?;
            if let Some(s) = set {
                let m = parse_meta(&s)?;
                let o = h.write(
                    c,
                    &target,
                    WriteInput::Put(Put {
                        meta: Some(m),
                        ..Put::default()
                    }),
                )?;
                let meta = o.data().get("meta").cloned().unwrap_or(Value::Null);
                if j {
                    print_json(&meta);
                } else {
                    out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&meta).unwrap_or_default()
                    ));
                }
            } else {
                let o = h.read(c, &target)?;
                emit(j, &o, &o.text);
            }
        }
        Command::History {
            path,
            limit,
            verbose,
        } => {
            let mut pairs = vec![("limit", limit.to_string())];
            if verbose {
                pairs.push(("verbose", "1".into()));
            }
            let o = h.read(c, &addr(&path, "history", &pairs)?)?;
            emit(j, &o, &o.text);
        }
        Command::Diff { path, v1, v2 } => {
            let o = h.read(
                c,
                &addr(
                    &path,
                    "diff",
                    &[("from", v1.to_string()), ("to", v2.to_string())],
                )?,
            )?;
            emit(j, &o, &o.text);
        }
        Command::Stats { path } => {
            let o = h.read(c, &addr(&path, "stats", &[])?)?;
            if j {
                print_json(&o.data());
            } else {
                out(&render_stats(&o.data()));
            }
        }
        Command::Export { prefix, output } => export(app, &prefix, output, j)?,
        Command::Import { file, force } => return import(app, &file, force, j),
        Command::Batch => return batch(app),
        Command::Index { action } => return crate::plugin_cmd::index_cmd(app, action, j),
        Command::Gossip { action } => return crate::plugin_cmd::gossip_cmd(app, action, j),
        Command::Key { action } => return crate::serve::key_cmd(app, action, j),
        cmd @ (Command::Subscribe { .. }
        | Command::Subscriptions
        | Command::Unsubscribe { .. }
        | Command::Pending { .. }) => return crate::serve::subscription_cmd(app, cmd, j),
        Command::Config { .. }
        | Command::Completions { .. }
        | Command::Bench { .. }
        | Command::Doctor => {}
        other => {
            crate::agent_cmds::run(app, other, j)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render_stats(d: &Value) -> String {
    let mut s = String::new();
    if let Some(db) = d["database"].as_str() {
        s.push_str(&format!("Database:   {db}\n"));
        s.push_str(&format!(
            "File:       {} bytes (+{} in WAL)\n",
            d["file_bytes"], d["wal_bytes"]
        ));
    }
    s.push_str(&format!(
        "Path:       {}\n",
        d["path"].as_str().unwrap_or("/")
    ));
    s.push_str(&format!("Nodes:      {}\n", d["nodes"]));
    s.push_str(&format!("Content:    {} bytes\n", d["content_bytes"]));
    for (k, label) in [
        ("versions", "Versions:"),
        ("links", "Links:"),
        ("events", "Events:"),
        ("distinct_tags", "Tags:"),
    ] {
        if !d[k].is_null() {
            s.push_str(&format!("{label:<11} {}\n", d[k]));
        }
    }
    if let Some(rows) = d["by_prefix"].as_array()
        && !rows.is_empty()
    {
        s.push_str("\nBy prefix:\n");
        for r in rows {
            s.push_str(&format!(
                "  {:<40} {:>8} nodes {:>12} bytes\n",
                r["prefix"].as_str().unwrap_or(""),
                r["nodes"],
                r["bytes"]
            ));
        }
    }
    s
}

fn trash(app: &App, empty: bool, limit: usize, j: bool) -> Result<()> {
    let (h, c) = (&app.host, &app.caller);
    if empty {
        let o = match h.remove(
            c,
            "/trash",
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        ) {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if j {
                    print_json(&json!({"emptied": 0}));
                } else {
                    outln("Trash is empty");
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if j {
            print_json(&json!({"emptied": o.data()["count"]}));
        } else {
            outln(&format!("Emptied {} items from trash", o.data()["count"]));
        }
        return Ok(());
    }
    let l = match h.list(
        c,
        "/trash",
        &ListOptions {
            recursive: true,
            limit: Some(limit),
            offset: 0,
        },
    ) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => avm_core::Listing {
            entries: vec![],
            more: false,
        },
        Err(e) => return Err(e),
    };
    let mut items = Vec::new();
    for e in &l.entries {
        let meta = h.read(c, &format!("{}:meta", e.path))?.data();
        items.push(json!({
            "path": e.path,
            "original_path": meta["original_path"],
            "deleted_at": meta["deleted_at"],
            "deleted_by": meta["deleted_by"],
        }));
    }
    if j {
        print_json(&Value::Array(items));
    } else if items.is_empty() {
        outln("Trash is empty");
    } else {
        let mut s = format!("Trash ({} items):\n", items.len());
        for i in &items {
            let at: String = i["deleted_at"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(16)
                .collect();
            s.push_str(&format!(
                "  [{}] {}\n",
                at.replace('T', " "),
                i["original_path"]
                    .as_str()
                    .unwrap_or(i["path"].as_str().unwrap_or(""))
            ));
        }
        out(&s);
    }
    Ok(())
}

fn export(app: &App, prefix: &str, output: Option<String>, j: bool) -> Result<()> {
    let (h, c) = (&app.host, &app.caller);
    let target = output.unwrap_or_else(|| {
        format!(
            "avm-export-{}.jsonl",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )
    });
    let to_stdout = target == "-";
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&target).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {target}: {e}"),
                )
            })?,
        ))
    };
    let mut after: Option<String> = None;
    let mut n = 0usize;
    loop {
        let mut pairs = vec![("limit", "1000".to_string())];
        if let Some(a) = &after {
            pairs.push(("after", a.clone()));
        }
        let o = h.read(c, &addr(prefix, "export", &pairs)?)?;
        sink.write_all(o.text.as_bytes()).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot write {target}: {e}"),
            )
        })?;
        n += o.data()["records"].as_array().map_or(0, Vec::len);
        match o.data()["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    sink.flush().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot write {target}: {e}"),
        )
    })?;
    drop(sink);
    if !to_stdout {
        if j {
            print_json(&json!({"exported": n, "file": target}));
        } else {
            outln(&format!("Exported {n} nodes to {target}"));
        }
    }
    Ok(())
}

fn import(app: &App, file: &str, force: bool, j: bool) -> Result<ExitCode> {
    let (h, c) = (&app.host, &app.caller);
    let (reader, total): (Box<dyn BufRead>, u64) = if file == "-" {
        (Box::new(BufReader::new(std::io::stdin())), 0)
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Error::new(ErrorKind::NotFound, format!("cannot read {file}: {e}")))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::new(f)), len)
    };
    let bar = if std::io::stderr().is_terminal() && !j && total > 0 {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut imported = 0usize;
    let mut failures: Vec<Value> = Vec::new();
    let mut batch: Vec<(String, WriteInput)> = Vec::new();
    let mut lines_of_batch: Vec<usize> = Vec::new();
    let flush = |batch: &mut Vec<(String, WriteInput)>,
                 lines: &mut Vec<usize>,
                 failures: &mut Vec<Value>,
                 imported: &mut usize| {
        for (r, line) in h
            .write_many(c, std::mem::take(batch))
            .into_iter()
            .zip(lines.drain(..))
        {
            match r {
                Ok(_) => *imported += 1,
                Err(e) => failures
                    .push(json!({"line": line, "kind": e.kind().as_str(), "error": e.message()})),
            }
        }
    };
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| {
            Error::invalid(format!(
                "{file} line {lineno}: cannot read ({e}); is it UTF-8 JSONL?"
            ))
        })?;
        if let Some(b) = &bar {
            b.inc(line.len() as u64 + 1);
        }
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                failures.push(json!({"line": lineno, "kind": "invalid-input", "error": format!("not JSON: {e}")}));
                continue;
            }
        };
        let Some(path) = v.get("path").and_then(Value::as_str).map(str::to_string) else {
            failures.push(
                json!({"line": lineno, "kind": "invalid-input", "error": "record has no \"path\""}),
            );
            continue;
        };
        let target = match Address::path(&path) {
            Ok(a) if force => format!("{}?force=1", a.path),
            Ok(a) => a.path,
            Err(e) => {
                failures
                    .push(json!({"line": lineno, "kind": "invalid-input", "error": e.message()}));
                continue;
            }
        };
        batch.push((target, WriteInput::Record(v)));
        lines_of_batch.push(lineno);
        if batch.len() >= 500 {
            flush(
                &mut batch,
                &mut lines_of_batch,
                &mut failures,
                &mut imported,
            );
        }
    }
    flush(
        &mut batch,
        &mut lines_of_batch,
        &mut failures,
        &mut imported,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if j {
        print_json(&json!({"imported": imported, "failed": failures}));
    } else {
        outln(&format!("Imported {imported} nodes from {file}"));
        for f in &failures {
            eprintln!(
                "avm: {file} line {}: {}",
                f["line"],
                f["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn config_cmd(g: &crate::cli::Global, action: &ConfigAction) -> Result<ExitCode> {
    let sources = app::sources(g);
    match action {
        ConfigAction::Show => {
            let cfg = config::load(&sources)?;
            let files: Vec<String> = config::files(&sources)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let db = cfg.db_path()?.display().to_string();
            if g.json {
                print_json(&json!({"config": cfg, "files": files, "database": db}));
            } else {
                let mut s = String::new();
                s.push_str(&format!("# database: {db}\n"));
                if files.is_empty() {
                    s.push_str("# files: none (built-in defaults, AVM_* environment and flags)\n");
                } else {
                    for f in &files {
                        s.push_str(&format!("# file: {f}\n"));
                    }
                }
                s.push_str(&toml_of(&cfg));
                out(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Types => {
            if g.json {
                print_json(&json!(
                    crate::registry::TYPES
                        .iter()
                        .map(|t| json!({"type": t.name, "about": t.about}))
                        .collect::<Vec<_>>()
                ));
            } else {
                for t in crate::registry::TYPES {
                    outln(&format!("{:<8} {}", t.name, t.about));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check => {
            let mut problems = crate::registry::check(&sources);
            if problems.is_empty() {
                // The keys are right; now build what every command builds (the store, each
                // mount's provider, plugins), so a mount that every command would refuse is
                // reported here, not at first use.
                if let Err(e) = App::open(g) {
                    problems.push(config::Problem {
                        key: String::new(),
                        message: format!(
                            "every command would stop with: {} ({})",
                            e.message(),
                            e.kind()
                        ),
                        source: None,
                    });
                }
            }
            let files: Vec<String> = config::files(&sources)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if g.json {
                print_json(
                    &json!({"ok": problems.is_empty(), "problems": problems, "files": files}),
                );
            } else if problems.is_empty() {
                outln(&format!(
                    "config OK ({})",
                    if files.is_empty() {
                        "built-in defaults".to_string()
                    } else {
                        files.join(", ")
                    }
                ));
            } else {
                eprintln!("{} problem(s) in the configuration:", problems.len());
                for p in &problems {
                    let src = p
                        .source
                        .as_ref()
                        .map(|s| format!(" [{s}]"))
                        .unwrap_or_default();
                    let key = if p.key.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", p.key)
                    };
                    eprintln!("  {key}{}{src}", p.message);
                }
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The effective configuration as TOML: every section, so that what `show` prints can be
/// pasted into a config file as it is.
fn toml_of(cfg: &config::Config) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("# cannot print as TOML: {e}\n"))
}

/// The newest trash copy of `original` (`/trash<path>`, `/trash<path>~2`, …): the one deleted
/// last, or the directory `/trash<path>` when no file copy exists.
fn newest_trash_copy(app: &App, original: &str) -> Result<String> {
    let (h, c) = (&app.host, &app.caller);
    let base = format!("/trash{original}");
    let dir = avm_core::address::parent(&base).to_string();
    let name = avm_core::address::basename(&base).to_string();
    let not_there = || {
        Error::new(
            ErrorKind::NotFound,
            format!("{original} is not in the trash; `avm trash` lists what is"),
        )
    };
    let listing = match h.list(c, &dir, &ListOptions::default()) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_there()),
        Err(e) => return Err(e),
    };
    let mut best: Option<(String, String)> = None;
    let mut dir_copy = None;
    for e in listing.entries {
        let n = avm_core::address::basename(&e.path);
        let is_copy = n == name
            || n.strip_prefix(&format!("{name}~"))
                .is_some_and(|k| !k.is_empty() && k.chars().all(|ch| ch.is_ascii_digit()));
        if !is_copy {
            continue;
        }
        if e.kind == avm_core::NodeKind::Dir {
            dir_copy = Some(e.path);
            continue;
        }
        let meta = h.read(c, &format!("{}:meta", e.path))?.data();
        if meta["original_path"]
            .as_str()
            .is_some_and(|o| o != original)
        {
            continue;
        }
        let at = meta["deleted_at"].as_str().unwrap_or("").to_string();
        if best.as_ref().is_none_or(|(b, _)| at > *b) {
            best = Some((at, e.path));
        }
    }
    best.map(|(_, p)| p).or(dir_copy).ok_or_else(not_there)
}

/// One `avm batch` operation.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOp {
    op: String,
    path: String,
    #[serde(default)]
    content: Option<String>,
    /// Binary content, base64-encoded (instead of `content`).
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    importance: Option<f64>,
    #[serde(default)]
    meta: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    hard: bool,
}

fn batch_one(app: &App, line: &str) -> Result<Value> {
    let (h, c) = (&app.host, &app.caller);
    let b: BatchOp = serde_json::from_str(line)
        .map_err(|e| Error::invalid(format!("not a batch operation: {e}")))?;
    let path = Address::path(&b.path)?.path;
    let o = match b.op.as_str() {
        "write" | "append" => {
            let content: Content = match (b.content, b.content_base64) {
                (Some(t), None) => t.into(),
                (None, Some(b64)) => {
                    Content::from_bytes(avm_core::content::from_base64(&b64, "content_base64")?)
                }
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(format!(
                        "{} takes \"content\" or \"content_base64\", not both",
                        b.op
                    )));
                }
                (None, None) => {
                    return Err(Error::invalid(format!(
                        "{} needs \"content\" (or \"content_base64\")",
                        b.op
                    )));
                }
            };
            if content.len() as u64 > app.config.max_node_bytes {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "content for {path} is {} bytes; the limit is {} bytes (max_node_bytes)",
                        content.len(),
                        app.config.max_node_bytes
                    ),
                ));
            }
            h.write(
                c,
                &path,
                WriteInput::Put(Put {
                    content: Some(content),
                    append: b.op == "append",
                    tags: b.tags,
                    importance: b.importance,
                    meta: b.meta,
                    ..Put::default()
                }),
            )?
        }
        "read" => h.read(c, &path)?,
        "delete" => h.remove(
            c,
            &path,
            RemoveOptions {
                recursive: b.recursive,
                hard: b.hard,
            },
        )?,
        "mv" => {
            let to = b.to.ok_or_else(|| Error::invalid("mv needs \"to\""))?;
            h.rename(c, &path, &to, b.force)?
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown op {other:?}; use write, append, delete or mv"
            )));
        }
    };
    Ok(o.data())
}

fn batch(app: &App) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut failed = 0usize;
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| Error::invalid(format!("stdin line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match batch_one(app, &line) {
            Ok(data) => json!({"ok": true, "line": i + 1, "result": data}),
            Err(e) => {
                failed += 1;
                json!({"ok": false, "line": i + 1, "error": {"kind": e.kind().as_str(), "message": e.message()}})
            }
        };
        outln(&v.to_string());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
