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
use crate::cli::{Command, Global, KeyAction};
use crate::commands::print_json;

/// The key file beside the database (`avm.db` → `avm.keys.db`).
pub fn keys_path(db: &std::path::Path) -> PathBuf {
    db.with_extension("keys.db")
}

/// The API keys: in the PostgreSQL store when one is configured (so a key made or revoked
/// through any host counts on every host), else in the file beside the database.
pub fn open_keys(config: &avm_core::config::Config) -> Result<KeyStore> {
    match config.store_url()? {
        Some(url) => KeyStore::open_location(&url),
        None => KeyStore::open(&keys_path(&config.db_path()?)),
    }
}

/// The subscription file beside the database (`avm.db` → `avm.subs.db`).
pub fn subs_path(db: &std::path::Path) -> PathBuf {
    db.with_extension("subs.db")
}

/// The subscriptions: in the PostgreSQL store when one is configured (so every host serving
/// it shares them, and each notice is filed and delivered once), else in the file beside the
/// database.
pub fn open_subs(config: &avm_core::config::Config) -> Result<avm_subscriptions::Subscriptions> {
    match config.store_url()? {
        Some(url) => avm_subscriptions::Subscriptions::open_location(&url),
        None => avm_subscriptions::Subscriptions::open(&subs_path(&config.db_path()?)),
    }
}

/// Runs `avm subscribe|subscriptions|unsubscribe|pending`.
pub fn subscription_cmd(app: &App, cmd: Command, j: bool) -> Result<ExitCode> {
    use avm_subscriptions::Mode;
    let subs = open_subs(&app.config)?;
    match cmd {
        Command::Subscribe {
            pattern,
            mode,
            throttle,
            webhook,
        } => {
            let agent = app.caller.agent().ok_or_else(|| {
                Error::invalid("a subscription belongs to an agent: pass --agent NAME")
            })?;
            let mode = Mode::parse(&mode)?;
            let (id, secret) = subs.subscribe(
                app.store.as_ref(),
                agent,
                &pattern,
                mode,
                throttle,
                webhook.as_deref(),
            )?;
            if j {
                print_json(
                    &json!({"id": id, "agent": agent, "pattern": pattern, "mode": mode, "secret": secret}),
                );
            } else {
                println!(
                    "Subscribed {agent} to {pattern} ({}) as #{id}",
                    serde_json::to_value(mode)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                );
                if webhook.is_some() {
                    println!("Webhook secret (shown once): {secret}");
                }
            }
        }
        Command::Subscriptions => {
            let list = subs.list(&app.caller)?;
            if j {
                print_json(&json!(list));
            } else if list.is_empty() {
                println!("No subscriptions.");
            } else {
                for s in list {
                    println!(
                        "#{}  {}  {}  {:?}{}  pending {}  undelivered {}",
                        s.id,
                        s.agent,
                        s.pattern,
                        s.mode,
                        s.webhook.map(|w| format!("  → {w}")).unwrap_or_default(),
                        s.pending,
                        s.undelivered
                    );
                }
            }
        }
        Command::Unsubscribe { id } => {
            subs.unsubscribe(&app.caller, id)?;
            if j {
                print_json(&json!({"removed": id}));
            } else {
                println!("Unsubscribed #{id}");
            }
        }
        Command::Pending { clear } => {
            // File what happened since the last pass first, so this works without `avm serve`.
            subs.pump(app.store.as_ref(), app.host.policy())?;
            let list = subs.pending(&app.caller, clear)?;
            if j {
                print_json(&json!(list));
            } else if list.is_empty() {
                println!("Nothing pending.");
            } else {
                for n in list {
                    println!(
                        "#{}  {}  {:<7} {}{}",
                        n.subscription,
                        n.at,
                        n.kind,
                        n.path,
                        n.by.map(|b| format!("  (by {b})")).unwrap_or_default()
                    );
                }
            }
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `avm key …`.
pub fn key_cmd(app: &App, action: KeyAction, j: bool) -> Result<ExitCode> {
    let ks = open_keys(&app.config)?;
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
            let keys = ks.list(app.caller.agent())?;
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
            ks.revoke(&id, app.caller.agent())?;
            if j {
                print_json(&json!({"revoked": id}));
            } else {
                println!("Revoked key {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One pass of the background work: subscriptions, topics, then a batch of embeddings.
fn work(
    topics: &avm_topics::TopicIndex,
    semantic: Option<&avm_embedding::Semantic>,
    subs: Option<(&avm_subscriptions::Subscriptions, &avm_core::Policy)>,
    store: &dyn avm_core::storage::MemoryStore,
) {
    let _batch = tracing::debug_span!("worker").entered();
    if let Some((s, policy)) = subs {
        if let Err(e) = s.pump(store, policy) {
            tracing::warn!("subscriptions: {}", e.message());
        }
        if let Err(e) = s.deliver(Duration::from_secs(10)) {
            tracing::warn!("webhooks: {}", e.message());
        }
    }
    if let Err(e) = topics.sync() {
        tracing::warn!("topic index: {}", e.message());
    }
    if let Some(s) = semantic
        && let Err(e) = s.sync(Some(256), &mut |_, _| {})
        && e.kind() != ErrorKind::Unavailable
    {
        tracing::warn!("embeddings: {}", e.message());
    }
}

/// How often `avm serve` purges old trash and (when configured) archives cold memories.
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// Lifecycle upkeep as the operator: trash past its retention goes for good, and with
/// `[lifecycle] auto_archive` cold memories move to /archive.
fn upkeep(
    host: &avm_core::Host,
    store: &dyn avm_core::storage::MemoryStore,
    config: &avm_core::config::LifecycleConfig,
) {
    let op = avm_core::Caller::Operator;
    let life = avm_lifecycle::Lifecycle::new(host, store, &op, config);
    match life.purge_trash(None, false) {
        Ok(o) => {
            let n = o.data()["purged"].as_array().map_or(0, Vec::len);
            if n > 0 {
                eprintln!("avm serve: purged {n} old trash entries");
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => eprintln!("avm serve: trash purge: {}", e.message()),
    }
    if config.auto_archive {
        match life.archive("/memory", None, 1000, false) {
            Ok(o) => {
                let n = o.data()["archived"].as_array().map_or(0, Vec::len);
                if n > 0 {
                    eprintln!("avm serve: archived {n} cold memories");
                }
            }
            Err(e) => eprintln!("avm serve: auto-archive: {}", e.message()),
        }
    }
}

/// The mounts thread of `avm serve` and its stop flag.
type OwnedMounts = (Arc<AtomicBool>, std::thread::JoinHandle<()>);

/// Keeps the mounts of the mounts file alive from this process (what `avm daemon` does), unless
/// the file names none or the daemon already runs. While it does, this process is the daemon
/// (`avm daemon status|reload|stop` reach it: SIGHUP re-reads the file, SIGTERM stops serve).
fn own_mounts(g: &Global) -> Result<Option<OwnedMounts>> {
    // Owned even with no mounts file yet: one written later is picked up (and `avm daemon
    // reload` reaches this server).
    let entries = crate::daemon::load_mounts()?;
    if let Some(pid) = crate::daemon::running()?
        && pid != std::process::id() as i32
    {
        eprintln!("avm serve: the mounts belong to avm daemon (pid {pid}); leaving them to it");
        return Ok(None);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| Error::internal(format!("cannot handle SIGHUP: {e}")))?;
    std::fs::write(crate::daemon::pid_file()?, std::process::id().to_string()).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot write the daemon pid file: {e}"),
        )
    })?;
    let g = g.clone();
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("avm-serve-mounts".into())
        .spawn(move || crate::daemon::supervise(&g, &flag, &hup, false))
        .map_err(|e| {
            remove_own_pid_file();
            Error::internal(format!("cannot start the mounts thread: {e}"))
        })?;
    eprintln!(
        "avm serve: keeping {} mount(s) of the mounts file alive",
        entries.iter().filter(|e| e.enabled).count()
    );
    Ok(Some((stop, thread)))
}

/// Removes the daemon pid file if it still names this process.
fn remove_own_pid_file() {
    if let Ok(p) = crate::daemon::pid_file()
        && std::fs::read_to_string(&p).is_ok_and(|s| s.trim() == std::process::id().to_string())
    {
        let _ = std::fs::remove_file(p);
    }
}

/// Device and inode of `path`, to tell one socket file from its successor.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Binds the CLI's socket at `path` (owner-only). A socket that answers belongs to another
/// server on the same database: refused. A stale one is replaced. A path too long for a
/// socket leaves the CLI on direct access, with a warning.
fn bind_socket(path: &std::path::Path) -> Result<Option<std::os::unix::net::UnixListener>> {
    use std::os::unix::fs::PermissionsExt;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "another avm serve is serving this database (its socket {} answers); stop it first",
                path.display()
            ),
        ));
    }
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)
            .map_err(|e| Error::internal(format!("cannot replace {}: {e}", path.display())))?;
    }
    // Created owner-only from the start (umask), not made so after the fact.
    let old_mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old_mask);
    let l = match bound {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "avm serve: no CLI socket at {} ({e}); the CLI will open the database itself",
                path.display()
            );
            return Ok(None);
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::internal(format!("cannot restrict {}: {e}", path.display())))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::internal(format!("socket: {e}")))?;
    Ok(Some(l))
}

/// Set by `avm serve` for its own restart: the address it listened on (so that a server started
/// on port 0 keeps its port).
const RESTART_BIND: &str = "AVM_RESTART_BIND";

/// Watches the configuration files once a second (on a thread of its own: checking a new
/// configuration opens it); when they change and the new configuration opens, sets `restart`
/// and cancels `stopping`, so that the server stops and starts again with it. A configuration
/// that does not open is logged and changes nothing.
fn follow_config(
    mut watch: crate::app::ConfigWatch,
    stopping: tokio_util::sync::CancellationToken,
    restart: Arc<AtomicBool>,
) {
    while !stopping.is_cancelled() {
        std::thread::sleep(Duration::from_secs(1));
        match watch.poll() {
            None => {}
            Some((which, Ok(()))) => {
                eprintln!("avm serve: the configuration changed ({which}); restarting to apply it");
                restart.store(true, Ordering::Relaxed);
                stopping.cancel();
                return;
            }
            Some((which, Err(e))) => eprintln!(
                "avm serve: the configuration changed ({which}) but does not load: {}; still serving with the configuration it started with",
                e.message()
            ),
        }
    }
}

/// The shortest time between two worker passes when changes wake the worker.
const WAKE_GAP: Duration = Duration::from_millis(100);

/// Runs `avm serve`.
pub fn serve(
    g: &Global,
    bind: &str,
    max_body: Option<usize>,
    every: u64,
    mounts: bool,
) -> Result<ExitCode> {
    // A restart to apply a changed configuration listens where this server listened before.
    let rebind = std::env::var(RESTART_BIND).ok();
    let bind = rebind.as_deref().unwrap_or(bind);
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
    let semantic_on = semantic.is_some();
    let keys = Arc::new(open_keys(&config)?);
    let subs = open_subs(&config)?;
    let policy = host.policy().clone();
    let require_key = !addr.ip().is_loopback() || config.serve.require_key;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot listen on {addr}: {e}"),
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::internal(format!("listener: {e}")))?;
    let socket_file = crate::remote::socket_path(&config.db_path()?);
    let socket = bind_socket(&socket_file)?;
    // Removed at the end only while it is still this server's (a successor may have bound anew).
    let socket_id = socket.as_ref().and_then(|_| file_id(&socket_file));
    let local = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("listener: {e}")))?;
    // Every HTTP and MCP request (and a worker's batch) gets this long.
    let host = Arc::new(host.with_timeout(Duration::from_secs(
        config.serve.request_timeout_secs.max(1),
    )));
    let state = Arc::new(HttpState {
        host: host.clone(),
        keys,
        require_key,
        max_body: max_body.unwrap_or(config.max_node_bytes as usize + (64 << 10)),
        hosts: avm_http::allowed_hosts(local, &config.serve.hosts),
        body_timeout: Duration::from_secs(config.serve.body_timeout_secs.max(1)),
        header_timeout: Duration::from_secs(config.serve.header_timeout_secs.max(1)),
    });

    // Workers: keep the topic index and the embeddings in step with writes from any process.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        let store = store.clone();
        let lifecycle = config.lifecycle.clone();
        std::thread::Builder::new()
            .name("avm-serve-worker".into())
            .spawn(move || {
                let topics = avm_topics::TopicIndex::new(store.clone());
                let mut last_upkeep: Option<std::time::Instant> = None;
                // Woken at once by a change from any host where the store can tell (PostgreSQL),
                // else every `every` seconds.
                let mut waiter = store.change_waiter();
                while !stop.load(Ordering::Relaxed) {
                    let started = std::time::Instant::now();
                    work(
                        &topics,
                        semantic.as_deref(),
                        Some((&subs, &*policy)),
                        store.as_ref(),
                    );
                    if last_upkeep.is_none_or(|t| t.elapsed() >= UPKEEP_EVERY) {
                        upkeep(&host, store.as_ref(), &lifecycle);
                        last_upkeep = Some(std::time::Instant::now());
                    }
                    // Passes at most every WAKE_GAP however busy the writers are.
                    if let Some(rest) = WAKE_GAP.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                    let step = Duration::from_millis(50);
                    let mut slept = Duration::ZERO;
                    while slept < Duration::from_secs(every.max(1)) && !stop.load(Ordering::Relaxed)
                    {
                        match waiter.as_mut() {
                            Some(w) => {
                                if w.wait(step) {
                                    break;
                                }
                            }
                            None => std::thread::sleep(step),
                        }
                        slept += step;
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
    // Written, not printed: after a restart nobody may be reading any more, and a closed pipe
    // must not stop the server.
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "Listening on http://{local}").and_then(|()| out.flush());
    }
    eprintln!(
        "avm serve: http://{local}{} (pid {}); GET /openapi.json describes the API, MCP (streamable HTTP) at /mcp",
        if require_key {
            ", API key required"
        } else {
            ", loopback: no key needed"
        },
        std::process::id()
    );
    // One token stops everything: the signal cancels it; MCP's open streams end with it (axum's
    // graceful shutdown would otherwise wait on them for ever).
    let stopping = tokio_util::sync::CancellationToken::new();
    // MCP over streamable HTTP at /mcp: every request acts as its credentials say.
    let mcp_stop = stopping.child_token();
    let app = {
        let st = state.clone();
        let identify: avm_mcp::Identify = Arc::new(move |headers: &http::HeaderMap| {
            avm_http::caller(&st, headers).map_err(avm_http::ApiError::into_error)
        });
        let mcp = avm_mcp::http_service(
            avm_mcp::Ctx {
                host: state.host.clone(),
                store: store.clone(),
                caller: avm_core::Caller::Operator,
                semantic: semantic_on,
                identify: Some(identify),
            },
            // The API's own guard checks Host and Origin for every route, /mcp included.
            true,
            mcp_stop.clone(),
        );
        avm_http::router(state.clone()).merge(avm_http::guarded(state.clone(), "/mcp", mcp))
    };
    // The CLI's way in: the same API on an owner-only socket beside the database, where the
    // socket's permissions stand in for a key (as loopback does).
    let local_state = Arc::new(HttpState {
        host: state.host.clone(),
        keys: state.keys.clone(),
        require_key: false,
        max_body: state.max_body,
        hosts: None,
        body_timeout: state.body_timeout,
        header_timeout: state.header_timeout,
    });
    let local_app = avm_http::router(local_state.clone());
    let restart = Arc::new(AtomicBool::new(false));
    {
        let (watch, stopping, restart) = (
            crate::app::ConfigWatch::new(g),
            stopping.clone(),
            restart.clone(),
        );
        std::thread::Builder::new()
            .name("avm-serve-config".into())
            .spawn(move || follow_config(watch, stopping, restart))
            .map_err(|e| Error::internal(format!("cannot start the config watch: {e}")))?;
    }
    // Last of the set-up, so nothing after it can fail and leave mounts behind.
    let owned_mounts = if mounts {
        own_mounts(g).unwrap_or_else(|e| {
            eprintln!("avm serve: not keeping mounts: {}", e.message());
            None
        })
    } else {
        None
    };
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let socket = socket.map(tokio::net::UnixListener::from_std).transpose()?;
        let signalled = stopping.clone();
        tokio::spawn(async move {
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
                    signalled.cancel();
                }
                _ => std::future::pending::<()>().await,
            }
        });
        let tcp = avm_http::serve(listener, app, state, stopping.clone().cancelled_owned());
        let local = async {
            match socket {
                Some(l) => {
                    avm_http::serve(
                        l,
                        local_app,
                        local_state,
                        stopping.clone().cancelled_owned(),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let (a, b) = tokio::join!(tcp, local);
        a.and(b)
    });
    if let Some(id) = socket_id
        && file_id(&socket_file) == Some(id)
    {
        let _ = std::fs::remove_file(&socket_file);
    }
    if let Some((stop, thread)) = owned_mounts {
        stop.store(true, Ordering::Relaxed);
        let _ = thread.join();
        remove_own_pid_file();
    }
    mcp_stop.cancel();
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    // Writes were committed as each request finished; flush access times and the like.
    let _ = memory.store().sync();
    served.map_err(|e| Error::new(ErrorKind::Unavailable, format!("server: {e}")))?;
    if restart.load(Ordering::Relaxed) {
        // Everything is stopped and flushed: start again as the same process (same pid, same
        // arguments, same address) with the new configuration.
        use std::os::unix::process::CommandExt;
        let exe =
            std::env::current_exe().map_err(|e| Error::internal(format!("cannot restart: {e}")))?;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(RESTART_BIND, local.to_string())
            .exec();
        return Err(Error::internal(format!("cannot restart: {err}")));
    }
    eprintln!("avm serve: stopped");
    Ok(ExitCode::SUCCESS)
}
