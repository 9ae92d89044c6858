//! `avm serve` (the HTTP API and the background workers) and `avm key …`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use avm_core::{Error, ErrorKind, Result};
use avm_http::{HttpState, KeyStore};

use crate::app::App;
use crate::cli::{Global, KeyAction};
use crate::commands::print_json;

/// The key file beside the database (`avm.db` → `avm.keys.db`).
pub fn keys_path(db: &std::path::Path) -> PathBuf {
    db.with_extension("keys.db")
}

/// Runs `avm key …`.
pub fn key_cmd(app: &App, action: KeyAction, j: bool) -> Result<ExitCode> {
    let ks = KeyStore::open(&keys_path(&app.config.db_path()?))?;
    match action {
        KeyAction::Create => {
            let agent = app.caller.agent().ok_or_else(|| {
                Error::invalid("a key acts as one agent: avm key create --agent NAME")
            })?;
            let (id, key) = ks.create(agent)?;
            if j {
                print_json(&json!({"id": id, "agent": agent, "key": key}));
            } else {
                println!("{key}");
                eprintln!(
                    "Key {id} for agent {agent}. It is shown only now; send it as `Authorization: Bearer <key>`."
                );
            }
        }
        KeyAction::List => {
            let keys = ks.list()?;
            if j {
                print_json(&json!(keys));
            } else if keys.is_empty() {
                println!("No keys. Make one with: avm key create --agent NAME");
            } else {
                for k in keys {
                    let used = k
                        .last_used
                        .map(avm_core::time::to_iso)
                        .unwrap_or_else(|| "never used".into());
                    println!(
                        "{}  {}  created {}  {used}",
                        k.id,
                        k.agent,
                        avm_core::time::to_iso(k.created_at)
                    );
                }
            }
        }
        KeyAction::Revoke { id } => {
            ks.revoke(&id)?;
            if j {
                print_json(&json!({"revoked": id}));
            } else {
                println!("Revoked key {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One pass of the background work: topics, then a batch of embeddings.
fn work(
    topics: &avm_provider_topics::TopicIndex,
    semantic: Option<&avm_provider_embedding::Semantic>,
) {
    if let Err(e) = topics.sync() {
        eprintln!("avm serve: topic index: {}", e.message());
    }
    if let Some(s) = semantic
        && let Err(e) = s.sync(Some(256), &mut |_, _| {})
        && e.kind() != ErrorKind::Unavailable
    {
        eprintln!("avm serve: embeddings: {}", e.message());
    }
}

/// Runs `avm serve`.
pub fn serve(g: &Global, bind: &str, max_body: Option<usize>, every: u64) -> Result<ExitCode> {
    let addr: SocketAddr = bind.parse().map_err(|_| {
        Error::invalid(format!(
            "--bind {bind:?} is not an address; use e.g. 127.0.0.1:7420 or 0.0.0.0:7420"
        ))
    })?;
    let App {
        config,
        host,
        memory,
        store,
        semantic,
        ..
    } = App::open(g)?;
    if let Some(s) = &semantic {
        s.use_graph(true);
    }
    let keys = Arc::new(KeyStore::open(&keys_path(&config.db_path()?))?);
    let require_key = !addr.ip().is_loopback();
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot listen on {addr}: {e}"),
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::internal(format!("listener: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("listener: {e}")))?;
    let state = Arc::new(HttpState {
        host: Arc::new(host),
        store: store.clone(),
        keys,
        require_key,
        max_body: max_body.unwrap_or(config.max_node_bytes as usize + (64 << 10)),
    });

    // Workers: keep the topic index and the embeddings in step with writes from any process.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("avm-serve-worker".into())
            .spawn(move || {
                let topics = avm_provider_topics::TopicIndex::new(store);
                while !stop.load(Ordering::Relaxed) {
                    work(&topics, semantic.as_deref());
                    let mut slept = Duration::ZERO;
                    while slept < Duration::from_secs(every.max(1)) && !stop.load(Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(50));
                        slept += Duration::from_millis(50);
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the worker: {e}")))?
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    // The first line on stdout says where to connect (scripts and tests read it).
    println!("Listening on http://{local}");
    eprintln!(
        "avm serve: http://{local}{} (pid {}); GET /openapi.json describes the API",
        if require_key {
            ", API key required"
        } else {
            ", loopback: no key needed"
        },
        std::process::id()
    );
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        avm_http::serve(listener, state, shutdown).await
    });
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    // Writes were committed as each request finished; flush access times and the like.
    let _ = memory.store().sync();
    eprintln!("avm serve: stopped");
    served.map_err(|e| Error::new(ErrorKind::Unavailable, format!("server: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
