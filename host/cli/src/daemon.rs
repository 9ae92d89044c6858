//! `avm daemon start|stop|status|reload`: keeps the mounts listed in
//! `$XDG_CONFIG_HOME/avm/mounts.{toml,yaml}` alive.
//!
//! The daemon runs each enabled mount as its own `avm mount --foreground` child process (a
//! crash in one mount never takes the others down), reaps and restarts children that die,
//! probes each mount point (`/proc/self/mounts`), writes what it sees to
//! `$XDG_STATE_HOME/avm/daemon.json`, logs to `$XDG_STATE_HOME/avm/daemon.log`, reloads the
//! mounts file on SIGHUP or when it changes, restarts the mounts when the configuration files
//! change (so they run with the new configuration) and unmounts everything on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use figment::providers::Format;
use serde::{Deserialize, Serialize};

use avm_core::{Error, ErrorKind, Result};

use crate::cli::{DaemonAction, Global};
use crate::mount_cmd::{global_args, state_dir};

/// One configured mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountEntry {
    /// Mount point (`~` expands).
    pub path: String,
    /// The agent the mount acts as (none = operator).
    pub agent: Option<String>,
    /// Start it (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Let other local users use the mount (FUSE `allow_other`); default false.
    #[serde(default)]
    pub allow_other: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MountsFile {
    #[serde(default)]
    mounts: Vec<MountEntry>,
}

/// The mounts file in use, if any.
pub fn mounts_file() -> Option<PathBuf> {
    let dir = avm_core::config::config_dir()?;
    ["mounts.toml", "mounts.yaml", "mounts.yml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn expand(p: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(avm_core::config::expand(p)?))
}

/// Reads and checks the mounts file (no file = no mounts).
pub fn load_mounts() -> Result<Vec<MountEntry>> {
    let Some(f) = mounts_file() else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(&f).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read {}: {e}", f.display()),
        )
    })?;
    let yaml = f.extension().is_some_and(|e| e != "toml");
    let parsed: MountsFile = if yaml {
        figment::Figment::from(figment::providers::Yaml::string(&text))
            .extract()
            .map_err(|e| Error::invalid(format!("{}: {e}", f.display())))?
    } else {
        figment::Figment::from(figment::providers::Toml::string(&text))
            .extract()
            .map_err(|e| Error::invalid(format!("{}: {e}", f.display())))?
    };
    let mut seen = std::collections::BTreeSet::new();
    for m in &parsed.mounts {
        let p = expand(&m.path)?;
        if !p.is_absolute() {
            return Err(Error::invalid(format!(
                "{}: mount path {:?} must be absolute",
                f.display(),
                m.path
            )));
        }
        if !seen.insert(p.clone()) {
            return Err(Error::invalid(format!(
                "{}: {} is listed twice",
                f.display(),
                p.display()
            )));
        }
        if let Some(a) = &m.agent {
            avm_core::config::validate_agent_id(a)
                .map_err(|e| e.context(format!("{}: mount {}", f.display(), m.path)))?;
        }
    }
    Ok(parsed.mounts)
}

pub(crate) fn pid_file() -> Result<PathBuf> {
    Ok(state_dir()?.join("daemon.pid"))
}

fn status_file() -> Result<PathBuf> {
    Ok(state_dir()?.join("daemon.json"))
}

fn log_file() -> Result<PathBuf> {
    Ok(state_dir()?.join("daemon.log"))
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
}

/// The running daemon's pid, if one runs.
pub(crate) fn running() -> Result<Option<i32>> {
    let Ok(text) = std::fs::read_to_string(pid_file()?) else {
        return Ok(None);
    };
    Ok(text.trim().parse::<i32>().ok().filter(|p| alive(*p)))
}

/// What the daemon did, at info level under the `avm::daemon` target, which the default log
/// filter shows: its stderr is the daemon log.
fn log(line: &str) {
    tracing::info!(target: "avm::daemon", "{line}");
}

/// What went wrong but did not stop the daemon.
fn warn(line: &str) {
    tracing::warn!(target: "avm::daemon", "{line}");
}

struct Managed {
    entry: MountEntry,
    dir: PathBuf,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct MountStatus {
    path: String,
    agent: Option<String>,
    pid: Option<u32>,
    state: String,
    restarts: u32,
    last_error: Option<String>,
}

fn spawn(g: &Global, m: &Managed) -> Result<Child> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot find avm: {e}")))?;
    let mut g2 = g.clone();
    g2.agent = m.entry.agent.clone();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file()?)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot open the log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
    std::process::Command::new(exe)
        .args(global_args(&g2))
        .arg("mount")
        .arg(&m.dir)
        .arg("--foreground")
        .args(m.entry.allow_other.then_some("--allow-other"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot start a mount: {e}")))
}

fn stop_child(m: &mut Managed) {
    if let Some(mut c) = m.child.take() {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    if avm_fuse::is_mounted(&m.dir) {
        let _ = crate::mount_cmd::unmount(&m.dir);
    }
}

fn write_status(ms: &BTreeMap<PathBuf, Managed>) {
    let v: Vec<MountStatus> = ms
        .values()
        .map(|m| MountStatus {
            path: m.dir.to_string_lossy().into_owned(),
            agent: m.entry.agent.clone(),
            pid: m.child.as_ref().map(Child::id),
            state: if avm_fuse::is_mounted(&m.dir) {
                "mounted".into()
            } else if m.child.is_some() {
                "starting".into()
            } else {
                "failed".into()
            },
            restarts: m.restarts,
            last_error: m.last_error.clone(),
        })
        .collect();
    if let Ok(f) = status_file() {
        let tmp = f.with_extension("json.tmp");
        if std::fs::write(&tmp, serde_json::to_string_pretty(&v).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(tmp, f);
        }
    }
}

/// Applies the mounts file: starts new or changed mounts, stops removed or disabled ones.
fn reconcile(g: &Global, ms: &mut BTreeMap<PathBuf, Managed>) {
    let entries = match load_mounts() {
        Ok(e) => e,
        Err(e) => {
            warn(&format!("mounts file not applied: {}", e.message()));
            return;
        }
    };
    let mut wanted = BTreeMap::new();
    for e in entries.into_iter().filter(|e| e.enabled) {
        if let Ok(p) = expand(&e.path) {
            wanted.insert(p, e);
        }
    }
    let gone: Vec<PathBuf> = ms
        .iter()
        .filter(|(p, m)| wanted.get(*p) != Some(&m.entry))
        .map(|(p, _)| p.clone())
        .collect();
    for p in gone {
        if let Some(mut m) = ms.remove(&p) {
            log(&format!("stopping {}", p.display()));
            stop_child(&mut m);
        }
    }
    for (p, e) in wanted {
        if ms.contains_key(&p) {
            continue;
        }
        if let Err(err) = std::fs::create_dir_all(&p) {
            warn(&format!("cannot create {}: {err}", p.display()));
        }
        let mut m = Managed {
            entry: e,
            dir: p.clone(),
            child: None,
            started: Instant::now(),
            restarts: 0,
            last_error: None,
        };
        match spawn(g, &m) {
            Ok(c) => {
                log(&format!(
                    "started {} (agent {}, pid {})",
                    p.display(),
                    m.entry.agent.as_deref().unwrap_or("operator"),
                    c.id()
                ));
                m.child = Some(c);
            }
            Err(err) => m.last_error = Some(err.message().to_string()),
        }
        ms.insert(p, m);
    }
}

/// Runs the daemon in this process until SIGTERM/SIGINT.
fn run_foreground(g: &Global) -> Result<ExitCode> {
    if let Some(pid) = running()?
        && pid != std::process::id() as i32
    {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("the daemon is already running (pid={pid})"),
        ));
    }
    load_mounts()?;
    std::fs::write(pid_file()?, std::process::id().to_string()).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot write the pid file: {e}"),
        )
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hup),
    ] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot handle signals: {e}")))?;
    }
    log(&format!("daemon started (pid {})", std::process::id()));
    supervise(g, &stop, &hup, true);
    let _ = std::fs::remove_file(pid_file()?);
    log("daemon stopped");
    Ok(ExitCode::SUCCESS)
}

/// Keeps the mounts of the mounts file alive until `stop` is set: starts them, restarts the
/// ones that die or stop answering, re-reads the file when `hup` is set, and stops and
/// unmounts them all at the end. `avm daemon` and `avm serve` both run it.
///
/// With `follow_config`, a change to the configuration files (one created after the start
/// included) restarts every mount so that it runs with the new configuration, once the new
/// configuration opens (`avm config check` would pass); a broken one is logged and the mounts
/// keep running as they are.
pub fn supervise(g: &Global, stop: &AtomicBool, hup: &AtomicBool, follow_config: bool) {
    let mut ms: BTreeMap<PathBuf, Managed> = BTreeMap::new();
    reconcile(g, &mut ms);
    let mut config = crate::app::ConfigWatch::new(g);
    let mut last_status = Instant::now() - Duration::from_secs(10);
    // The mounts file as last read (path and mtime): a new, changed or removed file is read
    // again without waiting for a reload.
    let stamp = || {
        mounts_file().map(|f| {
            let t = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, t)
        })
    };
    let mut seen = stamp();
    let mut last_look = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            log("reloading the mounts file");
            reconcile(g, &mut ms);
            seen = stamp();
        } else if last_look.elapsed() > Duration::from_secs(1) {
            last_look = Instant::now();
            let now = stamp();
            if now != seen {
                log(&format!(
                    "the mounts file changed ({}); reloading it",
                    now.as_ref()
                        .map(|(f, _)| f.display().to_string())
                        .unwrap_or_else(|| "removed".into())
                ));
                seen = now;
                reconcile(g, &mut ms);
            }
            if let Some((which, opened)) = config.poll().filter(|_| follow_config) {
                match opened {
                    Ok(()) => {
                        log(&format!(
                            "the configuration changed ({which}); restarting {} mount(s) to apply it",
                            ms.len()
                        ));
                        for m in ms.values_mut() {
                            stop_child(m);
                            m.started = Instant::now();
                            match spawn(g, m) {
                                Ok(c) => m.child = Some(c),
                                Err(e) => m.last_error = Some(e.message().to_string()),
                            }
                        }
                    }
                    Err(e) => warn(&format!(
                        "the configuration changed ({which}) but does not load: {}; the mounts keep the configuration they started with",
                        e.message()
                    )),
                }
            }
        }
        for m in ms.values_mut() {
            let exited = match &mut m.child {
                Some(c) => match c.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    _ => None,
                },
                None => Some("not running".into()),
            };
            let stuck = m.child.is_some()
                && m.started.elapsed() > Duration::from_secs(20)
                && !avm_fuse::is_mounted(&m.dir);
            if stuck {
                warn(&format!(
                    "{} is not mounted; restarting it",
                    m.dir.display()
                ));
                stop_child(m);
            }
            if let Some(why) = exited.or(stuck.then(|| "not mounted".to_string())) {
                m.child = None;
                // Back off: at most one restart every two seconds per mount.
                if m.started.elapsed() < Duration::from_secs(2) {
                    continue;
                }
                warn(&format!("{} stopped ({why}); restarting", m.dir.display()));
                m.last_error = Some(why);
                if avm_fuse::is_mounted(&m.dir) {
                    let _ = crate::mount_cmd::unmount(&m.dir);
                }
                m.started = Instant::now();
                m.restarts += 1;
                match spawn(g, m) {
                    Ok(c) => m.child = Some(c),
                    Err(e) => m.last_error = Some(e.message().to_string()),
                }
            }
        }
        if last_status.elapsed() > Duration::from_millis(500) {
            write_status(&ms);
            last_status = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log("stopping");
    for m in ms.values_mut() {
        stop_child(m);
    }
    ms.clear();
    write_status(&ms);
}

fn start(g: &Global) -> Result<ExitCode> {
    if let Some(pid) = running()? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("the daemon is already running (pid={pid})"),
        ));
    }
    let mounts = load_mounts()?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot find avm: {e}")))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file()?)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot open the log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
    let mut child = std::process::Command::new(exe)
        .args(global_args(g))
        .args(["daemon", "start", "--foreground"])
        .env("AVM_MOUNT_DETACHED", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot start the daemon: {e}"),
            )
        })?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the daemon exited at start ({st}); see {}",
                    log_file()?.display()
                ),
            ));
        }
        if running()? == Some(child.id() as i32) {
            println!("Daemon started (pid={})", child.id());
            return wait_for_mounts(&mounts, &mut child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::new(
        ErrorKind::TimedOut,
        "the daemon did not start within 10 s",
    ))
}

/// Returns once every enabled mount answers (within 20 s), saying which did not otherwise:
/// a script that runs `avm daemon start` and then reads a mount must find it there.
fn wait_for_mounts(mounts: &[MountEntry], child: &mut std::process::Child) -> Result<ExitCode> {
    let mut dirs = Vec::new();
    for m in mounts.iter().filter(|m| m.enabled) {
        dirs.push(expand(&m.path)?);
    }
    let t = Instant::now();
    loop {
        let down: Vec<&PathBuf> = dirs.iter().filter(|d| !avm_fuse::is_mounted(d)).collect();
        if down.is_empty() {
            println!("Mounts: {} up", dirs.len());
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("the daemon exited ({st}); see {}", log_file()?.display()),
            ));
        }
        if t.elapsed() > Duration::from_secs(20) {
            let names: Vec<String> = down.iter().map(|d| d.display().to_string()).collect();
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the daemon runs, but {} of {} mounts did not come up within 20 s: {}; see {}",
                    down.len(),
                    dirs.len(),
                    names.join(", "),
                    log_file()?.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop() -> Result<ExitCode> {
    let Some(pid) = running()? else {
        return Err(Error::new(ErrorKind::NotFound, "the daemon is not running"));
    };
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if !alive(pid) {
            println!("Stopped daemon (pid={pid})");
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = std::fs::remove_file(pid_file()?);
    println!("Killed daemon (pid={pid}) after 15 s");
    Ok(ExitCode::SUCCESS)
}

fn status(json: bool) -> Result<ExitCode> {
    let pid = running()?;
    let configured = load_mounts()?;
    let reported: Vec<serde_json::Value> = std::fs::read_to_string(status_file()?)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for m in &configured {
        let dir = expand(&m.path)?;
        let live = avm_fuse::is_mounted(&dir);
        let rep = reported
            .iter()
            .find(|r| r["path"].as_str() == Some(&dir.to_string_lossy()));
        let state = if !m.enabled {
            "disabled"
        } else if live {
            "mounted"
        } else if pid.is_some() {
            "down"
        } else {
            "stopped"
        };
        rows.push(serde_json::json!({
            "path": dir, "agent": m.agent, "enabled": m.enabled, "state": state,
            "pid": rep.and_then(|r| r["pid"].as_u64()),
            "restarts": rep.and_then(|r| r["restarts"].as_u64()).unwrap_or(0),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "running": pid.is_some(), "pid": pid, "mounts_file": mounts_file(), "mounts": rows,
            }))
            .unwrap_or_default()
        );
    } else {
        match pid {
            Some(p) => println!("Status: ● running (pid={p})"),
            None => println!("Status: ⭘ not running"),
        }
        match mounts_file() {
            Some(f) => println!("Mounts file: {}", f.display()),
            None => println!(
                "Mounts file: none (create {}/mounts.toml)",
                avm_core::config::config_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
        }
        for r in &rows {
            println!(
                "  {} {}  agent={}  {}{}",
                if r["state"] == "mounted" {
                    "●"
                } else {
                    "○"
                },
                r["path"].as_str().unwrap_or(""),
                r["agent"].as_str().unwrap_or("operator"),
                r["state"].as_str().unwrap_or(""),
                match r["restarts"].as_u64() {
                    Some(n) if n > 0 => format!(" ({n} restarts)"),
                    _ => String::new(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn reload() -> Result<ExitCode> {
    let n = load_mounts()?.len();
    let Some(pid) = running()? else {
        return Err(Error::new(ErrorKind::NotFound, "the daemon is not running"));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot signal pid {pid}: {e}"),
        )
    })?;
    println!("Reloaded ({n} mounts configured)");
    Ok(ExitCode::SUCCESS)
}

/// Runs `avm daemon …`.
pub fn run(g: &Global, action: &DaemonAction) -> Result<ExitCode> {
    match action {
        DaemonAction::Start { foreground: true } => {
            if std::env::var_os("AVM_MOUNT_DETACHED").is_some() {
                let _ = nix::unistd::setsid();
            }
            run_foreground(g)
        }
        DaemonAction::Start { foreground: false } => start(g),
        DaemonAction::Stop => stop(),
        DaemonAction::Status => status(g.json),
        DaemonAction::Reload => reload(),
    }
}
