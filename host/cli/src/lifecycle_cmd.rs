//! `avm cold|archive|unarchive|consolidate|digest|compact` and `avm trash --purge`.

use serde_json::json;

use avm_core::address::Address;
use avm_core::host::expand_private;
use avm_core::time::parse_duration;
use avm_core::{Caller, Error, ListOptions, NodeKind, Output, Result, WriteInput};
use avm_lifecycle::{Lifecycle, default_scope};
use avm_topics::TopicIndex;

use crate::app::App;
use crate::cli::Command;
use crate::commands::{emit, ensure_nl};

fn show(j: bool, o: &Output) {
    emit(j, o, &ensure_nl(&o.text));
}

/// The scope given (with `/private` expanded), or the caller's default.
fn scope(caller: &Caller, path: Option<&str>) -> Result<String> {
    match path {
        Some(p) => expand_private(caller, &Address::path(p)?.path),
        None => Ok(default_scope(caller)),
    }
}

/// Runs one lifecycle command.
pub fn run(app: &App, cmd: Command, j: bool) -> Result<()> {
    let c = &app.caller;
    let life = Lifecycle::new(&app.host, app.store.as_ref(), c, &app.config.lifecycle);
    let topics = TopicIndex::new(app.store.clone());
    let out = match cmd {
        Command::Cold {
            path,
            threshold,
            limit,
        } => life.cold(&scope(c, path.as_deref())?, threshold, limit)?,
        Command::Archive {
            path,
            threshold,
            limit,
            dry_run,
        } => life.archive(&scope(c, path.as_deref())?, threshold, limit, dry_run)?,
        Command::Unarchive { path, force } => life.unarchive(&scope(c, Some(&path))?, force)?,
        Command::Consolidate { path, dry_run } => {
            life.consolidate(&scope(c, path.as_deref())?, &topics, dry_run)?
        }
        Command::Digest { path, days, max } => {
            life.digest(&scope(c, path.as_deref())?, days, max, &topics)?
        }
        Command::Compact { path, keep } => compact(app, &scope(c, Some(&path))?, keep)?,
        _ => return Ok(()),
    };
    show(j, &out);
    Ok(())
}

/// `avm trash --purge`.
pub fn purge(app: &App, older_than: Option<&str>, dry_run: bool, j: bool) -> Result<()> {
    let age = older_than
        .map(|s| parse_duration(s).map_err(|e| e.context("--older-than")))
        .transpose()?;
    let life = Lifecycle::new(
        &app.host,
        app.store.as_ref(),
        &app.caller,
        &app.config.lifecycle,
    );
    show(j, &life.purge_trash(age, dry_run)?);
    Ok(())
}

/// Compacts one node, or every node below a directory.
fn compact(app: &App, path: &str, keep: usize) -> Result<Output> {
    if keep == 0 {
        return Err(Error::invalid(
            "--keep must be at least 1 (the current version)",
        ));
    }
    let (h, c) = (&app.host, &app.caller);
    let files: Vec<String> = match h.stat(c, path)?.kind {
        NodeKind::File | NodeKind::Symlink => vec![path.to_string()],
        NodeKind::Dir => h
            .list(
                c,
                path,
                &ListOptions {
                    recursive: true,
                    limit: None,
                    offset: 0,
                },
            )?
            .entries
            .into_iter()
            .filter(|e| e.kind == NodeKind::File)
            .map(|e| e.path)
            .collect(),
    };
    let (mut removed, mut freed, mut nodes) = (0u64, 0u64, 0usize);
    let mut failed = Vec::new();
    for f in &files {
        match h.write(
            c,
            &format!("{f}:compact"),
            WriteInput::Text(keep.to_string()),
        ) {
            Ok(o) => {
                let d = o.data();
                let r = d["removed"].as_u64().unwrap_or(0);
                if r > 0 {
                    nodes += 1;
                }
                removed += r;
                freed += d["freed_bytes"].as_u64().unwrap_or(0);
            }
            Err(e) => failed.push((f.clone(), e)),
        }
    }
    let mut text = format!(
        "compacted {path}: removed {removed} old versions from {nodes} of {} nodes (keeping {keep} each), freed {freed} bytes\n",
        files.len()
    );
    let failed = avm_lifecycle::failures(&mut text, &failed);
    Ok(Output::new(
        text,
        json!({"path": path, "keep": keep, "nodes": files.len(), "compacted": nodes,
               "removed": removed, "freed_bytes": freed, "failed": failed}),
    ))
}
