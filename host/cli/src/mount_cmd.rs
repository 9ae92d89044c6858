//! `avm mount` and `avm unmount`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use avm_core::{Error, ErrorKind, Result};

use crate::app::App;
use crate::cli::Global;

/// Set in the environment of a background mount's process.
const DETACHED: &str = "AVM_MOUNT_DETACHED";

/// `$XDG_STATE_HOME/avm` (or `~/.local/state/avm`).
pub fn state_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "neither XDG_STATE_HOME nor HOME is set",
            )
        })?;
    let d = base.join("avm");
    std::fs::create_dir_all(&d).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot create {}: {e}", d.display()),
        )
    })?;
    Ok(d)
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
    }
    if avm_fuse::is_mounted(dir) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} is already a mount point; `avm unmount {}` first",
                dir.display(),
                dir.display()
            ),
        ));
    }
    std::fs::canonicalize(dir).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot resolve {}: {e}", dir.display()),
        )
    })
}

/// Mounts in the foreground until unmounted or signalled (SIGTERM, SIGINT, SIGHUP).
pub fn foreground(g: &Global, dir: &Path, threads: usize, allow_other: bool) -> Result<ExitCode> {
    if std::env::var_os(DETACHED).is_some() {
        // A background mount leaves the starter's session so its terminal can close.
        let _ = nix::unistd::setsid();
    }
    let dir = prepare_dir(dir)?;
    let app = App::open(g)?;
    if let Some(s) = &app.semantic {
        // A mount lives long: large collections get the HNSW graph (saved beside the db).
        s.use_graph(true);
    }
    let caller = app.caller.clone();
    let memory = app.memory.clone();
    // Each filesystem operation gets this long (a hung plugin or URL never holds a FUSE
    // thread for ever).
    let op_timeout = std::time::Duration::from_secs(app.config.fuse.op_timeout_secs.max(1));
    let host = Arc::new(app.host.with_timeout(op_timeout));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot handle signals: {e}")))?;
    }
    let max_bytes = app.config.max_node_bytes;
    let session = avm_fuse::mount(
        host,
        caller.clone(),
        &dir,
        avm_fuse::MountOptions {
            threads,
            allow_other,
            max_bytes,
            inject_urgent: app.config.fuse.urgent == avm_core::config::UrgentMode::Inject,
        },
    )?;
    eprintln!(
        "avm: mounted {} as {} (pid {})",
        dir.display(),
        caller.agent().unwrap_or("operator"),
        std::process::id()
    );
    while !stop.load(Ordering::Relaxed) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let finished = session.guard.is_finished();
    if finished {
        let _ = session.join();
    } else {
        session.umount_and_join().map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot unmount {}: {e}", dir.display()),
            )
        })?;
    }
    let _ = memory.store().sync();
    eprintln!("avm: unmounted {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Starts a background mount process and returns once the mount is live.
pub fn background(g: &Global, dir: &Path, threads: usize, allow_other: bool) -> Result<ExitCode> {
    let dir = prepare_dir(dir)?;
    let exe = std::env::current_exe().map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot find the avm binary: {e}"),
        )
    })?;
    let log_path = state_dir()?.join(format!(
        "mount-{}.log",
        dir.to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "_")
    ));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot open {}: {e}", log_path.display()),
            )
        })?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(global_args(g))
        .arg("mount")
        .arg(&dir)
        .arg("--foreground")
        .arg("--threads")
        .arg(threads.to_string())
        .args(allow_other.then_some("--allow-other"))
        .env(DETACHED, "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot start the mount process: {e}"),
        )
    })?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if avm_fuse::is_mounted(&dir) {
            println!(
                "Mounted: {} (agent={}, pid={}, log {})",
                dir.display(),
                g.agent.as_deref().unwrap_or("operator"),
                child.id(),
                log_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("the mount process exited ({status}): {last}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(Error::new(
        ErrorKind::TimedOut,
        format!(
            "{} did not come up within 15 s; see {}",
            dir.display(),
            log_path.display()
        ),
    ))
}

/// The global flags to hand to a child avm process.
pub fn global_args(g: &Global) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(db) = &g.db {
        v.push("--db".into());
        v.push(db.to_string_lossy().into_owned());
    }
    if let Some(c) = &g.config {
        v.push("--config".into());
        v.push(c.to_string_lossy().into_owned());
    }
    if let Some(a) = &g.agent {
        v.push("--agent".into());
        v.push(a.clone());
    }
    v
}

/// Unmounts `dir` (the mount process then exits by itself).
pub fn unmount(dir: &Path) -> Result<()> {
    if !avm_fuse::is_mounted(dir) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} is not a mounted filesystem", dir.display()),
        ));
    }
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if nix::mount::umount2(&canon, nix::mount::MntFlags::empty()).is_ok() {
        return Ok(());
    }
    for tool in ["fusermount3", "fusermount"] {
        if std::process::Command::new(tool)
            .arg("-u")
            .arg(&canon)
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(());
        }
    }
    // Busy (a shell sits inside it): detach it now, it goes when the last user leaves.
    nix::mount::umount2(&canon, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
        Error::new(
            ErrorKind::Busy,
            format!("cannot unmount {}: {e}", dir.display()),
        )
    })
}
