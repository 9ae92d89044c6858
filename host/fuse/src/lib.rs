//! avm-fuse: avm as a real filesystem.
//!
//! [`core::Core`] holds the logic (paths and inodes, open handles, virtual nodes, messages) and
//! is tested without a kernel; [`fs::AvmFs`] is the thin fuser layer; [`mount`] mounts it.
//! Generated content (`:suffix`, `?query`) is read through snapshots taken at open and served
//! with direct I/O, so chunked reads agree and `stat` never runs a query.

pub mod core;
pub mod fs;

use std::path::Path;
use std::sync::Arc;

use avm_core::storage::MemoryStore;
use avm_core::{Caller, Error, ErrorKind, Host, Result};

pub use avm_provider_tell::urgent_block;

/// Worker threads by default: one per CPU, at least two (so a slow `:recall` never holds up
/// a `cat`); more threads than CPUs only add hand-offs between them.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 16)
}

/// Mounts `host` at `dir` as `caller`, served by `threads` worker threads, in the background.
/// Dropping (or `umount_and_join` on) the session unmounts.
pub fn mount(
    host: Arc<Host>,
    caller: Caller,
    store: Option<Arc<dyn MemoryStore>>,
    dir: &Path,
    threads: usize,
) -> Result<fuser::BackgroundSession> {
    let core = Arc::new(core::Core::new(host, caller, store));
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName("avm".into()),
        fuser::MountOption::Subtype("avm".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = true;
    fuser::spawn_mount(fs::AvmFs::new(core), dir, &cfg).map_err(|e| {
        Error::new(
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::Unavailable
            },
            format!("cannot mount at {}: {e}", dir.display()),
        )
    })
}

/// Whether `dir` is currently a mount point of a FUSE filesystem (per /proc/self/mounts).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(dir).or_else(|_| Ok::<_, ()>(dir.to_path_buf())) else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    mounts.lines().any(|l| {
        let mut f = l.split(' ');
        let (_src, target, fstype) = (f.next(), f.next(), f.next());
        target == Some(want.as_str()) && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}
