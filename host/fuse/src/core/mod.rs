//! The filesystem logic, independent of the kernel: inodes and their lifetimes, open files,
//! what each operation does to the host. [`crate::fs`] is the thin fuser layer on top; tests
//! drive this core directly.
//!
//! # The open-file model
//!
//! Like a page cache, every open regular file has one [`FileState`] per inode, shared by all
//! of its handles: a write is visible at once to reads through any descriptor of that file
//! and to `stat`; holes read as zeros; writers on one file merge at byte level; an `O_APPEND`
//! write lands at the end as the file stands at that moment. The buffer is stored as one new
//! version on `flush` (every `close`), `fsync` and the last `release`, and only when it
//! changed. A file created here is not stored until then (one version, not an empty one
//! first). An unlinked file stays usable through its open descriptors and is never stored
//! again; a file replaced by `rename` likewise.
//!
//! # Inodes
//!
//! An inode number is allocated when the kernel learns a name (lookup, create, mkdir,
//! symlink) and dropped when the kernel forgets it and no file is open on it, so a mount that
//! answers millions of lookups of missing names keeps no state for them.
//!
//! # Lock order
//!
//! `names` → `inodes` → `files` → a file's `store` lock → that file's `data` lock. The maps
//! and buffers are locked only as long as they are touched, never across a host call, with
//! two exceptions: a file's `store` lock (with `names` shared) is held while its content is
//! written to the host, so two stores of one file cannot land out of order; and `names` is
//! held exclusively while unlink, rmdir or rename changes a name in the host and re-points
//! the inodes and open files, so a store in flight finishes first and none lands at a name
//! that is going (a removed file never comes back, a replaced one never overwrites its
//! replacement). The host never calls back into this core, so no call made under a lock can
//! take it again.
//!
//! # Layout
//!
//! This file holds the types and the [`Core`] itself; its operations are split by what they
//! touch: `inodes` (the inode table), `generated` (`:suffix`/`?query` paths, `@id` shortcuts,
//! `:help`, urgent messages), `attr` (attributes and `setattr`), `names` (directories, links,
//! unlink, rmdir, rename), `open` (open, create, release) and `io` (read, write, store).

mod attr;
mod generated;
mod inodes;
mod io;
mod names;
mod open;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use attr::{from_nanos, to_nanos};
pub use generated::{help, urgent_fits};

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime};

use avm_core::{Caller, Host};

/// The root inode.
pub const ROOT: u64 = 1;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A stored file.
    File,
    /// A symbolic link.
    Symlink,
    /// Generated content (a `:suffix` or `?query`), or a message drop (`/tell/<agent>`).
    Virtual,
}

/// Attributes of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode.
    pub ino: u64,
    /// Kind.
    pub kind: Kind,
    /// Size in bytes (generated content reports 0 and is read to its end).
    pub size: u64,
    /// Last content change.
    pub mtime: SystemTime,
    /// Last change of content or attributes.
    pub ctime: SystemTime,
    /// Last access.
    pub atime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Owner (`None`: the mount's owner).
    pub uid: Option<u32>,
    /// Group (`None`: the mount's group).
    pub gid: Option<u32>,
    /// Link count.
    pub nlink: u32,
}

impl Attr {
    /// Generated content (`:suffix`, `?query`, `/tell/…`): size 0 (read to its end), times
    /// now, readable and writable by the mount's owner.
    pub fn generated(ino: u64) -> Attr {
        let now = SystemTime::now();
        Attr {
            ino,
            kind: Kind::Virtual,
            size: 0,
            mtime: now,
            ctime: now,
            atime: now,
            perm: 0o644,
            uid: None,
            gid: None,
            nlink: 1,
        }
    }

    /// A regular file as this mount made it: `size` bytes, modified at `mtime`, with the
    /// permission bits and owner it was given.
    pub fn made(ino: u64, size: u64, mtime: SystemTime, mode: u32, owner: Option<Owner>) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            ctime: mtime,
            atime: mtime,
            perm: (mode & 0o7777) as u16,
            uid: owner.map(|o| o.uid),
            gid: owner.map(|o| o.gid),
            nlink: 1,
        }
    }
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenMode {
    /// Opened for writing.
    pub write: bool,
    /// `O_TRUNC`.
    pub truncate: bool,
    /// `O_APPEND`.
    pub append: bool,
    /// `O_EXCL` (with create).
    pub exclusive: bool,
    /// The process that opens (`None`: unknown). One that copies or checksums files
    /// ([`COPIERS`]) never gets urgent messages in front of the content; it is looked up only
    /// when there are messages to show.
    ///
    /// [`COPIERS`]: generated::COPIERS
    pub reader: Option<u32>,
}

/// Who makes a node (stored as its owner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Changes asked for by `setattr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend with zeros).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

/// Mount-wide settings of a core.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file in bytes (`max_node_bytes`): a write or truncate past it fails with EFBIG.
    pub max_bytes: u64,
    /// Show unread urgent messages in front of the next text memory file the agent reads
    /// (`[mount] urgent = "inject"`); off: they wait in the inbox.
    pub inject_urgent: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: avm_core::config::DEFAULT_MAX_NODE_BYTES,
            inject_urgent: true,
        }
    }
}

/// One inode the kernel knows.
#[derive(Debug)]
struct Inode {
    path: String,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
    /// The name is gone (unlinked or replaced); only open files keep the inode usable.
    unlinked: bool,
    /// What the inode was when its name went (link count 0), for `fstat` on a descriptor
    /// still open on it.
    gone: Option<Attr>,
}

#[derive(Default)]
struct Inodes {
    by_ino: HashMap<u64, Inode>,
    by_path: HashMap<String, u64>,
    next: u64,
}

/// The buffer and state of one open file.
#[derive(Debug)]
struct Data {
    path: String,
    bytes: Vec<u8>,
    /// The buffer differs from what is stored.
    dirty: bool,
    /// Bumped by every change, so a store knows whether it stored the latest.
    seq: u64,
    /// Created through this mount and never stored yet.
    new: bool,
    /// Unlinked or replaced: never stored again.
    unlinked: bool,
    /// Open handles.
    handles: usize,
    /// Modification time as writes and `utimensat` set it (stored with the content).
    mtime: SystemTime,
    /// Attributes of a new file (mode, owner), stored with its first version.
    mode: u32,
    owner: Option<Owner>,
    /// Attributes as last read from the host (for everything but size and mtime).
    stat: Option<Attr>,
}

/// One open file, shared by all its handles.
#[derive(Debug)]
struct FileState {
    /// Held while storing (see the module docs for why).
    store: Mutex<()>,
    data: Mutex<Data>,
}

/// What a handle reads and writes.
#[derive(Debug)]
enum HandleKind {
    /// A regular file, through its shared [`FileState`]. `wrote`: this handle changed the
    /// file since its last flush (a close stores only then: bash closes a redirection's
    /// descriptor once before it writes, and that close must not store an empty version).
    File { ino: u64, append: bool, wrote: bool },
    /// Content fixed at open: generated content, a provider's output, or a file shown with
    /// urgent messages (`shown`) in its first `header_len` bytes, marked read once a read
    /// returns those bytes.
    Snapshot {
        /// The inode it was opened on.
        ino: u64,
        data: Arc<Vec<u8>>,
        shown: Vec<i64>,
        header_len: usize,
    },
    /// A write to a generated path (`:tags`, `/tell/bob`, …), sent when closed.
    Virtual {
        path: String,
        buf: Vec<u8>,
        written: bool,
    },
}

/// A directory listing taken at `opendir`, so every `readdir` page comes from one listing.
pub type DirListing = Arc<Vec<(String, Kind, u64)>>;

/// When the urgent block was looked up, and what it was (header text, message ids).
type UrgentCache = (Option<Instant>, Option<(String, Vec<i64>)>);

/// The filesystem core for one mount.
pub struct Core {
    host: Arc<Host>,
    caller: Caller,
    limits: Limits,
    /// Held shared by every store of a file's content and exclusively by the operations
    /// that change names (unlink, rmdir, rename) while they change them and re-point the
    /// open files, so no store lands at a name that is going or gone.
    names: RwLock<()>,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, Arc<FileState>>>,
    handles: Mutex<HashMap<u64, HandleKind>>,
    dirs: Mutex<HashMap<u64, DirListing>>,
    next_fh: AtomicU64,
    /// Unread urgent messages, looked up at most every 250 ms (getattr asks for every file).
    urgent: Mutex<UrgentCache>,
    /// Free bytes of the storage as last looked up, and when.
    space: Mutex<Option<(Instant, u64)>>,
    /// When the mount started: the times of directories nobody has changed since avm began
    /// keeping directory times (stable, unlike "now").
    started: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shared<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn exclusive<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// A core serving `host` as `caller`. `@id` shortcuts and the urgent block are read
    /// through the host too (`:handle` and `:inbox?only=urgent` on the caller's own root), so
    /// they work where those services are mounted and are missing, not broken, elsewhere.
    pub fn new(host: Arc<Host>, caller: Caller) -> Self {
        Core::with_limits(host, caller, Limits::default())
    }

    /// Like [`Core::new`] with mount-wide limits.
    pub fn with_limits(host: Arc<Host>, caller: Caller, limits: Limits) -> Self {
        let mut inodes = Inodes {
            next: ROOT + 1,
            ..Inodes::default()
        };
        inodes.by_ino.insert(
            ROOT,
            Inode {
                path: "/".into(),
                lookups: 1,
                unlinked: false,
                gone: None,
            },
        );
        inodes.by_path.insert("/".into(), ROOT);
        Core {
            host,
            caller,
            limits,
            names: RwLock::new(()),
            inodes: Mutex::new(inodes),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            urgent: Mutex::new((None, None)),
            space: Mutex::new(None),
            started: SystemTime::now(),
        }
    }

    /// The caller this mount acts as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}
