//! avm-fuse: avm as a real filesystem.
//!
//! [`core::Core`] holds the logic (inodes and their lifetimes, open files shared by their
//! handles, virtual nodes, messages) and is tested without a kernel; [`fs::AvmFs`] is the thin
//! fuser layer; [`mount`] mounts it. Generated content (`:suffix`, `?query`) is read through
//! snapshots taken at open and served with direct I/O, so chunked reads agree and `stat`
//! never runs a query.

pub mod core;
pub mod fs;

use std::path::Path;
use std::sync::Arc;

use avm_core::{Caller, Error, ErrorKind, Host, Result};

/// Worker threads by default: one per CPU, at least two (so a slow `:recall` never holds up
/// a `cat`); more threads than CPUs only add hand-offs between them.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 16)
}

/// How a mount is served.
#[derive(Debug, Clone, Copy)]
pub struct MountOptions {
    /// Worker threads.
    pub threads: usize,
    /// Let other local users use the mount (`allow_other`; needs `user_allow_other` in
    /// /etc/fuse.conf unless mounted by root). The kernel then enforces the stored modes and
    /// owners for everyone (`default_permissions`, which every avm mount uses).
    pub allow_other: bool,
    /// Largest file in bytes (`max_node_bytes`).
    pub max_bytes: u64,
    /// Show unread urgent messages in front of the next text memory file read
    /// (`[fuse] urgent = "inject"`, the default); off: they wait in the inbox.
    pub inject_urgent: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: default_threads(),
            allow_other: false,
            max_bytes: avm_core::config::DEFAULT_MAX_NODE_BYTES,
            inject_urgent: true,
        }
    }
}

/// Mounts `host` at `dir` as `caller`, in the background. Dropping (or `umount_and_join` on)
/// the session unmounts.
pub fn mount(
    host: Arc<Host>,
    caller: Caller,
    dir: &Path,
    opts: MountOptions,
) -> Result<fuser::BackgroundSession> {
    let core = Arc::new(core::Core::with_limits(
        host,
        caller,
        core::Limits {
            max_bytes: opts.max_bytes,
            inject_urgent: opts.inject_urgent,
        },
    ));
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName("avm".into()),
        fuser::MountOption::Subtype("avm".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        // The kernel checks the stored modes and owners (and who may chmod or chown).
        fuser::MountOption::DefaultPermissions,
    ];
    if opts.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
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
