//! Command implementations: turn arguments into addresses, call the host, render.

use std::process::ExitCode;

use serde_json::{Value, json};

use avm_core::address::Address;
use avm_core::time::{parse_duration, parse_time};
use avm_core::{
    Error, ErrorKind, ListOptions, Put, RemoveOptions, Result, SearchOptions, WriteInput,
};
use avm_provider_memory::provider::list_line;

use crate::app::App;
use crate::cli::{Cli, Command, Direction};

mod batch;
mod config_cmd;
mod input;
mod output;
mod transfer;
mod trash;

use batch::batch;
use config_cmd::config_cmd;
pub(crate) use input::{addr, any_content, content};
use input::{parse_meta, split_tags};
pub(crate) use output::{emit, ensure_nl, print_json};
use output::{end_line_on_terminal, out, out_bytes, outln, render_stats};
use transfer::{export, import};
use trash::{newest_trash_copy, trash};

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
        Command::Hooks { action } => return crate::hooks_cmd::run(&g, action, j),
        Command::Migrate { from, to, force } => return crate::migrate::run(&g, from, to, *force),
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
