//! Running one child process under a deadline and an output cap.
//!
//! The child gets its own process group so that a timeout or an output overflow can kill
//! everything it started, not just the direct child. Stdout, stderr and stdin are each served
//! by their own thread, so a child that fills one pipe while we wait on another cannot
//! deadlock us.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use avm_core::{Error, ErrorKind, Result};

/// How much of stderr is kept for error messages.
const STDERR_TAIL: usize = 500;

/// How often a running child is polled for exit. We poll (rather than block in `wait`) so the
/// child stays unreaped until we decide, which keeps its process-group id valid for `killpg`.
const POLL: Duration = Duration::from_millis(10);

/// What limits one run.
pub struct Limits {
    /// When to stop the child.
    pub deadline: Instant,
    /// What the deadline is, for the error message (`timeout_ms 10000`, `the caller's deadline`).
    pub deadline_label: String,
    /// Most stdout bytes accepted.
    pub max_output: usize,
}

enum Event {
    Stdout(Vec<u8>),
    Overflow,
    Stderr(Vec<u8>),
}

/// Runs `cmd` (already given its program, arguments, environment and cwd), feeding `stdin`
/// if given, and returns its stdout. `label` names the program and the path in errors.
pub fn run(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    limits: &Limits,
    label: &str,
) -> Result<Vec<u8>> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = spawn(&mut cmd, label)?;
    // With process_group(0) the child leads a new group whose id is its pid.
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));

    let (tx, rx) = mpsc::channel();
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        thread::spawn(move || {
            // A child that exits without reading its input is not our failure: its exit status
            // and output say what happened, so a broken pipe here is ignored.
            let _ = pipe.write_all(&data);
        });
    }
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        let cap = limits.max_output;
        thread::spawn(move || read_capped(out, cap, &tx));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        thread::spawn(move || read_tail(err, &tx));
    }
    drop(tx);

    let mut status: Option<ExitStatus> = None;
    let mut stdout: Option<Vec<u8>> = None;
    let mut stderr: Option<Vec<u8>> = None;
    loop {
        if status.is_none() {
            status = child
                .try_wait()
                .map_err(|e| Error::internal(format!("{label}: waiting for the child: {e}")))?;
        }
        if status.is_some() && stdout.is_some() && stderr.is_some() {
            break;
        }
        let now = Instant::now();
        if now >= limits.deadline {
            stop(&mut child, pgid, status.is_some());
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!("{label} ran past {} and was stopped", limits.deadline_label),
            ));
        }
        let left = limits.deadline - now;
        let wait = if status.is_none() {
            left.min(POLL)
        } else {
            left
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Stdout(b)) => stdout = Some(b),
            Ok(Event::Stderr(b)) => stderr = Some(b),
            Ok(Event::Overflow) => {
                stop(&mut child, pgid, status.is_some());
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "{label} wrote more than max_output ({} bytes) to stdout and was stopped; raise max_output or make the program print less",
                        limits.max_output
                    ),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every reader has reported (or died); only the exit status is left to poll.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                stdout.get_or_insert_with(Vec::new);
                stderr.get_or_insert_with(Vec::new);
                if status.is_none() {
                    thread::sleep(left.min(POLL));
                }
            }
        }
    }
    let (Some(status), Some(stdout), Some(stderr)) = (status, stdout, stderr) else {
        return Err(Error::internal(format!(
            "{label}: lost the child's results"
        )));
    };
    if status.success() {
        return Ok(stdout);
    }
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "failed".to_string(),
    };
    let tail = String::from_utf8_lossy(&stderr);
    let tail = tail.trim();
    Err(Error::new(
        ErrorKind::Unavailable,
        if tail.is_empty() {
            format!("{label} {how} (no stderr)")
        } else {
            format!("{label} {how}: {tail}")
        },
    ))
}

fn spawn(cmd: &mut Command, label: &str) -> Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return Ok(c),
            // A script that was just written may still be open for writing in a process
            // forked meanwhile (ETXTBSY); that clears within moments.
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && tries < 5 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let kind = match e.kind() {
                    // Rust reports a NUL byte in an argument or variable this way.
                    io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                    _ => ErrorKind::Unavailable,
                };
                return Err(Error::new(kind, format!("{label}: cannot start: {e}")));
            }
        }
    }
}

/// Kills the child's whole process group and reaps the child.
fn stop(child: &mut Child, pgid: Pid, reaped: bool) {
    // Before the child is reaped its group id cannot be reused, so this cannot hit a stranger.
    // After it was reaped we only get here while a reader is still blocked, which means some
    // group member still holds a pipe, which in turn keeps the group id alive.
    let _ = killpg(pgid, Signal::SIGKILL);
    if !reaped {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_capped(mut r: impl Read, cap: usize, tx: &mpsc::Sender<Event>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if buf.len() + n > cap {
                    let _ = tx.send(Event::Overflow);
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Event::Stdout(buf));
}

fn read_tail(mut r: impl Read, tx: &mpsc::Sender<Event>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 4 * STDERR_TAIL {
                    buf.drain(..buf.len() - STDERR_TAIL);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if buf.len() > STDERR_TAIL {
        buf.drain(..buf.len() - STDERR_TAIL);
    }
    let _ = tx.send(Event::Stderr(buf));
}
